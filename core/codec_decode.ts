/**
 * The strict decoder: frames come from peers, so {@linkcode decode} accepts only what the encoder
 * writes. It reads the tags the encoder writes and tag 55799 (the padding that aligns typed
 * arrays), the segment tag only in a frame that came with its segments (each named exactly once),
 * and refuses every other tag (shared references 28/29, tag 27 objects, cbor-x records, …), bigints
 * longer than 64 bytes, arrays, maps and tags nested more than 256 deep, indefinite-length items,
 * integers beyond 2^53 outside tags 2/3, and a map (or `Map`) that repeats a key or a `Set` that
 * repeats an item (the last would win silently, where another reader of the frame may take the
 * first). Each is refused as soon as it is read, before any work that grows faster than the frame.
 * Most frames are read whole by the fast path (`codec_fast_decode.ts`); the rest by `cborg` with the
 * tokenizer and tag table here ({@linkcode decodeFull}).
 *
 * @module
 */
import { decode as cborgDecode, type DecodeOptions, type TagDecodeControl, Token, Tokenizer, Type } from "cborg";
import { ProtocolError } from "./errors.ts";
import { fastDecode, NOT_FAST, type TagTable } from "./codec_fast_decode.ts";
import {
  Float16,
  MAX_BIGINT_BYTES,
  MAX_DEPTH,
  TAG_FLOAT16_ARRAY_LE,
  TAG_SELF_DESCRIBED,
  type TypedArrayConstructor,
} from "./codec_format.ts";
import { decodeHandle, TAG_HANDLE } from "./codec_handle.ts";
import { segmentTable, TAG_SEGMENT } from "./codec_segments.ts";

/** An empty frame, for a tokenizer that holds none. */
const NO_BYTES = new Uint8Array(0);

/**
 * Reads tokens as cborg's tokenizer does, with two changes: a byte string is a view into the frame
 * rather than a copy (so a typed array's data is not copied either), and nesting is counted.
 */
class FrameTokenizer extends Tokenizer {
  /** Items still to come in each open array, map or tag, innermost last. */
  readonly #left: number[] = [];
  #depth = 0;

  /** Starts reading `data` from its first byte. */
  start(data: Uint8Array): void {
    this.data = data;
    this._pos = 0;
    this.#depth = 0;
  }

