/**
 * The task: one submitted op or method call, and its lifecycle. A task counts its unresolved
 * inputs, holds its result once settled, and tells its dependents and waiters when it settles
 * (iteratively, so long chains never recurse). Users see it through the `ObjectRef`
 * interface (`object_ref.ts`); everything prefixed `_` here is the core's own.
 *
 * Cancellation has one path: {@linkcode cancelTask} settles the task and calls its `_abort`, which
 * whatever runs the body set (a policy fiber's interrupt, a remote call's cancel hook).
 *
 * @module
 */
import { Effect } from "effect";
import { CancelledError, ReleasedError, type TaskError, TimeoutError } from "./errors.ts";
import { contextEntered, currentContext, type RunContext, runningBody } from "./context.ts";
import type { TaskInfo } from "./events.ts";
import { awaitProbe, emit } from "./events.ts";
import { waiterAdded, waiterDone } from "./grace.ts";
import { LazyValue, materialized } from "./lazy_value.ts";
import { Stream } from "./stream.ts";
import { explainTask, type Explanation, type SlotWait, waitPath } from "./explain.ts";

/** A completed task's value as an Effect: a value kept on a node is fetched first. */
function succeeded<T>(value: unknown): Effect.Effect<T, TaskError> {
  if (!(value instanceof LazyValue)) return Effect.succeed(value as T);
  return Effect.tryPromise({ try: () => value.materialize() as Promise<T>, catch: (e) => e as TaskError });
}

/** Lifecycle of a task. */
export type RefStatus = "pending" | "running" | "completed" | "failed" | "cancelled";

const PENDING = 0, RUNNING = 1, COMPLETED = 2, FAILED = 3, CANCELLED = 4;
const STATUS: readonly RefStatus[] = ["pending", "running", "completed", "failed", "cancelled"];

/** Where a ready task goes: an op's runner or a service replica's mailbox. */
export interface TaskTarget {
  readonly name: string;
  readonly kind: "op" | "method";
  /** Node name the task runs on, if known. */
  readonly node: string | undefined;
  /** All inputs have resolved: start (or queue) the task. */
  ready(task: Task<unknown>): void;
  /** The task was cancelled before it started: forget it. */
  dropped?(task: Task<unknown>): void;
  /**
   * A completed task whose value is not kept on a node was released (`ref.release()`, `using`):
   * what this process holds for it elsewhere may go (a `put` value's copies stored on nodes).
   */
  released?(task: Task<unknown>): void;
  /** True when the body's thinkagain errors (remote calls) must pass through unwrapped. */
  readonly passErrors?: boolean;
  /** True when calls run on another node (a replica behind a transport). */
  readonly remote?: boolean;
  /** Forget waiting tasks that were cancelled meanwhile (a concurrency limit's queue), if it keeps any. */
  pruneWaiting?(): void;
  /**
   * For `explain()`: the slot a task whose inputs have all resolved waits for (a concurrency limit, a
   * mailbox and what is ahead of it), or `undefined` when it waits for none. Asked only by
   * `explain.ts`, never on the task path.
   */
  slotWait?(task: Task<unknown>): SlotWait | undefined;
  /**
   * Bodies started while no call of this target has submitted a child (−1 once one has): a body
   * runs in a context of its own, so that children it submits after any await are known, until
   * `run_body.ts`'s `LEAF_RUNS` bodies have shown it submits none.
   */
  leafRuns?: number;
}

/** Timing and graph facts, allocated only while someone listens to events. */
export interface TaskMeta {
  submittedAt: number;
  /** When its last pending input resolved (-0: none was pending at submission, or not yet). */
  readyAt: number;
  startedAt: number;
  settledAt: number;
  attempt: number;
  parent: Task<unknown> | undefined;
  deps: Task<unknown>[];
  node: string | undefined;
  /** Set when a remote-capable op was sent to a node (and back to local when no node took it). */
  executor?: "local" | "remote";
  /** For a streaming call, once its stream ended: how many items it gave. */
  streamItems?: number;
}

let counter = 0;
const EMPTY: readonly TaskInfo[] = [];

