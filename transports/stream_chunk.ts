/**
 * A stream's chunk on the wire (see `stream_wire.ts`): the `chunk` message, `{t: "chunk", items:
 * [...], done}` in CBOR as `encodeMessage` writes it, written item by item as a node's producer
 * makes its items ({@linkcode writeItem}, {@linkcode writtenFrame}) and read by a consumer in a loop
 * of its own ({@linkcode decodeChunk}, {@linkcode decodeCallReply}); both sides fall back on the codec
 * for what these loops do not cover. Which items a chunk holds, and when it is sent, is the node's
 * (`stream_outlet.ts`).
 *
 * @module
 */
import { decode, encode, FRAME_HEADROOM, offerHeadroom } from "../core/codec.ts";
import { smallCopiesAreCheap } from "../core/_runtime.ts";
import { type ChunkMessage, decodeReply, type ResultMessage } from "./protocol.ts";

/**
 * Most items in one chunk: a node sends a chunk once it holds this many, and a consumer keeps as
 * many chunks asked for as its window holds chunks of this size (up to a bound).
 *
 * @example
 * ```ts
 * import { CHUNK_ITEMS } from "./stream_chunk.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(CHUNK_ITEMS, 2048);
 * ```
 */
export const CHUNK_ITEMS = 2048;

// ---- a chunk written as its items come ---------------------------------------------------------

// A chunk's frame is `{t: "chunk", items: [...], done}` in CBOR, as encodeMessage writes it. Its
// small items (plain Uint8Arrays up to 4 KiB, strings, numbers) are written into the frame's buffer
// as the producer makes them, so that sending it adds only the bytes around them; a node keeps no
// array of them, and the encoder does not walk one. Anything else (an object, a large array, whose
// encoding the codec does its own way) sends the chunk's items through encodeMessage, as before.

/**
 * Where a chunk is written, item by item: a node's outlet (`stream_outlet.ts`) is one. It starts
 * as `{ out: EMPTY_OUT, at: CHUNK_ROOM, written: 0 }`, and the functions below keep it so.
 *
 * @example Two items written, and the frame around them read back
 * ```ts
 * import { CHUNK_ROOM, type ChunkWriter, decodeChunk, EMPTY_OUT, writeItem, writtenFrame } from "./stream_chunk.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const writer: ChunkWriter = { out: EMPTY_OUT, at: CHUNK_ROOM, written: 0 };
 * writeItem(writer, Uint8Array.of(1, 2));
 * writeItem(writer, 7);
 * deepStrictEqual(decodeChunk(writtenFrame(writer, true)), { t: "chunk", items: [Uint8Array.of(1, 2), 7], done: true });
 * ```
 */
export interface ChunkWriter {
  /** The buffer its chunk is written in (grown as needed), the chunk's items from {@linkcode CHUNK_ROOM} on. */
  out: Uint8Array;
  /** Where the next item goes in `out`. */
  at: number;
  /** Items written since the last chunk was taken. */
  written: number;
}

/**
 * A writer's `out` before its first item (shared, never written to: the first item gets a buffer
 * of its own).
 *
 * @example
 * ```ts
 * import { EMPTY_OUT } from "./stream_chunk.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(EMPTY_OUT.length, 0);
 * ```
 */
export const EMPTY_OUT: Uint8Array = new Uint8Array(0);
/** `{t: "chunk", items: ` (a map of three), in front of the items' array. */
const CHUNK_HEAD = Uint8Array.of(
  0xa3,
  0x61,
  0x74,
  0x65,
  0x63,
  0x68,
  0x75,
  0x6e,
  0x6b,
  0x65,
  0x69,
  0x74,
  0x65,
  0x6d,
  0x73,
);
/**
 * Room in front of a chunk's items for its head and the array's (at most 5 bytes), and in front of
 * those for the transport's header (see {@linkcode writtenFrame}): where a writer's first item goes.
 *
 * @example
 * ```ts
 * import { CHUNK_ROOM } from "./stream_chunk.ts";
 * import { FRAME_HEADROOM } from "../core/codec.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(CHUNK_ROOM, FRAME_HEADROOM + 15 + 5);
 * ```
 */
export const CHUNK_ROOM: number = FRAME_HEADROOM + CHUNK_HEAD.length + 5;
/** `done: false` (or `true`, its last byte 0xf5) after them. */
const CHUNK_TAIL = Uint8Array.of(0x64, 0x64, 0x6f, 0x6e, 0x65, 0xf4);
/**
 * The first buffer of a writer's chunks (it grows as needed, and serves all its chunks): room for
 * a one-token answer (a 16-byte item and the frame around it) without clearing more.
 */
