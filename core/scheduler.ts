/**
 * The scheduler: a task starts when its last unresolved input resolves (counted, never polled);
 * tasks ready at submission start from one microtask-drained queue; a body runs as a plain call
 * unless it has a retry or deadline policy, which runs it as an Effect fiber (Schedule, timeout,
 * interruption). Concurrency limits are small counting semaphores with a FIFO of waiting tasks.
 *
 * @module
 */
import { Cause, Effect, Exit } from "effect";
import { applyInContext, contextEntered, currentContext, NO_CONTEXT, type RunContext } from "./context.ts";
import { OpExecutionError, ThinkagainError, TimeoutError } from "./errors.ts";
import {
  type BodyWrapper,
  bodyWrapper,
  emit,
  eventsEnabled,
  listening,
  sampling,
  shouldRecord,
  submitProbe,
} from "./events.ts";
import { ObjectRef, resolveArgs, scanArgs, settle, State, type TaskTarget } from "./object_ref.ts";

const { PENDING, RUNNING, COMPLETED, FAILED } = State;

// ---- submission --------------------------------------------------------------------------------

const readyQueue: ObjectRef<unknown>[] = [];
let drainScheduled = false;

function drainReady(): void {
  drainScheduled = false;
  // tasks that become ready while draining (sync ops completing) are appended and run in this loop
  for (let i = 0; i < readyQueue.length; i++) {
    const task = readyQueue[i];
    if (task._state !== PENDING) continue;
    try {
      task._target.ready(task);
    } catch (e) {
      settle(task, FAILED, e);
    }
  }
  readyQueue.length = 0;
}

/**
 * @internal Creates the task for one call and wires it into the DAG. `enqueue` (a service
 * replica's mailbox) sees the task at submission, so per-instance order is submission order.
 */
export function submit<T>(
  target: TaskTarget,
  args: unknown[],
  ctx: RunContext | undefined,
  enqueue?: (task: ObjectRef<unknown>) => void,
): ObjectRef<T> {
  if (submitProbe !== undefined) submitProbe();
  const task = new ObjectRef<T>(target, args, ctx);
  if (eventsEnabled) record(task as ObjectRef<unknown>, ctx);
  else if (listening && ctx?.task !== undefined) record(task as ObjectRef<unknown>, ctx); // gate closed: a recorded caller's
  if (args.length !== 0) scanArgs(task as ObjectRef<unknown>, args);
  if (task._state !== PENDING) return task; // an input had already failed
  if (enqueue !== undefined) enqueue(task as ObjectRef<unknown>);
  if (task._pending === 0) {
    readyQueue.push(task as ObjectRef<unknown>);
    if (!drainScheduled) {
      drainScheduled = true;
      queueMicrotask(drainReady);
    }
  }
  return task;
}

/** Gives an abortable body its cancel hook (last argument), fired by `task.cancel()`. */
function attachCancelHook(task: ObjectRef<unknown>, args: unknown[]): void {
  const hook: CancelHook = { cancel: undefined };
  task._abort = () => hook.cancel?.();
  args.push(hook);
}

/** > 0 while a sampled-out body runs synchronously outside any context switch. */
let unsampledDepth = 0;

/** Settles `task` with the body's result `r` (a value or a thenable), then calls `done`. */
function finish(task: ObjectRef<unknown>, r: unknown, done: ((task: ObjectRef<unknown>) => void) | undefined): void {
  if (isThenable(r)) {
    r.then(
      (v) => {
        settle(task, COMPLETED, v);
        if (done !== undefined) done(task);
      },
      (e) => {
        settle(task, FAILED, failure(task, e));
        if (done !== undefined) done(task);
      },
    );
  } else {
    settle(task, COMPLETED, r);
    if (done !== undefined) done(task);
  }
}

/** Stands as the calling task of tasks submitted from a sampled-out body: it is not recorded. */
const UNSAMPLED_TASK: { _meta: undefined } = { _meta: undefined };
const unsampledRoot: RunContext = { mesh: undefined, task: UNSAMPLED_TASK };
const unsampledVariants = new WeakMap<RunContext, RunContext>();

