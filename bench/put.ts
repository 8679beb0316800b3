/**
 * `ta.put`: one large value passed to CALLS op calls on a node process (same runtime, WebSocket),
 * three ways in the same run: passed to each call as itself (walked, encoded and sent per call);
 * put once with the mesh's `keepResultsAbove: Infinity`, which keeps it out of node stores (encoded
 * once, its bytes written into every call's frame: what put did before it was stored on nodes);
 * and put once as it is now (encoded once, stored once on the node by a `store` message, and named
 * by every call: `transports/stored_puts.ts`).
 *
 *   npx bun bench/put.ts
 *   npx deno run -A bench/put.ts
 *
 * Two values: `docs`, an object holding 20,000 strings of ~40 characters (~0.9 MB encoded, a walk
 * per encode), and `f32`, a 1 MiB Float32Array (~1 MB, a copy per encode). For each: the driver's
 * CPU time (user + system), the wall time of the CALLS calls, all in flight at once, timed from the
 * put (its one encode and store included) to the last answer, calls/s, and the bytes the driver
 * sent towards the node (counted by a TCP proxy in front of it, in the same batches). Medians over
 * BENCH_RUNS (default 7) runs taking the three ways in turn, with min–max; each ratio is against
 * "passed each time" in the same run. BENCH_CALLS (default 100) calls a batch; BENCH_VALUES
 * (default `docs,f32`) the values. Timing claims live here, never in tests.
 *
 * @module
 */
import net from "node:net";
import process from "node:process";
import { serveFrames } from "../adapters/serve.ts";
import * as ta from "../mod.ts";
import { NodeServer } from "../server.ts";
import { startBenchChild } from "./_child.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 7);
const CALLS = Number(process.env.BENCH_CALLS ?? 100);

/** What a call does with the value: next to nothing, so the figures are the cost of sending it. */
const putbUse = ta.op(
  { name: "putbUse", remote: true },
  (value: { docs: string[] } | Float32Array, i: number) =>
    (value instanceof Float32Array ? value.length : value.docs.length) + i,
);

const VALUES: Record<string, () => { docs: string[] } | Float32Array> = {
  docs: () => ({ docs: Array.from({ length: 20_000 }, (_, i) => `document ${i}: the quick brown fox jumps`) }),
  f32: () => new Float32Array(256 * 1024).fill(0.5),
};

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** A TCP proxy to `port` on loopback that counts the bytes its clients send (towards the node). */
function countingProxy(port: number): Promise<{ port: number; sent(): number; close(): void }> {
  let sent = 0;
  const server = net.createServer((client) => {
    const upstream = net.connect(port, "127.0.0.1");
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    client.on("data", (d: Uint8Array) => {
      sent += d.byteLength;
      if (!upstream.write(d)) client.pause();
    });
    upstream.on("drain", () => client.resume());
    upstream.on("data", (d: Uint8Array) => {
      if (!client.write(d)) upstream.pause();
    });
    client.on("drain", () => upstream.resume());
    for (const [a, b] of [[client, upstream], [upstream, client]]) {
      a.on("error", () => b.destroy());
      a.on("close", () => b.destroy());
    }
  });
  return new Promise((resolve) =>
    server.listen(
      0,
      "127.0.0.1",
      () =>
        resolve({ port: (server.address() as net.AddressInfo).port, sent: () => sent, close: () => server.close() }),
    )
  );
}

type Way = "each" | "spliced" | "stored";
type Sample = { cpu: number; wall: number; bytes: number };

/** One timed batch: CALLS calls, the value passed as itself to each, or put once (spliced or stored). */
async function batch(
  meshes: Record<"plain" | "spliced", ta.Mesh>,
  value: { docs: string[] } | Float32Array,
  way: Way,
  sent: () => number,
): Promise<Sample> {
  const mesh = way === "spliced" ? meshes.spliced : meshes.plain;
  const bytes0 = sent();
  const cpu0 = cpuMs();
  const t0 = performance.now();
  const out = await mesh.run(() => {
    const arg = way === "each" ? value : ta.put(value);
    return ta.all(Array.from({ length: CALLS }, (_, i) => putbUse.go(arg as never, i)));
  });
  const wall = performance.now() - t0;
  const cpu = cpuMs() - cpu0;
  if (out.length !== CALLS) throw new Error(`${out.length} answers of ${CALLS}`);
  return { cpu, wall, bytes: sent() - bytes0 };
}

function span(xs: number[], digits = 1): string {
  const f = (x: number) => x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
  return `${f(median(xs))} (${f(Math.min(...xs))}–${f(Math.max(...xs))})`;
}

function ratio(xs: number[], base: number[]): string {
  const r = xs.map((x, i) => x / base[i]);
  return span(r, median(r) < 0.1 ? 4 : 2);
}

async function main(): Promise<void> {
  const runtime = "Deno" in globalThis ? "deno" : "bun";
  const node = await startBenchChild(import.meta.url, "node", [], { node: true });
  const proxy = await countingProxy(node.port);
  try {
    const endpoint = `ws://127.0.0.1:${proxy.port}`;
    await using plain = new ta.Mesh([new ta.MeshNode("n1", { endpoint })]);
    await using spliced = new ta.Mesh([new ta.MeshNode("n1", { endpoint })], { keepResultsAbove: Infinity });
    const meshes = { plain, spliced };
    const lines = [
      `${runtime}: ${CALLS} calls, one value; ${RUNS} runs, median (min–max); ratios against "each" in the same run`,
      "",
      "| value | figure | passed each time | put, spliced (before) | put, stored (now) | spliced / each | stored / each |",
      "|---|---|---|---|---|---|---|",
    ];
    const ways: Way[] = ["each", "spliced", "stored"];
    for (const name of (process.env.BENCH_VALUES ?? "docs,f32").split(",")) {
      const make = VALUES[name];
      // warm-up: every way, so that no run pays for compiling another's code
      for (let w = 0; w < 2; w++) for (const way of ways) await batch(meshes, make(), way, proxy.sent);
      const got: Record<Way, Sample[]> = { each: [], spliced: [], stored: [] };
      for (let r = 0; r < RUNS; r++) {
        // a fresh value each batch (never put before: its one encode and store are in the figure),
        // the three ways in turn, starting with another each run
        for (let k = 0; k < ways.length; k++) {
          const way = ways[(r + k) % ways.length];
          got[way].push(await batch(meshes, make(), way, proxy.sent));
        }
      }
      const figure = (label: string, f: (s: Sample) => number, digits = 1) => {
        const [e, sp, st] = ways.map((w) => got[w].map(f));
        lines.push(
          `| ${name} | ${label} | ${span(e, digits)} | ${span(sp, digits)} | ${span(st, digits)} | ${ratio(sp, e)} | ${
            ratio(st, e)
          } |`,
        );
      };
      figure("driver CPU (ms)", (s) => s.cpu);
      figure("wall (ms)", (s) => s.wall);
      figure("calls/s", (s) => CALLS / (s.wall / 1000), 0);
      figure("MB sent by the driver", (s) => s.bytes / 1e6, 2);
    }
    console.log(lines.join("\n"));
  } finally {
    proxy.close();
    node.child.kill("SIGKILL");
  }
}

const at = process.argv.indexOf("--server");
if (at >= 0) {
  const node = new NodeServer({ name: "n1" });
  const served = await serveFrames(node.handler, { port: 0, hostname: "127.0.0.1" });
  console.log(`PORT ${served.port}`);
} else await main();
