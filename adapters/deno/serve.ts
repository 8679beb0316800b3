/**
 * Serving a hono app on Deno, with hono/deno's WebSocket support.
 *
 * @module
 */
import { upgradeWebSocket as denoUpgradeWebSocket } from "hono/deno";
import type { UpgradeWebSocket } from "hono/ws";
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
import type { Context } from "hono";
import type { WSContext, WSEvents } from "hono/ws";
import type { WsAppEvents } from "../../transports/ws_connection.ts";
import { WS_PROTOCOL } from "../../transports/_common.ts";
import {
  type DenoConn,
  type DenoListener,
  guardConnections,
  holdRelayInput,
  RELAY_TOKEN_HEADER,
  unboundRelay,
  watchRelayReads,
} from "./_connection_guard.ts";

/**
 * hono's `upgradeWebSocket` for Deno; pass it to `createNodeApp`.
 *
 * @example
 * ```ts
 * import { upgradeWebSocket } from "./serve.ts";
 * if (typeof upgradeWebSocket !== "function") throw new Error("expected a function");
 * ```
 */
// deno-lint-ignore no-explicit-any
export const upgradeWebSocket: UpgradeWebSocket<any, any> =
  ((createEvents: never, options?: object) =>
    selectSubprotocol(
      // Deno.upgradeWebSocket is asked to select no subprotocol: it finds the one hono names only in
      // a list that ", " separates, and Node's ws client (a Node 20 driver's) separates with ","
      // deno-lint-ignore no-explicit-any
      (honoUpgradeWebSocket as any)(createEvents, { ...options, protocol: undefined }),
      // deno-lint-ignore no-explicit-any
    )) as unknown as UpgradeWebSocket<any, any>;

/**
 * Selects `thinkagain.v1` (the app refused the upgrade unless the client offered it), or else the
 * first subprotocol offered, on the 101 that Deno made without one.
 */
function selectSubprotocol(
  upgrade: (c: Context, next: () => Promise<void>) => Promise<Response | void>,
): (c: Context, next: () => Promise<void>) => Promise<Response | void> {
  return async (c, next) => {
    // (read first: once Deno has upgraded it, the request has no headers to read)
    const offered = c.req.header("sec-websocket-protocol")?.split(",").map((p) => p.trim()) ?? [];
    const res = await upgrade(c, next);
    const selected = offered.includes(WS_PROTOCOL) ? WS_PROTOCOL : offered[0];
    if (res instanceof Response && res.status === 101 && selected) res.headers.set("sec-websocket-protocol", selected);
    return res;
  };
}

/** hono/deno's `upgradeWebSocket`, with the relay's hooks (see `_connection_guard.ts`). */
// deno-lint-ignore no-explicit-any
const honoUpgradeWebSocket: UpgradeWebSocket<any, any> =
  ((createEvents: (c: Context) => WSEvents | Promise<WSEvents>, options?: unknown) =>
    // deno-lint-ignore no-explicit-any
    (denoUpgradeWebSocket as any)(async (c: Context) => {
      const events = await createEvents(c);
      // the connection guard's relay named the connection: as the app closes the WebSocket, the
      // relay stops holding back what the node sends, so that its close frame gets out
      const token = c.req.header(RELAY_TOKEN_HEADER);
      if (token === undefined) return events;
      // and it tells how much of the node's replies the client has read (Deno's socket reports no
      // pongs): the node stops making replies for a client that does not read them
      const app = events as WSEvents & Partial<Pick<WsAppEvents, "onRead" | "reportsReads" | "holdInput" | "onHeld">>;
      const { onRead, onHeld } = app;
      if (onRead !== undefined && watchRelayReads(token, (read) => onRead(read))) app.reportsReads = true;
      // and while the node serves none of its messages (the client does not read), the relay keeps
      // them instead of Deno making an event of each, telling the node how many it keeps
      if (onHeld !== undefined) app.holdInput = (hold) => void holdRelayInput(token, hold, (m, b) => onHeld(m, b));
      // (these events are this connection's, so every event brings the same WSContext)
      let hooked = false;
      const hook = (ws: WSContext): void => {
        if (hooked) return;
        hooked = true;
        const close = ws.close.bind(ws);
        ws.close = (code?: number, reason?: string) => {
          unboundRelay(token);
          close(code, reason);
        };
      };
      const { onOpen, onMessage } = events;
      events.onOpen = (evt: Event, ws: WSContext) => {
        hook(ws);
        onOpen?.(evt, ws);
      };
      events.onMessage = (evt: MessageEvent, ws: WSContext) => {
        hook(ws);
        onMessage?.(evt, ws);
      };
      return events;
      // deno-lint-ignore no-explicit-any
    }, options)) as unknown as UpgradeWebSocket<any, any>;

