// Service calls over NATS against raw NATS request/reply with the same client in the same run:
// p50 of one call at a time and calls/s at 256 in flight, with the driver on the node's own NATS
// server and across a route (another server of a 3-server loopback cluster); and how long
// Mesh.discover takes to find 3 nodes, against building a mesh of the 3 listed endpoints and
// waiting for their welcomes. Both sides are warmed up with WARMUP calls (default 50,000) before
// anything is measured, and the calls/s rows also say the CPU time per call of the driver's process
// and of the raw responder's or the node's (Linux /proc), to show which side a gap comes from.
// Needs nats-server (apt-get install -y nats-server).
//
//   bun bench/nats.ts      deno run -A bench/nats.ts      (RUNS=5 by default)
import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { connect } from "@nats-io/transport-node";
import * as ta from "../mod.ts";
import { meshRuntime } from "../core/mesh.ts";
import { runArgs, startNodeProcess, thisRuntime } from "../adapters/_test_nodes.ts";
import { natsServerBinary, type NatsServerProcess, startNatsCluster } from "../transports/nats/_test_nats.ts";
import { NatsBenchEcho } from "./_nats_app.ts";
import { serveNats } from "../transports/nats/serve.ts";
import { natsTransport } from "../transports/nats/transport.ts";
import { NodeServer } from "../transports/node_server.ts";
import { serveInMemory } from "../transports/in_memory.ts";

if (natsServerBinary() === undefined) {
  console.log("bench/nats.ts: nats-server is not installed (apt-get install -y nats-server); nothing measured");
  process.exit(0);
}

const RUNS = Number(process.env.RUNS ?? 5);
const SEQ = 2_000;
const FLIGHT = 256;
const TOTAL = 20_000;
/** Calls of each kind before anything is measured (see below). */
const WARMUP = Number(process.env.WARMUP ?? 50_000);
const PAYLOAD = "x".repeat(64);
const APP = fileURLToPath(new URL("./_nats_app.ts", import.meta.url));

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const spread = (xs: number[], d = 2) => `${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)}`;

/** p50 of `SEQ` calls one at a time (after a warm-up), in µs. */
async function p50(call: () => PromiseLike<unknown>): Promise<number> {
  for (let i = 0; i < 300; i++) await call();
  const t: number[] = [];
  for (let i = 0; i < SEQ; i++) {
    const s = performance.now();
    await call();
    t.push(performance.now() - s);
  }
  return median(t) * 1000;
}

/** Calls per second with `FLIGHT` in flight, `total` calls. */
async function rate(call: () => PromiseLike<unknown>, total = TOTAL): Promise<number> {
  for (let i = 0; i < 1000; i++) await call();
  let left = total;
  const s = performance.now();
  await Promise.all(Array.from({ length: FLIGHT }, async () => {
    while (left-- > 0) await call();
  }));
  return total / ((performance.now() - s) / 1000);
}

/**
 * CPU time of a process and its descendants so far, ms (Linux `/proc`, clock ticks of 10 ms;
 * `undefined` elsewhere): what the node and the raw responder spend, beside the driver's own.
 */
function cpuMsOfTree(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    let ms = (Number(fields[11]) + Number(fields[12])) * 10;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      for (const child of readFileSync(`/proc/${pid}/task/${tid}/children`, "utf8").split(" ")) {
        if (child.trim() !== "") ms += cpuMsOfTree(Number(child)) ?? 0;
      }
    }
    return ms;
  } catch {
    return undefined;
  }
}

/** `rate(call)` with the CPU µs per call of this process and of `peer`'s process tree. */
async function rateWithCpu(
  call: () => PromiseLike<unknown>,
  peer: number | undefined,
): Promise<{ rate: number; driver: number; peer: number | undefined }> {
  const before = process.cpuUsage(), peerBefore = cpuMsOfTree(peer);
  const r = await rate(call);
  const used = process.cpuUsage(before), peerAfter = cpuMsOfTree(peer);
  return {
    rate: r,
    driver: (used.user + used.system) / TOTAL,
    peer: peerBefore === undefined || peerAfter === undefined ? undefined : (peerAfter - peerBefore) * 1000 / TOTAL,
  };
}

