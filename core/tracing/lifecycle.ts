/**
 * When tracing is on: {@link enableTracing} and {@link disableTracing}, and the automatic detection of
 * a registered `TracerProvider`. Three states: off (no probe), armed (the submit probe looks for a
 * provider every 1024 submissions), and live (the task event listener, the body wrapper and the root
 * sampler are installed; following the global provider, the probe keeps checking that it is there).
 *
 * @module
 */
import { trace, type TracerProvider } from "@opentelemetry/api";
import { describe } from "../describe.ts";
import { onTaskEvent, setBodyWrapper, setRootSampler, setSubmitProbe } from "../events.ts";
import { checkKnownKeys, type KnownKeys } from "../options.ts";
import { hasTracerProvider, probeContextManager } from "./provider.ts";
import { budgetSampler, ratioSampler, stopBudgetTimer, topUp } from "./sampling.ts";
import { runInSpan, spanTaskEvent } from "./spans.ts";
import { TRACER_NAME, tracingState } from "./state.ts";
import { freezeStats, resetStats } from "./stats.ts";

/** Options of {@link enableTracing}. */
export interface TracingOptions {
  /** Provider to take the tracer from (default: the globally registered one, resolved per span). */
  tracerProvider?: TracerProvider;
  /**
   * Share of root tasks traced, in (0, 1] (default 1: all). Decided by thinkagain before any span
   * exists, per task submitted outside a traced task; the tasks a traced task submits are traced
   * with it, also on the nodes their calls go to (a call left out tells its node so, and the node
   * traces nothing of it; a node samples by its own ratio only calls that carry no decision). Untraced
   * tasks cost one check, where an SDK's own sampler still pays for a non-recording span per task.
   * (While a profiler runs, every task is recorded for it.)
   */
  sampleRatio?: number;
  /**
   * Instead of a fixed `sampleRatio`: the share of time tracing may cost, in (0, 1) (e.g. `0.1`).
   * Root tasks are traced while a budget allows, earned at this share of the time that passes
   * (topped up every 5 ms, saving up at most 10 ms' worth) and spent at the estimated full cost of
   * each span (its start and end, timed on a sample, times a factor calibrated for the SDK's later
   * export, collection and cold code); the tasks a traced root submits are traced with it, so traces
   * stay whole and the budget may briefly go into debt. While the budget is spent, a new root costs
   * what it costs untraced. A lone request after a quiet spell is always traced; a flood of
   * microsecond tasks is traced in proportion. Not with `sampleRatio`.
   */
  maxOverhead?: number;
}

const TRACING_OPTION_KEYS: KnownKeys<TracingOptions> = { tracerProvider: true, sampleRatio: true, maxOverhead: true };

/**
 * Turns tracing on: from now on every task is a span whenever a tracer provider is there to take
 * it. Idempotent; calling it again with another provider or ratio switches to it. Its options are
 * checked first: an unknown one (`sampleRate`), a `tracerProvider` without `getTracer()` or a
 * ratio out of range throws and changes nothing; a provider whose `getTracer()` throws leaves
 * tracing off.
 *
 * Without `tracerProvider` it follows the global provider: while none is registered (the API's
 * no-op) nothing per task is done beyond a check every 1024 submissions, since no span could go
 * anywhere; once one is registered, the next check starts tracing. (Spans are made through the
 * provider, so one registered through Deno's `OTEL_DENO=true` or any SDK is picked up alike.)
 *
 * @param options Which provider to use (default: the global one) and the share of roots to trace.
 * @throws {TypeError} For an unknown option (naming the closest one) or a `tracerProvider` that is
 * not one. {@link RangeError} For a `sampleRatio` or `maxOverhead` that is not a number in range.
 *
 * @example Spans for ops, with an in-memory exporter
 * ```ts
 * import * as ta from "../mod.ts";
 * import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
 * const exporter = new InMemorySpanExporter();
 * const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
 * ta.enableTracing({ tracerProvider });
 * const inc = ta.op(async function inc(x: number) { return x + 1; });
 * await inc.go(inc.go(1));
 * ta.disableTracing();
 * const names = exporter.getFinishedSpans().map((s) => s.name);
 * if (names.join() !== "op inc,op inc") throw new Error(names.join());
 * ```
 *
 * @example Bounded overhead: trace what 10 % of the time can pay for
 * ```ts
 * import * as ta from "../mod.ts";
 * import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
 * const exporter = new InMemorySpanExporter();
 * const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
 * ta.enableTracing({ tracerProvider, maxOverhead: 0.1 });
 * const tiny = ta.op(async function tiny(x: number) { return x; });
 * await ta.all(Array.from({ length: 10_000 }, (_, i) => tiny.go(i)));
 * ta.disableTracing();
 * const traced = exporter.getFinishedSpans().length;
 * if (traced === 0 || traced >= 10_000) throw new Error(`a share is traced, got ${traced}`);
 * ```
 */
