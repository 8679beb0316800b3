/**
 * `wait` and `asCompleted`: the loops Ray users write with `ray.wait`. Both register one waiter
 * function on the refs (the technique of `all` in `object_ref.ts`): no promise per ref, so they stay
 * cheap for 100k refs, and both take their waiter off the refs still pending when they are done.
 *
 * @module
 */
import { describe } from "./describe.ts";
import { waiterAdded, waiterDone } from "./grace.ts";
import { setLongTimeout } from "./long_timer.ts";
import { checkKnownKeys, type KnownKeys } from "./options.ts";
import type { ObjectRef } from "./object_ref.ts";
import { addWaiter, cycleError, removeWaiter, State, Task, type Waiter, waitingBody } from "./task.ts";

const { COMPLETED } = State;

/** Options of {@linkcode wait}. */
export interface WaitOptions {
  /** How many refs must have settled (completed, failed or cancelled) before it returns. Default 1. */
  readonly count?: number;
  /**
   * Returns after this many milliseconds even when fewer than `count` have settled, however long
   * (also past the 2^31 ms one timer holds). Default and `Infinity`: no limit.
   */
  readonly timeoutMs?: number;
}

const WAIT_OPTION_KEYS: KnownKeys<WaitOptions> = { count: true, timeoutMs: true };

/** What {@linkcode wait} returns: the refs that settled and those that had not, each in input order. */
export interface WaitResult<T> {
  /** At most `count` settled refs (completed, failed or cancelled: `await` each to learn which). */
  readonly ready: ObjectRef<T>[];
  /** The others. */
  readonly pending: ObjectRef<T>[];
}

function checkRefs(fn: string, refs: unknown): asserts refs is readonly Task<unknown>[] {
  if (!Array.isArray(refs)) throw new TypeError(`${fn}() expects an array of refs from .go(), got ${describe(refs)}`);
  for (let i = 0; i < refs.length; i++) {
    if (!(refs[i] instanceof Task)) {
      throw new TypeError(`${fn}() expects an array of refs from .go(), got ${describe(refs[i])} at index ${i}`);
    }
  }
}

/**
 * Waits until `count` of `refs` have settled (completed, failed or cancelled), or `timeoutMs` has
 * passed, as Ray's `ray.wait`: a failed ref is `ready` (awaiting it rejects). It rejects only
 * with the TypeError of a wait that could never end: inside a body, with no `timeoutMs`, when too
 * many of `refs` wait for that body's own call to reach `count`.
 *
 * @param refs Refs from `.go()`.
 * @param options `count` (default 1, at most `refs.length`) and `timeoutMs` (`Infinity`: none).
 * @returns The settled refs (at most `count`) and the others, each in input order.
 * @throws {TypeError} When `refs` is not an array of refs, or `options` has an unknown key (a typo).
 * @throws {RangeError} When `count` is not an integer from 0 to `refs.length`, or `timeoutMs` is negative or NaN.
 *
 * @example A ray.wait loop
 * ```ts
 * import * as ta from "../mod.ts";
 * const sq = ta.op(async function waitDocSq(x: number) { return x * x; });
 * let pending = [sq.go(1), sq.go(2), sq.go(3)];
 * let total = 0;
 * while (pending.length > 0) {
 *   const out = await ta.wait(pending, { count: 1 });
 *   for (const ref of out.ready) total += await ref;
 *   pending = out.pending;
 * }
 * if (total !== 14) throw new Error(`expected 14, got ${total}`);
 * ```
 */
export function wait<T>(refs: readonly ObjectRef<T>[], options: WaitOptions = {}): Promise<WaitResult<T>> {
  checkRefs("wait", refs);
  checkKnownKeys("wait()", options, WAIT_OPTION_KEYS);
  const tasks = refs as unknown as readonly Task<unknown>[];
  const count = options.count ?? Math.min(1, tasks.length);
  if (!Number.isInteger(count) || count < 0 || count > tasks.length) {
    throw new RangeError(
      `wait() expects count to be an integer from 0 to ${tasks.length} (the refs given), got ${count}`,
    );
  }
  const timeoutMs = options.timeoutMs;
  if (timeoutMs !== undefined && !(typeof timeoutMs === "number" && timeoutMs >= 0)) {
    throw new RangeError(
      `wait() expects timeoutMs to be a number of ms ≥ 0 (Infinity: none), got ${describe(timeoutMs)}`,
    );
  }
  const split = (): WaitResult<T> => {
    const ready: ObjectRef<T>[] = [], pending: ObjectRef<T>[] = [];
    for (let i = 0; i < tasks.length; i++) {
      const t = tasks[i];
      if (t._state >= COMPLETED && ready.length < count) ready.push(t as unknown as ObjectRef<T>);
      else pending.push(t as unknown as ObjectRef<T>);
    }
    return { ready, pending };
  };
  let settled = 0;
  for (let i = 0; i < tasks.length; i++) if (tasks[i]._state >= COMPLETED) settled++;
  if (settled >= count || timeoutMs === 0) return Promise.resolve(split());
  // refs that wait for the body calling this never settle: with too few others, and no timeout,
  // the wait would never end
  if (timeoutMs === undefined || timeoutMs === Infinity) {
    const { cycles, first } = cyclesIn(tasks);
    if (first !== undefined && tasks.length - cycles < count) return Promise.reject(first);
  }
  return new Promise<WaitResult<T>>((resolve) => {
    let done = false;
    let stopTimer: (() => void) | undefined;
    const finish = () => {
      if (done) return;
      done = true;
      stopTimer?.();
      waiterDone();
      for (let i = 0; i < tasks.length; i++) if (tasks[i]._state < COMPLETED) removeWaiter(tasks[i], waiter);
      resolve(split());
    };
    const waiter: Waiter = () => {
      if (++settled >= count) finish();
    };
    waiterAdded();
    for (let i = 0; i < tasks.length; i++) if (tasks[i]._state < COMPLETED) addWaiter(tasks[i], waiter);
    // a plain setTimeout would fire at once for 2^31 ms or more (Infinity included)
    if (timeoutMs !== undefined) stopTimer = setLongTimeout(finish, timeoutMs);
  });
}