/**
 * One submitted call. It is the object `.go()` returns, typed there as `ObjectRef`.
 *
 * @example
 * ```ts
 * import { op } from "./op.ts";
 * import { Task } from "./task.ts";
 * const inc = op(async function inc(x: number) { return x + 1; });
 * const ref = inc.go(1);
 * if (!(ref instanceof Task) || (await ref) !== 2) throw new Error("unexpected");
 * ```
 */
export class Task<T> implements PromiseLike<T>, TaskInfo {
  _n: number;
  _state: number = PENDING;
  _value: unknown = undefined;
  _error: unknown = undefined;
  /** number of inputs still unresolved */ _pending = 0;
  /** the call's arguments until it starts */ _args: unknown[] | undefined;
  /**
   * 0: no refs in args, 1: refs at top level only, 2: refs nested in arrays/objects, 3: nested deeper
   * than the quick walk goes (`dag.ts`)
   */
  _shape = 0;
  _target: TaskTarget;
  _ctx: RunContext | undefined;
  _dependents: Task<unknown>[] | undefined = undefined;
  /** one waiter, or several (most refs have none or one) */
  _waiters: Waiter | Waiter[] | undefined = undefined;
  _promise: Promise<T> | undefined = undefined;
  _resolve: ((v: unknown) => void) | undefined = undefined;
  _reject: ((e: unknown) => void) | undefined = undefined;
  /** stops the running body (fiber interrupt, remote cancel) */ _abort: (() => void) | undefined = undefined;
  _meta: TaskMeta | undefined = undefined;
  /** slot owned by tracing (the task's span) */ _trace: unknown = undefined;
  /** index in its mesh's {@link TaskRoster} while unsettled (-1: on none) */ _rosterSlot = -1;
  /**
   * its parent and children (structured cancellation), made only for a task that has either. Not
   * initialized: one more field on every task measurably slowed the task path on Bun (chain and
   * fan-out), while a property added to the few tasks with a family costs nothing to others
   */
  declare _family: Family | undefined;
  /** set by `release()` (not initialized, as `_family`: only released tasks get it) */
  declare _released: true | undefined;
  /** the kept values (of its inputs) it carries while unsettled, unpinned when it settles (see `pinInput`) */
  declare _pins: LazyValue[] | undefined;

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

