/**
 * Serving a hono app on Bun, with hono/bun's WebSocket support.
 *
 * @module
 */
import { upgradeWebSocket as bunUpgradeWebSocket, websocket } from "hono/bun";
import { type UpgradeWebSocket, WSContext, type WSEvents } from "hono/ws";
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
 * hono's `upgradeWebSocket` for Bun; pass it to `createNodeApp`.
 *
 * @example
 * ```ts ignore
 * import { upgradeWebSocket } from "./serve.ts";
 * if (typeof upgradeWebSocket !== "function") throw new Error("expected a function");
 * ```
 */
// deno-lint-ignore no-explicit-any
export const upgradeWebSocket: UpgradeWebSocket<any, any> = bunUpgradeWebSocket as UpgradeWebSocket<any, any>;

/**
 * The address a request came from, as Bun's server tells it (`env` is the server, which
 * {@linkcode serve} passes to `app.fetch`); pass it to `createNodeApp` as `peerAddress`.
 *
 * @param request The request.
 * @param env What the app's fetch got beside it.
 * @returns The client's IP address, or `undefined`.
 *
 * @example Without Bun's server there is none (Bun only: this module loads hono's Bun adapter)
 * ```ts ignore
 * import { peerAddress } from "./serve.ts";
 * if (peerAddress(new Request("http://n/"), undefined) !== undefined) throw new Error("unexpected");
 * ```
 */
export function peerAddress(request: Request, env: unknown): string | undefined {
  const server = env as { requestIP?: (r: Request) => { address?: string } | null } | undefined;
  return typeof server?.requestIP === "function" ? server.requestIP(request)?.address : undefined;
}

/** The answer past the connection cap: 503, saying which cap and how many are in use. */
function tooManyConnections(inUse: number, max: number): Response {
  return new Response(
    `Node refused a connection: ${inUse} connections are in use (requests in progress and WebSockets), ` +
      `its limit (maxConnections ${max}, --max-connections)`,
    { status: 503, headers: { "retry-after": "1", "content-type": "text/plain; charset=utf-8" } },
  );
}

/** The node app's connection events (`transports/ws_connection.ts`' `WsAppEvents`), as far as this adapter calls them. */
type BunAppEvents = WSEvents & {
  onDrain?: () => void;
  onPong?: (data: Uint8Array) => void;
  deliversPongs?: boolean;
  takesViews?: boolean;
  allSent?: () => boolean;
};

/** Bun's server socket, as far as the message fast path and closing below use it. */
interface BunSocket {
  readonly readyState: number;
  /** Bytes written to it that the kernel has not taken yet. */
  getBufferedAmount(): number;
  /** How binary messages come: a Buffer by default, or a plain Uint8Array ("uint8array"). */
  binaryType?: string;
  data?: { events?: BunAppEvents; url?: URL; protocol?: string; context?: WSContext };
  send(data: unknown, compress?: boolean): unknown;
  close(code?: number, reason?: string): void;
}

/**
 * One message to the app's `onMessage`, as hono/bun does it, less its cost per message: hono/bun
 * makes a `MessageEvent` and a `WSContext` (with a `URL`) for every message, which a flood of small
 * messages pays thousands of times in one read, holding the node's event loop beyond the app's own
 * work (issue 11's soak; BENCHMARKS.md, Soak under attack, tenth session).
 * Here the event is `{ data }` and the context is made once per connection.
 */
function onBunMessage(ws: BunSocket, message: string | Uint8Array): void {
  const data = ws.data;
  const events = data?.events;
  if (data === undefined || events?.onMessage === undefined) return;
  const context = data.context ??= new WSContext({
    send: (source, options) => void ws.send(source, options?.compress),
    raw: ws,
    get readyState() {
      return ws.readyState as 0 | 1 | 2 | 3;
    },
    url: data.url ?? null,
    protocol: data.protocol ?? null,
    close: (code, reason) => ws.close(code, reason),
  });
  // the event's data: an ArrayBuffer for a binary message, as hono/bun gives it, or the message
  // itself to an app that takes views (a plain Uint8Array then: see `open`)
  const evt = {
    data: typeof message === "string" || events.takesViews === true ? message : message.buffer,
  } as MessageEvent;
  const failed = (error: unknown) => {
    if (events.onError === undefined) throw error;
    const event = new Event("error") as Event & { error?: unknown };
    event.error = error;
    events.onError(event, context);
  };
  try {
    const result = events.onMessage(evt, context) as unknown;
    if (result instanceof Promise) result.catch(failed);
  } catch (error) {
    failed(error);
  }
}

interface BunServer {
  port: number;
  hostname: string;
  stop(closeActiveConnections?: boolean): Promise<void> | void;
}
interface BunLike {
  serve(options: Record<string, unknown>): BunServer;
}

/**
 * Serves `app` with `Bun.serve`.
 *
 * @param app A hono app (or anything with `fetch`).
 * @param options Host, port (0 picks one), abort signal, WebSocket message limit.
 * @returns The listening server.
 * @throws {Error} When the port is already in use.
 *
 * @example
 * ```ts ignore
 * import { Hono } from "hono";
 * import { serve } from "./serve.ts";
 * const server = await serve(new Hono().get("/", (c) => c.text("hi")), { port: 0 });
 * if ((await (await fetch(server.url)).text()) !== "hi") throw new Error("unexpected");
 * await server.close();
 * ```
 */
