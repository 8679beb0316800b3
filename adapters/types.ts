/**
 * Types shared by the per-runtime `serve` adapters.
 *
 * @module
 */

/** Anything with a Web-standard `fetch` entry point (a hono app). */
export interface FetchApp {
  /** Answers one request; `env` is runtime-specific (Bun passes its server). */
  fetch(request: Request, env?: unknown): Response | Promise<Response>;
}

/** Options of every adapter's `serve`. */
export interface ServeOptions {
  /** Interface to listen on (default `127.0.0.1`). */
  hostname?: string;
  /** Port to listen on; `0` picks a free one (default `0`). */
  port?: number;
  /** Aborting stops the server, like `close()`. */
  signal?: AbortSignal;
  /** Largest WebSocket message the runtime may buffer, in bytes (default 64 MiB plus the frame header). */
  maxMessageBytes?: number;
  /**
   * Most connections open at once (default {@linkcode DEFAULT_MAX_CONNECTIONS}). On Deno and Node a
   * connection past it takes the place of the oldest one with no request in progress (and is closed
   * at once when every connection is busy). Bun's server keeps no such
   * count: there its idle and header timeouts bound what idle connections hold.
   */
  maxConnections?: number;
  /**
   * How long a connection may take to send a request's headers, in ms (default
   * {@linkcode DEFAULT_HEADERS_TIMEOUT_MS}): one that sends nothing, or drips its headers, is
   * closed. (Bun applies its own, about 10 s.)
   */
  headersTimeoutMs?: number;
  /**
   * How long a connection may stay open with no request in progress, in ms (default
   * {@linkcode DEFAULT_IDLE_TIMEOUT_MS}). WebSockets are not idle connections: their own pings
   * decide when a peer is gone.
   */
  idleTimeoutMs?: number;
  /**
   * Told when accepting a connection failed (e.g. the process ran out of file descriptors); the
   * server keeps accepting, backing off meanwhile.
   */
  onAcceptError?: (error: unknown) => void;
}

/** Default of {@linkcode ServeOptions.maxConnections}. */
export const DEFAULT_MAX_CONNECTIONS: number = 4096;

/** Default of {@linkcode ServeOptions.headersTimeoutMs}. */
export const DEFAULT_HEADERS_TIMEOUT_MS: number = 10_000;

/** Default of {@linkcode ServeOptions.idleTimeoutMs}. */
export const DEFAULT_IDLE_TIMEOUT_MS: number = 30_000;

/** The connection limits of {@linkcode ServeOptions}, defaults applied. */
export interface ConnectionLimits {
  /** Most connections open at once. */
  readonly maxConnections: number;
  /** How long a request's headers may take, in ms. */
  readonly headersTimeoutMs: number;
  /** How long a connection may stay open with no request in progress, in ms. */
  readonly idleTimeoutMs: number;
}

/**
 * Validates the connection limits of {@linkcode ServeOptions} and applies their defaults.
 *
 * @param options The serve options.
 * @returns The limits to use.
 * @throws {RangeError} When one is not a positive integer.
 *
 * @example
 * ```ts
 * import { connectionLimits, DEFAULT_MAX_CONNECTIONS } from "./types.ts";
 * import { strictEqual, throws } from "node:assert/strict";
 * strictEqual(connectionLimits({}).maxConnections, DEFAULT_MAX_CONNECTIONS);
 * strictEqual(connectionLimits({ idleTimeoutMs: 500 }).idleTimeoutMs, 500);
 * throws(() => connectionLimits({ maxConnections: 0 }), RangeError);
 * ```
 */
export function connectionLimits(options: ServeOptions): ConnectionLimits {
  const positive = (name: string, v: number | undefined, dflt: number): number => {
    if (v === undefined) return dflt;
    if (!Number.isSafeInteger(v) || v <= 0) throw new RangeError(`${name} must be a positive integer, found ${v}`);
    return v;
  };
  return {
    maxConnections: positive("maxConnections", options.maxConnections, DEFAULT_MAX_CONNECTIONS),
    headersTimeoutMs: positive("headersTimeoutMs", options.headersTimeoutMs, DEFAULT_HEADERS_TIMEOUT_MS),
    idleTimeoutMs: positive("idleTimeoutMs", options.idleTimeoutMs, DEFAULT_IDLE_TIMEOUT_MS),
  };
}

/** A listening server. */
export interface ServedApp {
  /** The port really bound (the chosen one when `port` was 0). */
  readonly port: number;
  /** The interface listened on. */
  readonly hostname: string;
  /** `http://hostname:port` (an IPv6 address in brackets: `http://[::1]:7070`). */
  readonly url: string;
  /** Stops accepting, closes open connections, resolves when the port is free. */
  close(): Promise<void>;
}

/**
 * `hostname:port` as a URL writes it (`http://${hostPort(h, p)}`): an IPv6 address in brackets,
 * `[::1]:7070`, since `::1:7070` is no URL's host and port.
 *
 * @param hostname The interface (`127.0.0.1`, `::1`, `[::1]`, `localhost`).
 * @param port The port.
 * @returns The host and port.
 *
 * @example
 * ```ts
 * import { hostPort } from "./types.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(hostPort("::1", 7070), "[::1]:7070");
 * strictEqual(hostPort("[::1]", 7070), "[::1]:7070");
 * strictEqual(hostPort("127.0.0.1", 7070), "127.0.0.1:7070");
 * ```
 */
export function hostPort(hostname: string, port: number): string {
  return `${hostname.includes(":") && !hostname.startsWith("[") ? `[${hostname}]` : hostname}:${port}`;
}

/** Default largest WebSocket message: the 64 MiB frame limit plus header room. */
export const DEFAULT_MAX_MESSAGE_BYTES: number = 64 * 1024 * 1024 + 64;

/**
 * The error for a port that is already bound (never share it silently).
 *
 * @param hostname The interface.
 * @param port The port asked for.
 * @param cause The runtime's error.
 * @returns An Error saying what was attempted and what was found.
 *
 * @example
 * ```ts
 * import { addressInUse } from "./types.ts";
 * import { ok } from "node:assert/strict";
 * ok(addressInUse("127.0.0.1", 7070, null).message.includes("127.0.0.1:7070"));
 * ```
 */
export function addressInUse(hostname: string, port: number, cause: unknown): Error {
  return new Error(
    `Cannot listen on ${hostPort(hostname, port)}: the address is already in use by another process or server`,
    {
      cause,
    },
  );
}

/** Whether an error from a runtime's listen call means "address in use". */
export function isAddressInUse(err: unknown): boolean {
  if (typeof err !== "object" || err === null) return false;
  const e = err as { code?: unknown; name?: unknown; message?: unknown };
  return e.code === "EADDRINUSE" || e.name === "AddrInUse" ||
    (typeof e.message === "string" && /address.*in use|EADDRINUSE/i.test(e.message));
}
