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
}

/** A listening server. */
export interface ServedApp {
  /** The port really bound (the chosen one when `port` was 0). */
  readonly port: number;
  /** The interface listened on. */
  readonly hostname: string;
  /** `http://hostname:port`. */
  readonly url: string;
  /** Stops accepting, closes open connections, resolves when the port is free. */
  close(): Promise<void>;
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
  return new Error(`Cannot listen on ${hostname}:${port}: the address is already in use by another process or server`, {
    cause,
  });
}

/** Whether an error from a runtime's listen call means "address in use". */
export function isAddressInUse(err: unknown): boolean {
  if (typeof err !== "object" || err === null) return false;
  const e = err as { code?: unknown; name?: unknown; message?: unknown };
  return e.code === "EADDRINUSE" || e.name === "AddrInUse" ||
    (typeof e.message === "string" && /address.*in use|EADDRINUSE/i.test(e.message));
}
