// Private to bench/: the raw hono echo server that the transport benchmarks measure against.
import { Hono } from "hono";
import { loadAdapter } from "../adapters/serve.ts";

/**
 * Serves a plain hono echo on 127.0.0.1 (`POST /echo` answers its body, WebSocket `/ws` sends back
 * each message) with the runtime's adapter, and prints `PORT <n>` for `startBenchChild`.
 */
export async function serveRawEcho(): Promise<void> {
  const adapter = await loadAdapter();
  const app = new Hono();
  app.post("/echo", async (c) => new Response(await c.req.arrayBuffer()));
  app.get(
    "/ws",
    adapter.upgradeWebSocket(() => ({
      onMessage(evt, ws) {
        ws.send(evt.data as ArrayBuffer);
      },
    })),
  );
  const served = await adapter.serve(app, { port: 0 });
  console.log(`PORT ${served.port}`);
}
