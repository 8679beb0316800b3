// Private: reading WebSocket frames (RFC 6455 §5.2) as raw bytes go by, for the Deno node's
// connection guard (./_connection_guard.ts), which relays a connection's bytes without parsing them
// into messages: where each of the server's frames ends (so that the relay puts its own pings only
// between them), and how long each of the client's messages grows (so that one past the node's
// limit closes the connection before Deno's WebSocket takes up to 64 MiB of it), with the payloads
// the relay needs from the client: its pongs (how much of the server's frames it has read) and the
// kind byte of the node's framing (a one-way frame gets no reply: the relay acknowledges it).

import { KIND_NOTIFY } from "../../transports/ws_framing.ts";

/** Carriage return and line feed: an HTTP head ends at the first blank line (CR LF CR LF). */
export const CR = 13;
export const LF = 10;
/** The payload of the relay's ping, and of the client's pong that answers it: a float64. */
export const PING_PAYLOAD_BYTES = 8;

/**
 * Follows the ends of a server's WebSocket frames (RFC 6455 §5.2) across chunks: the HTTP head
 * of its upgrade answer first (the chunk that starts it may hold frames after it), then each
 * frame's header and payload.
 */
export class FrameEnds {
  /** Bytes of the blank line that ends the upgrade answer's head seen so far; 4 once past it. */
  #matched = 0;
  #header = new Uint8Array(14);
  #have = 0;
  #payloadLeft = 0;
  /** Whether the frame being followed is a data frame (text, binary, continuation). */
  #isData = false;
  /** Bytes of data frames' payloads followed so far (whole frames, and the part of the current one). */
  data = 0;
  /** Whether the last {@linkcode next} stopped at a frame's end. */
  atEnd = false;

  /** Whether what was followed so far ends where a frame may begin (past the upgrade answer's head). */
  get atBoundary(): boolean {
    return this.#matched === 4 && this.#have === 0 && this.#payloadLeft === 0;
  }

