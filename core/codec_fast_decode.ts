/**
 * A fast path for decoding the frames the protocol sends most: small envelopes of maps with text
 * keys, arrays, strings, numbers, booleans, `null`, `undefined`, byte strings and the protocol's
 * tags. It reads bytes straight into values, without the token objects a general CBOR decoder makes
 * per item (`cborg` makes one per item; on a 100-byte envelope that was most of the cost).
 *
 * It accepts a strict subset of what the full decoder accepts and gives the same value for it. On
 * anything else — an unknown tag, an integer beyond 2^53, an indefinite length, a non-text map key,
 * a map that repeats a key, invalid UTF-8, nesting past the limit, a truncated or over-long frame, a
 * tag decoder that throws —
 * it gives up and returns {@linkcode NOT_FAST}, and the caller decodes the frame with the full
 * decoder, which accepts it or refuses it with its own error. So the rules of the wire stay written
 * in one place (`codec_decode.ts`), and this file only has to be right about what it does accept.
 *
 * No work here grows faster than the frame: every length is checked against the bytes left before
 * anything is allocated for it.
 *
 * @module
 */

/** What {@linkcode fastDecode} returns when the frame needs the full decoder. */
export const NOT_FAST: unique symbol = Symbol("not-fast");

/** A tag's content reader, as `cborg` hands one to a tag decoder. */
export interface TagContent {
  (): unknown;
  /** The entries of a map held by the tag, with keys of any type. */
  entries(): [unknown, unknown][];
}

interface Reader extends TagContent {
  read: boolean;
}

/** Tag number → decoder of its content (the same table the full decoder uses). */
export type TagTable = Readonly<Record<number, (content: TagContent) => unknown>>;

/** Thrown inside the fast path to give up; never escapes this module. */
const GIVE_UP = { giveUp: true };

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const SHORT_TEXT = 32;
const utf8 = new TextDecoder("utf-8", { fatal: true });

// The frame being read. Module state (not a class) so the hot path is plain function calls; saved
// and restored around a nested call (a tag decoder may decode a frame of its own).
let data: Uint8Array = new Uint8Array(0);
let pos = 0;
let view: DataView | undefined;
let tags: TagTable = {};
let maxDepth = 0;

/**
 * Decodes one CBOR item that fills `bytes` exactly, or returns {@linkcode NOT_FAST} when it is not
 * one the fast path reads (see the module doc).
 *
 * @param bytes The frame: a plain `Uint8Array` (byte strings in the result are views into it).
 * @param tagTable The decoders of the tags the protocol accepts.
 * @param depthLimit Arrays, maps and tags may be nested this deep at most.
 * @returns The value, or {@linkcode NOT_FAST}.
 *
 * @example An envelope decodes; an unknown tag needs the full decoder
 * ```ts
 * import { fastDecode, NOT_FAST } from "./codec_fast_decode.ts";
 * import { deepStrictEqual, strictEqual } from "node:assert/strict";
 * // {"t": "ok", "id": 7}
 * const frame = new Uint8Array([0xa2, 0x61, 0x74, 0x62, 0x6f, 0x6b, 0x62, 0x69, 0x64, 0x07]);
 * deepStrictEqual(fastDecode(frame, {}, 256), { t: "ok", id: 7 });
 * strictEqual(fastDecode(new Uint8Array([0xd8, 0x1c, 0x80]), {}, 256), NOT_FAST);
 * ```
 */
export function fastDecode(bytes: Uint8Array, tagTable: TagTable, depthLimit: number): unknown {
  // the outer frame's state is saved only for a nested call (no object per frame)
  if (decoding) return fastDecodeNested(bytes, tagTable, depthLimit);
  decoding = true;
  try {
    return decodeWhole(bytes, tagTable, depthLimit);
  } finally {
    decoding = false;
    data = NO_BYTES; // (the frame is not held once read)
    view = undefined;
  }
}

/** Whether a frame is being read (a tag decoder may decode a frame of its own meanwhile). */
let decoding = false;
const NO_BYTES = new Uint8Array(0);

function fastDecodeNested(bytes: Uint8Array, tagTable: TagTable, depthLimit: number): unknown {
  const saved = { data, pos, view, tags, maxDepth };
  try {
    return decodeWhole(bytes, tagTable, depthLimit);
  } finally {
    ({ data, pos, view, tags, maxDepth } = saved);
  }
}

