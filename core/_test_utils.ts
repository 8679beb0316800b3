// Helpers for tests only (private: never re-exported).

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A promise with its resolve function outside, to hold a body open until a test releases it. */
export function gate<T = void>(): { promise: Promise<T>; open: (v: T) => void } {
  let open!: (v: T) => void;
  const promise = new Promise<T>((r) => (open = r));
  return { promise, open };
}

/** A full garbage collection where the runtime exposes one (Bun.gc, or --expose-gc). */
export function gcFunction(): (() => void) | undefined {
  const g = globalThis as { Bun?: { gc(force: boolean): void }; gc?: () => void };
  if (g.Bun) return () => g.Bun!.gc(true);
  if (typeof g.gc === "function") return g.gc;
  return undefined;
}

/**
 * Runs full collections (up to 50, 10 ms apart) until `count()` reaches `atLeast`: finalizers run
 * only after a collection and a turn of the event loop. Returns the final count.
 */
export async function collectUntil(gc: () => void, count: () => number, atLeast: number): Promise<number> {
  for (let i = 0; i < 50 && count() < atLeast; i++) {
    gc();
    await sleep(10);
  }
  return count();
}

/** Asserts `promise` rejects, and returns the rejection for further checks. */
export async function rejection(promise: PromiseLike<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (e) {
    return e;
  }
  throw new Error("expected a rejection, but the promise resolved");
}

/**
 * Waits until `check` returns true, polling every 5 ms, for at most `limitMs` (a bound on a wait for
 * something that happens in another process or after a message, not a timing claim); returns
 * whether it became true.
 */
export async function eventually(check: () => boolean | Promise<boolean>, limitMs = 5_000): Promise<boolean> {
  const end = Date.now() + limitMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > end) return false;
    await sleep(5);
  }
}

/**
 * Whether `promise` settles within `limitMs` (a bound on a wait that must end, so that a hang fails
 * with the test's own message rather than the runner's timeout; not a timing claim).
 */
export async function settlesWithin(promise: PromiseLike<unknown>, limitMs: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const bound = new Promise<false>((r) => (timer = setTimeout(() => r(false), limitMs)));
  try {
    return await Promise.race([Promise.resolve(promise).then(() => true, () => true), bound]);
  } finally {
    clearTimeout(timer);
  }
}

/** The bytes of `parts`, one after another, in a buffer of their own. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
