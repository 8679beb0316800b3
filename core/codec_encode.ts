/**
 * The encoder: a value to CBOR bytes, by one of two writers that never mix in one frame. A value
 * made only of plain objects, arrays, strings, numbers, booleans, `null`, `undefined`, small plain
 * `Uint8Array`s and {@linkcode EncodedValue}s is written straight into a shared slab (the fast
 * path); anything else goes whole to `cborg`'s tokens, with strict encoders that refuse what
 * `codec_refusal.ts` refuses, count nesting as decode will, align large typed arrays and leave
 * segments out of a frame (`codec_segments.ts`). An {@linkcode EncodedValue} is a value encoded
 * once whose bytes either writer copies in as they are.
 *
 * The two writers, the slab they share and {@linkcode EncodedValue} are one file because they are
 * one recursion: an {@linkcode EncodedValue} is made by {@linkcode encode}, and both writers know it
 * by its class (the fast path by its prototype, on every plain object it writes). Apart, they would
 * import each other or need a hook set at import time. {@linkcode findRefusal} is here too: it lets
 * an {@linkcode EncodedValue} through, and the encoders call it when they fail.
 *
 * @module
 */
import { encodeInto, type EncodeOptions, objectToTokens, Token, Type } from "cborg";
import { tokensToLength } from "cborg/length";
import {
  bigInt64ArrayEncoder,
  bigUint64ArrayEncoder,
  dateEncoder,
  float32ArrayEncoder,
  float64ArrayEncoder,
  int16ArrayEncoder,
  int32ArrayEncoder,
  int8ArrayEncoder,
  structBigIntEncoder,
  uint16ArrayEncoder,
  uint32ArrayEncoder,
  uint8ClampedArrayEncoder,
} from "cborg/taglib";
import { ALIGN_MIN_BYTES, Float16, MAX_DEPTH, TAG_FLOAT16_ARRAY_LE, TAG_SELF_DESCRIBED } from "./codec_format.ts";
import { TAG_HANDLE, WireHandle } from "./codec_handle.ts";
import {
  keyPath,
  mapKeyPath,
  refusalOf,
  TOO_DEEP,
  type ValueRefusal,
  valueRefusalError,
  wellFormed,
} from "./codec_refusal.ts";
import { SEGMENT_MIN_BYTES, TAG_SEGMENT } from "./codec_segments.ts";

/** The segments of the frame being encoded by {@linkcode encodeFrame}, or `undefined` (all inline). */
let frameSegmentList: Uint8Array[] | undefined;
const SEGMENT_TAG_TOKEN = new Token(Type.tag, TAG_SEGMENT);

/** The segment placeholder for `bytes` (when segmenting, large enough and not too deep), else `undefined`. */
function segmentSlot(bytes: Uint8Array, levels: number): Token[] | undefined {
  const list = frameSegmentList;
  if (list === undefined || bytes.byteLength < SEGMENT_MIN_BYTES || openLevels + levels > MAX_DEPTH) return undefined;
  list.push(bytes);
  return [SEGMENT_TAG_TOKEN, new Token(Type.uint, list.length - 1)];
}

type TypedArrayKind =
  | "Uint8ClampedArray"
  | "Int8Array"
  | "Uint16Array"
  | "Int16Array"
  | "Uint32Array"
  | "Int32Array"
  | "BigUint64Array"
  | "BigInt64Array"
  | "Float32Array"
  | "Float64Array";

/** cborg's encoder for each typed array but `Uint8Array` (a plain byte string): its RFC 8746 LE tag, then its bytes. */
const TYPED_ARRAY_ENCODERS: Record<TypedArrayKind, (array: ArrayBufferView) => Token[]> = {
  Uint8ClampedArray: uint8ClampedArrayEncoder,
  Int8Array: int8ArrayEncoder,
  Uint16Array: uint16ArrayEncoder,
  Int16Array: int16ArrayEncoder,
  Uint32Array: uint32ArrayEncoder,
  Int32Array: int32ArrayEncoder,
  BigUint64Array: bigUint64ArrayEncoder,
  BigInt64Array: bigInt64ArrayEncoder,
  Float32Array: float32ArrayEncoder,
  Float64Array: float64ArrayEncoder,
};

type Tokens = Token | Tokens[];

/** A large typed array in a frame: a padding slot (filled by {@linkcode placeArrays}), its tag, its bytes. */
type AlignedArray = [pad: Token[], tag: Token, bytes: Token];
/** The large typed arrays of the frame being encoded, in write order. */
let frameArrays: AlignedArray[] = [];
const PAD = new Token(Type.tag, TAG_SELF_DESCRIBED);

