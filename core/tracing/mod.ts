/**
 * OpenTelemetry tracing through `@opentelemetry/api` only: every op and service call becomes a span,
 * `op <name>` or `call <Service>.<method>`, child of the span active where `.go()` was called, with
 * links to the spans of the tasks whose refs were its arguments. The user's SDK (or Deno's built-in
 * OpenTelemetry) decides where spans go; with no provider registered, nothing is recorded.
 *
 * How it turns on: {@link enableTracing} turns it on explicitly. Otherwise it turns on by itself
 * when a real `TracerProvider` is registered globally: the first `.go()` checks, and while none is
 * found the check repeats every 1024 submissions (so a provider registered after startup is picked up
 * within 1024 tasks). {@link disableTracing} turns it off and stops the checks.
 *
 * Where things are: `lifecycle.ts` (on, off, detection), `sampling.ts` (`sampleRatio`,
 * `maxOverhead`), `spans.ts` (spans from task events), `propagation.ts` (trace context across a
 * transport), `provider.ts` (what the API has registered), `stats.ts` (counts), `dropped.ts` (spans
 * the SDK lost), `state.ts` (the one state object).
 *
 * @example Spans for ops, with an in-memory exporter
 * ```ts
 * import * as ta from "../mod.ts";
 * import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
 * const exporter = new InMemorySpanExporter();
 * ta.enableTracing({ tracerProvider: new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }) });
 * const double = ta.op(async function double(x: number) { return 2 * x; });
 * await double.go(double.go(1));
 * ta.disableTracing();
 * if (exporter.getFinishedSpans().length !== 2) throw new Error("one span per task");
 * ```
 *
 * @module
 */

export {
  disableTracing,
  enableTracing,
  isTracingEnabled,
  setTracingAutoDetect,
  type TracingOptions,
} from "./lifecycle.ts";
export { type ExtractedContextOptions, injectTraceContext, withExtractedContext } from "./propagation.ts";
export { hasTracerProvider } from "./provider.ts";
export { type TracingStats, tracingStats } from "./stats.ts";
export { watchDroppedSpans } from "./dropped.ts";
