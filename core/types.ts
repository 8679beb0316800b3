/**
 * Argument types of `.go()`: wherever a call takes a value it also takes a ref to one, also inside
 * arrays and plain objects.
 *
 * @module
 */
import type { ObjectRef } from "./object_ref.ts";

type Leaf =
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
