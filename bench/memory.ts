/**
 * Memory of a 100k fanout: RSS before, peak RSS while 100k refs are in flight and held, and RSS
 * (and JS heap) after the refs are dropped and the collector ran; beside the same for 100k plain
 * Promises. Each case runs in a fresh process of the same runtime (this file re-runs itself with
 * `--case`), so one case's heap never inflates the next.
 *
 *     bun bench/memory.ts
 *     deno run -A --v8-flags=--expose-gc bench/memory.ts
 *
 * Peak RSS is the kernel's high-water mark (`VmHWM` in `/proc/self/status`, reset before the run
 * through `/proc/self/clear_refs`) where Linux offers it, else the largest RSS sampled during the
 * run. Without a reachable collector (`Bun.gc`, or `globalThis.gc` under `--expose-gc`) the
 * "after" figures are not meaningful, and the report says so.
 *
 * @module
 */
// The workloads are async bodies that never await on purpose: they measure the machinery around a call.
// deno-lint-ignore-file require-await
import process from "node:process";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as ta from "../mod.ts";

const N = 100_000;
const MiB = 1024 * 1024;

const g = globalThis as {
  Bun?: { gc(force: boolean): void; version: string };
  Deno?: { args: string[]; version: { deno: string } };
  gc?: () => void;
};
const argv: string[] = g.Deno?.args ?? process.argv.slice(2);
const caseName = argv.includes("--case") ? argv[argv.indexOf("--case") + 1] : undefined;
const hasGc = g.Bun !== undefined || typeof g.gc === "function";

async function collect(): Promise<void> {
  // a few passes with turns of the event loop between, so finalizers and weak refs settle
  for (let i = 0; i < 4; i++) {
    if (g.Bun !== undefined) g.Bun.gc(true);
    else g.gc?.();
    await new Promise((r) => setTimeout(r, 5));
  }
}

function rss(): number {
  return process.memoryUsage().rss;
}

function heapUsed(): number {
  return process.memoryUsage().heapUsed;
}

/** Resets the kernel's peak-RSS mark; false where that is not possible (not Linux, no permission). */
function resetPeak(): boolean {
  try {
    writeFileSync("/proc/self/clear_refs", "5");
    return true;
  } catch {
    return false;
  }
}

