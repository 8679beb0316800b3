/**
 * Trace context across a transport: the W3C `traceparent` (and `tracestate`) a call envelope carries
 * to another node, and the SERVER span the receiving node runs the call under, so the hop joins the
 * caller's trace.
 *
 * @module
 */
import {
  type Attributes,
  type Context,
  context,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import type { TaskInfo } from "../events.ts";
import { detectNow } from "./lifecycle.ts";
import { spanContextOf } from "./spans.ts";
import { TRACER_NAME, tracingState } from "./state.ts";

/** The carrier of no context (tracing off, or no span): empty, shared, never written to. */
const NO_CONTEXT: Record<string, string> = Object.freeze({}) as Record<string, string>;

/**
 * The W3C trace context to put in a call envelope that takes work to another node: `traceparent`
 * (and `tracestate` when set) of `task`'s span, or, with no task, of the span active now — inside a
 * task body that is the task's own span, so a remote executor can call it first thing in the body,
 * before any `await`. Uses the globally registered propagator and falls back to writing
 * `traceparent` itself, so the wire always carries W3C context. Empty when tracing is off or there
 * is no span (then one shared, frozen record: no object made per call).
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
  const sc = task !== undefined
    ? spanContextOf((task as TaskInfo & { _trace: unknown })._trace)
    : trace.getSpanContext(context.active());
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
  const parent = extractTraceContext(carrier);
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
