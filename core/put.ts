/**
 * `put(value)`: an `ObjectRef` of a value made by no call, to pass to many calls by reference (the
 * embedding index or the prompt template shared by a thousand calls). In this process every call
 * gets the very object, never a copy. The data plane extends this file to store a put value on a
 * node once, for calls sent there.
 *
 * @module
 */
import { describe } from "./describe.ts";
import type { ObjectRef } from "./object_ref.ts";
import { settle, State, Task, type TaskTarget } from "./task.ts";

/** The target of every put ref: it is settled at birth, so nothing is ever started through it. */
const PUT_TARGET: TaskTarget = {
  name: "put",
  kind: "op",
  node: undefined,
  ready(): void {},
};

/**
 * Makes an already completed ref of `value`, to pass to many `.go()` calls by reference: each call
 * made in this process gets the same object, not a copy.
 *
 * @param value Any value but a ref or another thenable (pass a ref itself to share it).
 * @returns A completed `ObjectRef` of `value`.
 * @throws {TypeError} When `value` is a ref or a thenable.
 *
 * @example One index shared by many calls
 * ```ts
 * import * as ta from "../mod.ts";
 * const index = ta.put({ docs: ["a", "b", "c"] });
 * const count = ta.op(async function putDocCount(ix: { docs: string[] }, q: string) {
 *   return ix.docs.filter((d) => d === q).length;
 * });
 * const hits = await ta.all(["a", "z", "c"].map((q) => count.go(index, q)));
 * if (hits.join() !== "1,0,1" || index.status !== "completed") throw new Error("unexpected");
 * ```
 */
export function put<T>(value: T): ObjectRef<T> {
  if (value instanceof Task) {
    throw new TypeError(`put() takes a value, got the ref ${value.id}: pass that ref to the calls itself`);
  }
  if (typeof (value as { then?: unknown } | null)?.then === "function") {
    throw new TypeError(`put() takes a value, got a thenable (${describe(value)}): await it first`);
  }
  const task = new Task<T>(PUT_TARGET, undefined, undefined);
  settle(task as Task<unknown>, State.COMPLETED, value);
  return task;
}
