/**
 * Errors as data: {@linkcode errorToWire} turns anything thrown into plain data (never a stack or a
 * file path), and {@linkcode errorFromWire} rebuilds an error from it, only from an allow-list (the
 * thinkagain errors and the built-in JS errors by name); anything else becomes `RemoteError`.
 *
 * @module
 */
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
