/**
 * `ObjectRef<T>`: the handle `.go()` returns at once. It is the task itself (one object per
 * submitted call): it counts its unresolved inputs, holds its result once settled, and tells its
 * dependents when it settles. Nothing else keeps a settled ref alive, so results live exactly as
 * long as user code holds their refs.
 *
 * @module
 */
import { Effect } from "effect";
import { CancelledError, type TaskError } from "./errors.ts";
import type { RunContext } from "./context.ts";
import type { TaskInfo } from "./events.ts";
import { emit } from "./events.ts";

/** Lifecycle of a task. */
export type RefStatus = "pending" | "running" | "completed" | "failed" | "cancelled";

const PENDING = 0, RUNNING = 1, COMPLETED = 2, FAILED = 3, CANCELLED = 4;
const STATUS: readonly RefStatus[] = ["pending", "running", "completed", "failed", "cancelled"];

/** @internal Where a ready task goes: an op's runner or a service replica's mailbox. */
export interface TaskTarget {
  readonly name: string;
  readonly kind: "op" | "method";
  /** Node name the task runs on, if known. */
  readonly node: string | undefined;
  /** All inputs have resolved: start (or queue) the task. */
  ready(task: ObjectRef<unknown>): void;
  /** The task was cancelled before it started: forget it. */
  dropped?(task: ObjectRef<unknown>): void;
  /** True when the body's thinkagain errors (remote calls) must pass through unwrapped. */
  readonly passErrors?: boolean;
  /** True when calls run on another node (a replica behind a transport). */
  readonly remote?: boolean;
}

/** @internal Timing and graph facts, allocated only while someone listens to events. */
export interface TaskMeta {
  submittedAt: number;
  startedAt: number;
  settledAt: number;
  attempt: number;
  parent: ObjectRef<unknown> | undefined;
  deps: ObjectRef<unknown>[];
  node: string | undefined;
  /** Set when a remote-capable op was sent to a node. */
  executor?: "local" | "remote";
}

let counter = 0;
const EMPTY: readonly TaskInfo[] = [];

/**
 * A reference to the result of a submitted op or service call. It is `PromiseLike`, so `await`,
 * `Promise.all` and `Promise.race` work; it can be passed to other `.go()` calls as an argument
 * (also inside arrays and plain objects), which makes the callee wait for it.
 *
 * @example Await a ref, or pass it on
 * ```ts
 * import { op } from "../mod.ts";
 * const addOne = op(async function addOne(x: number) { return x + 1; });
 * const ref = addOne.go(1);
 * const twice = addOne.go(ref);
 * if ((await twice) !== 3 || ref.status !== "completed") throw new Error("unexpected");
 * ```
 */
export class ObjectRef<T> implements PromiseLike<T>, TaskInfo {
  /** @internal */ _n: number;
  /** @internal */ _state: number = PENDING;
  /** @internal */ _value: unknown = undefined;
  /** @internal */ _error: unknown = undefined;
  /** @internal number of inputs still unresolved */ _pending = 0;
  /** @internal the call's arguments until it starts */ _args: unknown[] | undefined;
  /** @internal 0: no refs in args, 1: refs at top level only, 2: refs nested in arrays/objects */ _shape = 0;
  /** @internal */ _target: TaskTarget;
  /** @internal */ _ctx: RunContext | undefined;
  /** @internal */ _dependents: ObjectRef<unknown>[] | undefined = undefined;
  /** @internal one waiter, or several (most refs have none or one) */
  _waiters: Waiter | Waiter[] | undefined = undefined;
  /** @internal */ _promise: Promise<T> | undefined = undefined;
  /** @internal */ _resolve: ((v: unknown) => void) | undefined = undefined;
  /** @internal */ _reject: ((e: unknown) => void) | undefined = undefined;
  /** @internal stops the running body (fiber interrupt, remote cancel) */ _abort: (() => void) | undefined = undefined;
  /** @internal */ _meta: TaskMeta | undefined = undefined;
  /** @internal slot owned by tracing (the task's span) */ _trace: unknown = undefined;
  /** @internal index in its mesh's {@link TaskRoster} while unsettled (-1: on none) */ _rosterSlot = -1;

