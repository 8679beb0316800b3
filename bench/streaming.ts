/**
 * Streaming benchmark: a stream of 16-byte items from a node (a child process of the same runtime)
 * to this driver over one WebSocket, beside a raw hono WebSocket server that pushes the same items
 * with the same batching (`CHUNK_ITEMS` per message, CBOR-encoded, no credit, no protocol) to a client
 * that decodes each message and takes its items one by one, in the same run; and the time to a
 * stream's first item beside a plain call's round trip (both p50). The raw push runs three ways:
 * its items made by a plain loop and taken by a plain loop (the baseline since the streaming issue);
 * made by the same async generator as the op's, read with `for await` on the server; and that, with
 * the client handing each item to a `for await` through a plain async iterator — the work a stream's
 * two ends must do whatever carries it, with no protocol, credit or chunk of ours.
 *
 *   npx bun bench/streaming.ts
 *   npx deno run -A bench/streaming.ts
 *   npx bun bench/streaming.ts --parts      (CPU per item of each end, in one process)
 *   BENCH_WINDOW=1024 npx bun bench/streaming.ts   (another credit window, in items)
 *   BENCH_WARM_MS=0 npx bun bench/streaming.ts     (each side streams for 2 s before the runs by default; 0:
 *                                                   one stream of a quarter of the items, as the figures
 *                                                   before the eleventh session were measured)
 *   BENCH_WAKE=1 npx bun bench/streaming.ts        (each measured stream right after one of the same side: after
 *                                                   ~150 ms idle a stream costs both ends more CPU here)
 *   BENCH_ROTATE=1 npx bun bench/streaming.ts      (each side first in turn: by default the raw child's runs
 *                                                   from the generator always follow its plain push, so
 *                                                   only ours and the plain push run after their server idled)
 *   BENCH_PRODUCER=sync npx bun bench/streaming.ts (our op a generator, `function*`, whose items are made by a
 *                                                   plain loop as the plain push's are, instead of an async
 *                                                   generator: like for like with the plain push)
 *   npx bun bench/streaming.ts --micro      (the pieces: a chunk's encoding, a bare generator, views)
 *   npx bun bench/streaming.ts --first      (a node's handler, in process: a one-item stream's answer)
 *   BENCH_PROFILE=node npx bun bench/streaming.ts  (the node runs under `bun --cpu-prof --cpu-prof-md`; its
 *                                                   profile is written into BENCH_PROFILE_DIR, default `.`,
 *                                                   when the bench ends)
 *
 * Prints medians over the runs (alternating ours and raw) with their spread, and the ratios; and
 * the CPU time per item each process spent over all the throughput runs (the server child's from
 * /proc, Linux only; this process's from `process.cpuUsage()`), which the load of other processes
 * on the machine does not inflate as it does wall time; and the minor page faults each end took per
 * 1,000 items (memory touched afresh: on Bun mostly what mimalloc gave back while the process idled).
 * Timing claims live here, never in tests.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import process from "node:process";
import { Hono } from "hono";
import { loadAdapter, serveFrames } from "../adapters/serve.ts";
import { decode, encode, encodeFrame } from "../core/codec.ts";
import { Stream } from "../core/stream.ts";
import { decodeChunk, DEFAULT_STREAM_WINDOW, RemoteChunks, StreamOutlets } from "../transports/stream_wire.ts";
import { CHUNK_ITEMS } from "../transports/stream_chunk.ts";
import * as ta from "../mod.ts";
import { NodeServer } from "../server.ts";
import { startBenchChild } from "./_child.ts";

/** Items per stream in the throughput runs. */
const ITEMS = Number(process.env.BENCH_ITEMS ?? 200_000);
/** Throughput runs of each side. */
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
/** Milliseconds each side streams before the measured runs (`BENCH_WARM_MS`, default 2000). */
const WARM_MS = Number(process.env.BENCH_WARM_MS ?? 2000);
/** `BENCH_WAKE=1`: an unmeasured stream of the same side right before each measured one. */
const WAKE = process.env.BENCH_WAKE === "1";
/**
 * `BENCH_ROTATE=1`: each round starts with the next of the four sides, instead of ours alternating
 * first and last around the three raw pushes (which always run in that order, so the raw child idles
 * only before the first of them).
 */
