/**
 * `ta.put`: one large value passed to CALLS op calls on a node process (same runtime, WebSocket),
 * put once and passed by ref, against the same value passed to each call as itself. A put value is
 * encoded when first sent and its bytes are reused by every later call (`core/put.ts`); passed as
 * itself, it is walked and encoded once per call. Both send the same bytes.
 *
 *   npx bun bench/put.ts
 *   npx deno run -A bench/put.ts
 *
 * Two values: `docs`, an object holding 20,000 strings of ~40 characters (~0.9 MB encoded, a walk
 * per encode), and `f32`, a 1 MiB Float32Array (~1 MB, a copy per encode). For each: the driver's
 * CPU time (user + system) and the wall time of the CALLS calls, all in flight at once, timed from
 * the put (its one encode included) to the last answer. Medians over BENCH_RUNS (default 7)
 * alternating runs, with min–max; the ratio is put / passed each time (below 1: put is cheaper).
 * Timing claims live here, never in tests.
 *
 * @module
 */
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

/** One timed batch: CALLS calls, the value put once (`put`) or passed as itself to each. */
async function batch(mesh: ta.Mesh, value: { docs: string[] } | Float32Array, put: boolean): Promise<
  { cpu: number; wall: number }
> {
  const cpu0 = cpuMs();
  const t0 = performance.now();
  const out = await mesh.run(() => {
    const arg = put ? ta.put(value) : value;
    return ta.all(Array.from({ length: CALLS }, (_, i) => putbUse.go(arg as never, i)));
  });
  const wall = performance.now() - t0;
  const cpu = cpuMs() - cpu0;
  if (out.length !== CALLS) throw new Error(`${out.length} answers of ${CALLS}`);
  return { cpu, wall };
}

function row(name: string, what: string, put: number[], each: number[]): string {
  const ratios = put.map((p, i) => p / each[i]);
  const span = (xs: number[]) =>
    `${median(xs).toFixed(1)} (${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)})`;
  return `| ${name} | ${what} | ${span(put)} | ${span(each)} | ${median(ratios).toFixed(2)} (${
    Math.min(...ratios).toFixed(2)
  }–${Math.max(...ratios).toFixed(2)}) |`;
}

async function main(): Promise<void> {
  const runtime = "Deno" in globalThis ? "deno" : "bun";
  const node = await startBenchChild(import.meta.url, "node");
  try {
    await using mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: `ws://127.0.0.1:${node.port}` })]);
    const lines = [
      `${runtime}: ${CALLS} calls, one value, put once vs passed each time; ${RUNS} runs, median (min–max)`,
      "",
      "| value | per batch | put once (ms) | passed each time (ms) | ratio put / each |",
      "|---|---|---|---|---|",
    ];
    for (const [name, make] of Object.entries(VALUES)) {
      // warm-up: both paths, so that neither run pays for compiling the other's code
      for (let w = 0; w < 2; w++) {
        await batch(mesh, make(), true);
        await batch(mesh, make(), false);
      }
      const put: { cpu: number; wall: number }[] = [];
      const each: { cpu: number; wall: number }[] = [];
      for (let r = 0; r < RUNS; r++) {
        // a fresh value each run (never put before: its one encode is in the figure), in alternating order
        if (r % 2 === 0) {
          put.push(await batch(mesh, make(), true));
          each.push(await batch(mesh, make(), false));
        } else {
          each.push(await batch(mesh, make(), false));
          put.push(await batch(mesh, make(), true));
        }
      }
      lines.push(row(name, "driver CPU", put.map((x) => x.cpu), each.map((x) => x.cpu)));
      lines.push(row(name, "wall", put.map((x) => x.wall), each.map((x) => x.wall)));
    }
    console.log(lines.join("\n"));
  } finally {
    node.child.kill("SIGKILL");
  }
}

const at = process.argv.indexOf("--server");
if (at >= 0) {
  const node = new NodeServer({ name: "n1" });
  const served = await serveFrames(node.handler, { port: 0, hostname: "127.0.0.1" });
  console.log(`PORT ${served.port}`);
} else await main();
