/**
 * The floor under any transport on this machine: a 1 MiB round trip over plain TCP on loopback (no
 * WebSocket framing or masking, no protocol), server and client in this one process through
 * `node:net`, beside the same over a raw hono WebSocket echo (`adapters/serve.ts`). It says how much
 * of a 1 MiB round trip's time is the machine's and how much the WebSocket's.
 *
 *   npx bun bench/tcp_floor.ts
 *   npx deno run -A bench/tcp_floor.ts
 *   BENCH_ROUNDS=1000 npx bun bench/tcp_floor.ts
 *
 * Prints each side's p50 and p10 over `BENCH_ROUNDS` round trips (default 300) after 50 warm-up ones.
 * Timing claims live here, never in tests.
 *
 * @module
 */
import { createConnection, createServer, type Socket } from "node:net";
import process from "node:process";
import { Hono } from "hono";
import { loadAdapter } from "../adapters/serve.ts";

const BYTES = 1 << 20;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 300);
const WARM = 50;

/**
 * Times `WARM + ROUNDS` round trips, each `send` then waiting until `arm`'s callback is called back
 * (the whole payload returned); gives the p50 and p10 of the last `ROUNDS`.
 */
async function roundTrips(send: () => void, arm: (done: () => void) => void): Promise<string> {
  const times: number[] = [];
  for (let r = 0; r < WARM + ROUNDS; r++) {
    const t0 = performance.now();
    const back = new Promise<void>((res) => arm(res));
    send();
    await back;
    if (r >= WARM) times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return `p50 ${times[times.length >> 1].toFixed(3)} ms, p10 ${times[Math.floor(times.length * 0.1)].toFixed(3)} ms`;
}

/** Round trips of `BYTES` over plain TCP: the server writes back what it reads, as it reads it. */
async function tcp(): Promise<string> {
  const server = createServer((s: Socket) => s.on("data", (d: Uint8Array) => s.write(d)));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  const client = createConnection({ host: "127.0.0.1", port });
  client.setNoDelay(true);
  await new Promise<void>((r) => client.once("connect", () => r()));
  let got = 0;
  let done: (() => void) | undefined;
  client.on("data", (d: Uint8Array) => {
    got += d.length;
    if (got >= BYTES) {
      got -= BYTES;
      done?.();
    }
  });
  const payload = new Uint8Array(BYTES).fill(7);
  const out = await roundTrips(() => client.write(payload), (res) => (done = res));
  client.destroy();
  await new Promise<void>((r) => server.close(() => r()));
  return out;
}

/** Round trips of `BYTES` over a raw hono WebSocket echo (one binary message each way). */
async function webSocket(): Promise<string> {
  const adapter = await loadAdapter();
  const app = new Hono();
  app.get("/ws", adapter.upgradeWebSocket(() => ({ onMessage: (evt, ws) => ws.send(evt.data as ArrayBuffer) })));
  const served = await adapter.serve(app, { port: 0 });
  const ws = new WebSocket(`ws://127.0.0.1:${served.port}/ws`);
  ws.binaryType = "arraybuffer";
  await new Promise((r) => (ws.onopen = r));
  let done: (() => void) | undefined;
  ws.onmessage = () => done?.();
  const payload = new Uint8Array(BYTES).fill(7);
  const out = await roundTrips(() => ws.send(payload), (res) => (done = res));
  ws.close();
  await served.close();
  return out;
}

const runtime = "Deno" in globalThis ? "Deno" : `Bun ${process.versions.bun}`;
console.log(`bench/tcp_floor.ts on ${runtime}: 1 MiB round trips, ${ROUNDS} after ${WARM} warm-up`);
console.log(`  plain TCP (node:net)         ${await tcp()}`);
console.log(`  raw hono WebSocket echo      ${await webSocket()}`);
process.exit(0);
