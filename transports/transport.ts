/**
 * The transport contract: a transport moves opaque frames (bytes) between a client and a node.
 * It knows nothing of ops, refs or envelopes; `core/` encodes those into frames.
 *
 * @module
 */
import { frameBytes } from "../core/codec.ts";
import { TransportError } from "../core/errors.ts";

/** Names of the built-in transports. */
export type TransportName = "in_memory" | "http" | "websocket" | "nats";

/** Default largest frame, in bytes, a transport sends or accepts (64 MiB). */
export const DEFAULT_MAX_FRAME_BYTES: number = 64 * 1024 * 1024;

/** Options of one request. */
export interface RequestOptions {
  /** Aborting rejects the request with the signal's reason; a late reply is dropped. */
  signal?: AbortSignal;
  /** Reject with `TransportError("io")` when no reply came within this many milliseconds. */
  timeoutMs?: number;
  /**
   * Sent at once, past a transport's bound on requests under way (a keepalive ping, a hello:
   * waiting behind long calls, it would take a live node for lost).
   */
  urgent?: boolean;
}

/**
 * A client's connection to one node. Requests are multiplexed: many may be in flight at once.
 * When the peer goes away, pending requests reject with `TransportError("closed")`, `onClose`
 * listeners run, and the next request connects again (transports that hold a connection).
 * After `close()`, every request rejects with `TransportError("closed")`.
 */
export interface TransportConnection {
  /** The endpoint this connection talks to. */
  readonly endpoint: string;
  /** Sends one frame and resolves with the peer's reply frame; rejects with the peer's error. */
  request(frame: Uint8Array, options?: RequestOptions): Promise<Uint8Array>;
  /** Sends a one-way frame (e.g. cancel); no reply. Dropped when the connection is closed. */
  notify(frame: Uint8Array): void;
  /** Closes the connection; pending requests reject with `TransportError("closed")`. */
  close(): Promise<void>;
  /** True once `close()` was called. */
  readonly closed: boolean;
  /** Runs `listener` each time the underlying connection drops or is closed; returns an unsubscribe. */
  onClose(listener: (reason: TransportError) => void): () => void;
}

/** Options of {@linkcode Transport.connect}. */
export interface ConnectOptions {
  /** Bearer token the node was started with; a missing or wrong token is refused with `AuthError`. */
  token?: string;
  /** Largest frame to send or accept, in bytes (default {@linkcode DEFAULT_MAX_FRAME_BYTES}). */
  maxFrameBytes?: number;
  /** How long opening a connection may take before `TransportError("unreachable")` (default 10 s). */
  connectTimeoutMs?: number;
}

/** A way to reach nodes: picks a connection for an endpoint. */
export interface Transport {
  /** Which transport this is. */
  readonly name: TransportName;
  /** Opens a connection to `endpoint`; rejects with `TransportError("unreachable")` or `AuthError`. */
  connect(endpoint: string, options?: ConnectOptions): Promise<TransportConnection>;
}

/** Who sent a frame, as seen by the server. */
export interface PeerInfo {
  /** The transport the frame arrived on. */
  readonly transport: TransportName;
  /** A number unique per connection in this process (per request for HTTP). */
  readonly connectionId: number;
  /** True for one-way frames (`notify`): the handler's return value is dropped. */
  readonly oneWay: boolean;
  /**
   * Aborted when the connection the frame came on is gone (for HTTP: the client went away before
   * its reply), so that work nobody can receive the result of stops.
   */
  readonly signal?: AbortSignal;
  /**
   * Who sent the frame, as its client names itself where no connection says it (HTTP: the
   * `x-thinkagain-caller` header, one per client connection), so that a node's resident instances
   * serve HTTP drivers in turn as they do WebSocket connections, and so that a client's call ids are
   * its own (`node_calls.ts`: a cancel reaches only calls made with the same name). Not
   * authenticated: the HTTP transport makes it 128 random bits, which no other client can guess.
   */
  readonly caller?: string;
  /**
   * The address (IP) the frame came from, where the runtime's adapter tells it (`PeerInfo.caller`
   * aside, HTTP requests that name no caller take turns by it). Not authenticated either.
   */
  readonly address?: string;
  /**
   * Set where the server lets in only connections that presented its token (every frame then comes
   * from one that did): whether that token is `token`, compared in constant time. A node gives its
   * own token to the endpoints a driver declares only when the driver presented that same token,
   * so it never goes to an endpoint named by someone who does not already hold it.
   */
  readonly holdsToken?: (token: string) => boolean;
  /**
   * The largest frame the server sends on this connection (its `maxFrameBytes`), where the
   * transport says: a node cuts a stream's chunks to fit it (`stream_outlet.ts`).
   */
  readonly maxFrameBytes?: number;
}

