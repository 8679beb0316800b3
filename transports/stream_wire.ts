/**
 * Streams over the wire, both ends. A call whose result is a stream is answered with a `chunk` (its
 * first items); the consumer asks for the next chunks with `credit` requests, which also grant
 * the producer more items and bytes: several kept asked for at once (sent together, one message),
 * so the node sends each chunk as soon as it is full without waiting to be asked, and the consumer
 * grants a quarter window at a time. The node calls the producer's `next()` only while it holds
 * credit, so a producer never runs further ahead of its consumer than the window (in items, and
 * about that many bytes). Small items travel many to a chunk: the node sends what it has as soon as
 * the producer has to wait (or a chunk is full), and the first item at once.
 *
 * Why requests and replies (a pull) rather than frames pushed by the node: every transport already
 * carries requests and replies, in order, failing them all when the connection drops, so a node
 * that dies mid-stream fails the consumer's pending request (`NodeLostError`) with no new path.
 * Streams need a connection that tells the node when its consumer went away (WebSocket, in-memory):
 * over HTTP each request stands alone, so a consumer that vanished would leave its producer parked
 * for ever. There a streaming call fails with an error saying so.
 *
 * @module
 */
import { decode, encode, errorFromWire, errorToWire, FRAME_HEADROOM, offerHeadroom } from "../core/codec.ts";
import { smallCopiesAreCheap } from "../core/_runtime.ts";
import { OpExecutionError, TimeoutError } from "../core/errors.ts";
import type { Stream, StreamTaker } from "../core/stream.ts";
import { type ChunkMessage, decodeReply, encodeMessage, type ResultMessage } from "./protocol.ts";
import type { PeerInfo } from "./transport.ts";

/** A consumer's credit window: items (and about how many bytes of them) a producer may run ahead. */
export interface StreamWindow {
  /** Items (default {@linkcode DEFAULT_STREAM_WINDOW}'s 4096). */
  items?: number;
  /** Bytes, as {@linkcode itemBytes} estimates them (default 4 MiB). */
  bytes?: number;
}

/**
 * The default credit window of a stream over the wire: 4096 items and 4 MiB (a mesh's
 * `streamWindow` sets another).
 *
 * @example
 * ```ts
 * import { DEFAULT_STREAM_WINDOW, resolveStreamWindow } from "./stream_wire.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * deepStrictEqual(resolveStreamWindow(undefined), { ...DEFAULT_STREAM_WINDOW });
 * ```
 */
export const DEFAULT_STREAM_WINDOW: Readonly<Required<StreamWindow>> = Object.freeze({
  items: 4096,
  bytes: 4 * 1024 * 1024,
});

const DEFAULT_WINDOW: Required<StreamWindow> = DEFAULT_STREAM_WINDOW;

/** Most items in one chunk. */
const CHUNK_ITEMS = 512;
/** A consumer grants credit each time it took this part of its window. */
const GRANT_PARTS = 4;
/** Most chunks a consumer keeps asked for at once. */
const PULLS_AHEAD = 4;
/** Most items in a stream's first chunk (the answer to its call). */
const FIRST_CHUNK_ITEMS = 16;
/** Microtask turns a watch waits to learn whether the producer waits (see StreamOutlets.#watch). */
const WATCH_TURNS = 8;
/** A chunk is sent once it holds about this many bytes. */
const CHUNK_BYTES = 64 * 1024;

/**
 * About how many bytes an item takes on the wire (counted against a window's bytes): a byte string
 * or typed array its length, a string its length, anything else 16. An estimate, cheap per item.
 *
 * @param item A stream item.
 * @returns Its estimated size.
 *
 * @example
 * ```ts
 * import { itemBytes } from "./stream_wire.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(itemBytes(new Float32Array(4)), 24);
 * strictEqual(itemBytes("abc"), 11);
 * ```
 */
export function itemBytes(item: unknown): number {
  if (typeof item === "string") return 8 + item.length;
  if (ArrayBuffer.isView(item)) return 8 + item.byteLength;
  return 16;
}

/**
 * Checks a window given by a user (a mesh's `streamWindow`): positive integers.
 *
 * @param window The window, or `undefined` for the default.
 * @returns The window with defaults filled in.
 * @throws {RangeError} For counts that are not positive integers.
 *
 * @example
 * ```ts
 * import { resolveStreamWindow } from "./stream_wire.ts";
 * import { deepStrictEqual, throws } from "node:assert/strict";
 * deepStrictEqual(resolveStreamWindow({ items: 8 }), { items: 8, bytes: 4 * 1024 * 1024 });
 * throws(() => resolveStreamWindow({ items: 0 }), RangeError);
 * ```
 */
export function resolveStreamWindow(window: StreamWindow | undefined): Required<StreamWindow> {
  if (window === undefined) return DEFAULT_WINDOW; // every call without a window of its mesh's
  const items = window?.items ?? DEFAULT_STREAM_WINDOW.items;
  const bytes = window?.bytes ?? DEFAULT_STREAM_WINDOW.bytes;
  for (const [k, v] of [["items", items], ["bytes", bytes]] as const) {
    if (!(Number.isSafeInteger(v) && v > 0)) {
      throw new RangeError(`A stream window's ${k} must be a positive integer, got ${String(v)}`);
    }
  }
  return { items, bytes };
}