const CHUNK_START_BYTES = 64;
/**
 * A chunk's frame this large or larger leaves in the buffer it was written in (see
 * {@linkcode writtenFrame}): on Bun a copy of a 9 KiB frame (512 items of 16 bytes), and another into
 * the WebSocket message with its header, cost the node about as much as writing its items.
 */
const HAND_OVER_BYTES = 1024;
/** The longest plain Uint8Array (in bytes) or string (in UTF-16 units) written as it comes. */
const WRITE_MAX = 4096;
const UINT8_PROTOTYPE: object = Uint8Array.prototype;

/** Makes room for `bytes` more bytes of the writer's chunk. */
function room(writer: ChunkWriter, bytes: number): void {
  const out = writer.out;
  if (writer.at + bytes <= out.length) return;
  const next = new Uint8Array(Math.max(out.length === 0 ? CHUNK_START_BYTES : 0, 2 * (writer.at + bytes)));
  // the whole of it, not a view of what is written: on Bun a view of a small typed array moves its
  // bytes out of the heap first (about a microsecond)
  next.set(out);
  writer.out = next;
}

/** Writes a CBOR head (major type already shifted, argument below 2^16) at `k`; returns the next index. */
function writeHead(out: Uint8Array, k: number, major: number, n: number): number {
  if (n < 24) out[k++] = major | n;
  else if (n < 0x100) {
    out[k++] = major | 24;
    out[k++] = n;
  } else {
    out[k++] = major | 25;
    out[k++] = n >> 8;
    out[k++] = n & 0xff;
  }
  return k;
}

/**
 * Writes `item` into the writer's chunk when it is one of the kinds written as they come (a plain
 * Uint8Array or a string up to 4 KiB, a number, a boolean, `undefined`): returns its size as
 * `itemBytes` (`stream_window.ts`) estimates it, or -1 (nothing written) for any other.
 *
 * @param writer Where the chunk is written.
 * @param item A stream item.
 * @returns Its estimated size, or -1.
 *
 * @example
 * ```ts
 * import { CHUNK_ROOM, EMPTY_OUT, writeItem } from "./stream_chunk.ts";
 * import { strictEqual } from "node:assert/strict";
 * const writer = { out: EMPTY_OUT, at: CHUNK_ROOM, written: 0 };
 * strictEqual(writeItem(writer, "abc"), 11);
 * strictEqual(writeItem(writer, { a: 1 }), -1); // an object: the codec's
 * strictEqual(writer.written, 1);
 * ```
 */
export function writeItem(writer: ChunkWriter, item: unknown): number {
  if (typeof item === "object") {
    if (item === null || Object.getPrototypeOf(item) !== UINT8_PROTOTYPE) return -1;
    const bytes = item as Uint8Array;
    const n = bytes.byteLength;
    if (n > WRITE_MAX) return -1;
    room(writer, 3 + n);
    const out = writer.out;
    let k = writeHead(out, writer.at, 0x40, n);
    // a short one byte by byte: a call into set() costs more than the copy
    if (n <= 64) { for (let i = 0; i < n; i++) out[k++] = bytes[i]; }
    else {
      out.set(bytes, k);
      k += n;
    }
    writer.at = k;
    writer.written++;
    return 8 + n;
  }
  if (typeof item === "string") {
    const n = item.length;
    if (n > WRITE_MAX) return -1;
    room(writer, 3 + n);
    const out = writer.out;
    const start = writer.at;
    let k = writeHead(out, start, 0x60, n);
    for (let i = 0; i < n; i++) {
      const c = item.charCodeAt(i);
      if (c >= 0x80) return writeEncoded(writer, item, 8 + n); // not ASCII: the codec's UTF-8
      out[k++] = c;
    }
    writer.at = k;
    writer.written++;
    return 8 + n;
  }
  if (typeof item === "number" || typeof item === "boolean" || item === undefined) {
    return writeEncoded(writer, item, 16);
  }
  return -1;
}

/** Writes a primitive as the codec encodes it. */
function writeEncoded(writer: ChunkWriter, item: unknown, size: number): number {
  const bytes = encode(item);
  room(writer, bytes.byteLength);
  writer.out.set(bytes, writer.at);
  writer.at += bytes.byteLength;
  writer.written++;
  return size;
}

