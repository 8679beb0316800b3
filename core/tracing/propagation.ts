/**
 * Trace context across a transport: the W3C `traceparent` (and `tracestate`) a call envelope carries
 * to another node, and the SERVER span the receiving node runs the call under, so the hop joins the
 * caller's trace.
 *
 * Head sampling holds across nodes: a root's one decision travels with its calls. A call whose root
 * sampling left out carries a `traceparent` with the sampled flag off ({@link NOT_SAMPLED}), and a
 * node makes no span for it nor for anything it submits; a traced call's node traces it and its
 * subtree whatever the node's own `sampleRatio` or `maxOverhead` say. Only a call that carries no
 * decision (its driver does not trace) is sampled by the node, once, as a root: its SERVER span and
 * everything under it, or nothing.
 *
 * @module
 */
import {
  type Attributes,
  type Context,
  context,
  propagation,
  ROOT_CONTEXT,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  trace,
  TraceFlags,
} from "@opentelemetry/api";
import { eventsEnabled, rootSampler, sampling, setRootSampler, setSamplingGate, type TaskInfo } from "../events.ts";
import { detectNow } from "./lifecycle.ts";
import { spanContextOf } from "./spans.ts";
import { TRACER_NAME, tracingState } from "./state.ts";

/** The carrier of no context (tracing off, or no span): empty, shared, never written to. */
const NO_CONTEXT: Record<string, string> = Object.freeze({}) as Record<string, string>;

/**
 * @internal The carrier of a call that head sampling left out: a W3C `traceparent` whose sampled
 * flag is off, so the node it goes to traces nothing of it (a node that predates this reads it as a
 * parent not sampled, which an SDK's default parent-based sampler follows too). No span exists to
 * name, so its ids are constants: one shared, frozen record, no object made per call.
 *
 * @example
 * ```ts
 * import { NOT_SAMPLED } from "./propagation.ts";
 * if (!NOT_SAMPLED.traceparent.endsWith("-00")) throw new Error("the sampled flag is off");
 * ```
 */
export const NOT_SAMPLED: Readonly<Record<string, string>> = Object.freeze({
  traceparent: "00-00000000000000000000000000000001-0000000000000001-00",
});

/**
 * The W3C trace context to put in a call envelope that takes work to another node: `traceparent`
 * (and `tracestate` when set) of `task`'s span, or, with no task, of the span active now — inside a
 * task body that is the task's own span, so a remote executor can call it first thing in the body,
 * before any `await`. Uses the globally registered propagator and falls back to writing
 * `traceparent` itself, so the wire always carries W3C context. For a task that head sampling left
 * out (`sampleRatio`, `maxOverhead`), {@link NOT_SAMPLED}: the node it goes to traces nothing of it.
 * Empty when tracing is off or there is no span (then one shared, frozen record: no object made per
 * call).
 *
 * @param task The task being sent (its span exists once it started); default: the active span.
 * @returns Header-style carrier for the envelope's `trace` field.
 *
 * @example
 * ```ts
 * import { injectTraceContext } from "./propagation.ts";
 * import { op } from "../op.ts";
 * const ref = op(async function noop() {}).go();
 * await ref;
 * if (Object.keys(injectTraceContext(ref)).length !== 0) throw new Error("no span, no context");
 * ```
 */
