/**
 * What a node answers about the objects it keeps for drivers (`object_store.ts`) and the results it
 * publishes for other nodes (`published.ts`): a `fetch` gets an object's `result` frame (a published
 * one once its call ended), a `store` keeps a driver's `put` value, and a `free` drops objects,
 * collecting this process's garbage once enough was freed for refs a driver's collector found
 * dropped.
 *
 * @module
 */
import { errorToWire, frameBytes } from "../core/codec.ts";
import { OverloadedError, ProtocolError } from "../core/errors.ts";
import { collectFreedMemory } from "../core/_runtime.ts";
import {
  type CallMessage,
  decodeNodeMessage,
  encodeMessage,
  PUBLISH_WAIT_MS,
  STORED_ID_PREFIX,
  type StoreMessage,
} from "./protocol.ts";
import type { PublishedResults } from "./published.ts";
import { wireValue } from "./handle_wire.ts";
import { holdsDeviceValues, type ObjectStore, readBack } from "./object_store.ts";
import type { NodeLeases } from "./node_leases.ts";

/**
 * Bytes of objects freed for dropped refs (a `free` with `collected`) after which a node collects
 * its garbage (see {@linkcode ObjectEndpoints.free}): a whole-heap collection costs a node a few ms.
 */
const FREED_COLLECT_BYTES = 1024 * 1024;
/** The least time between two such collections of a node, whatever its drivers send. */
const FREED_COLLECT_INTERVAL_MS = 20;

/**
 * A node's answers to `fetch`, `store` and `free`, over its object store and published results.
 *
 * @example A `put` value stored, fetched and freed
 * ```ts
 * import { ObjectEndpoints } from "./object_endpoints.ts";
 * import { ObjectStore } from "./object_store.ts";
 * import { PublishedResults } from "./published.ts";
 * import { NodeLeases } from "./node_leases.ts";
 * import { decodeNodeMessage } from "./protocol.ts";
 * import { deepStrictEqual, strictEqual } from "node:assert/strict";
 * const objects = new ObjectStore({ node: "n1" });
 * const leases = new NodeLeases(0, {
 *   serviceOf: () => undefined,
 *   freeObjects() {},
 *   holdsObjects: () => false,
 *   destroy: async () => {},
 * });
 * const endpoints = new ObjectEndpoints(objects, new PublishedResults("n1"), leases, {});
 * endpoints.store({ t: "store", oid: "s:1", value: [1, 2] });
 * deepStrictEqual(decodeNodeMessage(await endpoints.fetch("s:1")), { t: "result", ok: true, value: [1, 2] });
 * endpoints.free(["s:1"], false, undefined);
 * strictEqual(objects.count, 0);
 * ```
 */
export class ObjectEndpoints {
  readonly #objects: ObjectStore;
  readonly #published: PublishedResults;
  readonly #leases: NodeLeases;
  readonly #owner: object;
  /** Bytes freed for dropped refs since the last collection (see {@linkcode ObjectEndpoints.free}). */
  #freedSinceCollection = 0;
  #lastCollectionAt = -Infinity;

  /**
   * @param objects The node's object store.
   * @param published Its published results.
   * @param leases Its leases (objects kept for a driver live while its lease does).
   * @param owner Whose links a handle in a fetched object is sent over (the node).
   */
  constructor(objects: ObjectStore, published: PublishedResults, leases: NodeLeases, owner: object) {
    this.#objects = objects;
    this.#published = published;
    this.#leases = leases;
    this.#owner = owner;
  }

  /**
   * Answers a `fetch`: a published result (a hand-off) once its call ended; a stored `put` value
   * once its store arrived (it may come on another connection, within `PUBLISH_WAIT_MS`); any other
   * object at once.
   *
   * @param oid The object.
   * @returns Its `result` frame.
   * @throws {ProtocolError} For an object this node does not hold.
   */
  async fetch(oid: string): Promise<Uint8Array> {
    const objects = this.#objects;
    // a published result (a hand-off) is answered once its call ended
    if (oid.startsWith("p:") && !objects.has(oid)) return await this.#published.answer(oid);
    // a stored put value may be pulled before its store arrived (another connection)
    if (oid.startsWith(STORED_ID_PREFIX)) await objects.whenStored(oid, PUBLISH_WAIT_MS);
    return await this.frame(oid);
  }