const ROTATE = process.env.BENCH_ROTATE === "1";
/** Round trips per latency sample. */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2000);
/** The mesh's credit window in items (`BENCH_WINDOW`; default: the stream's default window). */
const WINDOW = process.env.BENCH_WINDOW === undefined ? undefined : Number(process.env.BENCH_WINDOW);
/** `BENCH_PRODUCER=sync`: our op is a generator (`function*`), not an async generator. */
const SYNC_PRODUCER = process.env.BENCH_PRODUCER === "sync";
/**
 * `BENCH_PROFILE=node` (Bun): the node child runs under `bun --cpu-prof --cpu-prof-md` and exits on
 * SIGTERM at the end, so that its profile (each function's self time, native ones such as `send`
 * included) is written into `BENCH_PROFILE_DIR` (default `.`).
 */
const PROFILE_NODE = process.env.BENCH_PROFILE === "node" && !("Deno" in globalThis);
/** Items per raw message: what a chunk holds at most (the same batching as ours). */
const BATCH = CHUNK_ITEMS;

/** `n` items of 16 bytes, each made when asked for. */
const benchItems = ta.op({ name: "benchItems", remote: true }, async function* (n: number) {
  for (let i = 0; i < n; i++) {
    const item = new Uint8Array(16);
    item[0] = i & 0xff;
    yield item;
  }
});

/**
 * The same items from a generator (`function*`): made by a plain loop as each is asked for, as the
 * plain push makes them (`BENCH_PRODUCER=sync`).
 */
const benchItemsSync = ta.op({ name: "benchItemsSync", remote: true }, function* (n: number) {
  for (let i = 0; i < n; i++) {
    const item = new Uint8Array(16);
    item[0] = i & 0xff;
    yield item;
  }
});

/** One 16-byte item: a plain call, the baseline of a stream's first item. */
const benchOne = ta.op({ name: "benchOne", remote: true }, () => new Uint8Array(16));

// ---- server side (child process) -----------------------------------------------------------------

async function runServer(kind: string): Promise<void> {
  if (kind === "node") {
    const node = new NodeServer({ name: "bench" });
    const served = await serveFrames(node.handler, { port: 0 });
    // a profiled node exits when told, so that the runtime writes its profile
    if (PROFILE_NODE) process.on("SIGTERM", () => process.exit(0));
    console.log(`PORT ${served.port}`);
    return;
  }
  const adapter = await loadAdapter();
  const app = new Hono();
  app.get(
    "/ws",
    adapter.upgradeWebSocket(() => ({
      async onMessage(evt, ws) {
        // asked for n items: the same items as benchItems makes, BATCH to a message; "g<n>": made by
        // the same async generator as benchItems's, read by `for await`, else by a plain loop
        const data = evt.data;
        const text = typeof data === "string" ? data : new TextDecoder().decode(data as ArrayBuffer);
        let batch: Uint8Array[] = [];
        if (text.startsWith("g")) {
          for await (const item of sixteenByteItems(Number(text.slice(1)))) {
            batch.push(item);
            if (batch.length === BATCH) {
              ws.send(encode(batch) as Uint8Array<ArrayBuffer>);
              batch = [];
            }
          }
          if (batch.length > 0) ws.send(encode(batch) as Uint8Array<ArrayBuffer>);
          return;
        }
        const n = Number(text);
        for (let i = 0; i < n; i++) {
          const item = new Uint8Array(16);
          item[0] = i & 0xff;
          batch.push(item);
          if (batch.length === BATCH || i === n - 1) {
            ws.send(encode(batch) as Uint8Array<ArrayBuffer>);
            batch = [];
          }
        }
      },
    })),
  );
  const served = await adapter.serve(app, { port: 0 });
  console.log(`PORT ${served.port}`);
}

// ---- client side ---------------------------------------------------------------------------------

function startChild(kind: string): ReturnType<typeof startBenchChild> {
  // the node as `thinkagain serve` starts one; the raw pushes as a plain program
  const profiled = PROFILE_NODE && kind === "node";
  const dir = process.env.BENCH_PROFILE_DIR ?? ".";
  return startBenchChild(
    import.meta.url,
    kind,
    profiled ? ["--cpu-prof", "--cpu-prof-md", `--cpu-prof-dir=${dir}`] : [],
    { node: kind === "node" },
  );
}

/** A child process's /proc stat fields after the command's closing parenthesis, or undefined without /proc. */
function childStat(pid: number | undefined): string[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  } catch {
    return undefined;
  }
}

/**
 * A child process's CPU so far (user + system, and the kernel's part of it), in ms, and its minor
 * page faults: memory the process touches afresh, such as what its allocator gave back to the
 * kernel while it idled (Bun's mimalloc, see BENCHMARKS.md, twelfth and thirteenth sessions). One
 * read of /proc; all NaN where there is none.
 */