/** A large typed array gets an empty padding slot in front, filled by {@linkcode placeArrays}. */
function alignedTypedArrayEncoder(
  encodeTyped: (array: ArrayBufferView) => Token[],
): (array: ArrayBufferView) => Token[] | AlignedArray {
  return (array) => {
    const [tag, bytes] = encodeTyped(array);
    const slot = segmentSlot(bytes.value as Uint8Array, 2);
    if (slot !== undefined) return [tag, ...slot];
    // the padding tags nest: too near decode's nesting bound, the array is not aligned (so copied)
    if (array.byteLength < ALIGN_MIN_BYTES || openLevels + 8 >= MAX_DEPTH) return [tag, bytes];
    const aligned: AlignedArray = [[], tag, bytes];
    frameArrays.push(aligned);
    return aligned;
  };
}

/**
 * An {@linkcode EncodedValue} in cborg's tokens: a padding slot (filled by {@linkcode placeArrays})
 * and the value, whose bytes {@linkcode writeSpliced} writes as they are.
 */
type SplicedValue = [pad: Token[], encoded: EncodedValue];
/** The encoded values of the frame being encoded, in write order. */
let frameSplices: SplicedValue[] = [];

/** Most padding tags in front of an encoded value (each nests one level). */
const MAX_PADS = 7;

/** `encoded`'s slot among the tokens, or its value's tokens when it stands too deep for its room. */
function encodedValueSlot(encoded: EncodedValue, options: EncodeOptions): Tokens {
  if (openLevels + MAX_PADS > ENCODED_ROOM_LEVELS) return objectToTokens(encoded.value, options) as Tokens;
  const slot: SplicedValue = [[], encoded];
  frameSplices.push(slot);
  return slot as unknown as Tokens;
}

const float16ArrayEncoder = alignedTypedArrayEncoder((array) => [
  new Token(Type.tag, TAG_FLOAT16_ARRAY_LE),
  new Token(Type.bytes, new Uint8Array(array.buffer, array.byteOffset, array.byteLength)),
]);

/**
 * Nesting levels an {@linkcode EncodedValue} leaves free for what holds it in a frame (the message,
 * its argument list, the padding that aligns it): its value may nest at most `MAX_DEPTH` minus this
 * deep. A multiple of 8, so that the one-byte heads of the arrays it is encoded inside (then cut
 * off) keep its typed arrays aligned.
 */
const ENCODED_ROOM_LEVELS = 16;

/**
 * A value encoded once and written into any number of frames as those same bytes (a CBOR item is
 * the same bytes wherever it stands), so a large value passed to many calls is walked and encoded
 * once, not once per call: what a `put()` value travels as. A receiver decodes it as the value
 * itself and sees no difference. Its typed arrays stay aligned where it is written (see
 * {@linkcode encodeFrame}); written nested deeper than its room allows, it is encoded anew there.
 *
 * @example Written into two frames, read back as the value
 * ```ts
 * import { decode, encode, EncodedValue } from "./codec.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const index = new EncodedValue({ docs: ["a", "b"], v: new Float32Array([1, 2]) });
 * deepStrictEqual(decode(encode({ args: [index, 1] })), { args: [{ docs: ["a", "b"], v: new Float32Array([1, 2]) }, 1] });
 * deepStrictEqual(decode(encode([index])), [index.value]);
 * ```
 */
export class EncodedValue {
  /** The value, as given. */
  readonly value: unknown;
  /** Its CBOR bytes (not to be changed). */
  readonly bytes: Uint8Array;

  /**
   * Encodes `value` now: a change made to it later does not reach the frames it is written into.
   *
   * @param value Anything {@linkcode encode} takes that nests at most 240 levels deep.
   * @throws {TypeError} When the value cannot travel (see {@linkcode encode}).
   */
  constructor(value: unknown) {
    let wrapped = value;
    for (let i = 0; i < ENCODED_ROOM_LEVELS; i++) wrapped = [wrapped];
    let bytes: Uint8Array;
    try {
      bytes = encode(wrapped).subarray(ENCODED_ROOM_LEVELS);
    } catch (cause) {
      throw findRefusal(value) !== undefined ? encodeError(value, cause) : valueRefusalError(
        `Cannot encode a value once for many frames: it nests more than ${MAX_DEPTH - ENCODED_ROOM_LEVELS} levels deep`,
        cause,
      );
    }
    // a small one is copied out of the slab it was carved from, so as not to keep that alive
    this.bytes = bytes.byteLength < SLAB_BYTES ? bytes.slice() : bytes;
    this.value = value;
  }
}

/**
 * Finds the first part of `value` that {@linkcode encode} refuses, with its path: a value that
 * cannot travel as it is (see the module doc), a hole in an array, a cycle, nesting deeper than
 * decode accepts. Encode runs it only once it has failed, to say where.
 *
 * @param value Any value.
 * @returns Where and why, or `undefined` when the value travels.
 *
 * @example A symbol in an argument list
 * ```ts
 * import { findRefusal } from "./codec.ts";
 * import { deepStrictEqual, strictEqual } from "node:assert/strict";
 * deepStrictEqual(findRefusal([1, { docs: [Symbol("x")] }]), { path: "[1].docs[0]", reason: "a symbol cannot travel" });
 * strictEqual(findRefusal({ ok: [1, "two", new Float32Array(2)] }), undefined);
 * ```
 */