// ---- a chunk written as its items come ---------------------------------------------------------

// A chunk's frame is `{t: "chunk", items: [...], done}` in CBOR, as encodeMessage writes it. Its
// small items (plain Uint8Arrays up to 4 KiB, strings, numbers) are written into the frame's buffer
// as the producer makes them, so that sending it adds only the bytes around them; an outlet keeps no
// array of them, and the encoder does not walk one. Anything else (an object, a large array, whose
// encoding the codec does its own way) sends the chunk's items through encodeMessage, as before.

const EMPTY = new Uint8Array(0);
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
 * those for the transport's header (see {@linkcode writtenFrame}).
 */
const CHUNK_ROOM = FRAME_HEADROOM + CHUNK_HEAD.length + 5;
/** `done: false` (or `true`, its last byte 0xf5) after them. */
const CHUNK_TAIL = Uint8Array.of(0x64, 0x64, 0x6f, 0x6e, 0x65, 0xf4);
/**
 * The first buffer of an outlet's chunks (it grows as needed, and serves all its chunks): room for
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

/** Makes room for `bytes` more bytes of the outlet's chunk. */
function room(outlet: Outlet, bytes: number): void {
  const out = outlet.out;
  if (outlet.at + bytes <= out.length) return;
  const next = new Uint8Array(Math.max(out.length === 0 ? CHUNK_START_BYTES : 0, 2 * (outlet.at + bytes)));
  // the whole of it, not a view of what is written: on Bun a view of a small typed array moves its
  // bytes out of the heap first (about a microsecond)
  next.set(out);
  outlet.out = next;
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
 * Writes `item` into the outlet's chunk when it is one of the kinds written as they come: returns
 * its size as {@linkcode itemBytes} estimates it, or -1 (nothing written) for any other.
 */
function writeItem(outlet: Outlet, item: unknown): number {
  if (typeof item === "object") {
    if (item === null || Object.getPrototypeOf(item) !== UINT8_PROTOTYPE) return -1;
    const bytes = item as Uint8Array;
    const n = bytes.byteLength;
    if (n > WRITE_MAX) return -1;
    room(outlet, 3 + n);
    const out = outlet.out;
    let k = writeHead(out, outlet.at, 0x40, n);
    // a short one byte by byte: a call into set() costs more than the copy
    if (n <= 64) { for (let i = 0; i < n; i++) out[k++] = bytes[i]; }
    else {
      out.set(bytes, k);
      k += n;
    }
    outlet.at = k;
    outlet.written++;
    return 8 + n;
  }
  if (typeof item === "string") {
    const n = item.length;
    if (n > WRITE_MAX) return -1;
    room(outlet, 3 + n);
    const out = outlet.out;
    const start = outlet.at;
    let k = writeHead(out, start, 0x60, n);
    for (let i = 0; i < n; i++) {
      const c = item.charCodeAt(i);
      if (c >= 0x80) return writeEncoded(outlet, item, 8 + n); // not ASCII: the codec's UTF-8
      out[k++] = c;
    }
    outlet.at = k;
    outlet.written++;
    return 8 + n;
  }
  if (typeof item === "number" || typeof item === "boolean" || item === undefined) {
    return writeEncoded(outlet, item, 16);
  }
  return -1;
}

/** Writes a primitive as the codec encodes it. */
function writeEncoded(outlet: Outlet, item: unknown, size: number): number {
  const bytes = encode(item);
  room(outlet, bytes.byteLength);
  outlet.out.set(bytes, outlet.at);
  outlet.at += bytes.byteLength;
  outlet.written++;
  return size;
}

/** Writes the array's head, and the chunk's head before it: returns where the frame starts. */
function writeFront(outlet: Outlet): number {
  const n = outlet.written;
  const headBytes = n < 24 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
  const out = outlet.out;
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
 * The chunk's frame, its written items with the head and tail around them; the outlet starts anew.
 * A frame of {@linkcode HAND_OVER_BYTES} or more leaves in the buffer it was written in, with the
 * room in front of it offered for the transport's header (over a WebSocket it is sent as it lies,
 * not copied into a message of its own), and the next chunk is written into a new buffer of its
 * size; a smaller one is copied out, and the buffer serves the next chunk.
 */
function writtenFrame(outlet: Outlet, done: boolean): Uint8Array {
  room(outlet, CHUNK_TAIL.length);
  const out = outlet.out;
  const end = outlet.at + CHUNK_TAIL.length;
  for (let i = 0, k = outlet.at; i < CHUNK_TAIL.length; i++) out[k + i] = CHUNK_TAIL[i];
  if (done) out[end - 1] = 0xf5;
  const start = writeFront(outlet);
  outlet.at = CHUNK_ROOM;
  outlet.written = 0;
  // a copy, not a view: see room()
  if (end - start < HAND_OVER_BYTES) return out.slice(start, end);
  const frame = out.subarray(start, end);
  offerHeadroom(frame, 0);
  outlet.out = new Uint8Array(end + (end >> 4));
  return frame;
}

/**
 * The chunk's written items, decoded (they are to be encoded with others): the outlet's next chunk
 * gets a new buffer, since the items decoded may be views of this one.
 */
function takeWritten(outlet: Outlet): unknown[] {
  const start = writeFront(outlet) + CHUNK_HEAD.length;
  const items = decode(outlet.out.subarray(start, outlet.at)) as unknown[];
  outlet.out = EMPTY;
  outlet.at = CHUNK_ROOM;
  outlet.written = 0;
  return items;
}

// ---- a chunk read as it was written -------------------------------------------------------------

/**
 * The longest byte string a consumer copies out of a chunk's frame rather than viewing it: 64 bytes
 * on Bun, where a 16-byte copy filled in a loop costs about half a view; none elsewhere (on Deno a
 * new small typed array costs about 900 ns, a view 30).
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
 * import { decodeChunk } from "./stream_wire.ts";
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
 * import { decodeCallReply } from "./stream_wire.ts";
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

// ---- the node's end ------------------------------------------------------------------------------

/** An outlet's buffer while it holds no item that is not written as it comes. */
const NO_ITEMS: unknown[] = [];

/** What an outlet asks of the {@linkcode StreamOutlets} it belongs to. */
interface OutletHome {
  /** Its first chunk leaves and more are to come: it joins the open streams (see `open`). */
  join(outlet: Outlet): void;
  /** It ended: it leaves them. */
  leave(outlet: Outlet): void;
}

/**
 * One stream a node sends: it takes the producer's items as its drain's taker (`take`, `drained`,
 * `failed`: no closure or promise per drain) into chunks, and answers the chunks asked for.
 */
class Outlet implements StreamTaker<unknown> {
  /** Credit left: items, and bytes (as {@linkcode itemBytes} estimates them). */
  items: number;
  bytes: number;
  /**
   * The chunk being made: its items written as they come into `out` (see {@linkcode writeItem}),
   * from `at` on; or, once an item came that is not written so (an object, a large array), all its
   * items in `buffer` (NO_ITEMS until then: most chunks never need it), encoded together when it is
   * sent.
   */
  out: Uint8Array = EMPTY;
  at: number = CHUNK_ROOM;
  written = 0;
  buffer: unknown[] = NO_ITEMS;
  /** The chunk's items, and their bytes. */
  held = 0;
  bufferBytes = 0;
  /** Chunks asked for and not yet answered, oldest first. */
  readonly pulls: ((frame: Uint8Array) => void)[] = [];
  pumping = false;
  ended = false;
  error: unknown = undefined;
  sentFirst = false;
  /** Items made so far, and chunks sent: a watch compares them to learn whether the producer waits. */
  made = 0;
  sent = 0;
  /** A watch is on: a chunk is asked for and items are buffered (see watch). */
  watching = false;
  /** The watch's macrotask, once the producer proved busy. */
  tick: ReturnType<typeof setTimeout> | undefined = undefined;
  /** The call's deadline. */
  timer: ReturnType<typeof setTimeout> | undefined = undefined;
  /**
   * Whether it is among the open streams (by key, and its connection's), which it joins only when
   * its first chunk leaves and more are to come: until then its call is in flight on the node, and
   * the call's cancel, deadline and connection reach its stream through the call's ref (a stream
   * done within its first chunk, a one-token answer, never joins).
   */
  joined = false;
  /** The open streams of the connection it came on, once joined (it leaves them when it ends). */
  peers: Set<Outlet> | undefined = undefined;

  /**
   * @param home The node's open streams.
   * @param key The call's key.
   * @param name The call's name (in a deadline's error).
   * @param stream The call's result.
   * @param items Items granted with the call.
   * @param bytes Bytes granted with the call.
   * @param signal The signal of the connection it came on (aborted when it closes).
   */
  constructor(
    readonly home: OutletHome,
    readonly key: string,
    readonly name: string,
    readonly stream: Stream<unknown>,
    items: number,
    bytes: number,
    readonly signal: AbortSignal | undefined,
  ) {
    this.items = items;
    this.bytes = bytes;
  }

  /** The call's deadline, `ms` from now: past it the stream is stopped with a `TimeoutError`. */
  startDeadline(ms: number): void {
    // (not in open(): a function that makes a closure makes a scope for it on every call, on Bun
    // whether or not the closure is made)
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.stream.cancel(new TimeoutError(this.name, ms));
    }, ms);
  }

  /** A chunk is asked for: answered once there is one (or the end). */
  pull(): Promise<Uint8Array> {
    const p = new Promise<Uint8Array>((resolve) => this.pulls.push(resolve));
    // while the producer runs, it sends when a chunk is full or it has to wait: answering at once
    // with what is buffered would send a few items per chunk
    if (this.pumping) {
      if (this.held > 0 && !this.watching) this.watch();
      return p;
    }
    if (this.held > 0 || this.ended) this.flush();
    else this.pump();
    return p;
  }

  /**
   * A chunk is asked for while the producer runs and items are buffered: what is buffered goes as
   * soon as the producer has to wait (a model's next token). A producer that makes nothing within a
   * few microtask turns waits, and the items go now; one that made more is busy, and they go when
   * its chunk is full or at the next macrotask (which runs only once the microtasks ran out, that is
   * when the producer waits or has no credit left). One watch per chunk, not a check per item.
   */
  watch(): void {
    this.watching = true;
    const made = this.made, sent = this.sent;
    let turns = WATCH_TURNS;
    // one microtask per turn, and none once a flush sent the chunk (which ends this watch): a short
    // stream, whose chunk goes when its producer ends a turn or two later, does not wait behind 8
    const turn = (): void => {
      if (this.sent !== sent || this.ended) return; // sent meanwhile: that flush ended this watch
      if (--turns > 0) return queueMicrotask(turn);
      if (this.made === made) return this.flush();
      this.tick = setTimeout(() => {
        this.tick = undefined;
        if (this.sent === sent) this.flush();
      }, 0);
    };
    queueMicrotask(turn);
  }

  /** Takes one item of the producer's: buffers it, sends a full chunk; `false` once credit is spent. */
  take(item: unknown): boolean {
    if (this.ended) return false; // cancelled meanwhile
    let size = this.buffer.length === 0 ? writeItem(this, item) : -1;
    if (size < 0) {
      if (this.written > 0) this.buffer = takeWritten(this);
      else if (this.buffer === NO_ITEMS) this.buffer = [];
      size = itemBytes(item);
      this.buffer.push(item);
    }
    this.held++;
    this.bufferBytes += size;
    this.items--;
    this.bytes -= size;
    this.made++;
    // the first chunk is small, so the first item is not held back while many more are made
    const full = this.sentFirst ? CHUNK_ITEMS : FIRST_CHUNK_ITEMS;
    if (this.held >= full || this.bufferBytes >= CHUNK_BYTES) this.flush();
    else if (this.pulls.length > 0 && !this.watching) this.watch();
    return !this.ended && this.items > 0 && this.bytes > 0;
  }

  /** The drain stopped: the stream ended (`true`), or credit ran out (`false`). */
  drained(ended: boolean): void {
    this.pumping = false;
    if (ended) this.ended = true;
    this.flush();
  }

  /** The producer threw, or the stream was stopped (its deadline, the call's cancel). */
  failed(error: unknown): void {
    this.pumping = false;
    if (!this.ended) {
      this.ended = true;
      this.error = error;
    }
    this.flush();
  }

  /** Takes the producer's items while the consumer holds credit (then, or at the end, flushes). */
  pump(): void {
    if (this.pumping) return;
    if (this.ended || this.items <= 0 || this.bytes <= 0) return this.flush();
    this.pumping = true;
    // (its end may come at once, within this call: a stream that ended or was stopped meanwhile)
    this.stream.drainTo(this);
  }

  /** Answers the oldest chunk asked for with what is buffered (and the end, if it came). */
  flush(): void {
    if (this.pulls.length === 0 || (this.held === 0 && !this.ended)) return;
    const answer = this.pulls.shift()!;
    this.sent++;
    this.watching = false;
    if (this.tick !== undefined) clearTimeout(this.tick);
    this.tick = undefined;
    this.held = 0;
    this.bufferBytes = 0;
    this.sentFirst = true;
    const last = this.ended;
    if (this.written > 0 && this.error === undefined) {
      // its items are written already: the frame is what is around them
      const frame = writtenFrame(this, last);
      if (last) this.end();
      else if (!this.joined) this.home.join(this);
      answer(frame);
      return;
    }
    const items = this.written > 0 ? takeWritten(this) : this.buffer;
    this.buffer = NO_ITEMS;
    let frame: Uint8Array;
    try {
      frame = last
        ? encodeMessage(
          this.error === undefined
            ? { t: "chunk", items, done: true }
            : { t: "chunk", items, done: true, error: errorToWire(this.error) },
        )
        : encodeMessage({ t: "chunk", items, done: false });
    } catch (e) {
      // an item that cannot travel ends the stream, with the reason
      this.end();
      this.stream.cancel();
      const error = new OpExecutionError(
        "stream",
        new TypeError(`a stream item cannot be sent: ${(e as Error).message}`),
      );
      answer(encodeMessage({ t: "chunk", items: [], done: true, error: errorToWire(error) }));
      return;
    }
    if (last) this.end();
    else if (!this.joined) this.home.join(this);
    answer(frame);
  }

  /** Stops it (its consumer cancelled it, or went away): the producer's `finally` runs. */
  stop(): void {
    // ended first: the drain's failure that the stream's cancel tells at once finds it over
    this.end();
    this.stream.cancel();
  }

  /** It is over: its timers stop, it leaves the open streams, and chunks still asked for learn so. */
  end(): void {
    this.ended = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.tick !== undefined) clearTimeout(this.tick);
    this.tick = undefined;
    if (this.joined) this.home.leave(this);
    if (this.pulls.length === 0) return;
    for (const answer of this.pulls.splice(0)) answer(encodeMessage({ t: "chunk", items: [], done: true }));
  }
}

