/**
 * Data-plane benchmark, in one run:
 * 1. **A → B hand-off**: a driver and two node processes (A, B; same runtime). An op on A makes a
 *    Float32Array of 1 MiB or 16 MiB, a service method on B sums it: the array stays on A and B pulls
 *    it node to node. Beside it, the same bytes sent A → B over a raw hono WebSocket between two
 *    raw processes (B asked by HTTP to fetch them from A, as our B is asked by a call). Reports
 *    MB/s of both, their ratio, and the bytes on the driver's TCP sockets (`ss -tinpH`).
 *    The same at 1 MiB with every link (driver → A, driver → B, B → A; the raw path's too) through
 *    a delaying proxy, 5 ms each way, in round trips of 10 ms.
 * 2. **Chains**: 100 dependent calls on one node (each takes the previous result) through a TCP proxy
 *    (a process of its own) that delays every chunk 5 ms each way, as a network would; the same without the proxy, and
 *    100 independent calls without it. Round trips ≈ (chain through proxy − chain without) / 10 ms.
 *
 *   npx bun bench/data_plane.ts
 *   npx deno run -A bench/data_plane.ts
 *
 * BENCH_CPU=500 (Linux) also prints each process's CPU time, sleeps and page faults per hand-off of
 * each kind.
 * BENCH_ALTERNATE=1 (with BENCH_CPU) runs those hand-offs alternating with the other kind's, as the
 * timed runs do (see ALTERNATE).
 * BENCH_PROFILE=A (or B; Bun) writes that node's CPU profile (`bun --cpu-prof --cpu-prof-md`) into
 * BENCH_PROFILE_DIR (default `.`) when the bench ends (see PROFILE).
 * BENCH_EAGER_FREE=1 frees each hand-off's array on A as soon as B's call ended (see EAGER_FREE).
 * BENCH_RELEASE=1: the hand-off's code releases its intermediate ref with `using` (see RELEASE).
 * BENCH_INLINE=1 sends every result back through the driver instead, for comparison. BENCH_MIB
 * (default `1,16`) picks the sizes of the loopback hand-offs, e.g. `BENCH_MIB=1 BENCH_RUNS=100` (the
 * store holds 1 GiB: at 16 MiB, keep BENCH_RUNS below 45).
 * BENCH_SUSTAIN (default 1000) more hand-offs of 1 MiB run after the timed ones, then the timed runs
 * again, printed as "sustained" (see SUSTAIN); BENCH_SUSTAIN=0 skips them.
 * Medians over BENCH_RUNS (default 5) alternating runs, with min–max. Timing claims live here,
 * never in tests.
 *
 * @module
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import net from "node:net";
import process from "node:process";
import { Hono } from "hono";
import { loadAdapter, serveFrames } from "../adapters/serve.ts";
import * as ta from "../mod.ts";
import { NodeServer } from "../server.ts";
import { startBenchChild } from "./_child.ts";
import { webSocketTransport } from "../transports/websocket.ts";
import { decodeNodeMessage, encodeMessage } from "../transports/protocol.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
/** Hand-offs of each kind run before the timed ones. */
const WARMUP = Number(process.env.BENCH_WARMUP ?? 10);
/**
 * BENCH_SUSTAIN=n (default 1000; 0: none): after the timed runs of a hand-off of at most
 * SUSTAIN_MIB_MAX, n more of each kind, untimed, and the timed runs again: the pipeline's sustained
 * throughput beside its first hand-offs' (users run pipelines that pass thousands of arrays).
 */
const SUSTAIN = Number(process.env.BENCH_SUSTAIN ?? 1000);
/** The largest hand-off, in MiB, measured sustained too (a 16 MiB one would take minutes and fill A's store). */
const SUSTAIN_MIB_MAX = 1;
const CHAIN = 100;
const DELAY_MS = 5;
/** BENCH_INLINE=1: every result comes back through the driver (as before results stayed on nodes). */
const INLINE = process.env.BENCH_INLINE === "1";
/**
 * BENCH_CPU=n (Linux): before timing, n hand-offs of each kind in a row, then each process's CPU
 * time, voluntary context switches (sleeps: each is a wake-up later) and minor page faults per
 * hand-off, from /proc.
 */
