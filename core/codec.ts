/**
 * The wire codec: CBOR (cbor-x) for every frame, and errors as data rebuilt from an allow-list.
 * This file is the only importer of cbor-x.
 *
 * cbor-x is vendored (`core/_cbor_x/`, the pure-JS encoder and decoder of cbor-x 1.6.9; its one
 * change, marked "thinkagain patch", is the `HEADROOM_MODE` that {@linkcode encodeFrame} uses)
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
import { Encoder, HEADROOM_MODE } from "./_cbor_x/encode.js";
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
  headroom: 5, // FRAME_HEADROOM, for encodeFrame
});

/** Bytes free in front of a frame from {@linkcode encodeFrame}: room for a transport's frame header. */
export const FRAME_HEADROOM = 5;
/** Frames this large or larger have their headroom on offer; smaller ones are batched (copied) anyway. */
const HEADROOM_MIN_BYTES = 64 * 1024;
const headroom = new WeakSet<Uint8Array>();

/**
 * Encodes a value as one frame that a transport can send without copying it again: the
 * {@linkcode FRAME_HEADROOM} bytes in front of it are free for the transport's header (taken once
 * through {@linkcode claimHeadroom}), and the data of large typed arrays is aligned so that, once
 * the frame arrives behind that header at the start of a message, {@linkcode decode} views it where
 * it is instead of copying it. Decodes like any {@linkcode encode} output.
 *
 * @param value The value to encode.
 * @returns The CBOR bytes.
 * @throws {TypeError} When the value cannot be encoded.
 *
 * @example A large typed array, framed in place and viewed where it arrives
 * ```ts
 * import { claimHeadroom, decode, encodeFrame, FRAME_HEADROOM } from "./codec.ts";
 * const frame = encodeFrame({ x: new Float32Array(65536) });
 * const message = claimHeadroom(frame)!; // header + frame, no copy
 * message.fill(7, 0, FRAME_HEADROOM);
 * const arrived = new Uint8Array(message); // a fresh buffer, as a receiver gets it
 * const { x } = decode(arrived.subarray(FRAME_HEADROOM)) as { x: Float32Array };
 * if (x.buffer !== arrived.buffer || x.length !== 65536) throw new Error("expected a view");
 * ```
 */
export function encodeFrame(value: unknown): Uint8Array {
  let full: Uint8Array;
  try {
    full = encoder.encode(value, HEADROOM_MODE);
  } catch (cause) {
    throw new TypeError(`Cannot encode value as CBOR: ${cause instanceof Error ? cause.message : String(cause)}`, {
      cause,
    });
  }
  const frame = full.subarray(FRAME_HEADROOM);
  if (frame.byteLength >= HEADROOM_MIN_BYTES) headroom.add(frame);
  return frame;
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
 * const frame = encodeFrame({ big: new Uint8Array(70_000) });
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
 *
 * @param frame A frame at least {@linkcode FRAME_HEADROOM} bytes into its buffer.
 *
 * @example
 * ```ts
 * import { claimHeadroom, offerHeadroom } from "./codec.ts";
 * const message = new Uint8Array(5 + 70_000); // header + frame, as received
 * const frame = message.subarray(5);
 * offerHeadroom(frame);
 * if (claimHeadroom(frame)?.buffer !== message.buffer) throw new Error("expected the same bytes");
 * ```
 */
export function offerHeadroom(frame: Uint8Array): void {
  if (frame.byteLength >= HEADROOM_MIN_BYTES && frame.byteOffset >= FRAME_HEADROOM) headroom.add(frame);
}

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
