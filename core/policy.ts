/**
 * Retries and deadlines. A body with a policy runs as an Effect fiber (`Effect.retry`,
 * `Effect.timeoutOrElse`, interruption on cancel); a body without one runs as a plain call
 * (`run_body.ts`), because a fiber per task costs more than the whole task does.
 *
 * @module
 */
import { Cause, Effect, Exit } from "effect";
import type { CancelHook } from "./cancel.ts";
import { leaveParentContext, type RunContext, runningBody } from "./context.ts";
import { OpExecutionError, OverloadedError, TimeoutError } from "./errors.ts";
import { type BodyWrapper, emit } from "./events.ts";
import { describe } from "./describe.ts";
import { endGrace, startGrace } from "./grace.ts";
import { MAX_TIMER_MS } from "./long_timer.ts";
import { callBody, failure, isThenable } from "./invoke.ts";
import { isStreaming } from "./stream.ts";
import { startStream } from "./stream_call.ts";
import { settle, State, type Task } from "./task.ts";

const { COMPLETED, FAILED } = State;

/** Retry and deadline policy of an op or method. */
export interface RunPolicy {
  /** Extra attempts after a failure (0: none). */
  readonly retries: number;
  /** Deadline for the whole call including retries, in ms (0: none). */
  readonly timeoutMs: number;
}

/**
 * Validates a count option (`retries`, `gpus`, `maxConcurrency`) or `timeoutMs` of an op or service.
 *
 * @param what The option's name.
 * @param kind `"op"` or `"service"`.
 * @param name The op's or service's name.
 * @param v The value given.
 * @param min The smallest allowed value.
 * @returns The value, or `undefined` when not given.
 * @throws {RangeError} When the value is not allowed.
 *
 * @example
 * ```ts
 * import { checkCount } from "./policy.ts";
 * import { throws } from "node:assert/strict";
 * throws(() => checkCount("retries", "op", "f", -1, 0), RangeError);
 * ```
 */
export function checkCount(what: string, kind: string, name: string, v: unknown, min: number): number | undefined {
  if (v === undefined) return undefined;
  // a deadline may be Infinity (none); nothing else may be
  const finite = typeof v === "number" && (Number.isFinite(v) || (what === "timeoutMs" && v === Infinity));
  if (typeof v !== "number" || !finite || v < min || (what !== "timeoutMs" && !Number.isInteger(v))) {
    throw new RangeError(
      `${kind} "${name}": ${what} must be ${
        what === "timeoutMs" ? "a positive number (Infinity: none)" : `an integer ≥ ${min}`
      }, got ${describe(v)}`,
    );
  }
  return v;
}

/**
 * Validates and normalizes retry/deadline options into a policy (`undefined`: none).
 *
 * @param kind `"op"` or `"service"`.
 * @param name Its name.
 * @param retries The `retries` option.
 * @param timeoutMs The `timeoutMs` option.
 * @returns The policy, or `undefined` when neither is set.
 *
 * @example
 * ```ts
 * import { policyOf } from "./policy.ts";
 * if (policyOf("op", "f", undefined, undefined) !== undefined) throw new Error("expected none");
 * ```
 */
export function policyOf(kind: string, name: string, retries: unknown, timeoutMs: unknown): RunPolicy | undefined {
  const r = checkCount("retries", kind, name, retries, 0) ?? 0;
  const given = timeoutMs === undefined ? 0 : checkCount("timeoutMs", kind, name, timeoutMs, Number.MIN_VALUE)!;
  const t = given === Infinity ? 0 : given; // Infinity: no deadline
  return r > 0 || t > 0 ? { retries: r, timeoutMs: t } : undefined;
}

/** Failures of bodies that ran on a node (see `runWithPolicy`): not retried by the caller. */
const ranOnNode = new WeakSet<object>();
const notRunOnNode = (e: unknown): boolean => !(typeof e === "object" && e !== null && ranOnNode.has(e));

/**
 * The pause before retrying a call refused with `OverloadedError` for the `n`-th time (from 0):
 * 10 ms doubling up to 1 s, with up to half of it added at random so refused callers spread out.
 *
 * @param n How many overload refusals this call met before.
 * @returns The pause in ms.
 *
 * @example
 * ```ts
 * import { overloadBackoffMs } from "./policy.ts";
 * const first = overloadBackoffMs(0);
 * if (first < 10 || first > 15 || overloadBackoffMs(20) > 1500) throw new Error("unexpected");
 * ```
 */
export function overloadBackoffMs(n: number): number {
  const base = Math.min(1_000, 10 * 2 ** Math.min(n, 10));
  return base + Math.random() * base / 2;
}

/**
 * Runs a ready task's body under its policy as an Effect fiber, settles the task, and calls `done`
 * once the body has returned (or a grace period passed). The task's `_abort` interrupts the fiber.
 */
