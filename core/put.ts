/**
 * `put(value)`: an `ObjectRef` of a value made by no call, to pass to many calls by reference (the
 * embedding index or the prompt template shared by a thousand calls). In this process every call
 * gets the very object, never a copy. For calls sent to nodes the value is encoded once, when it is
 * first sent ({@linkcode putEncoding}); a large one is then stored once on a node and named by
 * every call (`transports/stored_puts.ts`), a small one has its bytes written into every call's
 * frame ({@linkcode encodedPuts}).
 *
 * What this process knows of a put value (its encoding, the copies stored on nodes) is held by its
 * refs: once the last is released (`ref.release()`, `using`) or they are all collected, the copies
 * on nodes are freed and the value is an ordinary value again.
 *
 * @module
 */
import { EncodedValue } from "./codec.ts";
import { describe } from "./describe.ts";
import type { LazyValue } from "./lazy_value.ts";
import type { ObjectRef } from "./object_ref.ts";
import { settle, State, Task, type TaskTarget } from "./task.ts";

/** The target of every put ref: it is settled at birth, so nothing is ever started through it. */
const PUT_TARGET: TaskTarget = {
  name: "put",
  kind: "op",
  node: undefined,
  ready(): void {},
  released: putReleased,
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
  if (typeof value === "object" && value !== null) {
    // a value put twice shares one entry (both refs hold it)
    let entry = entries.get(value)?.deref();
    if (entry === undefined) {
      entry = { encoding: NOT_YET, copies: new WeakMap(), refs: 0, stored: [] };
      entries.set(value, new WeakRef(entry));
    }
    entry.refs++;
    held.set(task, entry);
    anyPut = true;
  }
  return task;
}

const NOT_YET = Symbol("not encoded yet");

/** What this process knows of one put value; its refs hold it (see {@linkcode held}). */
interface PutEntry {
  /** Its encoding once made, or `null` when it cannot be encoded once (see {@linkcode putEncoding}). */
  encoding: EncodedValue | null | typeof NOT_YET;
  /** Its copies stored on nodes, by what holds the links to them (a mesh). */
  readonly copies: WeakMap<object, unknown>;
  /** How many of its refs were not released. */
  refs: number;
  /**
   * The copies stored on nodes, which the release of its last ref frees at once (weakly: one
   * collected was freed by its own collection).
   */
  stored: WeakRef<LazyValue>[];
}

/**
 * The put values that are objects (a primitive has no identity to find it by; a string is cheap to
 * encode again), each with its entry while a ref to it lives.
 */
const entries = new WeakMap<object, WeakRef<PutEntry>>();
/** Each put ref's entry: the entry (and the copies on nodes it names) lives as long as a ref does. */
const held = new WeakMap<object, PutEntry>();
/** Whether any put value was made, so that calls in a program without any look nothing up. */
let anyPut = false;

/**
 * The encoding of `value` when it is a put value (an argument that is a put ref's value itself, as
 * a call's body gets it), made when first asked for and shared by every later call: what a
 * transport sends (or stores on a node), so a value passed to a thousand calls is encoded once.
 * `undefined` for any other value, and for a put value that cannot be encoded on its own (it
 * cannot travel, or holds what must be turned into something else first, such as a handle): that
 * one travels as any argument does, or is refused with the argument's path.
 *
 * The encoding is made when the value first leaves this process: a change made to the value after
 * that reaches the calls made here, not those sent to nodes. A put value is meant to be left alone.
 *
 * @param value A call's argument.
 * @returns Its shared encoding, or `undefined`.
 *
 * @example
 * ```ts
 * import { put, putEncoding } from "./put.ts";
 * import { ok, strictEqual } from "node:assert/strict";
 * const index = { docs: ["a", "b"] };
 * const ref = put(index);
 * ok(putEncoding(index)!.value === index);
 * strictEqual(putEncoding(index), putEncoding(await ref));
 * strictEqual(putEncoding({ docs: ["a", "b"] }), undefined);
 * ```
 */
export function putEncoding(value: unknown): EncodedValue | undefined {
  if (!anyPut || typeof value !== "object" || value === null) return undefined;
  const entry = entries.get(value)?.deref();
  if (entry === undefined) return undefined;
  let e = entry.encoding;
  if (e === NOT_YET) {
    try {
      e = new EncodedValue(value);
    } catch {
      e = null;
    }
    entry.encoding = e;
  }
  return e ?? undefined;
}

/**
 * Where the transports keep the copies of put value `value` stored on nodes, by what holds the
 * links to them (a mesh): they live as long as the value's refs do. `undefined` when `value` is
 * not a put value.
 *
 * @param value A put value.
 * @returns The map of its copies, or `undefined`.
 *
 * @example
 * ```ts
 * import { put, putCopies } from "./put.ts";
 * import { ok, strictEqual } from "node:assert/strict";
 * const v = { n: 1 };
 * const ref = put(v);
 * ok(putCopies(v) instanceof WeakMap);
 * strictEqual(putCopies({ n: 1 }), undefined);
 * strictEqual(ref.status, "completed");
 * ```
 */
export function putCopies(value: unknown): WeakMap<object, unknown> | undefined {
  if (!anyPut || typeof value !== "object" || value === null) return undefined;
  return entries.get(value)?.deref()?.copies;
}

/**
 * Notes `copy`, a copy of put value `value` stored on a node (a `LazyValue` whose release frees
 * it there), for the release of the value's last ref to free at once (see {@linkcode putCopies}).
 *
 * @param value A put value.
 * @param copy Its copy stored on a node.
 *
 * @example The last ref released frees the copy
 * ```ts
 * import { put, putStored } from "./put.ts";
 * import { LazyValue } from "./lazy_value.ts";
 * import { strictEqual } from "node:assert/strict";
 * let freed = 0;
 * class Copy extends LazyValue {
 *   protected fetch() { return Promise.resolve(undefined); }
 *   protected override free() { freed++; }
 * }
 * const v = { n: 1 };
 * const a = put(v), b = put(v);
 * putStored(v, new Copy());
 * a.release();
 * strictEqual(freed, 0); // b still holds it
 * b.release();
 * strictEqual(freed, 1);
 * ```
 */
export function putStored(value: unknown, copy: LazyValue): void {
  if (typeof value !== "object" || value === null) return;
  const entry = entries.get(value)?.deref();
  if (entry === undefined) return;
  // (one a collection freed is dropped: the list holds the copies that may still be freed)
  entry.stored = entry.stored.filter((r) => r.deref() !== undefined);
  entry.stored.push(new WeakRef(copy));
}

/**
 * A put ref was released: the last of its value's refs frees the copies stored on nodes (each once
 * no call in flight carries it) and makes the value an ordinary value again, so that a call made
 * with it afterwards carries it (a new `put` of it stores it anew).
 */
function putReleased(task: Task<unknown>): void {
  const entry = held.get(task);
  if (entry === undefined) return;
  held.delete(task);
  if (--entry.refs > 0) return;
  const value = task._value as object;
  if (entries.get(value)?.deref() === entry) entries.delete(value);
  const stored = entry.stored;
  entry.stored = [];
  for (const r of stored) r.deref()?.release();
}

/**
 * `args` with each put value among them replaced by its shared encoding ({@linkcode putEncoding}),
 * whose bytes a transport writes into the call's frame as they are. A put value that cannot be
 * encoded on its own stays as it is. Only arguments themselves are looked at, not what arrays and
 * objects among them hold.
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
    const e = putEncoding(args[i]);
    if (e !== undefined) (out ??= args.slice())[i] = e;
  }
  return out ?? args;
}
