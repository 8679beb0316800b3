/**
 * In-process speed of the core, each workload beside a plain-Promise baseline measured in the same
 * run: fanout, chain (10k and 100k), diamond, sequential and concurrent service calls. Prints a
 * markdown table with the ratio, the target (Bun) and the Python ThinkAgain figure
 * (`shared/reference/seed-measured.md`).
 *
 *     bun bench/core.ts
 *     deno run -A bench/core.ts
 *     bun bench/core.ts --runs 21 --json out.json
 *     bun bench/core.ts --sustain-ms 500 --rounds 7    (the sustained table only: --only sustained)
 *
 * Two tables. **Forced GC**: each figure is the median of `--runs` timed runs (default 21) after
 * `--warmup` untimed ones (default 5). When a collector is reachable (`Bun.gc`, or `globalThis.gc`
 * under `--v8-flags=--expose-gc`) it runs before every timed run, so one run's garbage is not
 * billed to the next. **Sustained**: what a busy process sees. Each workload runs back to back for
 * `--sustain-ms` (default 500) after a warm-up of the same length, one event-loop turn between
 * runs, no forced GC: collection happens inside the period and is paid for. Ours and the baseline
 * take turns, `--rounds` times (default 7, the order alternating); the figure is the median over
 * the rounds, with the range of each round's ratio.
 *
 * @module
 */
// The workloads are async bodies that never await on purpose: they measure the machinery around a call.
// deno-lint-ignore-file require-await
import process from "node:process";
import { setImmediate } from "node:timers";
import * as ta from "../mod.ts";

// ---- arguments and helpers ----------------------------------------------------------------------

function flag(name: string, dflt: string): string {
  const args = (globalThis as { Deno?: { args: string[] } }).Deno?.args ??
    (globalThis as { process?: { argv: string[] } }).process?.argv.slice(2) ?? [];
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
}

const RUNS = Number(flag("runs", "21"));
const WARMUP = Number(flag("warmup", "5"));
const JSON_OUT = flag("json", "");
const SUSTAIN_MS = Number(flag("sustain-ms", "500"));
const ROUNDS = Number(flag("rounds", "7"));
/** `forced`, `sustained` or `both` (default): which tables to measure. */
const ONLY = flag("only", "both");
if (!(SUSTAIN_MS > 0)) throw new RangeError(`--sustain-ms must be a positive number, got ${SUSTAIN_MS}`);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new RangeError(`--rounds must be an integer ≥ 1, got ${ROUNDS}`);
if (!["forced", "sustained", "both"].includes(ONLY)) {
  throw new RangeError(`--only must be forced, sustained or both, got ${ONLY}`);
}
if (!Number.isInteger(RUNS) || RUNS < 5) throw new RangeError(`--runs must be an integer ≥ 5, got ${RUNS}`);

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

/** Median wall time in ms of `fn` over RUNS runs after WARMUP runs; `check` validates each result. */
async function timeIt<R>(fn: () => Promise<R>, check: (r: R) => void, runs = RUNS, warmup = WARMUP): Promise<number> {
  for (let i = 0; i < warmup; i++) check(await fn());
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    collect();
    const t0 = performance.now();
    const r = await fn();
    times.push(performance.now() - t0);
    check(r);
  }
  return median(times);
}

/** One event-loop turn (timers, I/O, finalizers get their chance), as between a server's requests. */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** CPU time this process has used, ms (user + system, every thread: the collector's too). */
const cpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/**
 * Sustained cost of `fn`, per run: wall ms and CPU ms over `periodMs` of runs back to back (a turn
 * between runs, no forced GC, so collection falls inside the period), after a warm-up as long. On a
 * machine whose cores are shared, wall time also counts the time other processes held the core; CPU
 * time counts only this process's work.
 */
async function sustainedMs(fn: () => Promise<unknown>, periodMs: number): Promise<{ wall: number; cpu: number }> {
  for (const measured of [false, true]) {
    let runs = 0;
    const t0 = performance.now(), c0 = cpuMs();
    let t = t0;
    do {
      await fn();
      runs++;
      await turn();
      t = performance.now();
    } while (t - t0 < periodMs);
    if (measured) return { wall: (t - t0) / runs, cpu: (cpuMs() - c0) / runs };
  }
  throw new Error("unreachable");
}

function expectEqual(what: string, want: unknown): (got: unknown) => void {
  return (got) => {
    if (got !== want) throw new Error(`${what}: expected ${String(want)}, got ${String(got)}`);
  };
}

// ---- workloads ----------------------------------------------------------------------------------

const N = 10_000;
const LONG = 100_000;
const BRANCHES = 1_000;

// thinkagain
const noop = ta.op(async function noop(x: number) {
  return x;
});
const inc = ta.op(async function inc(x: number) {
  return x + 1;
});
const source = ta.op(async function source() {
  return 1;
});
const branch = ta.op(async function branch(x: number, i: number) {
  return x + i;
});
const merge = ta.op(async function merge(xs: number[]) {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i];
  return s;
});
class Adder {
  n = 0;
  async add(x: number): Promise<number> {
    this.n += x;
    return this.n;
  }
}
const Svc = ta.service(Adder);
const svc = Svc.init();