function childSample(pid: number | undefined): { cpuMs: number; kernelMs: number; faults: number } {
  const f = childStat(pid);
  if (f === undefined) return { cpuMs: NaN, kernelMs: NaN, faults: NaN };
  // after the parenthesis: minflt is the 8th field, utime and stime the 12th and 13th, in clock
  // ticks of 10 ms (USER_HZ 100)
  return { cpuMs: (Number(f[11]) + Number(f[12])) * 10, kernelMs: Number(f[12]) * 10, faults: Number(f[7]) };
}

/** CPU ms this process has spent so far. */
function ownCpuMs(): number {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1000;
}

/** Minor page faults of this process so far, or NaN where the runtime does not say. */
function ownFaults(): number {
  const usage = (process as { resourceUsage?: () => { minorPageFault: number } }).resourceUsage;
  return typeof usage === "function" ? usage().minorPageFault : NaN;
}

/** CPU spent (and minor page faults taken) by each end over the throughput runs of one side, and the items they moved. */
class CpuTally {
  server = 0;
  /** The server's CPU in the kernel (of `server`). */
  serverKernel = 0;
  client = 0;
  serverFaults = 0;
  clientFaults = 0;
  items = 0;
  constructor(readonly pid: number | undefined) {}
  async measure<T>(items: number, run: () => Promise<T>): Promise<T> {
    const s0 = childSample(this.pid), c0 = ownCpuMs(), cf0 = ownFaults();
    const out = await run();
    const c1 = ownCpuMs(), cf1 = ownFaults(), s1 = childSample(this.pid);
    this.server += s1.cpuMs - s0.cpuMs;
    this.serverKernel += s1.kernelMs - s0.kernelMs;
    this.serverFaults += s1.faults - s0.faults;
    this.client += c1 - c0;
    this.clientFaults += cf1 - cf0;
    this.items += items;
    return out;
  }
  /** ns per item: the server's, and this process's. */
  perItem(): { server: number; client: number } {
    return { server: this.server * 1e6 / this.items, client: this.client * 1e6 / this.items };
  }
  /** The share of the server's CPU spent in the kernel, as a percentage ("n/a" without /proc). */
  serverKernelShare(): string {
    return Number.isNaN(this.serverKernel) ? "n/a" : `${Math.round(100 * this.serverKernel / this.server)} %`;
  }
  /** Minor page faults per 1,000 items: the server's, and this process's. */
  faultsPerK(): { server: number; client: number } {
    return { server: this.serverFaults * 1000 / this.items, client: this.clientFaults * 1000 / this.items };
  }
}

/** Our stream: items per second. */
async function oursItemsPerSecond(n: number): Promise<number> {
  const t0 = performance.now();
  let count = 0;
  for await (const _ of await (SYNC_PRODUCER ? benchItemsSync.go(n) : benchItems.go(n))) count++;
  if (count !== n) throw new Error(`got ${count} of ${n} items`);
  return n / ((performance.now() - t0) / 1000);
}

/**
 * The raw server's push, read by a plain WebSocket: items per second. `generator`: the server makes
 * the items with the same async generator as the op's, read by `for await` (what any server that
 * streams a generator's items pays), instead of a plain loop.
 */
function rawItemsPerSecond(ws: WebSocket, n: number, generator = false): Promise<number> {
  return new Promise((resolve) => {
    let count = 0;
    const t0 = performance.now();
    ws.onmessage = (evt) => {
      // each item taken one by one, as a consumer of the raw socket would take them (ours hands each
      // to a for-await); counting the array's length alone would skip that
      for (const _ of decode(new Uint8Array(evt.data as ArrayBuffer)) as unknown[]) count++;
      if (count >= n) resolve(n / ((performance.now() - t0) / 1000));
    };
    ws.send(generator ? `g${n}` : String(n));
  });
}

/**
 * The raw server's push from the generator, read as a consumer of a stream reads it: each message's
 * items queued, and handed one by one to a `for await` through a plain async iterator (one
 * resolved promise per item when it has them, a waiting one when it does not): the same work a
 * stream's two ends must do, with no protocol, credit or chunk of ours. Items per second.
 */
