/**
 * The wire codec: CBOR for every frame, and errors as data rebuilt from an allow-list.
 *
 * CBOR comes from the npm package `cborg` (it has no dependencies), and this file is its only
 * importer. The package was chosen for resolvability: a Deno user importing thinkagain from JSR has
 * only a deno.json, and Deno resolves the whole npm graph before running anything. `cbor-x` fails
 * there (its optional dependency `cbor-extract@2.2.3` names platform packages at 2.2.3 that were
 * never published), while `cborg` resolves anywhere.
 *
 * What travels: plain objects as CBOR maps (keys in insertion order), arrays, strings, numbers,
 * booleans, `null` and `undefined` as themselves, `Uint8Array` as a byte string, the other typed
 * arrays (`Float16Array` too, where the runtime has it) under their RFC 8746 little-endian tags,
 * `Date` as tag 1, `bigint` as tag 2/3 (always, so a small bigint stays a bigint), `Set` as tag 258,
 * `Map` as tag 259, and a service handle's reference ({@linkcode WireHandle}) as tag
 * {@linkcode TAG_HANDLE}. Anything else is refused by encode with a TypeError that says where and
 * why (see {@linkcode findRefusal}): a value arrives exactly as it was sent, or not at all.
 *
 * A frame from {@linkcode encodeFrame} leaves the bytes of typed arrays and byte strings of at least
 * 64 KiB out, as segments a transport sends beside it ({@linkcode segmentsOf}): the frame names each
 * under tag {@linkcode TAG_SEGMENT}.
 *
 * Decoding is strict, because frames come from peers: it accepts those tags and tag 55799 (the
 * padding {@linkcode encodeFrame} aligns typed arrays with), tag {@linkcode TAG_SEGMENT} only in a
 * frame that came with its segments (each named exactly once), and refuses every other tag (shared
 * references 28/29, tag 27 objects, cbor-x records, …), bigints longer than 64 bytes (512 bits; the
 * encoder refuses them too), arrays, maps and tags nested more than 256 deep (so does the encoder),
 * indefinite-length items (the encoder never writes them) and integers beyond 2^53 outside tags
 * 2/3. Each is refused as soon as it is read, before any work that grows faster than the frame.
 *
 * @module
 */
import {
  decode as cborgDecode,
  type DecodeOptions,
  encodeInto,
  type EncodeOptions,
  objectToTokens,
  type TagDecodeControl,
  Token,
  Tokenizer,
  Type,
} from "cborg";
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
  mapDecoder,
  structBigIntEncoder,
  uint16ArrayEncoder,
  uint32ArrayEncoder,
  uint8ClampedArrayEncoder,
} from "cborg/taglib";
import {
  AuthError,
  CancelledError,
  NodeLostError,
  OpExecutionError,
  OverloadedError,
  PlacementError,
  ProtocolError,
  RemoteError,
  ThinkagainError,
  TimeoutError,
  TransportError,
} from "./errors.ts";
import { type CallName, CANCEL_REASONS, type CancelReason, type TransportErrorReason } from "./errors.ts";
import { fastDecode, NOT_FAST, type TagTable } from "./codec_fast_decode.ts";

/** The longest bigint magnitude, in bytes (512 bits), that encode writes and decode reads. */
const MAX_BIGINT_BYTES = 64;
/** How deep arrays, maps and tags may nest in a frame that decode accepts. */
const MAX_DEPTH = 256;
/** Bytes free in front of a frame from {@linkcode encodeFrame}: room for a transport's frame header. */
export const FRAME_HEADROOM = 5;
/** Frames this large or larger have their headroom on offer; smaller ones are batched (copied) anyway. */
const HEADROOM_MIN_BYTES = 64 * 1024;
/** Typed arrays this large or larger are aligned (see {@linkcode encodeFrame}); smaller ones are copied. */
const ALIGN_MIN_BYTES = 4096;
/** Self-described CBOR (RFC 8949 §3.4.6): a tag that means nothing, so a run of them is padding. */
const TAG_SELF_DESCRIBED = 55799;
const headroom = new WeakSet<Uint8Array>();
/**
 * Typed arrays and byte strings this large or larger leave a frame from {@linkcode encodeFrame} as
 * segments (see {@linkcode segmentsOf}); smaller ones are written into it.
 */