export function runWithPolicy(
  task: Task<unknown>,
  fn: (...args: unknown[]) => unknown,
  self: unknown,
  args: unknown[],
  ctx: RunContext | undefined,
  policy: RunPolicy,
  abortable: boolean,
  wrap: BodyWrapper | undefined,
  done: ((task: Task<unknown>) => void) | undefined,
): void {
  const target = task._target;
  // a context of its own (a fiber costs far more than the switch): what the body submits, before or
  // after an await, is its child
  if (ctx === undefined || ctx.parent !== task) {
    ctx = { mesh: ctx?.mesh, instance: ctx?.instance, task: ctx?.task, parent: task };
  }
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
          const hook: CancelHook = { cancel: undefined, task };
          signal.addEventListener("abort", () => hook.cancel?.(), { once: true });
          return Promise.resolve(callBody(task, fn, self, [...args, hook], ctx, wrap));
        },
        catch: (e) => {
          // the body's own failure on a node (or its deadline there): the node ran its retries
          if (e instanceof OpExecutionError || e instanceof TimeoutError) ranOnNode.add(e);
          return failure(task, e) as OpExecutionError;
        },
      });
    }
    let r: unknown;
    let p: Promise<unknown>;
    const outerTask = runningBody.task;
    runningBody.task = task;
    try {
      try {
        r = callBody(task, fn, self, args, ctx, wrap);
      } finally {
        const entered = runningBody.entered;
        if (entered !== undefined && entered.owner === task) leaveParentContext();
        runningBody.task = outerTask;
      }
      if (!isThenable(r)) return Effect.succeed(r);
      // adopted by a real promise: a then() that throws becomes a rejection, not a defect
      p = Promise.resolve(r);
    } catch (e) {
      return Effect.fail(failure(task, e) as OpExecutionError);
    }
    if (done !== undefined) {
      bodyRunning = true;
      const returned = () => {
        bodyRunning = false;
      };
      bodyReturned = p.then(returned, returned);
    }
    return Effect.tryPromise({ try: () => p, catch: (e) => failure(task, e) as OpExecutionError });
  });
  // a refusal for overload (a node's or mailbox's bound) is retried after a growing pause, so the
  // retries do not hammer a full node; other failures are retried at once, as before
  let overloaded = 0;
  const backedOff = Effect.tapError(
    attempt,
    (e: unknown) =>
      e instanceof OverloadedError && attempts <= policy.retries
        ? Effect.sleep(overloadBackoffMs(overloaded++))
        : Effect.void,
  );
  // a call on a node is retried here only when the node could not run it (lost, unreachable, full):
  // a body that failed there was retried there, by the same policy, and again here would run it
  // (retries + 1)² times
  let program: Effect.Effect<unknown, OpExecutionError | TimeoutError> = policy.retries > 0
    ? Effect.mapError(
      Effect.retry(backedOff, abortable ? { times: policy.retries, while: notRunOnNode } : { times: policy.retries }),
      // a refusal that outlasted the pauses says so, as a mailbox's does (one on a node may have already)
      (e: unknown) =>
        (overloaded > 0 && e instanceof OverloadedError && !e.message.includes(", its retries)")
          ? pausedInVain(e, overloaded)
          : e) as OpExecutionError,
    )
    : attempt;
  if (policy.timeoutMs > 0) {
    program = Effect.timeoutOrElse(program, {
      duration: policy.timeoutMs,
      orElse: () => Effect.fail(new TimeoutError(target, policy.timeoutMs)),
    });
  }
  const startedAt = performance.now();
  const fiber = Effect.runFork(program);
  task._abort = () => fiber.interruptUnsafe();
  fiber.addObserver((exit) => {
    if (Exit.isSuccess(exit) && isStreaming(exit.value)) {
      // the deadline covers the whole stream; the slot is held until the stream ends
      const deadline = policy.timeoutMs > 0
        ? { at: startedAt + policy.timeoutMs, timeoutMs: policy.timeoutMs }
        : undefined;
      // retries cover starting the stream: a generator that fails before its first item is taken
      // runs again, with the retries its call has left (a remote stream was retried on its node)
      const rerun = abortable || attempts > policy.retries ? undefined : (): unknown => {
        if (attempts > policy.retries) return undefined;
        if (task._meta) {
          task._meta.attempt = attempts;
          emit("started", task, performance.now());
        }
        attempts++;
        return callBody(task, fn, self, args, ctx, wrap);
      };
      return startStream(task, exit.value, ctx, done, deadline, rerun);
    }
    if (Exit.isSuccess(exit)) settle(task, COMPLETED, exit.value);
    else if (!Cause.hasInterruptsOnly(exit.cause)) settle(task, FAILED, Cause.squash(exit.cause));
    // interrupted: the task was cancelled, and cancel() already settled it
    if (done === undefined) return;
    if (!bodyRunning || bodyReturned === undefined) return done(task);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      endGrace(timer);
      done(task);
    };
    // holds the process only while some ref is awaited (a call queued behind this slot may be)
    const timer = startGrace(
      policy.timeoutMs > 0 ? Math.min(policy.timeoutMs, MAX_TIMER_MS) : OVERRUN_GRACE_MS,
      release,
    );
    bodyReturned.then(release);
  });
}

/** The refusal `e` of a call that paused `pauses` times before it, its retries spent. */
function pausedInVain(e: OverloadedError, pauses: number): OverloadedError {
  return new OverloadedError(`${e.message} (also after ${pauses} pause${pauses === 1 ? "" : "s"}, its retries)`);
}

/** How long a cancelled body with no deadline may keep its slot before the next call starts anyway. */
const OVERRUN_GRACE_MS = 1_000;
