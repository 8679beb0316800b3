/**
 * The WebSocket framing shared by the client (`websocket.ts`) and the node's server (`server.ts`):
 * the frame layout, batches of frames, and messages cut into pieces.
 *
 * Every WebSocket binary message starts with a 5-byte header, `[kind: u8][id: u32 little-endian]`.
 * Kinds: 0 request, 1 reply, 2 notify (one-way, id 0), 3 error (body is a CBOR
 * `{ tag, message, data }`; id 0 means the whole connection is in error and is about to close),
 * 4 batch, 5-6 pieces of a longer message, 7 piece acknowledged, 8 a frame with segments: the bytes
 * of its large typed arrays and byte strings follow it as messages of their own, sent from where
 * they lie and viewed where they arrive (see {@linkcode KIND_SEGMENTED}).
 *
 * @module
 */
import {
  attachSegments,
  claimHeadroom,
  claimLatestHeadroom,
  FRAME_HEADROOM,
  SEGMENT_MIN_BYTES,
  segmentsOf,
} from "../core/codec.ts";
import { ProtocolError } from "../core/errors.ts";

/** Bytes of the frame header (kind + request id). */
export const FRAME_HEADER_BYTES = 5;
/** Frame kind: a request expecting a reply with the same id. */
export const KIND_REQUEST = 0;
/** Frame kind: the reply to the request with the same id. */
export const KIND_REPLY = 1;
/** Frame kind: a one-way frame. */
export const KIND_NOTIFY = 2;
/** Frame kind: an error reply (CBOR wire error) to the request with the same id; id 0: connection error. */
export const KIND_ERROR = 3;
/**
 * Message kind: several frames in one WebSocket message, each as `[u32 LE length][frame]` (a frame
 * being header + body). Frames written in the same turn travel together: one send, one syscall.
 */
export const KIND_BATCH = 4;

/** Message kind: a piece of a longer message; more pieces follow. */
export const KIND_PART = 5;
/** Message kind: the last piece; the pieces' bodies joined are one message (a frame or a batch). */
export const KIND_PART_END = 6;
/** Message kind: the server got a piece; sent at once so the client's next piece may leave. */
export const KIND_PART_ACK = 7;

/**
 * Message kind: a frame whose segments (`segmentsOf` in the codec) follow it, each as one message of
 * exactly its bytes with no header: `[8][n: u32][n lengths: u32 each][zeros to a multiple of 8]`, then
 * the frame itself (header and body, a request, reply or notify). No other message goes between
 * them. Each segment is at least the codec's `SEGMENT_MIN_BYTES`, and the frame and its segments
 * together count against the receiver's largest frame.
 */
export const KIND_SEGMENTED = 8;

/**
 * Client messages between these sizes go out in pieces of at most `PART_BYTES`, each answered by a
 * `KIND_PART_ACK`, and client batches stay below `SPLIT_ABOVE`. Deno's WebSocket client writes a
 * message of more than ~1 KB as two writes (header, then payload) on a socket with Nagle's
 * algorithm on: the payload waited for the ACK of the header, which the server's kernel delays
 * (delayed ACK) because the server cannot answer half a message. A piece that fits one write is
 * sent at once, and the piece ack (or a reply) carries the ACK that releases the next one.
 */
const SPLIT_ABOVE = 1000;
const SPLIT_BELOW = 65536;
const PART_BYTES = 960;

/**
 * The largest message a client sends in {@linkcode KIND_PART} pieces (header included): larger
 * ones go whole, so a server holds at most this much of a message in pieces per connection.
 */
export const MAX_PIECED_MESSAGE_BYTES: number = SPLIT_BELOW - 1;

/** Frames above this size are sent on their own, never copied into a batch. */
const BATCH_FRAME_LIMIT = 64 * 1024;
/** A batch is sent once it holds this many bytes, without waiting for the end of the turn. */
const BATCH_BYTES = 1024 * 1024;

if (FRAME_HEADROOM !== FRAME_HEADER_BYTES) throw new Error("the codec's headroom must fit the frame header");

/**
 * Writes `n` as a u32, little-endian, at `out[at..at+4]`: the one way framing writes a u32 (request
 * ids, batch lengths).
 *
 * @param out The buffer to write into.
 * @param at Where the four bytes start.
 * @param n An integer in `[0, 2^32)`.
 *
 * @example
 * ```ts
 * import { writeU32 } from "./ws_framing.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const out = new Uint8Array(5);
 * writeU32(out, 1, 0x01020304);
 * deepStrictEqual(out, new Uint8Array([0, 4, 3, 2, 1]));
 * ```
 */