export function enableTracing(options: TracingOptions = {}): void {
  // every option is checked before anything changes: a bad call leaves tracing as it was
  checkKnownKeys("enableTracing", options, TRACING_OPTION_KEYS);
  const provider: unknown = options.tracerProvider;
  if (
    provider !== undefined &&
    (provider === null || typeof provider !== "object" ||
      typeof (provider as { getTracer?: unknown }).getTracer !== "function")
  ) {
    throw new TypeError(
      `enableTracing: tracerProvider must be a TracerProvider (with getTracer()), got ${describe(provider)}`,
    );
  }
  const ratio: unknown = options.sampleRatio === undefined ? 1 : options.sampleRatio;
  if (typeof ratio !== "number" || !(ratio > 0 && ratio <= 1)) {
    throw new RangeError(`enableTracing: sampleRatio must be a number in (0, 1], got ${describe(ratio)}`);
  }
  const overhead: unknown = options.maxOverhead;
  if (overhead !== undefined) {
    if (typeof overhead !== "number" || !(overhead > 0 && overhead < 1)) {
      throw new RangeError(`enableTracing: maxOverhead must be a number in (0, 1), got ${describe(overhead)}`);
    }
    if (options.sampleRatio !== undefined) {
      throw new TypeError("enableTracing: give sampleRatio or maxOverhead, not both");
    }
  }
  tracingState.armed = true;
  tracingState.wanted = true;
  resetStats();
  tracingState.wantedProvider = options.tracerProvider;
  tracingState.wantedRatio = ratio;
  tracingState.wantedOverhead = overhead;
  try {
    if (tracingState.wantedProvider !== undefined || hasTracerProvider()) goLive();
    else goArmed();
  } catch (e) {
    // a provider that throws when asked for its tracer: tracing is left off, not half on
    disableTracing();
    throw e;
  }
}

/**
 * The submit probe under a budget. Work that runs on microtasks alone (a loop awaiting in-process
 * ops) gives the top-up timer no turn: while the gate is shut, every 64th submission tops up too (a
 * clock read per 64 tasks). Following the global provider, it also looks for the provider.
 */
function budgetProbe(): void {
  if (tracingState.gateShut && (++tracingState.shutCount & 63) === 0) topUp();
  if (tracingState.following && (tracingState.probeCount++ & 1023) === 0) check();
}

/** Starts making spans (the listener, the body wrapper, the sampler). */
function goLive(): void {
  // a switch away from a budget must not leave its gate shut while the old debt is paid off
  stopBudgetTimer();
  if (tracingState.submittedFrozen !== undefined) resetStats(); // live again after a disable: a new count
  const overhead = tracingState.wantedOverhead;
  setRootSampler(overhead !== undefined ? budgetSampler(overhead) : ratioSampler(tracingState.wantedRatio));
  // resolved once: a provider's tracer, or the global API's proxy tracer (it follows a provider
  // registered later; after `trace.disable()` and a new registration, call enableTracing() again)
  tracingState.tracer = (tracingState.wantedProvider ?? trace.getTracerProvider()).getTracer(TRACER_NAME);
  tracingState.contextCarries = probeContextManager();
  tracingState.probeCount = 1;
  // following the global provider: keep checking that it is still there
  tracingState.following = tracingState.wantedProvider === undefined;
  setSubmitProbe(overhead !== undefined ? budgetProbe : tracingState.following ? probe : undefined);
  if (tracingState.off !== undefined) return;
  tracingState.off = onTaskEvent(spanTaskEvent);
  setBodyWrapper(runInSpan);
}

/** Stops making spans, but keeps looking for a provider. */
function goArmed(): void {
  stopLive();
  tracingState.probeCount = 0; // the next .go() looks
  setSubmitProbe(probe);
}

function stopLive(): void {
  setRootSampler(undefined);
  stopBudgetTimer();
  tracingState.tracer = undefined;
  if (tracingState.off === undefined) return;
  tracingState.off();
  tracingState.off = undefined;
  setBodyWrapper(undefined);
}

/**
 * Turns tracing off and stops looking for a provider (until {@link enableTracing} or
 * {@link setTracingAutoDetect}). Spans of tasks still running are ended when they settle only if
 * tracing is on again by then; otherwise they are dropped.
 *
 * @example
 * ```ts
 * import { disableTracing, enableTracing, isTracingEnabled } from "./lifecycle.ts";
 * enableTracing();
 * disableTracing();
 * if (isTracingEnabled()) throw new Error("expected off");
 * ```
 */
