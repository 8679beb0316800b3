/**
 * What travels, and how a value that does not is refused. A value either arrives exactly as it was
 * sent or encode refuses it with a TypeError that says where it is and why: nothing changes on the
 * way without an error. {@linkcode refusalOf} holds the rules for one value (its children aside);
 * both encoders follow them, and `findRefusal` walks a value by them to name the path of the first
 * one refused (only once an encode has failed, so the path costs nothing on the way of a value that
 * travels). The encoders and `findRefusal` are in `codec_encode.ts`, beside `EncodedValue`, which
 * they let through. A refusal is marked ({@linkcode valueRefusalError}, {@linkcode isValueRefusal})
 * as the sender's mistake, never its peer's.
 *
 * @module
 */
import { Float16, MAX_BIGINT_BYTES, MAX_DEPTH, type TypedArrayConstructor } from "./codec_format.ts";
import { WireHandle } from "./codec_handle.ts";
import { isStreaming } from "./stream.ts";

/** What a value kept on a GPU answers to be read back (`adapters/webgpu`'s `READBACK`; `Symbol.for`). */
const DEVICE_READBACK = Symbol.for("thinkagain.readback");

const BIGINT_LIMIT = 1n << BigInt(8 * MAX_BIGINT_BYTES);

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
/**
 * Prototypes of the objects other than plain objects and arrays that arrive as themselves (and
 * `EncodedValue`'s, which `findRefusal` lets through before it asks {@linkcode refusalOf}).
 */
const EXACT_PROTOTYPES: ReadonlySet<object> = new Set<object>([
  Map.prototype,
  Set.prototype,
  Date.prototype,
  Uint8Array.prototype,
  WireHandle.prototype,
  ...TYPED_ARRAYS.map((Kind) => (Kind as unknown as { prototype: object }).prototype),
]);
const BOXED: readonly [new (...a: never[]) => object, string][] = [
  [String, "String"],
  [Number, "Number"],
  [Boolean, "Boolean"],
  [BigInt as unknown as new () => object, "BigInt"],
  [Symbol as unknown as new () => object, "Symbol"],
];
/**
 * Whether a string is well-formed UTF-16 (no lone surrogate), so that it has a UTF-8 form.
 *
 * @param text Any string.
 * @returns True when it can travel.
 *
 * @example
 * ```ts
 * import { wellFormed } from "./codec_refusal.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(wellFormed("héllo 🙂"), true);
 * strictEqual(wellFormed("\ud800"), false);
 * ```
 */
export const wellFormed: (text: string) => boolean =
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
  if (isStreaming(value)) {
    return `a stream (${name}) cannot travel to another process: read it where it arrives (an op that is not ` +
      "remote-capable takes it as its items come), or collect its items into an array first";
  }
  if (typeof (value as Record<symbol, unknown>)[DEVICE_READBACK] === "function") {
    // (a GpuArray: a node reads its own back as they leave it; one held here is read back by its holder)
    return `a ${name} lives on this process's GPU and cannot travel as it is: read it back first ` +
      "(await array.read()) and send the typed array, or make it on the node that uses it";
  }
  if (value instanceof RegExp) return "a RegExp cannot travel: send its source and flags instead";
  if (value instanceof WeakMap || value instanceof WeakSet) {
    return `a ${name} cannot travel: its entries cannot be read`;
  }
  return `an instance of ${name} would arrive as a plain object without its class (classes do not travel): ` +
    "send a plain object instead";
}

/**
 * Why `value` itself (its children aside) cannot travel, or `undefined` when it can: the rules both
 * encoders follow.
 *
 * @param value Any value.
 * @returns The reason, or `undefined`.
 *
 * @example
 * ```ts
 * import { refusalOf } from "./codec_refusal.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(refusalOf(new Map()), undefined);
 * strictEqual(refusalOf(Symbol("s")), "a symbol cannot travel");
 * ```
 */
export function refusalOf(value: unknown): string | undefined {
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

/** Why a value nested deeper than decode accepts is refused. */
export const TOO_DEEP: string =
  `it is nested more than ${MAX_DEPTH} levels deep (arrays, objects, maps, sets and tagged values ` +
  "such as dates and typed arrays each count)";

/** Where in a value, and why, encode refuses it (see {@linkcode findRefusal}). */
export interface ValueRefusal {
  /** The path from the value's root: `""` for the value itself, else like `[1].docs["a b"].get("k")`. */
  readonly path: string;
  /** Why it cannot travel. */
  readonly reason: string;
}

/**
 * An object key as a step of a refusal's path: `.name`, or `["any key"]` (cut at 40 characters).
 *
 * @param key The key.
 * @returns The path step.
 *
 * @example
 * ```ts
 * import { keyPath } from "./codec_refusal.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(keyPath("docs") + keyPath("a b"), '.docs["a b"]');
 * ```
 */
export function keyPath(key: string): string {
  if (key.length > 40) return `[${JSON.stringify(key.slice(0, 40))}…]`; // a path, not a copy of the data
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

/**
 * A `Map` entry as a step of a refusal's path: `.get(key)` for a key that reads back as itself in
 * a path, else `.values()[index]`.
 *
 * @param key The entry's key.
 * @param index The entry's place in the map.
 * @returns The path step.
 *
 * @example
 * ```ts
 * import { mapKeyPath } from "./codec_refusal.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(mapKeyPath("k", 0), '.get("k")');
 * strictEqual(mapKeyPath({}, 3), ".values()[3]");
 * ```
 */
export function mapKeyPath(key: unknown, index: number): string {
  return typeof key === "string"
    ? `.get(${JSON.stringify(key.length > 40 ? `${key.slice(0, 40)}…` : key)})`
    : typeof key === "number" || typeof key === "boolean" || key === null || key === undefined
    ? `.get(${String(key)})`
    : `.values()[${index}]`;
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