  /** @internal Refs are made by `.go()`, never by users. */
  constructor(target: TaskTarget, args: unknown[] | undefined, ctx: RunContext | undefined) {
    this._n = ++counter;
    this._target = target;
    this._args = args;
    this._ctx = ctx;
  }

  /** Unique id of this task in this process: `<name>#<seq>`. */
  get id(): string {
    return `${this._target.name}#${this._n}`;
  }

  /** Sequence number of this task in this process (the number in {@link id}). */
  get seq(): number {
    return this._n;
  }

  /** `"pending"` (waiting for inputs or a slot), `"running"`, `"completed"`, `"failed"` or `"cancelled"`. */
  get status(): RefStatus {
    return STATUS[this._state];
  }

  /** `"op"` or `"method"`. */
  get kind(): "op" | "method" {
    return this._target.kind;
  }

  /** Op name or `Service.method`. */
  get name(): string {
    return this._target.name;
  }

  /** Node the task runs on, when known. */
  get node(): string | undefined {
    return this._meta?.node ?? this._target.node;
  }

  /** The task that submitted this one (recorded while profiling or tracing). */
  get parent(): TaskInfo | undefined {
    return this._meta?.parent;
  }

  /** Tasks whose results are inputs of this one (recorded while profiling or tracing). */
  get dependencies(): readonly TaskInfo[] {
    return this._meta?.deps ?? EMPTY;
  }

  /** `performance.now()` at submission (recorded while profiling or tracing; else 0). */
  get submittedAt(): number {
    return this._meta?.submittedAt ?? 0;
  }

  /** `performance.now()` when the body started (recorded while profiling or tracing; else 0). */
  get startedAt(): number {
    return this._meta?.startedAt ?? 0;
  }

  /** `performance.now()` when it settled (recorded while profiling or tracing; else 0). */
  get settledAt(): number {
    return this._meta?.settledAt ?? 0;
  }

  /** Retry attempt now running (0 for the first). */
  get attempt(): number {
    return this._meta?.attempt ?? 0;
  }

  /** `"remote"` when the call runs on another node, else `"local"`. */
  get executor(): "local" | "remote" {
    return this._meta?.executor ?? (this._target.remote === true ? "remote" : "local");
  }

  /** The error of a failed or cancelled task. */
  get error(): unknown {
    return this._error;
  }

  /**
   * Attaches callbacks like `Promise.prototype.then`. Rejections are thinkagain errors
   * (`OpExecutionError`, `CancelledError`, `TimeoutError`, …).
   */
  then<R1 = T, R2 = never>(
    onfulfilled?: ((value: T) => R1 | PromiseLike<R1>) | null,
    onrejected?: ((reason: unknown) => R2 | PromiseLike<R2>) | null,
  ): Promise<R1 | R2> {
    return this.promise().then(onfulfilled, onrejected);
  }

  /** Like `Promise.prototype.catch`. */
  catch<R = never>(onrejected?: ((reason: unknown) => R | PromiseLike<R>) | null): Promise<T | R> {
    return this.promise().catch(onrejected);
  }

  /** Like `Promise.prototype.finally`. */
  finally(onfinally?: (() => void) | null): Promise<T> {
    return this.promise().finally(onfinally);
  }

  /** A real Promise of the result (created on first use, then reused). */
  promise(): Promise<T> {
    if (this._promise !== undefined) return this._promise;
    if (this._state === COMPLETED) return (this._promise = Promise.resolve(this._value as T));
    if (this._state >= FAILED) return (this._promise = Promise.reject(this._error));
    return (this._promise = new Promise<T>((resolve, reject) => {
      this._resolve = resolve as (v: unknown) => void;
      this._reject = reject;
    }));
  }

