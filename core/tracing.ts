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
 * Span shape: a task's span starts at submission and ends when the task settles. The event
 * `"started"` marks when the body began (the time before it is queue wait: waiting for inputs, a
 * concurrency slot or the mailbox; also the attribute `thinkagain.queue_wait_ms`), so queue wait and
 * execution are told apart without a second span per task. A retry adds another `"started"` event
 * with its `thinkagain.attempt`. Failure sets status ERROR and records the exception; cancellation
 * sets status ERROR with the description `cancelled`; `thinkagain.status` (`failed`/`cancelled`,
 * absent on success) says which.
 *
 * @module
 */
import {
  type Attributes,
  type Context,
  context,
  type Link,
  propagation,
  ProxyTracerProvider,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  trace,
  type Tracer,
  type TracerProvider,
} from "@opentelemetry/api";
import {
  onTaskEvent,
  sampling,
  setBodyWrapper,
  setRootSampler,
  setSamplingGate,
  setSubmitProbe,
  type TaskEvent,
  type TaskInfo,
} from "./events.ts";
import { submittedCount } from "./object_ref.ts";
import { unrefTimer } from "./scheduler.ts";

/** Instrumentation scope name of thinkagain's spans. */
const TRACER_NAME = "thinkagain";

/** Options of {@link enableTracing}. */
export interface TracingOptions {
  /** Provider to take the tracer from (default: the globally registered one, resolved per span). */
  tracerProvider?: TracerProvider;
  /**
   * Share of root tasks traced, in (0, 1] (default 1: all). Decided by thinkagain before any span
   * exists, per task submitted outside a traced task; the tasks a traced task submits are traced
   * with it. Untraced tasks cost one check, where an SDK's own sampler still pays for a
   * non-recording span per task. (While a profiler runs, every task is recorded for it.)
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

/**
 * How often the budget is topped up while it is not full (ms). Between top-ups nothing reads the
 * clock: a root's check is one comparison.
 */
const BUDGET_TICK_MS = 5;
/**
 * Credit a quiet spell can save up, in ticks' worth of earnings: the first request after it is
 * traced whole, and a burst submitted at once gets about this much.
 */
const BUDGET_CAP_TICKS = 2;
/**
 * What tracing a task costs in all, against what its span's start and end cost when timed: the
 * context switches and events around its body, the SDK's later batching, encoding and sending, the
 * collection of all of it, and code that runs cold because traced tasks are rare. Calibrated with
 * `bench/tracing.ts` (sustained throughput, the SDK with its OTLP/protobuf exporter) on Bun and Deno:
 * at 2 (start and end, doubled for the export) a 10 % budget cost 25–40 % of a no-op flood; at 20
 * fanout keeps 92–98 %.
 */
const SPAN_COST_FACTOR = 20;

/** Measured cost of tracing one task, ms (start and end of its span, sampled; times SPAN_COST_FACTOR). */
let spanCostMs = 0.03;
let budgetCredit = 0;
let budgetCap = 0;
let budgetShare = 0;
let budgetAt = 0;
/** Tops the budget up every BUDGET_TICK_MS while it is not full (unref'd: it never keeps a process alive). */
let budgetTimer: ReturnType<typeof setInterval> | undefined;
/** Whether the spent budget has shut the sampling gate, and the submissions counted since. */
let gateShut = false;
let shutCount = 0;
let measureTick = 0;
/** Spans made since tracing was last enabled (see {@link tracingStats}). */
let spansMade = 0;
/** Tasks recorded (so traced) since tracing was last enabled. */
let recordedCount = 0;
/** The process's task count when tracing was last enabled. */
let submittedAtEnable = 0;
/** The sequence number of the last traced root, and the tasks recorded since its submission. */
let lastRootSeq = 0;
let recordedSinceRoot = 0;
/** The task count when tracing was turned off (the count stops there), else undefined. */
let submittedFrozen: number | undefined;
/** Whether the probe also follows the global provider (none was given to enableTracing). */
let following = false;

function resetStats(): void {
  spansMade = recordedCount = recordedSinceRoot = 0;
  lastRootSeq = submittedAtEnable = submittedCount();
  submittedFrozen = undefined;
}

/** What each traced root's span carries, from its submission to its span's start. */
const untracedBefore = new WeakMap<object, number>();
/** Start costs of the tasks being timed (one in 16 while a budget is in use). */
const startCosts = new WeakMap<object, number>();

/**
 * The root sampler of `maxOverhead`: trace while the budget, earned at `share` of the time that
 * passes and topped up by a timer, lasts. The check itself reads no clock and queues nothing.
 */
function budgetSampler(share: number): () => boolean {
  // (goLive, its only caller, has stopped any earlier budget's timer)
  budgetShare = share;
  budgetCap = share * BUDGET_TICK_MS * BUDGET_CAP_TICKS;
  budgetCredit = budgetCap;
  return budgeted;
}

function budgeted(): boolean {
  return budgetCredit > 0;
}

/**
 * Spends `ms` of the budget (a task traced under it), starting the top-ups if they had stopped. Spent,
 * it closes the sampling gate: until a top-up, new roots cost what they cost untraced.
 */
function spend(ms: number): void {
  budgetCredit -= ms;
  if (budgetCredit <= 0 && !gateShut) {
    gateShut = true;
    setSamplingGate(false);
  }
  if (budgetTimer !== undefined) return;
  budgetAt = performance.now();
  budgetTimer = setInterval(topUp, BUDGET_TICK_MS);
  unrefTimer(budgetTimer);
}

function topUp(): void {
  const now = performance.now();
  budgetCredit = Math.min(budgetCap, budgetCredit + (now - budgetAt) * budgetShare);
  budgetAt = now;
  if (budgetCredit > 0 && gateShut) {
    gateShut = false;
    setSamplingGate(true);
  }
  if (budgetCredit >= budgetCap) stopBudgetTimer(); // full: nothing to earn until something is spent
}

function stopBudgetTimer(): void {
  gateShut = false;
  setSamplingGate(true);
  if (budgetTimer === undefined) return;
  clearInterval(budgetTimer);
  budgetTimer = undefined;
}

/** Folds one measured span cost (ms, start + end) into the estimate the budget spends. */
function measured(ms: number): void {
  // one slow span (a cold start, a GC pause) moves the price by at most 4× its share
  const x = Math.min(Math.max(0.0005, ms * SPAN_COST_FACTOR), 4 * spanCostMs);
  spanCostMs = 0.8 * spanCostMs + 0.2 * x;
}

/** A root sampler keeping exactly `ratio` of the roots, spread evenly (no randomness on the hot path). */
function ratioSampler(ratio: number): (() => boolean) | undefined {
  if (ratio >= 1) return undefined;
  let credit = 1 - ratio; // the first root is traced
  return () => {
    credit += ratio;
    if (credit < 1) return false;
    credit -= 1;
    return true;
  };
}

let tracer: Tracer | undefined; // set while live: spans are being made
let off: (() => void) | undefined; // unsubscribes the live listener
let wanted = false; // enableTracing() was called (and disableTracing() not since)
let wantedProvider: TracerProvider | undefined;
let wantedRatio = 1;
let wantedOverhead: number | undefined;
let autoDetect = true;
let probeCount = 0;
let contextCarries = false; // whether context.with() changes context.active() (a context manager is registered)
// performance.now() -> epoch ms, the form every OpenTelemetry SDK accepts as a TimeInput
const origin: number = performance.timeOrigin;
// where @opentelemetry/api (any copy of major version 1) registers its globals
const API_GLOBALS: unique symbol = Symbol.for("opentelemetry.js.api.1") as never;

/** What the `_trace` slot of a task holds: before the span exists, the caller's context. */
interface Slot {
  _trace: unknown;
}

function isSpan(x: unknown): x is Span {
  return typeof x === "object" && x !== null && typeof (x as Span).spanContext === "function";
}

function spanContextOf(x: unknown): SpanContext | undefined {
  if (isSpan(x)) return x.spanContext();
  if (typeof x === "object" && x !== null && typeof (x as SpanContext).traceId === "string") return x as SpanContext;
  return undefined;
}

/**
 * True when a tracer provider other than the API's no-op one is registered globally (an SDK's
 * `provider.register()` / `trace.setGlobalTracerProvider`, or Deno's built-in with `OTEL_DENO=true`).
 *
 * @returns Whether spans made through `@opentelemetry/api` would go anywhere.
 *
 * @example
 * ```ts
 * import { hasTracerProvider } from "./tracing.ts";
 * import { trace } from "@opentelemetry/api";
 * trace.disable();
 * if (hasTracerProvider()) throw new Error("no provider is registered here");
 * ```
 */
export function hasTracerProvider(): boolean {
  const provider = trace.getTracerProvider() as TracerProvider & { getDelegate?: () => TracerProvider };
  const delegate = typeof provider.getDelegate === "function" ? provider.getDelegate() : provider;
  if (delegate === noopProvider) return false;
  // a provider registered through another copy of the API has that copy's no-op as its delegate
  return delegate?.constructor?.name !== "NoopTracerProvider";
}
const noopProvider: TracerProvider = new ProxyTracerProvider().getDelegate();

/** Whether a context manager carries context (else `context.with` is a plain call). */
function probeContextManager(): boolean {
  const probeCtx = ROOT_CONTEXT.setValue(API_GLOBALS, true);
  return context.with(probeCtx, () => context.active() === probeCtx);
}

/**
 * Turns tracing on: from now on every task is a span whenever a tracer provider is there to take
 * it. Idempotent; calling it again with another provider or ratio switches to it.
 *
 * Without `tracerProvider` it follows the global provider: while none is registered (the API's
 * no-op) nothing per task is done beyond a check every 1024 submissions, since no span could go
 * anywhere; once one is registered, the next check starts tracing. (Spans are made through the
 * provider, so one registered through Deno's `OTEL_DENO=true` or any SDK is picked up alike.)
 *
 * @param options Which provider to use (default: the global one) and the share of roots to trace.
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
  const ratio = options.sampleRatio ?? 1;
  if (typeof ratio !== "number" || !(ratio > 0 && ratio <= 1)) {
    throw new RangeError(`enableTracing: sampleRatio must be in (0, 1], got ${String(ratio)}`);
  }
  const overhead = options.maxOverhead;
  if (overhead !== undefined) {
    if (typeof overhead !== "number" || !(overhead > 0 && overhead < 1)) {
      throw new RangeError(`enableTracing: maxOverhead must be in (0, 1), got ${String(overhead)}`);
    }
    if (options.sampleRatio !== undefined) {
      throw new TypeError("enableTracing: give sampleRatio or maxOverhead, not both");
    }
  }
  wanted = true;
  resetStats();
  wantedProvider = options.tracerProvider;
  wantedRatio = ratio;
  wantedOverhead = overhead;
  if (wantedProvider !== undefined || hasTracerProvider()) goLive();
  else goArmed();
}

/**
 * The submit probe under a budget. Work that runs on microtasks alone (a loop awaiting in-process
 * ops) gives the top-up timer no turn: while the gate is shut, every 64th submission tops up too (a
 * clock read per 64 tasks). Following the global provider, it also looks for the provider.
 */
function budgetProbe(): void {
  if (gateShut && (++shutCount & 63) === 0) topUp();
  if (following && (probeCount++ & 1023) === 0) check();
}

/** Starts making spans (the listener, the body wrapper, the sampler). */
function goLive(): void {
  // a switch away from a budget must not leave its gate shut while the old debt is paid off
  stopBudgetTimer();
  if (submittedFrozen !== undefined) resetStats(); // live again after a disable: a new count
  setRootSampler(wantedOverhead !== undefined ? budgetSampler(wantedOverhead) : ratioSampler(wantedRatio));
  // resolved once: a provider's tracer, or the global API's proxy tracer (it follows a provider
  // registered later; after `trace.disable()` and a new registration, call enableTracing() again)
  tracer = (wantedProvider ?? trace.getTracerProvider()).getTracer(TRACER_NAME);
  contextCarries = probeContextManager();
  probeCount = 1;
  // following the global provider: keep checking that it is still there
  following = wantedProvider === undefined;
  setSubmitProbe(wantedOverhead !== undefined ? budgetProbe : following ? probe : undefined);
  if (off !== undefined) return;
  off = onTaskEvent(onEvent);
  setBodyWrapper(runInSpan);
}

/** Stops making spans, but keeps looking for a provider. */
function goArmed(): void {
  stopLive();
  probeCount = 0; // the next .go() looks
  setSubmitProbe(probe);
}

function stopLive(): void {
  setRootSampler(undefined);
  stopBudgetTimer();
  tracer = undefined;
  if (off === undefined) return;
  off();
  off = undefined;
  setBodyWrapper(undefined);
}

/**
 * Turns tracing off and stops looking for a provider (until {@link enableTracing} or
 * {@link setTracingAutoDetect}). Spans of tasks still running are ended when they settle only if
 * tracing is on again by then; otherwise they are dropped.
 *
 * @example
 * ```ts
 * import { disableTracing, enableTracing, isTracingEnabled } from "./tracing.ts";
 * enableTracing();
 * disableTracing();
 * if (isTracingEnabled()) throw new Error("expected off");
 * ```
 */
export function disableTracing(): void {
  submittedFrozen ??= submittedCount();
  autoDetect = false;
  wanted = false;
  wantedProvider = undefined;
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
 * import { enableTracing, disableTracing, isTracingEnabled } from "./tracing.ts";
 * enableTracing();
 * if (!isTracingEnabled()) throw new Error("expected on");
 * disableTracing();
 * ```
 */
export function isTracingEnabled(): boolean {
  return wanted || off !== undefined;
}
// (live through detection alone: `off` is set and `wanted` is not)

/** What tracing has done, from {@link tracingStats}. */
export interface TracingStats {
  /** Spans made (one per traced task). */
  readonly spans: number;
  /**
   * Tasks submitted that were not traced: `sampleRatio` or `maxOverhead` left their root out, and
   * with it everything it submitted (or tracing was idle, with no provider to take spans). A traced
   * root's span carries how many came just before it as `thinkagain.untraced_before`.
   */
  readonly untracedTasks: number;
}

/**
 * Counts of what tracing did since {@link enableTracing} was last called (or since the process
 * started): spans made, and tasks left untraced. Without sampling every task is a span and
 * `untracedTasks` stays 0. Costs nothing per task: it is worked out from the process's task count.
 *
 * @returns The counts.
 *
 * @example Under sampling, what was left out is counted
 * ```ts
 * import * as ta from "../mod.ts";
 * import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
 * const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(new InMemorySpanExporter())] });
 * ta.enableTracing({ tracerProvider, sampleRatio: 0.5 });
 * const tiny = ta.op(async function tiny(x: number) { return x; });
 * await ta.all([1, 2, 3, 4].map((i) => tiny.go(i)));
 * const { spans, untracedTasks } = ta.tracingStats();
 * ta.disableTracing();
 * if (spans !== 2 || untracedTasks !== 2) throw new Error(`${spans} traced, ${untracedTasks} not`);
 * ```
 */
export function tracingStats(): TracingStats {
  const submitted = (submittedFrozen ?? submittedCount()) - submittedAtEnable;
  return { spans: spansMade, untracedTasks: Math.max(0, submitted - recordedCount) };
}

/**
 * Turns automatic detection of a registered provider on (the default) or off. While on and tracing
 * is off, `.go()` checks for a provider at the first submission and then every 1024th.
 *
 * @param on Whether to detect.
 *
 * @example
 * ```ts
 * import { isTracingEnabled, setTracingAutoDetect } from "./tracing.ts";
 * import * as ta from "../mod.ts";
 * import { trace } from "@opentelemetry/api";
 * trace.disable(); // no provider: detection finds nothing, tracing stays off
 * setTracingAutoDetect(true);
 * await ta.op(async function noop() {}).go();
 * if (isTracingEnabled()) throw new Error("expected off without a provider");
 * ```
 */
export function setTracingAutoDetect(on: boolean): void {
  autoDetect = on;
  if (!on && !wanted) {
    // tracing that detection turned on stops with it; enableTracing() is not undone
    if (off !== undefined) submittedFrozen ??= submittedCount();
    stopLive();
    setSubmitProbe(undefined);
    return;
  }
  if (off !== undefined) return; // live: its probe stays
  probeCount = 0;
  setSubmitProbe(on || wanted ? probe : undefined);
}

/** Called by .go(): every 1024th submission, follows the global provider coming or going. */
function probe(): void {
  if ((probeCount++ & 1023) !== 0) return;
  check();
}

function check(): void {
  const present = hasTracerProvider();
  if (off !== undefined) {
    // live on the global provider: stop making spans nobody takes; re-read the context manager
    if (!present) goArmed();
    else contextCarries = probeContextManager();
  } else if (present) {
    if (wanted) goLive();
    else if (autoDetect) {
      // found by detection: traced with the defaults, and only while detection stays on
      wantedProvider = undefined;
      wantedRatio = 1;
      wantedOverhead = undefined;
      goLive();
    }
  }
}

/** Detects now (used where work arrives from elsewhere, e.g. a server span). */
function detectNow(): void {
  if (off === undefined && (wanted || autoDetect)) check();
}

/** Per op / `Service.method` name: the span name and the constant attributes, computed once. */
interface NameInfo {
  readonly span: string;
  readonly op: string | undefined;
  readonly service: string | undefined;
  readonly method: string | undefined;
}
const opNames = new Map<string, NameInfo>();
const methodNames = new Map<string, NameInfo>();

function nameInfo(task: TaskInfo): NameInfo {
  const map = task.kind === "op" ? opNames : methodNames;
  let info = map.get(task.name);
  if (info === undefined) {
    const dot = task.name.indexOf(".");
    info = task.kind === "op" ? { span: `op ${task.name}`, op: task.name, service: undefined, method: undefined } : {
      span: `call ${task.name}`,
      op: undefined,
      service: dot < 0 ? task.name : task.name.slice(0, dot),
      method: dot < 0 ? task.name : task.name.slice(dot + 1),
    };
    if (map.size < 10_000) map.set(task.name, info);
  }
  return info;
}

/** Creates the span of `task` (at its start, or at settle for a task that never started). */
function openSpan(task: TaskInfo & Slot, parentCtx: Context | undefined): Span {
  let ctx = parentCtx ?? context.active();
  if (trace.getSpan(ctx) === undefined) {
    // no context manager carried it (or the body awaited first): fall back to the calling task
    const parentSpan = (task.parent as (TaskInfo & Slot) | undefined)?._trace;
    if (isSpan(parentSpan)) ctx = trace.setSpan(ctx, parentSpan);
  }
  let links: Link[] | undefined;
  const deps = task.dependencies;
  for (let i = 0; i < deps.length; i++) {
    const sc = spanContextOf((deps[i] as TaskInfo & Slot)._trace);
    if (sc !== undefined) (links ??= []).push({ context: sc });
  }
  const info = nameInfo(task);
  const attributes: Attributes = { "thinkagain.task_id": task.seq }; // a number: no string per task
  if (info.op !== undefined) attributes["thinkagain.op"] = info.op;
  else {
    attributes["thinkagain.service"] = info.service;
    attributes["thinkagain.method"] = info.method;
  }
  const node = task.node;
  if (node !== undefined) attributes["thinkagain.node"] = node;
  const executor = task.executor;
  attributes["thinkagain.executor"] = executor;
  if (task.parent === undefined) {
    const untraced = untracedBefore.get(task);
    if (untraced !== undefined) attributes["thinkagain.untraced_before"] = untraced;
  }
  if (task.startedAt > 0) {
    const wait = task.startedAt - task.submittedAt;
    attributes["thinkagain.queue_wait_ms"] = wait > 0 ? wait : 0;
    attributes["thinkagain.attempt"] = task.attempt;
  }
  const span = (tracer ?? trace.getTracer(TRACER_NAME)).startSpan(info.span, {
    // a call sent to another node is the client side of that node's SERVER span
    kind: executor === "remote" ? SpanKind.CLIENT : SpanKind.INTERNAL,
    attributes,
    links,
    startTime: task.submittedAt > 0 ? origin + task.submittedAt : undefined,
  }, ctx);
  task._trace = span;
  spansMade++;
  return span;
}

function onEvent(e: TaskEvent): void {
  const task = e.task as TaskInfo & Slot;
  switch (e.kind) {
    case "submitted":
      // synchronous inside .go(): the active context is the caller's
      task._trace = context.active();
      // a budget (maxOverhead) pays for every traced task as it is submitted, so a burst of
      // submissions in one turn is held to it
      // (tasks recorded for a profiler while it runs are not the budget's choice, nor on its bill)
      if (wantedOverhead !== undefined && sampling()) spend(spanCostMs);
      recordedCount++;
      recordedSinceRoot++;
      if (task.parent === undefined && sampling()) {
        // a traced root: its span says how many tasks since the previous one went untraced (a trace
        // backend shows the gap), worked out from task numbers, as nothing is done per untraced task
        const untraced = task.seq - lastRootSeq - recordedSinceRoot;
        if (untraced > 0) untracedBefore.set(task, untraced);
        lastRootSeq = task.seq;
        recordedSinceRoot = 0;
      }
      return;
    case "started": {
      const slot = task._trace;
      if (!isSpan(slot)) {
        // the first start: the span is made now, with its inputs known (links) and its queue wait.
        // Under a budget, the first 16 traced tasks and then one in 16 are timed to keep its price current.
        const timed = wantedOverhead !== undefined && (measureTick++ < 16 || (measureTick & 15) === 0);
        const t0 = timed ? performance.now() : 0;
        const span = openSpan(task, slot as Context | undefined);
        if (span.isRecording()) span.addEvent("started", undefined, origin + e.at);
        if (timed) startCosts.set(task, performance.now() - t0);
      } else if (slot.isRecording()) {
        // a retry
        slot.setAttribute("thinkagain.attempt", task.attempt);
        slot.addEvent("started", { "thinkagain.attempt": task.attempt }, origin + e.at);
      }
      return;
    }
    default: {
      const slot = task._trace;
      const span = isSpan(slot) ? slot : openSpan(task, slot as Context | undefined);
      // keep only the span's context: dependents link to it, and the span object can be collected
      task._trace = span.spanContext();
      if (!span.isRecording()) {
        // nothing would keep the attributes or the exception
      } else if (e.kind === "failed") {
        const err = task.error;
        span.setAttribute("thinkagain.status", "failed");
        if (task.startedAt === 0) span.setAttribute("thinkagain.skipped", true); // an input failed
        span.recordException(err instanceof Error ? err : String(err), origin + e.at);
        span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
      } else if (e.kind === "cancelled") {
        span.setAttribute("thinkagain.status", "cancelled");
        span.setStatus({ code: SpanStatusCode.ERROR, message: "cancelled" });
      }
      const startCost = wantedOverhead === undefined ? undefined : startCosts.get(task);
      if (startCost === undefined) span.end(origin + e.at);
      else {
        const t0 = performance.now();
        span.end(origin + e.at);
        measured(startCost + performance.now() - t0);
      }
    }
  }
}

/**
 * The body wrapper: runs the task body inside its span's context, so spans made there nest under it.
 * With no context manager registered, `context.with` could not carry it anyway: the body is called
 * as is (tasks it submits still find this span through their calling task).
 */
function runInSpan(task: TaskInfo, fn: (...args: unknown[]) => unknown, self: unknown, args: unknown[]): unknown {
  const span = (task as TaskInfo & Slot)._trace;
  if (!isSpan(span) || !(contextCarries || registeredContextManager())) return fn.apply(self, args);
  return context.with(trace.setSpan(context.active(), span), fn, self, ...args);
}

/** Whether a context manager is registered with the API now (checked per body: a cheap global read). */
function registeredContextManager(): boolean {
  const globals = (globalThis as { [API_GLOBALS]?: { context?: unknown } })[API_GLOBALS];
  if (globals?.context === undefined) return false;
  contextCarries = true;
  return true;
}

// ---- across a transport --------------------------------------------------------------------

/**
 * The W3C trace context to put in a call envelope that takes work to another node: `traceparent`
 * (and `tracestate` when set) of `task`'s span, or, with no task, of the span active now — inside a
 * task body that is the task's own span, so a remote executor can call it first thing in the body,
 * before any `await`. Uses the globally registered propagator and falls back to writing
 * `traceparent` itself, so the wire always carries W3C context. Empty when tracing is off or there
 * is no span.
 *
 * @param task The task being sent (its span exists once it started); default: the active span.
 * @returns Header-style carrier for the envelope's `trace` field.
 *
 * @example
 * ```ts
 * import { injectTraceContext } from "./tracing.ts";
 * import { op } from "./op.ts";
 * const ref = op(async function noop() {}).go();
 * await ref;
 * if (Object.keys(injectTraceContext(ref)).length !== 0) throw new Error("no span, no context");
 * ```
 */
export function injectTraceContext(task?: TaskInfo): Record<string, string> {
  const carrier: Record<string, string> = {};
  if (off === undefined) return carrier;
  const sc = task !== undefined
    ? spanContextOf((task as TaskInfo & Slot)._trace)
    : trace.getSpanContext(context.active());
  if (sc === undefined) return carrier;
  propagation.inject(trace.setSpanContext(ROOT_CONTEXT, sc), carrier);
  if (carrier.traceparent === undefined && /^[0-9a-f]{32}$/.test(sc.traceId) && sc.traceId !== "0".repeat(32)) {
    carrier.traceparent = `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 1) ? "01" : "00"}`;
    const ts = sc.traceState?.serialize();
    if (ts) carrier.tracestate = ts;
  }
  return carrier;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

function extract(carrier: Readonly<Record<string, string>> | undefined): Context {
  if (carrier === undefined) return ROOT_CONTEXT;
  let ctx = propagation.extract(ROOT_CONTEXT, carrier);
  if (trace.getSpanContext(ctx) === undefined && typeof carrier.traceparent === "string") {
    const m = TRACEPARENT.exec(carrier.traceparent.trim());
    if (m !== null && m[1] !== "ff" && !/^0+$/.test(m[2]) && !/^0+$/.test(m[3])) {
      ctx = trace.setSpanContext(ctx, {
        traceId: m[2],
        spanId: m[3],
        traceFlags: parseInt(m[4], 16) & 1,
        isRemote: true,
      });
    }
  }
  return ctx;
}

/** Options of {@link withExtractedContext}. */
export interface ExtractedContextOptions {
  /** Name of the server span (default `serve`); e.g. `serve <Service>.<method>`. */
  name?: string;
  /** Extra attributes of the server span. */
  attributes?: Attributes;
}

/**
 * Runs `fn` inside a SERVER span whose parent is the trace context in `carrier` (what
 * {@link injectTraceContext} produced on the caller's side), so the tasks and spans it creates join
 * the caller's trace. The span ends when `fn`'s result settles; a throw or rejection marks it as an
 * error. With tracing off (and no provider to detect), it just calls `fn`.
 *
 * @param carrier The envelope's trace headers (`traceparent`, `tracestate`), or `undefined`.
 * @param fn The work to run (typically submitting the requested call).
 * @param options Span name and attributes.
 * @returns What `fn` returns.
 *
 * @example
 * ```ts
 * import { withExtractedContext } from "./tracing.ts";
 * const r = await withExtractedContext({ traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" }, async () => 42);
 * if (r !== 42) throw new Error("expected fn's result");
 * ```
 */
export function withExtractedContext<T>(
  carrier: Readonly<Record<string, string>> | undefined,
  fn: () => T,
  options: ExtractedContextOptions = {},
): T {
  detectNow();
  if (off === undefined) return fn();
  const parent = extract(carrier);
  const span = (tracer ?? trace.getTracer(TRACER_NAME)).startSpan(options.name ?? "serve", {
    kind: SpanKind.SERVER,
    attributes: options.attributes,
  }, parent);
  const fail = (e: unknown) => {
    span.recordException(e instanceof Error ? e : String(e));
    span.setStatus({ code: SpanStatusCode.ERROR, message: e instanceof Error ? e.message : String(e) });
    span.end();
  };
  let r: T;
  try {
    r = context.with(trace.setSpan(parent, span), fn);
  } catch (e) {
    fail(e);
    throw e;
  }
  const maybe = r as unknown as PromiseLike<unknown> | null;
  if (maybe !== null && typeof maybe === "object" && typeof maybe.then === "function") {
    maybe.then(() => span.end(), fail);
  } else span.end();
  return r;
}

setTracingAutoDetect(true);