export function writeU32(out: Uint8Array, at: number, n: number): void {
  out[at] = n & 0xff;
  out[at + 1] = (n >>> 8) & 0xff;
  out[at + 2] = (n >>> 16) & 0xff;
  out[at + 3] = (n >>> 24) & 0xff;
}

/**
 * Reads the little-endian u32 at `bytes[at..at+4]`: the one way framing reads a u32.
 *
 * @param bytes The buffer to read from (at least `at + 4` bytes).
 * @param at Where the four bytes start.
 * @returns The unsigned value.
 *
 * @example
 * ```ts
 * import { readU32, writeU32 } from "./ws_framing.ts";
 * import { strictEqual } from "node:assert/strict";
 * const out = new Uint8Array(4);
 * writeU32(out, 0, 0xfffffffe);
 * strictEqual(readU32(out, 0), 0xfffffffe);
 * ```
 */
export function readU32(bytes: Uint8Array, at: number): number {
  return (bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24)) >>> 0;
}

/**
 * Writes a frame header into the {@linkcode FRAME_HEADER_BYTES} bytes of `out` from `at` (its
 * start by default; a batch writes each of its frames' headers in place).
 *
 * @param out The buffer holding header and body.
 * @param kind One of the `KIND_*` constants.
 * @param id The request id (u32).
 * @param at Where the header starts in `out`.
 *
 * @example
 * ```ts
 * import { KIND_REPLY, writeHeader } from "./ws_framing.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const out = new Uint8Array(5);
 * writeHeader(out, KIND_REPLY, 258);
 * deepStrictEqual(out, new Uint8Array([1, 2, 1, 0, 0]));
 * ```
 */
export function writeHeader(out: Uint8Array, kind: number, id: number, at = 0): void {
  out[at] = kind;
  writeU32(out, at + 1, id);
}

/** The largest request id: ids are u32s, from 1 up; 0 is no request's (a connection-level error). */
const MAX_REQUEST_ID = 0xffffffff;

/**
 * Chooses the id of a client's next request: `next` unless a request still pending holds it, then
 * the ids after it, wrapping from 2^32 - 1 to 1 and never to 0, which no request may have.
 *
 * @param next The id to try first (from 1 to 2^32 - 1).
 * @param inUse Whether a pending request holds an id.
 * @returns The id to use, and the one to try next time.
 *
 * @example The id after 2^32 - 1 is 1
 * ```ts
 * import { takeRequestId } from "./ws_framing.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * deepStrictEqual(takeRequestId(0xffffffff, () => false), { id: 0xffffffff, next: 1 });
 * deepStrictEqual(takeRequestId(0xffffffff, (id) => id === 0xffffffff), { id: 1, next: 2 });
 * ```
 */
export function takeRequestId(next: number, inUse: (id: number) => boolean): { id: number; next: number } {
  let id = next;
  // another id is tried only after 4 billion requests while one is stuck
  for (let tries = 0; inUse(id) && tries < MAX_REQUEST_ID; tries++) id = requestIdAfter(id);
  return { id, next: requestIdAfter(id) };
}

/**
 * The request id after `id`: `id + 1`, wrapping from 2^32 - 1 to 1 (never 0); what
 * {@linkcode takeRequestId} tries after an id, for a sender that checks the first one itself.
 *
 * @param id A request id (from 1 to 2^32 - 1).
 * @returns The next one.
 *
 * @example
 * ```ts
 * import { requestIdAfter } from "./ws_framing.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(requestIdAfter(7), 8);
 * strictEqual(requestIdAfter(0xffffffff), 1);
 * ```
 */
export function requestIdAfter(id: number): number {
  return id >= MAX_REQUEST_ID ? 1 : id + 1;
}

/**
 * The request id in a frame header (its kind is the first byte).
 *
 * @param frame A frame (header + body), at least {@linkcode FRAME_HEADER_BYTES} long.
 * @returns The request id.
 *
 * @example
 * ```ts
 * import { framed, KIND_REQUEST, readFrameId } from "./ws_framing.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(readFrameId(framed(KIND_REQUEST, 70_000, new Uint8Array([0xf6]))), 70_000);
 * ```
 */
export function readFrameId(frame: Uint8Array): number {
  return readU32(frame, 1);
}