interface DenoServer {
  addr: { port: number; hostname: string };
  shutdown(): Promise<void>;
  finished: Promise<void>;
}
interface DenoLike {
  serve(options: Record<string, unknown>, handler: (req: Request) => Response | Promise<Response>): DenoServer;
  listen(options: { hostname: string; port: number }): DenoListener & { addr: { port: number } };
  connect(options: { transport: "unix"; path: string } | { hostname: string; port: number }): Promise<DenoConn>;
  makeTempDirSync(options: { prefix: string }): string;
  removeSync(path: string, options: { recursive: boolean }): void;
  build: { os: string };
}

/**
 * Serves `app` on Deno: `Deno.serve` behind a guard that holds connections to
 * `maxConnections`, `headersTimeoutMs` and `idleTimeoutMs` and keeps accepting after an accept
 * error (see `_connection_guard.ts`). Deno's WebSocket takes messages up to 64 MiB whatever it is
 * told, so the guard closes a connection whose message passes `maxMessageBytes`.
 *
 * @param app A hono app (or anything with `fetch`).
 * @param options Host, port (0 picks one), abort signal, connection limits.
 * @returns The listening server.
 * @throws {Error} When the port is already in use.
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
export function serve(app: FetchApp, options: ServeOptions = {}): Promise<ServedApp> {
  const Deno = (globalThis as unknown as { Deno?: DenoLike }).Deno;
  if (!Deno) return Promise.reject(new Error("adapters/deno/serve.ts needs the Deno runtime"));
  const hostname = options.hostname ?? "127.0.0.1";
  const port = options.port ?? 0;
  let limits: ReturnType<typeof connectionLimits>;
  try {
    limits = connectionLimits(options);
  } catch (err) {
    return Promise.reject(err);
  }
  // Deno's shutdown() waits for every in-flight request; close() must not hang on a handler that
  // never answers, so pending requests are answered 503 when closing.
  const inflight = new Set<(res: Response) => void>();
  let stopping = false;
  const handle = (req: Request): Promise<Response> | Response => {
    if (stopping) return new Response("server is closing", { status: 503 });
    return new Promise<Response>((resolve, reject) => {
      inflight.add(resolve);
      Promise.resolve(app.fetch(req)).then(resolve, reject).finally(() => inflight.delete(resolve));
    });
  };
  let listener: DenoListener & { addr: { port: number } };
  try {
    listener = Deno.listen({ hostname, port });
  } catch (err) {
    return Promise.reject(isAddressInUse(err) ? addressInUse(hostname, port, err) : err);
  }
  // the server behind the guard: on a Unix socket in a private directory, so that nothing else on
  // the machine reaches it past the guard; on loopback TCP where there are no Unix sockets
  let server: DenoServer | undefined;
  let connectUpstream: () => Promise<DenoConn>;
  let dir: string | undefined;
  if (Deno.build.os !== "windows") {
    try {
      dir = Deno.makeTempDirSync({ prefix: "thinkagain-node-" });
      const path = `${dir}/http.sock`;
      server = Deno.serve({ transport: "unix", path, onListen() {} }, handle);
      connectUpstream = () => Deno.connect({ transport: "unix", path });
    } catch {
      removeDir(Deno, dir);
      dir = undefined;
    }
  }
  if (server === undefined) {
    try {
      server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handle);
    } catch (err) {
      listener.close();
      return Promise.reject(err);
    }
    const inner = server.addr.port;
    connectUpstream = () => Deno.connect({ hostname: "127.0.0.1", port: inner });
  }
  const guard = guardConnections(listener, {
    ...limits,
    maxMessageBytes: options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
    connectUpstream: connectUpstream!,
    onAcceptError: options.onAcceptError,
  });
  const behind = server;
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    if (closing) return closing;
    stopping = true;
    guard.stopAccepting();
    const done = behind.shutdown().then(() => behind.finished);
    for (const resolve of inflight) resolve(new Response("server is closing", { status: 503 }));
    inflight.clear();
    return closing = done.finally(async () => {
      // the answers still on their way (a call's reply written just before close) get out first
      await guard.closeAll(CLOSE_GRACE_MS);
      removeDir(Deno, dir);
    });
  };
  options.signal?.addEventListener("abort", () => void close(), { once: true });
  const real = listener.addr.port;
  return Promise.resolve({ port: real, hostname, url: `http://${hostPort(hostname, real)}`, close });
}

/** How long close() lets open connections finish what the server still sends them. */
const CLOSE_GRACE_MS = 2000;

function removeDir(Deno: DenoLike, dir: string | undefined): void {
  if (dir === undefined) return;
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch {
    // gone already
  }
}