/**
 * The node's open streams, by call: each produces while its consumer holds credit and answers
 * `credit` requests with chunks. A stream ends (its generator's `finally` runs, everything freed)
 * when it is done, when its consumer cancels it, when its deadline passes, or when the connection
 * it came on closes.
 *
 * @example Over an in-memory node, a stream of 5 items with a window of 2
 * ```ts
 * import * as ta from "../mod.ts";
 * import { NodeServer } from "./node_server.ts";
 * import { serveInMemory } from "./in_memory.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const count = ta.op({ name: "docStreamOutletsCount", remote: true }, async function* (n: number) {
 *   for (let i = 0; i < n; i++) yield i;
 * });
 * const node = new NodeServer({ name: "n1" });
 * const server = serveInMemory("doc-stream-outlets", node.handler);
 * await using mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: "mem://doc-stream-outlets" })], {
 *   streamWindow: { items: 2 },
 * });
 * const got = await mesh.run(async () => {
 *   const out: number[] = [];
 *   for await (const x of await count.go(5)) out.push(x);
 *   return out;
 * });
 * deepStrictEqual(got, [0, 1, 2, 3, 4]);
 * await node.drain();
 * await server.close();
 * ```
 */
export class StreamOutlets {
  readonly #open = new Map<string, Outlet>();
  readonly #connections = new Map<AbortSignal, Set<Outlet>>();
  readonly #home: OutletHome = {
    join: (outlet) => this.#join(outlet),
    leave: (outlet) => {
      outlet.peers?.delete(outlet);
      if (this.#open.get(outlet.key) === outlet) this.#open.delete(outlet.key);
    },
  };