export function findRefusal(value: unknown): ValueRefusal | undefined {
  const open = new Map<object, string>();
  const walk = (v: unknown, path: string, depth: number): ValueRefusal | undefined => {
    // (it was encoded: it travels; refusalOf knows no EncodedValue, whose class is defined here)
    if (typeof v === "object" && v !== null && Object.getPrototypeOf(v) === EncodedValue.prototype) return undefined;
    const reason = refusalOf(v);
    if (reason !== undefined) return { path, reason };
    if (typeof v === "bigint") return depth === MAX_DEPTH ? { path, reason: TOO_DEEP } : undefined;
    if (typeof v !== "object" || v === null || v instanceof Uint8Array) return undefined;
    if (ArrayBuffer.isView(v) || v instanceof Date) return depth === MAX_DEPTH ? { path, reason: TOO_DEEP } : undefined;
    // tag, [service, replicas], replicas, [node, endpoint, id]
    if (v instanceof WireHandle) return depth + 4 > MAX_DEPTH ? { path, reason: TOO_DEEP } : undefined;
    const back = open.get(v);
    if (back !== undefined) return { path, reason: `it holds a cycle: it is ${back || "the value itself"} again` };
    const entries: [unknown, string][] = [];
    let levels = 1;
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        if (v[i] === undefined && !(i in v)) {
          return { path: `${path}[${i}]`, reason: "a hole in a sparse array would arrive as undefined" };
        }
        entries.push([v[i], `${path}[${i}]`]);
      }
    } else if (v instanceof Map) {
      levels = 2; // tag 259, then the map
      let i = 0;
      for (const [k, item] of v) {
        entries.push([k, `${path}.keys()[${i}]`], [item, path + mapKeyPath(k, i++)]);
      }
    } else if (v instanceof Set) {
      levels = 2; // tag 258, then the array
      let i = 0;
      for (const item of v) entries.push([item, `${path}.values()[${i++}]`]);
    } else {
      for (const key of Object.keys(v)) {
        const keyReason = refusalOf(key);
        if (keyReason !== undefined) return { path: path + keyPath(key), reason: `its key: ${keyReason}` };
        entries.push([(v as Record<string, unknown>)[key], path + keyPath(key)]);
      }
    }
    if (entries.length === 0) levels--; // an empty array or map opens nothing
    if (depth + levels > MAX_DEPTH) return { path, reason: TOO_DEEP };
    open.set(v, path);
    try {
      for (const [item, at] of entries) {
        const found = walk(item, at, depth + levels);
        if (found !== undefined) return found;
      }
    } finally {
      open.delete(v);
    }
    return undefined;
  };
  return walk(value, "", 0);
}

/** The TypeError for a failed encode of `value`: where and why, found by walking it again. */
function encodeError(value: unknown, cause: unknown): TypeError {
  const found = findRefusal(value);
  if (found !== undefined) {
    const at = found.path === "" ? "" : `at ${found.path}: `;
    return valueRefusalError(`Cannot encode value as CBOR: ${at}${found.reason}`, cause);
  }
  const detail = cause instanceof Error ? cause.message.replace(/^CBOR encode error: /, "") : String(cause);
  return valueRefusalError(`Cannot encode value as CBOR: ${detail}`, cause);
}

// The cborg encoders, strict: each refuses what refusalOf refuses, and the containers count their
// nesting (as decode will) and refuse cycles. A refusal throws a bare reason: encodeError then walks
// the value again to say where.

/** Nesting levels open in the value cborg is encoding, counted as decode counts them. */
let openLevels = 0;
/** The arrays and objects (maps, sets) being encoded, to refuse a cycle. */
let openObjects = new Set<object>();

function refuse(value: unknown): void {
  const reason = refusalOf(value);
  if (reason !== undefined) throw new Error(reason);
}

/** Opens `levels` nesting levels for the children of `value`. */
function enter(value: object, levels: number): void {
  if (openObjects.has(value)) throw new Error("it holds a cycle");
  if (openLevels + levels > MAX_DEPTH) throw new Error(TOO_DEEP);
  openLevels += levels;
  openObjects.add(value);
}

function leave(value: object, levels: number): void {
  openLevels -= levels;
  openObjects.delete(value);
}

/** A tag around a leaf (a date, a bigint, a typed array) opens one level. */
function leafTag(tokens: Tokens): Tokens {
  if (openLevels + 1 > MAX_DEPTH) throw new Error(TOO_DEEP);
  return tokens;
}