function kernelPeak(): number | undefined {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

// ---- the cases (one per process) ------------------------------------------------------------------

const noop = ta.op(async function noop(x: number) {
  return x;
});
const pNoop = async (x: number) => x;

/** Submits N calls and awaits them all; returns the largest RSS sampled while they were held. */
async function fanout(
  make: (i: number) => PromiseLike<number>,
  waitAll: (refs: PromiseLike<number>[]) => Promise<number[]>,
): Promise<number> {
  let refs: PromiseLike<number>[] | undefined = new Array(N);
  for (let i = 0; i < N; i++) refs[i] = make(i);
  let peak = rss(); // all submitted, none run yet
  const values = await waitAll(refs);
  peak = Math.max(peak, rss()); // all settled, all still held
  if (values.length !== N || values[N - 1] !== N - 1) throw new Error("fanout returned wrong results");
  refs = undefined;
  return peak;
}

async function runCase(name: string): Promise<void> {
  const make = name.startsWith("thinkagain") ? (i: number) => noop.go(i) : (i: number) => pNoop(i);
  // "thinkagain all" waits with ta.all (no promise per ref) instead of Promise.all
  const waitAll = name === "thinkagain all"
    ? (refs: PromiseLike<number>[]) => ta.all(refs as ta.ObjectRef<number>[])
    : (refs: PromiseLike<number>[]) => Promise.all(refs);
  // warm the code path (JIT, module state) so the baseline already includes it
  for (let i = 0; i < 3; i++) {
    const refs: PromiseLike<number>[] = [];
    for (let j = 0; j < 1000; j++) refs.push(make(j));
    await waitAll(refs);
  }
  await collect();
  const before = rss(), heapBefore = heapUsed();
  const resettable = resetPeak();
  const sampledPeak = await fanout(make, waitAll);
  const hwm = resettable ? kernelPeak() : undefined;
  const peak = Math.max(sampledPeak, hwm ?? 0);
  await collect();
  const after = rss(), heapAfter = heapUsed();
  console.log(
    JSON.stringify({ name, before, peak, after, heapBefore, heapAfter, peakSource: hwm ? "VmHWM" : "sampled", hasGc }),
  );
}

// ---- the driver ---------------------------------------------------------------------------------

interface Result {
  name: string;
  before: number;
  peak: number;
  after: number;
  heapBefore: number;
  heapAfter: number;
  peakSource: string;
  hasGc: boolean;
}

function spawnCase(name: string, extra: string[]): Result {
  const self = fileURLToPath(import.meta.url);
  const args = g.Deno !== undefined
    ? ["run", "-A", "--v8-flags=--expose-gc", self, "--case", name]
    : [...extra, self, "--case", name];
  const r = spawnSync(process.execPath, args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`memory case "${name}" failed (exit ${r.status}): ${r.stderr}`);
  const line = r.stdout.trim().split("\n").pop()!;
  return JSON.parse(line) as Result;
}

const mib = (b: number) => (b / MiB).toFixed(1);

if (caseName !== undefined) {
  await runCase(caseName);
} else {
  const runtime = g.Bun !== undefined
    ? `Bun ${g.Bun.version}`
    : g.Deno !== undefined
    ? `Deno ${g.Deno.version.deno}`
    : "unknown";
  const variants: Array<[string, string[]]> = [["", []]];
  if (g.Bun !== undefined) variants.push([" (`--smol`)", ["--smol"]]);
  console.log(`### Memory, ${runtime}: 100k fanout of a no-op, each case in a fresh process\n`);
  console.log(
    "| case | RSS before | peak RSS | peak − before | RSS after drop + GC | after − before | JS heap before → after |",
  );
  console.log("|---|---|---|---|---|---|---|");
  let gcMissing = false;
  const results: Record<string, Result> = {};
  for (const [suffix, extra] of variants) {
    for (const name of ["thinkagain", "thinkagain all", "plain Promise"]) {
      const r = spawnCase(name, extra);
      results[name + suffix] = r;
      gcMissing ||= !r.hasGc;
      console.log(
        `| ${
          name === "thinkagain"
            ? "thinkagain `op.go(i)`, `Promise.all`"
            : name === "thinkagain all"
            ? "thinkagain `op.go(i)`, `ta.all`"
            : "plain `async` calls"
        }${suffix} | ${mib(r.before)} MiB | ${mib(r.peak)} MiB | ${mib(r.peak - r.before)} MiB | ${
          mib(r.after)
        } MiB | ${mib(r.after - r.before)} MiB | ${mib(r.heapBefore)} → ${mib(r.heapAfter)} MiB |`,
      );
    }
  }
  // The runtime alone is ~55 MiB (Bun) before any work, so the target reads as growth over the
  // process's own baseline; "back to baseline" allows what plain Promises also leave behind (the
  // allocator keeps freed pages), and asks the JS heap to return to within 1 MiB of where it started.
  const ours = results["thinkagain"], plainP = results["plain Promise"];
  const grew = ours.peak - ours.before;
  const residual = ours.after - ours.before, plainResidual = plainP.after - plainP.before;
  const heapBack = ours.heapAfter - ours.heapBefore <= MiB;
  console.log(
    `\nTarget (Bun): peak − before ≤ 60 MiB: ${mib(grew)} MiB ${grew <= 60 * MiB ? "✅" : "❌"}; ` +
      `back to baseline after the drop: RSS +${mib(residual)} MiB (plain Promises +${mib(plainResidual)} MiB), ` +
      `JS heap ${heapBack ? "back" : "not back"} ${heapBack && residual <= plainResidual + 2 * MiB ? "✅" : "❌"}`,
  );
  if (gcMissing) console.log("No collector was reachable: the 'after' figures are not meaningful.");
}