async function rawForAwaitItemsPerSecond(ws: WebSocket, n: number): Promise<number> {
  // the messages' item arrays as they come, oldest first from `head`; `at` indexes the oldest
  const batches: unknown[][] = [];
  let head = 0, at = 0, got = 0;
  let wake: (() => void) | undefined;
  ws.onmessage = (evt) => {
    batches.push(decode(new Uint8Array(evt.data as ArrayBuffer)) as unknown[]);
    const w = wake;
    wake = undefined;
    w?.();
  };
  const iterable: AsyncIterable<unknown> = {
    [Symbol.asyncIterator]: () => ({
      next(): Promise<IteratorResult<unknown>> {
        if (got === n) return Promise.resolve({ value: undefined, done: true });
        while (head < batches.length) {
          const batch = batches[head];
          if (at < batch.length) {
            got++;
            return Promise.resolve({ value: batch[at++], done: false });
          }
          batches[head++] = undefined as unknown as unknown[];
          at = 0;
        }
        return new Promise<void>((r) => (wake = r)).then(() => this.next());
      },
    }),
  };
  const t0 = performance.now();
  ws.send(`g${n}`);
  let count = 0;
  for await (const _ of iterable) count++;
  if (count !== n) throw new Error(`raw: got ${count} of ${n} items`);
  return n / ((performance.now() - t0) / 1000);
}

async function p50(fn: () => Promise<unknown>, rounds = ROUNDS): Promise<number> {
  for (let i = 0; i < Math.min(200, rounds); i++) await fn(); // warm up
  const times: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)] * 1000;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const fmt = (x: number) => Math.round(x).toLocaleString("en-US");

