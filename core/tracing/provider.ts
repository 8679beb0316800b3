/**
 * What `@opentelemetry/api` has registered globally: a tracer provider (an SDK's, or Deno's
 * built-in), and a context manager. Read through the API's globals, so a provider or manager
 * registered through another copy of the API counts alike.
 *
 * @module
 */
import { context, ProxyTracerProvider, ROOT_CONTEXT, trace, type TracerProvider } from "@opentelemetry/api";
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
  if (delegate === noopProvider) return false;
  // a provider registered through another copy of the API has that copy's no-op as its delegate
  return delegate?.constructor?.name !== "NoopTracerProvider";
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
