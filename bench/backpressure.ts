/**
 * What backpressure on by default costs: call throughput with the default bounds beside the same
 * workload with every bound `"unbounded"`, measured in the same run, the two taking turns.
 *
 *     bun bench/backpressure.ts
 *     deno run -A bench/backpressure.ts
 *     bun bench/backpressure.ts --rounds 9 --calls 20000 --ms 400
 *
 * Workloads (bursts of `--calls` calls, all awaited, repeated for `--ms` per measurement):
 * - `service`: calls to one in-process instance (`maxQueued` 100k vs `"unbounded"`);
 * - `op`: calls to an op with `maxConcurrency: 8` (`maxWaiting` 100k vs `"unbounded"`);
 * - `mesh`: calls to a plain op in a mesh with `maxConcurrentOps: 8` (`maxWaitingOps` 100k vs
 *   `"unbounded"`);
 * - `websocket`: calls (a tenth as many) to an instance on a node served in this process over a
 *   WebSocket (the node's `maxInFlight`/`maxInFlightBytes` and the service's `maxQueued` at their
 *   defaults vs `"unbounded"`).
 *
 * An A/A row (two bounded services against each other) shows the spread the machine alone gives.
 *
 * Each round runs bounded then unbounded (the order alternating between rounds); the figure is the
 * median over `--rounds` (default 7) of the per-round ratio bounded/unbounded of calls per second,
 * with the range. Target: the bounded throughput at least 0.95x the unbounded one.
 *
 * Beside it, the process's CPU time per call (`process.cpuUsage()`, user + system, over the same
 * bursts; the websocket node runs in this process, so both ends count) and the median of the
 * per-round ratios bounded/unbounded of it. On a machine shared with other work, wall time counts
 * the time this process waits for a core, CPU time does not: it resolves smaller differences (the
 * A/A row says how small).
 *
 * @module
 */
// deno-lint-ignore-file require-await
import process from "node:process";
import * as ta from "../mod.ts";
import { NodeServer } from "../server.ts";
import { serveFrames } from "../adapters/serve.ts";

function flag(name: string, dflt: string): string {
  const args = (globalThis as { Deno?: { args: string[] } }).Deno?.args ??
    (globalThis as { process?: { argv: string[] } }).process?.argv.slice(2) ?? [];
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
}

const ROUNDS = Number(flag("rounds", "7"));
const CALLS = Number(flag("calls", "20000"));
const MS = Number(flag("ms", "400"));

class Echo {
  async echo(x: number): Promise<number> {
    return x;
  }
}
const Bounded = ta.service({ name: "BpBenchBounded", maxConcurrency: 8 }, class BpBenchBounded extends Echo {});
// a second bounded service: bounded against bounded shows what the machine's noise alone gives
const Bounded2 = ta.service({ name: "BpBenchBounded2", maxConcurrency: 8 }, class BpBenchBounded2 extends Echo {});
const Unbounded = ta.service(
  { name: "BpBenchUnbounded", maxConcurrency: 8, maxQueued: "unbounded" },
  class BpBenchUnbounded extends Echo {},
);
const opBounded = ta.op({ name: "bpBenchOpBounded", maxConcurrency: 8 }, async (x: number) => x);
const opUnbounded = ta.op(
  { name: "bpBenchOpUnbounded", maxConcurrency: 8, maxWaiting: "unbounded" },
  async (x: number) => x,
);
const opPlain = ta.op({ name: "bpBenchOpPlain" }, async (x: number) => x);

/** Calls per second, and this process's CPU µs per call. */
interface Rate {
  perSecond: number;
  cpuUs: number;
}