function decodeWhole(bytes: Uint8Array, tagTable: TagTable, depthLimit: number): unknown {
  data = bytes;
  pos = 0;
  view = undefined;
  tags = tagTable;
  maxDepth = depthLimit;
  try {
    const value = item(0);
    return pos === bytes.length ? value : NOT_FAST;
  } catch {
    // GIVE_UP, or a tag decoder's refusal: the full decoder says what is wrong, in its own words
    return NOT_FAST;
  }
}

/** Reads an item's argument (a count, a length or an integer) after its initial byte. */
function argument(minor: number): number {
  const d = data;
  const p = pos;
  if (minor < 24) return minor;
  let n: number;
  if (minor === 24) {
    n = d[p];
    pos = p + 1;
  } else if (minor === 25) {
    n = (d[p] << 8) | d[p + 1];
    pos = p + 2;
  } else if (minor === 26) {
    n = d[p] * 0x1000000 + ((d[p + 1] << 16) | (d[p + 2] << 8) | d[p + 3]);
    pos = p + 4;
  } else if (minor === 27) {
    const hi = d[p] * 0x1000000 + ((d[p + 1] << 16) | (d[p + 2] << 8) | d[p + 3]);
    if (hi >= 0x200000) throw GIVE_UP; // 2^53 or more
    n = hi * 0x100000000 + (d[p + 4] * 0x1000000 + ((d[p + 5] << 16) | (d[p + 6] << 8) | d[p + 7]));
    pos = p + 8;
  } else {
    throw GIVE_UP; // indefinite length, or a reserved value
  }
  if (pos > d.length) throw GIVE_UP; // the head is cut short
  return n;
}

function item(depth: number): unknown {
  const d = data;
  if (pos >= d.length) throw GIVE_UP;
  const initial = d[pos++];
  const major = initial >> 5;
  const minor = initial & 31;
  switch (major) {
    case 0:
      return argument(minor);
    case 1: {
      const n = argument(minor);
      if (n >= MAX_SAFE) throw GIVE_UP; // -1 - n would leave the safe range
      return -1 - n;
    }
    case 2: {
      const length = argument(minor);
      if (length > d.length - pos) throw GIVE_UP;
      const start = pos;
      pos = start + length;
      return d.subarray(start, pos);
    }
    case 3:
      return text(argument(minor));
    case 4: {
      const count = argument(minor);
      if (count === 0) return [];
      if (count > d.length - pos || depth === maxDepth) throw GIVE_UP;
      const array = new Array(count);
      for (let i = 0; i < count; i++) array[i] = item(depth + 1);
      return array;
    }
    case 5: {
      const count = argument(minor);
      const object: Record<string, unknown> = {};
      if (count === 0) return object;
      if (count > (d.length - pos) / 2 || depth === maxDepth) throw GIVE_UP;
      // a key again: the full decoder refuses the frame (the encoder never writes one). Each key
      // sets a bit picked by its length and two of its bytes; only a key whose bit is set already
      // is looked up in the object, so the few keys of an envelope cost a few operations each, not
      // a lookup each (which made small maps 5-20% dearer to read); a large map's keys are looked up
      let seen = 0;
      for (let i = 0; i < count; i++) {
        if (pos >= d.length) throw GIVE_UP;
        const head = d[pos++];
        if (head >> 5 !== 3) throw GIVE_UP; // a non-text key: a plain object cannot hold it
        const length = argument(head & 31);
        const key = text(length);
        // (its last byte and one in its middle, read where text() found them: in the frame)
        const bit = 1 << ((length + 7 * d[pos - 1] + d[pos - 1 - (length >> 1)]) & 31);
        if ((seen & bit) !== 0 && Object.hasOwn(object, key)) throw GIVE_UP;
        seen |= bit;
        const value = item(depth + 1);
        if (key === "__proto__") {
          // an own property, as the full decoder makes it, not the prototype setter
          Object.defineProperty(object, key, { value, configurable: true, enumerable: true, writable: true });
        } else {
          object[key] = value;
        }
      }
      return object;
    }
    case 6: {
      const tag = argument(minor);
      const decoder = tags[tag];
      if (typeof decoder !== "function" || depth === maxDepth) throw GIVE_UP;
      const reader = content(depth + 1);
      const value = decoder(reader);
      if (!reader.read) throw GIVE_UP; // a decoder that skipped its content would misalign the rest
      return value;
    }
    default:
      return simple(minor);
  }
}