export const SEGMENT_MIN_BYTES = 64 * 1024;
/**
 * The CBOR tag of a segment's place in a frame: 1953000290 (the bytes of "thkb"), next to
 * {@linkcode TAG_HANDLE}, from the first-come-first-served range of the IANA registry. It holds the
 * segment's index; under a typed array's RFC 8746 tag it stands for that array's bytes. Only
 * {@linkcode encodeFrame} writes it, only for the bytes it sends beside the frame, and decode
 * accepts it only in a frame that came with its segments, each used exactly once.
 */
export const TAG_SEGMENT: number = 0x74686b62;
/** The segments of frames from {@linkcode encodeFrame} or received with theirs ({@linkcode attachSegments}). */
const segmentTable = new WeakMap<Uint8Array, readonly Uint8Array[]>();
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

const BIGINT_LIMIT = 1n << BigInt(8 * MAX_BIGINT_BYTES);

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

/** `Float16Array`, where the runtime has it: cborg does not know it (it would encode one as a map). */
const Float16 = (globalThis as { Float16Array?: TypedArrayConstructor }).Float16Array;
const TAG_FLOAT16_ARRAY_LE = 84;
const float16ArrayEncoder = alignedTypedArrayEncoder((array) => [
  new Token(Type.tag, TAG_FLOAT16_ARRAY_LE),
  new Token(Type.bytes, new Uint8Array(array.buffer, array.byteOffset, array.byteLength)),
]);

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

function decodeHandle(content: TagDecodeControl): WireHandle {
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

// What travels. A value either arrives exactly as it was sent or encode refuses it with a TypeError
// that says where it is and why: nothing changes on the way without an error. refusalOf holds the
// rules for one value (its children aside); both encoders follow them, and findRefusal walks a
// value by them to name the path of the first one refused (only once an encode has failed, so the
// path costs nothing on the way of a value that travels).

const { propertyIsEnumerable } = Object.prototype;
const TYPED_ARRAYS: readonly TypedArrayConstructor[] = [
  Uint8ClampedArray,
  Int8Array,
  Uint16Array,
  Int16Array,
  Uint32Array,
  Int32Array,
  BigUint64Array,
  BigInt64Array,
  Float32Array,
  Float64Array,
  ...(Float16 === undefined ? [] : [Float16]),
] as unknown as TypedArrayConstructor[];
/** Prototypes of the objects other than plain objects and arrays that arrive as themselves. */
const EXACT_PROTOTYPES: ReadonlySet<object> = new Set<object>([
  Map.prototype,
  Set.prototype,
  Date.prototype,
  Uint8Array.prototype,
  WireHandle.prototype,
  EncodedValue.prototype,
  ...TYPED_ARRAYS.map((Kind) => (Kind as unknown as { prototype: object }).prototype),
]);
const BOXED: readonly [new (...a: never[]) => object, string][] = [
  [String, "String"],
  [Number, "Number"],
  [Boolean, "Boolean"],
  [BigInt as unknown as new () => object, "BigInt"],
  [Symbol as unknown as new () => object, "Symbol"],
];
const wellFormed: (text: string) => boolean =
  typeof (String.prototype as { isWellFormed?: unknown }).isWellFormed === "function"
    ? (text) => (text as unknown as { isWellFormed(): boolean }).isWellFormed()
    : (text) => !/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(text);

function loneSurrogate(text: string): string {
  let i = 0;
  for (; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code >= 0xd800 && code <= 0xdbff) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
      else break;
    } else if (code >= 0xdc00 && code <= 0xdfff) break;
  }
  const unit = text.charCodeAt(i).toString(16).toUpperCase();
  return `a string with a lone surrogate (\\u${unit} at index ${i}) cannot travel: CBOR text is UTF-8, which has no form for it`;
}

function className(value: object): string {
  const ctor = (Object.getPrototypeOf(value) as { constructor?: { name?: unknown } } | null)?.constructor;
  return typeof ctor?.name === "string" && ctor.name !== "" ? ctor.name : "an anonymous class";
}