function unsampledContext(ctx: RunContext | undefined): RunContext {
  if (ctx === undefined) return unsampledRoot;
  if (ctx.task === UNSAMPLED_TASK) return ctx;
  let u = unsampledVariants.get(ctx);
  if (u === undefined) unsampledVariants.set(ctx, u = { mesh: ctx.mesh, instance: ctx.instance, task: UNSAMPLED_TASK });
  return u;
}

/** Starts recording a task for the event stream (unless sampling leaves it out). */
function record(task: ObjectRef<unknown>, ctx: RunContext | undefined): void {
  const caller = ctx?.task as ObjectRef<unknown> | undefined;
  if (unsampledDepth > 0 && sampling()) return;
  if (!shouldRecord(caller)) return;
  const parent = (caller as unknown) === UNSAMPLED_TASK ? undefined : caller;
  const now = performance.now();
  task._meta = {
    submittedAt: now,
    // -0, not 0: the fields start as doubles, so storing the clock reading later keeps the object's
    // shape (a 0 makes them small-integer fields that every first store must widen; on Deno that
    // cost ~0.5 µs per task)
    startedAt: -0,
    settledAt: -0,
    attempt: 0,
    parent,
    deps: [],
    node: task._target.node,
  };
  emit("submitted", task, now);
}

/** @internal A task that fails before it could be submitted anywhere (closed mesh, no placement). */
export function failedRef<T>(target: TaskTarget, error: unknown): ObjectRef<T> {
  const task = new ObjectRef<T>(target, undefined, undefined);
  if (listening) record(task as ObjectRef<unknown>, currentContext());
  settle(task as ObjectRef<unknown>, FAILED, error);
  return task;
}

// ---- running a body -----------------------------------------------------------------------------

/** Retry and deadline policy of an op or method. */
export interface RunPolicy {
  /** Extra attempts after a failure (0: none). */
  readonly retries: number;
  /** Deadline for the whole call including retries, in ms (0: none). */
  readonly timeoutMs: number;
}

/**
 * @internal Marks a body that takes a {@link CancelHook} as an extra last argument (remote calls):
 * its `cancel` runs when the task is cancelled or its deadline passes. A plain object, not an
 * AbortController, because it is made once per remote call.
 */
export const ABORTABLE: unique symbol = Symbol("thinkagain.abortable");

/** @internal What an abortable body receives: set `cancel` to be told when the call is abandoned. */
export interface CancelHook {
  cancel: (() => void) | undefined;
}

/** The error a task fails with when its body threw `e`. */
function failure(task: ObjectRef<unknown>, e: unknown): unknown {
  return task._target.passErrors === true && e instanceof ThinkagainError
    ? e
    : new OpExecutionError(task._target.name, e);
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && (typeof v === "object" || typeof v === "function") &&
    typeof (v as { then?: unknown }).then === "function";
}

/**
 * @internal Runs a ready task's body `fn.apply(self, args)` in `ctx`, settles the task and calls
 * `done` once the body has finished (also when it was cancelled meanwhile).
 */
export function runBody(
  task: ObjectRef<unknown>,
  fn: (...args: unknown[]) => unknown,
  self: unknown,
  ctx: RunContext | undefined,
  policy: RunPolicy | undefined,
  done: ((task: ObjectRef<unknown>) => void) | undefined,
): void {
  task._state = RUNNING;
  const args = resolveArgs(task);
  const recorded = task._meta !== undefined;
  let flagged = false;
  if (recorded) {
    const now = performance.now();
    task._meta!.startedAt = now;
    emit("started", task, now);
    // the body's own .go() calls record this task as their caller
    ctx = { mesh: ctx?.mesh, instance: ctx?.instance, task };
  } else if (listening && (eventsEnabled || policy !== undefined || ctx !== undefined) && sampling()) {
    // sampled out: what the body submits is left out with it, not sampled anew as a root. Where the
    // body switches context anyway (service methods, other meshes, retries and deadlines) the switch
    // carries that, also while a spent budget has shut the gate (it may open before the body's next
    // .go()); else a flag does, for what it submits before its first await (an extra switch per task
    // costs more than the sampling saves, ~150 ns on Deno; with the gate shut nothing is sampled anew)
    if (policy !== undefined || (ctx !== undefined && currentContext() !== ctx)) ctx = unsampledContext(ctx);
    else if (eventsEnabled) flagged = true;
  }
  const abortable = (fn as { [ABORTABLE]?: boolean })[ABORTABLE] === true;
  const wrap = recorded ? bodyWrapper : undefined;
  if (policy !== undefined) return runWithPolicy(task, fn, self, args, ctx, policy, abortable, wrap, done);
  if (abortable) attachCancelHook(task, args);
  let r: unknown;
  if (flagged) unsampledDepth++;
  try {
    r = call(task, fn, self, args, ctx, wrap);
  } catch (e) {
    settle(task, FAILED, failure(task, e));
    if (done !== undefined) done(task);
    return;
  } finally {
    if (flagged) unsampledDepth--;
  }
  finish(task, r, done);
}