const CPU = Number(process.env.BENCH_CPU ?? 0);
/**
 * BENCH_ALTERNATE=1 (with BENCH_CPU): each hand-off of one kind follows one of the other kind, as in
 * the timed runs, where a node idles while the other path's hand-off runs. The other kind's
 * hand-offs are not timed, nor are their own processes counted; the driver's CPU then holds both.
 */
const ALTERNATE = process.env.BENCH_ALTERNATE === "1";
/**
 * BENCH_PROFILE=A or B (Bun): that node runs under `bun --cpu-prof --cpu-prof-md` and, at the end,
 * exits on SIGTERM so that its profile (a `.cpuprofile` and a Markdown summary with each function's
 * self time, native ones such as `fullGC` and `send` included) is written into BENCH_PROFILE_DIR
 * (default the working directory). Perf cannot name the functions of Bun's JIT; this can.
 */
const PROFILE = process.env.BENCH_PROFILE;
/**
 * BENCH_EAGER_FREE=1: ours tells A to free the array as soon as B's call ended, through the driver's
 * internals (what an explicit release of the ref would do), instead of when the driver's garbage
 * collector finds the ref dropped. A diagnostic: an upper bound for such a change.
 */
const EAGER_FREE = process.env.BENCH_EAGER_FREE === "1";
/**
 * BENCH_RELEASE=1: ours is written as a user who cares about memory writes it, `using made =
 * dpbMake.go(n); await sink.sum.go(made)`: the ref is released at the end of the block, so A frees
 * the array then instead of when the driver's garbage collector finds the ref dropped.
 */
const RELEASE = process.env.BENCH_RELEASE === "1";
/** The loopback hand-offs' sizes, in MiB. */
const SIZES = (process.env.BENCH_MIB ?? "1,16").split(",").map(Number);

/** The array, made on A (the only node with a GPU). */
const dpbMake = ta.op({ name: "dpbMake", gpus: 1 }, (n: number) => new Float32Array(n).fill(1));
/** One step of a chain. */
const dpbInc = ta.op({ name: "dpbInc", remote: true }, (x: number) => x + 1);
/** Sums an array; its 4 CPUs fit only B. */
const DpbSink = ta.service(
  { name: "DpbSink", cpus: 4 },
  class DpbSink {
    sum(a: Float32Array): number {
      let s = 0;
      for (let i = 0; i < a.length; i += 1024) s += a[i];
      return s * 1024;
    }
  },
);

/** One hand-off whose source A frees at once after it ({@linkcode EAGER_FREE}). */
async function handOffFreeing(sink: ReturnType<typeof DpbSink.init>, n: number): Promise<number> {
  const made = dpbMake.go(n);
  const sum = await sink.sum.go(made);
  // (the ref's settled value: the RemoteObject naming A's copy; its collection frees it again, a no-op)
  const held = (made as unknown as { _value?: { link?: { freeObject(oid: string): void }; oid?: string } })._value;
  if (held?.link !== undefined && held.oid !== undefined) held.link.freeObject(held.oid);
  return sum;
}

/** One hand-off whose intermediate ref the code releases with `using` ({@linkcode RELEASE}). */
async function handOffReleasing(sink: ReturnType<typeof DpbSink.init>, n: number): Promise<number> {
  using made = dpbMake.go(n);
  return await sink.sum.go(made);
}

// ---- server side (child processes) ---------------------------------------------------------------