/** Calls per second over bursts of `n` calls repeated for at least `--ms` (default 400) ms. */
async function burst(n: number, call: (i: number) => PromiseLike<unknown>): Promise<Rate> {
  const refs: PromiseLike<unknown>[] = new Array(n);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  let done = 0;
  do {
    for (let i = 0; i < n; i++) refs[i] = call(i);
    await Promise.all(refs);
    done += n;
  } while (performance.now() - t0 < MS);
  const perSecond = done / ((performance.now() - t0) / 1000);
  const cpu = process.cpuUsage(c0);
  return { perSecond, cpuUs: (cpu.user + cpu.system) / done };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function compare(
  name: string,
  bounded: () => Promise<Rate>,
  unbounded: () => Promise<Rate>,
): Promise<void> {
  await bounded();
  await unbounded(); // warm-up
  const ratios: number[] = [];
  const cpuRatios: number[] = [];
  const on: Rate[] = [];
  const off: Rate[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    let a: Rate, b: Rate;
    if (r % 2 === 0) {
      a = await bounded();
      b = await unbounded();
    } else {
      b = await unbounded();
      a = await bounded();
    }
    on.push(a);
    off.push(b);
    ratios.push(a.perSecond / b.perSecond);
    cpuRatios.push(a.cpuUs / b.cpuUs);
  }
  const f = (x: number) => Math.round(x).toLocaleString("en-US");
  const range = (xs: number[]) => `${Math.min(...xs).toFixed(3)}–${Math.max(...xs).toFixed(3)}`;
  console.log(
    `| ${name} | ${f(median(on.map((x) => x.perSecond)))} | ${f(median(off.map((x) => x.perSecond)))} | ` +
      `${median(ratios).toFixed(3)}x | ${range(ratios)} | ${median(on.map((x) => x.cpuUs)).toFixed(3)} | ` +
      `${median(off.map((x) => x.cpuUs)).toFixed(3)} | ${median(cpuRatios).toFixed(3)}x | ${range(cpuRatios)} |`,
  );
}

const runtime = (globalThis as { Bun?: unknown }).Bun ? "Bun" : "Deno";
console.log(`backpressure on vs "unbounded", ${runtime}, ${CALLS} calls per burst, ${ROUNDS} rounds\n`);
console.log(
  "| workload | bounded calls/s | unbounded calls/s | ratio (median) | ratio range | bounded CPU µs/call | " +
    "unbounded CPU µs/call | CPU ratio (median) | CPU ratio range |",
);
console.log("|---|---:|---:|---:|---:|---:|---:|---:|---:|");

{
  const b = Bounded.init(), u = Unbounded.init();
  await compare(
    "service (in-process)",
    () => burst(CALLS, (i) => b.echo.go(i)),
    () => burst(CALLS, (i) => u.echo.go(i)),
  );
  const b2 = Bounded2.init();
  await compare(
    "A/A control: service, bounded vs bounded",
    () => burst(CALLS, (i) => b.echo.go(i)),
    () => burst(CALLS, (i) => b2.echo.go(i)),
  );
}
await compare(
  "op, maxConcurrency 8",
  () => burst(CALLS, (i) => opBounded.go(i)),
  () => burst(CALLS, (i) => opUnbounded.go(i)),
);

{
  const meshOn = new ta.Mesh([new ta.MeshNode("local")], { maxConcurrentOps: 8 });
  const meshOff = new ta.Mesh([new ta.MeshNode("local")], { maxConcurrentOps: 8, maxWaitingOps: "unbounded" });
  await compare(
    "mesh, maxConcurrentOps 8",
    () => meshOn.run(() => burst(CALLS, (i) => opPlain.go(i))),
    () => meshOff.run(() => burst(CALLS, (i) => opPlain.go(i))),
  );
  await meshOn.close();
  await meshOff.close();
}

{
  const nodeOn = new NodeServer({ name: "on" });
  const nodeOff = new NodeServer({ name: "off", maxInFlight: "unbounded", maxInFlightBytes: "unbounded" });
  const sOn = await serveFrames(nodeOn.handler, { port: 0 });
  const sOff = await serveFrames(nodeOff.handler, { port: 0 });
  const meshOn = new ta.Mesh([new ta.MeshNode("on", { endpoint: sOn.url.replace("http", "ws") })]);
  const meshOff = new ta.Mesh([new ta.MeshNode("off", { endpoint: sOff.url.replace("http", "ws") })]);
  const n = Math.max(1, Math.floor(CALLS / 10));
  const hOn = await meshOn.run(async () => {
    const h = Bounded.init();
    await h.echo(0);
    return h;
  });
  const hOff = await meshOff.run(async () => {
    const h = Unbounded.init();
    await h.echo(0);
    return h;
  });
  await compare(
    "websocket node",
    () => meshOn.run(() => burst(n, (i) => hOn.echo.go(i))),
    () => meshOff.run(() => burst(n, (i) => hOff.echo.go(i))),
  );
  await meshOn.close();
  await meshOff.close();
  await sOn.close();
  await sOff.close();
  await nodeOn.drain();
  await nodeOff.drain();
}
