/**
 * Calling a task's body: in the task's run context (switching only when it is not current), through
 * the tracing body wrapper when the task is recorded, and what error a task fails with when its
 * body throws. Shared by the plain path (`run_body.ts`) and retries/deadlines (`policy.ts`).
 *
 * @module
 */
import { isValueRefusal } from "./codec.ts";
import { applyInContext, contextEntered, currentContext, NO_CONTEXT, type RunContext } from "./context.ts";
import { OpExecutionError, ThinkagainError } from "./errors.ts";
import type { BodyWrapper } from "./events.ts";
import type { Task } from "./task.ts";

/** The error a task fails with when its body threw `e`. */
export function failure(task: Task<unknown>, e: unknown): unknown {
  // a remote call whose argument cannot travel never ran: the TypeError naming the argument is its error
  return task._target.passErrors === true && (e instanceof ThinkagainError || isValueRefusal(e))
    ? e
    : new OpExecutionError(task._target, e);
}

export function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && (typeof v === "object" || typeof v === "function") &&
    typeof (v as { then?: unknown }).then === "function";
}

/**
 * Marks a body that runs no code of the user's and submits nothing (a call sent to a service
 * instance on another node): started with no context of its own, it runs in whatever context is
 * current instead of being switched into an empty one. The switch is an `AsyncLocalStorage.run` per
 * call, with the awaits after it in a context of their own: a measurable part of a Deno driver's
 * call (`bench/call_path.ts` measures it).
 *
 * @example A marked body sees its starter's context; an unmarked one gets none
 * ```ts
 * import { callBody, CONTEXT_FREE } from "./invoke.ts";
 * import { currentContext, runInContext } from "./context.ts";
 * import { strictEqual } from "node:assert/strict";
 * const here = { mesh: undefined };
 * const free = Object.assign(() => currentContext(), { [CONTEXT_FREE]: true });
 * strictEqual(runInContext(here, () => callBody({} as never, free, undefined, [], undefined, undefined)), here);
 * ```
 */
export const CONTEXT_FREE: unique symbol = Symbol("thinkagain.contextFree");

/**
 * Calls the body `fn.apply(self, args)` in `ctx` (switching only when it is not current already),
 * through the body wrapper when one is given. No closure per call: the hot path allocates nothing here.
 */
export function callBody(
  task: Task<unknown>,
  fn: (...args: unknown[]) => unknown,
  self: unknown,
  args: unknown[],
  ctx: RunContext | undefined,
  wrap: BodyWrapper | undefined,
): unknown {
  if (
    ctx === undefined && contextEntered && (fn as { [CONTEXT_FREE]?: boolean })[CONTEXT_FREE] !== true &&
    currentContext() !== undefined
  ) {
    // submitted outside any mesh, but started from inside one (a drain or a settle that ran there):
    // it must not take that mesh, instance or caller as its own
    ctx = NO_CONTEXT;
  }
  if (ctx !== undefined && currentContext() !== ctx) {
    // switching anyway: into a context of its own, so what it submits after an await is its child
    if (ctx.parent !== task) ctx = { mesh: ctx.mesh, instance: ctx.instance, task: ctx.task, parent: task };
    return wrap === undefined
      ? applyInContext(ctx, fn, self, args)
      : applyInContext(ctx, wrap as (...a: unknown[]) => unknown, undefined, [task, fn, self, args]);
  }
  return wrap === undefined ? fn.apply(self, args) : wrap(task, fn, self, args);
}
