// Tracing overhead: fanout (10k no-op `op.go` awaited together) and 10k concurrent service calls,
// with tracing off, with the default auto-detection and no provider, forced on with the API's no-op
// provider (nothing registered), forced on with a registered provider whose spans record nothing, with the OpenTelemetry SDK + BatchSpanProcessor + OTLP/HTTP protobuf exporter sending
// every span to a local receiver (another process), and with the same SDK sampling 1% of traces. Modes alternate within each round (each timed after one untimed run); medians over rounds; the
// ratios are throughput relative to "off". A third benchmark gives each task ~20 µs of CPU work.
// Run: bun bench/tracing.ts   or   deno run -A --v8-flags=--expose-gc bench/tracing.ts   (ROUNDS=n)
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
const ROUNDS = Number((globalThis as { process?: { env: Record<string, string> } }).process?.env.ROUNDS ?? 15);

// the receiver runs in its own process, on the runtime that runs this benchmark
const runtime = (globalThis as { Bun?: unknown }).Bun
  ? "bun"
  : (globalThis as { Deno?: unknown }).Deno
  ? "deno"
  : "node";
const sinkArgs = runtime === "deno" ? ["run", "-A", "--no-check", "bench/_otlp_sink.ts"] : ["bench/_otlp_sink.ts"];
const sink = spawn(
  fileURLToPath(new URL(`../node_modules/.bin/${runtime === "deno" ? "deno" : "bun"}`, import.meta.url)),
  sinkArgs,
  {
    cwd: fileURLToPath(new URL("..", import.meta.url)),
    stdio: ["pipe", "pipe", "inherit"],
  },
);
const lines: string[] = [];
let buf = "";
sink.stdout!.on("data", (d: Uint8Array) => {
  buf += new TextDecoder().decode(d);
  const parts = buf.split("\n");
  buf = parts.pop()!;
  lines.push(...parts);
});
const endpoint = await new Promise<string>((resolve) => {
  const t = setInterval(() => lines.length > 0 && (clearInterval(t), resolve(lines[0])), 10);
});

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
const MODES: Mode[] = [
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
const times: Record<string, Record<Mode, number[]>> = {
  fanout: {} as Record<Mode, number[]>,
  calls: {} as Record<Mode, number[]>,
  "fanout 2k × 20µs work": {} as Record<Mode, number[]>,
};
for (const k of Object.keys(times)) for (const m of MODES) times[k][m] = [];

for (let round = 0; round <= ROUNDS; round++) {
  for (const mode of MODES) {
    setMode(mode);
    // one untimed run of each after the switch: switching modes deopts code (on V8 the first run
    // after a switch swung by up to 2×), and a program does not switch between every burst
    await fanout();
    await calls();
    await fanoutWork();
    gc?.(); // garbage of the previous mode must not land in this one's timing
    const f = await fanout();
    gc?.();
    const c = await calls();
    gc?.();
    const w = await fanoutWork();
    if (mode.startsWith("on, SDK")) {
      // (the sampleRatio mode exports through `provider` too)
      if (!ta.isTracingEnabled()) throw new Error("tracing did not turn on with the SDK registered");
      await (mode === "on, SDK 1% sampled" ? sampledProvider : provider).forceFlush(); // export outside the timed part, so rounds start equal
    }
    if (round === 0) continue; // warm-up
    times.fanout[mode].push(f);
    times.calls[mode].push(c);
    times["fanout 2k × 20µs work"][mode].push(w);
  }
}
setMode("off");
await provider.shutdown();
await sampledProvider.shutdown();
sink.stdin!.end();
await new Promise((r) => sink.on("exit", r));
const received = lines.find((l) => l.startsWith("spans "));

console.log(
  `tracing overhead, ${runtime} ${
    runtime === "bun" ? (globalThis as unknown as { Bun: { version: string } }).Bun.version : ""
  }, N=${N}, ${ROUNDS} rounds (medians)`,
);
console.log("| benchmark | mode | median ms | tasks/s | vs off |");
console.log("| --- | --- | ---: | ---: | ---: |");
for (const [bench, byMode] of Object.entries(times)) {
  const base = median(byMode.off);
  for (const mode of MODES) {
    const m = median(byMode[mode]);
    const n = bench.startsWith("fanout 2k") ? N / 5 : N;
    console.log(
      `| ${bench} | ${mode} | ${m.toFixed(2)} | ${Math.round(n / m * 1000).toLocaleString("en-US")} | ${
        (base / m).toFixed(3)
      } |`,
    );
  }
}
console.log(
  `receiver got ${received?.slice(6)} spans (all ${
    2.2 * N * (ROUNDS + 1)
  } of the full mode, plus ~1% of as many sampled)`,
);
