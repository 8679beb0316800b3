/**
 * Replies too large for NATS, parked on the node until the caller fetches them over the node's
 * direct link (its WebSocket), so a large result needs no change of transport by hand: NATS carries
 * a small "parked" reply naming it, the bytes travel node to driver directly.
 *
 * @module
 */
import { TransportError } from "../../core/errors.ts";
import type { FrameHandler } from "../transport.ts";

/** How long a parked reply waits for its caller, ms. */
export const PARKED_TTL_MS: number = 60_000;
/** The most bytes parked at once on one node. */
export const MAX_PARKED_BYTES: number = 1024 * 1024 * 1024;

/** The first bytes of a fetch frame: `0xff` never starts a CBOR value, so no protocol frame does. */
const FETCH_MAGIC = [0xff, 0x54, 0x41, 0x50]; // ÿTAP

/**
 * The frame that fetches a parked reply over the direct link.
 *
 * @param id The parked reply's id.
 * @returns The frame.
 *
 * @example
 * ```ts
 * import { fetchFrame } from "./parking.ts";
 * if (fetchFrame("abc")[0] !== 0xff) throw new Error("unexpected");
 * ```
 */
export function fetchFrame(id: string): Uint8Array {
  const idBytes = new TextEncoder().encode(id);
  const frame = new Uint8Array(FETCH_MAGIC.length + idBytes.length);
  frame.set(FETCH_MAGIC);
  frame.set(idBytes, FETCH_MAGIC.length);
  return frame;
}

/** Parked replies of one node. */
export class ReplyParking {
  readonly #parked = new Map<string, { bytes: Uint8Array; until: number }>();
  #bytes = 0;

  /** Bytes parked now. */
  get bytes(): number {
    return this.#bytes;
  }

  /**
   * Parks a reply until it is fetched or {@linkcode PARKED_TTL_MS} passed.
   *
   * @param bytes The reply frame.
   * @returns Its id, or `undefined` when {@linkcode MAX_PARKED_BYTES} would be passed.
   *
   * @example
   * ```ts
   * import { ReplyParking } from "./parking.ts";
   * const p = new ReplyParking();
   * const id = p.park(new Uint8Array([1, 2]))!;
   * if (p.take(id)?.length !== 2 || p.take(id) !== undefined) throw new Error("taken once");
   * ```
   */
  park(bytes: Uint8Array): string | undefined {
    this.#expire();
    if (this.#bytes + bytes.byteLength > MAX_PARKED_BYTES) return undefined;
    const id = crypto.randomUUID();
    this.#parked.set(id, { bytes, until: performance.now() + PARKED_TTL_MS });
    this.#bytes += bytes.byteLength;
    return id;
  }

  /**
   * Takes a parked reply (once).
   *
   * @param id Its id.
   * @returns The bytes, or `undefined` when unknown, taken or expired.
   */
  take(id: string): Uint8Array | undefined {
    this.#expire();
    const p = this.#parked.get(id);
    if (p === undefined) return undefined;
    this.#parked.delete(id);
    this.#bytes -= p.bytes.byteLength;
    return p.bytes;
  }

  #expire(): void {
    const now = performance.now();
    for (const [id, p] of this.#parked) {
      if (p.until > now) break; // parked in order: the rest are younger
      this.#parked.delete(id);
      this.#bytes -= p.bytes.byteLength;
    }
  }

  /**
   * The node's direct-link handler with fetches of parked replies answered before it.
   *
   * @param handler The node's frame handler.
   * @returns A handler to serve on the direct link.
   *
   * @example
   * ```ts
   * import { fetchFrame, ReplyParking } from "./parking.ts";
   * const p = new ReplyParking();
   * const id = p.park(new Uint8Array([7]))!;
   * const h = p.wrap(() => new Uint8Array([0]));
   * const peer = { transport: "websocket" as const, connectionId: 1, oneWay: false };
   * if ((h(fetchFrame(id), peer) as Uint8Array)[0] !== 7) throw new Error("unexpected");
   * ```
   */
  wrap(handler: FrameHandler): FrameHandler {
    return (frame, peer) => {
      if (
        frame.byteLength > FETCH_MAGIC.length && frame[0] === FETCH_MAGIC[0] && frame[1] === FETCH_MAGIC[1] &&
        frame[2] === FETCH_MAGIC[2] && frame[3] === FETCH_MAGIC[3]
      ) {
        const id = new TextDecoder().decode(frame.subarray(FETCH_MAGIC.length));
        const bytes = this.take(id);
        if (bytes === undefined) {
          throw new TransportError("closed", "The parked reply is gone (fetched already, or kept past its time)");
        }
        return bytes;
      }
      return handler(frame, peer);
    };
  }
}