/** Writes the array's head, and the chunk's head before it: returns where the frame starts. */
function writeFront(writer: ChunkWriter): number {
  const n = writer.written;
  const headBytes = n < 24 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
  const out = writer.out;
  const start = CHUNK_ROOM - headBytes - CHUNK_HEAD.length;
  // (byte by byte: a call into set() costs more than copying 15 bytes, as in writeItem)
  for (let i = 0; i < CHUNK_HEAD.length; i++) out[start + i] = CHUNK_HEAD[i];
  let k = start + CHUNK_HEAD.length;
  if (headBytes === 5) {
    out[k++] = 0x9a;
    out[k++] = n >>> 24;
    out[k++] = (n >> 16) & 0xff;
    out[k++] = (n >> 8) & 0xff;
    out[k++] = n & 0xff;
  } else writeHead(out, k, 0x80, n);
  return start;
}

/**
 * The chunk's frame, its written items with the head and tail around them; the writer starts anew.
 * A frame of {@linkcode HAND_OVER_BYTES} or more leaves in the buffer it was written in, with the
 * room in front of it offered for the transport's header (over a WebSocket it is sent as it lies,
 * not copied into a message of its own), and the next chunk is written into a new buffer of its
 * size; a smaller one is copied out, and the buffer serves the next chunk.
 *
 * @param writer Where the chunk was written.
 * @param done Whether it is the stream's last.
 * @returns The chunk's frame (a `chunk` message).
 *
 * @example
 * ```ts
 * import { CHUNK_ROOM, decodeChunk, EMPTY_OUT, writeItem, writtenFrame } from "./stream_chunk.ts";
 * import { deepStrictEqual, strictEqual } from "node:assert/strict";
 * const writer = { out: EMPTY_OUT, at: CHUNK_ROOM, written: 0 };
 * writeItem(writer, "a");
 * deepStrictEqual(decodeChunk(writtenFrame(writer, false)), { t: "chunk", items: ["a"], done: false });
 * strictEqual(writer.written, 0); // the next chunk starts
 * ```
 */
export function writtenFrame(writer: ChunkWriter, done: boolean): Uint8Array {
  room(writer, CHUNK_TAIL.length);
  const out = writer.out;
  const end = writer.at + CHUNK_TAIL.length;
  for (let i = 0, k = writer.at; i < CHUNK_TAIL.length; i++) out[k + i] = CHUNK_TAIL[i];
  if (done) out[end - 1] = 0xf5;
  const start = writeFront(writer);
  writer.at = CHUNK_ROOM;
  writer.written = 0;
  // a copy, not a view: see room()
  if (end - start < HAND_OVER_BYTES) return out.slice(start, end);
  const frame = out.subarray(start, end);
  offerHeadroom(frame, 0);
  writer.out = new Uint8Array(end + (end >> 4));
  return frame;
}

/**
 * The chunk's written items, decoded (they are to be encoded with others): the writer's next chunk
 * gets a new buffer, since the items decoded may be views of this one.
 *
 * @param writer Where the chunk was written.
 * @returns Its items.
 *
 * @example
 * ```ts
 * import { CHUNK_ROOM, EMPTY_OUT, takeWritten, writeItem } from "./stream_chunk.ts";
 * import { deepStrictEqual, strictEqual } from "node:assert/strict";
 * const writer = { out: EMPTY_OUT, at: CHUNK_ROOM, written: 0 };
 * writeItem(writer, 1);
 * writeItem(writer, "two");
 * deepStrictEqual(takeWritten(writer), [1, "two"]);
 * strictEqual(writer.out, EMPTY_OUT);
 * ```
 */
export function takeWritten(writer: ChunkWriter): unknown[] {
  const start = writeFront(writer) + CHUNK_HEAD.length;
  const items = decode(writer.out.subarray(start, writer.at)) as unknown[];
  writer.out = EMPTY_OUT;
  writer.at = CHUNK_ROOM;
  writer.written = 0;
  return items;
}

// ---- a chunk read as it was written -------------------------------------------------------------

/**
 * The longest byte string a consumer copies out of a chunk's frame rather than viewing it: 64 bytes
 * on Bun, where a 16-byte copy filled in a loop costs less than a view; none elsewhere (on Deno a
 * new small typed array costs many times a view; BENCHMARKS.md, Streaming, tenth session).
 */
const COPY_MAX = smallCopiesAreCheap ? 64 : -1;