async function main(): Promise<void> {
  const runtime = "Deno" in globalThis
    ? `Deno ${(globalThis as { Deno?: { version: { deno: string } } }).Deno!.version.deno}`
    : `Bun ${process.versions.bun}`;
  const node = await startChild("node");
  const raw = await startChild("raw");
  try {
    await using mesh = new ta.Mesh(
      [new ta.MeshNode("bench", { endpoint: `ws://127.0.0.1:${node.port}` })],
      WINDOW === undefined ? {} : { streamWindow: { items: WINDOW } },
    );
    const ws = new WebSocket(`ws://127.0.0.1:${raw.port}/ws`);
    ws.binaryType = "arraybuffer";
    await new Promise((r) => (ws.onopen = r));
    await mesh.run(async () => {
      // warm up every side: streams back to back for WARM_MS each (the stream's code path is longer
      // than the raw push's, and Bun's JIT takes about two million items to settle on it);
      // BENCH_WARM_MS=0: one stream of ITEMS / 4 each, as before the eleventh session
      const warm = WARM_MS > 0 ? ITEMS : ITEMS / 4;
      for (
        const run of [
          () => oursItemsPerSecond(warm),
          () => rawItemsPerSecond(ws, warm),
          () => rawItemsPerSecond(ws, warm, true),
          () => rawForAwaitItemsPerSecond(ws, warm),
        ]
      ) {
        const until = performance.now() + WARM_MS;
        do await run(); while (performance.now() < until);
      }
      const ours: number[] = [], base: number[] = [], ratios: number[] = [];
      const baseGen: number[] = [], ratiosGen: number[] = [];
      const baseSame: number[] = [], ratiosSame: number[] = [];
      const oursCpu = new CpuTally(node.child.pid), rawCpu = new CpuTally(raw.child.pid);
      const rawGenCpu = new CpuTally(raw.child.pid), rawSameCpu = new CpuTally(raw.child.pid);
      const ours_ = () => oursItemsPerSecond(ITEMS), raw_ = () => rawItemsPerSecond(ws, ITEMS);
      const rawGen_ = () => rawItemsPerSecond(ws, ITEMS, true), rawSame_ = () => rawForAwaitItemsPerSecond(ws, ITEMS);
      // BENCH_WAKE=1: each measured stream comes right after an unmeasured one of the same side, so
      // that no side is measured just after its processes sat idle through the others' runs
      const awake = async <T>(side: () => Promise<unknown>, measured: () => Promise<T>): Promise<T> => {
        if (WAKE) await side();
        return measured();
      };
      for (let r = 0; r < RUNS; r++) {
        let o2: number, b: number, g: number, w: number;
        if (ROTATE) {
          // each side first in turn: the raw child's three sides each come after our stream (the raw
          // child idle through it) in some rounds, as the plain raw push does by default
          const got = [0, 0, 0, 0];
          const sides = [
            () => oursCpu.measure(ITEMS, ours_),
            () => rawCpu.measure(ITEMS, raw_),
            () => rawGenCpu.measure(ITEMS, rawGen_),
            () => rawSameCpu.measure(ITEMS, rawSame_),
          ];
          const wakes = [ours_, raw_, rawGen_, rawSame_];
          for (let k = 0; k < 4; k++) {
            const i = (r + k) % 4;
            got[i] = await awake(wakes[i], sides[i]);
          }
          [o2, b, g, w] = got;
        } else {
          // alternate which goes first, so neither always runs on a cooler machine
          const o = r % 2 === 0 ? await awake(ours_, () => oursCpu.measure(ITEMS, ours_)) : 0;
          b = await awake(raw_, () => rawCpu.measure(ITEMS, raw_));
          g = await awake(rawGen_, () => rawGenCpu.measure(ITEMS, rawGen_));
          w = await awake(rawSame_, () => rawSameCpu.measure(ITEMS, rawSame_));
          o2 = r % 2 === 1 ? await awake(ours_, () => oursCpu.measure(ITEMS, ours_)) : o;
        }
        ours.push(o2);
        base.push(b);
        ratios.push(o2 / b);
        baseGen.push(g);
        ratiosGen.push(o2 / g);
        baseSame.push(w);
        ratiosSame.push(o2 / w);
      }
      // time to the first item of a stream (then left), and a plain call's round trip
      const firstItem: number[] = [], plain: number[] = [], ttfRatios: number[] = [];
      for (let r = 0; r < RUNS; r++) {
        // a stream of one item: its first item is its only one, so no producer runs on meanwhile
        const f = await p50(async () => {
          const it = (await benchItems.go(1))[Symbol.asyncIterator]();
          await it.next();
          await it.return!(undefined);
        });
        const p = await p50(() => benchOne.go() as unknown as Promise<unknown>);
        firstItem.push(f);
        plain.push(p);
        ttfRatios.push(f / p);
      }
      const spread = (xs: number[], f: (x: number) => string) =>
        `${f(median(xs))} (${f(Math.min(...xs))}–${f(Math.max(...xs))})`;
      const r2 = (x: number) => x.toFixed(2);
      const us = (x: number) => `${Math.round(x)} µs`;
      console.log(
        `bench/streaming.ts on ${runtime}: ${ITEMS} items of 16 bytes per stream, ${RUNS} runs each` +
          (WINDOW === undefined ? "" : `, window ${WINDOW} items`) +
          (SYNC_PRODUCER ? "; ours from a generator (function*), its items made by a plain loop" : ""),
      );
      console.log(`  items/s, ours (one WebSocket, credit)   ${spread(ours, fmt)}`);
      console.log(`  items/s, raw hono WebSocket push        ${spread(base, fmt)}`);
      console.log(`  ours / raw                              ${spread(ratios, r2)}`);
      console.log(`  items/s, raw push from the generator    ${spread(baseGen, fmt)}`);
      console.log(`  ours / raw from the generator           ${spread(ratiosGen, r2)}`);
      console.log(`  items/s, raw generator → for await       ${spread(baseSame, fmt)}`);
      console.log(`  ours / raw generator → for await        ${spread(ratiosSame, r2)}`);
      const oc = oursCpu.perItem(), rc = rawCpu.perItem(), gc = rawGenCpu.perItem(), sc = rawSameCpu.perItem();
      const ns = (x: number) => Number.isNaN(x) ? "n/a" : `${Math.round(x)} ns`;
      console.log(
        `  CPU per item, server end: ours (node)   ${ns(oc.server)}, raw ${ns(rc.server)}, ours / raw ` +
          (oc.server / rc.server).toFixed(2),
      );
      console.log(
        `  server end's CPU in the kernel: ours ${oursCpu.serverKernelShare()}, raw ${rawCpu.serverKernelShare()}, ` +
          `raw from the generator ${rawGenCpu.serverKernelShare()}`,
      );
      console.log(
        `  CPU per item, client end: ours (driver) ${ns(oc.client)}, raw ${ns(rc.client)}, ours / raw ` +
          (oc.client / rc.client).toFixed(2),
      );
      console.log(
        `  CPU per item, both ends: ours           ${ns(oc.server + oc.client)}, raw ${ns(rc.server + rc.client)}, ` +
          `raw / ours ${((rc.server + rc.client) / (oc.server + oc.client)).toFixed(2)}`,
      );
      console.log(
        `  CPU per item, raw from the generator:   server ${ns(gc.server)}, client ${ns(gc.client)}; ` +
          `ours / raw: server ${(oc.server / gc.server).toFixed(2)}, both ends ` +
          ((oc.server + oc.client) / (gc.server + gc.client)).toFixed(2),
      );
      console.log(
        `  CPU per item, raw generator → for await: server ${ns(sc.server)}, client ${ns(sc.client)}; ` +
          `ours / raw: server ${(oc.server / sc.server).toFixed(2)}, client ${(oc.client / sc.client).toFixed(2)}`,
      );
      const of = oursCpu.faultsPerK(), rf = rawCpu.faultsPerK(), gf = rawGenCpu.faultsPerK();
      const sf = rawSameCpu.faultsPerK();
      const pf = (x: { server: number; client: number }) =>
        Number.isNaN(x.server) ? "n/a" : `${x.server.toFixed(1)} / ${x.client.toFixed(1)}`;
      console.log(
        `  minor page faults per 1k items, server / client end: ours ${pf(of)}, raw ${pf(rf)}, ` +
          `raw from the generator ${pf(gf)}, raw generator → for await ${pf(sf)}`,
      );
      console.log(`  first item of a stream, p50             ${spread(firstItem, us)}`);
      console.log(`  plain call round trip, p50              ${spread(plain, us)}`);
      console.log(`  first item / plain call                 ${spread(ttfRatios, r2)}`);
    });
    ws.close();
  } finally {
    if (PROFILE_NODE && node.child.exitCode === null) {
      const exited = new Promise((resolve) => node.child.once("exit", resolve));
      node.child.kill("SIGTERM");
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 10_000))]);
    }
    node.child.kill("SIGKILL");
    raw.child.kill("SIGKILL");
  }
}