  /**
   * The `result` frame that carries object `oid` (what a `fetch` gets); the object is looked up
   * before any await, so a `free` arriving meanwhile does not take it away.
   *
   * @param oid The object.
   * @returns Its frame, or its promise when the object must be read back from a device or its
   * handles sent first.
   * @throws {ProtocolError} For an object this node does not hold.
   */
  frame(oid: string): Uint8Array | Promise<Uint8Array> {
    const stored = this.#objects.frame(oid);
    if (stored !== undefined) return stored; // encoded once, when it was made
    const value = this.#objects.get(oid);
    return (async () => {
      // it leaves the device now
      const v = holdsDeviceValues(value) ? await readBack(value) : value;
      const wired = wireValue(v, this.#owner);
      return encodeMessage({ t: "result", ok: true, value: wired instanceof Promise ? await wired : wired });
    })();
  }

  /**
   * What a pull of a published call's result gets, from the reply its caller got: the object it
   * became (counted in the store), its value or its error; a stream cannot be pulled. A value that
   * came back in the reply is held in that frame while published, counted against the store's
   * bound: past it, the pull gets the store's `OverloadedError`.
   *
   * @param reply The reply the call's caller got.
   * @param msg The call (`msg.publish` its published id).
   * @returns The frame the pull gets.
   */
  pulledFrame(reply: Uint8Array, msg: CallMessage): Uint8Array | Promise<Uint8Array> {
    const m = decodeNodeMessage(reply);
    if (m.t === "result" && m.ok && m.object !== undefined) {
      try {
        return this.frame(m.object.oid);
      } catch (e) {
        return encodeMessage({ t: "result", ok: false, error: errorToWire(e) });
      }
    }
    if (m.t === "result" && m.ok && msg.publish !== undefined) {
      const what = `result of ${msg.op !== undefined ? `op "${msg.op}"` : `method "${msg.method}"`} published ` +
        "for calls on other nodes";
      try {
        this.#published.hold(msg.publish, frameBytes(reply), what);
      } catch (e) {
        if (!(e instanceof OverloadedError)) throw e;
        return encodeMessage({ t: "result", ok: false, error: errorToWire(e) });
      }
    }
    if (m.t === "result") return reply;
    return encodeMessage({
      t: "result",
      ok: false,
      error: errorToWire(
        new ProtocolError(`The result of call "${msg.cid}" is a stream: it cannot be pulled by another node`),
      ),
    });
  }

  /**
   * Keeps a driver's `put` value (`store`) as the object it named, encoded once as the `result` a
   * fetch sends; a store past the bound is answered with `OverloadedError` (the driver then sends
   * the value with each call).
   *
   * @param msg The `store` message.
   * @returns The answer: the object, or the error.
   * @throws {ProtocolError} When the node holds an object of that id already.
   */
  store(msg: StoreMessage): Uint8Array {
    const frame = encodeMessage({ t: "result", ok: true, value: msg.value });
    try {
      this.#objects.put(undefined, frameBytes(frame), {
        owner: msg.owner,
        madeBy: "a ta.put() value",
        frame,
        oid: msg.oid,
      });
    } catch (e) {
      if (e instanceof OverloadedError) return encodeMessage({ t: "result", ok: false, error: errorToWire(e) });
      throw e;
    }
    if (msg.owner !== undefined) this.#leases.holdObjects(msg.owner);
    return encodeMessage({ t: "result", ok: true, object: { oid: msg.oid, bytes: frameBytes(frame) } });
  }

  /**
   * Answers a `free`'s objects: a published result is forgotten (and its connection's record of
   * it), any other object dropped from the store. `collected`: the driver's garbage collector found
   * their refs dropped, so they lived long enough to be old in this process's heap, where only a
   * whole-heap collection finds them, and until it comes every new result lands on fresh pages.
   * Once such frees come to {@linkcode FREED_COLLECT_BYTES}, this process collects (at most once per
   * {@linkcode FREED_COLLECT_INTERVAL_MS}, whatever the driver sends).
   *
   * @param oids The objects.
   * @param collected Whether their refs were collected.
   * @param published The published results of the connection the `free` came on, if any.
   */
  free(oids: readonly string[], collected: boolean, published: Set<string> | undefined): void {
    const objects = this.#objects;
    const before = objects.bytes;
    for (const oid of oids) {
      if (this.#published.forget(oid)) published?.delete(oid);
      else objects.free(oid);
    }
    if (collected) this.#collectFreed(before - objects.bytes);
  }

  #collectFreed(bytes: number): void {
    this.#freedSinceCollection += bytes;
    if (this.#freedSinceCollection < FREED_COLLECT_BYTES) return;
    const now = performance.now();
    if (now - this.#lastCollectionAt < FREED_COLLECT_INTERVAL_MS) return; // the next free asks again
    this.#lastCollectionAt = now;
    this.#freedSinceCollection = 0;
    collectFreedMemory();
  }
}