/** Why a non-plain object cannot travel (prototype not Object.prototype, Array.prototype, …). */
function foreignObjectRefusal(value: object, proto: object | null): string {
  if (proto === null) {
    return "an object with a null prototype would arrive as a plain object: copy it into one ({ ...value })";
  }
  const name = className(value);
  if (Array.isArray(value)) return `an instance of ${name} (an Array subclass) would arrive as a plain Array`;
  if (value instanceof Error) {
    return `an Error (${name}) cannot travel as a value: errors travel when thrown; send its message instead`;
  }
  if (value instanceof DataView) {
    return "a DataView would arrive as a Uint8Array: send a Uint8Array or another typed array instead";
  }
  if (value instanceof ArrayBuffer || (typeof SharedArrayBuffer === "function" && value instanceof SharedArrayBuffer)) {
    return `an ${name} would arrive as a Uint8Array: send a view of it instead (new Uint8Array(buffer))`;
  }
  if (ArrayBuffer.isView(value)) {
    const base = TYPED_ARRAYS.find((Kind) => value instanceof (Kind as unknown as typeof Uint8Array))?.name ??
      "Uint8Array";
    return `an instance of ${name} (a ${base} subclass) would arrive as a plain ${base}: send a ${base} view of ` +
      `it instead (new ${base}(a.buffer, a.byteOffset, a.length))`;
  }
  for (const Kind of [Map, Set, Date]) {
    if (value instanceof Kind) {
      return `an instance of ${name} (a ${Kind.name} subclass) would arrive as a plain ${Kind.name}`;
    }
  }
  for (const [Box, boxed] of BOXED) {
    if (value instanceof Box) {
      return `a boxed ${boxed} (new ${boxed}(…)) would arrive as a plain object: send the primitive instead`;
    }
  }
  if (typeof (value as { then?: unknown }).then === "function") {
    return `a ${name === "Promise" ? "Promise" : `thenable (${name})`} cannot travel: await it first ` +
      "(an ObjectRef passed as an argument, or in an array or plain object of one, is awaited for you)";
  }
  if (typeof (value as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === "function") {
    return `a stream (${name}) cannot travel to another process: read it where it arrives (an op that is not ` +
      "remote-capable takes it as its items come), or collect its items into an array first";
  }
  if (value instanceof RegExp) return "a RegExp cannot travel: send its source and flags instead";
  if (value instanceof WeakMap || value instanceof WeakSet) {
    return `a ${name} cannot travel: its entries cannot be read`;
  }
  return `an instance of ${name} would arrive as a plain object without its class (classes do not travel): ` +
    "send a plain object instead";
}

/** Why `value` itself (its children aside) cannot travel, or `undefined` when it can. */
function refusalOf(value: unknown): string | undefined {
  switch (typeof value) {
    case "string":
      return wellFormed(value) ? undefined : loneSurrogate(value);
    case "bigint":
      // tag 3 carries -1 - value, so both signs have the same bound
      if (value < BIGINT_LIMIT && value >= -BIGINT_LIMIT) return undefined;
      return `a bigint needs at most ${MAX_BIGINT_BYTES} bytes, found one of ${
        Math.ceil((value < 0n ? -1n - value : value).toString(16).length / 2)
      }`;
    case "symbol":
      return "a symbol cannot travel";
    case "function":
      return `a function${value.name ? ` (${value.name})` : ""} cannot travel: code never does ` +
        "(register it where it runs and call it by name)";
    case "object": {
      if (value === null) return undefined;
      const proto = Object.getPrototypeOf(value);
      if (proto === Object.prototype) {
        for (const key of Object.getOwnPropertySymbols(value)) {
          if (propertyIsEnumerable.call(value, key)) {
            return `an object with a symbol key (${String(key)}) would arrive without it: symbol keys do not travel`;
          }
        }
        return undefined;
      }
      if (proto === Array.prototype || EXACT_PROTOTYPES.has(proto)) return undefined;
      return foreignObjectRefusal(value, proto);
    }
    default:
      return undefined;
  }
}

const TOO_DEEP = `it is nested more than ${MAX_DEPTH} levels deep (arrays, objects, maps, sets and tagged values ` +
  "such as dates and typed arrays each count)";

/** Where in a value, and why, encode refuses it (see {@linkcode findRefusal}). */
export interface ValueRefusal {
  /** The path from the value's root: `""` for the value itself, else like `[1].docs["a b"].get("k")`. */
  readonly path: string;
  /** Why it cannot travel. */
  readonly reason: string;
}

function keyPath(key: string): string {
  if (key.length > 40) return `[${JSON.stringify(key.slice(0, 40))}…]`; // a path, not a copy of the data
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

function mapKeyPath(key: unknown, index: number): string {
  return typeof key === "string"
    ? `.get(${JSON.stringify(key.length > 40 ? `${key.slice(0, 40)}…` : key)})`
    : typeof key === "number" || typeof key === "boolean" || key === null || key === undefined
    ? `.get(${String(key)})`
    : `.values()[${index}]`;
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
    const reason = refusalOf(v);
    if (reason !== undefined) return { path, reason };
    if (typeof v === "bigint") return depth === MAX_DEPTH ? { path, reason: TOO_DEEP } : undefined;
    if (typeof v !== "object" || v === null || v instanceof Uint8Array) return undefined;
    if (ArrayBuffer.isView(v) || v instanceof Date) return depth === MAX_DEPTH ? { path, reason: TOO_DEEP } : undefined;
    // tag, [service, replicas], replicas, [node, endpoint, id]
    if (v instanceof WireHandle) return depth + 4 > MAX_DEPTH ? { path, reason: TOO_DEEP } : undefined;
    if (v instanceof EncodedValue) return undefined; // (it was encoded: it travels)
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

/** Errors that are encode's refusal of a value (see {@linkcode isValueRefusal}). */
const refusals = new WeakSet<object>();

/**
 * A TypeError that says a value cannot travel, marked so that {@linkcode isValueRefusal} knows it:
 * the mistake of whoever tried to send the value, never its peer's.
 *
 * @param message What was refused, where and why.
 * @param cause The refusal it restates, if any.
 * @returns The error.
 *
 * @example
 * ```ts
 * import { isValueRefusal, valueRefusalError } from "./codec.ts";
 * if (!isValueRefusal(valueRefusalError("argument 0 cannot travel"))) throw new Error("expected a refusal");
 * ```
 */
export function valueRefusalError(message: string, cause?: unknown): TypeError {
  const err = cause === undefined ? new TypeError(message) : new TypeError(message, { cause });
  refusals.add(err);
  return err;
}

/**
 * Whether `err` is {@linkcode encode}'s refusal of a value (or one made by
 * {@linkcode valueRefusalError}): a value that cannot travel as it is.
 *
 * @param err Anything thrown.
 * @returns True for a refusal.
 *
 * @example
 * ```ts
 * import { encode, isValueRefusal } from "./codec.ts";
 * try { encode([Symbol("s")]); } catch (e) { if (!isValueRefusal(e)) throw e; }
 * ```
 */
export function isValueRefusal(err: unknown): err is TypeError {
  return typeof err === "object" && err !== null && refusals.has(err);
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
 */
function encodeFast(value: unknown, room: number): Uint8Array<ArrayBuffer> | undefined {
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
 * Encodes a value as one frame that a transport can send without copying it again: the
 * {@linkcode FRAME_HEADROOM} bytes in front of it are free for the transport's header (taken once
 * through {@linkcode claimHeadroom}), and the data of large typed arrays is aligned so that, once
 * the frame arrives behind that header at the start of a message, {@linkcode decode} views it where
 * it is instead of copying it. Typed arrays and byte strings of {@linkcode SEGMENT_MIN_BYTES} or more
 * are not copied into it at all: they stay where they are as its segments ({@linkcode segmentsOf}),
 * which a transport sends beside it or writes in with {@linkcode inlineFrame}. Decodes like any
 * {@linkcode encode} output (with its segments, in this process or attached where it arrives).
 *
 * @param value The value to encode.
 * @returns The CBOR bytes.
 * @throws {TypeError} When the value cannot be encoded.
 *
 * @example A large frame's typed arrays (below the segments' 64 KiB), framed in place and viewed where they arrive
 * ```ts
 * import { claimHeadroom, decode, encodeFrame, FRAME_HEADROOM } from "./codec.ts";
 * const frame = encodeFrame({ x: new Float32Array(16_000), y: new Float32Array(16_000) });
 * const message = claimHeadroom(frame)!; // header + frame, no copy
 * message.fill(7, 0, FRAME_HEADROOM);
 * const arrived = new Uint8Array(message); // a fresh buffer, as a receiver gets it
 * const { x } = decode(arrived.subarray(FRAME_HEADROOM)) as { x: Float32Array };
 * if (x.buffer !== arrived.buffer || x.length !== 16_000) throw new Error("expected a view");
 * ```
 */
export function encodeFrame(value: unknown): Uint8Array {
  // (the fast path's frame comes without its room: one view less per frame, 40 ns on Bun)
  let frame = encodeFast(value, FRAME_HEADROOM);
  let segments: Uint8Array[] | undefined;
  if (frame === undefined) {
    const outer = frameSegmentList;
    frameSegmentList = segments = [];
    try {
      frame = encodeWithCborg(value, FRAME_HEADROOM).subarray(FRAME_HEADROOM);
    } finally {
      frameSegmentList = outer;
    }
  }
  const segmented = segments !== undefined && segments.length > 0;
  if (segmented) segmentTable.set(frame, segments!);
  if (frame.byteLength >= HEADROOM_MIN_BYTES) headroom.add(frame);
  else if (!segmented) latestFrame = frame;
  return frame;
}

/**
 * The last small frame {@linkcode encodeFrame} made (no segments): its room is on offer to
 * {@linkcode claimLatestHeadroom} until that takes it or the next frame is made.
 */
let latestFrame: Uint8Array | undefined;

/**
 * The headroom of the small frame {@linkcode encodeFrame} made last, taken once, or `undefined` for
 * any other frame. A transport that sends a small frame as a message of its own right after it was
 * encoded (a sequential call, its reply) writes the header in front of it instead of copying it
 * behind a new one: a new small buffer costs more than the rest of the framing (0.5 µs on Deno,
 * 0.1 on Bun). Only the latest frame, by identity, so that nothing else (an older frame, a frame
 * sent twice, a frame received) has its bytes in front written; for large frames see
 * {@linkcode claimHeadroom}.
 *
 * @param frame A frame about to get a header.
 * @returns The header room and the frame as one view, or `undefined`.
 *
 * @example
 * ```ts
 * import { claimLatestHeadroom, encodeFrame } from "./codec.ts";
 * const older = encodeFrame({ t: "a" });
 * const frame = encodeFrame({ t: "b" });
 * if (claimLatestHeadroom(older) !== undefined) throw new Error("only the latest");
 * if (claimLatestHeadroom(frame)?.byteLength !== frame.byteLength + 5) throw new Error("expected room");
 * if (claimLatestHeadroom(frame) !== undefined) throw new Error("taken once");
 * ```
 */
export function claimLatestHeadroom(frame: Uint8Array): Uint8Array<ArrayBuffer> | undefined {
  if (frame !== latestFrame) return undefined;
  latestFrame = undefined;
  return new Uint8Array(
    frame.buffer as ArrayBuffer,
    frame.byteOffset - FRAME_HEADROOM,
    frame.byteLength + FRAME_HEADROOM,
  );
}

/**
 * The segments of a frame: the bytes of its large typed arrays and byte strings (at least
 * {@linkcode SEGMENT_MIN_BYTES} each), which {@linkcode encodeFrame} leaves where they are instead
 * of copying them into it. The frame names each by its index under {@linkcode TAG_SEGMENT}; a
 * transport sends them beside it (the WebSocket transport as messages of their own) or writes the
 * frame whole with {@linkcode inlineFrame}. They are the sender's own bytes, not copies: send them
 * before anything can change them.
 *
 * @param frame A frame from {@linkcode encodeFrame}, or one received with its segments.
 * @returns Its segments in order, or `undefined` when it has none.
 *
 * @example A 1 MiB array stays out of the frame
 * ```ts
 * import { decode, encodeFrame, segmentsOf } from "./codec.ts";
 * import { strictEqual } from "node:assert/strict";
 * const x = new Float32Array(262144);
 * const frame = encodeFrame({ x });
 * strictEqual(segmentsOf(frame)?.[0].buffer, x.buffer);
 * strictEqual(frame.byteLength < 64, true);
 * strictEqual((decode(frame) as { x: Float32Array }).x.length, 262144);
 * ```
 */
export function segmentsOf(frame: Uint8Array): readonly Uint8Array[] | undefined {
  return segmentTable.get(frame);
}

/**
 * Gives a received frame the segments that came beside it, so that {@linkcode decode} reads them
 * where they are (a typed array's view, when aligned for it).
 *
 * @param frame The frame, exactly the view that will be decoded.
 * @param segments Its segments, in order.
 *
 * @example
 * ```ts
 * import { attachSegments, decode, encodeFrame, segmentsOf } from "./codec.ts";
 * import { strictEqual } from "node:assert/strict";
 * const sent = encodeFrame({ b: new Uint8Array(70_000).fill(3) });
 * const arrived = sent.slice(); // a copy, as a transport would give it
 * attachSegments(arrived, segmentsOf(sent)!.map((s) => s.slice()));
 * strictEqual((decode(arrived) as { b: Uint8Array }).b[69_999], 3);
 * ```
 */
export function attachSegments(frame: Uint8Array, segments: readonly Uint8Array[]): void {
  if (segments.length > 0) segmentTable.set(frame, segments);
}

/**
 * The bytes a frame carries, its segments included: what limits on a frame's size count.
 *
 * @param frame A frame.
 * @returns Its length plus its segments' lengths.
 *
 * @example
 * ```ts
 * import { encodeFrame, frameBytes } from "./codec.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(frameBytes(encodeFrame({ x: new Float64Array(10_000) })) > 80_000, true);
 * ```
 */
export function frameBytes(frame: Uint8Array): number {
  const segments = segmentTable.get(frame);
  if (segments === undefined) return frame.byteLength;
  let n = frame.byteLength;
  for (const s of segments) n += s.byteLength;
  return n;
}

/**
 * The frame with its segments written into it, for a transport that sends one message per frame
 * (HTTP, NATS, in memory): the frame itself when it has none, else a new frame, as
 * {@linkcode encodeFrame} wrote frames before segments (one copy of their bytes, as then).
 *
 * @param frame A frame.
 * @returns A frame without segments that decodes to the same value.
 *
 * @example
 * ```ts
 * import { decode, encodeFrame, inlineFrame, segmentsOf } from "./codec.ts";
 * import { deepStrictEqual, strictEqual } from "node:assert/strict";
 * const value = { x: new Int32Array(20_000).fill(-2) };
 * const whole = inlineFrame(encodeFrame(value));
 * strictEqual(segmentsOf(whole), undefined);
 * deepStrictEqual(decode(whole), value);
 * ```
 */
export function inlineFrame(frame: Uint8Array): Uint8Array {
  if (!segmentTable.has(frame)) return frame;
  const value = decode(frame);
  const message = encodeWhole(value, FRAME_HEADROOM);
  const inline = message.subarray(FRAME_HEADROOM);
  if (inline.byteLength >= HEADROOM_MIN_BYTES) headroom.add(inline);
  return inline;
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
 * Takes the free bytes in front of `frame` (see {@linkcode encodeFrame}; also offered for a large
 * received frame whose header was already read): returns the frame with
 * {@linkcode FRAME_HEADROOM} writable bytes before it, or `undefined` when it has none on offer. Each
 * frame's room can be taken once, so a frame sent twice is copied the second time.
 *
 * @param frame A frame about to get a header.
 * @returns The header room and the frame as one view, or `undefined`.
 *
 * @example
 * ```ts
 * import { claimHeadroom, encodeFrame } from "./codec.ts";
 * const frame = encodeFrame({ big: [new Uint8Array(40_000), new Uint8Array(40_000)] });
 * if (claimHeadroom(frame)?.byteLength !== frame.byteLength + 5) throw new Error("expected room");
 * if (claimHeadroom(frame) !== undefined) throw new Error("taken once");
 * ```
 */
export function claimHeadroom(frame: Uint8Array): Uint8Array<ArrayBuffer> | undefined {
  if (!headroom.delete(frame)) return undefined;
  return new Uint8Array(
    frame.buffer as ArrayBuffer,
    frame.byteOffset - FRAME_HEADROOM,
    frame.byteLength + FRAME_HEADROOM,
  );
}

/**
 * Offers the {@linkcode FRAME_HEADROOM} bytes in front of `frame` for reuse (a received message's
 * own header, once read): a handler that answers with this same frame is then framed in place.
 * Only a frame of `minBytes` or more is taken (by default 64 KiB: a smaller one goes out batched
 * with others, copied anyway); a sender that writes a frame of its own with room in front of it,
 * and gives its buffer away with it, offers a smaller one (a stream's chunk, `stream_wire.ts`).
 *
 * @param frame A frame at least {@linkcode FRAME_HEADROOM} bytes into its buffer.
 * @param minBytes The least size of a frame whose room is taken.
 *
 * @example
 * ```ts
 * import { claimHeadroom, offerHeadroom } from "./codec.ts";
 * const message = new Uint8Array(5 + 70_000); // header + frame, as received
 * const frame = message.subarray(5);
 * offerHeadroom(frame);
 * if (claimHeadroom(frame)?.buffer !== message.buffer) throw new Error("expected the same bytes");
 * const small = new Uint8Array(5 + 100).subarray(5);
 * offerHeadroom(small);
 * if (claimHeadroom(small) !== undefined) throw new Error("too small by default");
 * offerHeadroom(small, 0);
 * if (claimHeadroom(small)?.byteLength !== 105) throw new Error("expected room");
 * ```
 */
export function offerHeadroom(frame: Uint8Array, minBytes: number = HEADROOM_MIN_BYTES): void {
  if (frame.byteLength >= minBytes && frame.byteOffset >= FRAME_HEADROOM) headroom.add(frame);
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

/** {@linkcode encodeWithCborg} with every byte in the frame (no segments), also when a getter of a value being framed calls it. */
function encodeWhole(value: unknown, room: number): Uint8Array<ArrayBuffer> {
  const outer = frameSegmentList;
  frameSegmentList = undefined;
  try {
    return encodeWithCborg(value, room);
  } finally {
    frameSegmentList = outer;
  }
}

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
  // hundreds of times slower than a plain frame of its size (see bench/decoder_bombs.ts)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let n = 0n;
  let i = 0;
  for (; i + 8 <= bytes.byteLength; i += 8) n = (n << 64n) | view.getBigUint64(i);
  for (; i < bytes.byteLength; i++) n = (n << 8n) | BigInt(bytes[i]);
  return n;
}

interface TypedArrayConstructor {
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): ArrayBufferView;
  readonly BYTES_PER_ELEMENT: number;
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
    return new Set(items);
  },
  259: mapDecoder,
  [TAG_SELF_DESCRIBED]: (content) => content(),
  [TAG_HANDLE]: decodeHandle,
  [TAG_SEGMENT]: decodeSegment,
  ...FLOAT16_TAGS,
};

// Read by cborg's token readers (through the tokenizer) and by its decoder.
const strictOptions: DecodeOptions = { allowIndefinite: false, allowBigInt: false, allowUndefined: true };

/** Decode options with a tokenizer of their own. */
function freshDecodeOptions(): DecodeOptions {
  return { ...strictOptions, tags: TAGS, tokenizer: new FrameTokenizer(NO_SLAB, strictOptions) };
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
    tokenizer.start(NO_SLAB); // let the frame go
    if (options === sharedDecodeOptions) decoding = false;
  }
}

/** An error as it travels on the wire: data only, never a stack or a file path. */
export interface WireError {
  /** `_tag` of a thinkagain error, `"Error"` for a built-in JS error, `"Remote"` otherwise. */
  tag: string;
  /** The error's message. */
  message: string;
  /** Constructor data (`toData()`), or `{ name }` for built-in errors. */
  data: Record<string, unknown>;
  /** The wire form of `cause`, when the error has one (e.g. what an op threw). */
  cause?: WireError;
}

const BUILTIN_ERRORS: Record<string, new (message: string) => Error> = {
  Error,
  TypeError,
  RangeError,
  SyntaxError,
  ReferenceError,
  EvalError,
  URIError,
};

function describeValue(value: unknown): string {
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/**
 * Turns anything thrown into its wire form. thinkagain errors keep their tag and data, built-in JS
 * errors keep `name` and `message`; other `Error`s become `RemoteError` data with their name; any
 * other value becomes `RemoteError` data describing it. Stacks are never included.
 *
 * @param err Whatever was thrown.
 * @returns Plain data, safe to encode.
 *
 * @example A TypeError keeps its name and message, not its stack
 * ```ts
 * import { errorToWire } from "./codec.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * deepStrictEqual(errorToWire(new TypeError("bad")), { tag: "Error", message: "bad", data: { name: "TypeError" } });
 * ```
 */
export function errorToWire(err: unknown): WireError {
  return toWire(err, 0);
}

function toWire(err: unknown, depth: number): WireError {
  if (err instanceof ThinkagainError) {
    const wire: WireError = { tag: err._tag, message: err.message, data: err.toData() };
    if (err.cause !== undefined && depth < 8) wire.cause = toWire(err.cause, depth + 1);
    return wire;
  }
  if (err instanceof Error) {
    const name = typeof err.name === "string" ? err.name : "Error";
    if (Object.hasOwn(BUILTIN_ERRORS, name)) return { tag: "Error", message: String(err.message), data: { name } };
    return { tag: "Remote", message: String(err.message), data: { remoteName: name } };
  }
  return { tag: "Remote", message: describeValue(err), data: { remoteName: typeof err } };
}

function str(data: Record<string, unknown>, key: string, fallback: string): string {
  const v = data[key];
  return typeof v === "string" ? v : fallback;
}

const REASONS: ReadonlySet<string> = new Set(["unreachable", "closed", "too-large", "bad-frame", "refused", "io"]);

/**
 * Rebuilds an error from its wire form. Only allow-listed classes are rebuilt (the thinkagain errors
 * and the built-in JS errors by name); anything else, or malformed data, becomes `RemoteError`.
 * Nothing from the wire is evaluated.
 *
 * @param wire What {@linkcode errorToWire} produced on the other side (untrusted).
 * @returns A local error instance; its stack is local.
 *
 * @example Round trip of a TimeoutError and of an unknown error
 * ```ts
 * import { errorFromWire, errorToWire } from "./codec.ts";
 * import { RemoteError, TimeoutError } from "./errors.ts";
 * import { ok, strictEqual } from "node:assert/strict";
 * const t = errorFromWire(errorToWire(new TimeoutError("slow", 50)));
 * ok(t instanceof TimeoutError);
 * strictEqual(t.timeoutMs, 50);
 * class SqlError extends Error { override name = "SqlError"; }
 * const r = errorFromWire(errorToWire(new SqlError("no table")));
 * ok(r instanceof RemoteError);
 * strictEqual(r.remoteName, "SqlError");
 * ```
 */
export function errorFromWire(wire: unknown): Error {
  return fromWire(wire, 0);
}

/** The op or method an error from the wire is about (a method only when its data says so). */
function callName(data: Record<string, unknown>): CallName {
  return { name: str(data, "op", "unknown"), kind: data.kind === "method" ? "method" : "op" };
}

function fromWire(wire: unknown, depth: number): Error {
  if (typeof wire !== "object" || wire === null) {
    return new RemoteError(`Malformed error from peer: ${describeValue(wire)}`, "Error");
  }
  const w = wire as Partial<WireError>;
  const message = typeof w.message === "string" ? w.message : "";
  const data: Record<string, unknown> = typeof w.data === "object" && w.data !== null ? w.data : {};
  const cause = (): unknown => (w.cause !== undefined && depth < 8 ? fromWire(w.cause, depth + 1) : undefined);
  let err: Error;
  switch (w.tag) {
    case "Error": {
      const name = str(data, "name", "Error");
      const Ctor = Object.hasOwn(BUILTIN_ERRORS, name) ? BUILTIN_ERRORS[name] : undefined;
      return Ctor ? new Ctor(message) : new RemoteError(message, name);
    }
    case "OpExecutionError": {
      const c = cause();
      err = new OpExecutionError(callName(data), c === undefined ? new RemoteError(message) : c);
      break;
    }
    case "PlacementError":
      return new PlacementError(str(data, "service", "unknown"), message);
    case "TransportError": {
      const reason = str(data, "reason", "io");
      const endpoint = data.endpoint;
      return new TransportError(
        (REASONS.has(reason) ? reason : "io") as TransportErrorReason,
        message,
        typeof endpoint === "string" ? endpoint : undefined,
      );
    }
    case "RemoteError":
      return new RemoteError(message, str(data, "remoteName", "Error"));
    case "TimeoutError": {
      const ms = data.timeoutMs;
      err = new TimeoutError(callName(data), typeof ms === "number" ? ms : 0);
      break;
    }
    case "CancelledError": {
      // why it was cancelled (a drain, a deadline…), from the allow-list; anything else is a plain cancel
      const reason = str(data, "reason", "cancelled");
      err = new CancelledError(
        callName(data),
        "cancelled",
        CANCEL_REASONS.has(reason as CancelReason) ? reason as CancelReason : "cancelled",
      );
      break;
    }
    case "NodeLostError":
      err = new NodeLostError(str(data, "node", "unknown"));
      break;
    case "ProtocolError":
      return new ProtocolError(message);
    case "AuthError":
      return new AuthError(message);
    case "OverloadedError":
      return new OverloadedError(message);
    default:
      return new RemoteError(message, str(data, "remoteName", typeof w.tag === "string" ? w.tag : "Error"));
  }
  // Errors whose constructor derives the message: keep the sender's wording.
  if (message && err.message !== message) {
    Object.defineProperty(err, "message", { value: message, writable: true, configurable: true, enumerable: false });
  }
  return err;
}
