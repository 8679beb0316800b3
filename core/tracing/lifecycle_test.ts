// enableTracing checks its options before it changes anything, and a bad call leaves tracing off.
import { test } from "node:test";
import assert from "node:assert/strict";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import * as ta from "../../mod.ts";
import { disableTracing, enableTracing, isTracingEnabled, type TracingOptions } from "./lifecycle.ts";

function refused(options: unknown, error: RegExp, type: typeof TypeError | typeof RangeError = TypeError): void {
  disableTracing();
  assert.throws(() => enableTracing(options as TracingOptions), (e: unknown) => {
    assert.ok(e instanceof type, `expected a ${type.name}, got ${e}`);
    assert.match((e as Error).message, error);
    return true;
  });
  assert.equal(isTracingEnabled(), false, `tracing stays off after enableTracing(${JSON.stringify(options)})`);
}

test("enableTracing refuses an unknown option, naming the closest one, and leaves tracing off", () => {
  refused({ sampleRate: 0.01 }, /enableTracing: unknown option "sampleRate"; did you mean "sampleRatio"\?/);
  refused({ tracerprovider: {} }, /unknown option "tracerprovider"; did you mean "tracerProvider"\?/);
  refused(null, /enableTracing: .*got null/);
  refused("0.5", /enableTracing: .*got the string "0\.5"/);
});

test("enableTracing refuses a tracerProvider without getTracer() at once, and leaves tracing off", () => {
  refused(
    { tracerProvider: {} },
    /enableTracing: tracerProvider must be a TracerProvider \(with getTracer\(\)\), got an object/,
  );
  refused({ tracerProvider: "otel" }, /tracerProvider must be a TracerProvider .*got the string "otel"/);
});

test("enableTracing shows a string given for a number as a string", () => {
  refused(
    { sampleRatio: "0.5" },
    /enableTracing: sampleRatio must be a number in \(0, 1\], got the string "0\.5"/,
    RangeError,
  );
  refused(
    { maxOverhead: "0.1" },
    /enableTracing: maxOverhead must be a number in \(0, 1\), got the string "0\.1"/,
    RangeError,
  );
  refused({ sampleRatio: 0 }, /sampleRatio must be a number in \(0, 1\], got number 0/, RangeError);
});

test("enableTracing with a provider whose getTracer() throws rethrows it and leaves tracing off", async () => {
  disableTracing();
  const broken = {
    getTracer: () => {
      throw new Error("no tracer today");
    },
  };
  assert.throws(() => enableTracing({ tracerProvider: broken as never }), /no tracer today/);
  assert.equal(isTracingEnabled(), false);
  // and a good call after it traces as usual
  const exporter = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  enableTracing({ tracerProvider });
  try {
    await ta.op(async function lifecycleAfterBroken() {}).go();
    assert.deepEqual(exporter.getFinishedSpans().map((s) => s.name), ["op lifecycleAfterBroken"]);
  } finally {
    disableTracing();
    await tracerProvider.shutdown();
  }
});
