/**
 * What an open dashboard costs the core: the fanout of 10k no-op ops (`op.go(i)` in a mesh, await
 * all) with nobody listening; with a listener that records every task (the aggregator, no budget:
 * what recording itself costs the core); and with a dashboard served on a port and its event stream
 * read the way a browser reads it (a snapshot every second, in this process), under its recording
 * budget. Each mode beside plain Promises; the modes are interleaved in blocks so drift over the run
 * is billed to none of them. Prints a markdown table.
 *
 *     bun bench/dashboard.ts
 *     deno run -A bench/dashboard.ts
 *     bun bench/dashboard.ts --blocks 12 --runs 5
 *
 * Each block times `--runs` runs of every mode in turn (each after 2 untimed ones; the order
 * rotating from block to block, forwards and backwards) after 5 warm-up runs per mode. A mode's
 * throughput is the median over all its runs; its cost is the median over blocks of (its median in
 * the block / nobody listening's median in the same block), so a machine that slows down or speeds
 * up during the run is not billed to a mode. The same ratio is also taken in the process's CPU time
 * (`process.cpuUsage`, all its threads): where other jobs share the cores, wall time also counts the
 * time the process waited for a core, CPU time only what the run spent. When a collector is
 * reachable (`Bun.gc`, or `globalThis.gc` under `--v8-flags=--expose-gc`) it runs before every timed
 * run.
 *
 * @module
 */
// The bodies are async functions that never await on purpose: they measure the machinery around a call.
// deno-lint-ignore-file require-await
import process from "node:process";
import * as ta from "../mod.ts";
import { onTaskEvent } from "../core/events.ts";
import { TaskAggregator } from "../adapters/dashboard/aggregate.ts";
import { serveDashboard } from "../adapters/dashboard/mod.ts";

function flag(name: string, dflt: string): string {
  const args = (globalThis as { Deno?: { args: string[] } }).Deno?.args ??
    (globalThis as { process?: { argv: string[] } }).process?.argv.slice(2) ?? [];
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
}

const BLOCKS = Number(flag("blocks", "48"));
const RUNS = Number(flag("runs", "3"));
if (!Number.isInteger(BLOCKS) || BLOCKS < 2) throw new RangeError(`--blocks must be an integer ≥ 2, got ${BLOCKS}`);
if (!Number.isInteger(RUNS) || RUNS < 1) throw new RangeError(`--runs must be an integer ≥ 1, got ${RUNS}`);
const N = 10_000;
/** Untimed runs after a mode is attached, before its timed ones. */
const SETTLE_RUNS = 2;

