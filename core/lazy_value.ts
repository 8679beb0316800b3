/**
 * Values that live elsewhere: a result kept in a node's object store is a {@linkcode LazyValue} in
 * the driver until someone needs its bytes here. `await ref` fetches it (once), and a body that runs
 * in this process gets it fetched before it starts; a call sent to a node passes it on as a
 * reference instead (the transports decide that, they made it).
 *
 * @module
 */
import { findNested, isPlainContainer, replaceNested } from "./nested.ts";

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

/**
 * How deep the quick look for a value kept on a node goes, and how many containers it visits (a
 * container named N times, N times): deeper or larger arguments (and any cycle) take the careful walk
 * of `nested.ts`, which visits each container once.
 */
const SHALLOW_DEPTH = 32;
const SHALLOW_VISITS = 1 << 22;
let shallowLeft = 0;

/** 1 if `v` holds a {@linkcode LazyValue}, 0 if not, −1 when it is too deep or too large to tell here. */
function holdsLazy(v: unknown, depth: number): number {
  if (typeof v !== "object" || v === null) return 0;
  if (v instanceof LazyValue) return 1;
  if (!isPlainContainer(v)) return 0;
  if (depth === SHALLOW_DEPTH || --shallowLeft < 0) return -1;
  const values = Array.isArray(v) ? v : Object.values(v);
  for (let i = 0; i < values.length; i++) {
    const r = holdsLazy(values[i], depth + 1);
    if (r !== 0) return r;
  }
  return 0;
}

const isLazy = (v: object): boolean => v instanceof LazyValue;

/**
 * Fetches every {@linkcode LazyValue} among `args` (also in arrays and plain objects, at any depth) in
 * place, for a body that runs in this process; `undefined` when there is none (the common case, no
 * await). The arrays and objects that hold one are copied with its value in; the others are kept.
 *
 * @param args A body's arguments (changed in place).
 * @returns A promise settled once they are all here, or `undefined`; it rejects with a `TypeError`
 * when one is inside a cyclic array or object.
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
  let found = 0;
  shallowLeft = SHALLOW_VISITS;
  for (let i = 0; i < args.length && found === 0; i++) found = holdsLazy(args[i], 0);
  if (found === 0) return undefined;
  // every one of them, at any depth, and the containers to copy with their values in
  const lazies: object[] = [];
  const reach = new Set<object>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (typeof a !== "object" || a === null) continue;
    if (a instanceof LazyValue) lazies.push(a);
    else if (isPlainContainer(a) && findNested(a, isLazy, lazies, reach)) {
      return Promise.reject(
        new TypeError(
          `argument ${i} holds a value kept on a node inside a cyclic array or object (one that contains ` +
            "itself), where no copy can hold its fetched bytes",
        ),
      );
    }
  }
  if (lazies.length === 0) return undefined;
  const unique = [...new Set(lazies as LazyValue[])];
  return Promise.all(unique.map((v) => v.materialize())).then((values) => {
    const fetched = new Map<object, unknown>();
    for (let i = 0; i < unique.length; i++) fetched.set(unique[i], values[i]);
    const swap = (v: object) => (fetched.has(v) ? fetched.get(v) : v);
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      if (typeof a !== "object" || a === null) continue;
      if (a instanceof LazyValue) args[i] = fetched.get(a);
      else if (reach.has(a)) args[i] = replaceNested(a, reach, swap);
    }
  });
}