// plain Promises: the same bodies, called directly
const pNoop = async (x: number) => x;
const pInc = async (x: number) => x + 1;
const pSource = async () => 1;
const pBranch = async (x: number, i: number) => x + i;
const pMerge = async (xs: number[]) => {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i];
  return s;
};
const plain = new Adder();

const sumTo = (n: number) => (n * (n - 1)) / 2;
const DIAMOND = BRANCHES * 1 + sumTo(BRANCHES);

async function fanout(): Promise<number> {
  const refs: ta.ObjectRef<number>[] = new Array(N);
  for (let i = 0; i < N; i++) refs[i] = noop.go(i);
  return (await Promise.all(refs)).length;
}
async function fanoutAll(): Promise<number> {
  const refs: ta.ObjectRef<number>[] = new Array(N);
  for (let i = 0; i < N; i++) refs[i] = noop.go(i);
  return (await ta.all(refs)).length;
}
async function fanoutBase(): Promise<number> {
  const ps: Promise<number>[] = new Array(N);
  for (let i = 0; i < N; i++) ps[i] = pNoop(i);
  return (await Promise.all(ps)).length;
}

function chain(n: number): () => Promise<number> {
  return async () => {
    let ref: number | ta.ObjectRef<number> = 0;
    for (let i = 0; i < n; i++) ref = inc.go(ref);
    return await ref;
  };
}
function chainBase(n: number): () => Promise<number> {
  return async () => {
    let x = 0;
    for (let i = 0; i < n; i++) x = await pInc(x);
    return x;
  };
}

async function diamond(): Promise<number> {
  const s = source.go();
  const bs: ta.ObjectRef<number>[] = new Array(BRANCHES);
  for (let i = 0; i < BRANCHES; i++) bs[i] = branch.go(s, i);
  return await merge.go(bs);
}
async function diamondBase(): Promise<number> {
  const s = pSource();
  const bs: Promise<number>[] = new Array(BRANCHES);
  for (let i = 0; i < BRANCHES; i++) bs[i] = s.then((x) => pBranch(x, i));
  return await pMerge(await Promise.all(bs));
}

async function serviceSeq(): Promise<number> {
  let last = 0;
  for (let i = 0; i < N; i++) last = await svc.add.go(i);
  return last;
}
async function serviceSeqBase(): Promise<number> {
  let last = 0;
  for (let i = 0; i < N; i++) last = await plain.add(i);
  return last;
}
async function serviceConc(): Promise<number> {
  const refs: ta.ObjectRef<number>[] = new Array(N);
  for (let i = 0; i < N; i++) refs[i] = svc.add.go(i);
  return (await Promise.all(refs)).length;
}
async function serviceConcBase(): Promise<number> {
  const ps: Promise<number>[] = new Array(N);
  for (let i = 0; i < N; i++) ps[i] = plain.add(i);
  return (await Promise.all(ps)).length;
}

// ---- run and report -----------------------------------------------------------------------------

/** How a median time (ms) becomes the figure shown. */
type Unit = { label: string; of: (ms: number) => number; higherIsBetter: boolean };
const perSecond = (label: string, count: number): Unit => ({
  label,
  of: (ms) => (count / ms) * 1000,
  higherIsBetter: true,
});
const perHop = (count: number): Unit => ({ label: "µs/hop", of: (ms) => (ms * 1000) / count, higherIsBetter: false });
const millis: Unit = { label: "ms", of: (ms) => ms, higherIsBetter: false };

interface Workload {
  key: string;
  name: string;
  unit: Unit;
  run: () => Promise<unknown>;
  base: () => Promise<unknown>;
  check: (r: unknown) => void;
  /** Target on Bun, in the unit's figure, or undefined for none. */
  target?: number;
  /** The Python seed's figure and its plain-asyncio baseline, in the same unit. */
  seed?: [number, number];
  runs?: number;
  warmup?: number;
  /** Tasks one run submits (for the cost per task). */
  tasks: number;
}

