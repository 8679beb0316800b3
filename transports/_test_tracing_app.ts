// Served by the nodes of transports/tracing_test.ts: node A's TraceFront calls TraceBack on node B
// (TRACE_BACK_ENDPOINT). With OTEL_EXPORTER_OTLP_ENDPOINT set it exports its spans: through the
// OpenTelemetry SDK on Bun/Node, through Deno's built-in exporter when OTEL_DENO=true (no SDK).
import process from "node:process";
import { context, propagation, trace } from "@opentelemetry/api";
import * as ta from "../mod.ts";

const env = process.env;
if (env.OTEL_EXPORTER_OTLP_ENDPOINT && env.OTEL_DENO !== "true") {
  const { AsyncLocalStorageContextManager } = await import("@opentelemetry/context-async-hooks");
  const { W3CTraceContextPropagator } = await import("@opentelemetry/core");
  const { OTLPTraceExporter } = await import("@opentelemetry/exporter-trace-otlp-proto");
  const { resourceFromAttributes } = await import("@opentelemetry/resources");
  const { BasicTracerProvider, SimpleSpanProcessor } = await import("@opentelemetry/sdk-trace-base");
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(
    new BasicTracerProvider({
      resource: resourceFromAttributes({ "service.name": env.OTEL_SERVICE_NAME ?? "node" }),
      spanProcessors: [
        new SimpleSpanProcessor(new OTLPTraceExporter({ url: `${env.OTEL_EXPORTER_OTLP_ENDPOINT}/v1/traces` })),
      ],
    }),
  );
}

/** Runs on node B. */
export const TraceBack = ta.service(
  class TraceBack {
    async work(q: string): Promise<string> {
      return trace.getTracer("app").startActiveSpan("back.user", (s) => {
        s.end();
        return `${q}!`;
      });
    }
  },
);

let mesh: ta.Mesh | undefined;
let back: ReturnType<typeof TraceBack.init> | undefined;

/** Runs on node A and calls node B. */
export const TraceFront = ta.service(
  class TraceFront {
    async handle(q: string): Promise<string> {
      mesh ??= new ta.Mesh([new ta.MeshNode("b", { endpoint: env.TRACE_BACK_ENDPOINT! })]);
      const r = await mesh.run(() => (back ??= TraceBack.init()).work.go(q));
      return `front(${r})`;
    }
  },
);