export function injectTraceContext(task?: TaskInfo): Record<string, string> {
  // (tracing off, or no span: no carrier made, as for every remote call while tracing is off)
  if (tracingState.off === undefined) return NO_CONTEXT;
  let sc: SpanContext | undefined;
  if (task !== undefined) {
    const t = task as TaskInfo & { _trace: unknown; _meta?: unknown };
    sc = spanContextOf(t._trace);
    // not recorded while sampling decides: its root was left out, and so is it, on every node
    if (sc === undefined && t._meta === undefined && sampling()) return NOT_SAMPLED as Record<string, string>;
  } else sc = trace.getSpanContext(context.active());
  if (sc === undefined) return NO_CONTEXT;
  const carrier: Record<string, string> = {};
  propagation.inject(trace.setSpanContext(ROOT_CONTEXT, sc), carrier);
  if (carrier.traceparent === undefined && /^[0-9a-f]{32}$/.test(sc.traceId) && sc.traceId !== "0".repeat(32)) {
    carrier.traceparent = `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 1) ? "01" : "00"}`;
    const ts = sc.traceState?.serialize();
    if (ts) carrier.tracestate = ts;
  }
  return carrier;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/**
 * @internal The context `carrier` names as parent: through the registered propagator, else by
 * reading a W3C `traceparent` itself.
 *
 * @param carrier The envelope's trace headers, or `undefined`.
 * @returns A context holding the remote span context, or the root context.
 *
 * @example A bare traceparent is read without a propagator
 * ```ts
 * import { extractTraceContext } from "./propagation.ts";
 * import { propagation, trace } from "@opentelemetry/api";
 * propagation.disable();
 * const ctx = extractTraceContext({ traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" });
 * if (trace.getSpanContext(ctx)?.spanId !== "b7ad6b7169203331") throw new Error("expected the caller's span");
 * ```
 */
export function extractTraceContext(carrier: Readonly<Record<string, string>> | undefined): Context {
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
 * The call `fn` submits is one root, sampled once: a caller that traced it (sampled flag on) has
 * it traced here with its SERVER span and every task under it, whatever this process's
 * `sampleRatio` or `maxOverhead` say; a caller that left it out (flag off) has nothing of it traced
 * here; a carrier with no trace context leaves the choice to this process's own sampling, made once
 * for the SERVER span and the call together.
 *
 * @param carrier The envelope's trace headers (`traceparent`, `tracestate`), or `undefined`.
 * @param fn The work to run (typically submitting the requested call).
 * @param options Span name and attributes.
 * @returns What `fn` returns.
 *
 * @example
 * ```ts
 * import { withExtractedContext } from "./propagation.ts";
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
  if (tracingState.off === undefined) return fn();
  // a call its driver sampled out (the common case while sampling): nothing to read
  if (carrier === NOT_SAMPLED || carrier?.traceparent === NOT_SAMPLED.traceparent) return decided(false, fn);
  const parent = extractTraceContext(carrier);
  const sc = trace.getSpanContext(parent);
  if (sc !== undefined ? (sc.traceFlags & TraceFlags.SAMPLED) === 0 : !sampleServed()) return decided(false, fn);
  const span = (tracingState.tracer ?? trace.getTracer(TRACER_NAME)).startSpan(options.name ?? "serve", {
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
    r = decided(true, fn, trace.setSpan(parent, span));
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

/**
 * This process's own sampling of a served call that carries no decision: taken as for a root task
 * (no sampler or a profiler recording every task: traced; a spent budget: not).
 */
function sampleServed(): boolean {
  const sampler = rootSampler;
  if (sampler === undefined || !sampling()) return true;
  return eventsEnabled && sampler();
}

const traceRoot = () => true;
const skipRoot = () => false;

/**
 * Runs `fn`, which submits a served call, with that call's root decision taken: the root sampler
 * answers `sampled` for what `fn` submits (one call; a task is submitted synchronously in `.go()`),
 * a traced call passes a spent budget's shut gate, and `ctx` (the SERVER span's context) is both
 * the active context and, for a call held back to be submitted later (see {@link servedContext}),
 * the one kept. What the call's body submits follows the call, as under any root.
 */
function decided<T>(sampled: boolean, fn: () => T, ctx?: Context): T {
  const sampler = rootSampler, serving = tracingState.serving;
  const mine = sampled ? traceRoot : skipRoot;
  setRootSampler(mine);
  const reopen = sampled && tracingState.gateShut;
  if (reopen) setSamplingGate(true);
  tracingState.serving = sampled ? ctx : notSampledContext();
  try {
    return ctx !== undefined ? context.with(ctx, fn) : fn();
  } finally {
    tracingState.serving = serving;
    // (unless fn's submission turned tracing off or over to another sampler meanwhile)
    if (rootSampler === mine) setRootSampler(sampler);
    if (reopen && tracingState.gateShut) setSamplingGate(false);
  }
}

let notSampled: Context | undefined;

/** The context of a call sampled out: {@link NOT_SAMPLED}'s span context (made once). */
function notSampledContext(): Context {
  return notSampled ??= extractTraceContext(NOT_SAMPLED);
}

/**
 * @internal The trace context of the call being served now, for a node that holds the call back
 * and submits it later (fair dispatch between callers): the SERVER span's context, or for a call
 * sampled out one that says so, so {@link withServedContext} submits it then as it would be now.
 * Outside {@link withExtractedContext}, the active context.
 *
 * @returns The context to keep with the held call.
 *
 * @example
 * ```ts
 * import { servedContext } from "./propagation.ts";
 * import { context } from "@opentelemetry/api";
 * if (servedContext() !== context.active()) throw new Error("outside a served call: the active context");
 * ```
 */
export function servedContext(): Context {
  return tracingState.serving ?? context.active();
}

/**
 * @internal Submits a call held back by a node (see {@link servedContext}) under the context kept
 * for it, with the sampling decision that context carries: as if {@link withExtractedContext} were
 * submitting it now, without a second SERVER span.
 *
 * @param ctx What {@link servedContext} returned when the call came in.
 * @param fn Submits the call.
 * @returns What `fn` returns.
 *
 * @example
 * ```ts
 * import { servedContext, withServedContext } from "./propagation.ts";
 * if (withServedContext(servedContext(), () => 1) !== 1) throw new Error("fn's result");
 * ```
 */
export function withServedContext<T>(ctx: Context, fn: () => T): T {
  const sc = tracingState.off === undefined ? undefined : trace.getSpanContext(ctx);
  // kept outside a served call, or tracing off since: submitted as it is
  if (sc === undefined) return context.with(ctx, fn);
  return (sc.traceFlags & TraceFlags.SAMPLED) === 0 ? decided(false, fn) : decided(true, fn, ctx);
}