function startRaw(url: string, subject: string): Promise<ChildProcess> {
  const [bin, args] = runArgs(thisRuntime(), APP, [url, subject]);
  const proc = spawn(bin, args, { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    proc.stdout!.on("data", (d) => String(d).includes("ready") && resolve(proc));
    proc.once("exit", (c) => reject(new Error(`raw responder exited ${c}`)));
  });
}

const servers: NatsServerProcess[] = await startNatsCluster(3);
const [a, b] = servers;
const raw = await startRaw(a.url, "bench.echo");
const node = await startNodeProcess(APP, ["--port", "0", "--name", "bench1", "--nats", a.url], {});
// the driver's clients: one on the node's own server, one across a route
const rawSame = await connect({ servers: a.url });
const rawRoute = await connect({ servers: b.url });
const payload = new TextEncoder().encode(PAYLOAD);

const rows: Record<string, { raw: number[]; ta: number[] }> = {};
const add = (k: string, r: number, t: number) => {
  rows[k] ??= { raw: [], ta: [] };
  rows[k].raw.push(r);
  rows[k].ta.push(t);
};

/** CPU µs per call at 256 in flight: the driver's process, and the responder's (raw) or node's. */
const cpu: Record<string, { raw: number[]; ta: number[] }> = {};
const rates = (
  where: string,
  r: Awaited<ReturnType<typeof rateWithCpu>>,
  t: Awaited<ReturnType<typeof rateWithCpu>>,
) => {
  add(`calls/s ${where}`, r.rate, t.rate);
  const put = (k: string, a: number | undefined, b: number | undefined) => {
    if (a === undefined || b === undefined) return;
    cpu[k] ??= { raw: [], ta: [] };
    cpu[k].raw.push(a);
    cpu[k].ta.push(b);
  };
  put(`driver's CPU µs per call, ${where}`, r.driver, t.driver);
  put(`responder's (raw) / node's CPU µs per call, ${where}`, r.peer, t.peer);
};

for (const [where, nc, url] of [["same server", rawSame, a.url], ["across a route", rawRoute, b.url]] as const) {
  await using mesh = new ta.Mesh([new ta.MeshNode("bench1", { endpoint: `${url}/bench1` })]);
  const echo = await mesh.run(async () => {
    const h = NatsBenchEcho.init();
    await h.echo.go("warm");
    return h;
  });
  // a handle calls its instance from anywhere (no mesh.run per call: raw NATS has no such step)
  const taCall = () => echo.echo.go(PAYLOAD);
  const rawCall = () => nc.request("bench.echo", payload, { timeout: 10_000 });
  // warmed up first, both the same: a service call runs far more code than nc.request(), which the
  // JIT compiles over the first tens of thousands of calls (1,000 left its first runs at half speed)
  await rate(rawCall, WARMUP);
  await rate(taCall, WARMUP);
  for (let run = 0; run < RUNS; run++) {
    // alternate which goes first, so neither is always measured on a warmer machine
    if (run % 2 === 0) {
      add(`p50 ${where}`, await p50(rawCall), await p50(taCall));
      const r = await rateWithCpu(rawCall, raw.pid);
      rates(where, r, await rateWithCpu(taCall, node.proc.pid));
    } else {
      const t = await p50(taCall);
      add(`p50 ${where}`, await p50(rawCall), t);
      const tr = await rateWithCpu(taCall, node.proc.pid);
      rates(where, await rateWithCpu(rawCall, raw.pid), tr);
    }
  }
}

