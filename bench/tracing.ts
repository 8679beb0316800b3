// Tracing overhead: fanout (10k no-op `op.go` awaited together) and 10k concurrent service calls,
// with tracing off, with the default auto-detection and no provider, forced on with the API's no-op
// provider (nothing registered), forced on with a registered provider whose spans record nothing, with
// the OpenTelemetry SDK + BatchSpanProcessor + OTLP/HTTP protobuf exporter sending every span to a
// local receiver (another process), with the same SDK sampling 1% of traces, and with thinkagain's own
// sampling (`sampleRatio`, `maxOverhead`). A third benchmark gives each task ~20 µs of CPU work.
//
// Each mode runs in a process of its own (a program does not switch tracing modes between bursts,
// and on V8 a switch inside one process deoptimized the shared code by up to 2×, more than the
// differences measured); the processes of all modes take turns, REPS times; each warms up, then times
// RUNS runs of each benchmark with a full GC before each. Figures are medians over all timed runs of
// a mode; "vs off" is throughput relative to "off".
// Run: bun bench/tracing.ts   or   deno run -A --v8-flags=--expose-gc bench/tracing.ts
// (env: REPS=n processes per mode, RUNS=n timed runs per process, MODES=substr,… to run only those)
import { spawn } from "node:child_process";
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
const RUNS = Number(env.RUNS ?? 15);
const WARM = 8;
/** Set in a child process: the one mode it measures. */
const CHILD = env.THINKAGAIN_TRACING_BENCH_MODE;

// the receiver runs in its own process, on the runtime that runs this benchmark
const runtime = (globalThis as { Bun?: unknown }).Bun
  ? "bun"
  : (globalThis as { Deno?: unknown }).Deno
  ? "deno"
  : "node";
const repoRoot = fileURLToPath(new URL("..", import.meta.url));
const bin = (name: string) => fileURLToPath(new URL(`../node_modules/.bin/${name}`, import.meta.url));

