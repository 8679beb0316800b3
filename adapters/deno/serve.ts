/**
 * Serving a hono app on Deno, with hono/deno's WebSocket support.
 *
 * @module
 */
import { upgradeWebSocket as denoUpgradeWebSocket } from "hono/deno";
import type { UpgradeWebSocket } from "hono/ws";
import { addressInUse, type FetchApp, isAddressInUse, type ServedApp, type ServeOptions } from "../types.ts";

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
export const upgradeWebSocket: UpgradeWebSocket<any, any> = denoUpgradeWebSocket as UpgradeWebSocket<any, any>;

interface DenoServer {
  addr: { port: number; hostname: string };
  shutdown(): Promise<void>;
  finished: Promise<void>;
}
interface DenoLike {
  serve(options: Record<string, unknown>, handler: (req: Request) => Response | Promise<Response>): DenoServer;
}

/**
 * Serves `app` with `Deno.serve`. (Deno sets its own WebSocket message limit; `maxMessageBytes`
 * is not configurable there.)
 *
 * @param app A hono app (or anything with `fetch`).
 * @param options Host, port (0 picks one), abort signal.
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
  let server: DenoServer;
  try {
    server = Deno.serve({ hostname, port, onListen() {} }, handle);
  } catch (err) {
    return Promise.reject(isAddressInUse(err) ? addressInUse(hostname, port, err) : err);
  }
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    if (closing) return closing;
    stopping = true;
    const done = server.shutdown().then(() => server.finished);
    for (const resolve of inflight) resolve(new Response("server is closing", { status: 503 }));
    inflight.clear();
    return closing = done;
  };
  options.signal?.addEventListener("abort", () => void close(), { once: true });
  const real = server.addr.port;
  return Promise.resolve({ port: real, hostname, url: `http://${hostname}:${real}`, close });
}