  /** The result as an Effect: succeeds with the value, fails with the same error instance `await` rejects with. */
  get effect(): Effect.Effect<T, TaskError> {
    return Effect.callback<T, TaskError>((resume) => {
      if (this._state === COMPLETED) return resume(Effect.succeed(this._value as T));
      if (this._state >= FAILED) return resume(Effect.fail(this._error as TaskError));
      const waiter = (ref: ObjectRef<unknown>) =>
        resume(ref._state === COMPLETED ? Effect.succeed(ref._value as T) : Effect.fail(ref._error as TaskError));
      addWaiter(this as ObjectRef<unknown>, waiter);
      return Effect.sync(() => removeWaiter(this as ObjectRef<unknown>, waiter));
    });
  }

  /**
   * Cancels the task: a pending one never starts; a running one is interrupted where the executor
   * can (retries/timeouts, remote calls) and its result is ignored otherwise. The ref and every
   * dependent reject with `CancelledError`.
   *
   * @returns `true` if the task was still pending or running, `false` if it had already settled.
   */
  cancel(): boolean {
    if (this._state >= COMPLETED) return false;
    cancelTask(this as ObjectRef<unknown>, new CancelledError(this._target.name));
    return true;
  }

  /** Plain-text form for logs. */
  toString(): string {
    return `ObjectRef(${this.id}, ${this.status})`;
  }
}

/** @internal How many tasks this process has made (the last task's `seq`). */
export function submittedCount(): number {
  return counter;
}

/** @internal Numeric states of `_state`. */
export const State = { PENDING, RUNNING, COMPLETED, FAILED, CANCELLED } as const;

/**
 * @internal Cancels an unsettled task with `error`: a pending one never starts (its target forgets
 * it, giving back any slot it held), a running one is stopped where its executor can.
 */
export function cancelTask(task: ObjectRef<unknown>, error: CancelledError): void {
  const wasPending = task._state === PENDING;
  const abort = task._abort;
  task._abort = undefined;
  task._args = undefined;
  settle(task, CANCELLED, error);
  if (wasPending) task._target.dropped?.(task);
  abort?.();
}

// ---- a mesh's unsettled tasks -----------------------------------------------------------------

/**
 * @internal The unsettled tasks submitted in one mesh, so that closing it can cancel those not
 * started, wherever they wait (for inputs, in the ready queue, for a slot). Adding and removing are
 * O(1) with no allocation: the array grows in place and a task records its index in `_rosterSlot`;
 * removal moves the last task into the hole. A task leaves when it settles, so the roster holds no
 * results, only work still to do.
 */
export class TaskRoster {
  private tasks: ObjectRef<unknown>[] = [];

  add(task: ObjectRef<unknown>): void {
    task._rosterSlot = this.tasks.length;
    this.tasks.push(task);
  }

  remove(task: ObjectRef<unknown>): void {
    const i = task._rosterSlot;
    task._rosterSlot = -1;
    const last = this.tasks.pop()!;
    if (last !== task) {
      this.tasks[i] = last;
      last._rosterSlot = i;
    }
  }

  /** Empties the roster and returns what it held; those tasks no longer leave it when they settle. */
  takeAll(): ObjectRef<unknown>[] {
    const tasks = this.tasks;
    this.tasks = [];
    for (let i = 0; i < tasks.length; i++) tasks[i]._rosterSlot = -1;
    return tasks;
  }
}

/** @internal What owns a roster: a mesh (typed structurally, to keep this file free of an import cycle). */
export interface RosterOwner {
  readonly _roster: TaskRoster | undefined;
}

// ---- fan-in without a promise per ref ---------------------------------------------------------

/**
 * Waits for every ref (or plain value) in `items`, like `Promise.all`, but without building a
 * promise per ref: cheaper in time and memory for large fan-ins. Rejects with the first failed
 * ref's own error.
 *
 * @param items Refs and/or values.
 * @returns The values, in order.
 *
 * @example
 * ```ts
 * import * as ta from "../mod.ts";
 * const sq = ta.op(async function sq(x: number) { return x * x; });
 * const out = await ta.all([sq.go(2), sq.go(3), 4]);
 * if (out.join() !== "4,9,4") throw new Error("unexpected");
 * ```
 */