async function runServer(kind: string): Promise<void> {
  if (kind.startsWith("proxy:")) {
    // a process of its own, so the driver's busy event loop never delays the proxy's timers
    const proxy = await delayProxy(Number(kind.slice(6)), DELAY_MS);
    console.log(`PORT ${proxy.port}`);
    return;
  }
  if (kind === "A" || kind === "B") {
    const node = new NodeServer({ name: kind, gpus: kind === "A" ? 1 : 0, cpus: kind === "A" ? 1 : 8 });
    const served = await serveFrames(node.handler, { port: 0, hostname: "127.0.0.1" });
    // a profiled node exits when told, so that the runtime writes its profile
    if (PROFILE === kind) process.on("SIGTERM", () => process.exit(0));
    console.log(`PORT ${served.port}`);
    return;
  }
  // raw: `/ws` answers "n" with n bytes; `/pull?from=ws://…&n=…` fetches them from another raw server
  const adapter = await loadAdapter();
  const app = new Hono();
  const peers = new Map<string, Promise<{ ws: WebSocket; waiting: ((n: number) => void)[] }>>();
  app.get(
    "/ws",
    adapter.upgradeWebSocket(() => ({
      onMessage(evt, ws) {
        const n = Number(String(evt.data));
        ws.send(new Float32Array(n / 4).fill(1) as unknown as Uint8Array<ArrayBuffer>);
      },
    })),
  );
  app.get("/pull", async (c) => {
    const from = c.req.query("from")!, n = Number(c.req.query("n"));
    let peer = peers.get(from);
    if (peer === undefined) {
      peer = new Promise((resolve) => {
        const ws = new WebSocket(from);
        ws.binaryType = "arraybuffer";
        const waiting: ((n: number) => void)[] = [];
        ws.onmessage = (e) => waiting.shift()!((e.data as ArrayBuffer).byteLength);
        ws.onopen = () => resolve({ ws, waiting });
      });
      peers.set(from, peer);
    }
    const p = await peer;
    const got = await new Promise<number>((resolve) => {
      p.waiting.push(resolve);
      p.ws.send(String(n));
    });
    // the same work as the sink: read the array
    return c.text(String(new Float32Array(got / 4).length));
  });
  const served = await adapter.serve(app, { port: 0, hostname: "127.0.0.1" });
  console.log(`PORT ${served.port}`);
}

// ---- client side ---------------------------------------------------------------------------------

function startChild(kind: string): ReturnType<typeof startBenchChild> {
  const profiled = PROFILE === kind && !("Deno" in globalThis);
  const dir = process.env.BENCH_PROFILE_DIR ?? ".";
  return startBenchChild(
    import.meta.url,
    kind,
    profiled ? ["--cpu-prof", "--cpu-prof-md", `--cpu-prof-dir=${dir}`] : [],
    // nodes A and B as `thinkagain serve` starts them; the raw pair and the proxies as plain programs
    { node: kind === "A" || kind === "B" },
  );
}

/** A TCP proxy to `port` that holds every chunk `ms` before passing it on, in both directions. */
function delayProxy(port: number, ms: number): Promise<{ port: number; close(): void }> {
  const server = net.createServer((client) => {
    const upstream = net.connect(port, "127.0.0.1");
    // no Nagle: a small write held for the ACK of the last (delayed by the peer) is not the network's delay
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const pipe = (from: net.Socket, to: net.Socket) => {
      from.on("data", (d) => setTimeout(() => to.write(d), ms));
      from.on("close", () => setTimeout(() => to.destroy(), ms));
      from.on("error", () => to.destroy());
    };
    pipe(client, upstream);
    pipe(upstream, client);
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      resolve({ port: (server.address() as net.AddressInfo).port, close: () => server.close() });
    });
  });
}

/**
 * Bytes sent and received so far on this process's TCP sockets (`ss -tinpH`: bytes_acked +
 * bytes_received of each socket whose owner is this pid), or NaN where `ss` is missing.
 */
