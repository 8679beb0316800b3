// Tracing overhead: fanout (10k no-op `op.go` awaited together) and 10k concurrent service calls,
// with tracing off, with the default auto-detection and no provider, forced on with the API's no-op
// provider (nothing registered), forced on with a registered provider whose spans record nothing, with
// the OpenTelemetry SDK + BatchSpanProcessor + OTLP/HTTP protobuf exporter sending every span to a
// local receiver (another process), with the same SDK sampling 1% of traces, and with thinkagain's own
// sampling (`sampleRatio`, `maxOverhead`). A third benchmark gives each task ~20 µs of CPU work.
//
// What is measured: sustained throughput. Each mode runs in a process of its own (a program does
// not switch tracing modes; on V8 a switch inside one process deoptimized the shared code by up to
// 2×), and the processes of all modes take turns, REPS times. In each, every benchmark runs back to
// back for PERIOD_MS after a 300 ms warm-up, one event-loop turn between runs, and the figure is
// tasks over the whole period: the SDK's export (batching, encoding, sending on its timer) and the
// collection of the runs' garbage happen inside it, as in a busy server; the period ends only once
// the processor has sent every span still queued (a flush inside the timing), so no export is left
// out, and the queue is large enough that none is dropped (the run reports spans dropped or failed,
// counted by ta.watchDroppedSpans: it must say 0). No forced GC runs (on V8 a
// forced full GC before each run cleared objects embedded in optimized code, so every run started
// partly deoptimized, and more so with tracing on). Figures are medians over the processes; "vs off"
// is throughput relative to "off".
// Run: bun bench/tracing.ts   or   deno run -A bench/tracing.ts
// (env: REPS=n processes per mode, PERIOD_MS=n, MODES=substr,… to run only those, and off)
import { spawn } from "node:child_process";
import process from "node:process";
import { setImmediate } from "node:timers";
import { fileURLToPath } from "node:url";
import {
  context,
  INVALID_SPAN_CONTEXT,
  propagation,
  trace,
  type Tracer,
  type TracerProvider,
} from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
} from "@opentelemetry/sdk-trace-base";
import * as ta from "../mod.ts";

const N = 10_000;
const env: Record<string, string | undefined> = (globalThis as { process?: { env: Record<string, string> } }).process
  ?.env ?? {};
const REPS = Number(env.REPS ?? 3);
const PERIOD_MS = Number(env.PERIOD_MS ?? 1000);
const WARM_MS = 300;
/** Set in a child process: the one mode it measures. */
const CHILD = env.THINKAGAIN_TRACING_BENCH_MODE;

// the receiver runs in its own process, on the runtime that runs this benchmark
const runtime = (globalThis as { Bun?: unknown }).Bun
  ? "bun"
  : (globalThis as { Deno?: unknown }).Deno
  ? "deno"
  : "node";
/** The runtime and its version, for the table's title: "bun 1.2.3", "deno 2.1.0 (V8 13.0)". */
function runtimeVersion(): string {
  const g = globalThis as { Bun?: { version: string }; Deno?: { version: { deno: string; v8: string } } };
  if (g.Bun) return `bun ${g.Bun.version}`;
  if (g.Deno) return `deno ${g.Deno.version.deno} (V8 ${g.Deno.version.v8})`;
  return `node ${(globalThis as { process?: { version: string } }).process?.version ?? "?"}`;
}
const repoRoot = fileURLToPath(new URL("..", import.meta.url));
const bin = (name: string) => fileURLToPath(new URL(`../node_modules/.bin/${name}`, import.meta.url));

/** Runs `args` on `on` (this benchmark's runtime by default); its stdout lines (stderr passes through). */
function runChild(args: string[], extraEnv: Record<string, string>, keepStdin = false, on = runtime) {
  const child = spawn(bin(on === "deno" ? "deno" : "bun"), args, {
    cwd: repoRoot,
    env: { ...env, ...extraEnv } as Record<string, string>,
    stdio: [keepStdin ? "pipe" : "ignore", "pipe", "inherit"],
  });
  const lines: string[] = [];
  let buf = "";
  child.stdout!.on("data", (d: Uint8Array) => {
    buf += new TextDecoder().decode(d);
    const parts = buf.split("\n");
    buf = parts.pop()!;
    lines.push(...parts);
  });
  const exited = new Promise<number>((r) => child.on("close", (code) => r(code ?? 1)));
  return { child, lines, exited };
}
const scriptArgs = (file: string) => runtime === "deno" ? ["run", "-A", "--no-check", file] : [file];