/**
 * One ref yielded by {@linkcode asCompleted}, with its place in the array given. (A ref is a
 * thenable, so it is wrapped: TypeScript types `for await` as if it unwrapped thenables.)
 */
export interface CompletedRef<T> {
  /** The settled ref: `await` it for its value or its error. */
  readonly ref: ObjectRef<T>;
  /** Its index in the array given to `asCompleted`. */
  readonly index: number;
}

/**
 * Yields each of `refs` as it settles (completed, failed or cancelled), in the order they settle;
 * those already settled first, in input order. It yields the refs themselves, so a failure does not
 * end the loop: `await` the ref to get its value or its error. Breaking out of the loop stops
 * watching the rest. Waiting costs one waiter function for all the refs, not a promise per ref.
 *
 * @param refs Refs from `.go()`.
 * @returns An async iterator of `{ ref, index }`.
 * @throws {TypeError} When `refs` is not an array of refs, or called inside a body that one of them
 * waits for (it could never settle).
 *
 * @example Handle results as they come
 * ```ts
 * import * as ta from "../mod.ts";
 * const sq = ta.op(async function asCompletedDocSq(x: number) { return x * x; });
 * let total = 0;
 * for await (const { ref } of ta.asCompleted([sq.go(1), sq.go(2), sq.go(3)])) total += await ref;
 * if (total !== 14) throw new Error(`expected 14, got ${total}`);
 * ```
 */
export function asCompleted<T>(refs: readonly ObjectRef<T>[]): AsyncIterableIterator<CompletedRef<T>> {
  checkRefs("asCompleted", refs);
  const tasks = refs as unknown as readonly Task<unknown>[];
  const { first: cycle } = cyclesIn(tasks);
  if (cycle !== undefined) throw cycle;
  type Item = IteratorResult<CompletedRef<T>>;
  const queue: CompletedRef<T>[] = [];
  let head = 0;
  let left = tasks.length;
  let next: ((r: Item) => void) | undefined;
  let stopped = false;
  // where each pending ref is in `refs` (a list when it is there more than once)
  const where = new Map<Task<unknown>, number | number[]>();
  const waiter: Waiter = (task) => {
    if (stopped) return;
    const at = where.get(task)!;
    let index: number;
    if (typeof at === "number") {
      index = at;
      where.delete(task);
    } else index = at.shift()!;
    const item: CompletedRef<T> = { ref: task as unknown as ObjectRef<T>, index };
    if (next !== undefined) {
      const n = next;
      next = undefined;
      if (--left === 0) waiterDone();
      n({ value: item, done: false });
    } else queue.push(item);
  };
  for (let i = 0; i < tasks.length; i++) {
    const t = tasks[i];
    if (t._state >= COMPLETED) queue.push({ ref: t as unknown as ObjectRef<T>, index: i });
    else {
      const at = where.get(t);
      if (at === undefined) where.set(t, i);
      else if (typeof at === "number") where.set(t, [at, i]);
      else at.push(i);
      addWaiter(t, waiter);
    }
  }
  const watching = queue.length < tasks.length;
  if (watching) waiterAdded();
  const stop = () => {
    if (stopped) return;
    stopped = true;
    queue.length = 0;
    if (left > 0 && watching) {
      waiterDone();
      for (const t of where.keys()) removeWaiter(t, waiter);
    }
    where.clear();
    left = 0;
  };
  const iterator: AsyncIterableIterator<CompletedRef<T>> = {
    next(): Promise<Item> {
      if (stopped || left === 0) return Promise.resolve({ value: undefined, done: true });
      if (head < queue.length) {
        const item = queue[head];
        queue[head++] = undefined as unknown as CompletedRef<T>;
        if (head === queue.length) queue.length = head = 0;
        if (--left === 0 && watching) waiterDone();
        return Promise.resolve({ value: item, done: false });
      }
      if (next !== undefined) {
        return Promise.reject(new TypeError("asCompleted(): next() called again before the previous call resolved"));
      }
      return new Promise((resolve) => (next = resolve));
    },
    return(): Promise<Item> {
      stop();
      const n = next;
      next = undefined;
      n?.({ value: undefined, done: true });
      return Promise.resolve({ value: undefined, done: true });
    },
    [Symbol.asyncIterator]() {
      return iterator;
    },
  };
  return iterator;
}

/**
 * How many of `tasks` wait for the call whose body is waiting (they would never settle: waiting for
 * them from inside that body would never end), and the TypeError of the first.
 */
function cyclesIn(tasks: readonly Task<unknown>[]): { cycles: number; first: TypeError | undefined } {
  let cycles = 0, first: TypeError | undefined;
  const body = waitingBody();
  for (let i = 0; body !== undefined && i < tasks.length; i++) {
    const cycle = cycleError(tasks[i], body);
    if (cycle !== undefined) cycles++, first ??= cycle;
  }
  return { cycles, first };
}
