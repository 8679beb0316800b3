/**
 * Timers for any deadline a user can give. `setTimeout` holds at most 2^31 - 1 ms (about 24.8
 * days): a longer delay overflows and the timer fires at once, so a deadline of 2^31 ms cancelled
 * every call immediately. {@linkcode setLongTimeout} chains timers for a longer delay, and never
 * fires for `Infinity`; {@linkcode timeoutSignal} is `AbortSignal.timeout` for any delay.
 *
 * @module
 */
import { unrefTimer } from "./_runtime.ts";

/** The longest delay one `setTimeout` holds, in ms (2^31 - 1). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Runs `fn` after `ms` milliseconds, however long that is: delays past {@linkcode MAX_TIMER_MS}
 * are waited in steps, `Infinity` never fires (and sets no timer).
 *
 * @param fn What to run.
 * @param ms The delay in ms (≥ 0; `Infinity`: never).
 * @param onTimer Gets each timer set (e.g. to `unref` it); called again for each step.
 * @returns A function that cancels it.
 *
 * @example A deadline past 2^31 ms does not fire at once
 * ```ts
 * import { setLongTimeout } from "./long_timer.ts";
 * import { strictEqual } from "node:assert/strict";
 * let fired = false;
 * const cancel = setLongTimeout(() => (fired = true), 2 ** 31);
 * await new Promise((r) => setTimeout(r, 20));
 * strictEqual(fired, false);
 * cancel();
 * ```
 */
export function setLongTimeout(
  fn: () => void,
  ms: number,
  onTimer?: (timer: ReturnType<typeof setTimeout>) => void,
): () => void {
  if (ms === Infinity) return noop;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let cancelled = false;
  const arm = (left: number) => {
    const step = Math.min(Math.max(0, left), MAX_TIMER_MS);
    const end = left - step;
    timer = setTimeout(() => {
      if (cancelled) return;
      if (end > 0) arm(end);
      else fn();
    }, step);
    onTimer?.(timer);
  };
  arm(ms);
  return () => {
    cancelled = true;
    clearTimeout(timer);
  };
}

/**
 * Waits for `promise` until `deadline` (a `performance.now()` time, ms), whichever comes first,
 * however far away the deadline is (a grace of 2^31 ms or more must not end at once, as a plain
 * `setTimeout` would); the timer is cleared either way. A rejection of `promise` rejects.
 *
 * @param promise What to wait for.
 * @param deadline When to stop waiting (`Infinity`: never).
 *
 * @example A deadline reached before the promise settles
 * ```ts
 * import { untilDeadline } from "./long_timer.ts";
 * import { strictEqual } from "node:assert/strict";
 * let settled = false;
 * const never = new Promise<void>(() => {}).then(() => (settled = true));
 * await untilDeadline(never, performance.now() + 5);
 * strictEqual(settled, false);
 * ```
 */
export async function untilDeadline(promise: Promise<unknown>, deadline: number): Promise<void> {
  let stopTimer!: () => void;
  try {
    await Promise.race([
      promise,
      new Promise<void>((r) => (stopTimer = setLongTimeout(r, Math.max(0, deadline - performance.now())))),
    ]);
  } finally {
    stopTimer();
  }
}

/** What {@linkcode timeoutSignal} returns. */
export interface TimeoutSignal {
  /** Aborts with a `TimeoutError` `DOMException` once the delay has passed. */
  readonly signal: AbortSignal;
  /** Stops its timer (the work it bounds is done); idempotent. */
  readonly cancel: () => void;
}

/**
 * `AbortSignal.timeout(ms)` for any delay: that one throws for `Infinity` and, on Deno, aborts at
 * once past {@linkcode MAX_TIMER_MS}. Up to that it is `AbortSignal.timeout` itself (nothing to
 * cancel); `Infinity` never aborts; a longer delay is waited in steps on a timer that holds no
 * process open, and held until it fires unless `cancel` is called: call it when done.
 *
 * @param ms The delay in ms (≥ 0; `Infinity`: never).
 * @returns The signal, and a function that stops its timer.
 *
 * @example A deadline past 2^31 ms does not abort at once
 * ```ts
 * import { timeoutSignal } from "./long_timer.ts";
 * import { strictEqual } from "node:assert/strict";
 * const { signal, cancel } = timeoutSignal(2 ** 31);
 * await new Promise((r) => setTimeout(r, 20));
 * strictEqual(signal.aborted, false);
 * cancel();
 * ```
 */
export function timeoutSignal(ms: number): TimeoutSignal {
  if (ms <= MAX_TIMER_MS) return { signal: AbortSignal.timeout(ms), cancel: noop };
  const controller = new AbortController();
  const cancel = setLongTimeout(
    () => controller.abort(new DOMException("The operation timed out.", "TimeoutError")),
    ms,
    unrefTimer,
  );
  return { signal: controller.signal, cancel };
}

function noop(): void {}
