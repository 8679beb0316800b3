// Tracing a pipeline with OpenTelemetry: every op and service call becomes a span, exported over
// OTLP/HTTP to Jaeger, Grafana Tempo or any OpenTelemetry Collector.
//
// Bun / Node (the OpenTelemetry JS SDK does the exporting):
//   docker run --rm -p 16686:16686 -p 4318:4318 jaegertracing/all-in-one   # UI on http://localhost:16686
//   bun examples/tracing.ts            # OTEL_EXPORTER_OTLP_ENDPOINT defaults to http://localhost:4318
//
// Deno (its built-in OpenTelemetry exports; no SDK is loaded):
//   OTEL_DENO=true OTEL_SERVICE_NAME=tracing-example deno run -A examples/tracing.ts
//
// thinkagain itself only talks to @opentelemetry/api: tracing turns on by itself at the first
// `.go()` once a tracer provider is registered (or call ta.enableTracing()).
import { context, propagation, trace } from "@opentelemetry/api";
import * as ta from "../mod.ts";
import { BATCH_OPTIONS } from "./_batch_options.ts";

const env = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env ?? {};
const endpoint = (env.OTEL_EXPORTER_OTLP_ENDPOINT ?? "http://localhost:4318").replace(/\/$/, "");

/** Registers the OpenTelemetry SDK (OTLP/HTTP protobuf, batched) unless Deno's built-in exporter is on. */
async function setUpOpenTelemetry(): Promise<() => Promise<void>> {
  if (env.OTEL_DENO === "true") return async () => {}; // Deno registers its own provider and exports at exit
  // imported here so a Deno run with OTEL_DENO loads no SDK at all
  const { AsyncLocalStorageContextManager } = await import("@opentelemetry/context-async-hooks");
  const { W3CTraceContextPropagator } = await import("@opentelemetry/core");
  const { OTLPTraceExporter } = await import("@opentelemetry/exporter-trace-otlp-proto");
  const { resourceFromAttributes } = await import("@opentelemetry/resources");
  const { BasicTracerProvider, BatchSpanProcessor } = await import("@opentelemetry/sdk-trace-base");
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ "service.name": env.OTEL_SERVICE_NAME ?? "tracing-example" }),
    spanProcessors: [
      // sized for bursts (see BATCH_OPTIONS); spans it still drops are counted and warned about
      new BatchSpanProcessor(
        new OTLPTraceExporter({ url: `${endpoint}/v1/traces` }),
        ta.watchDroppedSpans(BATCH_OPTIONS),
      ),
    ],
  });
  // the context manager carries the active span across `await`, so spans nest correctly
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
  return () => provider.shutdown(); // flushes what is still batched
}

const embed = ta.op(async function embed(text: string): Promise<number> {
  return [...text].reduce((h, c) => (h * 31 + c.charCodeAt(0)) >>> 0, 7);
});

const Retriever = ta.service(
  class Retriever {
    async retrieve(query: string, key: number): Promise<string[]> {
      // spans made inside a call nest under the call's span
      return trace.getTracer("tracing-example").startActiveSpan("index.lookup", (span) => {
        span.setAttribute("query", query);
        span.end();
        return [`doc${key % 7}`, `doc${key % 5}`];
      });
    }
  },
);

const Generator = ta.service(
  class Generator {
    async generate(query: string, docs: string[][]): Promise<string> {
      await new Promise((r) => setTimeout(r, 5));
      return `${query}: ${docs.flat().length} docs`;
    }
  },
);

/** Runs the traced pipeline: fan-out of embeddings and retrievals, fan-in into generation. */
export async function main(): Promise<{ answer: string; traceId: string; exported: boolean }> {
  const shutdown = await setUpOpenTelemetry();
  const retriever = Retriever.init();
  const generator = Generator.init();
  const query = "what is a trace?";
  const result = await trace.getTracer("tracing-example").startActiveSpan("rag request", async (root) => {
    const keys = ["what", "is", "a", "trace"].map((w) => embed.go(w));
    const docs = keys.map((k) => retriever.retrieve.go(query, k));
    const answer = await generator.generate.go(query, docs);
    root.end();
    return { answer, traceId: root.spanContext().traceId };
  });
  try {
    await shutdown();
    return { ...result, exported: true };
  } catch (e) {
    // the pipeline ran; only the export failed (typically: no collector listening)
    console.error(
      `tracing-example: could not export the spans to ${endpoint}: ${(e as Error).message}\n` +
        "  start a collector first, e.g. docker run --rm -p 16686:16686 -p 4318:4318 jaegertracing/all-in-one",
    );
    return { ...result, exported: false };
  }
}

if (import.meta.main) {
  const { answer, traceId, exported } = await main();
  console.log(answer);
  if (exported) console.log(`trace ${traceId} sent to ${env.OTEL_DENO === "true" ? "Deno's exporter" : endpoint}`);
}