// the receiver runs in its own process (started by the parent; children get its endpoint), on Bun
// whatever the benchmark's runtime: a Deno receiver decoding protobuf fell behind the every-span
// mode's flushes on this 2-core machine (exports timed out, then `408 Request Timeout`), and the
// receiver is not what is measured (its CPU is another process's)
let endpoint = env.THINKAGAIN_TRACING_BENCH_ENDPOINT ?? "";
const sink = CHILD === undefined ? runChild(["bench/_otlp_sink.ts"], {}, true, "bun") : undefined;
if (sink !== undefined) {
  endpoint = await new Promise<string>((resolve) => {
    const t = setInterval(() => sink.lines.length > 0 && (clearInterval(t), resolve(sink.lines[0])), 10);
  });
}

/** The processors' queue: large enough that nothing is dropped (the run reports if anything was). */
const QUEUE = 1 << 19;
const provider = new BasicTracerProvider({
  forceFlushTimeoutMillis: 600_000, // a loaded machine sends a large queue slowly: wait for it
  spanProcessors: [
    // every span is delivered: the queue holds whatever the exporter has not sent yet (it lags on a
    // busy machine), and what the processor still drops is counted and reported
    new BatchSpanProcessor(
      // a flush sends the whole queue at once: as many exports in flight as it takes
      new OTLPTraceExporter({ url: `${endpoint}/v1/traces`, concurrencyLimit: QUEUE / 2048 }),
      ta.watchDroppedSpans({ maxQueueSize: QUEUE, maxExportBatchSize: 2048, scheduledDelayMillis: 200 }),
    ),
  ],
});
// production-style head sampling: 1% of traces recorded, the rest non-recording but propagated
const sampledProvider = new BasicTracerProvider({
  forceFlushTimeoutMillis: 600_000,
  sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(0.01) }),
  spanProcessors: [
    new BatchSpanProcessor(
      new OTLPTraceExporter({ url: `${endpoint}/v1/traces`, concurrencyLimit: QUEUE / 512 }),
      ta.watchDroppedSpans({ maxQueueSize: QUEUE, scheduledDelayMillis: 200 }),
    ),
  ],
});
const contextManager = new AsyncLocalStorageContextManager();

// a registered provider whose spans record nothing (they pass the parent's context through, as the
// API's own no-op does): every task still goes through thinkagain's whole span path
class NoopRegisteredProvider implements TracerProvider {
  getTracer(): Tracer {
    return passThrough;
  }
}
const passThrough = {
  startSpan: (_name: string, _options?: unknown, ctx = context.active()) =>
    trace.wrapSpanContext(trace.getSpanContext(ctx) ?? INVALID_SPAN_CONTEXT),
  startActiveSpan: () => {
    throw new Error("not used by the benchmark");
  },
} as unknown as Tracer;
const noopRegistered = new NoopRegisteredProvider();

type Mode =
  | "off"
  | "auto, no provider"
  | "on, API no-op (none registered)"
  | "on, registered no-op provider"
  | "on, SDK + OTLP"
  | "on, SDK 1% sampled"
  | "on, SDK + OTLP, sampleRatio 1%"
  | "on, SDK + OTLP, sampleRatio 0.1%"
  | "on, SDK + OTLP, maxOverhead 10%";
const ALL_MODES: Mode[] = [
  "off",
  "auto, no provider",
  "on, API no-op (none registered)",
  "on, registered no-op provider",
  "on, SDK + OTLP",
  "on, SDK 1% sampled",
  "on, SDK + OTLP, sampleRatio 1%",
  "on, SDK + OTLP, sampleRatio 0.1%",
  "on, SDK + OTLP, maxOverhead 10%",
];
// MODES=a,b (substrings) runs only the matching modes, and off
const only = (globalThis as { process?: { env: Record<string, string> } }).process?.env.MODES?.split(",");
const MODES: Mode[] = ALL_MODES.filter((m) => m === "off" || only === undefined || only.some((o) => m.includes(o)));