function encodeArray(array: unknown[], _type: string, options: EncodeOptions): Tokens {
  refuse(array);
  const length = array.length;
  if (length === 0) return new Token(Type.array, 0);
  enter(array, 1);
  try {
    const items: Tokens[] = new Array(length);
    for (let i = 0; i < length; i++) {
      const item = array[i];
      if (item === undefined && !(i in array)) throw new Error("a hole in a sparse array would arrive as undefined");
      items[i] = objectToTokens(item, options) as Tokens;
    }
    return [new Token(Type.array, length), items];
  } finally {
    leave(array, 1);
  }
}

/** Plain objects; and whatever else cborg calls an "Object" (class instances, …), refused. */
function encodeObject(value: object, _type: string, options: EncodeOptions): Tokens {
  if (Float16 !== undefined && Object.getPrototypeOf(value) === Float16.prototype) {
    return leafTag(float16ArrayEncoder(value as ArrayBufferView) as Tokens);
  }
  if (value instanceof EncodedValue) return encodedValueSlot(value, options);
  if (value instanceof WireHandle) {
    enter(value, 1);
    try {
      const body = [value.service, value.replicas.map((r) => [r.node, r.endpoint, r.id])];
      return [new Token(Type.tag, TAG_HANDLE), objectToTokens(body, options) as Tokens];
    } finally {
      leave(value, 1);
    }
  }
  refuse(value);
  const keys = Object.keys(value);
  if (keys.length === 0) return new Token(Type.map, 0);
  enter(value, 1);
  try {
    const entries: Tokens[] = new Array(keys.length);
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i];
      entries[i] = [
        objectToTokens(key, options) as Tokens,
        objectToTokens((value as Record<string, unknown>)[key], options) as Tokens,
      ];
    }
    return [new Token(Type.map, keys.length), entries];
  } finally {
    leave(value, 1);
  }
}

function encodeMap(map: Map<unknown, unknown>, _type: string, options: EncodeOptions): Tokens {
  refuse(map);
  const levels = map.size === 0 ? 1 : 2; // tag 259, then the map
  enter(map, levels);
  try {
    const entries: Tokens[] = [];
    for (const [key, item] of map) {
      entries.push([objectToTokens(key, options) as Tokens, objectToTokens(item, options) as Tokens]);
    }
    return [new Token(Type.tag, 259), new Token(Type.map, map.size), entries];
  } finally {
    leave(map, levels);
  }
}

function encodeSet(set: Set<unknown>, _type: string, options: EncodeOptions): Tokens {
  refuse(set);
  const levels = set.size === 0 ? 1 : 2; // tag 258, then the array
  enter(set, levels);
  try {
    const items: Tokens[] = [];
    for (const item of set) items.push(objectToTokens(item, options) as Tokens);
    return [new Token(Type.tag, 258), new Token(Type.array, set.size), items];
  } finally {
    leave(set, levels);
  }
}

/** Refuses whatever cborg would otherwise encode as something else (or not at all). */
function encodeRefused(value: unknown): never {
  throw new Error(refusalOf(value) ?? `a value of type ${typeof value} cannot travel`);
}

const NEGATIVE_ZERO = new Token(Type.float, -0);

// mapSorter: undefined keeps keys in insertion order (cborg sorts them by default). Every type name
// cborg's type detection gives has an encoder here: none falls through to cborg's own (which would
// turn a DataView into bytes or a class instance into a map).
const encodeOptions: EncodeOptions = {
  mapSorter: undefined,
  typeEncoders: {
    number: (n: number) => (n === 0 && 1 / n < 0 ? NEGATIVE_ZERO : null),
    string: (text: string) => {
      refuse(text);
      return null;
    },
    bigint: (value: bigint) => {
      refuse(value);
      return leafTag(structBigIntEncoder(value) as Tokens);
    },
    Uint8Array: (bytes: Uint8Array) => {
      refuse(bytes);
      return segmentSlot(bytes, 1) ?? null;
    },
    Date: (date: Date) => {
      refuse(date);
      return leafTag(dateEncoder(date) as Tokens);
    },
    Array: encodeArray,
    Object: encodeObject,
    Map: encodeMap,
    Set: encodeSet,
    ...Object.fromEntries(
      Object.entries(TYPED_ARRAY_ENCODERS).map(([kind, encodeTyped]) => {
        const aligned = alignedTypedArrayEncoder(encodeTyped);
        return [kind, (array: ArrayBufferView) => {
          refuse(array);
          return leafTag(aligned(array) as Tokens);
        }];
      }),
    ),
    ...Object.fromEntries(
      [
        "symbol",
        "Function",
        "RegExp",
        "Error",
        "WeakMap",
        "WeakSet",
        "ArrayBuffer",
        "SharedArrayBuffer",
        "DataView",
        "Promise",
        "URL",
        "HTMLElement",
        "Tagged",
        "Buffer",
      ].map((type) => [type, encodeRefused]),
    ),
  },
};