/**
 * Calls the body `fn.apply(self, args)` in `ctx` (switching only when it is not current already),
 * through the body wrapper when one is given. No closure per call: the hot path allocates nothing here.
 */
function call(
  task: ObjectRef<unknown>,
  fn: (...args: unknown[]) => unknown,
  self: unknown,
  args: unknown[],
  ctx: RunContext | undefined,
  wrap: BodyWrapper | undefined,
): unknown {
  if (ctx === undefined && contextEntered && currentContext() !== undefined) {
    // submitted outside any mesh, but started from inside one (a drain or a settle that ran there):
    // it must not take that mesh, instance or caller as its own
    ctx = NO_CONTEXT;
  }
  if (ctx !== undefined && currentContext() !== ctx) {
    return wrap === undefined
      ? applyInContext(ctx, fn, self, args)
      : applyInContext(ctx, wrap as (...a: unknown[]) => unknown, undefined, [task, fn, self, args]);
  }
  return wrap === undefined ? fn.apply(self, args) : wrap(task, fn, self, args);
}

function runWithPolicy(
  task: ObjectRef<unknown>,
  fn: (...args: unknown[]) => unknown,
  self: unknown,
  args: unknown[],
  ctx: RunContext | undefined,
  policy: RunPolicy,
  abortable: boolean,
  wrap: BodyWrapper | undefined,
  done: ((task: ObjectRef<unknown>) => void) | undefined,
): void {
  const name = task._target.name;
  let attempts = 0;
  // settles once the latest attempt's body has returned. A deadline or a cancel settles the task at
  // once, but a local body cannot be stopped: its slot (the instance's mailbox, a concurrency limit)
  // is held until it returns, so the next call does not overlap it, for at most a grace period, so
  // a body that never returns cannot wedge the instance. A remote body (abortable) is stopped on its
  // node, whose own mailbox keeps the order: its slot is given back at once.
  let bodyReturned: Promise<void> | undefined;
  let bodyRunning = false;
  const attempt: Effect.Effect<unknown, OpExecutionError> = Effect.suspend(() => {
    if (attempts++ > 0 && task._meta) {
      task._meta.attempt = attempts - 1;
      emit("started", task, performance.now());
    }
    if (abortable) {
      // the signal aborts when this attempt is interrupted (cancel, deadline)
      return Effect.tryPromise({
        try: (signal) => {
          const hook: CancelHook = { cancel: undefined };
          signal.addEventListener("abort", () => hook.cancel?.(), { once: true });
          return Promise.resolve(call(task, fn, self, [...args, hook], ctx, wrap));
        },
        catch: (e) => failure(task, e) as OpExecutionError,
      });
    }
    let r: unknown;
    try {
      r = call(task, fn, self, args, ctx, wrap);
    } catch (e) {
      return Effect.fail(failure(task, e) as OpExecutionError);
    }
    if (!isThenable(r)) return Effect.succeed(r);
    const p = Promise.resolve(r);
    if (done !== undefined) {
      bodyRunning = true;
      const returned = () => {
        bodyRunning = false;
      };
      bodyReturned = p.then(returned, returned);
    }
    return Effect.tryPromise({ try: () => p, catch: (e) => failure(task, e) as OpExecutionError });
  });
  let program: Effect.Effect<unknown, OpExecutionError | TimeoutError> = policy.retries > 0
    ? Effect.retry(attempt, { times: policy.retries })
    : attempt;
  if (policy.timeoutMs > 0) {
    program = Effect.timeoutOrElse(program, {
      duration: policy.timeoutMs,
      orElse: () => Effect.fail(new TimeoutError(name, policy.timeoutMs)),
    });
  }
  const fiber = Effect.runFork(program);
  task._abort = () => fiber.interruptUnsafe();
  fiber.addObserver((exit) => {
    if (Exit.isSuccess(exit)) settle(task, COMPLETED, exit.value);
    else if (!Cause.hasInterruptsOnly(exit.cause)) settle(task, FAILED, Cause.squash(exit.cause));
    // interrupted: the task was cancelled, and cancel() already settled it
    if (done === undefined) return;
    if (!bodyRunning || bodyReturned === undefined) return done(task);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      clearTimeout(timer);
      done(task);
    };
    const timer = setTimeout(release, policy.timeoutMs > 0 ? policy.timeoutMs : OVERRUN_GRACE_MS);
    unrefTimer(timer); // a body left running must not keep the process alive on our account
    bodyReturned.then(release);
  });
}