// where the time goes: the transport alone (frames echoed by a handler, no call machinery), and the
// same service call over the node's direct WebSocket link
{
  const echoNode = await serveNats((f) => f, { nats: a.url, name: "frameecho" });
  // the driver's side on its own client (another seed string is another pooled client)
  const conn = await natsTransport.connect(`nats://localhost:${a.port}/frameecho`);
  const frame = new Uint8Array(96);
  const rawCall = () => rawSame.request("bench.echo", frame, { timeout: 10_000 });
  const frameCall = () => conn.request(frame);
  await using wsMesh = new ta.Mesh([new ta.MeshNode("bench1", { endpoint: node.url.replace("http", "ws") })]);
  const wsEcho = await wsMesh.run(async () => {
    const h = NatsBenchEcho.init();
    await h.echo.go("warm");
    return h;
  });
  const wsCall = () => wsEcho.echo.go(PAYLOAD);
  // the floor of the call itself: driver and node in this process, frames through memory (encoded)
  const inProcess = new NodeServer({ name: "inproc" });
  const memNode = serveInMemory("nats-bench-inproc", inProcess.handler);
  await using memMesh = new ta.Mesh([new ta.MeshNode("inproc", { endpoint: memNode.endpoint })]);
  const memEcho = await memMesh.run(async () => {
    const h = NatsBenchEcho.init();
    await h.echo.go("warm");
    return h;
  });
  const memCall = () => memEcho.echo.go(PAYLOAD);
  for (const call of [frameCall, wsCall, memCall]) await rate(call, WARMUP);
  for (let run = 0; run < RUNS; run++) {
    add("calls/s, frames through the NATS transport only", await rate(rawCall), await rate(frameCall));
    add("calls/s, the service call over ws:// instead", await rate(rawCall), await rate(wsCall));
    add("calls/s, the service call in one process over mem://", await rate(rawCall), await rate(memCall));
  }
  await conn.close();
  await echoNode.close();
  await memNode.close();
}

// discovery: 3 nodes (bench1 and two more), found by Mesh.discover vs. listed by hand
const more = await Promise.all(
  ["bench2", "bench3"].map((n, i) =>
    startNodeProcess(APP, ["--port", "0", "--name", n, "--nats", servers[i + 1].url], {})
  ),
);
const discoverMs: number[] = [], listedMs: number[] = [];
for (let run = 0; run < RUNS; run++) {
  let s = performance.now();
  const found = await ta.Mesh.discover({ nats: a.url, nodes: 3, timeoutMs: 30_000 });
  discoverMs.push(performance.now() - s);
  if (found.nodes.length !== 3) throw new Error(`discovered ${found.nodes.length} nodes`);
  await found.close();
  s = performance.now();
  const listed = new ta.Mesh(
    ["bench1", "bench2", "bench3"].map((n) => new ta.MeshNode(n, { endpoint: `${a.url}/${n}` })),
  );
  // what discovery gives at once: every node's welcome (made links ask for it)
  const { linkFor } = await import("../transports/link_table.ts");
  const { handleWire } = await import("../transports/handle_wire.ts");
  await Promise.all(
    listed.nodes.map((n) => linkFor(meshRuntime(listed), n.name, n.endpoint!, {}, handleWire).welcome()),
  );
  listedMs.push(performance.now() - s);
  await listed.close();
}

const fmt = (k: string, v: number) => (k.startsWith("p50") ? `${v.toFixed(0)} µs` : `${v.toFixed(0)}`);
console.log(`\n### NATS (${thisRuntime()}, ${RUNS} runs, ${FLIGHT} in flight, ${PAYLOAD.length}-byte string)\n`);
console.log(
  "| measure | raw NATS request/reply (median) | thinkagain (median) | share of raw (median, min–max) |",
);
console.log("|---|---|---|---|");
for (const [k, { raw: r, ta: t }] of Object.entries(rows)) {
  // as a share of raw: calls/s ta/raw, latency raw/ta (1.0 = as fast as raw NATS)
  const ratios = r.map((x, i) => (k.startsWith("p50") ? x / t[i] : t[i] / x));
  console.log(
    `| ${k} | ${fmt(k, median(r))} | ${fmt(k, median(t))} | ${median(ratios).toFixed(2)}× (${spread(ratios)}) |`,
  );
}
for (const [k, { raw: r, ta: t }] of Object.entries(cpu)) {
  console.log(`| ${k} | ${median(r).toFixed(1)} | ${median(t).toFixed(1)} | (${spread(r, 1)} / ${spread(t, 1)}) |`);
}
const dr = discoverMs.map((d, i) => listedMs[i] / d);
console.log(
  `| discover 3 nodes | listed endpoints + welcomes: ${median(listedMs).toFixed(1)} ms | Mesh.discover: ${
    median(discoverMs).toFixed(1)
  } ms (${spread(discoverMs, 1)}) | ${median(dr).toFixed(2)}× (${spread(dr)}) |`,
);

await rawSame.close();
await rawRoute.close();
raw.kill("SIGKILL");
for (const n of [node, ...more]) n.kill("SIGKILL");
await Promise.all([node, ...more].map((n) => n.exited));
await Promise.all(servers.map((s) => s.kill()));
process.exit(0);