export function disableTracing(): void {
  tracingState.armed = true;
  freezeStats();
  tracingState.autoDetect = false;
  tracingState.wanted = false;
  tracingState.wantedProvider = undefined;
  setSubmitProbe(undefined);
  stopLive();
}

/**
 * Whether tracing is on: after {@link enableTracing}, or once auto-detection found a registered
 * provider. (While it follows the global provider and none is registered, it is on but idle.)
 *
 * @returns `true` when tasks are traced whenever a provider can take their spans.
 *
 * @example
 * ```ts
 * import { disableTracing, enableTracing, isTracingEnabled } from "./lifecycle.ts";
 * enableTracing();
 * if (!isTracingEnabled()) throw new Error("expected on");
 * disableTracing();
 * ```
 */
export function isTracingEnabled(): boolean {
  // live through detection alone: `off` is set and `wanted` is not
  return tracingState.wanted || tracingState.off !== undefined;
}

/**
 * Turns automatic detection of a registered provider on (the default) or off. While on and tracing
 * is off, `.go()` checks for a provider at the first submission and then every 1024th.
 *
 * @param on Whether to detect.
 *
 * @example
 * ```ts
 * import { isTracingEnabled, setTracingAutoDetect } from "./lifecycle.ts";
 * import * as ta from "../mod.ts";
 * import { trace } from "@opentelemetry/api";
 * trace.disable(); // no provider: detection finds nothing, tracing stays off
 * setTracingAutoDetect(true);
 * await ta.op(async function noop() {}).go();
 * if (isTracingEnabled()) throw new Error("expected off without a provider");
 * ```
 */
export function setTracingAutoDetect(on: boolean): void {
  tracingState.armed = true;
  tracingState.autoDetect = on;
  if (!on && !tracingState.wanted) {
    // tracing that detection turned on stops with it; enableTracing() is not undone
    if (tracingState.off !== undefined) freezeStats();
    stopLive();
    setSubmitProbe(undefined);
    return;
  }
  if (tracingState.off !== undefined) return; // live: its probe stays
  tracingState.probeCount = 0;
  setSubmitProbe(on || tracingState.wanted ? probe : undefined);
}

/** Called by .go(): every 1024th submission, follows the global provider coming or going. */
function probe(): void {
  if ((tracingState.probeCount++ & 1023) !== 0) return;
  check();
}

function check(): void {
  const present = hasTracerProvider();
  if (tracingState.off !== undefined) {
    // live on the global provider: stop making spans nobody takes; re-read the context manager
    if (!present) goArmed();
    else tracingState.contextCarries = probeContextManager();
  } else if (present) {
    if (tracingState.wanted) goLive();
    else if (tracingState.autoDetect) {
      // found by detection: traced with the defaults, and only while detection stays on
      tracingState.wantedProvider = undefined;
      tracingState.wantedRatio = 1;
      tracingState.wantedOverhead = undefined;
      goLive();
    }
  }
}

/**
 * @internal Detects now (used where work arrives from elsewhere, e.g. a server span): with tracing
 * not live and wanted or auto-detected, looks for a registered provider at once.
 *
 * @example
 * ```ts
 * import { detectNow, isTracingEnabled, setTracingAutoDetect } from "./lifecycle.ts";
 * import { trace } from "@opentelemetry/api";
 * trace.disable();
 * setTracingAutoDetect(true);
 * detectNow();
 * if (isTracingEnabled()) throw new Error("nothing to detect");
 * ```
 */
export function detectNow(): void {
  if (tracingState.off === undefined && (tracingState.wanted || tracingState.autoDetect)) check();
}

/**
 * Arms provider auto-detection the first time an op or a service is defined (what `op()` and
 * `service()` call): every task comes from one of them, so the probe is in place before the first
 * `.go()`, and importing tracing does nothing. After an explicit choice (`enableTracing`,
 * `disableTracing`, `setTracingAutoDetect`) it does nothing.
 *
 * @example
 * ```ts
 * import { armTracing, disableTracing, isTracingEnabled } from "./lifecycle.ts";
 * disableTracing();
 * armTracing(); // an explicit choice was made: nothing changes
 * if (isTracingEnabled()) throw new Error("expected off");
 * ```
 */
export function armTracing(): void {
  if (tracingState.armed) return;
  tracingState.armed = true;
  if (tracingState.autoDetect) setTracingAutoDetect(true);
}