/**
 * The message for one frame: header + body. A body that the codec left room in front of
 * (`encodeFrame`: a large one, or the small one it made last) gets its header written there, in
 * place; any other is copied behind a new header.
 *
 * @param kind One of the `KIND_*` constants.
 * @param id The request id (u32).
 * @param body The frame body.
 * @returns Header and body as one message.
 *
 * @example
 * ```ts
 * import { framed, KIND_REQUEST } from "./ws_framing.ts";
 * const m = framed(KIND_REQUEST, 7, new Uint8Array([0xf6]));
 * if (m.byteLength !== 6 || m[0] !== KIND_REQUEST || m[1] !== 7) throw new Error("unexpected");
 * ```
 */
export function framed(kind: number, id: number, body: Uint8Array): Uint8Array<ArrayBuffer> {
  const inPlace = claimLatestHeadroom(body) ?? claimHeadroom(body);
  if (inPlace !== undefined) {
    writeHeader(inPlace, kind, id);
    return inPlace;
  }
  const out = new Uint8Array(FRAME_HEADER_BYTES + body.byteLength);
  writeHeader(out, kind, id);
  out.set(body, FRAME_HEADER_BYTES);
  return out;
}

/**
 * The {@linkcode KIND_PART_ACK} message the server sends for every piece but the last (it has no
 * body; shared, never written to).
 */
export const PART_ACK: Uint8Array<ArrayBuffer> = new Uint8Array([KIND_PART_ACK, 0, 0, 0, 0]);

/**
 * Collects the frames written during one turn of the event loop and sends them as one message
 * (a {@linkcode KIND_BATCH} message when there are several).
 *
 * @example Two frames written in one turn leave as one batch
 * ```ts
 * import { forEachInBatch, KIND_BATCH, KIND_NOTIFY, Outbox } from "./ws_framing.ts";
 * import { strictEqual } from "node:assert/strict";
 * const sent: Uint8Array[] = [];
 * const outbox = new Outbox((m) => sent.push(m));
 * outbox.pushFrame(KIND_NOTIFY, 0, new Uint8Array([1]));
 * outbox.pushFrame(KIND_NOTIFY, 0, new Uint8Array([2]));
 * outbox.flush();
 * strictEqual(sent.length, 1);
 * strictEqual(sent[0][0], KIND_BATCH);
 * let frames = 0;
 * forEachInBatch(sent[0], () => frames++);
 * strictEqual(frames, 2);
 * ```
 */
export class Outbox {
  /** The bodies of the frames queued, each with its kind and request id: headers are written as they leave. */
  #bodies: Uint8Array[] = [];
  #kinds: number[] = [];
  #ids: number[] = [];
  #bytes = 0;
  readonly #send: (message: Uint8Array<ArrayBuffer>) => void;
  readonly #flushBound = () => this.flush();
  readonly #batchBytes: number;

  /**
   * @param send Sends one WebSocket message.
   * @param options `client`: the client side, whose batches stay small and whose mid-sized
   * messages go in pieces (see `KIND_PART`).
   */
  constructor(send: (message: Uint8Array<ArrayBuffer>) => void, options: { client?: boolean } = {}) {
    this.#send = options.client ? (m) => sendInPieces(m, send) : send;
    this.#batchBytes = options.client ? SPLIT_ABOVE - FRAME_HEADER_BYTES : BATCH_BYTES;
  }