  /** Streams open now, past their first chunk (see `open`). */
  get size(): number {
    return this.#open.size;
  }

  /**
   * Starts sending `stream`, the result of call `key`: resolves with its first chunk. Over HTTP,
   * where no connection tells the node that its consumer went away, the stream is stopped and the
   * call answered with an `OpExecutionError` saying that streams need the WebSocket transport.
   *
   * Until the first chunk leaves, the stream is the call's: the node stops it through the call's
   * ref (a `cancel`, its connection closing, the node draining; the deadline is the stream's own).
   * It joins the open streams, which `credit`, `cancel`, `cancelAll` and a closing connection find,
   * only if more is to come.
   *
   * @param key The call's key (connection and call id).
   * @param stream The call's result.
   * @param call The call (its window, deadline and op), and its name.
   * @param peer Who called: the transport, and the connection's signal (aborted when it closes).
   * @param name The call's name (default `call.name`, else its op's).
   * @returns The first chunk's frame (or the refusal's).
   */
  open(
    key: string,
    stream: Stream<unknown>,
    call: { creditItems?: number; creditBytes?: number; timeoutMs?: number; name?: string; op?: string },
    peer: PeerInfo | undefined,
    name: string = call.name ?? call.op ?? "stream",
  ): Promise<Uint8Array> {
    if (peer?.transport === "http") {
      stream.cancel();
      const error = new OpExecutionError(
        call.op ?? name,
        new TypeError(
          `its result is a stream, and streams need the WebSocket transport (ws://): over HTTP each request ` +
            "stands alone, so the node could not tell when the consumer went away",
        ),
      );
      return Promise.resolve(encodeMessage({ t: "result", ok: false, error: errorToWire(error) }));
    }
    const old = this.#open.get(key);
    if (old !== undefined) old.end(); // a call id reused: the old stream is over
    const signal = peer?.signal;
    const outlet = new Outlet(
      this.#home,
      key,
      name,
      stream,
      call.creditItems ?? DEFAULT_STREAM_WINDOW.items,
      call.creditBytes ?? DEFAULT_STREAM_WINDOW.bytes,
      signal,
    );
    const ms = call.timeoutMs;
    if (ms !== undefined && ms < 2 ** 31) outlet.startDeadline(ms);
    const first = outlet.pull();
    if (signal?.aborted) outlet.stop();
    return first;
  }