function setMode(mode: Mode): void {
  ta.disableTracing();
  trace.disable();
  context.disable();
  propagation.disable();
  if (mode === "auto, no provider") ta.setTracingAutoDetect(true);
  if (mode === "on, API no-op (none registered)") ta.enableTracing();
  if (mode === "on, registered no-op provider") {
    context.setGlobalContextManager(contextManager.enable());
    trace.setGlobalTracerProvider(noopRegistered);
    ta.enableTracing();
  }
  if (mode === "on, SDK + OTLP" || mode === "on, SDK 1% sampled") {
    context.setGlobalContextManager(contextManager.enable());
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    trace.setGlobalTracerProvider(mode === "on, SDK + OTLP" ? provider : sampledProvider);
    ta.setTracingAutoDetect(true); // picked up at the first .go(), as users get it
  }
  if (mode === "on, SDK + OTLP, sampleRatio 1%" || mode === "on, SDK + OTLP, sampleRatio 0.1%") {
    // thinkagain's own head sampling: untraced tasks never reach the SDK
    context.setGlobalContextManager(contextManager.enable());
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    trace.setGlobalTracerProvider(provider);
    ta.enableTracing({ sampleRatio: mode.endsWith("0.1%") ? 0.001 : 0.01 });
  }
  if (mode === "on, SDK + OTLP, maxOverhead 10%") {
    // a budget instead of a ratio: roots are traced while 10 % of the passing time pays for them
    context.setGlobalContextManager(contextManager.enable());
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    trace.setGlobalTracerProvider(provider);
    ta.enableTracing({ maxOverhead: 0.1 });
  }
}

const noop = ta.op(async function noop(x: number) {
  return x;
});
const Counter = ta.service(
  class Counter {
    n = 0;
    async add(x: number) {
      this.n += x;
      return this.n;
    }
  },
);
const counter = Counter.init();

// a task with ~20 µs of its own CPU work: closer to real pipeline steps than a no-op
const work = ta.op(async function work(x: number) {
  let h = x;
  for (let i = 0; i < 4000; i++) h = Math.imul(h ^ i, 0x9e3779b1) >>> 0;
  return h;
});

async function fanoutWork(): Promise<number> {
  const t = performance.now();
  const refs = new Array(N / 5);
  for (let i = 0; i < N / 5; i++) refs[i] = work.go(i);
  await Promise.all(refs);
  return performance.now() - t;
}

async function fanout(): Promise<number> {
  const t = performance.now();
  const refs = new Array(N);
  for (let i = 0; i < N; i++) refs[i] = noop.go(i);
  await Promise.all(refs);
  return performance.now() - t;
}

async function sequential(): Promise<number> {
  const t = performance.now();
  for (let i = 0; i < N / 5; i++) await noop.go(i);
  return performance.now() - t;
}