/**
 * Fills the padding slots of the frame's large typed arrays so that each one's data starts on a
 * multiple of 8 from the frame's header (`room` bytes before the frame), and returns the frame's
 * length.
 */
function placeArrays(tokens: Tokens, room: number): number {
  let next = 0;
  let nextSplice = 0;
  const walk = (node: Tokens, offset: number): number => {
    if (!Array.isArray(node)) return offset + tokensToLength(node);
    if (node === (frameSplices[nextSplice] as unknown)) {
      nextSplice++;
      const [pad, encoded] = node as unknown as SplicedValue;
      const length = encoded.bytes.byteLength;
      // its typed arrays are aligned from its first byte: that byte goes on a multiple of 8
      if (length >= ALIGN_MIN_BYTES) { for (let k = ((8 - ((room + offset) & 7)) * 3) & 7; k > 0; k--) pad.push(PAD); }
      return offset + 3 * pad.length + length;
    }
    if (node === frameArrays[next]) {
      next++;
      const [pad, tag, bytes] = node as AlignedArray;
      const heads = tokensToLength(tag) + tokensToLength(bytes) - bytes.value.byteLength;
      // k pads of 3 bytes each put the data on a multiple of 8 (3 is its own inverse mod 8)
      for (let k = ((8 - ((room + offset + heads) & 7)) * 3) & 7; k > 0; k--) pad.push(PAD);
      return offset + 3 * pad.length + heads + bytes.value.byteLength;
    }
    for (const child of node) offset = walk(child, offset);
    return offset;
  };
  return walk(tokens, 0);
}

/** The tokens that {@linkcode writeOptions} writes in place of its stand-in root. */
let tokensToWrite: Tokens = [];
const STAND_IN = {};
const writeOptions: EncodeOptions = { typeEncoders: { Object: () => tokensToWrite } };

/**
 * Writes `tokens` into `out` with the bytes of each {@linkcode EncodedValue} among them copied as
 * they are: cborg writes the runs of tokens between them. Returns how many bytes it wrote.
 */
function writeSpliced(tokens: Tokens, out: Uint8Array): number {
  let written = 0;
  let run: Token[] = [];
  let next = 0;
  const flush = () => {
    if (run.length === 0) return;
    tokensToWrite = run;
    written += encodeInto(STAND_IN, out.subarray(written), writeOptions).written;
    run = [];
  };
  const walk = (node: Tokens): void => {
    if (!Array.isArray(node)) {
      run.push(node);
    } else if (node === (frameSplices[next] as unknown)) {
      next++;
      const [pad, encoded] = node as unknown as SplicedValue;
      for (const p of pad) run.push(p);
      flush();
      out.set(encoded.bytes, written);
      written += encoded.bytes.byteLength;
    } else {
      for (const child of node) walk(child);
    }
  };
  walk(tokens);
  flush();
  return written;
}

// Frames are carved one after another out of a shared slab rather than each given a buffer of its
// own: allocating an ArrayBuffer costs more than encoding a small frame (on Deno many times more).
// A carved frame is never written again, so it is safe to keep; it keeps its slab alive while it lives.

/** Size of a slab; a frame that does not fit in one gets a buffer of its own. */
const SLAB_BYTES = 16 * 1024;
const NO_SLAB = new Uint8Array(0);
let slab: Uint8Array<ArrayBuffer> = NO_SLAB;
let slabView = new DataView(slab.buffer);
/** Where the frame being written starts in the slab, and where its next byte goes. */
let frameStart = 0;
let at = 0;
/** True while the fast path is writing a frame into the slab (a getter it calls may encode too). */
let writing = false;

/**
 * Makes room for `bytes` more bytes of the frame being written, moving it to a new slab if need be:
 * one with `spare` bytes more (by default as many as it then holds, so a frame written in many small
 * pieces moves a few times, not once per piece).
 */
function ensureRoom(bytes: number, spare = at - frameStart + bytes): void {
  if (at + bytes <= slab.length) return;
  const written = at - frameStart;
  const next = new Uint8Array(Math.max(SLAB_BYTES, written + bytes + spare));
  next.set(slab.subarray(frameStart, at));
  slab = next;
  slabView = new DataView(next.buffer);
  frameStart = 0;
  at = written;
}

/**
 * Ends the frame being written: returns its bytes past its first `room` (free room for a header in
 * front of it), and leaves a slab grown for a large frame to it.
 */
function takeFrame(room = 0): Uint8Array<ArrayBuffer> {
  const frame = slab.subarray(frameStart + room, at);
  if (slab.length > SLAB_BYTES) {
    slab = NO_SLAB;
    at = 0;
  }
  frameStart = at;
  return frame;
}