export function all<T extends readonly unknown[]>(items: T): Promise<{ -readonly [K in keyof T]: Awaited<T[K]> }> {
  type Out = { -readonly [K in keyof T]: Awaited<T[K]> };
  if (!Array.isArray(items)) return Promise.reject(new TypeError("all() expects an array of refs or values"));
  return new Promise<Out>((resolve, reject) => {
    const out = new Array(items.length);
    let left = items.length;
    let failed = false;
    const fail = (e: unknown) => {
      // the refs still running keep this (now inert) waiter until they settle: removing it from each
      // would cost a search per ref, quadratic when many fan-ins share a long-running ref
      if (failed) return;
      failed = true;
      reject(e);
    };
    // refs' values are read once all have settled, so one waiter serves every ref
    const finish = () => {
      for (let i = 0; i < items.length; i++) {
        const v = items[i];
        if (v instanceof ObjectRef) out[i] = v._value;
      }
      resolve(out as Out);
    };
    const waiter: Waiter = (ref) => {
      if (failed) return;
      if (ref._state !== COMPLETED) return fail(ref._error);
      if (--left === 0) finish();
    };
    for (let i = 0; i < items.length && !failed; i++) {
      const v = items[i];
      if (v instanceof ObjectRef) {
        if (v._state >= COMPLETED) waiter(v);
        else addWaiter(v, waiter);
      } else if (v !== null && typeof (v as { then?: unknown })?.then === "function") {
        Promise.resolve(v).then((x) => {
          out[i] = x;
          if (--left === 0 && !failed) finish();
        }, fail);
      } else {
        out[i] = v;
        if (--left === 0) finish();
      }
    }
    if (items.length === 0) resolve(out as Out);
  });
}

/** @internal Something told when a ref settles. */
export type Waiter = (ref: ObjectRef<unknown>) => void;

function addWaiter(ref: ObjectRef<unknown>, w: Waiter): void {
  const ws = ref._waiters;
  if (ws === undefined) ref._waiters = w;
  else if (typeof ws === "function") ref._waiters = [ws, w];
  else ws.push(w);
}

function removeWaiter(ref: ObjectRef<unknown>, w: Waiter): void {
  const ws = ref._waiters;
  if (ws === w) ref._waiters = undefined;
  else if (Array.isArray(ws)) {
    const i = ws.indexOf(w);
    if (i >= 0) ws.splice(i, 1);
  }
}

// ---- settling: a worklist, so long chains never recurse ----------------------------------------

const settledQueue: ObjectRef<unknown>[] = [];
let flushing = false;

/** @internal Settles a task (once) and notifies its dependents and waiters, iteratively. */
export function settle(ref: ObjectRef<unknown>, state: number, valueOrError: unknown): void {
  if (ref._state >= COMPLETED) return;
  ref._state = state;
  if (state === COMPLETED) ref._value = valueOrError;
  else ref._error = valueOrError;
  ref._abort = undefined;
  if (ref._rosterSlot !== -1) (ref._ctx!.mesh as RosterOwner)._roster!.remove(ref);
  if (ref._meta !== undefined) {
    const at = performance.now();
    ref._meta.settledAt = at;
    emit(state === COMPLETED ? "finished" : state === FAILED ? "failed" : "cancelled", ref, at);
  }
  if (ref._resolve !== undefined) {
    if (state === COMPLETED) ref._resolve(valueOrError);
    else ref._reject!(valueOrError);
    ref._resolve = ref._reject = undefined;
  }
  if (ref._waiters !== undefined) {
    const ws = ref._waiters;
    ref._waiters = undefined;
    if (typeof ws === "function") ws(ref);
    else for (let i = 0; i < ws.length; i++) ws[i](ref);
  }
  if (ref._dependents === undefined) return;
  settledQueue.push(ref);
  if (!flushing) flushSettled();
}