/** Runs `args` on this benchmark's runtime; resolves with its stdout lines (stderr passes through). */
function runChild(args: string[], extraEnv: Record<string, string>, keepStdin = false) {
  const child = spawn(bin(runtime === "deno" ? "deno" : "bun"), args, {
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
const scriptArgs = (file: string) =>
  runtime === "deno" ? ["run", "-A", "--no-check", "--v8-flags=--expose-gc", file] : [file];

// the receiver runs in its own process (started by the parent; children get its endpoint)
let endpoint = env.THINKAGAIN_TRACING_BENCH_ENDPOINT ?? "";
const sink = CHILD === undefined ? runChild(scriptArgs("bench/_otlp_sink.ts"), {}, true) : undefined;
if (sink !== undefined) {
  endpoint = await new Promise<string>((resolve) => {
    const t = setInterval(() => sink.lines.length > 0 && (clearInterval(t), resolve(sink.lines[0])), 10);
  });
}

const provider = new BasicTracerProvider({
  spanProcessors: [
    new BatchSpanProcessor(new OTLPTraceExporter({ url: `${endpoint}/v1/traces` }), {
      maxQueueSize: 4 * N, // a burst of 10k spans must fit, or the processor drops spans
      maxExportBatchSize: 2048,
      scheduledDelayMillis: 200,
    }),
  ],
});
// production-style head sampling: 1% of traces recorded, the rest non-recording but propagated
const sampledProvider = new BasicTracerProvider({
  sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(0.01) }),
  spanProcessors: [
    new BatchSpanProcessor(new OTLPTraceExporter({ url: `${endpoint}/v1/traces` }), {
      maxQueueSize: 4 * N,
      scheduledDelayMillis: 200,
    }),
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

const gc: (() => void) | undefined = (globalThis as { Bun?: { gc(f: boolean): void } }).Bun
  ? () => (globalThis as unknown as { Bun: { gc(f: boolean): void } }).Bun.gc(true)
  : (globalThis as { gc?: () => void }).gc;

async function fanout(): Promise<number> {
  const t = performance.now();
  const refs = new Array(N);
  for (let i = 0; i < N; i++) refs[i] = noop.go(i);
  await Promise.all(refs);
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
const BENCHES = ["fanout", "calls", "fanout 2k × 20µs work"] as const;
type Times = Record<(typeof BENCHES)[number], number[]>;

/** In a child: measures one mode and prints its times as one JSON line. */
async function measureMode(mode: Mode): Promise<void> {
  setMode(mode);
  const times: Times = { fanout: [], calls: [], "fanout 2k × 20µs work": [] };
  for (let run = -WARM; run < RUNS; run++) {
    gc?.(); // garbage of the previous run must not land in this one's timing
    const f = await fanout();
    gc?.();
    const c = await calls();
    gc?.();
    const w = await fanoutWork();
    if (mode.startsWith("on, SDK")) {
      // (the sampleRatio and maxOverhead modes export through `provider` too)
      if (!ta.isTracingEnabled()) throw new Error("tracing did not turn on with the SDK registered");
      await (mode === "on, SDK 1% sampled" ? sampledProvider : provider).forceFlush(); // export outside the timed part
    }
    if (run < 0) continue; // warm-up
    times.fanout.push(f);
    times.calls.push(c);
    times["fanout 2k × 20µs work"].push(w);
  }
  setMode("off");
  await provider.shutdown();
  await sampledProvider.shutdown();
  console.log(JSON.stringify(times));
}

if (CHILD !== undefined) {
  await measureMode(CHILD as Mode);
} else {
  const all: Record<Mode, Times> = {} as Record<Mode, Times>;
  const perProcess: Record<Mode, Times> = {} as Record<Mode, Times>;
  for (const m of MODES) {
    all[m] = { fanout: [], calls: [], "fanout 2k × 20µs work": [] };
    perProcess[m] = { fanout: [], calls: [], "fanout 2k × 20µs work": [] };
  }
  for (let rep = 0; rep < REPS; rep++) {
    for (const mode of MODES) {
      const c = runChild(scriptArgs("bench/tracing.ts"), {
        THINKAGAIN_TRACING_BENCH_MODE: mode,
        THINKAGAIN_TRACING_BENCH_ENDPOINT: endpoint,
      });
      if (await c.exited !== 0) throw new Error(`mode ${mode} failed`);
      const times = JSON.parse(c.lines.at(-1)!) as Times;
      for (const b of BENCHES) {
        all[mode][b].push(...times[b]);
        perProcess[mode][b].push(median(times[b]));
      }
    }
  }
  sink!.child.stdin!.end();
  await sink!.exited;
  const received = sink!.lines.find((l) => l.startsWith("spans "));

  console.log(
    `tracing overhead, ${runtime} ${
      runtime === "bun" ? (globalThis as unknown as { Bun: { version: string } }).Bun.version : ""
    }, N=${N}, ${REPS} processes per mode × ${RUNS} timed runs (medians; "per process" = range of each process's median ratio)`,
  );
  console.log("| benchmark | mode | median ms | tasks/s | vs off | per process |");
  console.log("| --- | --- | ---: | ---: | ---: | ---: |");
  for (const b of BENCHES) {
    const base = median(all.off[b]);
    for (const mode of MODES) {
      const m = median(all[mode][b]);
      const n = b.startsWith("fanout 2k") ? N / 5 : N;
      const ratios = perProcess[mode][b].map((x) => median(perProcess.off[b]) / x);
      console.log(
        `| ${b} | ${mode} | ${m.toFixed(2)} | ${Math.round(n / m * 1000).toLocaleString("en-US")} | ${
          (base / m).toFixed(3)
        } | ${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)} |`,
      );
    }
  }
  console.log(`receiver got ${received?.slice(6)} spans`);
}