async function calls(): Promise<number> {
  const t = performance.now();
  const refs = new Array(N);
  for (let i = 0; i < N; i++) refs[i] = counter.add.go(1);
  await Promise.all(refs);
  return performance.now() - t;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const BENCHES = ["fanout", "sequential", "calls", "fanout 2k × 20µs work"] as const;
type Bench = (typeof BENCHES)[number];
const BENCH_FNS: Record<Bench, [() => Promise<number>, number]> = {
  fanout: [fanout, N],
  sequential: [sequential, N / 5],
  calls: [calls, N],
  "fanout 2k × 20µs work": [fanoutWork, N / 5],
};

/** One turn of the event loop: due timers (the SDK's batch export) and I/O run here, with no idle wait. */
const turn = () => new Promise<void>((r) => setImmediate(r));

/**
 * Runs `bench` back to back for `ms`, one event-loop turn between runs, and returns its sustained
 * throughput over the whole period, in tasks per ms of wall time and per ms of this process's CPU
 * time (user + system, every thread): what tracing costs later (the exporter's batching, encoding
 * and sending on its timer) and the collection of every run's garbage are in it. On shared cores,
 * wall time also counts the time other processes held the core; CPU time does not.
 */
async function sustained(
  bench: () => Promise<number>,
  tasks: number,
  ms: number,
  flush: () => Promise<unknown>,
): Promise<{ wall: number; cpu: number }> {
  const t0 = performance.now(), c0 = cpuMs();
  let runs = 0;
  while (performance.now() - t0 < ms) {
    await bench();
    runs++;
    await turn();
  }
  // the spans still queued are sent inside the period: every span's export is paid for
  await flush();
  return { wall: runs * tasks / (performance.now() - t0), cpu: runs * tasks / (cpuMs() - c0) };
}

/** CPU time this process has used, ms. */
function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** In a child: measures one mode and prints its sustained throughputs as one JSON line. */
async function measureMode(mode: Mode): Promise<void> {
  setMode(mode);
  const out = {} as Record<Bench, { wall: number; cpu: number }>;
  const flush = mode.includes("SDK")
    ? () => Promise.all([provider.forceFlush(), sampledProvider.forceFlush()])
    : () => Promise.resolve();
  for (const b of BENCHES) {
    const [fn, tasks] = BENCH_FNS[b];
    await sustained(fn, tasks, WARM_MS, flush); // optimized code and a steady heap before the period
    out[b] = await sustained(fn, tasks, PERIOD_MS, flush);
  }
  if (mode.startsWith("on, SDK") && !ta.isTracingEnabled()) {
    throw new Error("tracing did not turn on with the SDK registered");
  }
  setMode("off");
  await provider.shutdown();
  await sampledProvider.shutdown();
  const { droppedSpans, failedSpans } = ta.tracingStats(); // counted by the processors, whatever the mode
  console.log(JSON.stringify({ ...out, lost: droppedSpans + failedSpans }));
}

if (CHILD !== undefined) {
  await measureMode(CHILD as Mode);
} else {
  const rates = {} as Record<Mode, Record<Bench, number[]>>;
  const cpuRates = {} as Record<Mode, Record<Bench, number[]>>;
  for (const m of MODES) {
    rates[m] = { fanout: [], sequential: [], calls: [], "fanout 2k × 20µs work": [] };
    cpuRates[m] = { fanout: [], sequential: [], calls: [], "fanout 2k × 20µs work": [] };
  }
  const lost = Object.fromEntries(MODES.map((m) => [m, 0])) as Record<Mode, number>;
  for (let rep = 0; rep < REPS; rep++) {
    for (const mode of MODES) {
      const c = runChild(scriptArgs("bench/tracing.ts"), {
        THINKAGAIN_TRACING_BENCH_MODE: mode,
        THINKAGAIN_TRACING_BENCH_ENDPOINT: endpoint,
      });
      if (await c.exited !== 0) throw new Error(`mode ${mode} failed`);
      const out = JSON.parse(c.lines.at(-1)!) as Record<Bench, { wall: number; cpu: number }> & { lost: number };
      lost[mode] += out.lost;
      for (const b of BENCHES) {
        rates[mode][b].push(out[b].wall);
        cpuRates[mode][b].push(out[b].cpu);
      }
    }
  }
  sink!.child.stdin!.end();
  await sink!.exited;
  const received = sink!.lines.find((l) => l.startsWith("spans "));

  console.log(
    `tracing overhead, ${runtimeVersion()}, N=${N}: sustained throughput over ${PERIOD_MS} ms of back-to-back runs, ${REPS} processes per mode (median; "per process" = range of each process's ratio)`,
  );
  console.log(
    "wall: tasks per second of wall time; CPU: µs of this process's CPU per task, and what tracing adds to it " +
      "over off (median of the processes; ranges: each process's ratio to the median off)",
  );
  console.log(
    "| benchmark | mode | tasks/s | vs off | per process | CPU µs/task | + vs off | CPU vs off | per process |",
  );
  console.log("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  const span = (xs: number[]) => `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}`;
  for (const b of BENCHES) {
    const base = median(rates.off[b]);
    const cpuBase = median(cpuRates.off[b]);
    for (const mode of MODES) {
      const r = median(rates[mode][b]);
      const c = median(cpuRates[mode][b]);
      const usPerTask = 1000 / c, added = 1000 / c - 1000 / cpuBase;
      console.log(
        `| ${b} | ${mode} | ${Math.round(r * 1000).toLocaleString("en-US")} | ${(r / base).toFixed(3)} | ${
          span(rates[mode][b].map((x) => x / base))
        } | ${usPerTask.toFixed(3)} | ${added >= 0 ? "+" : ""}${added.toFixed(3)} | ${(c / cpuBase).toFixed(3)} | ${
          span(cpuRates[mode][b].map((x) => x / cpuBase))
        } |`,
      );
    }
  }
  console.log(`receiver got ${received?.slice(6)} spans`);
  const lossy = MODES.filter((m) => lost[m] > 0);
  console.log(
    lossy.length === 0
      ? "spans dropped or failed to export (ta.watchDroppedSpans): 0 in every mode"
      : `spans LOST (dropped or failed to export): ${lossy.map((m) => `${m}: ${lost[m]}`).join("; ")}`,
  );
}