const workloads: Workload[] = [
  {
    key: "fanout",
    name: "fanout: 10k no-op `op.go(i)`, await all",
    tasks: N,
    unit: perSecond("ops/s", N),
    run: fanout,
    base: fanoutBase,
    check: expectEqual("fanout results", N),
    target: 1e6,
    seed: [46_140, 359_100],
  },
  {
    key: "fanout ta.all",
    name: "fanout: 10k no-op `op.go(i)`, await `ta.all(refs)`",
    tasks: N,
    unit: perSecond("ops/s", N),
    run: fanoutAll,
    base: fanoutBase,
    check: expectEqual("fanout results", N),
    target: 1e6,
  },
  {
    key: "chain 10k",
    name: "chain: 10k dependent ops `ref = inc.go(ref)`",
    tasks: N,
    unit: perHop(N),
    run: chain(N),
    base: chainBase(N),
    check: expectEqual("10k chain", N),
    target: 1,
    seed: [11.31, 0.09],
  },
  {
    key: "chain 100k",
    name: "chain: 100k dependent ops (must complete)",
    tasks: LONG,
    unit: perHop(LONG),
    run: chain(LONG),
    base: chainBase(LONG),
    check: expectEqual("100k chain", LONG),
    target: 1,
    runs: 5,
    warmup: 1,
  },
  {
    key: "diamond",
    name: "diamond: 1 → 1,000 branches → 1 merge of an array of refs",
    tasks: BRANCHES + 2,
    unit: millis,
    run: diamond,
    base: diamondBase,
    check: expectEqual("diamond sum", DIAMOND),
    target: 1,
    seed: [9.84, 2.57],
  },
  {
    key: "service seq",
    name: "service: 10k sequential `await svc.add.go(i)`",
    tasks: N,
    unit: perSecond("calls/s", N),
    run: serviceSeq,
    base: serviceSeqBase,
    check: () => {},
    target: 1e6,
    seed: [45_410, 10_700_000],
  },
  {
    key: "service conc",
    name: "service: 10k concurrent `svc.add.go(i)`, await all",
    tasks: N,
    unit: perSecond("calls/s", N),
    run: serviceConc,
    base: serviceConcBase,
    check: expectEqual("concurrent calls", N),
    target: 1e6,
    seed: [37_690, 343_700],
  },
];

function fmt(v: number): string {
  if (v >= 100) return Math.round(v).toLocaleString("en-US");
  if (v >= 10) return v.toFixed(1);
  if (v >= 1) return v.toFixed(2);
  return v.toFixed(3);
}

/** Cost of thinkagain relative to the baseline (> 1: slower), from the figures. */
function ratio(unit: Unit, ours: number, base: number): number {
  return unit.higherIsBetter ? base / ours : ours / base;
}

function runtimeName(): string {
  const g = globalThis as { Bun?: { version: string }; Deno?: { version: { deno: string; v8: string } } };
  if (g.Bun) return `Bun ${g.Bun.version}`;
  if (g.Deno) return `Deno ${g.Deno.version.deno} (V8 ${g.Deno.version.v8})`;
  return "unknown runtime";
}

interface Row {
  key: string;
  workload: string;
  unit: string;
  thinkagain: number;
  baseline: number;
  ratio: number;
  target: number | undefined;
  met: boolean | undefined;
  seed: number | undefined;
  seedRatio: number | undefined;
}

const rows: Row[] = [];
for (const w of ONLY === "sustained" ? [] : workloads) {
  // interleave: baseline first, then ours, so both see the same warm process
  const baseMs = await timeIt(w.base, w.check, w.runs, w.warmup);
  const ourMs = await timeIt(w.run, w.check, w.runs, w.warmup);
  const ours = w.unit.of(ourMs), base = w.unit.of(baseMs);
  const met = w.target === undefined ? undefined : w.unit.higherIsBetter ? ours >= w.target : ours <= w.target;
  rows.push({
    key: w.key,
    workload: w.name,
    unit: w.unit.label,
    thinkagain: ours,
    baseline: base,
    ratio: ratio(w.unit, ours, base),
    target: w.target,
    met,
    seed: w.seed?.[0],
    seedRatio: w.seed === undefined ? undefined : ratio(w.unit, w.seed[0], w.seed[1]),
  });
}

const cmp = (r: Row) => (r.unit === "µs/hop" || r.unit === "ms" ? "≤" : "≥");
if (ONLY !== "sustained") printForced();

