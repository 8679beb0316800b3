/**
 * Transport benchmark: client here, server in a child process of the same runtime, on 127.0.0.1,
 * measured beside a raw hono echo server (plain POST echo and plain WebSocket echo) in the same run.
 *
 *   npx bun bench/transport.ts
 *   npx deno run -A bench/transport.ts
 *
 * Prints a table with our/raw ratios. Timing claims live here, never in tests. Small sequential
 * calls warm up for `BENCH_WARM_MS` (default 1000) per run first. The raw echo's sequential p50 is
 * bimodal on a VM (a CPU woken per message or not, see BENCHMARKS.md, Transports, ninth session);
 * `taskset -c 1` before the command puts every process on one CPU, where it is not.
 *
 * @module
 */
import process from "node:process";
import { serveFrames } from "../adapters/serve.ts";
import { decode, encode, encodeFrame } from "../core/codec.ts";
import { httpTransport } from "../transports/http.ts";
import { webSocketTransport } from "../transports/websocket.ts";
import * as ta from "../mod.ts";
import { NodeServer } from "../server.ts";
import { startBenchChild } from "./_child.ts";
import { processCpuMicros, processMinorFaults } from "./_proc.ts";
import { serveRawEcho } from "./_raw_echo.ts";

// Full-stack calls: a service registered on both sides (the node serves it, the driver calls it).
const BenchEcho = ta.service(
  { name: "BenchEcho", maxConcurrency: 1024 },
  class BenchEcho {
    echo<T>(x: T): T {
      return x;
    }
  },
);

const args = process.argv.slice(2);
const SEQ = Number(process.env.BENCH_SEQ ?? 5000);
const THROUGHPUT_TOTAL = Number(process.env.BENCH_TOTAL ?? 200_000);
const IN_FLIGHT = Number(process.env.BENCH_IN_FLIGHT ?? 512);
const BIG_ROUNDS = Number(process.env.BENCH_BIG ?? 200);
/** How long each run of small sequential calls warms up first, ms (0: 1,000 calls only, as before 2026-12-05). */
const WARM_MS = Number(process.env.BENCH_WARM_MS ?? 1000);

// ---------------------------------------------------------------------------------------------
// Server side (child process)

async function runServer(kind: string): Promise<void> {
  if (kind === "node") {
    const node = new NodeServer({ name: "bench" });
    const served = await serveFrames(node.handler, { port: 0 });
    console.log(`PORT ${served.port}`);
  } else if (kind === "ours") {
    const served = await serveFrames((frame) => frame, { port: 0 });
    console.log(`PORT ${served.port}`);
  } else {
    await serveRawEcho();
  }
}

// ---------------------------------------------------------------------------------------------
// Client side

function startChild(kind: string): ReturnType<typeof startBenchChild> {
  // our node as `thinkagain serve` starts one; the raw echoes as a plain program
  return startBenchChild(import.meta.url, kind, [], { node: kind === "ours" || kind === "node" });
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

/** {@linkcode processCpuMicros}, or `undefined` where there is no /proc. */
function cpuMicros(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    return processCpuMicros(pid);
  } catch {
    return undefined;
  }
}

/** {@linkcode processMinorFaults}, or `undefined` where there is no /proc. */
function minorFaults(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    return processMinorFaults(pid);
  } catch {
    return undefined;
  }
}

type Latency = {
  p50: number;
  p99: number;
  cpuClient?: number;
  cpuServer?: number;
  faultsClient?: number;
  faultsServer?: number;
};

/**
 * p50 and p99 of `n` sequential calls (µs); with `serverPid`, also the CPU each call cost this
 * process and the server's (µs per call, from /proc): unlike the p50, it does not depend on whether
 * the two processes found each other awake (see BENCHMARKS.md, Transports, ninth session).
 */
