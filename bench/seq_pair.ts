/**
 * Sequential calls over one WebSocket for a few seconds, one kind at a time: `raw` (the raw hono
 * echo, a plain `WebSocket` client), `frames` (our transports alone: `webSocketTransport` against
 * `serveFrames` echoing each frame) or `node` (a service call through a mesh to a `NodeServer`).
 * Prints the p50 and the CPU each call cost the client and the server (Linux schedstat of all their
 * threads). Run it under `taskset -c 1` to put both processes on one CPU: the call then costs the
 * two processes' CPU one after the other, with no idle CPU to wake (the raw echo's 9 or 60-90 µs
 * modes, see BENCHMARKS.md, Transports, ninth session), so runs can be compared.
 *
 *   taskset -c 1 npx bun bench/seq_pair.ts node     # or raw, frames
 *   taskset -c 1 npx deno run -A bench/seq_pair.ts node
 *
 * `BENCH_SECS` (default 3) seconds of calls after 3,000 warm-up calls.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import process from "node:process";
import { serveFrames } from "../adapters/serve.ts";
import { encode } from "../core/codec.ts";
import * as ta from "../mod.ts";
import { NodeServer } from "../server.ts";
import { webSocketTransport } from "../transports/websocket.ts";
import { startBenchChild } from "./_child.ts";
import { processCpuMicros } from "./_proc.ts";
import { serveRawEcho } from "./_raw_echo.ts";

const PairEcho = ta.service(
  { name: "PairEcho", maxConcurrency: 1024 },
  class PairEcho {
    echo<T>(x: T): T {
      return x;
    }
  },
);
const SECS = Number(process.env.BENCH_SECS ?? 3);

/** [user, system] CPU ticks of process `pid` so far (/proc/<pid>/stat; 100 a second on Linux). */
function ticks(pid: number): [number, number] {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8");
  const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
  return [Number(rest[11]), Number(rest[12])];
}

async function client(kind: string): Promise<void> {
  const child = await startBenchChild(import.meta.url, kind, [], { node: kind === "node" });
  const small = new Uint8Array(encode({ t: "call", id: 1, svc: "Echo", method: "echo", args: ["What is ML?", 3] }));
  let call: () => PromiseLike<unknown>;
  let mesh: ta.Mesh | undefined;
  if (kind === "node") {
    mesh = new ta.Mesh([new ta.MeshNode("pair", { endpoint: `http://127.0.0.1:${child.port}` })], {
      transport: "websocket",
    });
    const [e] = await mesh.run(async () => {
      const e = PairEcho.init();
      await e.echo.go(0);
      return [e];
    });
    call = () => e.echo.go("What is ML?");
  } else if (kind === "frames") {
    const c = await webSocketTransport.connect(`http://127.0.0.1:${child.port}`);
    call = () => c.request(small);
  } else {
    const ws = new WebSocket(`ws://127.0.0.1:${child.port}/ws`);
    ws.binaryType = "arraybuffer";
    await new Promise((resolve) => (ws.onopen = resolve));
    let waiting: ((x: unknown) => void) | undefined;
    ws.onmessage = (e) => {
      const r = waiting!;
      waiting = undefined;
      r(e.data);
    };
    call = () =>
      new Promise((resolve) => {
        waiting = resolve;
        ws.send(small);
      });
  }
  const times: number[] = [];
  let c0 = 0, s0 = 0;
  let ct0: [number, number] = [0, 0], st0: [number, number] = [0, 0];
  const loop = async () => {
    for (let i = 0; i < 3000; i++) await call(); // warm up
    c0 = processCpuMicros(process.pid);
    s0 = processCpuMicros(child.child.pid!);
    ct0 = ticks(process.pid);
    st0 = ticks(child.child.pid!);
    const end = performance.now() + SECS * 1000;
    while (performance.now() < end) {
      const t = performance.now();
      await call();
      times.push(performance.now() - t);
    }
  };
  await (mesh ? mesh.run(loop) : loop());
  const n = times.length;
  const c1 = processCpuMicros(process.pid), s1 = processCpuMicros(child.child.pid!);
  const ct1 = ticks(process.pid), st1 = ticks(child.child.pid!);
  // the share of each process's CPU spent in the kernel (ticks of 10 ms: over seconds, about right)
  const sys = (a: [number, number], b: [number, number]) =>
    `${Math.round(100 * (b[1] - a[1]) / Math.max(1, b[0] - a[0] + b[1] - a[1]))} % in the kernel`;
  times.sort((a, b) => a - b);
  console.log(
    `${kind}: ${times.length} calls, p50 ${(times[times.length >> 1] * 1000).toFixed(1)} µs, CPU per call: ` +
      `client ${((c1 - c0) / n).toFixed(1)} µs (${sys(ct0, ct1)}), server ${((s1 - s0) / n).toFixed(1)} µs ` +
      `(${sys(st0, st1)})`,
  );
  child.child.kill("SIGTERM");
  process.exit(0);
}

const args = process.argv.slice(2);
if (args[0] === "--server") {
  if (args[1] === "node") {
    console.log(`PORT ${(await serveFrames(new NodeServer({ name: "pair" }).handler, { port: 0 })).port}`);
  } else if (args[1] === "frames") console.log(`PORT ${(await serveFrames((f) => f, { port: 0 })).port}`);
  else await serveRawEcho();
} else await client(args[0] ?? "node");