// ---- each end alone, in one process: CPU per item ---------------------------------------------

async function* sixteenByteItems(n: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < n; i++) {
    const item = new Uint8Array(16);
    item[0] = i & 0xff;
    yield item;
  }
}

function cpuNsPerItem(c0: { user: number; system: number }, n: number): number {
  const cu = process.cpuUsage(c0 as NodeJS.CpuUsage);
  return (cu.user + cu.system) * 1000 / n;
}

/**
 * The node's end: `StreamOutlets` over an async generator, every chunk asked for with credit and
 * decoded (as the driver would), with no socket. Then the driver's end: `RemoteChunks` in a `Stream`
 * read by `for await`, its chunks (`CHUNK_ITEMS` items, decoded from the same bytes each time) handed over at
 * once (its later chunks decoded by `decodeChunk`, as a `credit` request's answer is). Medians of
 * `RUNS` runs of `ITEMS` items after two warm-up runs.
 */
async function parts(): Promise<void> {
  const outlets = new StreamOutlets();
  const node: number[] = [], driver: number[] = [], everyNode: number[] = [];
  const nodeAlone: number[] = [], rawPush: number[] = [], bare: number[] = [];
  const batch = Array.from({ length: BATCH }, () => new Uint8Array(16));
  const frame = encodeFrame({ t: "chunk", items: batch, done: false }).slice();
  const last = encodeFrame({ t: "chunk", items: batch, done: true }).slice();
  for (let r = 0; r < RUNS + 2; r++) {
    let c0 = process.cpuUsage();
    const key = `parts-${r}`;
    let f = await outlets.open(key, new Stream<unknown>(sixteenByteItems(ITEMS)), { name: "parts" }, undefined);
    let got = 0;
    for (;;) {
      const m = decode(f) as { items: unknown[]; done: boolean };
      got += m.items.length;
      if (m.done) break;
      f = await outlets.credit(key, m.items.length, m.items.length * 24);
    }
    if (got !== ITEMS) throw new Error(`node end: got ${got} of ${ITEMS}`);
    const nodeNs = cpuNsPerItem(c0, ITEMS);
    everyNode.push(nodeNs);
    if (r >= 2) node.push(nodeNs);
    // the same with the chunks' items counted from their heads, not decoded: the node's end alone
    c0 = process.cpuUsage();
    const alone = `parts-alone-${r}`;
    f = await outlets.open(alone, new Stream<unknown>(sixteenByteItems(ITEMS)), { name: "parts" }, undefined);
    got = 0;
    for (;;) {
      const [n, done] = chunkCount(f);
      got += n;
      if (done) break;
      f = await outlets.credit(alone, n, n * 24);
    }
    if (got !== ITEMS) throw new Error(`node end alone: got ${got} of ${ITEMS}`);
    if (r >= 2) nodeAlone.push(cpuNsPerItem(c0, ITEMS));
    // what a raw server does with the same generator (for await, CHUNK_ITEMS to a batch, encoded), and
    // the bare for await over it: the floor under any stream of an async generator's items
    c0 = process.cpuUsage();
    let batch: Uint8Array[] = [], bytes = 0;
    for await (const item of sixteenByteItems(ITEMS)) {
      batch.push(item);
      if (batch.length === BATCH) {
        bytes += encode(batch).byteLength;
        batch = [];
      }
    }
    if (batch.length > 0) bytes += encode(batch).byteLength;
    if (r >= 2) rawPush.push(cpuNsPerItem(c0, ITEMS));
    c0 = process.cpuUsage();
    let k = 0;
    for await (const _ of sixteenByteItems(ITEMS)) k++;
    if (r >= 2) bare.push(cpuNsPerItem(c0, ITEMS));
    if (k !== ITEMS || bytes < ITEMS * 17) throw new Error("raw push in process: items lost");
    let sent = BATCH;
    const source = {
      credit: () => {
        sent += BATCH;
        return Promise.resolve(decodeChunk(sent >= ITEMS ? last : frame));
      },
      cancel() {},
    };
    c0 = process.cpuUsage();
    const window = { ...DEFAULT_STREAM_WINDOW };
    let n = 0;
    for await (const _ of new Stream(new RemoteChunks(source, decode(frame) as never, window))) n++;
    if (r >= 2) driver.push(cpuNsPerItem(c0, n));
  }
  const runtime = "Deno" in globalThis ? "Deno" : "Bun";
  const ns = (xs: number[]) =>
    `${Math.round(median(xs))} ns (${Math.round(Math.min(...xs))}–${Math.round(Math.max(...xs))})`;
  console.log(`bench/streaming.ts --parts on ${runtime}: CPU per 16-byte item, ${RUNS} runs of ${ITEMS}`);
  console.log(`  node's end (generator, outlet, chunk encoded; chunk decoded)  ${ns(node)}`);
  console.log(`  node's end, each run from the first (JIT warm-up)  ${everyNode.map(Math.round).join(", ")} ns`);
  console.log(`  node's end alone (chunks counted, not decoded)  ${ns(nodeAlone)}`);
  console.log(`  raw push's server work (for await, batch, encode; no socket)  ${ns(rawPush)}`);
  console.log(`  bare for await over the generator  ${ns(bare)}`);
  console.log(`  driver's end (chunk decoded, RemoteChunks, Stream, for await)  ${ns(driver)}`);
}

