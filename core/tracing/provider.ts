/**
 * What `@opentelemetry/api` has registered globally: a tracer provider (an SDK's, or Deno's
 * built-in), and a context manager. Read through the API's globals, so a provider or manager
 * registered through another copy of the API counts alike.
 *
 * @module
 */
import {
  context,
  isSpanContextValid,
  ProxyTracerProvider,
  ROOT_CONTEXT,
  trace,
  TraceFlags,
  type TracerProvider,
} from "@opentelemetry/api";
import { tracingState } from "./state.ts";

// where @opentelemetry/api (any copy of major version 1) registers its globals
const API_GLOBALS: unique symbol = Symbol.for("opentelemetry.js.api.1") as never;

const noopProvider: TracerProvider = new ProxyTracerProvider().getDelegate();

/**
 * True when a tracer provider other than the API's no-op one is registered globally (an SDK's
 * `provider.register()` / `trace.setGlobalTracerProvider`, or Deno's built-in with `OTEL_DENO=true`).
 *
 * @returns Whether spans made through `@opentelemetry/api` would go anywhere.
 *
 * @example
 * ```ts
 * import { hasTracerProvider } from "./provider.ts";
 * import { trace } from "@opentelemetry/api";
 * trace.disable();
 * if (hasTracerProvider()) throw new Error("no provider is registered here");
 * ```
 */
export function hasTracerProvider(): boolean {
  const provider = trace.getTracerProvider() as TracerProvider & { getDelegate?: () => TracerProvider };
  const delegate = typeof provider.getDelegate === "function" ? provider.getDelegate() : provider;
  if (delegate === noopProvider || delegate === undefined || delegate === null) return false;
  // a provider registered through another copy of the API has that copy's no-op as its delegate,
  // and a bundle renames classes: what a provider does tells, not what it is called
  return makesSpans(delegate);
}

/** What each provider seen was found to be (a provider does not change its nature). */
const verdicts = new WeakMap<TracerProvider, boolean>();

// an unsampled parent, so that a real SDK's default (parent-based) sampler records nothing: the
// probe span is never exported (and never ended)
const PROBE_PARENT = trace.setSpanContext(ROOT_CONTEXT, {
  traceId: "5f1d0c3a2b4e6f708192a3b4c5d6e7f8",
  spanId: "1a2b3c4d5e6f7081",
  traceFlags: TraceFlags.NONE,
  isRemote: true,
});

/**
 * @internal Whether `provider` makes spans: a no-op provider's tracer hands back its parent's span
 * context (or an invalid one) instead of a new span, whatever its class is called (a bundle renames
 * classes). Asked once per provider; the probe span has an unsampled parent and is never ended, so
 * a real SDK exports nothing for it.
 *
 * @param provider A tracer provider.
 * @returns `true` when its tracers make spans.
 *
 * @example
 * ```ts
 * import { makesSpans } from "./provider.ts";
 * import { ProxyTracerProvider } from "@opentelemetry/api";
 * if (makesSpans(new ProxyTracerProvider().getDelegate())) throw new Error("the API's no-op makes no spans");
 * ```
 */
export function makesSpans(provider: TracerProvider): boolean {
  const known = verdicts.get(provider);
  if (known !== undefined) return known;
  const real = probeProvider(provider);
  verdicts.set(provider, real);
  return real;
}

function probeProvider(provider: TracerProvider): boolean {
  try {
    const span = provider.getTracer("thinkagain.probe").startSpan("thinkagain.probe", {}, PROBE_PARENT);
    const sc = span.spanContext();
    return isSpanContextValid(sc) && sc.spanId !== "1a2b3c4d5e6f7081";
  } catch {
    return false;
  }
}

/**
 * @internal Whether a context manager carries context (else `context.with` is a plain call).
 *
 * @returns `true` when `context.with()` changes `context.active()`.
 *
 * @example
 * ```ts
 * import { probeContextManager } from "./provider.ts";
 * import { context } from "@opentelemetry/api";
 * context.disable();
 * if (probeContextManager()) throw new Error("no context manager is registered here");
 * ```
 */
export function probeContextManager(): boolean {
  const probeCtx = ROOT_CONTEXT.setValue(API_GLOBALS, true);
  return context.with(probeCtx, () => context.active() === probeCtx);
}

/**
 * @internal Whether a context manager is registered with the API now (checked per body: a cheap
 * global read). Once one is, `contextCarries` is set, so later bodies skip the read.
 *
 * @returns `true` when the API's globals hold a context manager.
 *
 * @example
 * ```ts
 * import { registeredContextManager } from "./provider.ts";
 * import { context } from "@opentelemetry/api";
 * context.disable();
 * if (registeredContextManager()) throw new Error("no context manager is registered here");
 * ```
 */
export function registeredContextManager(): boolean {
  const globals = (globalThis as { [API_GLOBALS]?: { context?: unknown } })[API_GLOBALS];
  if (globals?.context === undefined) return false;
  tracingState.contextCarries = true;
  return true;
}
