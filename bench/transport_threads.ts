/**
 * Where each process's CPU goes per sequential call, thread by thread: a service call over one
 * WebSocket to a `NodeServer` child, and the raw hono WebSocket echo, in the same run. Reads Linux's
 * per-thread schedstat (`/proc/<pid>/task/<tid>/schedstat`, ns on the CPU) and the thread's name
 * (`comm`) of the driver (this process) and of the server child before and after `BENCH_SEQ`
 * sequential calls, and prints µs per call per thread name, ours beside raw, plus the JS heap
 * allocated per call on the driver.
 *
 *   npx bun bench/transport_threads.ts
 *   npx deno run -A bench/transport_threads.ts
 *
 * Linux only. A diagnostic for BENCHMARKS.md's Transports part; the figures to hold the code to are
 * `bench/transport.ts`'s.
 *
 * @module
 */
import { readdirSync, readFileSync } from "node:fs";
import process from "node:process";
import { serveFrames } from "../adapters/serve.ts";
import * as ta from "../mod.ts";
import { NodeServer } from "../server.ts";
import { startBenchChild } from "./_child.ts";
import { serveRawEcho } from "./_raw_echo.ts";
import { encode } from "../core/codec.ts";

const ThreadsEcho = ta.service(
  { name: "ThreadsEcho", maxConcurrency: 1024 },
  class ThreadsEcho {
    echo<T>(x: T): T {
      return x;
    }
  },
);

const SEQ = Number(process.env.BENCH_SEQ ?? 20_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

/** ns on the CPU per thread name (threads of one name summed). */
function threads(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      const ns = Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, "utf8").split(" ")[0]);
      const name = readFileSync(`/proc/${pid}/task/${t}/comm`, "utf8").trim().replace(/\d+$/, "#");
      out.set(name, (out.get(name) ?? 0) + ns);
    } catch {
      // (a thread that ended between the listing and the read)
    }
  }
  return out;
}

function diff(a: Map<string, number>, b: Map<string, number>, n: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const [k, v] of b) out.set(k, (v - (a.get(k) ?? 0)) / 1000 / n);
  return out;
}

/** JS heap bytes allocated so far where the runtime tells it (Deno: V8's total; Bun: heapSize is live only). */
function heapUsed(): number {
  return process.memoryUsage().heapUsed;
}

async function rawWs(url: string): Promise<(data: Uint8Array<ArrayBuffer>) => Promise<unknown>> {
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  let pending: ((d: unknown) => void) | undefined;
  ws.onmessage = (e) => {
    const r = pending!;
    pending = undefined;
    r(e.data);
  };
  return (data) =>
    new Promise((resolve) => {
      pending = resolve;
      ws.send(data);
    });
}

type Split = { p50: number; client: Map<string, number>; server: Map<string, number> };

async function measure(fn: () => PromiseLike<unknown>, serverPid: number): Promise<Split> {
  for (let i = 0; i < 2000; i++) await fn();
  const times = new Array<number>(SEQ);
  const c0 = threads(process.pid), s0 = threads(serverPid);
  for (let i = 0; i < SEQ; i++) {
    const t0 = performance.now();
    await fn();
    times[i] = performance.now() - t0;
  }
  const c1 = threads(process.pid), s1 = threads(serverPid);
  times.sort((a, b) => a - b);
  return { p50: times[SEQ >> 1] * 1000, client: diff(c0, c1, SEQ), server: diff(s0, s1, SEQ) };
}

function table(title: string, ours: Map<string, number>, raw: Map<string, number>): void {
  const names = [...new Set([...ours.keys(), ...raw.keys()])]
    .filter((k) => (ours.get(k) ?? 0) >= 0.05 || (raw.get(k) ?? 0) >= 0.05)
    .sort((a, b) => (ours.get(b) ?? 0) - (ours.get(a) ?? 0));
  const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
  console.log(`\n${title}: µs of CPU per call by thread (ours | raw)`);
  for (const k of names) {
    console.log(
      `  ${k.padEnd(22)} ${(ours.get(k) ?? 0).toFixed(2).padStart(7)} | ${(raw.get(k) ?? 0).toFixed(2).padStart(7)}`,
    );
  }
  console.log(`  ${"total".padEnd(22)} ${sum(ours).toFixed(2).padStart(7)} | ${sum(raw).toFixed(2).padStart(7)}`);
}

async function runClient(): Promise<void> {
  const node = await startBenchChild(import.meta.url, "node", [], { node: true });
  const raw = await startBenchChild(import.meta.url, "raw");
  const frames = await startBenchChild(import.meta.url, "frames");
  try {
    await using mesh = new ta.Mesh([new ta.MeshNode("threads", { endpoint: `http://127.0.0.1:${node.port}` })], {
      transport: "websocket",
    });
    const [echo] = await mesh.run(async () => {
      const e = ThreadsEcho.init();
      await e.echo.go(0);
      return [e];
    });
    const send = await rawWs(`ws://127.0.0.1:${raw.port}/ws`);
    const small = new Uint8Array(encode({ t: "call", id: 1, svc: "Echo", method: "echo", args: ["What is ML?", 3] }));
    const { webSocketTransport } = await import("../transports/websocket.ts");
    const fr = await webSocketTransport.connect(`http://127.0.0.1:${frames.port}`);
    for (let r = 0; r < ROUNDS; r++) {
      const h0 = heapUsed();
      const ours = await mesh.run(() => measure(() => echo.echo.go("What is ML?"), node.child.pid!));
      const h1 = heapUsed();
      const framed = await measure(() => fr.request(small), frames.child.pid!);
      const rawS = await measure(() => send(small), raw.child.pid!);
      console.log(
        `\nround ${r + 1}: p50 service call ${ours.p50.toFixed(1)} µs, frame echo ${framed.p50.toFixed(1)} µs, ` +
          `raw ${rawS.p50.toFixed(1)} µs; driver heap ${((h1 - h0) / 1024).toFixed(0)} KiB net over the calls`,
      );
      table("driver (service call | raw)", ours.client, rawS.client);
      table("node (service call | raw)", ours.server, rawS.server);
      table("driver (frame echo | raw)", framed.client, rawS.client);
      table("frame echo server (| raw)", framed.server, rawS.server);
    }
    await fr.close();
  } finally {
    node.child.kill("SIGTERM");
    raw.child.kill("SIGTERM");
    frames.child.kill("SIGTERM");
  }
  process.exit(0);
}

const args = process.argv.slice(2);
if (args[0] === "--server") {
  if (args[1] === "node") {
    const node = new NodeServer({ name: "threads" });
    const served = await serveFrames(node.handler, { port: 0 });
    console.log(`PORT ${served.port}`);
  } else if (args[1] === "frames") {
    const served = await serveFrames((frame) => frame, { port: 0 });
    console.log(`PORT ${served.port}`);
  } else await serveRawEcho();
} else await runClient();