  /**
   * `performance.now()` when its last input resolved (its submission time when none was pending
   * then); 0 while it waits for inputs, when one failed, or when not recorded.
   */
  get readyAt(): number {
    const m = this._meta;
    if (m === undefined) return 0;
    if (m.readyAt > 0) return m.readyAt;
    return this._pending === 0 ? m.submittedAt : 0;
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

  /** For a streaming call, once its stream ended and while events are recorded: its item count. */
  get streamItems(): number | undefined {
    return this._meta?.streamItems;
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

  /**
   * A real Promise of the result (created on first use, then reused). Asked from inside the body of
   * a call that this ref is, or waits for, it rejects at once with a `TypeError` naming the cycle
   * (that wait would never end).
   */
  promise(): Promise<T> {
    if (awaitProbe !== undefined && this._meta !== undefined) awaitProbe(this);
    if (this._released === true) return Promise.reject(releasedError(this as Task<unknown>));
    const cycle = cycleError(this as Task<unknown>);
    if (cycle !== undefined) return Promise.reject(cycle);
    if (this._promise !== undefined) return this._promise;
    // a value kept on a node (a LazyValue) is fetched by the first await, once
    if (this._state === COMPLETED) return (this._promise = Promise.resolve(materialized(this._value) as T));
    if (this._state >= FAILED) return (this._promise = Promise.reject(this._error));
    waiterAdded(); // until it settles: a slot's grace timer holds the process for it
    return (this._promise = new Promise<T>((resolve, reject) => {
      this._resolve = resolve as (v: unknown) => void;
      this._reject = reject;
    }));
  }

  /** The result as an Effect: succeeds with the value, fails with the same error instance `await` rejects with. */
  get effect(): Effect.Effect<T, TaskError> {
    return Effect.callback<T, TaskError>((resume) => {
      if (this._released === true) return resume(Effect.fail(releasedError(this as Task<unknown>)));
      if (this._state === COMPLETED) return resume(succeeded<T>(this._value));
      if (this._state >= FAILED) return resume(Effect.fail(this._error as TaskError));
      const cycle = cycleError(this as Task<unknown>);
      if (cycle !== undefined) return resume(Effect.die(cycle)); // a defect, as await's TypeError
      let waits = true;
      const waiter = (ref: Task<unknown>) => {
        waits = false;
        waiterDone();
        resume(ref._state === COMPLETED ? succeeded<T>(ref._value) : Effect.fail(ref._error as TaskError));
      };
      addWaiter(this as Task<unknown>, waiter);
      waiterAdded();
      return Effect.sync(() => {
        if (!waits) return;
        waits = false;
        waiterDone();
        removeWaiter(this as Task<unknown>, waiter);
      });
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
    // a streaming call completed when its stream started: cancelling stops the stream
    if (this._state >= COMPLETED) return this._value instanceof Stream && this._value.cancel();
    cancelTask(this as Task<unknown>, new CancelledError(this._target));
    return true;
  }

  /**
   * Why this task is not done yet: the inputs it waits for (recursively, down to those running or
   * stuck), the slot it waits for and what is ahead of it, its node and whether that node answered
   * its last keepalive, and for how long. Costs nothing until called; see `explain.ts`.
   */
  explain(): Explanation {
    return explainTask(this as Task<unknown>);
  }

  /**
   * Gives up this process's hold on the result: a result kept on a node is freed there once no call
   * in flight carries it (an argument of a call sent but not finished), without waiting for the
   * garbage collector, and so are the copies of a `put` value stored on nodes once its last ref is
   * released; a value held here is left to it. Idempotent. Awaiting the ref or passing it
   * to a call afterwards fails with `ReleasedError`. A pending ref's result is freed when it comes.
   */
  release(): void {
    if (this._released === true) return;
    this._released = true;
    if (this._state === COMPLETED) {
      const v = this._value;
      if (v instanceof LazyValue) v.release();
      else this._target.released?.(this as Task<unknown>);
    } else if (this._state === PENDING || this._state === RUNNING) addWaiter(this as Task<unknown>, releaseWhenSettled);
  }

  /** `release()`, for `using ref = op.go(...)`. */
  [Symbol.dispose](): void {
    this.release();
  }

  /** Plain-text form for logs. */
  toString(): string {
    return `ObjectRef(${this.id}, ${this.status})`;
  }

  /** What `JSON.stringify` writes: the plain-text form, never the call's arguments or its value. */
  toJSON(): string {
    return this.toString();
  }
}

/**
 * The error of awaiting `ref` from where that wait never ends: inside the body of the call that
 * `ref` is, or that `ref` waits for through its inputs; else `undefined`. The body is the one whose
 * synchronous part runs now, or the one the context names (a body runs in a context of its own
 * unless it is known to submit nothing: then it is not told apart from its caller).
 */
/**
 * The TypeError of waiting for `ref` from inside the body of a call it waits for (the wait would
 * never end), else `undefined`: what `await`, `ref.effect`, `all`, `wait` and `asCompleted` check
 * before they wait. Costs a check of a flag until some body has run in a context.
 */
export function cycleError(ref: Task<unknown>, body: Task<unknown> | undefined = waitingBody()): TypeError | undefined {
  return ref._state < COMPLETED && body !== undefined ? awaitCycle(ref, body) : undefined;
}

/**
 * The call whose body runs now (whose waits {@linkcode cycleError} checks), or `undefined`: found
 * once for a wait on many refs. A flag's check until some body has run in a context.
 */
export function waitingBody(): Task<unknown> | undefined {
  if (!contextEntered) return undefined;
  const body = (runningBody.task ?? currentContext()?.parent) as Task<unknown> | undefined;
  return body !== undefined && body._state === RUNNING ? body : undefined;
}

function awaitCycle(ref: Task<unknown>, body: Task<unknown>): TypeError | undefined {
  if (ref === body) {
    return new TypeError(
      `${ref.id} awaited its own result from inside its body: it would wait for itself forever. Return ` +
        "the value instead, or await the ref outside the body",
    );
  }
  if (ref._state !== PENDING || ref._pending === 0) return undefined;
  const path = waitPath(ref, body);
  if (path === undefined) return undefined;
  return new TypeError(
    `${body.id} awaited ${ref.id}, which waits for ${body.id} itself (${
      [...path, body].map((t) => t.id).join(" → ")
    }): from inside ${body.id}'s body that wait would never end. Await it outside the body, or let it run ` +
      "after this call without awaiting it (ta.detach)",
  );
}

/** The error of using `ref` after its release. */
export function releasedError(ref: Task<unknown>): ReleasedError {
  return new ReleasedError(ref.id, ref._target);
}

/**
 * A released ref settled: its kept value is released once the dependents it settled among have
 * pinned it (they do so in this same turn, see `flushSettled`), hence a microtask later.
 */
function releaseWhenSettled(ref: Task<unknown>): void {
  const v = ref._value;
  if (ref._state === COMPLETED && v instanceof LazyValue) queueMicrotask(() => v.release());
}

/**
 * `task` carries `input`'s kept value (a result that stayed on a node) until it settles: the value
 * is not freed meanwhile, even when `input` is released.
 */
export function pinInput(task: Task<unknown>, value: LazyValue): void {
  value.pin();
  (task._pins ??= []).push(value);
}

/** How many tasks this process has made (the last task's `seq`). */
export function submittedCount(): number {
  return counter;
}

/** Numeric states of `_state`. */
export const State = { PENDING, RUNNING, COMPLETED, FAILED, CANCELLED } as const;

/**
 * Cancels an unsettled task with `error`: a pending one never starts (its target forgets
 * it, giving back any slot it held), a running one is stopped where its executor can.
 */
export function cancelTask(task: Task<unknown>, error: CancelledError): void {
  stopTask(task, CANCELLED, error);
}

/**
 * Fails or cancels an unsettled task as its input `input` did (the same state and error, as
 * `flushSettled` does to the dependents that wait for an input), wherever it is: a pending one
 * never starts, a running one is stopped where its executor can. For a dependent sent ahead to a
 * node naming the input's result (`pipeline.ts`): that result may still come there (the body
 * finished before the cancel reached it), and the dependent must not run with it.
 */
export function failWithInput(task: Task<unknown>, input: Task<unknown>): void {
  stopTask(task, input._state, input._error);
}

function stopTask(task: Task<unknown>, state: number, error: unknown): void {
  const wasPending = task._state === PENDING;
  const abort = task._abort;
  task._abort = undefined;
  task._args = undefined;
  settle(task, state, error);
  if (wasPending) task._target.dropped?.(task);
  abort?.();
}

// ---- a mesh's unsettled tasks -----------------------------------------------------------------

/**
 * The unsettled tasks submitted in one mesh, so that closing it can cancel those not
 * started, wherever they wait (for inputs, in the ready queue, for a slot). Adding and removing are
 * O(1) with no allocation: the array grows in place and a task records its index in `_rosterSlot`;
 * removal moves the last task into the hole. A task leaves when it settles, so the roster holds no
 * results, only work still to do.
 */
export class TaskRoster {
  private tasks: Task<unknown>[] = [];
  /**
   * The mesh's service method calls not yet settled, listed only while a stuck-work watchdog looks
   * at this roster (`watchdog.ts`): closing the mesh leaves those to their instances' mailboxes, so
   * they are kept apart from the op calls it cancels. `undefined` while no watchdog looks.
   */
  calls: TaskRoster | undefined = undefined;

  add(task: Task<unknown>): void {
    task._rosterSlot = this.tasks.length;
    this.tasks.push(task);
  }

  remove(task: Task<unknown>): void {
    const i = task._rosterSlot;
    task._rosterSlot = -1;
    const last = this.tasks.pop()!;
    if (last !== task) {
      this.tasks[i] = last;
      last._rosterSlot = i;
    }
  }

  /** How many unsettled tasks it holds. */
  get size(): number {
    return this.tasks.length;
  }

  /** Calls `fn` with each unsettled task it holds (for the stuck-work watchdog; `fn` must not settle any). */
  forEach(fn: (task: Task<unknown>) => void): void {
    const tasks = this.tasks;
    for (let i = 0; i < tasks.length; i++) fn(tasks[i]);
  }

  /** Empties the roster and returns what it held; those tasks no longer leave it when they settle. */
  takeAll(): Task<unknown>[] {
    const tasks = this.tasks;
    this.tasks = [];
    for (let i = 0; i < tasks.length; i++) tasks[i]._rosterSlot = -1;
    return tasks;
  }
}

// ---- structured cancellation: a body's children ----------------------------------------------

/**
 * A task's place in the tree of bodies and what they submitted: made for a task that has a parent
 * or children, so a task that has neither (most, on the hot path) carries one empty field.
 */
export interface Family {
  /** The task whose body submitted it, while both are unsettled (cancelling that cancels this). */
  parent: Task<unknown> | undefined;
  /** Its index in its parent's `children`. */
  slot: number;
  /** The unsettled tasks its body submitted (made on the first). */
  children: Task<unknown>[] | undefined;
}

/** Whether a task that settled as `state` with `error` takes its children with it (cancel, deadline). */
function endsChildren(state: number, error: unknown): boolean {
  return state === CANCELLED || (state === FAILED && error instanceof TimeoutError);
}

/**
 * Makes `child` a child of `parent`, the task whose body submitted it: cancelling the parent, or its
 * deadline passing, cancels the child. A parent already cancelled (its body still runs, as a
 * JavaScript function cannot be stopped) gets no new work: the child is cancelled at once. A parent
 * that already finished has no children: the child is a root.
 *
 * @returns `false` when the child was cancelled here.
 */
export function adoptChild(parent: Task<unknown>, child: Task<unknown>): boolean {
  if (parent._state < COMPLETED) {
    parent._target.leafRuns = -1; // its later bodies run in a context of their own
    const family = parent._family ??= { parent: undefined, slot: -1, children: undefined };
    const kids = family.children ??= [];
    const own = child._family;
    if (own === undefined) child._family = { parent, slot: kids.length, children: undefined };
    else {
      own.parent = parent;
      own.slot = kids.length;
    }
    kids.push(child);
    return true;
  }
  if (!endsChildren(parent._state, parent._error)) return true;
  child._args = undefined;
  settle(
    child,
    CANCELLED,
    new CancelledError(
      child._target,
      `not started: its parent ${parent.id} was ${parent._state === CANCELLED ? "cancelled" : "past its deadline"}`,
      "parent",
    ),
  );
  return false;
}

/** Takes `child` off its parent's children (it settled, or was detached): O(1), the last one fills the hole. */
export function leaveParent(child: Task<unknown>): void {
  const family = child._family;
  const parent = family?.parent;
  if (parent === undefined) return;
  const kids = parent._family!.children;
  const i = family!.slot;
  family!.parent = undefined;
  family!.slot = -1;
  if (kids === undefined) return;
  const last = kids.pop()!;
  if (last !== child) {
    kids[i] = last;
    last._family!.slot = i;
  }
}

/** `ref` settled: it leaves its parent, and its children are cancelled with it or let go. */
function settleFamily(ref: Task<unknown>, state: number, valueOrError: unknown): void {
  const family = ref._family!;
  if (family.parent !== undefined) leaveParent(ref);
  if (family.children !== undefined) releaseChildren(ref, state, valueOrError);
}

// children to cancel, worked off in a loop so a deep tree of running bodies never recurses
const orphans: Task<unknown>[] = [];
const orphanParents: Task<unknown>[] = [];
let cancellingOrphans = false;

/**
 * `parent` settled: its children are cancelled when it was cancelled or passed its deadline, and
 * otherwise let go (a parent that finished leaves what it started running, as roots).
 */
function releaseChildren(parent: Task<unknown>, state: number, error: unknown): void {
  const kids = parent._family!.children!;
  parent._family!.children = undefined;
  const cancel = endsChildren(state, error);
  for (let i = 0; i < kids.length; i++) {
    const kid = kids[i];
    const family = kid._family!;
    family.parent = undefined;
    family.slot = -1;
    if (cancel) {
      orphans.push(kid);
      orphanParents.push(parent);
    }
  }
  if (!cancel || cancellingOrphans) return;
  cancellingOrphans = true;
  try {
    for (let i = 0; i < orphans.length; i++) {
      const kid = orphans[i];
      if (kid._state >= COMPLETED) {
        // a call whose stream the parent read (`stream_call.ts`): the stream stops with its reader
        if (kid._value instanceof Stream) kid._value.cancel(streamOrphaned(kid, orphanParents[i]));
        continue;
      }
      const p = orphanParents[i];
      cancelTask(
        kid,
        new CancelledError(
          kid._target,
          `cancelled with its parent ${p.id} (${p._state === CANCELLED ? "cancelled" : "past its deadline"})`,
          "parent",
        ),
      );
    }
  } finally {
    orphans.length = 0;
    orphanParents.length = 0;
    cancellingOrphans = false;
  }
}

/** Why the stream of `kid`, a call whose stream `reader`'s body read, stopped: its reader was cancelled. */
function streamOrphaned(kid: Task<unknown>, reader: Task<unknown>): CancelledError {
  const why = reader._state === CANCELLED ? "cancelled" : "past its deadline";
  return new CancelledError(kid._target, `stopped mid-stream: the body reading it (${reader.id}) was ${why}`, "parent");
}

/** Something told when a ref settles. */
export type Waiter = (ref: Task<unknown>) => void;

export function addWaiter(ref: Task<unknown>, w: Waiter): void {
  if (awaitProbe !== undefined && ref._meta !== undefined) awaitProbe(ref);
  const ws = ref._waiters;
  if (ws === undefined) ref._waiters = w;
  else if (typeof ws === "function") ref._waiters = [ws, w];
  else ws.push(w);
}

export function removeWaiter(ref: Task<unknown>, w: Waiter): void {
  const ws = ref._waiters;
  if (ws === w) ref._waiters = undefined;
  else if (Array.isArray(ws)) {
    const i = ws.indexOf(w);
    if (i >= 0) ws.splice(i, 1);
  }
}

// ---- settling: a worklist, so long chains never recurse ----------------------------------------

const settledQueue: Task<unknown>[] = [];
let flushing = false;

/** Settles a task (once) and notifies its dependents and waiters, iteratively. */
export function settle(ref: Task<unknown>, state: number, valueOrError: unknown): void {
  if (ref._state >= COMPLETED) return;
  ref._state = state;
  if (state === COMPLETED) ref._value = valueOrError;
  else ref._error = valueOrError;
  ref._abort = undefined;
  if (ref._rosterSlot !== -1) {
    const roster = ref._ctx!.mesh!.roster!;
    (ref._target.kind === "op" ? roster : roster.calls!).remove(ref);
  }
  if (ref._pins !== undefined) {
    const pins = ref._pins;
    ref._pins = undefined;
    for (let i = 0; i < pins.length; i++) pins[i].unpin();
  }
  if (ref._family !== undefined) settleFamily(ref, state, valueOrError);
  if (ref._meta !== undefined) {
    const at = performance.now();
    ref._meta.settledAt = at;
    emit(state === COMPLETED ? "finished" : state === FAILED ? "failed" : "cancelled", ref, at);
  }
  if (ref._resolve !== undefined) {
    waiterDone();
    if (state === COMPLETED) {
      ref._resolve(valueOrError instanceof LazyValue ? valueOrError.materialize() : valueOrError);
    } else ref._reject!(valueOrError);
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
        // a value kept on a node stays there while the dependents that carry it are unsettled
        const kept = ref._value instanceof LazyValue ? ref._value : undefined;
        for (let j = 0; j < deps.length; j++) {
          const d = deps[j];
          if (kept !== undefined && d._state === PENDING) pinInput(d, kept);
          if (d._state === PENDING && --d._pending === 0) {
            // the input that settled last made it ready: from here on it waits for a slot
            const m = d._meta;
            if (m !== undefined) m.readyAt = ref._meta !== undefined ? ref._meta.settledAt : performance.now();
            startReady(d);
          }
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

function startReady(task: Task<unknown>): void {
  try {
    task._target.ready(task);
  } catch (e) {
    // a target must not throw; if it does, the task fails instead of hanging
    settle(task, FAILED, e);
  }
}
