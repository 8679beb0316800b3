/**
 * Running a ready task's body in this process: `fn.apply(self, args)` in the task's run context,
 * as a plain call (no fiber, no closure per call), then settling the task. A body with a retry or
 * deadline policy goes to `policy.ts` instead. Ops and service replicas both start their calls
 * here; a remote call is a body like any other (it sends a frame and awaits the answer).
 *
 * @module
 */
import { type CancelHook, isAbortable } from "./cancel.ts";
import { currentContext, leaveParentContext, type RunContext, runningBody } from "./context.ts";
import { bodyWrapper, emit, eventsEnabled, listening, sampling } from "./events.ts";
import { resolveArgs } from "./dag.ts";
import { ThinkagainError } from "./errors.ts";
import { materializeArgs } from "./lazy_value.ts";
import { callBody, failure, isThenable } from "./invoke.ts";
import { type RunPolicy, runWithPolicy } from "./policy.ts";
import { unsampled, unsampledContext } from "./record.ts";
import { isStreaming } from "./stream.ts";
import { startStream } from "./stream_call.ts";
import { settle, State, type Task } from "./task.ts";

const { RUNNING, COMPLETED, FAILED } = State;

/**
 * How many bodies of an op or method run in a context of their own before, none of them having
 * submitted a call, the rest run in their caller's context (a context switch per body costs more
 * than the rest of a small task). What a body submits is its child either way when it submits
 * before its first await, or when it awaited only refs it submitted; a body in its caller's context
 * that first awaits something else and only then submits is the one case not tracked. A target
 * whose body ever submits a call runs every later body in a context of its own.
 */
export const LEAF_RUNS = 64;

/** Gives an abortable body its cancel hook (last argument), fired by `task.cancel()`. */
function attachCancelHook(task: Task<unknown>, args: unknown[]): void {
  const hook: CancelHook = { cancel: undefined, task };
  task._abort = () => hook.cancel?.();
  args.push(hook);
}

/**
 * Settles `task` with the body's result `r` (a value or a thenable), then calls `done`; a stream
 * (an async iterable) holds `done` until it ends (`stream_call.ts`).
 */
function finish(
  task: Task<unknown>,
  r: unknown,
  done: ((task: Task<unknown>) => void) | undefined,
  ctx: RunContext | undefined,
): void {
  try {
    if (isThenable(r)) {
      // a foreign thenable is adopted by a real promise: a then() that throws becomes a rejection and
      // one that answers twice is answered once, so neither can keep or double-release the slot
      (r instanceof Promise ? r : Promise.resolve(r)).then(
        (v) => {
          if (isStreaming(v)) return startStream(task, v, ctx, done);
          settle(task, COMPLETED, v);
          if (done !== undefined) done(task);
        },
        (e) => {
          settle(task, FAILED, failure(task, e));
          if (done !== undefined) done(task);
        },
      );
      return;
    }
  } catch (e) {
    // a `then` getter that throws, or a promise subclass whose then() does
    settle(task, FAILED, failure(task, e));
    if (done !== undefined) done(task);
    return;
  }
  if (isStreaming(r)) return startStream(task, r, ctx, done);
  settle(task, COMPLETED, r);
  if (done !== undefined) done(task);
}

/**
 * Runs a ready task's body `fn.apply(self, args)` in `ctx`, settles the task and calls
 * `done` once the body has finished (also when it was cancelled meanwhile).
 */
export function runBody(
  task: Task<unknown>,
  fn: (...args: unknown[]) => unknown,
  self: unknown,
  ctx: RunContext | undefined,
  policy: RunPolicy | undefined,
  done: ((task: Task<unknown>) => void) | undefined,
): void {
  task._state = RUNNING;
  const args = resolveArgs(task);
  // a value kept on a node reaches a body here fetched; a remote body (abortable) passes it on as
  // a reference instead
  if (task._shape !== 0 && !isAbortable(fn)) {
    const fetching = materializeArgs(args);
    if (fetching !== undefined) {
      fetching.then(() => {
        if (task._state === RUNNING) runResolved(task, args, fn, self, ctx, policy, done);
        else if (done !== undefined) done(task); // cancelled while its inputs were fetched
      }, (e) => {
        settle(task, FAILED, e instanceof ThinkagainError ? e : failure(task, e));
        if (done !== undefined) done(task);
      });
      return;
    }
  }
  runResolved(task, args, fn, self, ctx, policy, done);
}

/** {@linkcode runBody} once the arguments are here. */
function runResolved(
  task: Task<unknown>,
  args: unknown[],
  fn: (...args: unknown[]) => unknown,
  self: unknown,
  ctx: RunContext | undefined,
  policy: RunPolicy | undefined,
  done: ((task: Task<unknown>) => void) | undefined,
): void {
  const recorded = task._meta !== undefined;
  let flagged = false;
  const target = task._target, runs = target.leafRuns;
  if (runs !== undefined && runs < LEAF_RUNS) {
    // not yet known to submit nothing: a context of its own, so children after any await are known
    if (runs >= 0) target.leafRuns = runs + 1;
    if (!recorded) ctx = { mesh: ctx?.mesh, instance: ctx?.instance, task: ctx?.task, parent: task };
  }
  if (recorded) {
    const now = performance.now();
    task._meta!.startedAt = now;
    emit("started", task, now);
    // the body's own .go() calls record this task as their caller (and are its children)
    ctx = { mesh: ctx?.mesh, instance: ctx?.instance, task, parent: task };
  } else if (listening && (eventsEnabled || policy !== undefined || ctx !== undefined) && sampling()) {
    // sampled out: what the body submits is left out with it, not sampled anew as a root. Where the
    // body switches context anyway (service methods, other meshes, retries and deadlines) the switch
    // carries that, also while a spent budget has shut the gate (it may open before the body's next
    // .go()); else a flag does, for what it submits before its first await (an extra switch per task
    // costs more than the sampling saves; with the gate shut nothing is sampled anew)
    if (policy !== undefined || (ctx !== undefined && currentContext() !== ctx)) ctx = unsampledContext(ctx);
    else if (eventsEnabled) flagged = true;
  }
  const abortable = isAbortable(fn);
  const wrap = recorded ? bodyWrapper : undefined;
  if (policy !== undefined) return runWithPolicy(task, fn, self, args, ctx, policy, abortable, wrap, done);
  if (abortable) attachCancelHook(task, args);
  let r: unknown;
  if (flagged) unsampled.depth++;
  // what the body submits before its first await is its child: known from here, with no context switch
  const outerTask = runningBody.task;
  runningBody.task = task;
  try {
    r = callBody(task, fn, self, args, ctx, wrap);
  } catch (e) {
    settle(task, FAILED, failure(task, e));
    if (done !== undefined) done(task);
    return;
  } finally {
    const entered = runningBody.entered;
    if (entered !== undefined && entered.owner === task) leaveParentContext();
    runningBody.task = outerTask;
    if (flagged) unsampled.depth--;
  }
  finish(task, r, done, ctx);
}