async function latency(fn: () => PromiseLike<unknown>, n = SEQ, serverPid?: number): Promise<Latency> {
  // warm up: 1,000 calls (at most n), and small calls for WARM_MS at least (the JIT compiles a
  // service call's path for tens of thousands of calls: 7-10 µs of CPU a call on Bun's JIT threads,
  // 7-9 on Deno's V8 workers, over the first 20,000; bench/transport_threads.ts)
  const until = performance.now() + (n > BIG_ROUNDS ? WARM_MS : 0);
  for (let i = 0; i < Math.min(1000, n) || performance.now() < until; i++) await fn();
  const times = new Array<number>(n);
  const me = serverPid === undefined ? undefined : process.pid;
  const client0 = cpuMicros(me), server0 = cpuMicros(serverPid);
  const faultsClient0 = minorFaults(me), faultsServer0 = minorFaults(serverPid);
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn();
    times[i] = performance.now() - t0;
  }
  const client1 = cpuMicros(me), server1 = cpuMicros(serverPid);
  const faultsClient1 = minorFaults(me), faultsServer1 = minorFaults(serverPid);
  times.sort((a, b) => a - b);
  const out: Latency = { p50: percentile(times, 0.5) * 1000, p99: percentile(times, 0.99) * 1000 };
  if (client0 !== undefined && client1 !== undefined) out.cpuClient = (client1 - client0) / n;
  if (server0 !== undefined && server1 !== undefined) out.cpuServer = (server1 - server0) / n;
  if (faultsClient0 !== undefined && faultsClient1 !== undefined) {
    out.faultsClient = (faultsClient1 - faultsClient0) / n;
  }
  if (faultsServer0 !== undefined && faultsServer1 !== undefined) {
    out.faultsServer = (faultsServer1 - faultsServer0) / n;
  }
  return out;
}

