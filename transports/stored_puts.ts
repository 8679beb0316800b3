/**
 * `ta.put` values on nodes: a put value larger than the mesh's `keepResultsAbove` (64 KiB by
 * default), passed to calls sent to nodes, is stored once on the first node a call takes it to (a
 * `store` message, its encoding made once: see `core/put.ts`) and every call names it as an object
 * of that node's store, the calls to other nodes pulling it from there node to node, as they pull
 * a result. So a 1 MiB value passed to a thousand calls crosses the driver's links once. Smaller
 * values travel with each call, their bytes written into its frame as encoded once.
 *
 * The calls are sent right behind the store, without waiting for its answer: the node (and a node
 * pulling it) waits a little for a store that a call overtook. The driver owns the copy as it owns a
 * result kept on a node: it goes when the value's last ref is released (`ref.release()`, `using`;
 * once no call in flight names it) or its refs are collected, when the mesh closes, or when the
 * driver's lease on the node expires. When its node is lost (or forgot it: restarted), the
 * driver stores the value again, from its own copy, on the node of the next call, and a call that
 * failed for want of it is sent once more; a node that cannot keep it (its store full) gets the
 * value with each call instead.
 *
 * @module
 */
import { NodeLostError, OverloadedError, ProtocolError } from "../core/errors.ts";
import { putCopies, putEncoding, putStored } from "../core/put.ts";
import type { EncodedValue } from "../core/codec.ts";
import type { NodeLink } from "./link.ts";
import { DEFAULT_KEEP_ABOVE_BYTES } from "./objects.ts";
import { type ResultMessage, STORED_ID_PREFIX } from "./protocol.ts";
import { RemoteObject } from "./remote_object.ts";

/** A mesh whose nodes cannot keep a put value (a store was refused): it travels with each call. */
const WITH_EACH_CALL = Symbol("with each call");

/** What a stored copy was made as: the object the calls name (its `madeBy`, in errors). */
const MADE_BY = "a ta.put() value";

function storesAbove(link: NodeLink): number {
  const options = (link.holder as { options?: { keepResultsAbove?: number } }).options;
  return options?.keepResultsAbove ?? DEFAULT_KEEP_ABOVE_BYTES;
}

/** Whether calls on `link` may name a value stored on its node, and other nodes pull it from there. */
function storable(link: NodeLink): boolean {
  const t = link.transport.name;
  return t === "websocket" || t === "http" || t === "in_memory";
}

/**
 * The copy of put value `value` (encoded as `encoding`) that calls on `link` name: the one stored
 * on a node of `link`'s mesh, or one stored now on `link`'s node. `undefined`: the value travels
 * with the call (small, or its mesh's nodes cannot keep it).
 */
function storedCopy(value: object, encoding: EncodedValue, link: NodeLink): RemoteObject | undefined {
  const bytes = encoding.bytes.byteLength;
  if (bytes <= storesAbove(link) || !storable(link)) return undefined;
  const copies = putCopies(value);
  if (copies === undefined) return undefined;
  const known = copies.get(link.holder);
  if (known === WITH_EACH_CALL) return undefined;
  if (known instanceof RemoteObject && !known.link.lost) return known;
  // none yet, or its node was lost: stored (again) on this call's node, the call sent right behind
  const oid = `${STORED_ID_PREFIX}${crypto.randomUUID()}`;
  const copy = new RemoteObject(link, oid, bytes, MADE_BY);
  copies.set(link.holder, copy);
  putStored(value, copy); // (freed at once when the value's last ref is released)
  link.request<ResultMessage>({ t: "store", oid, value: encoding, owner: link.leaseId }, "result").then(
    (res) => {
      if (!res.ok) throw new OverloadedError(res.error.message);
    },
  ).catch((e) => {
    // the calls that named it fail with "Unknown object" (the free below ends their wait) and are
    // sent again ({@linkcode putCopyLost}): stored on a live node when this one was lost, else with
    // the value itself (a full store, a value too large for a frame: the call says what it is)
    if (copies.get(link.holder) === copy) {
      if (link.asNodeLost(e) instanceof NodeLostError) copies.delete(link.holder);
      else copies.set(link.holder, WITH_EACH_CALL);
    }
    link.freeObject(oid);
  });
  return copy;
}

/**
 * `args` of a call about to go to `link`'s node with each put value among them replaced: a large
 * one by its copy stored on a node of the mesh (a `RemoteObject`, which `pipeArgs` names), stored
 * now on `link`'s node when it has none; a small one by its encoding (written into the frame as it
 * is). Only arguments themselves are looked at, not what arrays and objects among them hold.
 *
 * @param args A call's arguments, as its body got them.
 * @param link Where the call goes.
 * @returns `args` itself when it holds no put value, else a copy.
 *
 * @example A small put value travels as its encoding
 * ```ts
 * import { putArgs } from "./stored_puts.ts";
 * import { put } from "../core/put.ts";
 * import { EncodedValue } from "../core/codec.ts";
 * import { ok, strictEqual } from "node:assert/strict";
 * const index = { docs: ["a"] };
 * const ref = put(index);
 * const link = { holder: {}, transport: { name: "websocket" } } as never;
 * ok(putArgs([index, 1], link)[0] instanceof EncodedValue);
 * const plain = [{ docs: [] }];
 * strictEqual(putArgs(plain, link), plain);
 * strictEqual(ref.status, "completed");
 * ```
 */
export function putArgs(args: unknown[], link: NodeLink): unknown[] {
  let out: unknown[] | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const encoding = putEncoding(a);
    if (encoding === undefined) continue;
    (out ??= args.slice())[i] = storedCopy(a as object, encoding, link) ?? encoding;
  }
  return out ?? args;
}

/**
 * After a call on `link` failed with `error`: whether that was for want of a put value's stored
 * copy among `args` (its node was lost, or does not hold it: restarted, the driver's lease there
 * expired, or its store was refused). Those copies are forgotten, so that the call, sent once more,
 * stores the value again ({@linkcode putArgs}), or carries it where it cannot be stored.
 *
 * @param error What the call failed with.
 * @param args The call's arguments, as its body got them.
 * @param link Where the call went.
 * @returns True when the call should be sent again.
 *
 * @example Other failures are left alone
 * ```ts
 * import { putCopyLost } from "./stored_puts.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(putCopyLost(new Error("x"), [1], { holder: {} } as never), false);
 * ```
 */
export function putCopyLost(error: unknown, args: readonly unknown[], link: NodeLink): boolean {
  const lostNode = error instanceof NodeLostError ? error.node : undefined;
  const unknown = error instanceof ProtocolError && error.message.includes(`"${STORED_ID_PREFIX}`);
  // (the call's own node lost is the call's failure: it fails over as any call does, and the next
  // call stores the value on a live node)
  if ((lostNode === undefined || lostNode === link.node) && !unknown) return false;
  let again = false;
  for (const a of args) {
    const copies = putCopies(a);
    const copy = copies?.get(link.holder);
    if (copy === undefined) continue; // (never stored: it travelled with the call)
    // the copy the call named is gone: forgotten, unless another call already replaced it
    if (
      copy instanceof RemoteObject &&
      (unknown ? (error as Error).message.includes(`"${copy.oid}"`) : copy.link.node === lostNode)
    ) {
      copies!.delete(link.holder);
    }
    again = true;
  }
  return again;
}
