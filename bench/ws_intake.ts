/**
 * What taking in a small WebSocket message costs a server, by how the adapter hands it to the app: as
 * the `ArrayBuffer` hono gives (`/buffer`), or, to an app that says it takes views
 * (`WsAppEvents.takesViews`, as the node's connections do), as the runtime's own `Uint8Array`
 * (`/views`; on Bun a plain `Uint8Array` asked for with `binaryType`, with no `ArrayBuffer` made per
 * message; Deno's adapter hands over what its runtime gives either way). A server child (the
 * runtime's adapter, a hono app with both routes, whose `onMessage` reads each message's first byte)
 * takes bursts of 2,000 messages of 70 bytes (a small call frame's size) on each route in turn, each
 * burst written at once by a raw TCP client (as a flood comes), and answers each burst once; the
 * server's CPU time per message comes from /proc (Linux), so the machine's load does not inflate it
 * as it would wall time.
 *
 *   npx bun bench/ws_intake.ts
 *   npx deno run -A bench/ws_intake.ts
 *
 * `BENCH_ROUNDS` (default 30) bursts per route after 5 of warm-up. Prints medians with min–max.
 *
 * @module
 */
import net from "node:net";
import process from "node:process";
import { Hono } from "hono";
import { loadAdapter } from "../adapters/serve.ts";
import { startBenchChild } from "./_child.ts";
import { processCpuMicros } from "./_proc.ts";
import { upgradeRaw, wsRequest } from "../transports/_test_servers.ts";
import { FRAME_HEADER_BYTES } from "../transports/ws_framing.ts";

const BURST = 2_000;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 30);
const WARMUP = 5;
const ROUTES = ["buffer", "views"] as const;

async function server(): Promise<void> {
  const adapter = await loadAdapter();
  const app = new Hono();
  let sink = 0;
  for (const route of ROUTES) {
    app.get(
      `/${route}`,
      adapter.upgradeWebSocket(() => {
        let n = 0;
        return {
          ...(route === "views" ? { takesViews: true } : {}),
          onMessage(evt, ws) {
            const data = evt.data;
            const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : data as unknown as Uint8Array;
            sink += bytes[0];
            if (++n % BURST === 0) ws.send(new Uint8Array([sink & 0xff]));
          },
        };
      }),
    );
  }
  const served = await adapter.serve(app, { port: 0 });
  console.log(`PORT ${served.port}`);
}

async function client(): Promise<void> {
  const child = await startBenchChild(import.meta.url, "server", [], { node: false });
  const pid = child.child.pid!;
  // raw TCP clients: a burst goes out in one write, as a flooding client's would
  const sockets = await Promise.all(ROUTES.map(async (route) => {
    const s = net.connect(child.port, "127.0.0.1");
    await upgradeRaw(s, child.port, `/${route}`);
    return s;
  }));
  // BURST messages of 70 bytes (a request frame's header and its body), back to back
  const one = wsRequest(1, new Uint8Array(70 - FRAME_HEADER_BYTES).fill(1));
  const burstBytes = new Uint8Array(one.byteLength * BURST);
  for (let i = 0; i < BURST; i++) burstBytes.set(one, i * one.byteLength);
  const burst = (s: net.Socket): Promise<number> =>
    new Promise((resolve) => {
      s.once("data", () => resolve(processCpuMicros(pid)));
      s.write(burstBytes);
    });
  const perMessage: Record<string, number[]> = { buffer: [], views: [] };
  for (let round = 0; round < WARMUP + ROUNDS; round++) {
    // each route first in turn
    for (const k of round % 2 === 0 ? [0, 1] : [1, 0]) {
      const before = processCpuMicros(pid);
      const after = await burst(sockets[k]);
      if (round >= WARMUP) perMessage[ROUTES[k]].push((after - before) * 1000 / BURST);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  const runtime = (globalThis as { Bun?: unknown }).Bun ? "bun" : "deno";
  console.log(`bench/ws_intake.ts on ${runtime}: ${ROUNDS} bursts of ${BURST} messages of 70 bytes per route`);
  for (const route of ROUTES) {
    const xs = perMessage[route];
    console.log(
      `  server CPU per message, ${route === "buffer" ? "as an ArrayBuffer (hono's)" : "as a view (takesViews)   "}: ` +
        `${median(xs).toFixed(0)} ns (${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)})`,
    );
  }
  const ratios = perMessage.views.map((v, i) => v / perMessage.buffer[i]);
  console.log(
    `  views / ArrayBuffer, per round: median ${median(ratios).toFixed(2)} (${Math.min(...ratios).toFixed(2)}–${
      Math.max(...ratios).toFixed(2)
    })`,
  );
  for (const s of sockets) s.destroy();
  child.child.kill("SIGTERM");
  process.exit(0);
}

if (process.argv.includes("--server")) await server();
else await client();
