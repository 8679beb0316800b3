/**
 * A service handle's reference as it travels: {@linkcode WireHandle} under its own CBOR tag,
 * {@linkcode TAG_HANDLE}, which the encoder writes for it and the decoder reads back only as one
 * ({@linkcode decodeHandle}), checked.
 *
 * @module
 */
import type { TagDecodeControl } from "cborg";

/**
 * The CBOR tag a service handle's reference travels under: 1953000289 (the bytes of "thka"), from
 * the first-come-first-served range of the IANA CBOR tags registry, unassigned there when chosen.
 * Only {@linkcode WireHandle} is written under it, and decode reads it only as one: no plain value
 * (an object with a key that looks like a handle) is ever taken for a handle.
 */
export const TAG_HANDLE: number = 0x74686b61;
/** Most replicas a handle's reference may name, and longest name, endpoint or id in it. */
const HANDLE_MAX_REPLICAS = 256;
const HANDLE_MAX_TEXT = 512;

/** One instance a {@linkcode WireHandle} reaches: where its node listens, its name, the instance id. */
export interface WireHandleReplica {
  /** The node's name (in errors). */
  readonly node: string;
  /** Where the node listens, as the sender reaches it. */
  readonly endpoint: string;
  /** The instance's id on that node. */
  readonly id: string;
}

function handleText(value: unknown, what: string): string {
  if (typeof value !== "string" || value.length === 0 || value.length > HANDLE_MAX_TEXT) {
    throw new TypeError(`A handle reference needs a ${what} of 1 to ${HANDLE_MAX_TEXT} characters`);
  }
  return value;
}

/**
 * A service handle as it travels: the service's name and the instances it reaches. Encoded as tag
 * {@linkcode TAG_HANDLE} around `[service, [[node, endpoint, id], …]]`; decode gives one back only
 * for that tag, checked.
 *
 * @example Round trip
 * ```ts
 * import { decode, encode, WireHandle } from "./codec.ts";
 * import { ok } from "node:assert/strict";
 * const h = new WireHandle("Retriever", [{ node: "n2", endpoint: "ws://10.0.0.2:7070", id: "abc" }]);
 * const back = decode(encode({ retriever: h })) as { retriever: WireHandle };
 * ok(back.retriever instanceof WireHandle && back.retriever.replicas[0].id === "abc");
 * // a plain object with a handle-like key stays a plain object
 * ok(!((decode(encode({ "$thinkagain.handle": {} })) as object) instanceof WireHandle));
 * ```
 */
export class WireHandle {
  /** The service's registered name. */
  readonly service: string;
  /** The instances (one per replica). */
  readonly replicas: readonly WireHandleReplica[];

  /**
   * @param service The service's registered name.
   * @param replicas The instances, 1 to 256.
   * @throws {TypeError} For an empty name, endpoint or id, one longer than 512 characters, or no replicas.
   */
  constructor(service: string, replicas: readonly WireHandleReplica[]) {
    this.service = handleText(service, "service name");
    if (!Array.isArray(replicas) || replicas.length === 0 || replicas.length > HANDLE_MAX_REPLICAS) {
      throw new TypeError(`A handle reference needs 1 to ${HANDLE_MAX_REPLICAS} replicas`);
    }
    this.replicas = Object.freeze(replicas.map((r) =>
      Object.freeze({
        node: handleText(r?.node, "node name"),
        endpoint: handleText(r?.endpoint, "endpoint"),
        id: handleText(r?.id, "instance id"),
      })
    ));
    Object.freeze(this);
  }
}

/**
 * Tag {@linkcode TAG_HANDLE}'s decoder: the {@linkcode WireHandle} its content describes, checked
 * as the constructor checks one.
 *
 * @param content The tag's content, as cborg hands it to a tag decoder.
 * @returns The handle.
 * @throws {Error} When the content is not `[service, [[node, endpoint, id], …]]` within bounds.
 *
 * @example
 * ```ts
 * import { decodeHandle, WireHandle } from "./codec_handle.ts";
 * import { ok, throws } from "node:assert/strict";
 * const content = (body: unknown) => Object.assign(() => body, { entries: () => [] });
 * ok(decodeHandle(content(["S", [["n1", "ws://a:1", "i1"]]])) instanceof WireHandle);
 * throws(() => decodeHandle(content(["S", []])), /tag 1953000289 \(a service handle\)/);
 * ```
 */
export function decodeHandle(content: TagDecodeControl): WireHandle {
  const body = content();
  const bad = () => new Error(`tag ${TAG_HANDLE} (a service handle) must hold [service, [[node, endpoint, id], …]]`);
  if (!Array.isArray(body) || body.length !== 2 || !Array.isArray(body[1])) throw bad();
  const replicas = (body[1] as unknown[]).map((r) => {
    if (!Array.isArray(r) || r.length !== 3) throw bad();
    return { node: r[0], endpoint: r[1], id: r[2] } as WireHandleReplica;
  });
  try {
    return new WireHandle(body[0] as string, replicas);
  } catch (e) {
    throw new Error(`tag ${TAG_HANDLE} (a service handle): ${(e as Error).message}`);
  }
}
