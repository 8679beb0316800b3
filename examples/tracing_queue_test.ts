// The README's OpenTelemetry set-up delivers every span of a normal run (five 10k fan-outs, over
// OTLP/HTTP to a receiver), where the SDK's default BatchSpanProcessor drops most of them; and when
// spans are dropped, thinkagain says so (ta.watchDroppedSpans).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { BasicTracerProvider, BatchSpanProcessor } from "@opentelemetry/sdk-trace-base";
import * as ta from "../mod.ts";
import { type OtlpReceiver, startOtlpReceiver } from "../core/_test_otlp_receiver.ts";
import { BATCH_OPTIONS } from "./_batch_options.ts";

let receiver: OtlpReceiver;
before(async () => {
  receiver = await startOtlpReceiver();
});
after(() => receiver.close());

const FANOUTS = 5, WIDTH = 10_000;
const T = { timeout: 120_000 }; // a bound for a busy machine, not a measure
const noop = ta.op(async function tracingQueueNoop(x: number) {
  return x;
});

/** Five 10k fan-outs traced through `processor`; what arrived, what it dropped, what was warned. */
async function run(processor: BatchSpanProcessor): Promise<{ arrived: number; dropped: number; warned: string[] }> {
  const before = receiver.spans.length;
  const warned: string[] = [];
  const warn = console.warn;
  console.warn = (...a: unknown[]) => void warned.push(a.join(" "));
  try {
    ta.enableTracing({ tracerProvider: new BasicTracerProvider({ spanProcessors: [processor] }) });
    for (let i = 0; i < FANOUTS; i++) await ta.all(Array.from({ length: WIDTH }, (_, k) => noop.go(k)));
    const { droppedSpans, spans } = ta.tracingStats();
    ta.disableTracing();
    assert.equal(spans, FANOUTS * WIDTH, "one span per task");
    await processor.shutdown(); // sends what is queued
    return { arrived: receiver.spans.length - before, dropped: droppedSpans, warned };
  } finally {
    console.warn = warn;
    ta.disableTracing();
  }
}

test(
  "the SDK's default BatchSpanProcessor (queue 2,048) drops spans of five 10k fan-outs, and thinkagain says so",
  T,
  async () => {
    const exporter = new OTLPTraceExporter({ url: `${receiver.endpoint}/v1/traces` });
    const { arrived, dropped, warned } = await run(
      new BatchSpanProcessor(exporter, ta.watchDroppedSpans({ maxQueueSize: 2_048 })),
    );
    assert.ok(dropped > 0, "the default queue (2,048) overflows");
    assert.equal(arrived + dropped, FANOUTS * WIDTH, "every span either arrived or was counted as dropped");
    assert.equal(warned.length, 1, "warned once");
    assert.match(warned[0], /dropped spans: its queue \(maxQueueSize\) was full/);
  },
);

test("the README's BatchSpanProcessor settings deliver every span of five 10k fan-outs", T, async () => {
  // the receiver runs in this process, behind the fan-outs: on a loaded machine an export can wait
  // past the exporter's 10 s default, and a timed-out export loses its batch; the README's settings
  // are what is tested, so the test's own receiver gets the time it needs
  const exporter = new OTLPTraceExporter({ url: `${receiver.endpoint}/v1/traces`, timeoutMillis: 100_000 });
  const { arrived, dropped, warned } = await run(
    new BatchSpanProcessor(exporter, ta.watchDroppedSpans({ ...BATCH_OPTIONS, exportTimeoutMillis: 100_000 })),
  );
  assert.equal(dropped, 0);
  assert.deepEqual(warned, []);
  assert.equal(arrived, FANOUTS * WIDTH);
});

test("the README shows the settings examples/tracing.ts uses", () => {
  const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
  const snippet = /new BatchSpanProcessor\(\s*new OTLPTraceExporter\(\),\s*ta\.watchDroppedSpans\(\{([^}]*)\}\)/
    .exec(readme);
  assert.ok(snippet, "the README's snippet passes its options through ta.watchDroppedSpans");
  const shown = Object.fromEntries(
    [...snippet[1].matchAll(/(\w+): ([\d_]+)/g)].map(([, k, v]) => [k, Number(v.replaceAll("_", ""))]),
  );
  assert.deepEqual(shown, BATCH_OPTIONS);
});