  /** Follows `chunk` from `at` to the next frame's end (or the chunk's); returns where it stopped. */
  next(chunk: Uint8Array, at: number): number {
    this.atEnd = false;
    while (this.#matched < 4 && at < chunk.byteLength) {
      const b = chunk[at++];
      const m = this.#matched;
      if (b === (m % 2 === 0 ? CR : LF)) this.#matched = m + 1;
      else this.#matched = b === CR ? 1 : 0;
    }
    while (at < chunk.byteLength) {
      if (this.#payloadLeft > 0) {
        const skip = Math.min(this.#payloadLeft, chunk.byteLength - at);
        this.#payloadLeft -= skip;
        if (this.#isData) this.data += skip;
        at += skip;
        if (this.#payloadLeft === 0) {
          this.atEnd = true;
          return at;
        }
        continue;
      }
      this.#header[this.#have++] = chunk[at++];
      if (this.#have < 2) continue;
      const need = headerBytes(this.#header);
      if (this.#have < need) continue;
      this.#have = 0;
      this.#isData = (this.#header[0] & 0x0f) < 8;
      this.#payloadLeft = payloadLength(this.#header);
      if (this.#payloadLeft === 0) {
        this.atEnd = true;
        return at;
      }
    }
    return at;
  }
}

/** A frame header's length, from its first two bytes. */
export function headerBytes(h: Uint8Array): number {
  const len7 = h[1] & 0x7f;
  return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (h[1] & 0x80 ? 4 : 0);
}

/** A whole frame header's payload length (Infinity past 4 GiB). */
export function payloadLength(h: Uint8Array): number {
  const len7 = h[1] & 0x7f;
  if (len7 === 126) return (h[2] << 8) | h[3];
  if (len7 === 127) {
    const high = ((h[2] << 24) | (h[3] << 16) | (h[4] << 8) | h[5]) >>> 0;
    return high > 0 ? Infinity : ((h[6] << 24) | (h[7] << 16) | (h[8] << 8) | h[9]) >>> 0;
  }
  return len7;
}

/**
 * Follows the lengths of a client's WebSocket frames (RFC 6455 §5.2) across chunks, without
 * keeping any payload (but a pong's that may answer the relay's ping, unmasked), and says when a
 * message (its data frames, continuations included) grows past the limit.
 */
export class WsLengths {
  #header = new Uint8Array(14);
  #have = 0;
  #payloadLeft = 0;
  #message = 0;
  /** Data messages begun so far (a message counts at its first frame). */
  messages = 0;
  readonly #limit: number;
  readonly #onPong: ((read: number) => void) | undefined;
  /** The payload of a pong the size of the relay's ping's, as it arrives (unmasked), else undefined. */
  #pong: Uint8Array | undefined;
  #pongHave = 0;

  /** Told of each one-way frame of the node's framing (a binary message whose first byte is KIND_NOTIFY). */
  readonly #onOneWay: (() => void) | undefined;
  /** The frame being read starts a binary message whose first byte (its kind) is still to come. */
  #kindDue = false;
  /** That frame's mask key's first byte, which masks its payload's first byte. */
  #kindMask = 0;

  constructor(limit: number, onPong?: (read: number) => void, onOneWay?: () => void) {
    this.#limit = limit;
    this.#onPong = onPong;
    this.#onOneWay = onOneWay;
  }

  /** Takes the next bytes from the client; false once a message is over the limit. */
  feed(chunk: Uint8Array): boolean {
    let at = 0;
    while (at < chunk.byteLength) {
      if (this.#payloadLeft > 0) {
        const skip = Math.min(this.#payloadLeft, chunk.byteLength - at);
        if (this.#pong !== undefined) this.#pongBytes(chunk, at, skip);
        if (this.#kindDue) {
          // the message's first byte, unmasked
          this.#kindDue = false;
          if ((chunk[at] ^ this.#kindMask) === KIND_NOTIFY) this.#onOneWay!();
        }
        this.#payloadLeft -= skip;
        at += skip;
        continue;
      }
      this.#header[this.#have++] = chunk[at++];
      if (this.#have < 2) continue;
      const need = headerBytes(this.#header);
      if (this.#have < need) continue;
      const h = this.#header;
      const length = payloadLength(h);
      const opcode = h[0] & 0x0f;
      if (opcode === 0xa && length === PING_PAYLOAD_BYTES && need === 6 && this.#onPong !== undefined) {
        // (masked, as every client frame is: its key in bytes 2-5)
        this.#pong = new Uint8Array(PING_PAYLOAD_BYTES);
        this.#pongHave = 0;
      }
      const fin = (h[0] & 0x80) !== 0;
      // a whole binary message, masked: its kind byte is looked at (a one-way frame gets no reply)
      this.#kindDue = opcode === 2 && fin && (h[1] & 0x80) !== 0 && length > 0 && this.#onOneWay !== undefined;
      // (the key is the header's last 4 bytes, after a 16- or 64-bit length if there is one)
      if (this.#kindDue) this.#kindMask = h[need - 4];
      this.#have = 0;
      if (opcode < 8) {
        // a data frame: a new message, or a continuation (opcode 0) of the current one
        if (opcode !== 0) this.messages++;
        this.#message = opcode === 0 ? this.#message + length : length;
        if (this.#message > this.#limit) return false;
        if (fin) this.#message = 0;
      }
      this.#payloadLeft = length;
    }
    return true;
  }

  /** Takes `n` bytes of a pong's payload from `chunk` at `at`, unmasking them; calls back once whole. */
  #pongBytes(chunk: Uint8Array, at: number, n: number): void {
    const pong = this.#pong!;
    const h = this.#header;
    for (let i = 0; i < n; i++, this.#pongHave++) pong[this.#pongHave] = chunk[at + i] ^ h[2 + (this.#pongHave & 3)];
    if (this.#pongHave < PING_PAYLOAD_BYTES) return;
    this.#pong = undefined;
    const read = new DataView(pong.buffer).getFloat64(0);
    this.#onPong!(read);
  }
}
