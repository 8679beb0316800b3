// Private helpers shared by the transports (not re-exported).
import { decode, encode, errorFromWire, errorToWire } from "../core/codec.ts";
import { AuthError, TransportError } from "../core/errors.ts";
import { unrefTimer } from "../core/_runtime.ts";
import { NO_CONTEXT, runInContext } from "../core/context.ts";
import { MAX_TIMER_MS, setLongTimeout } from "../core/long_timer.ts";
import type { RequestOptions } from "./transport.ts";
import { timingSafeEqualString } from "./transport.ts";

/** Encodes whatever a handler threw as an error frame body. */
export function encodeError(err: unknown): Uint8Array {
  try {
    return encode(errorToWire(err));
  } catch {
    return encode(errorToWire(new Error("unencodable error")));
  }
}

/** Rebuilds an error from an error frame body; a malformed body is itself reported, never thrown raw. */
export function decodeError(body: Uint8Array): Error {
  try {
    return errorFromWire(decode(body));
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}

/** Listener set for `onClose`. */
export class CloseListeners {
  #listeners = new Set<(reason: TransportError) => void>();
  add(listener: (reason: TransportError) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
  emit(reason: TransportError): void {
    for (const l of [...this.#listeners]) {
      try {
        l(reason);
      } catch {
        // a listener's bug must not stop the others
      }
    }
  }
}

/** One request waiting for its reply. */
export interface Pending {
  resolve(value: Uint8Array): void;
  reject(reason: unknown): void;
  cleanup: (() => void) | undefined;
}

/**
 * Wires `signal` and `timeoutMs` to a pending request; returns the cleanup, or undefined when there
 * is nothing to clean. `drop` removes the request from its table (so a late reply is ignored).
 */
export function armRequest(
  pending: Pending,
  options: RequestOptions | undefined,
  endpoint: string,
  drop: () => void,
): (() => void) | undefined {
  if (!options) return undefined;
  const { signal, timeoutMs } = options;
  if (!signal && timeoutMs === undefined) return undefined;
  let stopTimer: (() => void) | undefined;
  const onAbort = () => {
    cleanup();
    drop();
    pending.reject(signal!.reason);
  };
  const cleanup = () => {
    stopTimer?.();
    signal?.removeEventListener("abort", onAbort);
  };
  if (signal?.aborted) {
    // already given up on: never sent, never waited for
    drop();
    pending.reject(signal.reason);
    return undefined;
  }
  if (timeoutMs !== undefined) {
    // a long timer: 2^31 ms or more must not fire at once, as a plain setTimeout does; Infinity: none
    stopTimer = setLongTimeout(() => {
      cleanup();
      drop();
      pending.reject(new TransportError("io", `No reply from ${endpoint} within ${timeoutMs} ms`, endpoint));
    }, timeoutMs);
  }
  signal?.addEventListener("abort", onAbort, { once: true });
  return cleanup;
}

/** Checks a bearer token; `undefined` expected means no auth. */
export function tokenMatches(presented: string | undefined, expected: string | undefined): boolean {
  if (expected === undefined) return true;
  if (presented === undefined) return false;
  return timingSafeEqualString(presented, expected);
}

/** The error a client sees when the node refused its token (never quoting the token). */
export function authRefused(endpoint: string, hadToken: boolean): AuthError {
  return new AuthError(
    `Connection to ${endpoint} refused: ${hadToken ? "wrong token" : "the node requires a token and none was given"}`,
  );
}

/** Subprotocol carrying the frame format version; the server always selects it. */
export const WS_PROTOCOL = "thinkagain.v1";
/** Prefix of the subprotocol entry carrying the token (base64url of its UTF-8 bytes). */
export const WS_TOKEN_PREFIX = "thinkagain.token.";

/** base64url without padding (valid as a `Sec-WebSocket-Protocol` token). */
export function toBase64Url(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** Inverse of {@linkcode toBase64Url}; undefined when malformed. */
export function fromBase64Url(text: string): string | undefined {
  try {
    const bin = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
}

let nextConnectionId = 1;
/** A process-unique connection id. */
export function newConnectionId(): number {
  return nextConnectionId++;
}

/**
 * What went wrong, in words, with the causes it wraps: Deno's `fetch` throws "fetch failed" and
 * keeps the reason ("tcp connect error: Connection refused (os error 111)") in `cause`.
 *
 * @param err Anything thrown.
 * @returns Its message, then each cause's message not already in it, joined by ": ".
 */
export function describeFailure(err: unknown): string {
  let text = err instanceof Error ? err.message || err.name : String(err);
  let cause = err instanceof Error ? err.cause : undefined;
  for (let depth = 0; cause !== undefined && cause !== null && depth < 4; depth++) {
    const more = cause instanceof Error ? cause.message : String(cause);
    if (more !== "" && !text.includes(more)) text += `: ${more}`;
    cause = cause instanceof Error ? cause.cause : undefined;
  }
  return text;
}

/**
 * The error of a frame the node refuses for its size (an HTTP request's body or a WebSocket frame).
 *
 * @example
 * ```ts
 * import { tooLarge } from "./_common.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(tooLarge(2048, 1024).reason, "too-large");
 * ```
 */
export function tooLarge(bytes: number, limit: number): TransportError {
  return new TransportError("too-large", `Node refused a frame of ${bytes} bytes: its limit is ${limit} bytes`);
}

/**
 * The error of a reply the node will not send: over its own frame limit (a call's result too large
 * to travel, said as such, not as a frame the caller sent).
 *
 * @param bytes The reply's size.
 * @param limit The node's frame limit.
 * @returns A `TransportError` with reason `"too-large"`.
 *
 * @example
 * ```ts
 * import { replyTooLarge } from "./_common.ts";
 * const e = replyTooLarge(2_097_180, 1_048_576);
 * if (e.reason !== "too-large" || !e.message.startsWith("The node's reply of 2097180 bytes")) throw e;
 * ```
 */
export function replyTooLarge(bytes: number, limit: number): TransportError {
  return new TransportError(
    "too-large",
    `The node's reply of ${bytes} bytes is over its frame limit of ${limit} bytes (--max-frame-bytes, ` +
      "maxFrameBytes): the call's result is too large to send; raise the node's limit, or pass the result to " +
      "calls on that node instead of awaiting it here",
  );
}

/** The error of a request on a connection that was closed by its owner. */
export function closedError(endpoint: string): TransportError {
  return new TransportError("closed", `Connection to ${endpoint} is closed`, endpoint);
}

/**
 * Parses a node endpoint for one transport: the other transport's schemes map onto this one's
 * (`ws:`↔`http:`, `wss:`↔`https:`); anything else is a TypeError naming the endpoint.
 */
export function endpointUrl(endpoint: string, transport: "HTTP" | "WebSocket"): URL {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new TypeError(`Cannot connect over ${transport} to ${endpoint}: not a URL`);
  }
  const [plain, secure, otherPlain, otherSecure] = transport === "HTTP"
    ? ["http:", "https:", "ws:", "wss:"]
    : ["ws:", "wss:", "http:", "https:"];
  if (url.protocol === otherPlain) url.protocol = plain;
  else if (url.protocol === otherSecure) url.protocol = secure;
  else if (url.protocol !== plain && url.protocol !== secure) {
    const expected = transport === "HTTP" ? "http://, https://, ws:// or wss://" : "ws://, wss://, http:// or https://";
    throw new TypeError(`Cannot connect over ${transport} to ${endpoint}: expected ${expected}`);
  }
  return url;
}

/**
 * A repeating timer that does not keep the process alive (Bun and Node: `unref()`; Deno:
 * `Deno.unrefTimer`). An interval past 2^31 - 1 ms (the longest one timer holds) runs at that:
 * `setInterval` itself would run it every millisecond.
 */
export function backgroundInterval(fn: () => void, ms: number): ReturnType<typeof setInterval> {
  const every = Math.min(ms, MAX_TIMER_MS);
  // made outside any run context: a timer keeps the context it was made in alive, and with it the
  // task that context names (and that task's result, which may be an object kept on a node)
  const t = runInContext(NO_CONTEXT, () => setInterval(fn, every));
  unrefTimer(t);
  return t;
}

/**
 * Reads a stream to its end, failing (and cancelling it) as soon as it passes `limit` bytes, so no
 * more than that is ever buffered.
 */
export async function readAtMost(
  stream: ReadableStream<Uint8Array>,
  limit: number,
  tooLarge: (total: number) => Error,
): Promise<Uint8Array> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      await reader.cancel().catch(() => {});
      throw tooLarge(total);
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/**
 * 96 random bits as 24 hex digits: ids that travel in every call (instance and lease ids) stay
 * within the decoder's short-text path, which a UUID's 36 characters are not.
 *
 * @returns A new id.
 *
 * @example
 * ```ts
 * import { randomId } from "./_common.ts";
 * import { match } from "node:assert/strict";
 * match(randomId(), /^[0-9a-f]{24}$/);
 * ```
 */
export function randomId(): string {
  let s = "";
  for (const b of crypto.getRandomValues(new Uint8Array(12))) s += (b < 16 ? "0" : "") + b.toString(16);
  return s;
}
