/**
 * How a running body is told to stop. There is one mechanism: `cancelTask` (`task.ts`) settles the
 * task and calls its `_abort`. What `_abort` does depends on what runs the body: a policy's fiber
 * is interrupted (`policy.ts`); a body marked {@linkcode ABORTABLE} (a remote call) receives a
 * {@linkcode CancelHook} as its last argument and sets `cancel` to stop the call on its node. A
 * plain local body cannot be stopped: its result is ignored.
 *
 * @module
 */

/**
 * Marks a body that takes a {@link CancelHook} as an extra last argument (remote calls): its
 * `cancel` runs when the task is cancelled or its deadline passes. A plain object, not an
 * AbortController, because it is made once per remote call.
 */
export const ABORTABLE: unique symbol = Symbol("thinkagain.abortable");

/** What an abortable body receives: set `cancel` to be told when the call is abandoned. */
export interface CancelHook {
  cancel: (() => void) | undefined;
  /**
   * The task whose body got this hook (a `Task`; typed loosely so this file imports nothing):
   * a remote call uses it to send the calls waiting on its result along at once (pipelining).
   */
  readonly task?: object;
}

/**
 * Whether `fn` was marked {@linkcode ABORTABLE}.
 *
 * @param fn A task body.
 * @returns True when it takes a cancel hook as its last argument.
 *
 * @example
 * ```ts
 * import { ABORTABLE, isAbortable } from "./cancel.ts";
 * if (!isAbortable(Object.assign(() => 1, { [ABORTABLE]: true })) || isAbortable(() => 1)) throw new Error();
 * ```
 */
export function isAbortable(fn: unknown): boolean {
  return (fn as { [ABORTABLE]?: boolean })[ABORTABLE] === true;
}
