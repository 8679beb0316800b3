/**
 * The Effect side of thinkagain: provide a mesh as a layer, and submit ops and service calls as
 * Effects that fail with the same typed errors `await` rejects with.
 *
 * @module
 */
import { Context, Effect, Layer } from "effect";
import { runInContext } from "./context.ts";
import { describe } from "./describe.ts";
import type { TaskError } from "./errors.ts";
import { Mesh, type MeshNode, type MeshOptions, meshRuntime } from "./mesh.ts";
import type { ObjectRef } from "./object_ref.ts";
import type { RefArgs } from "./types.ts";
import type { CpuDevice, GpuDevice } from "./devices.ts";

/**
 * The mesh Effect code submits to; `undefined` (the default) means the mesh of the surrounding
 * `mesh.run`, or the default local one.
 */
export const CurrentMesh: Context.Reference<Mesh | undefined> = Context.Reference<Mesh | undefined>(
  "@thinkagain/thinkagain/CurrentMesh",
  { defaultValue: () => undefined },
);

/**
 * A layer that builds a mesh, makes it current for the Effects it is provided to, and closes it
 * when the layer's scope ends.
 *
 * @param nodes The mesh's nodes or devices.
 * @param options The mesh's options.
 * @param meshClass The class to build (the package root passes its `Mesh`, which runs remote nodes).
 * @returns A layer providing {@link CurrentMesh}.
 *
 * @example
 * ```ts
 * import { Effect } from "effect";
 * import * as ta from "../mod.ts";
 * const inc = ta.op(async function inc(x: number) { return x + 1; });
 * const program = ta.goEffect(inc, 41).pipe(
 *   Effect.provide(ta.layerMesh([new ta.MeshNode("n1", { cpus: 2 })])),
 * );
 * if ((await Effect.runPromise(program)) !== 42) throw new Error("unexpected");
 * ```
 */
export function layerMesh(
  nodes: ReadonlyArray<MeshNode | GpuDevice | CpuDevice>,
  options?: MeshOptions,
  meshClass: new (nodes: ReadonlyArray<MeshNode | GpuDevice | CpuDevice>, options?: MeshOptions) => Mesh = Mesh,
): Layer.Layer<never> {
  return Layer.effect(
    CurrentMesh,
    Effect.acquireRelease(
      Effect.sync(() => new meshClass(nodes, options) as Mesh | undefined),
      (mesh) => Effect.promise(() => mesh!.close()),
    ),
  ) as Layer.Layer<never>;
}

/** Anything with `.go(...)`: an op or a service method. */
export interface Submittable<A extends unknown[], R> {
  /** Submits the call and returns its ref. */
  go(...args: RefArgs<A>): ObjectRef<R>;
}

/**
 * Submits an op or service call from Effect code (in the {@link CurrentMesh} when one is provided)
 * and waits for it. Interrupting the Effect cancels the call.
 *
 * @param target An op or a service method.
 * @param args Its arguments (values or refs).
 * @returns An Effect of the result, failing with the task's typed error.
 * @throws {TypeError} At once, when `target` is neither an op nor a service method.
 *
 * @example
 * ```ts
 * import { Effect } from "effect";
 * import * as ta from "../mod.ts";
 * const boom = ta.op(async function boom() { throw new Error("no"); });
 * const tag = await Effect.runPromise(
 *   ta.goEffect(boom).pipe(Effect.catchTag("OpExecutionError", (e) => Effect.succeed(e.op))),
 * );
 * if (tag !== "boom") throw new Error("unexpected");
 * ```
 */
export function goEffect<A extends unknown[], R>(
  target: Submittable<A, R>,
  ...args: RefArgs<A>
): Effect.Effect<R, TaskError> {
  // checked now, not when the Effect runs: a bad argument is a defect of the caller, not a task error
  if (
    target === null || (typeof target !== "object" && typeof target !== "function") ||
    typeof (target as { go?: unknown }).go !== "function"
  ) {
    throw new TypeError(
      `goEffect expects an op or a service method (something with .go()), got ${describe(target)}; ` +
        "wrap a plain function with ta.op() first",
    );
  }
  return Effect.flatMap(Effect.service(CurrentMesh), (mesh) => {
    const ref = mesh === undefined
      ? target.go(...args)
      : runInContext({ mesh: meshRuntime(mesh) }, () => target.go(...args));
    return Effect.onInterrupt(ref.effect, () => Effect.sync(() => ref.cancel()));
  });
}