/**
 * The server side, shared by every transport: gets one frame, returns the reply frame. Throwing (or
 * rejecting) sends an error reply that the client's `request` rejects with (rebuilt through
 * `core/codec.ts`'s allow-list). For one-way frames the result is ignored.
 */
export type FrameHandler = (
  frame: Uint8Array,
  peer: PeerInfo,
) => Promise<Uint8Array | undefined> | Uint8Array | undefined;

/** Options a server side takes, on every transport. */
export interface ServeFramesOptions {
  /** Require this bearer token from every connection (compared in constant time). */
  token?: string;
  /** Largest frame accepted or sent, in bytes (default {@linkcode DEFAULT_MAX_FRAME_BYTES}). */
  maxFrameBytes?: number;
}

/**
 * Compares two strings in time that depends only on their lengths, not on where they differ.
 *
 * @param a A string (e.g. the presented token).
 * @param b A string (e.g. the configured token).
 * @returns Whether they are equal.
 *
 * @example
 * ```ts
 * import { timingSafeEqualString } from "./transport.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(timingSafeEqualString("s3cret", "s3cret"), true);
 * strictEqual(timingSafeEqualString("s3cret", "s3creT"), false);
 * ```
 */
export function timingSafeEqualString(a: string, b: string): boolean {
  const x = textEncoder.encode(a);
  const y = textEncoder.encode(b);
  // Always walk the configured length so the time does not reveal the position of a mismatch.
  let diff = x.length ^ y.length;
  for (let i = 0; i < y.length; i++) diff |= (x[i % (x.length || 1)] ?? 0) ^ y[i];
  return diff === 0;
}

const textEncoder = new TextEncoder();

/**
 * Checks a frame against the size limit before sending it.
 *
 * @param frame The frame about to be sent.
 * @param maxFrameBytes The limit.
 * @param endpoint The peer, for the message.
 * @returns A `TransportError("too-large")` to reject with, or `undefined` when the frame fits.
 *
 * @example
 * ```ts
 * import { checkFrameSize } from "./transport.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(checkFrameSize(new Uint8Array(10), 5, "mem://a")?.reason, "too-large");
 * strictEqual(checkFrameSize(new Uint8Array(3), 5, "mem://a"), undefined);
 * ```
 */
export function checkFrameSize(frame: Uint8Array, maxFrameBytes: number, endpoint: string): TransportError | undefined {
  const bytes = frameBytes(frame); // its segments too
  if (bytes <= maxFrameBytes) return undefined;
  return new TransportError(
    "too-large",
    `Cannot send a frame of ${bytes} bytes to ${endpoint}: the limit is ${maxFrameBytes} bytes`,
    endpoint,
  );
}

/**
 * Validates `maxFrameBytes` at the public boundary.
 *
 * @param value The option as given.
 * @returns The limit to use.
 * @throws {RangeError} When it is not a positive integer.
 *
 * @example
 * ```ts
 * import { DEFAULT_MAX_FRAME_BYTES, resolveMaxFrameBytes } from "./transport.ts";
 * import { strictEqual, throws } from "node:assert/strict";
 * strictEqual(resolveMaxFrameBytes(undefined), DEFAULT_MAX_FRAME_BYTES);
 * throws(() => resolveMaxFrameBytes(-1), RangeError);
 * ```
 */
export function resolveMaxFrameBytes(value: number | undefined): number {
  if (value === undefined) return DEFAULT_MAX_FRAME_BYTES;
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new RangeError(`maxFrameBytes must be a positive integer, found ${value}`);
  }
  return value;
}