export function serve(app: FetchApp, options: ServeOptions = {}): Promise<ServedApp> {
  const Bun = (globalThis as unknown as { Bun?: BunLike }).Bun;
  if (!Bun) return Promise.reject(new Error("adapters/bun/serve.ts needs the Bun runtime"));
  const hostname = options.hostname ?? "127.0.0.1";
  const port = options.port ?? 0;
  let idleTimeoutMs: number;
  let maxConnections: number;
  try {
    ({ idleTimeoutMs, maxConnections } = connectionLimits(options));
  } catch (err) {
    return Promise.reject(err);
  }
  // the open WebSockets, so that closing lets each send what the node wrote to it first
  const sockets = new Set<BunSocket>();
  let server: BunServer;
  try {
    server = Bun.serve({
      hostname,
      port,
      reusePort: false,
      // in seconds, at most 255; Bun closes a connection that sends no complete head in about 10 s
      // on its own, and keeps accepting after an accept error
      idleTimeout: Math.min(255, Math.max(1, Math.ceil(idleTimeoutMs / 1000))),
      // the connection cap: Bun tells no count of idle sockets (idleTimeout closes those), so the
      // cap holds for the connections in use, requests in progress and open WebSockets together
      fetch: (req: Request, srv: unknown) => {
        const s = srv as { pendingRequests?: number; pendingWebSockets?: number };
        const inUse = (s.pendingRequests ?? 1) - 1 + (s.pendingWebSockets ?? 0); // this request is pending too
        if (inUse >= maxConnections) return tooManyConnections(inUse, maxConnections);
        return app.fetch(req, srv);
      },
      websocket: {
        ...websocket,
        message: onBunMessage,
        open: (ws: BunSocket) => {
          sockets.add(ws);
          // this runtime reports every pong (below): the app may count on them
          const events = ws.data?.events;
          if (events?.onPong !== undefined) events.deliversPongs = true;
          // an app that takes views gets each binary message as a plain Uint8Array (Bun's default,
          // a Buffer, would need the ArrayBuffer hono gives made for it: see onBunMessage)
          if (events?.takesViews === true) ws.binaryType = "uint8array";
          (websocket.open as (ws: BunSocket) => void)(ws);
        },
        close: (ws: BunSocket, code: number, reason: string) => {
          sockets.delete(ws);
          (websocket.close as (ws: BunSocket, code: number, reason: string) => void)(ws, code, reason);
        },
        pong: (ws: BunSocket, data: Uint8Array) => ws.data?.events?.onPong?.(data),
        // a socket over its backpressure limit takes no more messages until this: the app's
        // connection (transports/server.ts) sends what waited
        drain: (ws: { data?: { events?: { onDrain?: () => void } } }) => ws.data?.events?.onDrain?.(),
        maxPayloadLength: options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
      },
    });
  } catch (err) {
    return Promise.reject(isAddressInUse(err) ? addressInUse(hostname, port, err) : err);
  }
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    closing ??= (async () => {
      // no new connections; those open stay (Bun resolves this once they have all closed)
      const ended = Promise.resolve(server.stop(false)).catch(() => {});
      // the answers still on their way (a call's reply written just before close) get out first:
      // stop(true) would drop them with their connections, as a crash does
      await closeWhenSent(sockets, ended, CLOSE_GRACE_MS);
      await server.stop(true); // what is left past the grace (a client that reads nothing, a request)
    })();
  options.signal?.addEventListener("abort", () => void close(), { once: true });
  return Promise.resolve({ port: server.port, hostname, url: `http://${hostPort(hostname, server.port)}`, close });
}

/** How long close() lets open connections finish what the server still sends them, ms (as on Deno). */
const CLOSE_GRACE_MS = 2000;

/**
 * Closes each of `sockets` (code 1001) once what the node wrote to it has left: Bun sends what its
 * buffer holds before the close frame, but the messages the node's send queue holds while Bun's
 * buffer is over its limit (`transports/ws_send_queue.ts`) go only at its drain, so a socket is
 * closed once its buffer is empty (and the queue with it). Resolves once `ended` does (requests
 * in progress answered) and every socket closed, or after `graceMs`.
 */
async function closeWhenSent(sockets: Set<BunSocket>, ended: Promise<void>, graceMs: number): Promise<void> {
  let over = false;
  const timer = setTimeout(() => (over = true), graceMs);
  // (stop(false) may resolve while WebSockets are still open: those are waited for by their count)
  let done = false;
  void ended.then(() => (done = true));
  try {
    // (a turn first, and between looks: a large array of a reply goes a turn after its head)
    for (let pollMs = 1; !(done && sockets.size === 0) && !over; pollMs = Math.min(2 * pollMs, 32)) {
      await new Promise((r) => setTimeout(r, pollMs));
      for (const ws of sockets) {
        // (the app's own queue too: Bun's buffer is empty while a reply waits there for a turn)
        const sent = ws.data?.events?.allSent?.() ?? true;
        if (ws.readyState === 1 && sent && ws.getBufferedAmount() === 0) ws.close(1001, "Server closed");
      }
    }
  } finally {
    clearTimeout(timer);
  }
}
