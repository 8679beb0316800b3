/**
 * Serving a hono app on Node, with `@hono/node-server` and `ws` for WebSockets.
 *
 * @module
 */
import { serve as nodeServe, upgradeWebSocket as nodeUpgradeWebSocket } from "@hono/node-server";
import type { UpgradeWebSocket } from "hono/ws";
import type { IncomingMessage, Server } from "node:http";
import type { Socket } from "node:net";
import { WebSocketServer } from "ws";
import { guardNodeServer, heartbeat } from "./_connection_guard.ts";
import {
  addressInUse,
  connectionLimits,
  DEFAULT_MAX_MESSAGE_BYTES,
  type FetchApp,
  hostPort,
  isAddressInUse,
  type ServedApp,
  type ServeOptions,
} from "../types.ts";

/**
 * hono's `upgradeWebSocket` for Node (`@hono/node-server`); pass it to `createNodeApp`.
 *
 * @example
 * ```ts
 * import { upgradeWebSocket } from "./serve.ts";
 * if (typeof upgradeWebSocket !== "function") throw new Error("expected a function");
 * ```
 */
// deno-lint-ignore no-explicit-any
export const upgradeWebSocket: UpgradeWebSocket<any, any> = nodeUpgradeWebSocket as UpgradeWebSocket<any, any>;

/**
 * The address a request came from, as Node's server tells it (`env` is @hono/node-server's
 * `{ incoming }`, which {@linkcode serve} passes to `app.fetch`); pass it to `createNodeApp` as
 * `peerAddress`.
 *
 * @param _request The request.
 * @param env What the app's fetch got beside it.
 * @returns The client's IP address, or `undefined`.
 *
 * @example Without Node's request there is none
 * ```ts
 * import { peerAddress } from "./serve.ts";
 * if (peerAddress(new Request("http://n/"), undefined) !== undefined) throw new Error("unexpected");
 * ```
 */
export function peerAddress(_request: Request, env: unknown): string | undefined {
  return (env as { incoming?: { socket?: { remoteAddress?: string } } } | undefined)?.incoming?.socket?.remoteAddress;
}

/** How often a WebSocket is pinged; one that answers neither of two pings is ended. */
const HEARTBEAT_MS = 30_000;

/** How long close() lets open WebSockets finish what the server still sends them, ms (as on Deno). */
const CLOSE_GRACE_MS = 2000;

/** A `ws` server socket, as far as closing it goes. */
interface ClosingSocket {
  readonly readyState: number;
  close(code?: number, reason?: string): void;
  terminate(): void;
  once(event: "close", listener: () => void): unknown;
}

/**
 * Closes `clients` (code 1001) after what was sent to each, and ends those whose client has not
 * answered the close within `graceMs`.
 */
async function closeClients(clients: Iterable<ClosingSocket>, graceMs: number): Promise<void> {
  const open = [...clients].filter((c) => c.readyState < 2);
  const closed = open.map((c) => new Promise<void>((r) => c.once("close", r)));
  for (const c of open) c.close(1001, "Server closed");
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([Promise.all(closed), new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
  clearTimeout(timer);
  for (const c of clients) c.terminate();
}

/**
 * Serves `app` on Node's HTTP server, WebSockets through a `ws` server.
 *
 * @param app A hono app (or anything with `fetch`).
 * @param options Host, port (0 picks one), abort signal, WebSocket message limit.
 * @returns The listening server.
 * @throws {Error} When the port is already in use.
 *
 * @example
 * ```ts
 * import { Hono } from "hono";
 * import { serve } from "./serve.ts";
 * const server = await serve(new Hono().get("/", (c) => c.text("hi")), { port: 0 });
 * await server.close();
 * ```
 */
export function serve(app: FetchApp, options: ServeOptions = {}): Promise<ServedApp> {
  const hostname = options.hostname ?? "127.0.0.1";
  const port = options.port ?? 0;
  let limits: ReturnType<typeof connectionLimits>;
  try {
    limits = connectionLimits(options);
  } catch (err) {
    return Promise.reject(err);
  }
  const wss = new WebSocketServer({ noServer: true, maxPayload: options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES });
  return new Promise<ServedApp>((resolve, reject) => {
    const server = nodeServe({
      fetch: (req: Request, env: unknown) => app.fetch(req, env),
      hostname,
      port,
      websocket: { server: wss },
      // leave the process's Request and Response alone: by default @hono/node-server replaces them
      // with its own lightweight classes, which every other server in the process (Bun.serve, a
      // second adapter) then receives from hono and rejects
      overrideGlobalObjects: false,
    });
    // the connection cap and the header and idle timeouts are the guard's (see _connection_guard.ts:
    // Node's own are checked every 30 s at best, and not at all under Bun's or Deno's Node
    // compatibility); Node's keep-alive timeout stays as a second line
    const guard = guardNodeServer(server as unknown as Server, limits);
    wss.on("connection", (_ws: unknown, req: IncomingMessage) => guard.upgraded(req.socket as Socket));
    // a WebSocket whose peer vanished is ended after two unanswered pings (Bun and Deno ping on their
    // own; ws does not)
    const stopPings = heartbeat(wss as unknown as Parameters<typeof heartbeat>[0], HEARTBEAT_MS);
    const timed = server as unknown as { headersTimeout: number; requestTimeout: number; keepAliveTimeout: number };
    timed.headersTimeout = limits.headersTimeoutMs;
    timed.requestTimeout = Math.max(timed.requestTimeout, limits.headersTimeoutMs);
    timed.keepAliveTimeout = limits.idleTimeoutMs;
    const onListenError = (err: unknown) => {
      guard.stop();
      stopPings();
      wss.close();
      reject(isAddressInUse(err) ? addressInUse(hostname, port, err) : err);
    };
    server.once("error", onListenError);
    server.once("listening", () => {
      server.off("error", onListenError);
      // after listening, an error (a failed accept: out of descriptors) is reported, never thrown:
      // Node keeps accepting
      server.on("error", (err: unknown) => {
        try {
          options.onAcceptError?.(err);
        } catch {
          // a logging hook must not break the server
        }
      });
      const addr = server.address();
      const real = typeof addr === "object" && addr ? addr.port : port;
      let closing: Promise<void> | undefined;
      const close = (): Promise<void> =>
        closing ??= (async () => {
          guard.stop();
          stopPings();
          // the answers still on their way (a call's reply written just before close) get out
          // first: ws sends what it holds before the close frame, where terminate() drops it
          await closeClients(wss.clients, CLOSE_GRACE_MS);
          wss.close();
          await new Promise<void>((done) => {
            server.close(() => done());
            (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
          });
        })();
      options.signal?.addEventListener("abort", () => void close(), { once: true });
      resolve({ port: real, hostname, url: `http://${hostPort(hostname, real)}`, close });
    });
  });
}