function text(length: number): string {
  const d = data;
  const start = pos;
  if (length > d.length - start) throw GIVE_UP;
  const end = start + length;
  if (length >= SHORT_TEXT) {
    pos = end;
    return utf8Text(start, end);
  }
  let hash = length;
  for (let i = start; i < end; i++) {
    const code = d[i];
    if (code >= 0x80) {
      pos = end;
      return utf8Text(start, end);
    }
    hash = (Math.imul(hash, 31) + code) | 0;
  }
  pos = end;
  const slot = hash & (TEXT_CACHE_SLOTS - 1);
  const cached = textCache[slot];
  // (its bytes, kept beside it, are compared with the frame's: cheaper than its characters on V8)
  const kept = textCacheBytes;
  const base = slot * SHORT_TEXT;
  if (cached !== undefined && cached.length === length) {
    let i = 0;
    while (i < length && kept[base + i] === d[start + i]) i++;
    if (i === length) return cached;
  }
  // one call on the codes (a string built += char by char was a rope, flattened again when it is
  // hashed: dearer on Bun for a call id, which misses the cache in every frame)
  const codes = charCodes;
  codes.length = length;
  for (let i = 0; i < length; i++) codes[i] = d[start + i];
  const ascii = String.fromCharCode.apply(null, codes);
  // (the bytes once the string is made: a slot's bytes always belong to its string)
  for (let i = 0; i < length; i++) kept[base + i] = codes[i];
  textCache[slot] = ascii;
  return ascii;
}

/** The character codes of a short string being made (reused: at most SHORT_TEXT long). */
const charCodes: number[] = [];

// Short ASCII strings repeat from frame to frame: map keys ("t", "cid", "args", …) and values such as
// an instance's id and its owner's (in every call). They come from a small cache (checked byte by
// byte against the frame: against the bytes it keeps of each string, which V8 reads faster than the
// string's characters), so each one is not built, made a property name, or hashed again as a Map
// key once per frame, and compares with === by identity. A slot holds the last string whose bytes
// hashed to it; the cache never grows. (Values built anew in every frame made a Bun node's service
// calls dearer; Deno showed no change.)
const TEXT_CACHE_SLOTS = 1024;
const textCache: (string | undefined)[] = new Array(TEXT_CACHE_SLOTS).fill(undefined);
/** The bytes of each slot's string, `SHORT_TEXT` bytes a slot (all of a slot's string: it is shorter). */
const textCacheBytes = new Uint8Array(TEXT_CACHE_SLOTS * SHORT_TEXT);

function utf8Text(start: number, end: number): string {
  // fatal: invalid UTF-8 throws, and the full decoder decides what to make of it
  return utf8.decode(data.subarray(start, end));
}

function simple(minor: number): unknown {
  switch (minor) {
    case 20:
      return false;
    case 21:
      return true;
    case 22:
      return null;
    case 23:
      return undefined;
    case 25: {
      if (pos + 2 > data.length) throw GIVE_UP;
      const half = (data[pos] << 8) | data[pos + 1];
      pos += 2;
      return halfFloat(half);
    }
    case 26: {
      if (pos + 4 > data.length) throw GIVE_UP;
      const value = frameView().getFloat32(pos);
      pos += 4;
      return value;
    }
    case 27: {
      if (pos + 8 > data.length) throw GIVE_UP;
      const value = frameView().getFloat64(pos);
      pos += 8;
      return value;
    }
    default:
      throw GIVE_UP; // other simple values, and a break outside an indefinite item
  }
}

function frameView(): DataView {
  return view ??= new DataView(data.buffer, data.byteOffset, data.byteLength);
}

function halfFloat(half: number): number {
  const exponent = (half >> 10) & 0x1f;
  const mantissa = half & 0x3ff;
  const magnitude = exponent === 0
    ? mantissa * 2 ** -24
    : exponent !== 31
    ? (mantissa + 1024) * 2 ** (exponent - 25)
    : mantissa === 0
    ? Infinity
    : NaN;
  return half & 0x8000 ? -magnitude : magnitude;
}

/** The content reader a tag decoder gets: one read, of one item or of a map's entries. */
function content(depth: number): Reader {
  const once = (): void => {
    if (reader.read) throw GIVE_UP;
    reader.read = true;
  };
  const reader = (() => {
    once();
    return item(depth);
  }) as Reader;
  reader.read = false;
  reader.entries = () => {
    once();
    if (pos >= data.length) throw GIVE_UP;
    const head = data[pos++];
    if (head >> 5 !== 5) throw GIVE_UP;
    const count = argument(head & 31);
    if (count > (data.length - pos) / 2 || (count > 0 && depth === maxDepth)) throw GIVE_UP;
    const entries: [unknown, unknown][] = new Array(count);
    for (let i = 0; i < count; i++) {
      const key = item(depth + 1);
      entries[i] = [key, item(depth + 1)];
    }
    return entries;
  };
  return reader;
}