  /** The outlet's first chunk leaves and more are to come: it joins the open streams (see `open`). */
  #join(outlet: Outlet): void {
    outlet.joined = true;
    this.#open.set(outlet.key, outlet);
    const signal = outlet.signal;
    if (signal === undefined) return;
    // its connection closed while the call was in flight: nobody is left to read it
    if (signal.aborted) return outlet.stop();
    (outlet.peers = this.#connection(signal)).add(outlet);
  }

  /**
   * The open streams of the connection whose frames carry `signal`: made, with one listener that
   * stops them all when the connection closes, on its first stream (a listener per stream would
   * cost an add and a remove each, and adding one scans the others).
   */
  #connection(signal: AbortSignal): Set<Outlet> {
    let outlets = this.#connections.get(signal);
    if (outlets === undefined) {
      const made = outlets = new Set();
      this.#connections.set(signal, made);
      signal.addEventListener("abort", () => {
        this.#connections.delete(signal);
        for (const outlet of [...made]) this.cancel(outlet.key);
      }, { once: true });
    }
    return outlets;
  }

  /**
   * The consumer of call `key`'s stream grants more credit and asks for the next chunk.
   *
   * @param key The call's key.
   * @param items Items granted.
   * @param bytes Bytes granted.
   * @returns The next chunk's frame, once there is one; an ended stream's last word if it is over.
   */
  credit(key: string, items: number, bytes: number): Promise<Uint8Array> {
    const outlet = this.#open.get(key);
    if (outlet === undefined) {
      // ended and said so already (or never was): the consumer asked once more than needed
      return Promise.resolve(encodeMessage({ t: "chunk", items: [], done: true } satisfies ChunkMessage));
    }
    outlet.items += items;
    outlet.bytes += bytes;
    return outlet.pull();
  }

  /**
   * Stops call `key`'s stream (its consumer cancelled it, or went away): the producer's `finally`
   * runs. Returns `false` when no such stream is open.
   *
   * @param key The call's key.
   * @returns Whether a stream was stopped.
   */
  cancel(key: string): boolean {
    const outlet = this.#open.get(key);
    if (outlet === undefined) return false;
    outlet.stop();
    return true;
  }

  /** Stops every stream (the node drains). */
  cancelAll(): void {
    for (const key of [...this.#open.keys()]) this.cancel(key);
  }
}

// ---- the consumer's end --------------------------------------------------------------------------

/** How a consumer's chunks are asked for: a `credit` request on its link, and a `cancel`. */
export interface ChunkSource {
  /** Sends `credit` and resolves with the next chunk. */
  credit(items: number, bytes: number): Promise<ChunkMessage>;
  /** Tells the node to stop the stream (one-way). */
  cancel(): void;
  /** Turns an item that arrived into the value the consumer gets (handles in it). */
  revive?(item: unknown): unknown;
  /** Called once, when the stream ended (all taken, failed, or left early). */
  ended?(): void;
}

/**
 * The consumer's end of a stream over the wire, an async iterator: it holds the items that arrived,
 * grants the producer more credit as they are taken (a quarter window at a time, or whenever it has
 * taken all it holds), and keeps a chunk asked for while the producer may send more.
 *
 * @example Two chunks, with credit granted between them
 * ```ts
 * import { RemoteChunks } from "./stream_wire.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * let asked = 0;
 * const source = {
 *   credit: async () => (asked++, { t: "chunk" as const, items: asked === 1 ? [3] : [], done: true }),
 *   cancel() {},
 * };
 * const it = new RemoteChunks(source, { t: "chunk", items: [1, 2], done: false }, { items: 2, bytes: 1024 });
 * const got: unknown[] = [];
 * for (let r = await it.next(); !r.done; r = await it.next()) got.push(r.value);
 * deepStrictEqual(got, [1, 2, 3]);
 * ```
 */
export class RemoteChunks implements AsyncIterator<unknown> {
  readonly #source: ChunkSource;
  readonly #window: Required<StreamWindow>;
  /** What taking a quarter window of items (bytes) is: a grant is due then (see #due). */
  readonly #stepItems: number;
  readonly #stepBytes: number;
  /** Chunks kept asked for while the producer holds credit for them (see #ask). */
  readonly #ahead: number;
  /** The chunk being taken, from #head on, and its items' bytes (as itemBytes estimates them). */
  #buffer: readonly unknown[];
  #bufferBytes: number;
  #head = 0;
  /** Whether some item of the chunk may hold handles (an object other than a typed array): revived as taken. */
  #revive: boolean;
  /** Chunks that came while one was being taken, oldest first (none copied into another). */
  #queue: Held[] = NO_HELD;
  /**
   * The index at which a taken item may make a grant due (the end of what is held, or where a quarter
   * window would be taken): the only per-item test; items taken are counted then, not one by one.
   */
  #checkAt = 0;
  /** Items before this index are counted in #takenItems and #takenBytes; their bytes. */
  #counted = 0;
  #countedBytes = 0;
  #done: boolean;
  #error: unknown;
  /** Items (bytes) the producer may still send without more credit, as far as this end knows. */
  #owedItems: number;
  #owedBytes: number;
  /** Items (bytes) taken since the last grant, up to #counted. */
  #takenItems = 0;
  #takenBytes = 0;
  #pulls = 0;
  /** The last chunk asked for (its reply taken in turn): none before the first `credit`. */
  #inOrder: Promise<void> | undefined;
  #waiter: { resolve: (r: IteratorResult<unknown>) => void; reject: (e: unknown) => void } | undefined;

  #ended = false;

  /**
   * @param source How to ask for chunks (and whom to tell when the stream ended).
   * @param first The call's answer: the first chunk.
   * @param window The window this consumer granted with the call.
   */
  constructor(source: ChunkSource, first: ChunkMessage, window: Required<StreamWindow>) {
    this.#source = source;
    this.#window = window;
    this.#stepItems = Math.ceil(window.items / GRANT_PARTS);
    this.#stepBytes = Math.ceil(window.bytes / GRANT_PARTS);
    this.#ahead = Math.max(1, Math.min(PULLS_AHEAD, Math.floor(window.items / (2 * CHUNK_ITEMS))));
    const items = first.items;
    const bytes = heldBytes(items), revive = bytes < 0;
    this.#buffer = items;
    this.#bufferBytes = revive ? -bytes : bytes;
    this.#revive = revive && source.revive !== undefined;
    this.#done = first.done;
    this.#error = first.error === undefined ? undefined : errorFromWire(first.error);
    this.#owedItems = window.items - items.length;
    this.#owedBytes = window.bytes - this.#bufferBytes;
    this.#setCheck();
  }

  /** The chunks themselves (a call's result: `stream_call.ts` wraps it in a `Stream`). */
  [Symbol.asyncIterator](): this {
    return this;
  }

  #endOnce(): void {
    if (this.#ended) return;
    this.#ended = true;
    const source = this.#source;
    if (source.ended !== undefined) source.ended();
  }

  /** The next item when one is here already (no wait), else `undefined`; `Stream` asks this first. */
  tryNext(): IteratorResult<unknown> | undefined {
    let h = this.#head;
    let buffer = this.#buffer;
    if (h >= buffer.length) {
      if (this.#queue.length === 0) return undefined;
      this.#nextChunk();
      h = 0;
      buffer = this.#buffer;
    }
    const raw = buffer[h];
    this.#head = h + 1;
    if (h + 1 === this.#checkAt) this.#check();
    return { done: false, value: this.#revive ? this.#source.revive!(raw) : raw };
  }

  next(): Promise<IteratorResult<unknown>> {
    const r = this.tryNext();
    if (r !== undefined) return Promise.resolve(r);
    if (this.#done) {
      this.#endOnce();
      if (this.#error !== undefined) {
        const e = this.#error;
        this.#error = undefined;
        return Promise.reject(e);
      }
      return Promise.resolve({ done: true, value: undefined });
    }
    this.#ask();
    return new Promise((resolve, reject) => (this.#waiter = { resolve, reject }));
  }

  return(): Promise<IteratorResult<unknown>> {
    this.tryReturn();
    return Promise.resolve({ done: true, value: undefined });
  }

  /** {@linkcode RemoteChunks.return} with no promise (`Stream` stops it so when no `next()` waits). */
  tryReturn(): void {
    if (!this.#done) {
      this.#done = true;
      this.#source.cancel();
    }
    this.#endOnce();
    this.#buffer = NO_HELD_ITEMS;
    this.#queue = NO_HELD;
    this.#head =
      this.#counted =
      this.#checkAt =
      this.#bufferBytes =
      this.#countedBytes =
        0;
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.resolve({ done: true, value: undefined });
  }

  /** The chunk taken is done with: the next one that came is taken from now on. */
  #nextChunk(): void {
    this.#count();
    const next = this.#queue.shift()!;
    this.#buffer = next.items;
    this.#bufferBytes = next.bytes;
    this.#revive = next.revive;
    this.#head = this.#counted = this.#countedBytes = 0;
    this.#setCheck();
  }

  /** Counts the items taken since the last count (the rest of a chunk by its bytes, with no walk). */
  #count(): void {
    const buffer = this.#buffer, to = this.#head, from = this.#counted;
    if (to === from) return;
    let b = 0;
    if (to === buffer.length) b = this.#bufferBytes - this.#countedBytes;
    else for (let i = from; i < to; i++) b += itemBytes(buffer[i]);
    this.#takenItems += to - from;
    this.#takenBytes += b;
    this.#countedBytes += b;
    this.#counted = to;
  }

  /**
   * Where the next check is: at the end of what is held, or at the item that makes a quarter window
   * taken (in items or in bytes), whichever comes first.
   */
  #setCheck(): void {
    const buffer = this.#buffer, from = this.#counted;
    let at = Math.min(buffer.length, from + Math.max(1, this.#stepItems - this.#takenItems));
    let bytes = this.#takenBytes;
    // the items' bytes are walked only when the rest of the chunk could reach the step
    if (bytes + this.#bufferBytes - this.#countedBytes >= this.#stepBytes) {
      for (let i = from; i < at; i++) {
        bytes += itemBytes(buffer[i]);
        if (bytes >= this.#stepBytes) {
          at = i + 1;
          break;
        }
      }
    }
    this.#checkAt = Math.max(at, this.#head + 1);
  }

  /** An item taken reached the check: grants credit if due, asks for a chunk if caught up. */
  #check(): void {
    this.#count();
    if (this.#due()) this.#ask();
    this.#setCheck();
  }

  /**
   * Whether {@linkcode RemoteChunks.#ask} may have something to do: only once this end has taken all
   * it holds, or a quarter window since the last grant.
   */
  #due(): boolean {
    return this.#caughtUp() || this.#stepDue();
  }

  /** Whether every item that came was taken. */
  #caughtUp(): boolean {
    return this.#head >= this.#buffer.length && this.#queue.length === 0;
  }

  #stepDue(): boolean {
    return this.#takenItems >= this.#stepItems || this.#takenBytes >= this.#stepBytes;
  }

  /**
   * Grants credit when due, and keeps chunks asked for while the producer may send more: a grant
   * goes once a quarter window was taken (or when this end took all it holds and nothing is asked
   * for), and with it as many requests as the producer holds credit for, up to #ahead, in one
   * message. So the node, with requests waiting, sends each chunk as soon as it is full, and the
   * consumer sends one message per quarter window rather than one per chunk.
   */
  #ask(): void {
    if (this.#done) return;
    this.#count();
    const caughtUp = this.#caughtUp();
    const grant = this.#takenItems > 0 && (this.#stepDue() || caughtUp && this.#pulls === 0);
    const mayComeUnasked = this.#owedItems > 0 && this.#owedBytes > 0;
    if (!grant && (this.#pulls > 0 || !mayComeUnasked || !caughtUp)) return;
    const items = grant ? this.#takenItems : 0, bytes = grant ? this.#takenBytes : 0;
    this.#takenItems = this.#takenBytes = 0;
    this.#owedItems += items;
    this.#owedBytes += bytes;
    this.#pull(items, bytes);
    // the requests go together (the transport batches what is sent in one turn)
    const ahead = Math.min(this.#ahead, Math.ceil(this.#owedItems / CHUNK_ITEMS));
    while (this.#pulls < ahead) this.#pull(0, 0);
  }

  #pull(items: number, bytes: number): void {
    this.#pulls++;
    const reply = this.#source.credit(items, bytes);
    // chunks are taken in the order they were asked for, whatever order their replies resolve in
    const before = this.#inOrder;
    this.#inOrder = (before === undefined ? reply : before.then(() => reply)).then(
      (chunk) => this.#onChunk(chunk),
      (e) => this.#fail(e),
    );
  }

  #onChunk(chunk: ChunkMessage): void {
    this.#pulls--;
    if (this.#done && this.#waiter === undefined) return; // returned meanwhile
    const held = hold(chunk.items, this.#source);
    this.#owedItems -= held.items.length;
    this.#owedBytes -= held.bytes;
    if (held.items.length > 0) {
      if (this.#caughtUp()) {
        this.#count();
        this.#buffer = held.items;
        this.#bufferBytes = held.bytes;
        this.#revive = held.revive;
        this.#head = this.#counted = this.#countedBytes = 0;
        this.#setCheck();
      } else if (this.#queue === NO_HELD) this.#queue = [held];
      else this.#queue.push(held);
    }
    if (chunk.done) {
      this.#done = true;
      if (chunk.error !== undefined) this.#error = errorFromWire(chunk.error);
    }
    const w = this.#waiter;
    if (w === undefined) return;
    const r = this.tryNext();
    if (r !== undefined) {
      this.#waiter = undefined;
      w.resolve(r);
      this.#ask();
    } else if (this.#done) {
      this.#waiter = undefined;
      this.#endOnce();
      if (this.#error !== undefined) {
        const e = this.#error;
        this.#error = undefined;
        w.reject(e);
      } else w.resolve({ done: true, value: undefined });
    } else this.#ask();
  }

  #fail(e: unknown): void {
    this.#pulls--;
    if (this.#done) return;
    this.#done = true;
    const w = this.#waiter;
    this.#waiter = undefined;
    if (w !== undefined) {
      this.#endOnce();
      w.reject(e);
    } else this.#error = e;
  }
}

/** No chunks queued, and a returned stream's items (shared, never written to). */
const NO_HELD: Held[] = [];
const NO_HELD_ITEMS: readonly unknown[] = [];

/**
 * A chunk's items' bytes as {@linkcode itemBytes} counts them, negated when some item may hold
 * handles to revive (an object other than a typed array): {@linkcode hold} without its record.
 */
function heldBytes(items: readonly unknown[]): number {
  let bytes = 0, revive = false;
  for (let i = 0; i < items.length; i++) {
    const x = items[i];
    if (typeof x === "object" && x !== null) {
      if (ArrayBuffer.isView(x)) bytes += 8 + x.byteLength;
      else {
        bytes += 16;
        revive = true;
      }
    } else bytes += typeof x === "string" ? 8 + x.length : 16;
  }
  return revive ? -bytes : bytes;
}

/** A chunk's items as a consumer holds them: with their bytes, and whether some may hold handles. */
interface Held {
  readonly items: readonly unknown[];
  readonly bytes: number;
  readonly revive: boolean;
}

/**
 * A chunk that arrived, to hold: its bytes as {@linkcode itemBytes} counts them, and whether some
 * item may hold handles to revive (an object other than a typed array), in one walk.
 */
function hold(items: readonly unknown[], source: ChunkSource): Held {
  const bytes = heldBytes(items);
  return bytes < 0 ? { items, bytes: -bytes, revive: source.revive !== undefined } : { items, bytes, revive: false };
}