/**
 * A chunk frame's item count, read from its items' array head, and whether it is the stream's last
 * (its last byte, `done`'s value); decoded where it is not laid out as a node writes it.
 */
function chunkCount(frame: Uint8Array): [number, boolean] {
  const head = frame[15]; // after `{t: "chunk", items: ` (a map of three, 15 bytes)
  if (frame[0] === 0xa3 && frame[1] === 0x61 && frame[2] === 0x74 && (head & 0xe0) === 0x80) {
    const short = head & 0x1f;
    const n = short < 24
      ? short
      : short === 24
      ? frame[16]
      : short === 25
      ? (frame[16] << 8) | frame[17]
      : ((frame[16] << 24) >>> 0) + (frame[17] << 16) + (frame[18] << 8) + frame[19];
    return [n, frame[frame.byteLength - 1] === 0xf5];
  }
  const m = decode(frame) as { items: unknown[]; done: boolean };
  return [m.items.length, m.done];
}

// ---- the pieces, alone ------------------------------------------------------------------------

/** ns per call of `fn` over `n` calls (after a warm-up), divided by `per` (items per call). */
function nsPer(fn: () => void, n: number, per: number): number {
  for (let i = 0; i < Math.min(n, 300); i++) fn();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) fn();
  return (performance.now() - t0) * 1e6 / n / per;
}

/** ns per item of draining `n` items of a bare async generator, `ahead` next() calls in flight. */
async function drainNs(n: number, ahead: number): Promise<number> {
  const g = sixteenByteItems(n);
  const t0 = performance.now();
  let count = 0;
  if (ahead === 1) {
    for (let r = await g.next(); !r.done; r = await g.next()) count++;
  } else {
    // the generator queues next() calls made before the last one settled
    const q: Promise<IteratorResult<Uint8Array>>[] = [];
    for (let i = 0; i < ahead; i++) q.push(g.next());
    for (let h = 0;; h = (h + 1) % ahead) {
      const r = await q[h];
      if (r.done) break;
      q[h] = g.next();
      count++;
    }
  }
  if (count !== n) throw new Error(`drained ${count} of ${n}`);
  return (performance.now() - t0) * 1e6 / n;
}