  /**
   * Queues a frame as {@linkcode framed} would make it, its header written only when it is sent:
   * in a batch, straight into the batch's buffer, so that a frame batched with others is never
   * framed on its own first (on Deno a small buffer of its own cost more than the rest of the
   * framing: a node's replies at many calls in flight, encoded one after another before each is
   * sent, rarely find their room in front of them free, see `claimLatestHeadroom`).
   *
   * @param kind One of the `KIND_*` constants.
   * @param id The request id (u32).
   * @param body The frame body (not written to; its bytes must not change until it is sent).
   */
  pushFrame(kind: number, id: number, body: Uint8Array): void {
    const size = FRAME_HEADER_BYTES + body.byteLength;
    if (size > BATCH_FRAME_LIMIT) {
      this.flush(); // keep the order
      this.#send(framed(kind, id, body));
      return;
    }
    if (this.#bytes + size + 4 > this.#batchBytes) this.flush();
    if (this.#bodies.push(body) === 1) queueMicrotask(this.#flushBound);
    this.#kinds.push(kind);
    this.#ids.push(id);
    this.#bytes += size + 4;
  }

  /** Sends what is queued now. */
  flush(): void {
    const bodies = this.#bodies;
    if (bodies.length === 0) return;
    const kinds = this.#kinds, ids = this.#ids;
    this.#bodies = [];
    this.#kinds = [];
    this.#ids = [];
    const bytes = this.#bytes;
    this.#bytes = 0;
    if (bodies.length === 1) return this.#send(framed(kinds[0], ids[0], bodies[0]));
    const out = new Uint8Array(FRAME_HEADER_BYTES + bytes);
    writeHeader(out, KIND_BATCH, 0);
    let at = FRAME_HEADER_BYTES;
    for (let i = 0; i < bodies.length; i++) {
      const body = bodies[i];
      writeU32(out, at, FRAME_HEADER_BYTES + body.byteLength);
      writeHeader(out, kinds[i], ids[i], at + 4);
      out.set(body, at + 4 + FRAME_HEADER_BYTES);
      at += 4 + FRAME_HEADER_BYTES + body.byteLength;
    }
    this.#send(out);
  }

  /** Drops what is queued (the connection is gone). */
  clear(): void {
    this.#bodies = [];
    this.#kinds = [];
    this.#ids = [];
    this.#bytes = 0;
  }
}

function sendInPieces(m: Uint8Array<ArrayBuffer>, send: (message: Uint8Array<ArrayBuffer>) => void): void {
  if (m.byteLength <= SPLIT_ABOVE || m.byteLength >= SPLIT_BELOW) return send(m);
  for (let at = 0; at < m.byteLength; at += PART_BYTES) {
    const end = Math.min(at + PART_BYTES, m.byteLength);
    const part = new Uint8Array(FRAME_HEADER_BYTES + end - at);
    writeHeader(part, end === m.byteLength ? KIND_PART_END : KIND_PART, 0);
    part.set(m.subarray(at, end), FRAME_HEADER_BYTES);
    send(part);
  }
}

/**
 * Joins {@linkcode KIND_PART} pieces back into the message they were cut from, refusing to hold
 * more than `limit` bytes.
 *
 * @example
 * ```ts
 * import { KIND_PART, KIND_PART_END, PartAssembler, writeHeader } from "./ws_framing.ts";
 * import { deepStrictEqual, strictEqual } from "node:assert/strict";
 * const piece = (kind: number, body: number[]) => {
 *   const m = new Uint8Array(5 + body.length);
 *   writeHeader(m, kind, 0);
 *   m.set(body, 5);
 *   return m;
 * };
 * const parts = new PartAssembler(1024);
 * strictEqual(parts.add(piece(KIND_PART, [1, 2])), undefined);
 * deepStrictEqual(parts.add(piece(KIND_PART_END, [3])), new Uint8Array([1, 2, 3]));
 * ```
 */
export class PartAssembler {
  #parts: Uint8Array[] = [];
  #bytes = 0;
  #head: Uint8Array | undefined;
  #overflow = false;
  readonly #limit: number;

  /** @param limit Largest message to reassemble, in bytes. */
  constructor(limit: number) {
    this.#limit = limit;
  }

  /**
   * Takes one piece (a whole `KIND_PART`/`KIND_PART_END` message). Returns the joined message after
   * the last piece, `undefined` while more are expected, or, for a message that grew past the
   * limit, `{ tooLarge, head }` after its last piece: its size and its first bytes (the frame
   * header, to answer the request). Pieces past the limit are counted, never kept.
   */
  add(piece: Uint8Array): Uint8Array | undefined | { tooLarge: number; head: Uint8Array } {
    const body = piece.subarray(FRAME_HEADER_BYTES);
    if (this.#head === undefined) this.#head = body.slice(0, FRAME_HEADER_BYTES);
    this.#bytes += body.byteLength;
    if (!this.#overflow && this.#bytes > this.#limit) {
      this.#overflow = true;
      this.#parts = [];
    }
    if (!this.#overflow) this.#parts.push(body);
    if (piece[0] !== KIND_PART_END) return undefined;
    if (this.#overflow) {
      const result = { tooLarge: this.#bytes, head: this.#head };
      this.#reset();
      return result;
    }
    const out = new Uint8Array(this.#bytes);
    let at = 0;
    for (const p of this.#parts) {
      out.set(p, at);
      at += p.byteLength;
    }
    this.#reset();
    return out;
  }

  #reset(): void {
    this.#parts = [];
    this.#bytes = 0;
    this.#head = undefined;
    this.#overflow = false;
  }
}

/**
 * Calls `each` for every framed message inside a {@linkcode KIND_BATCH} message, in order.
 *
 * @param batch A whole `KIND_BATCH` message.
 * @param each Gets each frame (header + body), a view into `batch`.
 * @returns `false` when the batch is malformed (a length runs past the end).
 *
 * @example A length past the end is refused
 * ```ts
 * import { forEachInBatch, KIND_BATCH, writeHeader, writeU32 } from "./ws_framing.ts";
 * import { strictEqual } from "node:assert/strict";
 * const batch = new Uint8Array(5 + 4 + 5);
 * writeHeader(batch, KIND_BATCH, 0);
 * writeU32(batch, 5, 6);
 * strictEqual(forEachInBatch(batch, () => {}), false);
 * ```
 */
export function forEachInBatch(batch: Uint8Array, each: (message: Uint8Array) => void): boolean {
  let at = FRAME_HEADER_BYTES;
  while (at < batch.byteLength) {
    if (at + 4 > batch.byteLength) return false;
    const n = readU32(batch, at);
    at += 4;
    if (n < FRAME_HEADER_BYTES || at + n > batch.byteLength) return false;
    each(batch.subarray(at, at + n));
    at += n;
  }
  return true;
}

/** Most segments one frame may announce. */
const MAX_SEGMENTS = 65536;

/** Bytes in front of the frame in a {@linkcode KIND_SEGMENTED} message announcing `n` segments. */
function segmentedPrefix(n: number): number {
  return (FRAME_HEADER_BYTES + 4 * n + 7) & ~7;
}

/**
 * The messages that carry a frame: `undefined` when it has no segments (it goes as one framed
 * message), else the {@linkcode KIND_SEGMENTED} message and then the segments themselves (the
 * sender's bytes, not copies).
 *
 * @param kind The frame's kind (`KIND_REQUEST`, `KIND_REPLY`, `KIND_NOTIFY`).
 * @param id Its request id.
 * @param body The frame body, from `encodeFrame`.
 * @returns The messages to send in order, or `undefined`.
 *
 * @example
 * ```ts
 * import { encodeFrame } from "../core/codec.ts";
 * import { KIND_REQUEST, KIND_SEGMENTED, segmentedMessages } from "./ws_framing.ts";
 * import { strictEqual } from "node:assert/strict";
 * const x = new Float32Array(65536);
 * const messages = segmentedMessages(KIND_REQUEST, 9, encodeFrame({ x }))!;
 * strictEqual(messages.length, 2);
 * strictEqual(messages[0][0], KIND_SEGMENTED);
 * strictEqual(messages[1].buffer, x.buffer);
 * ```
 */
export function segmentedMessages(kind: number, id: number, body: Uint8Array): Uint8Array<ArrayBuffer>[] | undefined {
  const segments = segmentsOf(body);
  if (segments === undefined) return undefined;
  const n = segments.length;
  const prefix = segmentedPrefix(n);
  const head = new Uint8Array(prefix + FRAME_HEADER_BYTES + body.byteLength);
  writeHeader(head, KIND_SEGMENTED, n);
  for (let i = 0; i < n; i++) writeU32(head, FRAME_HEADER_BYTES + 4 * i, segments[i].byteLength);
  writeHeader(head.subarray(prefix), kind, id);
  head.set(body, prefix + FRAME_HEADER_BYTES);
  const out: Uint8Array<ArrayBuffer>[] = [head];
  for (const s of segments) out.push(s as Uint8Array<ArrayBuffer>);
  return out;
}

/**
 * Reads the segments a {@linkcode KIND_SEGMENTED} message announces from the messages after it, and
 * gives back the frame (header + body) with them attached once all arrived. A frame larger than the
 * limit, segments included, is read to its end without keeping its segments (the receiver answers
 * it as too large, as a frame sent whole). A peer that announces segments below
 * `SEGMENT_MIN_BYTES` or sends a message of another length than the next segment's is refused with
 * a `ProtocolError` (the messages after it can no longer be told apart: drop the connection); what
 * was held goes with {@linkcode SegmentReader.clear}.
 *
 * @example
 * ```ts
 * import { encodeFrame, segmentsOf } from "../core/codec.ts";
 * import { KIND_REPLY, SegmentReader, segmentedMessages } from "./ws_framing.ts";
 * import { strictEqual } from "node:assert/strict";
 * const [head, ...segments] = segmentedMessages(KIND_REPLY, 3, encodeFrame({ b: new Uint8Array(65536) }))!;
 * const reader = new SegmentReader(1 << 20);
 * reader.start(head.slice());
 * strictEqual(reader.waiting, true);
 * const { frame, body } = reader.add(segments[0].slice())!;
 * strictEqual(frame[0], KIND_REPLY);
 * strictEqual(segmentsOf(body)?.[0].byteLength, 65536);
 * ```
 */
export class SegmentReader {
  #frame: Uint8Array | undefined;
  #lengths: number[] = [];
  #got: Uint8Array[] = [];
  #next = 0;
  #total = 0;
  readonly #limit: number;

  /** @param limit The largest frame accepted, segments included, in bytes. */
  constructor(limit: number) {
    this.#limit = limit;
  }

  /** True while segments announced are still to come. */
  get waiting(): boolean {
    return this.#frame !== undefined;
  }

  /**
   * Reads a {@linkcode KIND_SEGMENTED} message.
   *
   * @param message The whole message.
   * @throws {ProtocolError} When it is malformed or announces too much.
   */
  start(message: Uint8Array): void {
    if (message.byteLength < FRAME_HEADER_BYTES) throw new ProtocolError("Malformed segmented frame: no header");
    const n = readU32(message, 1);
    const prefix = segmentedPrefix(n);
    if (n === 0 || n > MAX_SEGMENTS || message.byteLength < prefix + FRAME_HEADER_BYTES) {
      throw new ProtocolError(
        `Malformed segmented frame: ${n} segments announced (1 to ${MAX_SEGMENTS}) in ${message.byteLength} bytes`,
      );
    }
    let total = message.byteLength - prefix - FRAME_HEADER_BYTES;
    const lengths: number[] = new Array(n);
    for (let i = 0; i < n; i++) {
      const length = readU32(message, FRAME_HEADER_BYTES + 4 * i);
      if (length < SEGMENT_MIN_BYTES) {
        throw new ProtocolError(`Segment ${i} of ${length} bytes is below the ${SEGMENT_MIN_BYTES}-byte minimum`);
      }
      lengths[i] = length;
      total += length;
    }
    this.#frame = message.subarray(prefix);
    this.#lengths = lengths;
    this.#got = [];
    this.#next = 0;
    this.#total = total;
  }

  /**
   * Takes the next segment.
   *
   * @param message The whole message: the segment's bytes.
   * @returns After the last one, the frame (header + body) and its body, which holds the segments
   * (decode exactly that view), or, for a frame over the limit, `tooLarge`: its size in bytes,
   * segments included (the body then holds none); else `undefined`.
   * @throws {ProtocolError} When its length is not the one announced.
   */
  add(message: Uint8Array): { frame: Uint8Array; body: Uint8Array; tooLarge?: number } | undefined {
    const i = this.#next;
    const want = this.#lengths[i];
    if (this.#frame === undefined || message.byteLength !== want) {
      const announced = this.#lengths.length;
      this.clear();
      throw new ProtocolError(
        `Segment ${i} of ${announced} announced ${want} bytes, but a message of ${message.byteLength} bytes came`,
      );
    }
    const tooLarge = this.#total > this.#limit;
    // (past the limit they are counted, never kept)
    if (++this.#next < this.#lengths.length) {
      if (!tooLarge) this.#got.push(message);
      return undefined;
    }
    const frame = this.#frame;
    const body = frame.subarray(FRAME_HEADER_BYTES);
    const total = this.#total;
    // The last segment goes into a new array, never into #got: #got was made when the frame's head
    // came, and the collection that the segment's own allocation sets off (a 1 MiB message) finds
    // #got in use and moves it to the old generation. An old array that dies still holds what was
    // put into it until a full collection, so the segment, already done with, would outlive every
    // young collection and its memory be freed only with the next full one, with many MiB of
    // others; Bun's allocator gives such memory back to the system before it is reused, and each
    // message then faults it in again (BENCHMARKS.md, Transports, thirteenth session: with the push
    // a Bun node took several times the page faults per 1 MiB request, without it as many as a raw
    // echo).
    if (!tooLarge) attachSegments(body, this.#got.length === 0 ? [message] : [...this.#got, message]);
    this.clear();
    return tooLarge ? { frame, body, tooLarge: total } : { frame, body };
  }

  /** Forgets a frame still waiting for segments (the connection is gone). */
  clear(): void {
    this.#frame = undefined;
    this.#lengths = [];
    this.#got = [];
    this.#next = 0;
    this.#total = 0;
  }
}