function printForced(): void {
  console.log(`### ${runtimeName()}, median of ${RUNS} runs after ${WARMUP} warm-up (100k chain: 5 after 1)\n`);
  console.log(
    "ratio = thinkagain cost ÷ plain-Promise cost (1.0 = as fast as the baseline; the seed's ratio is against plain asyncio)\n",
  );
  console.log("| workload | thinkagain | baseline | ratio | target (Bun) | seed (Python ThinkAgain) |");
  console.log("|---|---|---|---|---|---|");
  for (const r of rows) {
    const target = r.target === undefined ? "—" : `${cmp(r)} ${fmt(r.target)} ${r.met ? "✅" : "❌"}`;
    const seed = r.seed === undefined ? "—" : `${fmt(r.seed)} ${r.unit} (${r.seedRatio!.toFixed(1)}×)`;
    console.log(
      `| ${r.workload} | ${fmt(r.thinkagain)} ${r.unit} | ${fmt(r.baseline)} ${r.unit} | ${
        r.ratio.toFixed(2)
      }× | ${target} | ${seed} |`,
    );
  }
  const missed = rows.filter((r) => r.met === false);
  console.log(
    missed.length === 0
      ? "\nAll targets met."
      : `\nMissed: ${
        missed.map((r) => `${r.key} (${fmt(r.thinkagain)} ${r.unit}, target ${cmp(r)} ${fmt(r.target!)})`).join("; ")
      }`,
  );
}

/** A workload's sustained figures: µs per task (ours, baseline) and the ratio, median and range over rounds. */
interface SustainedRow {
  key: string;
  workload: string;
  usPerTask: number;
  baseUsPerTask: number;
  ratio: number;
  ratioMin: number;
  ratioMax: number;
  /** The same, in CPU time. */
  cpuUsPerTask: number;
  baseCpuUsPerTask: number;
  cpuRatio: number;
  cpuRatioMin: number;
  cpuRatioMax: number;
}

const sustained: SustainedRow[] = [];
for (const w of ONLY === "forced" ? [] : workloads) {
  const ours: { wall: number; cpu: number }[] = [], base: { wall: number; cpu: number }[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    // the order alternates, so neither side always runs on the other's garbage
    if (round % 2 === 0) {
      base.push(await sustainedMs(w.base, SUSTAIN_MS));
      ours.push(await sustainedMs(w.run, SUSTAIN_MS));
    } else {
      ours.push(await sustainedMs(w.run, SUSTAIN_MS));
      base.push(await sustainedMs(w.base, SUSTAIN_MS));
    }
  }
  const ratios = ours.map((o, i) => o.wall / base[i].wall);
  const cpuRatios = ours.map((o, i) => o.cpu / base[i].cpu);
  const perTask = (xs: number[]) => (median(xs) * 1000) / w.tasks;
  sustained.push({
    key: w.key,
    workload: w.name,
    usPerTask: perTask(ours.map((o) => o.wall)),
    baseUsPerTask: perTask(base.map((b) => b.wall)),
    ratio: median(ratios),
    ratioMin: Math.min(...ratios),
    ratioMax: Math.max(...ratios),
    cpuUsPerTask: perTask(ours.map((o) => o.cpu)),
    baseCpuUsPerTask: perTask(base.map((b) => b.cpu)),
    cpuRatio: median(cpuRatios),
    cpuRatioMin: Math.min(...cpuRatios),
    cpuRatioMax: Math.max(...cpuRatios),
  });
}
if (sustained.length > 0) {
  console.log(
    `\n### ${runtimeName()}, sustained: ${SUSTAIN_MS} ms of back-to-back runs per side, ${ROUNDS} rounds, no forced GC\n`,
  );
  console.log(
    "µs per task = time ÷ tasks submitted, collection included (the baseline: per plain async call), wall " +
      "time and this process's CPU time; ratio = ours ÷ baseline per round, median (range)\n",
  );
  console.log(
    "| workload | wall µs/task | baseline wall µs | wall ratio (range) | CPU µs/task | baseline CPU µs | CPU ratio (range) |",
  );
  console.log("|---|---|---|---|---|---|---|");
  const range = (m: number, lo: number, hi: number) => `${m.toFixed(2)}× (${lo.toFixed(2)}–${hi.toFixed(2)})`;
  for (const r of sustained) {
    console.log(
      `| ${r.workload} | ${r.usPerTask.toFixed(3)} | ${r.baseUsPerTask.toFixed(3)} | ${
        range(r.ratio, r.ratioMin, r.ratioMax)
      } | ${r.cpuUsPerTask.toFixed(3)} | ${r.baseCpuUsPerTask.toFixed(3)} | ${
        range(r.cpuRatio, r.cpuRatioMin, r.cpuRatioMax)
      } |`,
    );
  }
}

if (JSON_OUT !== "") {
  const { writeFileSync } = await import("node:fs");
  writeFileSync(
    JSON_OUT,
    JSON.stringify(
      { runtime: runtimeName(), runs: RUNS, warmup: WARMUP, rows, sustainMs: SUSTAIN_MS, rounds: ROUNDS, sustained },
      null,
      2,
    ),
  );
}
