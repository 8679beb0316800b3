/**
 * What a node tells a NATS cluster about itself (its announcement), how it is checked when it
 * arrives, and the subjects discovery uses.
 *
 * @module
 */
import { decode, encode } from "../../core/codec.ts";
import { PROTOCOL_VERSION } from "../protocol.ts";
import { isNatsNodeName, SUBJECT_PREFIX } from "./endpoint.ts";

/** Where a driver asks every node to announce itself (a request; each node replies). */
export const DISCOVER_SUBJECT: string = `${SUBJECT_PREFIX}.discover`;
/** Where a node announces itself when it starts serving (and again after its client reconnects). */
export const ANNOUNCE_SUBJECT: string = `${SUBJECT_PREFIX}.announce`;
/** Where a node says it is leaving (it drains). */
export const LEAVE_SUBJECT: string = `${SUBJECT_PREFIX}.leave`;

/** A node's announcement. */
export interface NodeAnnouncement {
  /** The protocol version the node speaks. */
  readonly v: number;
  /** Its name. */
  readonly node: string;
  /** Its NATS endpoint, `nats://…/<node>`. */
  readonly endpoint: string;
  /** Its direct endpoint (`http://host:port`; large values go there), when it has one. */
  readonly direct?: string;
  /** Changes every time the node process starts. */
  readonly session: string;
  /** Its GPUs. */
  readonly gpus: number;
  /** Its CPU cores (`null`: not limited). */
  readonly cpus: number | null;
  /** The services its module registered. */
  readonly services: readonly string[];
  /** The remote-capable ops its module registered. */
  readonly ops: readonly string[];
}

/** The most names an announcement may list (services, ops). */
const MAX_NAMES = 10_000;

/**
 * Encodes an announcement.
 *
 * @param a The announcement.
 * @returns Its CBOR bytes.
 *
 * @example
 * ```ts
 * import { decodeAnnouncement, encodeAnnouncement } from "./announcement.ts";
 * import { PROTOCOL_VERSION } from "../protocol.ts";
 * const a = { v: PROTOCOL_VERSION, node: "n1", endpoint: "nats://h:4222/n1", session: "s", gpus: 0, cpus: null, services: [], ops: [] };
 * if (decodeAnnouncement(encodeAnnouncement(a))?.node !== "n1") throw new Error("unexpected");
 * ```
 */
export function encodeAnnouncement(a: NodeAnnouncement): Uint8Array {
  return encode(a);
}

const isNameList = (x: unknown): x is string[] =>
  Array.isArray(x) && x.length <= MAX_NAMES && x.every((s) => typeof s === "string" && s.length <= 1024);

/**
 * Decodes and checks an announcement; `undefined` for anything malformed, or from another protocol
 * version (a driver uses only nodes it can talk to).
 *
 * @param bytes What arrived.
 * @returns The announcement, or `undefined`.
 *
 * @example
 * ```ts
 * import { decodeAnnouncement } from "./announcement.ts";
 * if (decodeAnnouncement(new Uint8Array([0xff])) !== undefined) throw new Error("unexpected");
 * ```
 */
export function decodeAnnouncement(bytes: Uint8Array): NodeAnnouncement | undefined {
  let a: Record<string, unknown>;
  try {
    a = decode(bytes) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (a === null || typeof a !== "object") return undefined;
  const ok = a.v === PROTOCOL_VERSION &&
    typeof a.node === "string" && isNatsNodeName(a.node) &&
    typeof a.endpoint === "string" && /^nats:\/\//i.test(a.endpoint) && a.endpoint.endsWith(`/${a.node}`) &&
    (a.direct === undefined || (typeof a.direct === "string" && /^(https?|wss?):\/\//.test(a.direct))) &&
    typeof a.session === "string" &&
    Number.isInteger(a.gpus) && (a.gpus as number) >= 0 &&
    (a.cpus === null || (Number.isInteger(a.cpus) && (a.cpus as number) > 0)) &&
    isNameList(a.services) && isNameList(a.ops);
  if (!ok) return undefined;
  return {
    v: a.v as number,
    node: a.node as string,
    endpoint: a.endpoint as string,
    ...(a.direct !== undefined ? { direct: a.direct as string } : {}),
    session: a.session as string,
    gpus: a.gpus as number,
    cpus: a.cpus as number | null,
    services: a.services as string[],
    ops: a.ops as string[],
  };
}