/** A fresh `bytes`-byte buffer for cborg to write a frame into: carved from the slab when small. */
function carve(bytes: number): Uint8Array<ArrayBuffer> {
  if (writing || bytes > SLAB_BYTES / 4) return new Uint8Array(bytes);
  frameStart = at;
  ensureRoom(bytes);
  at += bytes;
  return takeFrame();
}

// The fast path: a value made only of plain objects, arrays, strings, numbers, booleans, null,
// undefined and small plain Uint8Arrays (every protocol envelope, most arguments and results, a
// stream's chunk of binary items) is written straight into the
// slab, since cborg builds a token object per item first. Anything else, anywhere in the value,
// sends the whole value to cborg, so the two paths never mix in one frame. Both write plain CBOR
// that decode reads alike; only the width chosen for a float may differ.

/** How deep the fast path goes before handing the value to cborg (which also detects cycles). */
const FAST_MAX_DEPTH = 64;
const textEncoder = new TextEncoder();

/** Writes an item's head: its major type (already shifted) and its argument, in the fewest bytes. */
function writeHead(major: number, n: number): void {
  ensureRoom(9);
  if (n < 24) {
    slab[at++] = major | n;
  } else if (n < 0x100) {
    slab[at++] = major | 24;
    slab[at++] = n;
  } else if (n < 0x10000) {
    slab[at++] = major | 25;
    slabView.setUint16(at, n);
    at += 2;
  } else if (n < 0x100000000) {
    slab[at++] = major | 26;
    slabView.setUint32(at, n);
    at += 4;
  } else {
    slab[at++] = major | 27;
    slabView.setUint32(at, Math.floor(n / 0x100000000));
    slabView.setUint32(at + 4, n >>> 0);
    at += 8;
  }
}

function headBytes(n: number): number {
  return n < 24 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : n < 0x100000000 ? 5 : 9;
}

/** Writes a string; returns false (writing nothing) for one that cannot travel (a lone surrogate). */
function writeString(text: string): boolean {
  const length = text.length;
  if (length < 0x100) {
    // ASCII (keys, tags, names, ids) byte by byte; anything else through TextEncoder
    ensureRoom(2 + length);
    const start = at;
    if (length < 24) slab[at++] = 0x60 | length;
    else {
      slab[at++] = 0x78;
      slab[at++] = length;
    }
    for (let i = 0; i < length; i++) {
      const code = text.charCodeAt(i);
      if (code >= 0x80) {
        at = start;
        return writeUtf8(text);
      }
      slab[at++] = code;
    }
    return true;
  }
  return writeUtf8(text);
}

function writeUtf8(text: string): boolean {
  if (!wellFormed(text)) return false;
  const reserved = headBytes(3 * text.length); // UTF-8 takes at most 3 bytes per UTF-16 unit
  ensureRoom(reserved + 3 * text.length + 9); // + 9: writeHead below must not grow (and drop) the buffer
  const start = at;
  const { written } = textEncoder.encodeInto(text, slab.subarray(start + reserved));
  const head = headBytes(written);
  if (head < reserved) slab.copyWithin(start + head, start + reserved, start + reserved + written);
  writeHead(0x60, written);
  at = start + head + written;
  return true;
}

function writeNumber(n: number): void {
  if (Number.isSafeInteger(n)) {
    if (n > 0) writeHead(0x00, n);
    else if (n < 0) writeHead(0x20, -1 - n);
    else if (1 / n > 0) writeHead(0x00, 0);
    else {
      // -0: a half-precision float, as the integer 0 would arrive as 0
      ensureRoom(3);
      slab[at++] = 0xf9;
      slab[at++] = 0x80;
      slab[at++] = 0x00;
    }
  } else if (Math.fround(n) === n || n !== n) {
    ensureRoom(5);
    slab[at++] = 0xfa;
    slabView.setFloat32(at, n);
    at += 4;
  } else {
    ensureRoom(9);
    slab[at++] = 0xfb;
    slabView.setFloat64(at, n);
    at += 8;
  }
}

/** Writes `value` if it is JSON-like all the way down; returns false as soon as a part is not. */
function writeFast(value: unknown, depth: number): boolean {
  switch (typeof value) {
    case "string":
      return writeString(value);
    case "number":
      writeNumber(value);
      return true;
    case "boolean":
      ensureRoom(1);
      slab[at++] = value ? 0xf5 : 0xf4;
      return true;
    case "undefined":
      ensureRoom(1);
      slab[at++] = 0xf7;
      return true;
    case "object": {
      if (value === null) {
        ensureRoom(1);
        slab[at++] = 0xf6;
        return true;
      }
      if (depth === FAST_MAX_DEPTH) return false;
      // anything but a plain array or object (a subclass, a hole, a symbol key: see refusalOf) goes
      // to cborg, which refuses it
      const proto = Object.getPrototypeOf(value);
      if (proto === Array.prototype) {
        const array = value as unknown[];
        const length = array.length;
        writeHead(0x80, length);
        for (let i = 0; i < length; i++) {
          const item = array[i];
          if (item === undefined && !(i in array)) return false;
          if (!writeFast(item, depth + 1)) return false;
        }
        return true;
      }
      if (proto === UINT8_PROTOTYPE) return writeBytes(value as Uint8Array);
      if (proto === EncodedValue.prototype) return writeEncoded(value as EncodedValue, depth);
      if (proto !== Object.prototype || Object.getOwnPropertySymbols(value).length !== 0) return false;
      const keys = Object.keys(value);
      writeHead(0xa0, keys.length);
      for (const key of keys) {
        if (!writeString(key) || !writeFast((value as Record<string, unknown>)[key], depth + 1)) return false;
      }
      return true;
    }
    default:
      return false;
  }
}

