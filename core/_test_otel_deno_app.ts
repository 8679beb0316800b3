// Run by tracing_test.ts under `deno run` with OTEL_DENO=true and no SDK: spans made through
// @opentelemetry/api must reach the OTLP endpoint through Deno's built-in exporter.
import { trace } from "@opentelemetry/api";
import * as ta from "../mod.ts";
import { hasTracerProvider, isTracingEnabled } from "./tracing/mod.ts";

const double = ta.op(async function double(x: number) {
  trace.getTracer("app").startActiveSpan("app.inner", (s) => s.end());
  return 2 * x;
});
const sum = ta.op(async function sum(xs: number[]) {
  return xs.reduce((s, x) => s + x, 0);
});
const result = await trace.getTracer("app").startActiveSpan("app.root", async (root) => {
  const r = await sum.go([double.go(1), double.go(2)]);
  root.end();
  return r;
});
console.log(JSON.stringify({ result, provider: hasTracerProvider(), tracing: isTracingEnabled() }));