function ioBytes(): number {
  try {
    const out = execFileSync("ss", ["-tinpH"], { encoding: "utf8" });
    let total = 0, mine = false;
    for (const line of out.split("\n")) {
      if (/users:\(/.test(line)) mine = line.includes(`pid=${process.pid},`);
      else if (mine) {
        total += Number(/bytes_acked:(\d+)/.exec(line)?.[1] ?? 0) + Number(/bytes_received:(\d+)/.exec(line)?.[1] ?? 0);
      }
    }
    return total;
  } catch {
    return NaN;
  }
}

/**
 * CPU time (ns, all threads), voluntary context switches and minor page faults of process `pid` so
 * far, from /proc.
 */
function schedOf(pid: number): [number, number, number] {
  // minflt: the 8th field after the command's closing parenthesis
  const faults = Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ")[7]);
  let ns = 0, slept = 0;
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, "utf8").split(" ")[0]);
      const status = readFileSync(`/proc/${pid}/task/${task}/status`, "utf8");
      slept += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0);
    } catch {
      // a thread that ended meanwhile
    }
  }
  return [ns, slept, faults];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const spread = (xs: number[], f: (x: number) => string) =>
  `${f(median(xs))} (${f(Math.min(...xs))}–${f(Math.max(...xs))})`;

/**
 * RUNS timed pairs of hand-offs, ours and raw, which one goes first alternating: MB/s of each into
 * `o` and `r`, and raw's time over ours (ours / raw in throughput) into `ratio`.
 */
