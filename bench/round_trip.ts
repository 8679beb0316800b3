/**
 * One 1 MiB Float32Array round trip at a time, for a few thousand round trips: what each end spends
 * on it, beside `bench/transport.ts`'s row of the same name but quicker to repeat, and with the
 * client's end taken apart. The server is a child process of the same runtime (`bench/transport.ts`'s
 * children); the client is this process, one of:
 *
 * - `ours`: our WebSocket transport against our frame echo (`serveFrames`), the frame decoded: as
 *   `bench/transport.ts` measures it;
 * - `plain`: a plain `WebSocket` speaking our framing to the same echo (the frame's head and its array
 *   as two messages each way), nothing decoded: our protocol without our client;
 * - `raw`: a plain `WebSocket` against the raw hono echo, the same bytes as one message each way.
 *
 *   npx bun bench/round_trip.ts ours      # or plain, raw
 *   npx deno run -A bench/round_trip.ts ours
 *
 * Prints, per round (`BENCH_ROUNDS`, default 4, each `BENCH_N` round trips, default 1000, after 200
 * unmeasured ones): the mean round trip, each end's CPU (all threads, Linux schedstat) and minor page
 * faults (/proc) per round trip, and the client's voluntary context switches (sleeps) per round trip.
 * Timing claims live in BENCHMARKS.md, never in tests.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import process from "node:process";
import { decode, encodeFrame } from "../core/codec.ts";
import { KIND_REQUEST, segmentedMessages } from "../transports/ws_framing.ts";
import { webSocketTransport } from "../transports/websocket.ts";
import { WS_PROTOCOL } from "../transports/_common.ts";
import { startBenchChild } from "./_child.ts";
import { processCpuMicros, processMinorFaults } from "./_proc.ts";

const args = (globalThis as { Deno?: { args: string[] } }).Deno?.args ?? process.argv.slice(2);
const KIND = args[0] ?? "ours";
if (!["ours", "plain", "raw"].includes(KIND)) {
  throw new TypeError(`bench/round_trip.ts: expected ours, plain or raw, got ${JSON.stringify(KIND)}`);
}
const N = Number(process.env.BENCH_N ?? 1000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 4);
const WARMUP = 200;

/** This process's voluntary context switches so far (/proc, so that Deno has them too). */
function sleeps(): number {
  const status = readFileSync("/proc/self/status", "utf8");
  return Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)![1]);
}

/** A plain WebSocket whose round trip ends at the `messages`-th message back. */
async function plainSocket(url: string, protocols: string[], messages: number) {
  const ws = new WebSocket(url, protocols);
  ws.binaryType = "arraybuffer";
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  let done: (() => void) | undefined;
  let got = 0;
  ws.onmessage = () => {
    if (++got < messages) return;
    got = 0;
    const d = done!;
    done = undefined;
    d();
  };
  return {
    ws,
    roundTrip: (send: () => void) =>
      new Promise<void>((resolve) => {
        done = resolve;
        send();
      }),
  };
}

const child = await startBenchChild(
  new URL("./transport.ts", import.meta.url).href,
  KIND === "raw" ? "raw" : "ours",
  [],
  {
    node: KIND !== "raw",
  },
);
const pid = child.child.pid!;
const big = new Float32Array(256 * 1024).map((_, i) => i);
let one: () => Promise<void>;
if (KIND === "ours") {
  const conn = await webSocketTransport.connect(`http://127.0.0.1:${child.port}`);
  one = async () => {
    const { x } = decode(await conn.request(encodeFrame({ x: big }))) as { x: Float32Array };
    if (x.length !== big.length) throw new Error("bad echo");
  };
} else if (KIND === "plain") {
  const { ws, roundTrip } = await plainSocket(`ws://127.0.0.1:${child.port}/ws`, [WS_PROTOCOL], 2);
  one = () =>
    roundTrip(() => {
      for (const m of segmentedMessages(KIND_REQUEST, 1, encodeFrame({ x: big }))!) ws.send(m);
    });
} else {
  const { ws, roundTrip } = await plainSocket(`ws://127.0.0.1:${child.port}/ws`, [], 1);
  const bytes = new Uint8Array(encodeFrame({ x: big }).byteLength + big.byteLength);
  one = () => roundTrip(() => ws.send(bytes));
}
try {
  for (let r = 0; r < ROUNDS; r++) {
    for (let i = 0; i < WARMUP; i++) await one();
    const server0 = processCpuMicros(pid), serverFaults0 = processMinorFaults(pid);
    const client0 = process.cpuUsage(), clientFaults0 = processMinorFaults("self"), sleeps0 = sleeps();
    const t0 = performance.now();
    for (let i = 0; i < N; i++) await one();
    const us = (performance.now() - t0) * 1000 / N;
    const client = process.cpuUsage(client0);
    console.log(
      `${KIND} round ${r + 1}: ${us.toFixed(0)} µs per round trip; server CPU ${
        ((processCpuMicros(pid) - server0) / N).toFixed(0)
      } µs, ${((processMinorFaults(pid) - serverFaults0) / N).toFixed(1)} faults; client CPU ${
        ((client.user + client.system) / N).toFixed(0)
      } µs, ${((processMinorFaults("self") - clientFaults0) / N).toFixed(1)} faults, ${
        ((sleeps() - sleeps0) / N).toFixed(2)
      } sleeps`,
    );
  }
} finally {
  child.child.kill();
}
process.exit(0);