/**
 * What the pieces of a stream of 16-byte items cost per item, each alone (medians of `RUNS`): a
 * full chunk encoded as the node frames it, and decoded; a bare async generator drained awaiting
 * each `next()`, and with 4 or 32 asked ahead; a view of 16 bytes (`subarray`) against a copy.
 */
async function micro(): Promise<void> {
  const batch = Array.from({ length: BATCH }, () => new Uint8Array(16));
  const frame = encodeFrame({ t: "chunk", items: batch, done: false }).slice();
  const buf = new Uint8Array(BATCH * 16);
  const rows: [string, () => Promise<number> | number][] = [
    [
      `chunk of ${BATCH} encoded (encodeFrame)`,
      () => nsPer(() => encodeFrame({ t: "chunk", items: batch, done: false }), 2000, BATCH),
    ],
    [`chunk of ${BATCH} decoded`, () => nsPer(() => decode(frame), 2000, BATCH)],
    ["bare async generator, await each next()", () => drainNs(ITEMS, 1)],
    ["bare async generator, 4 next() ahead", () => drainNs(ITEMS, 4)],
    ["bare async generator, 32 next() ahead", () => drainNs(ITEMS, 32)],
    ["16 bytes viewed (subarray)", () =>
      nsPer(
        () => {
          for (let i = 0; i < BATCH; i++) buf.subarray(i * 16, i * 16 + 16);
        },
        2000,
        BATCH,
      )],
    ["16 bytes copied (slice)", () =>
      nsPer(
        () => {
          for (let i = 0; i < BATCH; i++) buf.slice(i * 16, i * 16 + 16);
        },
        2000,
        BATCH,
      )],
  ];
  const runtime = "Deno" in globalThis ? "Deno" : "Bun";
  console.log(`bench/streaming.ts --micro on ${runtime}: ns per 16-byte item, median of ${RUNS} (min–max)`);
  for (const [name, run] of rows) {
    const xs: number[] = [];
    for (let r = 0; r < RUNS; r++) xs.push(await run());
    console.log(
      `  ${name.padEnd(42)} ${median(xs).toFixed(1)} (${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)})`,
    );
  }
}

/**
 * A node's frame handler called in this process (no socket): the p50 of answering a call of
 * `benchItems(1)` (a stream's first and only chunk) and of `benchOne()` (a plain call), 20,000
 * calls each, `RUNS` rounds taking turns; medians of the rounds.
 */
async function first(): Promise<void> {
  const { encodeMessage, PROTOCOL_VERSION } = await import("../transports/protocol.ts");
  const node = new NodeServer({ name: "bench" });
  const peer = {
    transport: "websocket" as const,
    connectionId: 1,
    oneWay: false,
    signal: new AbortController().signal,
  };
  await node.handler(encodeMessage({ t: "hello", v: PROTOCOL_VERSION }), peer);
  let cid = 0;
  const calls = 20_000;
  const p50s: Record<string, number[]> = { stream: [], plain: [] };
  for (let r = 0; r < RUNS; r++) {
    for (const [kind, op, args] of [["stream", "benchItems", [1]], ["plain", "benchOne", []]] as const) {
      const times: number[] = [];
      for (let i = 0; i < calls; i++) {
        const frame = encodeMessage({ t: "call", cid: `c${++cid}`, op, args });
        const t0 = performance.now();
        await node.handler(frame, peer);
        times.push(performance.now() - t0);
      }
      times.sort((a, b) => a - b);
      p50s[kind].push(times[calls >> 1] * 1000);
    }
  }
  const runtime = "Deno" in globalThis ? "Deno" : "Bun";
  const f = (xs: number[]) =>
    `${median(xs).toFixed(2)} µs (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})`;
  console.log(
    `bench/streaming.ts --first on ${runtime}: a node's handler in process, p50 of ${calls} calls, ${RUNS} rounds`,
  );
  console.log(`  a one-item stream's answer (benchItems(1))  ${f(p50s.stream)}`);
  console.log(`  a plain call's answer (benchOne())          ${f(p50s.plain)}`);
  await node.drain();
}

const at = process.argv.indexOf("--server");
if (at >= 0) await runServer(process.argv[at + 1]);
else if (process.argv.includes("--parts")) await parts();
else if (process.argv.includes("--micro")) await micro();
else if (process.argv.includes("--first")) await first();
else await main();
