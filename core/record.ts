/**
 * Recording a task for the event stream (profiler, tracing): its timing facts are allocated only
 * while someone listens, and sampling leaves whole subtrees out (what a sampled-out body submits
 * is left out with it).
 *
 * @module
 */
import { currentContext, type RunContext } from "./context.ts";
import { emit, sampling, shouldRecord, type TaskInfo } from "./events.ts";
import type { MeshRuntime } from "./mesh_runtime.ts";
import type { Task } from "./task.ts";

/** `depth` > 0 while a sampled-out body runs synchronously outside any context switch. */
export const unsampled: { depth: number } = { depth: 0 };

/** Stands as the calling task of tasks submitted from a sampled-out body: it is not recorded. */
const UNSAMPLED_TASK: { _meta: undefined } = { _meta: undefined };
const unsampledRoot: RunContext = { mesh: undefined, task: UNSAMPLED_TASK };
const unsampledVariants = new WeakMap<RunContext, RunContext>();

export function unsampledContext(ctx: RunContext | undefined): RunContext {
  if (ctx === undefined) return unsampledRoot;
  if (ctx.task === UNSAMPLED_TASK) return ctx;
  let u = unsampledVariants.get(ctx);
  if (u === undefined) unsampledVariants.set(ctx, u = { mesh: ctx.mesh, instance: ctx.instance, task: UNSAMPLED_TASK });
  return u;
}

/** Starts recording a task for the event stream (unless sampling leaves it out). */
export function record(task: Task<unknown>, ctx: RunContext | undefined): void {
  const caller = ctx?.task as Task<unknown> | undefined;
  if (unsampled.depth > 0 && sampling()) return;
  if (!shouldRecord(caller)) return;
  const parent = (caller as unknown) === UNSAMPLED_TASK ? undefined : caller;
  const now = performance.now();
  task._meta = {
    submittedAt: now,
    // -0, not 0: the fields start as doubles, so storing the clock reading later keeps the object's
    // shape (a 0 makes them small-integer fields that every first store must widen, which showed
    // up per task on Deno)
    readyAt: -0,
    startedAt: -0,
    settledAt: -0,
    attempt: 0,
    parent,
    deps: [],
    node: task._target.node,
  };
  emit("submitted", task, now);
}

/**
 * Records where the running remote-capable op `op` (the task whose body runs in this context) was
 * sent: to the node named `node`, or nowhere (`undefined`: no node took it and it runs here). Its
 * profile, timeline and task events then name the node it ran on, or say it ran locally.
 *
 * @param op The op's name.
 * @param node The node the call was sent to, or `undefined` when it runs in this process.
 *
 * @example Outside a recorded op body it does nothing
 * ```ts
 * import { noteOpPlacement } from "./record.ts";
 * noteOpPlacement("anyOp", "n1");
 * ```
 */
export function noteOpPlacement(op: string, node: string | undefined): void {
  const task = currentContext()?.task as Task<unknown> | undefined;
  const meta = task?._meta;
  // the context's task is this call only while its body runs recorded (else it is a caller's)
  if (meta === undefined || meta.executor !== "remote" || task!._target.name !== op) return;
  if (node === undefined) meta.executor = "local";
  else meta.node = node;
}

/**
 * The runtime of the mesh a task was submitted in, for a listener of the event stream that shows
 * one mesh (a dashboard): `undefined` for a task submitted outside any `mesh.run`. On a node, the
 * calls it runs for drivers are its own mesh's.
 *
 * @param task A task from the event stream.
 * @returns Its mesh's runtime, or `undefined`.
 *
 * @example
 * ```ts
 * import * as ta from "../mod.ts";
 * import { meshRuntime } from "./mesh.ts";
 * import { onTaskEvent } from "./events.ts";
 * import { taskMesh } from "./record.ts";
 * await using mesh = new ta.Mesh([new ta.MeshNode("a")]);
 * const seen: unknown[] = [];
 * const off = onTaskEvent((e) => e.kind === "submitted" && seen.push(taskMesh(e.task)));
 * const id = ta.op(async function recordDocId(x: number) { return x; });
 * await mesh.run(() => id.go(1));
 * await id.go(2);
 * off();
 * if (seen[0] !== meshRuntime(mesh) || seen[1] !== undefined) throw new Error("unexpected");
 * ```
 */
export function taskMesh(task: TaskInfo): MeshRuntime | undefined {
  return (task as unknown as Task<unknown>)._ctx?.mesh;
}
