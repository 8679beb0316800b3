/**
 * The ambient context of a running pipeline: which mesh `.go()` submits to, which task is running
 * (for the caller→callee graph) and which service instance is running (for its devices). It rides
 * on AsyncLocalStorage, which Bun, Deno, Node and edge runtimes all provide (reached through
 * `_runtime.ts`).
 *
 * @module
 */
import { AsyncLocalStorage } from "./_runtime.ts";
import type { GpuDevice } from "./devices.ts";
import type { MeshRuntime } from "./mesh_runtime.ts";

/** What a running piece of user code sees around it. Internal; fields are read by the core. */
export interface RunContext {
  /** The mesh that `.go()` submits to (its runtime state), or none: the default local runtime. */
  readonly mesh: MeshRuntime | undefined;
  /** The task whose body is running, when profiling or tracing asked for it. */
  readonly task?: unknown;
  /** The service replica whose constructor or method is running. */
  readonly instance?: InstanceInfo;
  /**
   * The task whose body runs in this context: what is submitted here is its child (cancelled with
   * it). A `Task`; typed loosely here so this file needs no import of it.
   */
  readonly parent?: unknown;
}

/** What the core tells code running inside a service instance about that instance. */
export interface InstanceInfo {
  /** Service name. */
  readonly service: string;
  /** Replica index, 0-based. */
  readonly replica: number;
  /** Name of the node the instance was placed on. */
  readonly node: string;
  /** GPUs placement assigned to this instance (empty when it asked for none). */
  readonly gpus: readonly GpuDevice[];
  /** The instance's id on its node, when a driver created it there (what handles to it name). */
  readonly id?: string;
}

const storage: AsyncLocalStorage<RunContext> = new AsyncLocalStorage<RunContext>();

/** The context of the code running now, if any. */
export function currentContext(): RunContext | undefined {
  return storage.getStore();
}

/** Runs `fn` with `ctx` as the ambient context. */
export function runInContext<R>(ctx: RunContext, fn: () => R): R {
  contextEntered = true;
  return storage.run(ctx, fn);
}

/**
 * True once any context was entered in this process: until then no code can run inside
 * one, and a task with no context needs no check that it does not run in someone else's.
 */
export let contextEntered = false;

/** The context of a task submitted outside any mesh, instance or task: no mesh at all. */
export const NO_CONTEXT: RunContext = { mesh: undefined };

function applyTo(fn: (...args: unknown[]) => unknown, self: unknown, args: unknown[]): unknown {
  return fn.apply(self, args);
}

/** `fn.apply(self, args)` with `ctx` as the ambient context, without a closure per call. */
export function applyInContext(
  ctx: RunContext,
  fn: (...args: unknown[]) => unknown,
  self: unknown,
  args: unknown[],
): unknown {
  contextEntered = true;
  return storage.run(ctx, applyTo, fn, self, args);
}

// ---- the body running now (structured cancellation) ------------------------------------------

/**
 * The task whose body's synchronous part runs now (`run_body.ts` sets it around the call), so what
 * the body submits before its first `await` knows its parent without a context switch per body;
 * and the context a body entered by {@linkcode enterParentContext}, if any (with the one it
 * replaced, and the one an outer body entered before it).
 */
export const runningBody: { task: unknown; entered: EnteredContext | undefined } = {
  task: undefined,
  entered: undefined,
};

/** A context a body entered on its first child, to be left when the body returns. */
export interface EnteredContext {
  /** The body's task. */
  readonly owner: unknown;
  readonly ctx: RunContext;
  /** The context it replaced. */
  readonly outer: RunContext | undefined;
  /** One an outer body entered before. */
  readonly prev: EnteredContext | undefined;
}

const canEnter = typeof (storage as { enterWith?: unknown }).enterWith === "function";

/**
 * Makes the rest of the running body's synchronous part, and so everything after its awaits, run in
 * a context whose parent is `parent` (the body's task): a body that runs without a context of its
 * own enters one on its first child, so its later children find their parent too. Undone by
 * {@linkcode leaveParentContext} when the body returns. Where the runtime's AsyncLocalStorage has
 * no `enterWith` (some edge runtimes), only the children submitted before the first await are known.
 */
export function enterParentContext(parent: unknown): void {
  const prev = runningBody.entered;
  if (!canEnter || (prev !== undefined && prev.owner === parent)) return;
  const outer = storage.getStore();
  const ctx: RunContext = { mesh: outer?.mesh, instance: outer?.instance, task: outer?.task, parent };
  contextEntered = true;
  storage.enterWith(ctx);
  runningBody.entered = { owner: parent, ctx, outer, prev };
}

/**
 * Leaves the context the returning body entered: restores the one it replaced, if the entered one
 * is still current (not when a nested `run` already left it).
 */
export function leaveParentContext(): void {
  const entered = runningBody.entered!;
  runningBody.entered = entered.prev;
  if (storage.getStore() === entered.ctx) storage.enterWith(entered.outer as RunContext);
}

/**
 * The GPUs that placement assigned to the service instance whose constructor or method is running
 * now, or `undefined` outside a service instance.
 *
 * @returns The assigned devices, or `undefined` when not called from inside a service instance.
 *
 * @example Outside a service there is no instance
 * ```ts
 * import { currentInstanceGpus } from "./context.ts";
 * if (currentInstanceGpus() !== undefined) throw new Error("expected undefined outside a service");
 * ```
 */
export function currentInstanceGpus(): readonly GpuDevice[] | undefined {
  return storage.getStore()?.instance?.gpus;
}

/**
 * Facts about the service instance whose constructor or method is running now.
 *
 * @returns The instance info, or `undefined` outside a service instance.
 *
 * @example
 * ```ts
 * import { currentInstance } from "./context.ts";
 * if (currentInstance() !== undefined) throw new Error("expected undefined outside a service");
 * ```
 */
export function currentInstance(): InstanceInfo | undefined {
  return storage.getStore()?.instance;
}
