/**
 * `put(value)`: an `ObjectRef` of a value made by no call, to pass to many calls by reference (the
 * embedding index or the prompt template shared by a thousand calls). In this process every call
 * gets the very object, never a copy. A call sent to a node carries the value's bytes, encoded when
 * it is first sent and reused by every later call ({@linkcode encodedPuts}), so the value is walked
 * and encoded once however many calls it goes to.
 *
 * @module
 */
import { EncodedValue } from "./codec.ts";
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
  if (typeof value === "object" && value !== null && !encodings.has(value)) {
    encodings.set(value, NOT_YET);
    anyPut = true;
  }
  return task;
}

const NOT_YET = Symbol("not encoded yet");
/**
 * The put values that are objects (a primitive has no identity to find it by; a string is cheap to
 * encode again), each with its encoding once made, or `null` when it cannot be encoded once (it
 * cannot travel, or holds what must be turned into something else first, such as a handle).
 */
const encodings = new WeakMap<object, EncodedValue | null | typeof NOT_YET>();
/** Whether any put value was made, so that calls in a program without any look nothing up. */
let anyPut = false;

/**
 * `args` with each put value among them (an argument that is a put ref's value itself, as a call's
 * body gets it) replaced by its {@linkcode EncodedValue}, made when the value is first sent and
 * reused by every later call: what a transport sends, so a value passed to a thousand calls is
 * encoded once. A put value that cannot be encoded on its own stays as it is (and travels as any
 * argument does, or is refused with the argument's path). Only arguments themselves are looked at,
 * not what arrays and objects among them hold.
 *
 * The encoding is made when the value first leaves this process: a change made to the value after
 * that reaches the calls made here, not those sent to nodes. A put value is meant to be left alone.
 *
 * @param args A call's arguments, about to be sent to a node.
 * @returns `args` itself when it holds no put value, else a copy with their encodings.
 *
 * @example The same encoding for every call
 * ```ts
 * import { encodedPuts, put } from "./put.ts";
 * import { EncodedValue } from "./codec.ts";
 * import { ok, strictEqual } from "node:assert/strict";
 * const index = { docs: ["a", "b"] };
 * const ref = put(index);
 * const [a] = encodedPuts([await ref, 1]);
 * const [b] = encodedPuts([index, 2]);
 * ok(a instanceof EncodedValue && a.value === index);
 * strictEqual(a, b);
 * const plain = [{ docs: [] }, 3];
 * strictEqual(encodedPuts(plain), plain);
 * ```
 */
export function encodedPuts(args: unknown[]): unknown[] {
  if (!anyPut) return args;
  let out: unknown[] | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (typeof a !== "object" || a === null) continue;
    let e = encodings.get(a);
    if (e === undefined || e === null) continue;
    if (e === NOT_YET) {
      try {
        e = new EncodedValue(a);
      } catch {
        e = null;
      }
      encodings.set(a, e);
      if (e === null) continue;
    }
    (out ??= args.slice())[i] = e;
  }
  return out ?? args;
}
