/**
 * Values that live elsewhere: a result kept in a node's object store is a {@linkcode LazyValue} in
 * the driver until someone needs its bytes here. `await ref` fetches it (once), and a body that runs
 * in this process gets it fetched before it starts; a call sent to a node passes it on as a
 * reference instead (the transports decide that, they made it).
 *
 * @module
 */

/**
 * A value whose bytes are elsewhere (a node's object store). Subclasses say how to fetch it;
 * {@linkcode LazyValue.materialize} fetches once and remembers the answer.
 *
 * @example A value fetched once
 * ```ts
 * import { LazyValue } from "./lazy_value.ts";
 * import { strictEqual } from "node:assert/strict";
 * let fetches = 0;
 * class Here extends LazyValue {
 *   protected fetch(): Promise<unknown> { fetches++; return Promise.resolve(42); }
 * }
 * const v = new Here();
 * strictEqual(await v.materialize(), 42);
 * strictEqual(await v.materialize(), 42);
 * strictEqual(fetches, 1);
 * ```
 */
export abstract class LazyValue {
  private fetched: Promise<unknown> | undefined;
  /** How many calls in flight (and fetches) carry it: it is not freed while any does. */
  private pins = 0;
  /** Whether its ref was released (`ref.release()`, `using`). */
  private released = false;

  /**
   * A call in flight carries it (an argument of a call not finished yet), or a fetch of it runs:
   * a release waits until {@linkcode LazyValue.unpin}.
   */
  pin(): void {
    this.pins++;
  }

  /** A call that carried it ended: freed now if its ref was released and nothing else carries it. */
  unpin(): void {
    if (--this.pins === 0 && this.released) this.free();
  }

  /**
   * Its ref was released: it is freed where it lives once no call in flight carries it (at once
   * when none does). Idempotent.
   */
  release(): void {
    if (this.released) return;
    this.released = true;
    if (this.pins === 0) this.free();
  }

  /** Frees the value where it lives (once; the default keeps nothing). */
  protected free(): void {}

  /** Fetches the value's bytes from where they live. */
  protected abstract fetch(): Promise<unknown>;

  /**
   * The value itself, fetched on first use; later calls share that fetch. A failed fetch is not
   * remembered: the next call tries again.
   *
   * @returns The value.
   */
  materialize(): Promise<unknown> {
    if (this.fetched === undefined) {
      const p = this.fetch();
      p.catch(() => {
        if (this.fetched === p) this.fetched = undefined;
      });
      this.fetched = p;
    }
    return this.fetched;
  }
}

/**
 * `v` itself, or for a {@linkcode LazyValue} the promise of its bytes (what `await ref` gives).
 *
 * @param v A task's value.
 * @returns The value, or a promise of it.
 *
 * @example
 * ```ts
 * import { materialized } from "./lazy_value.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(materialized(3), 3);
 * ```
 */
export function materialized(v: unknown): unknown {
  return v instanceof LazyValue ? v.materialize() : v;
}

function isPlainContainer(v: object): boolean {
  if (Array.isArray(v)) return true;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function holdsLazy(v: unknown, depth: number): boolean {
  if (typeof v !== "object" || v === null) return false;
  if (v instanceof LazyValue) return true;
  if (depth > 32 || !isPlainContainer(v)) return false;
  const values = Array.isArray(v) ? v : Object.values(v);
  for (let i = 0; i < values.length; i++) if (holdsLazy(values[i], depth + 1)) return true;
  return false;
}

async function fetchAll(v: unknown, depth: number): Promise<unknown> {
  if (typeof v !== "object" || v === null) return v;
  if (v instanceof LazyValue) return await v.materialize();
  if (depth > 32 || !isPlainContainer(v) || !holdsLazy(v, depth)) return v;
  if (Array.isArray(v)) return await Promise.all(v.map((x) => fetchAll(x, depth + 1)));
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    Object.defineProperty(out, k, {
      value: await fetchAll(x, depth + 1),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return out;
}

/**
 * Fetches every {@linkcode LazyValue} among `args` (also in arrays and plain objects) in place, for
 * a body that runs in this process; `undefined` when there is none (the common case, no await).
 *
 * @param args A body's arguments (changed in place).
 * @returns A promise settled once they are all here, or `undefined`.
 *
 * @example
 * ```ts
 * import { LazyValue, materializeArgs } from "./lazy_value.ts";
 * import { deepStrictEqual, strictEqual } from "node:assert/strict";
 * class Two extends LazyValue { protected fetch() { return Promise.resolve(2); } }
 * strictEqual(materializeArgs([1, "x"]), undefined);
 * const args = [1, { b: new Two() }, [new Two()]];
 * await materializeArgs(args);
 * deepStrictEqual(args, [1, { b: 2 }, [2]]);
 * ```
 */
export function materializeArgs(args: unknown[]): Promise<void> | undefined {
  let found = false;
  for (let i = 0; i < args.length && !found; i++) found = holdsLazy(args[i], 0);
  if (!found) return undefined;
  return Promise.all(args.map((a) => fetchAll(a, 0))).then((values) => {
    for (let i = 0; i < values.length; i++) args[i] = values[i];
  });
}