const UINT8_PROTOTYPE: object = Uint8Array.prototype;
/** The largest byte string the fast path writes; a larger one sends its value to cborg, as before. */
const FAST_BYTES_MAX = 4096;

/**
 * Writes a small plain `Uint8Array` as a byte string (its head, then its bytes: what cborg writes),
 * rather than sending the whole value to cborg for it: a stream of small binary items (tokens,
 * embeddings' ids) is many of them to a chunk, and cborg makes a token object per item first.
 */
function writeBytes(bytes: Uint8Array): boolean {
  const length = bytes.byteLength;
  if (length > FAST_BYTES_MAX) return false;
  if (at + 3 + length > slab.length) ensureRoom(3 + length);
  const s = slab;
  let k = at;
  // the head (FAST_BYTES_MAX < 2^16: at most 3 bytes), then the bytes
  if (length < 24) s[k++] = 0x40 | length;
  else if (length < 0x100) {
    s[k++] = 0x58;
    s[k++] = length;
  } else {
    s[k++] = 0x59;
    s[k++] = length >> 8;
    s[k++] = length & 0xff;
  }
  if (length <= 64) {
    // a short one byte by byte: a call into set() costs more than the copy
    for (let i = 0; i < length; i++) s[k++] = bytes[i];
  } else {
    s.set(bytes, k);
    k += length;
  }
  at = k;
  return true;
}

/** Room left after an encoded value when the frame moves to a larger slab for it. */
const SPLICE_SPARE_BYTES = 4096;

/**
 * Writes an {@linkcode EncodedValue}'s bytes as they are, behind the padding that puts its first
 * byte on a multiple of 8 from the frame's header when it may hold aligned typed arrays; nested
 * deeper than its room allows, its value is written anew.
 */
function writeEncoded(encoded: EncodedValue, depth: number): boolean {
  const bytes = encoded.bytes;
  const pads = bytes.byteLength < ALIGN_MIN_BYTES ? 0 : ((8 - ((at - frameStart) & 7)) * 3) & 7;
  if (depth + MAX_PADS > ENCODED_ROOM_LEVELS) return writeFast(encoded.value, depth);
  // (room for the message's last few fields after it, not for as much again: a large value is
  // written in one piece, and a slab twice its size would cost more to clear than the copy)
  ensureRoom(3 * pads + bytes.byteLength, SPLICE_SPARE_BYTES);
  for (let k = 0; k < pads; k++) {
    slab[at++] = 0xd9; // tag 55799, in 3 bytes
    slab[at++] = 0xd9;
    slab[at++] = 0xf7;
  }
  slab.set(bytes, at);
  at += bytes.byteLength;
  return true;
}

/**
 * Encodes a JSON-like `value` behind `room` free bytes (returned without them: they lie in front of
 * the returned view), or returns `undefined` when it is not JSON-like (or when called by a getter of
 * the value being written).
 *
 * @param value The value to encode.
 * @param room Free bytes to leave in front of the frame.
 * @returns The frame, or `undefined` when the value needs cborg.
 * @throws {TypeError} When the value cannot travel (a lone surrogate, say).
 *
 * @example
 * ```ts
 * import { encodeFast } from "./codec_encode.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(encodeFast({ t: "ok" }, 5)?.byteLength, 6);
 * strictEqual(encodeFast(new Date(0), 0), undefined);
 * ```
 */
export function encodeFast(value: unknown, room: number): Uint8Array<ArrayBuffer> | undefined {
  if (writing) return undefined;
  writing = true;
  frameStart = at;
  try {
    ensureRoom(room);
    at += room;
    if (writeFast(value, 0)) return takeFrame(room);
    at = frameStart;
    return undefined;
  } catch (cause) {
    at = frameStart;
    throw encodeError(value, cause);
  } finally {
    writing = false;
  }
}

/**
 * Encodes `value` with cborg behind `room` free bytes: its tokens first, then their exact length
 * (with the padding in front of large typed arrays placed), then one write into a buffer of that
 * size.
 */