  override next(): Token {
    const data = this.data;
    const pos = this._pos;
    const initial = data[pos];
    let token: Token;
    if (initial >= 0x40 && initial <= 0x5b) {
      token = byteStringView(data, pos, initial & 31);
      this._pos = pos + token.encodedLength!;
    } else {
      // text must be UTF-8: cborg would turn bad bytes into U+FFFD, changing the value silently
      if (initial >= 0x60 && initial <= 0x7b) checkUtf8(data, pos, initial & 31);
      token = super.next();
    }
    const major = token.type.major;
    const items = major === 4 ? token.value : major === 5 ? 2 * token.value : major === 6 ? 1 : 0;
    if (items > 0) {
      if (this.#depth === MAX_DEPTH) throw new Error(`nesting deeper than ${MAX_DEPTH} at byte ${pos}`);
      this.#left[this.#depth++] = items;
    } else {
      // a whole item: it may be the last of its container, which may be the last of its own, …
      let depth = this.#depth;
      while (depth > 0 && --this.#left[depth - 1] === 0) depth--;
      this.#depth = depth;
    }
    return token;
  }
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** Throws when the text string whose head is at `pos` is not valid UTF-8 (a cut-short one is cborg's to report). */
function checkUtf8(data: Uint8Array, pos: number, minor: number): void {
  const head = minor < 24 ? 1 : minor === 24 ? 2 : minor === 25 ? 3 : minor === 26 ? 5 : 9;
  if (pos + head > data.length) return;
  let length = minor;
  if (minor >= 24) {
    length = 0;
    for (let i = pos + 1; i < pos + head; i++) length = length * 256 + data[i];
  }
  if (length > data.length - pos - head) return;
  const bytes = data.subarray(pos + head, pos + head + length);
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] >= 0x80) {
      try {
        strictUtf8.decode(bytes);
      } catch {
        throw new Error(`the text string of ${length} bytes at byte ${pos} is not valid UTF-8`);
      }
      return;
    }
  }
}

function byteStringView(data: Uint8Array, pos: number, minor: number): Token {
  const head = minor < 24 ? 1 : minor === 24 ? 2 : minor === 25 ? 3 : minor === 26 ? 5 : 9;
  if (pos + head > data.length) throw new Error(`byte string head at byte ${pos} is cut short`);
  let length = minor;
  if (minor >= 24) {
    length = 0;
    for (let i = pos + 1; i < pos + head; i++) length = length * 256 + data[i];
  }
  if (length > data.length - pos - head) {
    throw new Error(`byte string of ${length} bytes at byte ${pos} runs past the end of the frame`);
  }
  const start = pos + head;
  return new Token(Type.bytes, data.subarray(start, start + length), head + length);
}

function bytesIn(content: TagDecodeControl, tag: number): Uint8Array {
  const bytes = content();
  if (!(bytes instanceof Uint8Array)) throw new Error(`tag ${tag} must hold a byte string`);
  return bytes;
}

function magnitude(content: TagDecodeControl, tag: number): bigint {
  const bytes = bytesIn(content, tag);
  if (bytes.byteLength > MAX_BIGINT_BYTES) {
    throw new Error(`a bigint needs at most ${MAX_BIGINT_BYTES} bytes, found one of ${bytes.byteLength}`);
  }
  // eight bytes at a time: a BigInt operation per byte made a frame of 64-byte bigints decode
  // far slower than a plain frame of its size (bench/decoder_bombs.ts measures it)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let n = 0n;
  let i = 0;
  for (; i + 8 <= bytes.byteLength; i += 8) n = (n << 64n) | view.getBigUint64(i);
  for (; i < bytes.byteLength; i++) n = (n << 8n) | BigInt(bytes[i]);
  return n;
}

/** A view of the data where it lies when it is aligned for `Kind`, else of a copy. */
function typedArrayDecoder(Kind: TypedArrayConstructor, tag: number): (content: TagDecodeControl) => ArrayBufferView {
  return (content) => {
    const bytes = bytesIn(content, tag);
    const size = Kind.BYTES_PER_ELEMENT;
    if (bytes.byteLength % size !== 0) {
      throw new Error(`tag ${tag} holds ${bytes.byteLength} bytes, not a whole number of ${size}-byte elements`);
    }
    const data = bytes.byteOffset % size === 0 ? bytes : bytes.slice();
    return new Kind(data.buffer, data.byteOffset, data.byteLength / size);
  };
}

const FLOAT16_TAGS: Record<number, (content: TagDecodeControl) => unknown> = Float16 === undefined
  ? {}
  : { [TAG_FLOAT16_ARRAY_LE]: typedArrayDecoder(Float16, TAG_FLOAT16_ARRAY_LE) };

/** The only tags {@linkcode decode} accepts: those {@linkcode encode} and {@linkcode encodeFrame} write. */
const TAGS: Record<number, (content: TagDecodeControl) => unknown> = {
  1: (content) => {
    const seconds = content();
    if (typeof seconds !== "number") throw new Error("tag 1 (a date) must hold a number");
    // a Date holds whole milliseconds, sent as ms / 1000: the one whose quotient that is (past year
    // 100,000 the product with 1000 can round to a neighbour)
    let ms = Math.round(seconds * 1000);
    if (ms / 1000 !== seconds) {
      if ((ms - 1) / 1000 === seconds) ms--;
      else if ((ms + 1) / 1000 === seconds) ms++;
    }
    return new Date(ms);
  },
  2: (content) => magnitude(content, 2),
  3: (content) => -1n - magnitude(content, 3),
  68: typedArrayDecoder(Uint8ClampedArray, 68),
  69: typedArrayDecoder(Uint16Array, 69),
  70: typedArrayDecoder(Uint32Array, 70),
  71: typedArrayDecoder(BigUint64Array, 71),
  72: typedArrayDecoder(Int8Array, 72),
  77: typedArrayDecoder(Int16Array, 77),
  78: typedArrayDecoder(Int32Array, 78),
  79: typedArrayDecoder(BigInt64Array, 79),
  85: typedArrayDecoder(Float32Array, 85),
  86: typedArrayDecoder(Float64Array, 86),
  258: (content) => {
    const items = content();
    if (!Array.isArray(items)) throw new Error("tag 258 (a set) must hold an array");
    const set = new Set(items);
    if (set.size !== items.length) throw new Error("tag 258 (a set) repeats an item");
    return set;
  },
  259: (content) => {
    const entries = content.entries();
    const map = new Map(entries);
    if (map.size !== entries.length) throw new Error("tag 259 (a map) repeats a key");
    return map;
  },
  [TAG_SELF_DESCRIBED]: (content) => content(),
  [TAG_HANDLE]: decodeHandle,
  [TAG_SEGMENT]: decodeSegment,
  ...FLOAT16_TAGS,
};

// Read by cborg's token readers (through the tokenizer) and by its decoder. (A map's keys are
// checked for repeats here, a lookup per key: most frames are read by the fast path, which checks
// them its own way.)
const strictOptions: DecodeOptions = {
  allowIndefinite: false,
  allowBigInt: false,
  allowUndefined: true,
  rejectDuplicateMapKeys: true,
};

/** Decode options with a tokenizer of their own. */
function freshDecodeOptions(): DecodeOptions {
  return { ...strictOptions, tags: TAGS, tokenizer: new FrameTokenizer(NO_BYTES, strictOptions) };
}

const sharedDecodeOptions = freshDecodeOptions();
let decoding = false;

/**
 * Decodes one CBOR frame. Malformed, truncated or trailing-garbage input throws `ProtocolError`
 * (never another error type), and so does anything outside what {@linkcode encode} writes (see the
 * module doc). Typed arrays and byte strings may be views into `bytes`: do not reuse the buffer.
 *
 * @param bytes Exactly one CBOR item.
 * @returns The decoded value.
 * @throws {ProtocolError} When the bytes are not exactly one well-formed CBOR item of the protocol.
 *
 * @example Truncated input is a ProtocolError
 * ```ts
 * import { decode, encode } from "./codec.ts";
 * import { ProtocolError } from "./errors.ts";
 * import { throws } from "node:assert/strict";
 * const bytes = encode({ hello: "world" });
 * throws(() => decode(bytes.subarray(0, 5)), ProtocolError);
 * ```
 *
 * @example A shared reference (tag 28) is refused
 * ```ts
 * import { decode } from "./codec.ts";
 * import { ProtocolError } from "./errors.ts";
 * import { throws } from "node:assert/strict";
 * throws(() => decode(new Uint8Array([0xd8, 0x1c, 0x80])), ProtocolError);
 * ```
 */
export function decode(bytes: Uint8Array): unknown {
  if (!(bytes instanceof Uint8Array)) {
    throw new ProtocolError(`Cannot decode frame: expected a Uint8Array, found ${typeof bytes}`);
  }
  if (bytes.byteLength === 0) throw new ProtocolError("Cannot decode frame: it is empty");
  // A Node/Bun Buffer would make every decoded byte string a Buffer; view it as a plain Uint8Array.
  const src = bytes.constructor === Uint8Array
    ? bytes
    : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const segments = segmentTable.get(bytes);
  if (segments !== undefined) return decodeWithSegments(src, segments);
  // most frames are envelopes the fast path reads whole; it hands anything else to cborg below
  const fast = fastDecode(src, TAGS as unknown as TagTable, MAX_DEPTH);
  return fast !== NOT_FAST ? fast : decodeFull(src);
}

/** The segments of the frame being decoded, and which of them it named already. */
let decodingSegments: { readonly list: readonly Uint8Array[]; used: Uint8Array } | undefined;

function decodeWithSegments(src: Uint8Array, list: readonly Uint8Array[]): unknown {
  const outer = decodingSegments;
  const state = { list, used: new Uint8Array(list.length) };
  decodingSegments = state;
  try {
    let value = fastDecode(src, TAGS as unknown as TagTable, MAX_DEPTH);
    if (value === NOT_FAST) {
      state.used.fill(0); // the fast path may have read some before it gave up
      value = decodeFull(src);
    }
    const unused = state.used.indexOf(0);
    if (unused >= 0) {
      throw new ProtocolError(
        `Cannot decode frame: it came with ${list.length} segments and never names segment ${unused}`,
      );
    }
    return value;
  } finally {
    decodingSegments = outer;
  }
}

/** Tag {@linkcode TAG_SEGMENT}: the segment it names, once, in a frame that came with segments. */
function decodeSegment(content: TagDecodeControl): Uint8Array {
  const index = content();
  const state = decodingSegments;
  if (state === undefined) throw new Error(`tag ${TAG_SEGMENT} (a segment) in a frame that came without segments`);
  if (typeof index !== "number" || !Number.isInteger(index) || index < 0 || index >= state.list.length) {
    throw new Error(`tag ${TAG_SEGMENT} must hold a segment index below ${state.list.length}`);
  }
  if (state.used[index] !== 0) throw new Error(`tag ${TAG_SEGMENT} names segment ${index} twice`);
  state.used[index] = 1;
  return state.list[index];
}

/**
 * {@linkcode decode} without its fast path: every frame through cborg. The fast path must give
 * the same value as this, or hand the frame over; `codec_fast_decode_test.ts` compares them.
 *
 * @param src The frame, a plain `Uint8Array` (not a Buffer).
 * @returns The decoded value.
 * @throws {ProtocolError} When the bytes are not exactly one well-formed CBOR item of the protocol.
 *
 * @example The same value as decode
 * ```ts
 * import { decodeFull, encode } from "./codec.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * deepStrictEqual(decodeFull(encode({ a: [1, "b"] })), { a: [1, "b"] });
 * ```
 */
export function decodeFull(src: Uint8Array): unknown {
  // one tokenizer and one options object serve every call; a call made while one runs (from a
  // tag decoder's callee) gets its own
  const options = decoding ? freshDecodeOptions() : sharedDecodeOptions;
  const tokenizer = options.tokenizer as FrameTokenizer;
  decoding = true;
  tokenizer.start(src);
  try {
    return cborgDecode(src, options);
  } catch (cause) {
    const detail = cause instanceof Error ? cause.message.replace(/^CBOR decode error: /, "") : String(cause);
    throw new ProtocolError(`Cannot decode frame of ${src.byteLength} bytes: ${detail}`);
  } finally {
    tokenizer.start(NO_BYTES); // let the frame go
    if (options === sharedDecodeOptions) decoding = false;
  }
}
