/**
 * Grace timers, and whether anyone waits. A local body that outlived its call (a deadline, a
 * cancel) keeps its slot for a grace period (`policy.ts`). That timer must not keep the process
 * alive on the abandoned body's account, but a call queued behind the slot that someone awaits must
 * not be dropped by a process that exits first. So grace timers hold the process only while some
 * ref is awaited: a pending ref's promise, its `.effect`, or `ta.all` over it counts as a waiter
 * until the ref settles (a counter, so the per-task cost is an increment).
 *
 * @module
 */
import { refTimer, type TimerId, unrefTimer } from "./_runtime.ts";

/** `count`: pending refs someone waits for; `graces`: grace timers running. Read on the hot path. */
export const waiting: { count: number; graces: number } = { count: 0, graces: 0 };

const timers = new Set<TimerId>();
let held = false;

/** Refs or unrefs every grace timer: they hold the process exactly while someone waits. */
function hold(): void {
  const want = waiting.count > 0;
  if (want === held) return;
  held = want;
  for (const t of timers) {
    if (want) refTimer(t);
    else unrefTimer(t);
  }
}

/** A pending ref gained a waiter (its promise, its effect, a fan-in). */
export function waiterAdded(): void {
  if (waiting.count++ === 0 && waiting.graces !== 0) hold();
}

/** A waiter counted by {@linkcode waiterAdded} is done (its ref settled, or it stopped waiting). */
export function waiterDone(): void {
  if (--waiting.count === 0 && waiting.graces !== 0) hold();
}

/**
 * Starts a grace timer that calls `release` after `ms`; it holds the process only while some ref
 * is awaited.
 *
 * @param ms The grace, in ms.
 * @param release Called when it ends (not when cleared first).
 * @returns The timer, for {@linkcode endGrace}.
 *
 * @example
 * ```ts
 * import { endGrace, startGrace } from "./grace.ts";
 * const t = startGrace(60_000, () => {});
 * endGrace(t); // the slot was given back before the grace ended
 * ```
 */
export function startGrace(ms: number, release: () => void): TimerId {
  const t: TimerId = setTimeout(() => {
    endGrace(t);
    release();
  }, ms);
  timers.add(t);
  // while graces run, hold() keeps `held` in step with the waiters; before the first, it may be stale
  if (waiting.graces++ === 0) held = waiting.count > 0;
  if (!held) unrefTimer(t);
  return t;
}

/**
 * Clears a grace timer (idempotent).
 *
 * @param t A timer from {@linkcode startGrace}.
 *
 * @example
 * ```ts
 * import { endGrace, startGrace } from "./grace.ts";
 * const t = startGrace(60_000, () => {});
 * endGrace(t);
 * endGrace(t);
 * ```
 */
export function endGrace(t: TimerId): void {
  if (!timers.delete(t)) return;
  clearTimeout(t);
  waiting.graces--;
}