function encodeWithCborg(value: unknown, room: number): Uint8Array<ArrayBuffer> {
  // a getter run by the encoder could encode a frame of its own
  const outer = frameArrays;
  const outerSplices = frameSplices;
  const outerLevels = openLevels;
  const outerObjects = openObjects;
  frameArrays = [];
  frameSplices = [];
  openLevels = 0;
  openObjects = new Set();
  let message: Uint8Array<ArrayBuffer>;
  let length: number;
  let written: number;
  try {
    const tokens = objectToTokens(value, encodeOptions);
    length = frameArrays.length === 0 && frameSplices.length === 0 ? tokensToLength(tokens) : placeArrays(tokens, room);
    message = carve(room + length);
    if (frameSplices.length === 0) {
      tokensToWrite = tokens;
      written = encodeInto(STAND_IN, message.subarray(room), writeOptions).written;
    } else written = writeSpliced(tokens, message.subarray(room));
  } catch (cause) {
    throw encodeError(value, cause);
  } finally {
    frameArrays = outer;
    frameSplices = outerSplices;
    openLevels = outerLevels;
    openObjects = outerObjects;
    tokensToWrite = [];
  }
  if (written !== length) throw new Error(`cborg wrote ${written} bytes of a frame of ${length}`);
  return message;
}

/**
 * Encodes a value as one CBOR frame. Typed arrays, `Map`, `Set`, `Date`, `bigint`, `undefined`
 * survive a round trip through {@linkcode decode}. The data of large typed arrays is aligned from
 * the frame's first byte, so decoding the bytes at the start of a buffer views it where it is.
 *
 * @param value The value to encode.
 * @returns The CBOR bytes (a fresh view; safe to keep).
 * @throws {TypeError} When the value cannot be encoded (a function, a symbol, an `Error`, a cycle,
 * a bigint longer than 64 bytes).
 *
 * @example Round trip of a typed array
 * ```ts
 * import { decode, encode } from "./codec.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const back = decode(encode({ x: new Float32Array([1, 2]), n: 2n ** 70n }));
 * deepStrictEqual(back, { x: new Float32Array([1, 2]), n: 2n ** 70n });
 * ```
 */
export function encode(value: unknown): Uint8Array {
  return encodeFast(value, 0) ?? encodeWhole(value, 0);
}

/**
 * {@linkcode encodeWithCborg} with every byte in the frame (no segments), also when a getter of a
 * value being framed calls it.
 *
 * @param value The value to encode.
 * @param room Free bytes to leave in front of the frame (they are part of the returned buffer).
 * @returns The room, then the frame.
 * @throws {TypeError} When the value cannot be encoded.
 *
 * @example
 * ```ts
 * import { encodeWhole } from "./codec_encode.ts";
 * import { decode } from "./codec.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const bytes = encodeWhole({ x: new Float32Array(20_000) }, 5);
 * deepStrictEqual(decode(bytes.subarray(5)), { x: new Float32Array(20_000) });
 * ```
 */
export function encodeWhole(value: unknown, room: number): Uint8Array<ArrayBuffer> {
  return encodeWithSegmentList(value, room, undefined);
}

/**
 * {@linkcode encodeWithCborg} with the bytes of typed arrays and byte strings of at least
 * `SEGMENT_MIN_BYTES` left out of the frame and pushed to `segments` (see {@linkcode segmentSlot}):
 * `encodeFrame`'s way when its fast path cannot take the value.
 *
 * @param value The value to encode.
 * @param room Free bytes to leave in front of the frame (they are part of the returned buffer).
 * @param segments Where the segments go, in the order the frame names them.
 * @returns The room, then the frame.
 * @throws {TypeError} When the value cannot be encoded.
 *
 * @example
 * ```ts
 * import { encodeSegmented } from "./codec_encode.ts";
 * import { strictEqual } from "node:assert/strict";
 * const x = new Uint8Array(70_000);
 * const segments: Uint8Array[] = [];
 * const bytes = encodeSegmented({ x }, 5, segments);
 * strictEqual(segments[0], x);
 * strictEqual(bytes.byteLength < 32, true);
 * ```
 */
export function encodeSegmented(value: unknown, room: number, segments: Uint8Array[]): Uint8Array<ArrayBuffer> {
  return encodeWithSegmentList(value, room, segments);
}

/**
 * {@linkcode encodeWithCborg} with `list` as the frame's segment list for the while (`undefined`:
 * every array inline), the list of an encoding around it put back after, whatever happens.
 */
function encodeWithSegmentList(
  value: unknown,
  room: number,
  list: Uint8Array[] | undefined,
): Uint8Array<ArrayBuffer> {
  const outer = frameSegmentList;
  frameSegmentList = list;
  try {
    return encodeWithCborg(value, room);
  } finally {
    frameSegmentList = outer;
  }
}