async function timedPairs(
  mib: number,
  ours: () => Promise<unknown>,
  raw: () => Promise<unknown>,
  o: number[],
  r: number[],
  ratio: number[],
): Promise<void> {
  for (let i = 0; i < RUNS; i++) {
    const first = i % 2 === 0;
    const rt1 = first ? 0 : await timed(raw);
    const ot = await timed(ours);
    const rt = first ? await timed(raw) : rt1;
    o.push((mib * 1.048576) / (ot / 1000));
    r.push((mib * 1.048576) / (rt / 1000));
    ratio.push(rt / ot);
  }
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

async function main(): Promise<void> {
  const runtime = "Deno" in globalThis
    ? `Deno ${(globalThis as { Deno?: { version: { deno: string } } }).Deno!.version.deno}`
    : `Bun ${process.versions.bun}`;
  const [a, b, rawA, rawB] = await Promise.all(["A", "B", "raw", "raw"].map(startChild));
  const proxy = await startChild(`proxy:${a.port}`);
  // every link of the hand-off through a delaying proxy of its own (driver → A, driver → B, B → A)
  const delayed = await Promise.all([a, b, rawA, rawB].map((c) => startChild(`proxy:${c.port}`)));
  try {
    console.log(`bench/data_plane.ts on ${runtime}, ${RUNS} runs each${RELEASE ? ", BENCH_RELEASE=1 (using)" : ""}`);
    const mesh = new ta.Mesh([
      new ta.MeshNode("A", { endpoint: `ws://127.0.0.1:${a.port}`, gpus: 1, cpus: 1 }),
      new ta.MeshNode("B", { endpoint: `ws://127.0.0.1:${b.port}`, gpus: 0, cpus: 8 }),
    ], { keepResultsAbove: INLINE ? Infinity : undefined });
    await mesh.run(async () => {
      const sink = DpbSink.init();
      await sink.sum.go(new Float32Array(1024)); // placed on B
      for (const mib of SIZES) {
        const n = (mib << 20) / 4;
        const ours = EAGER_FREE
          ? () => handOffFreeing(sink, n)
          : RELEASE
          ? () => handOffReleasing(sink, n)
          : () => sink.sum.go(dpbMake.go(n)) as unknown as Promise<number>;
        const raw = () =>
          fetch(`http://127.0.0.1:${rawB.port}/pull?from=ws://127.0.0.1:${rawA.port}/ws&n=${n * 4}`)
            .then((r) => r.text());
        // warm both paths up (JIT, connections) before timing
        for (let i = 0; i < WARMUP; i++) {
          await ours();
          await raw();
        }
        if (CPU > 0) {
          // where the CPU goes: each process's CPU time and how often it slept, per hand-off
          const procs: [string, number][] = [
            ["driver", process.pid],
            ["A", a.child.pid!],
            ["B", b.child.pid!],
            ["raw A", rawA.child.pid!],
            ["raw B", rawB.child.pid!],
          ];
          for (const [name, run] of [["ours", ours], ["raw", raw]] as const) {
            const before = procs.map(([, pid]) => schedOf(pid));
            let t = 0;
            for (let i = 0; i < CPU; i++) {
              // BENCH_ALTERNATE=1: each of ours after one of raw, as the timed runs alternate (not timed)
              if (ALTERNATE) await (name === "ours" ? raw : ours)();
              const t0 = performance.now();
              await run();
              t += performance.now() - t0;
            }
            const wall = t / CPU;
            const per = procs.map(([p, pid], i) => {
              const [ns, slept, faults] = schedOf(pid).map((x, j) => x - before[i][j]);
              return `${p} ${(ns / CPU / 1000).toFixed(0)} µs, ${(slept / CPU).toFixed(2)} sleeps, ${
                (faults / CPU).toFixed(0)
              } page faults`;
            }).filter((_, i) => name === "ours" ? i < 3 : i === 0 || i > 2);
            console.log(`  ${mib} MiB ${name}, per hand-off (${CPU}): ${wall.toFixed(2)} ms wall; ${per.join("; ")}`);
            if (name === "ours") {
              // the results A still keeps: each stays until the driver's ref of it is collected
              const conn = await webSocketTransport.connect(`ws://127.0.0.1:${a.port}`);
              const pong = decodeNodeMessage(await conn.request(encodeMessage({ t: "ping" }))) as { objects?: number };
              await conn.close();
              console.log(`  ${mib} MiB ours: node A keeps ${pong.objects} results after them`);
            }
          }
        }
        const o: number[] = [], r: number[] = [], ratio: number[] = [], driver: number[] = [];
        await timedPairs(mib, ours, raw, o, r, ratio);
        // the driver's bytes in hand-offs of their own, untimed (running `ss` is a process spawn,
        // which would weigh on the timed runs beside it)
        for (let i = 0; i < 3; i++) {
          const io0 = ioBytes();
          await ours();
          driver.push(ioBytes() - io0);
        }
        const mbs = (x: number) => `${Math.round(x)} MB/s`;
        console.log(`  ${mib} MiB A → B, ours (op on A, method on B)   ${spread(o, mbs)}`);
        console.log(`  ${mib} MiB A → B, raw hono WebSocket            ${spread(r, mbs)}`);
        console.log(`  ${mib} MiB ours / raw                           ${spread(ratio, (x) => x.toFixed(2))}`);
        console.log(`  ${mib} MiB bytes on the driver's sockets        ${spread(driver, (x) => `${Math.round(x)} B`)}`);
        if (SUSTAIN > 0 && mib <= SUSTAIN_MIB_MAX) {
          // the same pipeline once it has run a while (JIT tiers, heaps and allocators at their steady
          // state, collection included): SUSTAIN more of each, alternating, untimed, then the timed runs again
          for (let i = 0; i < SUSTAIN; i++) {
            await ours();
            await raw();
          }
          const so: number[] = [], sr: number[] = [], sratio: number[] = [];
          await timedPairs(mib, ours, raw, so, sr, sratio);
          console.log(`  ${mib} MiB, sustained (after ${SUSTAIN} more of each):`);
          console.log(`  ${mib} MiB A → B, ours, sustained              ${spread(so, mbs)}`);
          console.log(`  ${mib} MiB A → B, raw, sustained               ${spread(sr, mbs)}`);
          console.log(`  ${mib} MiB ours / raw, sustained               ${spread(sratio, (x) => x.toFixed(2))}`);
        }
      }
    });
    await mesh.close();

    // the 1 MiB hand-off where every link is 5 ms each way: its time in round trips (10 ms each)
    const [farA, farB, farRawA, farRawB] = delayed;
    const farMesh = new ta.Mesh([
      new ta.MeshNode("A", { endpoint: `ws://127.0.0.1:${farA.port}`, gpus: 1, cpus: 1 }),
      new ta.MeshNode("B", { endpoint: `ws://127.0.0.1:${farB.port}`, gpus: 0, cpus: 8 }),
    ], { keepResultsAbove: INLINE ? Infinity : undefined });
    await farMesh.run(async () => {
      const sink = DpbSink.init();
      await sink.sum.go(new Float32Array(1024));
      const n = (1 << 20) / 4;
      const ours = () => sink.sum.go(dpbMake.go(n)) as unknown as Promise<number>;
      const raw = () =>
        fetch(`http://127.0.0.1:${farRawB.port}/pull?from=ws://127.0.0.1:${farRawA.port}/ws&n=${n * 4}`)
          .then((r) => r.text());
      for (let i = 0; i < 3; i++) {
        await ours();
        await raw();
      }
      const o: number[] = [], r: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        o.push(await timed(ours));
        r.push(await timed(raw));
      }
      const trips = (x: number) => (x / (2 * DELAY_MS)).toFixed(2);
      console.log(`  1 MiB A → B, ${DELAY_MS} ms each way on every link, ours: round trips ${spread(o, trips)}`);
      console.log(`  1 MiB A → B, ${DELAY_MS} ms each way on every link, raw:  round trips ${spread(r, trips)}`);
      console.log(
        `  1 MiB A → B, ${DELAY_MS} ms each way on every link, ours / raw ${
          spread(o.map((x, i) => r[i] / x), (x) => x.toFixed(2))
        }`,
      );
    });
    await farMesh.close();

    // chains: through the delaying proxy, and directly
    const chain = () => {
      let r = dpbInc.go(0);
      for (let i = 1; i < CHAIN; i++) r = dpbInc.go(r);
      return r as unknown as Promise<number>;
    };
    const independent = () => Promise.all(Array.from({ length: CHAIN }, (_, i) => dpbInc.go(i)));
    const far = new ta.Mesh([new ta.MeshNode("A", { endpoint: `ws://127.0.0.1:${proxy.port}` })]);
    const near = new ta.Mesh([new ta.MeshNode("A", { endpoint: `ws://127.0.0.1:${a.port}` })]);
    const farT: number[] = [], nearT: number[] = [], indT: number[] = [], trips: number[] = [];
    await far.run(chain);
    await near.run(chain);
    await near.run(independent);
    for (let i = 0; i < RUNS; i++) {
      const f = await timed(() => far.run(chain));
      const c = await timed(() => near.run(chain));
      const d = await timed(() => near.run(independent));
      farT.push(f);
      nearT.push(c);
      indT.push(d);
      trips.push((f - c) / (2 * DELAY_MS));
    }
    const ms = (x: number) => `${x.toFixed(1)} ms`;
    console.log(`  chain of ${CHAIN} dependent calls, ${DELAY_MS} ms each way   ${spread(farT, ms)}`);
    console.log(`  the same chain without the proxy           ${spread(nearT, ms)}`);
    console.log(
      `  round trips it cost ((proxied − direct) / ${2 * DELAY_MS} ms) ${spread(trips, (x) => x.toFixed(2))}`,
    );
    console.log(`  ${CHAIN} independent calls without the proxy     ${spread(indT, ms)}`);
    console.log(
      `  chain / independent (pipelining's cost)    ${spread(nearT.map((c, i) => c / indT[i]), (x) => x.toFixed(2))}`,
    );
    await far.close();
    await near.close();
  } finally {
    const profiled = PROFILE === "A" ? a : PROFILE === "B" ? b : undefined;
    if (profiled !== undefined && profiled.child.exitCode === null) {
      const exited = new Promise((resolve) => profiled.child.once("exit", resolve));
      profiled.child.kill("SIGTERM");
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 10_000))]);
    }
    for (const c of [a, b, rawA, rawB, proxy, ...delayed]) c.child.kill("SIGKILL");
  }
}

const at = process.argv.indexOf("--server");
if (at >= 0) await runServer(process.argv[at + 1]);
else await main();