/**
 * Decodes a `chunk` reply (a consumer's `credit` request's answer), as `decodeReply(frame,
 * "chunk")` does; a chunk of byte strings and small integers, as a node writes them (see
 * {@linkcode writeItem}), is read by a loop of its own into the items' array: on Bun a byte string of
 * at most 64 bytes is copied into an array of its own (cheaper there than a view, and it keeps no
 * frame alive), any other viewed where it lies. Anything else goes through the codec.
 *
 * @param frame A reply's body.
 * @returns The chunk.
 * @throws {ProtocolError} For a reply that is no well-formed chunk.
 *
 * @example
 * ```ts
 * import { decodeChunk } from "./stream_chunk.ts";
 * import { encodeMessage } from "./protocol.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const items = [Uint8Array.of(1, 2), 7, "seven"];
 * deepStrictEqual(decodeChunk(encodeMessage({ t: "chunk", items, done: true })), { t: "chunk", items, done: true });
 * ```
 */
export function decodeChunk(frame: Uint8Array): ChunkMessage {
  return readChunk(frame) ?? decodeReply<ChunkMessage>(frame, "chunk");
}

const RESULT_OR_CHUNK = ["result", "chunk"] as const;

/**
 * Decodes a call's reply, as `decodeReply(frame, ["result", "chunk"])` does: a result, or the first
 * chunk of a stream, which is read as {@linkcode decodeChunk} reads the later ones (a one-token
 * answer pays no more to decode than a plain call's result).
 *
 * @param frame A reply's body.
 * @returns The result or the chunk.
 * @throws {ProtocolError} For a reply that is neither, or not well-formed.
 *
 * @example
 * ```ts
 * import { decodeCallReply } from "./stream_chunk.ts";
 * import { encodeMessage } from "./protocol.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const chunk = { t: "chunk", items: [Uint8Array.of(1)], done: true };
 * deepStrictEqual(decodeCallReply(encodeMessage(chunk)), chunk);
 * deepStrictEqual(decodeCallReply(encodeMessage({ t: "result", ok: true, value: 7 })), { t: "result", ok: true, value: 7 });
 * ```
 */
export function decodeCallReply(frame: Uint8Array): ResultMessage | ChunkMessage {
  return readChunk(frame) ?? decodeReply<ResultMessage | ChunkMessage>(frame, RESULT_OR_CHUNK);
}

/** The chunk in `d` when it is one that {@linkcode decodeChunk} reads itself, else `undefined`. */
function readChunk(d: Uint8Array): ChunkMessage | undefined {
  const head = CHUNK_HEAD.length, end = d.length;
  if (end < head + 1 + CHUNK_TAIL.length) return undefined;
  for (let i = 0; i < head; i++) if (d[i] !== CHUNK_HEAD[i]) return undefined;
  let p = head;
  const h = d[p++];
  if (h >> 5 !== 4) return undefined;
  let n = h & 31;
  if (n === 24) n = d[p++];
  else if (n === 25) {
    n = (d[p] << 8) | d[p + 1];
    p += 2;
  } else if (n > 24) return undefined;
  // at least a byte an item, and the tail after them
  if (n > end - p - CHUNK_TAIL.length) return undefined;
  const items = new Array<unknown>(n);
  for (let i = 0; i < n; i++) {
    if (p + 3 > end) return undefined; // an item's head (at most 3 bytes) and the tail must follow
    const b = d[p++];
    const major = b >> 5;
    let len = b & 31;
    if (len === 24) len = d[p++];
    else if (len === 25) {
      len = (d[p] << 8) | d[p + 1];
      p += 2;
    } else if (len > 25) return undefined;
    if (major === 0) {
      items[i] = len;
      continue;
    }
    if (major !== 2 || !(len <= end - p)) return undefined;
    if (len <= COPY_MAX) {
      const item = new Uint8Array(len);
      for (let j = 0; j < len; j++) item[j] = d[p + j];
      items[i] = item;
    } else items[i] = d.subarray(p, p + len);
    p += len;
  }
  if (p + CHUNK_TAIL.length !== end) return undefined;
  for (let i = 0; i < CHUNK_TAIL.length - 1; i++) if (d[p + i] !== CHUNK_TAIL[i]) return undefined;
  const done = d[end - 1];
  if (done !== 0xf4 && done !== 0xf5) return undefined;
  return { t: "chunk", items, done: done === 0xf5 };
}