const bunGc = (globalThis as { Bun?: { gc(force: boolean): void } }).Bun?.gc;
const v8Gc = (globalThis as { gc?: () => void }).gc;
function collect(): void {
  if (bunGc !== undefined) bunGc(true);
  else if (v8Gc !== undefined) v8Gc();
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const noop = ta.op(async function dashboardBenchNoop(x: number) {
  return x;
});
const pNoop = async (x: number) => x;

const mesh = new ta.Mesh([new ta.MeshNode("local")], { name: "bench" });

async function fanout(): Promise<number> {
  return await mesh.run(async () => {
    const refs: ta.ObjectRef<number>[] = new Array(N);
    for (let i = 0; i < N; i++) refs[i] = noop.go(i);
    return (await Promise.all(refs)).length;
  });
}
async function fanoutBase(): Promise<number> {
  const ps: Promise<number>[] = new Array(N);
  for (let i = 0; i < N; i++) ps[i] = pNoop(i);
  return (await Promise.all(ps)).length;
}

/** One way the process runs: what is attached while its runs are timed. */
interface Mode {
  name: string;
  attach(): Promise<void>;
  detach(): Promise<void>;
}

const dashboard = await serveDashboard(mesh, { lingerMs: 0 });
let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
let reading: Promise<void> | undefined;
let snapshotsRead = 0;
const shares: number[] = [];
let offListener: (() => void) | undefined;
let aggregator: TaskAggregator | undefined;

const modes: Mode[] = [
  { name: "nobody listening", attach: async () => {}, detach: async () => {} },
  {
    name: "every task recorded (aggregator, no budget)",
    attach: async () => {
      const agg = new TaskAggregator();
      aggregator = agg;
      offListener = onTaskEvent((e) => agg.record(e));
    },
    detach: async () => {
      offListener?.();
      offListener = undefined;
    },
  },
  {
    name: "dashboard open, its event stream read",
    attach: async () => {
      const res = await fetch(`${dashboard.url}/events`);
      reader = res.body!.getReader();
      await reader.read(); // the first snapshot: listening from here on
      snapshotsRead++;
      reading = (async () => {
        for (;;) {
          const { done } = await reader!.read();
          if (done) return;
          snapshotsRead++;
        }
      })();
      if (!dashboard.app.listening) throw new Error("the dashboard should listen while its stream is read");
    },
    detach: async () => {
      shares.push(dashboard.app.snapshot().recording.share);
      await reader?.cancel();
      await reading?.catch(() => {});
      for (let i = 0; i < 1000 && dashboard.app.listening; i++) await new Promise((r) => setTimeout(r, 5));
      if (dashboard.app.listening) throw new Error("the dashboard should stop listening once its page closed");
    },
  },
];

const check = (n: number) => {
  if (n !== N) throw new Error(`expected ${N} results, got ${n}`);
};
const times = new Map<string, number[]>(modes.map((m) => [m.name, []]));
/** Per mode, per block: its median in the block over nobody listening's. */
const ratios = new Map<string, number[]>(modes.map((m) => [m.name, []]));
/** The same ratios in the process's CPU time (what the run itself spent, not the machine's other jobs). */
const cpuRatios = new Map<string, number[]>(modes.map((m) => [m.name, []]));
const baseTimes: number[] = [];
const startedAt = performance.now();

for (const m of modes) {
  await m.attach();
  for (let i = 0; i < 5; i++) check(await fanout());
  await m.detach();
}
for (let i = 0; i < 5; i++) check(await fanoutBase());
for (let b = 0; b < BLOCKS; b++) {
  // rotate the order each block, forwards in even blocks and backwards in odd ones, so that no mode
  // always runs first, last, or after the same other mode (what one leaves behind, garbage and
  // deoptimized code, is billed to whichever runs next)
  const inBlock = new Map<string, number>();
  const cpuInBlock = new Map<string, number>();
  for (let k = 0; k < modes.length; k++) {
    const j = b % 2 === 0 ? b / 2 + k : Math.floor(b / 2) - k;
    const m = modes[((j % modes.length) + modes.length) % modes.length];
    await m.attach();
    for (let r = 0; r < SETTLE_RUNS; r++) check(await fanout());
    const mine: number[] = [];
    const cpu: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      collect();
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      const n = await fanout();
      mine.push(performance.now() - t0);
      const c = process.cpuUsage(c0);
      cpu.push(c.user + c.system);
      check(n);
    }
    cpuInBlock.set(m.name, median(cpu));
    await m.detach();
    times.get(m.name)!.push(...mine);
    inBlock.set(m.name, median(mine));
  }
  for (const m of modes) {
    ratios.get(m.name)!.push(inBlock.get(m.name)! / inBlock.get(modes[0].name)!);
    cpuRatios.get(m.name)!.push(cpuInBlock.get(m.name)! / cpuInBlock.get(modes[0].name)!);
  }
  for (let r = 0; r < RUNS; r++) {
    collect();
    const t0 = performance.now();
    const n = await fanoutBase();
    baseTimes.push(performance.now() - t0);
    check(n);
  }
}
const elapsedS = (performance.now() - startedAt) / 1000;
if (aggregator === undefined || aggregator.snapshot().names.length === 0) throw new Error("the aggregator saw no task");

const g = globalThis as { Bun?: { version: string }; Deno?: { version: { deno: string; v8: string } } };
const runtime = g.Bun ? `Bun ${g.Bun.version}` : g.Deno ? `Deno ${g.Deno.version.deno} (V8 ${g.Deno.version.v8})` : "?";
const base = median(baseTimes);
console.log(`### ${runtime}: fanout of ${N.toLocaleString("en-US")} no-op ops in a mesh`);
console.log("");
console.log(
  `${BLOCKS} blocks × ${RUNS} runs per mode, modes interleaved; cost: the median over blocks of the ` +
    `ratio to nobody listening in the same block; ${snapshotsRead} snapshots read from the event stream ` +
    `over ${elapsedS.toFixed(0)} s`,
);
console.log("");
console.log("| mode | ops/s | vs plain Promises | cost vs nobody listening | cost in CPU time |");
console.log("|---|---:|---:|---:|---:|");
for (const m of modes) {
  const ms = median(times.get(m.name)!);
  const pct = (xs: number[]) => `${((median(xs) - 1) * 100).toFixed(1)} %`;
  const cost = m === modes[0] ? "–" : pct(ratios.get(m.name)!);
  const cpuCost = m === modes[0] ? "–" : pct(cpuRatios.get(m.name)!);
  console.log(
    `| ${m.name} | ${Math.round((N / ms) * 1000).toLocaleString("en-US")} | ${(ms / base).toFixed(1)}× | ${cost} | ` +
      `${cpuCost} |`,
  );
}
console.log(`| plain Promises (baseline) | ${Math.round((N / base) * 1000).toLocaleString("en-US")} | 1× | |`);
console.log("");
console.log(
  `The open dashboard recorded ${(median(shares) * 100).toFixed(1)} % of the tasks (median over blocks; its ` +
    `budget: ${(dashboard.app.snapshot().recording.maxOverhead * 100).toFixed(0)} % of the time).`,
);

await dashboard.close();
await mesh.close();
