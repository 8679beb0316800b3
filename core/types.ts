/**
 * Argument types of `.go()`: wherever a call takes a value it also takes a ref to one, also inside
 * arrays and plain objects.
 *
 * @module
 */
import type { ObjectRef } from "./object_ref.ts";

/**
 * Values `Refable` takes as they are, never looking inside for refs: bytes, dates, patterns,
 * collections and functions.
 */
export type Leaf =
  | ArrayBufferView
  | ArrayBuffer
  | Date
  | RegExp
  | Map<unknown, unknown>
  | Set<unknown>
  | ((...args: never[]) => unknown);

/**
 * A value of type `T`, a ref to one, or (for arrays and plain objects) a structure whose members
 * are themselves `Refable`.
 */
export type Refable<T> =
  | T
  | ObjectRef<T>
  | (T extends Leaf ? never
    : T extends readonly unknown[] ? { [K in keyof T]: Refable<T[K]> }
    : T extends object ? { [K in keyof T]: Refable<T[K]> }
    : never);

/** The parameter list of `.go()` for a function taking `A`. */
export type RefArgs<A extends readonly unknown[]> = { [K in keyof A]: Refable<A[K]> };

/**
 * What a call of a function returning `R` gives: `R` awaited, except that a generator (`function*`'s
 * result, or a promise of one) streams, as an async generator does, so its call gives an async
 * generator of its items (a `Stream` at run time).
 *
 * @example A generator op's call is awaited to an async generator of its items
 * ```ts
 * import * as ta from "../mod.ts";
 * import type { CallResult } from "./types.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const letters = ta.op(function* letters(word: string) {
 *   yield* word;
 * });
 * const stream: CallResult<Generator<string>> = await letters.go("abc");
 * const got: string[] = [];
 * for await (const x of stream) got.push(x);
 * deepStrictEqual(got, ["a", "b", "c"]);
 * const n: CallResult<Promise<number>> = 1; // anything else: the awaited value
 * deepStrictEqual(n, 1);
 * ```
 */
export type CallResult<R> = [Awaited<R>] extends [never] ? never
  : Awaited<R> extends Generator<infer T, unknown, unknown> ? AsyncGenerator<T, undefined, undefined>
  : Awaited<R>;