function flushSettled(): void {
  flushing = true;
  try {
    for (let i = 0; i < settledQueue.length; i++) {
      const ref = settledQueue[i];
      const deps = ref._dependents!;
      ref._dependents = undefined;
      if (ref._state === COMPLETED) {
        for (let j = 0; j < deps.length; j++) {
          const d = deps[j];
          if (d._state === PENDING && --d._pending === 0) startReady(d);
        }
      } else {
        for (let j = 0; j < deps.length; j++) {
          const d = deps[j];
          if (d._state === PENDING) {
            d._args = undefined;
            // a failed input fails its dependents with the same error, without running them
            settle(d, ref._state, ref._error);
            d._target.dropped?.(d);
          }
        }
      }
    }
  } finally {
    settledQueue.length = 0;
    flushing = false;
  }
}

function startReady(task: ObjectRef<unknown>): void {
  try {
    task._target.ready(task);
  } catch (e) {
    // a target must not throw; if it does, the task fails instead of hanging
    settle(task, FAILED, e);
  }
}

// ---- argument scanning ---------------------------------------------------------------------

function isPlainObject(v: object): boolean {
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** @internal Registers `task` as a dependent of every unresolved ref in its args (counted in `_pending`). */
export function scanArgs(task: ObjectRef<unknown>, args: unknown[]): void {
  let shape = 0;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (typeof a !== "object" || a === null) continue;
    if (a instanceof ObjectRef) {
      if (shape === 0) shape = 1;
      link(task, a);
    } else if (Array.isArray(a) || isPlainObject(a)) {
      if (scanNested(task, a, 0)) shape = 2;
    }
  }
  task._shape = shape;
}

function scanNested(task: ObjectRef<unknown>, v: object, depth: number): boolean {
  if (depth > 32) return false;
  let found = false;
  const values = Array.isArray(v) ? v : Object.values(v);
  for (let i = 0; i < values.length; i++) {
    const a = values[i];
    if (typeof a !== "object" || a === null) continue;
    if (a instanceof ObjectRef) {
      found = true;
      link(task, a);
    } else if ((Array.isArray(a) || isPlainObject(a)) && scanNested(task, a, depth + 1)) {
      found = true;
    }
  }
  return found;
}

function link(task: ObjectRef<unknown>, dep: ObjectRef<unknown>): void {
  if (task._meta) task._meta.deps.push(dep);
  if (dep._state === COMPLETED) return;
  if (dep._state >= FAILED) {
    // already failed: the task fails at once (checked by the caller through _state)
    if (task._state === PENDING) settle(task, dep._state, dep._error);
    return;
  }
  task._pending++;
  (dep._dependents ??= []).push(task);
}

/** @internal The args with every ref replaced by its value (refs are all completed here). */
export function resolveArgs(task: ObjectRef<unknown>): unknown[] {
  const args = task._args!;
  task._args = undefined;
  if (task._shape === 0) return args;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (typeof a !== "object" || a === null) continue;
    if (a instanceof ObjectRef) args[i] = a._value;
    else if (task._shape === 2 && (Array.isArray(a) || isPlainObject(a))) args[i] = resolveNested(a, 0);
  }
  return args;
}

function resolveNested(v: object, depth: number): unknown {
  if (depth > 32) return v;
  if (Array.isArray(v)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < v.length; i++) {
      const a = v[i];
      let r = a;
      if (a instanceof ObjectRef) r = a._value;
      else if (typeof a === "object" && a !== null && (Array.isArray(a) || isPlainObject(a))) {
        r = resolveNested(a, depth + 1);
      }
      if (r !== a) (out ??= v.slice())[i] = r;
    }
    return out ?? v;
  }
  let out: Record<string, unknown> | undefined;
  for (const k of Object.keys(v)) {
    const a = (v as Record<string, unknown>)[k];
    let r = a;
    if (a instanceof ObjectRef) r = a._value;
    else if (typeof a === "object" && a !== null && (Array.isArray(a) || isPlainObject(a))) {
      r = resolveNested(a, depth + 1);
    }
    if (r !== a) (out ??= { ...(v as Record<string, unknown>) })[k] = r;
  }
  return out ?? v;
}