/** @internal Lets a timer not hold the process open (Bun and Node: `unref()`; Deno: `Deno.unrefTimer`). */
export function unrefTimer(t: ReturnType<typeof setTimeout> | ReturnType<typeof setInterval>): void {
  if (typeof t === "object" && t !== null && typeof (t as { unref?: unknown }).unref === "function") {
    (t as unknown as { unref(): void }).unref();
  } else {
    (globalThis as { Deno?: { unrefTimer?(id: number): void } }).Deno?.unrefTimer?.(t as unknown as number);
  }
}

/** How long a cancelled body with no deadline may keep its slot before the next call starts anyway. */
const OVERRUN_GRACE_MS = 1_000;

// ---- concurrency limits -------------------------------------------------------------------------

/**
 * @internal A counting semaphore whose waiters are tasks; a released slot goes to the oldest
 * waiting task that is still pending.
 */
export class Limiter {
  readonly max: number;
  running = 0;
  private waiting: ObjectRef<unknown>[] = [];
  private head = 0;
  private resumes: Array<(task: ObjectRef<unknown>) => void> = [];

  constructor(max: number) {
    this.max = max;
  }

  /** Starts `task` through `start` now if a slot is free, else when one frees up. */
  acquire(task: ObjectRef<unknown>, start: (task: ObjectRef<unknown>) => void): void {
    if (this.running < this.max) {
      this.running++;
      start(task);
    } else {
      this.waiting.push(task);
      this.resumes.push(start);
    }
  }

  private releasing = false;

  /**
   * Frees a slot and hands it to the next waiting task. A task started here that finishes
   * synchronously releases from inside this loop: that nested release only frees its slot, and this
   * loop hands it on (no stack per queued task).
   */
  release(): void {
    this.running--;
    if (this.releasing) return;
    this.releasing = true;
    try {
      this.handOn();
    } finally {
      this.releasing = false;
    }
  }

  /**
   * Forgets the waiting tasks that settled meanwhile (a closed mesh cancelled them), so they are not
   * held until a slot frees, which may be never. Not while handing slots on (that loop skips them).
   */
  prune(): void {
    if (this.releasing) return;
    const waiting = this.waiting, resumes = this.resumes;
    let kept = 0;
    for (let i = this.head; i < waiting.length; i++) {
      if (waiting[i]._state !== PENDING) continue;
      waiting[kept] = waiting[i];
      resumes[kept] = resumes[i];
      kept++;
    }
    waiting.length = kept;
    resumes.length = kept;
    this.head = 0;
  }

  private handOn(): void {
    while (this.head < this.waiting.length && this.running < this.max) {
      const task = this.waiting[this.head];
      const start = this.resumes[this.head];
      this.waiting[this.head] = undefined as unknown as ObjectRef<unknown>;
      this.head++;
      if (task._state !== PENDING) continue;
      this.running++;
      start(task);
    }
    if (this.head === this.waiting.length) {
      this.waiting.length = 0;
      this.resumes.length = 0;
      this.head = 0;
    }
  }
}
