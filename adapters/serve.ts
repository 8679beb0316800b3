/**
 * Serving on whatever runtime this is: picks `adapters/bun`, `adapters/deno` or `adapters/node`.
 *
 * @module
 */
import type { UpgradeWebSocket } from "hono/ws";
import { createNodeApp, type NodeAppOptions } from "../transports/server.ts";
import { type FrameHandler, resolveMaxFrameBytes, type ServeFramesOptions } from "../transports/transport.ts";
import type { FetchApp, ServedApp, ServeOptions } from "./types.ts";
import { checkKnownKeys, checkOptionType, type KnownKeys } from "../core/options.ts";

/** The runtimes an adapter exists for. */
export type RuntimeName = "bun" | "deno" | "node";

/** What every runtime adapter provides. */
export interface RuntimeAdapter {
  /** hono's `upgradeWebSocket` for this runtime. */
  // deno-lint-ignore no-explicit-any
  readonly upgradeWebSocket: UpgradeWebSocket<any, any>;
  /** Puts a fetch app on a socket. */
  serve(app: FetchApp, options?: ServeOptions): Promise<ServedApp>;
  /**
   * The address a request came from (see `NodeAppOptions.peerAddress`), where the runtime tells it
   * to the app: not on Deno, whose server sits behind the adapter's connection guard.
   */
  readonly peerAddress?: (request: Request, env: unknown) => string | undefined;
}

/**
 * Which runtime this code runs on.
 *
 * @returns `"bun"`, `"deno"` or `"node"`.
 *
 * @example
 * ```ts
 * import { currentRuntime } from "./serve.ts";
 * if (!["bun", "deno", "node"].includes(currentRuntime())) throw new Error("unexpected");
 * ```
 */
export function currentRuntime(): RuntimeName {
  const g = globalThis as Record<string, unknown>;
  if (typeof g.Bun === "object" && g.Bun !== null) return "bun";
  if (typeof g.Deno === "object" && g.Deno !== null) return "deno";
  return "node";
}

/**
 * Loads the adapter for the current runtime (or the one named).
 *
 * @param runtime Force a runtime (default: the current one).
 * @returns Its `serve` and `upgradeWebSocket`.
 *
 * @example
 * ```ts
 * import { loadAdapter } from "./serve.ts";
 * const adapter = await loadAdapter();
 * if (typeof adapter.serve !== "function") throw new Error("unexpected");
 * ```
 */
export function loadAdapter(runtime: RuntimeName = currentRuntime()): Promise<RuntimeAdapter> {
  switch (runtime) {
    case "bun":
      return import("./bun/serve.ts");
    case "deno":
      return import("./deno/serve.ts");
    case "node":
      return import("./node/serve.ts");
  }
}

/**
 * Serves a hono app on the current runtime.
 *
 * @param app A hono app built with the runtime's `upgradeWebSocket` (see {@linkcode serveFrames}).
 * @param options Host, port, abort signal.
 * @returns The listening server.
 *
 * @example
 * ```ts
 * import { Hono } from "hono";
 * import { serve } from "./serve.ts";
 * const server = await serve(new Hono().get("/", (c) => c.text("hi")), { port: 0 });
 * if ((await (await fetch(server.url)).text()) !== "hi") throw new Error("unexpected");
 * await server.close();
 * ```
 */
export async function serve(app: FetchApp, options?: ServeOptions): Promise<ServedApp> {
  return (await loadAdapter()).serve(app, options);
}

/** Every option of {@linkcode serveFrames} (a typo among them is an error). */
const SERVE_FRAMES_OPTION_KEYS: KnownKeys<ServeFramesOnOptions> = {
  hostname: true,
  port: true,
  signal: true,
  maxMessageBytes: true,
  maxConnections: true,
  headersTimeoutMs: true,
  idleTimeoutMs: true,
  onAcceptError: true,
  token: true,
  maxFrameBytes: true,
  allowOrigins: true,
  allowHosts: true,
  health: true,
};

/** Options of {@linkcode serveFrames}. */
export interface ServeFramesOnOptions
  extends ServeOptions, ServeFramesOptions, Pick<NodeAppOptions, "allowOrigins" | "allowHosts" | "health"> {}

/**
 * Serves a frame handler over HTTP (`/rpc`) and WebSocket (`/ws`) on one port of this runtime.
 *
 * @param handler Gets every frame, returns the reply.
 * @param options Host, port, token, frame limit, abort signal.
 * @returns The listening server (`url` is the node's `http://` endpoint).
 *
 * @example An echo node
 * ```ts
 * import { serveFrames } from "./serve.ts";
 * import { webSocketTransport } from "../transports/websocket.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const server = await serveFrames((frame) => frame, { port: 0 });
 * const conn = await webSocketTransport.connect(server.url);
 * deepStrictEqual(await conn.request(new Uint8Array([7])), new Uint8Array([7]));
 * await conn.close();
 * await server.close();
 * ```
 */
export async function serveFrames(handler: FrameHandler, options: ServeFramesOnOptions = {}): Promise<ServedApp> {
  // a typo must not pass unnoticed: a "tokn" would serve with no token at all
  checkKnownKeys("serveFrames", options, SERVE_FRAMES_OPTION_KEYS);
  checkOptionType("serveFrames", "token", options.token, "string");
  const adapter = await loadAdapter();
  const app = createNodeApp(handler, {
    token: options.token,
    maxFrameBytes: options.maxFrameBytes,
    upgradeWebSocket: adapter.upgradeWebSocket,
    peerAddress: adapter.peerAddress,
    allowOrigins: options.allowOrigins,
    allowHosts: options.allowHosts,
    health: options.health,
    listenHost: options.hostname ?? "127.0.0.1",
  });
  // The runtime's own message limit follows the frame limit: a frame a little over it (up to twice,
  // at most 1 MiB over) still arrives and gets a clear "too-large" reply, its connection and the
  // other calls on it untouched; a larger message closes the connection (1009) unread.
  const maxFrameBytes = resolveMaxFrameBytes(options.maxFrameBytes);
  const maxMessageBytes = options.maxMessageBytes ?? maxFrameBytes + Math.min(maxFrameBytes, 1024 * 1024) + 64;
  return adapter.serve(app, { ...options, maxMessageBytes });
}
