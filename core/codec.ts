/**
 * The wire codec: CBOR (cbor-x) for every frame, and errors as data rebuilt from an allow-list.
 * This file is the only importer of cbor-x.
 *
 * cbor-x is vendored (`core/_cbor_x/`, the pure-JS encoder and decoder of cbor-x 1.6.9, unmodified)
 * rather than imported as `npm:cbor-x`: npm's cbor-x lists the native `cbor-extract` as an optional
 * dependency, and `cbor-extract@2.2.3` (the newest one its range admits) names platform packages at
 * 2.2.3 that were never published. npm tolerates that (and our package.json pins 2.2.2), but Deno
 * resolves the whole npm graph up front, so a Deno user importing this package from JSR with no
 * package.json fails before running any code with `Could not find npm package
 * '@cbor-extract/cbor-extract-darwin-arm64' matching '2.2.3'`. No subpath of cbor-x avoids that,
 * since the failure is in resolving the package, not in loading the native module.
 *
 * @module
 */
import { Encoder } from "./_cbor_x/encode.js";
import {
  AuthError,
  CancelledError,
  NodeLostError,
  OpExecutionError,
  PlacementError,
  ProtocolError,
  RemoteError,
  ThinkagainError,
  TimeoutError,
  TransportError,
} from "./errors.ts";
import type { TransportErrorReason } from "./errors.ts";

// useRecords: false — records (shared key structures) pay off only for many same-shaped objects per
// frame and need both sides to share structure state; our frames are small envelopes, and plain
// CBOR maps keep every frame self-contained (codec_test measures both shapes' sizes).
// mapsAsObjects + tag 259 — plain objects decode as objects, `Map`s as `Map`s.
// tagUint8Array: false — a Uint8Array is a plain CBOR byte string on every runtime.
const encoder = new Encoder({
  useRecords: false,
  mapsAsObjects: true,
  useTag259ForMaps: true,
  tagUint8Array: false,
  largeBigIntToFloat: false,
});

/**
 * Encodes a value as one CBOR frame. Typed arrays, `Map`, `Set`, `Date`, `bigint`, `undefined`
 * survive a round trip through {@linkcode decode}.
 *
 * @param value The value to encode.
 * @returns The CBOR bytes (a fresh view; safe to keep).
 * @throws {TypeError} When the value cannot be encoded (a function, a symbol).
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
  try {
    return encoder.encode(value);
  } catch (cause) {
    throw new TypeError(`Cannot encode value as CBOR: ${cause instanceof Error ? cause.message : String(cause)}`, {
      cause,
    });
  }
}

/**
 * Decodes one CBOR frame. Malformed, truncated or trailing-garbage input throws `ProtocolError`
 * (never another error type). Typed arrays may be views into `bytes`: do not reuse the buffer.
 *
 * @param bytes Exactly one CBOR item.
 * @returns The decoded value.
 * @throws {ProtocolError} When the bytes are not exactly one well-formed CBOR item.
 *
 * @example Truncated input is a ProtocolError
 * ```ts
 * import { decode, encode } from "./codec.ts";
 * import { ProtocolError } from "./errors.ts";
 * import { throws } from "node:assert/strict";
 * const bytes = encode({ hello: "world" });
 * throws(() => decode(bytes.subarray(0, 5)), ProtocolError);
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
  try {
    return encoder.decode(src);
  } catch (cause) {
    const detail = cause instanceof Error ? cause.message : String(cause);
    throw new ProtocolError(`Cannot decode frame of ${bytes.byteLength} bytes: ${detail}`);
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
      err = new OpExecutionError(str(data, "op", "unknown"), c === undefined ? new RemoteError(message) : c);
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
      err = new TimeoutError(str(data, "op", "unknown"), typeof ms === "number" ? ms : 0);
      break;
    }
    case "CancelledError":
      err = new CancelledError(str(data, "op", "unknown"));
      break;
    case "NodeLostError":
      err = new NodeLostError(str(data, "node", "unknown"));
      break;
    case "ProtocolError":
      return new ProtocolError(message);
    case "AuthError":
      return new AuthError(message);
    default:
      return new RemoteError(message, str(data, "remoteName", typeof w.tag === "string" ? w.tag : "Error"));
  }
  // Errors whose constructor derives the message: keep the sender's wording.
  if (message && err.message !== message) {
    Object.defineProperty(err, "message", { value: message, writable: true, configurable: true, enumerable: false });
  }
  return err;
}