/** Keeps `inFlight` calls going until `total` completed; returns calls per second. */
async function throughput(
  fn: () => PromiseLike<unknown>,
  total = THROUGHPUT_TOTAL,
  inFlight = IN_FLIGHT,
): Promise<number> {
  await Promise.all(Array.from({ length: inFlight }, fn)); // warm up
  let started = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (started < total) {
      started++;
      await fn();
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  return total / ((performance.now() - t0) / 1000);
}

type Measure = { p50: number; p99: number } | number;
/** Runs ours, raw, ours, raw (so neither always goes first on a noisy machine) and keeps each one's best. */
async function alternate<T extends Measure>(ours: () => Promise<T>, raw: () => Promise<T>): Promise<[T, T]> {
  const best = (a: T, b: T): T =>
    typeof a === "number"
      ? (Math.max(a, b as number) as T)
      : ((a as { p50: number }).p50 <= (b as { p50: number }).p50 ? a : b);
  const o1 = await ours();
  const r1 = await raw();
  const o2 = await ours();
  const r2 = await raw();
  return [best(o1, o2), best(r1, r2)];
}

/** A raw WebSocket echo client: one pending resolver per sent message, answered in order. */
async function rawWs(
  url: string,
): Promise<{ send(data: Uint8Array<ArrayBuffer>): Promise<ArrayBuffer>; close(): void }> {
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  const queue: ((d: ArrayBuffer) => void)[] = [];
  let head = 0;
  ws.onmessage = (e) => {
    const r = queue[head];
    queue[head++] = undefined as unknown as (d: ArrayBuffer) => void;
    if (head > 4096 && head === queue.length) {
      queue.length = 0;
      head = 0;
    }
    r(e.data as ArrayBuffer);
  };
  return {
    send(data) {
      return new Promise<ArrayBuffer>((resolve) => {
        queue.push(resolve);
        ws.send(data);
      });
    },
    close: () => ws.close(),
  };
}

async function runClient(): Promise<void> {
  const g = globalThis as { Bun?: { version: string }; Deno?: { version: { deno: string } } };
  const runtime = g.Bun ? `bun ${g.Bun.version}` : g.Deno ? `deno ${g.Deno.version.deno}` : `node ${process.version}`;
  const ours = await startChild("ours");
  const raw = await startChild("raw");
  const rows: [string, number, number, string][] = [];
  try {
    const small = encode({ t: "call", id: 1, svc: "Echo", method: "echo", args: ["What is ML?", 3] });
    const smallRaw = new Uint8Array(small);
    const oursUrl = `http://127.0.0.1:${ours.port}`;
    const rawBase = `127.0.0.1:${raw.port}`;

    // WebSocket sequential latency
    const ws = await webSocketTransport.connect(oursUrl);
    const rws = await rawWs(`ws://${rawBase}/ws`);
    const [wsOurs, wsRaw] = await alternate(
      () => latency(() => ws.request(small)),
      () => latency(() => rws.send(smallRaw)),
    );
    rows.push(["WS latency p50 (µs)", wsOurs.p50, wsRaw.p50, "lower is better"]);
    rows.push(["WS latency p99 (µs)", wsOurs.p99, wsRaw.p99, "lower is better"]);

    // HTTP sequential latency
    const http = await httpTransport.connect(oursUrl);
    const [httpOurs, httpRaw] = await alternate(
      () => latency(() => http.request(small), Math.min(SEQ, 3000)),
      () =>
        latency(async () => {
          const res = await fetch(`http://${rawBase}/echo`, { method: "POST", body: smallRaw });
          return res.arrayBuffer();
        }, Math.min(SEQ, 3000)),
    );
    rows.push(["HTTP latency p50 (µs)", httpOurs.p50, httpRaw.p50, "lower is better"]);
    rows.push(["HTTP latency p99 (µs)", httpOurs.p99, httpRaw.p99, "lower is better"]);

    // Throughput over one WebSocket connection, many in flight
    const [tOurs, tRaw] = await alternate(
      () => throughput(() => ws.request(small)),
      () => throughput(() => rws.send(smallRaw)),
    );
    rows.push([`WS throughput, ${IN_FLIGHT} in flight (req/s)`, tOurs, tRaw, "higher is better"]);

    // 1 MiB Float32Array round trip
    const big = new Float32Array(256 * 1024).map((_, i) => i);
    const bigFrame = encode({ x: big });
    const bigRawBytes = new Uint8Array(bigFrame);
    const [bigOurs, bigRaw] = await alternate(
      () =>
        latency(
          async () => {
            // encoded as the node protocol encodes its messages: header written in place, data aligned
            const { x } = decode(await ws.request(encodeFrame({ x: big }))) as { x: Float32Array };
            if (x.length !== big.length) throw new Error("bad echo");
          },
          BIG_ROUNDS,
          ours.child.pid,
        ),
      () => latency(() => rws.send(bigRawBytes), BIG_ROUNDS, raw.child.pid),
    );
    rows.push(["1 MiB Float32Array round trip p50 (ms)", bigOurs.p50 / 1000, bigRaw.p50 / 1000, "lower is better"]);
    // what each end spends per round trip, and the pages it faults in (each ~20 µs of CPU on the
    // VMs measured: BENCHMARKS.md, Transports, thirteenth session)
    const perEnd = [
      ["client CPU per round trip (µs)", bigOurs.cpuClient, bigRaw.cpuClient],
      ["server CPU per round trip (µs)", bigOurs.cpuServer, bigRaw.cpuServer],
      ["client page faults per round trip", bigOurs.faultsClient, bigRaw.faultsClient],
      ["server page faults per round trip", bigOurs.faultsServer, bigRaw.faultsServer],
    ] as const;
    for (const [what, o, r] of perEnd) {
      if (o !== undefined && r !== undefined) rows.push([`1 MiB round trip: ${what}`, o, r, "lower is better"]);
    }
    const mbps = (p50us: number) => (2 * bigFrame.byteLength / (1024 * 1024)) / (p50us / 1e6);
    rows.push(["1 MiB round trip (MB/s, both ways)", mbps(bigOurs.p50), mbps(bigRaw.p50), "higher is better"]);

    // Full stack: service calls through a mesh to a NodeServer (protocol, codec, mailbox, transport)
    const node = await startChild("node");
    try {
      for (const transport of ["websocket", "http"] as const) {
        await using mesh = new ta.Mesh([new ta.MeshNode("bench", { endpoint: `http://127.0.0.1:${node.port}` })], {
          transport,
        });
        const echo = await mesh.run(async () => {
          const e = BenchEcho.init();
          await e.echo.go(0);
          return [e];
        });
        const call = (x: unknown) => echo[0].echo.go(x);
        const label = transport === "websocket" ? "WS" : "HTTP";
        const rawPid = raw.child.pid;
        const rawCall = transport === "websocket"
          ? () => rws.send(smallRaw)
          : async () => (await fetch(`http://${rawBase}/echo`, { method: "POST", body: smallRaw })).arrayBuffer();
        const inMesh = <T>(f: () => Promise<T>) => () => mesh.run(f);
        const [cOurs, cRaw] = await alternate(
          inMesh(() => latency(() => call("What is ML?"), Math.min(SEQ, 3000), node.child.pid)),
          () => latency(rawCall, Math.min(SEQ, 3000), rawPid),
        );
        rows.push([`service call over ${label}, sequential p50 (µs)`, cOurs.p50, cRaw.p50, "lower is better"]);
        rows.push([`service call over ${label}, sequential p99 (µs)`, cOurs.p99, cRaw.p99, "lower is better"]);
        if (cOurs.cpuClient !== undefined && cRaw.cpuClient !== undefined) {
          const [co, cr] = [cOurs.cpuClient, cRaw.cpuClient];
          rows.push([`service call over ${label}, sequential: client CPU per call (µs)`, co, cr, "lower is better"]);
        }
        if (cOurs.cpuServer !== undefined && cRaw.cpuServer !== undefined) {
          const [so, sr] = [cOurs.cpuServer, cRaw.cpuServer];
          rows.push([`service call over ${label}, sequential: server CPU per call (µs)`, so, sr, "lower is better"]);
        }
        if (transport === "websocket") {
          const [tc, tr] = await alternate(
            inMesh(() => throughput(() => call(1))),
            () => throughput(() => rws.send(smallRaw)),
          );
          rows.push([`service calls over one WS, ${IN_FLIGHT} in flight (calls/s)`, tc, tr, "higher is better"]);
          const [bc, br] = await alternate(
            inMesh(() =>
              latency(async () => {
                const x = await call(big) as Float32Array;
                if (x.length !== big.length) throw new Error("bad echo");
              }, BIG_ROUNDS)
            ),
            () => latency(() => rws.send(bigRawBytes), BIG_ROUNDS),
          );
          rows.push([
            "service call with a 1 MiB Float32Array, round trip p50 (ms)",
            bc.p50 / 1000,
            br.p50 / 1000,
            "lower is better",
          ]);
        }
      }
    } finally {
      node.child.kill("SIGTERM");
    }

    await ws.close();
    await http.close();
    rws.close();
  } finally {
    ours.child.kill("SIGTERM");
    raw.child.kill("SIGTERM");
  }

  const fmt = (n: number) => (n >= 1000 ? Math.round(n).toLocaleString("en-US") : n.toFixed(n >= 100 ? 0 : 2));
  console.log(`\nthinkagain transport bench — ${runtime}, 127.0.0.1, separate processes\n`);
  console.log("| metric | thinkagain | raw hono echo | ours/raw |");
  console.log("|---|---:|---:|---:|");
  for (const [name, a, b] of rows) console.log(`| ${name} | ${fmt(a)} | ${fmt(b)} | ${(a / b).toFixed(2)} |`);
  process.exit(0);
}

if (args[0] === "--server") await runServer(args[1]);
else await runClient();
