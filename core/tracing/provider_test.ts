// A no-op tracer provider is told by what it does, not by its class name (a bundle renames classes).
import { test } from "node:test";
import assert from "node:assert/strict";
import { ProxyTracerProvider, trace, type Tracer, type TracerProvider } from "@opentelemetry/api";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { hasTracerProvider, makesSpans } from "./provider.ts";

const apiNoop = new ProxyTracerProvider().getDelegate();

/** A no-op provider as a minifier leaves it: the API's behaviour under another class name. */
class a implements TracerProvider {
  getTracer(name: string, version?: string): Tracer {
    return apiNoop.getTracer(name, version);
  }
}

/** The same, named as the API names its own no-op (another copy of the API, say). */
const NoopTracerProvider = class NoopTracerProvider extends a {};

test("a renamed no-op tracer provider is no provider; a real SDK provider, renamed or not, is one", async () => {
  assert.equal(makesSpans(new a()), false);
  assert.equal(makesSpans(new NoopTracerProvider()), false);
  const exporter = new InMemorySpanExporter();
  const sdk = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  class b extends BasicTracerProvider {}
  const renamed = new b({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  assert.equal(makesSpans(sdk), true);
  assert.equal(makesSpans(renamed), true);
  await sdk.forceFlush();
  await renamed.forceFlush();
  assert.deepEqual(exporter.getFinishedSpans(), [], "the probe exported no span");
  await sdk.shutdown();
  await renamed.shutdown();
});

test("hasTracerProvider is false while a renamed no-op provider is registered globally", () => {
  const before = (trace.getTracerProvider() as ProxyTracerProvider).getDelegate();
  trace.disable();
  try {
    trace.setGlobalTracerProvider(new a());
    assert.equal(hasTracerProvider(), false);
  } finally {
    trace.disable();
    if (before !== apiNoop) trace.setGlobalTracerProvider(before);
  }
});
