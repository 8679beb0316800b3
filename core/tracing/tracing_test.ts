import { after, before, test } from "node:test";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { context, propagation, SpanKind, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { JsonTraceSerializer } from "@opentelemetry/otlp-transformer/build/src/index.js";
import * as ta from "../mod.ts";
import {
  disableTracing,
  injectTraceContext,
  isTracingEnabled,
  setTracingAutoDetect,
  withExtractedContext,
} from "./mod.ts";
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from "../_test_otlp_receiver.ts";
import { eventually, sleep } from "../_test_utils.ts";

let receiver: OtlpReceiver;
let provider: BasicTracerProvider;

before(async () => {
  receiver = await startOtlpReceiver();
  provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ "service.name": "tracing-test" }),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: `${receiver.endpoint}/v1/traces` }))],
  });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
});

after(async () => {
  disableTracing();
  await provider.shutdown();
  trace.disable();
  context.disable();
  propagation.disable();
  await receiver.close();
});

const byName = (spans: ReceivedSpan[], name: string) => spans.filter((s) => s.name === name);
const one = (spans: ReceivedSpan[], name: string) => {
  const found = byName(spans, name);
  assert.equal(found.length, 1, `exactly one span named ${name}, got ${found.length}`);
  return found[0];
};

test("tracing turns on by itself at the first .go() once a tracer provider is registered", async () => {
  setTracingAutoDetect(true);
  await ta.op(async function warmup() {}).go();
  assert.equal(isTracingEnabled(), true);
});

test("tracing exports op and service-call spans over OTLP/protobuf with parents, links and error status", async () => {
  setTracingAutoDetect(true);
  const tracer = trace.getTracer("user-code");
  const embed = ta.op(async function embed(x: number) {
    tracer.startActiveSpan("user.work", (s) => s.end()); // user spans nest under the op's span
    await new Promise((r) => setTimeout(r, 2));
    return x * 2;
  });
  const Store = ta.service(
    class TraceStore {
      async lookup(v: number) {
        return v + 1;
      }
    },
  );
  const store = Store.init();
  const combine = ta.op(async function combine(xs: number[]) {
    return xs.reduce((s, x) => s + x, 0);
  });
  const pipeline = ta.op(async function pipeline(n: number) {
    const embs = Array.from({ length: n }, (_, i) => embed.go(i)); // fan-out
    const looked = embs.map((e) => store.lookup.go(e));
    return await combine.go(looked);
  });
  const explode = ta.op(async function explode() {
    throw new Error("boom");
  });
  const after = ta.op(async function afterExplode(x: unknown) {
    return x;
  });

  const rootIds = await tracer.startActiveSpan("test.root", async (root) => {
    const result = await pipeline.go(3);
    assert.equal(result, 2 * 0 + 1 + 2 * 1 + 1 + 2 * 2 + 1);
    await assert.rejects(after.go(explode.go()).promise(), /boom/);
    root.end();
    return root.spanContext();
  });
  await provider.forceFlush();
  const spans = await receiver.waitFor(12, (s) => s.traceId === rootIds.traceId);
  assert.ok(receiver.contentTypes.some((t) => t.includes("protobuf")), "the exporter sent protobuf");

  const root = one(spans, "test.root");
  const pipe = one(spans, "op pipeline");
  assert.equal(pipe.parentSpanId, root.spanId);
  assert.equal(pipe.kind, 1, "INTERNAL locally");
  assert.equal(pipe.attributes["thinkagain.op"], "pipeline");
  assert.ok(Number.isInteger(pipe.attributes["thinkagain.task_id"]), "the task's sequence number");
  assert.equal(typeof pipe.attributes["thinkagain.queue_wait_ms"], "number");
  assert.equal(pipe.attributes["thinkagain.attempt"], 0);
  assert.equal(pipe.attributes["thinkagain.status"], undefined, "set only on failure or cancel");
  assert.equal(pipe.status.code, 0);
  assert.ok(pipe.events.some((e) => e.name === "started"), "queue wait ends at the 'started' event");

  const embeds = byName(spans, "op embed");
  const lookups = byName(spans, "call TraceStore.lookup");
  assert.equal(embeds.length, 3);
  assert.equal(lookups.length, 3);
  for (const s of [...embeds, ...lookups]) {
    assert.equal(s.parentSpanId, pipe.spanId, `${s.name} is a child of op pipeline`);
  }
  const lookup = lookups[0];
  assert.equal(lookup.attributes["thinkagain.service"], "TraceStore");
  assert.equal(lookup.attributes["thinkagain.method"], "lookup");
  // each lookup links to the embed whose ref it took
  const embedIds = new Set(embeds.map((s) => s.spanId));
  for (const l of lookups) {
    assert.equal(l.links.length, 1);
    assert.ok(embedIds.has(l.links[0].spanId));
    assert.equal(l.links[0].traceId, rootIds.traceId);
  }
  assert.equal(new Set(lookups.map((l) => l.links[0].spanId)).size, 3);
  const comb = one(spans, "op combine");
  assert.equal(comb.parentSpanId, pipe.spanId);
  assert.deepEqual(new Set(comb.links.map((l) => l.spanId)), new Set(lookups.map((l) => l.spanId)));
  // a span ends after the spans it links to
  for (const l of lookups) assert.ok(l.startNs <= l.endNs && comb.endNs >= l.endNs);

  const works = byName(spans, "user.work");
  assert.equal(works.length, 3);
  for (const w of works) assert.ok(embedIds.has(w.parentSpanId), "a user span nests under its op's span");

  const boom = one(spans, "op explode");
  assert.equal(boom.status.code, 2, "ERROR");
  assert.match(boom.status.message, /boom/);
  assert.equal(boom.attributes["thinkagain.status"], "failed");
  assert.ok(
    boom.events.some((e) => e.name === "exception" && String(e.attributes["exception.message"]).includes("boom")),
  );
  const skipped = one(spans, "op afterExplode");
  assert.equal(skipped.status.code, 2);
  assert.equal(skipped.attributes["thinkagain.skipped"], true);
  assert.deepEqual(skipped.links.map((l) => l.spanId), [boom.spanId]);
});

test("tracing marks a cancelled task's span as cancelled", async () => {
  setTracingAutoDetect(true);
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const slow = ta.op(async function slowForCancel() {
    await gate;
  });
  const ref = slow.go();
  await new Promise((r) => setTimeout(r, 1));
  ref.cancel();
  release();
  await provider.forceFlush();
  const [span] = await receiver.waitFor(1, (s) => s.name === "op slowForCancel");
  assert.equal(span.status.code, 2);
  assert.equal(span.status.message, "cancelled");
  assert.equal(span.attributes["thinkagain.status"], "cancelled");
});

test("sampleRatio traces that share of root tasks, whole: a traced task's children are traced with it", async () => {
  const exporter = new InMemorySpanExporter();
  const local = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const leaf = ta.op(async function sampledLeaf(x: number) {
    return x;
  });
  const root = ta.op(async function sampledRoot(x: number) {
    return await leaf.go(x);
  });
  try {
    ta.enableTracing({ tracerProvider: local, sampleRatio: 0.25 });
    await Promise.all(Array.from({ length: 100 }, (_, i) => root.go(i)));
    const spans = exporter.getFinishedSpans();
    const roots = spans.filter((s) => s.name === "op sampledRoot");
    const leaves = spans.filter((s) => s.name === "op sampledLeaf");
    assert.equal(roots.length, 25, "a quarter of the roots");
    assert.equal(leaves.length, 25, "each traced root's child, and no other");
    const rootIds = new Set(roots.map((s) => s.spanContext().spanId));
    for (const l of leaves) assert.ok(rootIds.has(l.parentSpanContext?.spanId ?? ""), "the child hangs under its root");
    // what was left out is counted (75 roots and their children), and each traced root after the
    // first says how many tasks went untraced since the previous one (the three roots between them)
    assert.deepEqual(ta.tracingStats(), { spans: 50, untracedTasks: 150, droppedSpans: 0, failedSpans: 0 });
    const gaps = roots.map((s) => s.attributes["thinkagain.untraced_before"]);
    assert.equal(gaps.filter((g) => g === undefined).length, 1, "the first root is traced with none before it");
    assert.ok(gaps.every((g) => g === undefined || g === 3), `three untraced before each other root (${gaps})`);
    assert.ok(leaves.every((l) => l.attributes["thinkagain.untraced_before"] === undefined), "only roots carry it");
    // a profiler still sees every task while tracing samples
    exporter.reset();
    using p = ta.profile();
    await Promise.all(Array.from({ length: 8 }, (_, i) => root.go(i)));
    assert.equal(p.summary().ops.sampledRoot.count, 8);
    assert.equal(exporter.getFinishedSpans().filter((s) => s.name === "op sampledRoot").length, 8);
    assert.throws(() => ta.enableTracing({ tracerProvider: local, sampleRatio: 0 }), RangeError);
  } finally {
    ta.disableTracing();
    setTracingAutoDetect(true);
    await local.shutdown();
  }
});

test("injectTraceContext and withExtractedContext join a hop into the caller's trace under a SERVER span", async () => {
  setTracingAutoDetect(true);
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const clientCall = ta.op(async function clientCall() {
    await gate;
  });
  const onNode = ta.op(async function onNode(x: number) {
    trace.getTracer("user-code").startActiveSpan("node.user", (s) => s.end());
    return x + 1;
  });
  const ref = clientCall.go();
  await new Promise((r) => setTimeout(r, 1)); // now running: its span exists
  const carrier = injectTraceContext(ref);
  assert.match(carrier.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  // as the node would: a fresh context, only the envelope's headers
  const result = await context.with(
    context.active().deleteValue(Symbol.for("OpenTelemetry Context Key SPAN")),
    () => withExtractedContext(carrier, () => onNode.go(41), { name: "serve onNode" }),
  );
  assert.equal(result, 42);
  release();
  await ref;
  await provider.forceFlush();
  const spans = await receiver.waitFor(
    4,
    (s) => carrier.traceparent.includes(s.traceId) && /clientCall|onNode|node\.user/.test(s.name),
  );
  const client = one(spans, "op clientCall");
  const server = one(spans, "serve onNode");
  const node = one(spans, "op onNode");
  const user = one(spans, "node.user");
  assert.equal(server.kind, 2, "SERVER");
  assert.equal(server.parentSpanId, client.spanId);
  assert.equal(node.parentSpanId, server.spanId);
  assert.equal(user.parentSpanId, node.spanId);
});

test("withExtractedContext reads a bare W3C traceparent even without a registered propagator", async () => {
  setTracingAutoDetect(true);
  propagation.disable();
  try {
    const traceId = "0af7651916cd43dd8448eb211c80319c";
    await withExtractedContext(
      { traceparent: `00-${traceId}-b7ad6b7169203331-01` },
      () => ta.op(async function bare() {}).go(),
      {
        name: "serve bare",
      },
    );
    await provider.forceFlush();
    const spans = await receiver.waitFor(2, (s) => s.traceId === traceId);
    assert.equal(one(spans, "serve bare").parentSpanId, "b7ad6b7169203331");
    assert.equal(one(spans, "op bare").parentSpanId, one(spans, "serve bare").spanId);
  } finally {
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  }
});

test("the OTLP receiver also decodes OTLP/JSON", async () => {
  const memory = new InMemorySpanExporter();
  const p = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(memory)] });
  p.getTracer("json").startSpan("json.span").end();
  const body = new Uint8Array(JsonTraceSerializer.serializeRequest(memory.getFinishedSpans())!);
  const res = await fetch(`${receiver.endpoint}/v1/traces`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
  });
  assert.equal(res.status, 200);
  await res.arrayBuffer();
  const [s] = await receiver.waitFor(1, (x) => x.name === "json.span");
  assert.equal(s.traceId, memory.getFinishedSpans()[0].spanContext().traceId);
  await p.shutdown();
});

test("Deno's built-in OpenTelemetry (OTEL_DENO=true, no SDK) exports thinkagain spans through @opentelemetry/api", async () => {
  const deno = fileURLToPath(new URL("../../node_modules/.bin/deno", import.meta.url));
  const app = fileURLToPath(new URL("../_test_otel_deno_app.ts", import.meta.url));
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(deno, ["run", "-A", "--no-check", app], {
      cwd: fileURLToPath(new URL("../..", import.meta.url)),
      env: {
        ...process.env,
        OTEL_DENO: "true",
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
        OTEL_SERVICE_NAME: "deno-builtin",
      },
      timeout: 60_000,
    }, (err, out, errOut) => (err ? reject(new Error(`${err.message}\n${errOut}`)) : resolve(out)));
  });
  assert.deepEqual(JSON.parse(stdout.trim().split("\n").pop()!), { result: 6, provider: true, tracing: true });
  const spans = await receiver.waitFor(6, (s) => s.service === "deno-builtin");
  const root = one(spans, "app.root");
  const doubles = byName(spans, "op double");
  const sum = one(spans, "op sum");
  assert.equal(doubles.length, 2);
  for (const d of [...doubles, sum]) assert.equal(d.parentSpanId, root.spanId);
  assert.deepEqual(new Set(sum.links.map((l) => l.spanId)), new Set(doubles.map((d) => d.spanId)));
  for (const inner of byName(spans, "app.inner")) assert.ok(doubles.some((d) => d.spanId === inner.parentSpanId));
});

test("enableTracing() with no provider registered idles, and follows a provider that comes and goes", () =>
  withLocalProvider(async (local, exporter) => {
    const step = ta.op(async function followStep(x: number) {
      return x;
    });
    const burst = (n: number) => Promise.all(Array.from({ length: n }, (_, i) => step.go(i)));
    ta.disableTracing();
    trace.disable();
    ta.enableTracing();
    assert.equal(isTracingEnabled(), true, "on, though nothing can take a span yet");
    await burst(10);
    // registered later: picked up within 1024 submissions
    trace.setGlobalTracerProvider(local);
    await burst(1100);
    assert.ok(exporter.getFinishedSpans().length > 0);
    exporter.reset();
    await burst(5);
    assert.equal(exporter.getFinishedSpans().filter((s) => s.name === "op followStep").length, 5);
    exporter.reset();
    // the provider goes away: within 1024 submissions no more spans are made
    trace.disable();
    await burst(1100);
    exporter.reset();
    await burst(5);
    assert.equal(exporter.getFinishedSpans().length, 0, "idle while no provider is registered");
    assert.equal(isTracingEnabled(), true);
    // and comes back: picked up within 1024 submissions, whole traces from then on
    trace.setGlobalTracerProvider(local);
    await burst(1100);
    exporter.reset();
    await burst(5);
    assert.equal(exporter.getFinishedSpans().filter((s) => s.name === "op followStep").length, 5);
  }));

test("a body's own spans nest under its task span even when the context manager is registered after enableTracing", () =>
  withLocalProvider(async (local, exporter) => {
    const inner = ta.op(async function lateInner(x: number) {
      return x + 1;
    });
    const outer = ta.op(async function lateOuter(x: number) {
      const span = local.getTracer("user").startSpan("user.work");
      span.end();
      return await inner.go(x);
    });
    context.disable();
    ta.enableTracing({ tracerProvider: local });
    // without a context manager the body runs as is; its child task still hangs under it
    assert.equal(await outer.go(1), 2);
    let spans = exporter.getFinishedSpans();
    let o = spans.find((s) => s.name === "op lateOuter")!;
    assert.equal(spans.find((s) => s.name === "op lateInner")?.parentSpanContext?.spanId, o.spanContext().spanId);
    exporter.reset();
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    assert.equal(await outer.go(2), 3);
    spans = exporter.getFinishedSpans();
    o = spans.find((s) => s.name === "op lateOuter")!;
    assert.equal(spans.find((s) => s.name === "user.work")?.parentSpanContext?.spanId, o.spanContext().spanId);
    assert.equal(spans.find((s) => s.name === "op lateInner")?.parentSpanContext?.spanId, o.spanContext().spanId);
  }));

test("tracing that auto-detection turned on stops when detection is turned off; enableTracing() stays", () =>
  withLocalProvider(async (local, exporter) => {
    const step = ta.op(async function detectedStep() {});
    ta.disableTracing();
    trace.disable();
    trace.setGlobalTracerProvider(local);
    setTracingAutoDetect(true);
    await step.go();
    assert.equal(isTracingEnabled(), true, "found by detection");
    assert.equal(exporter.getFinishedSpans().length, 1);
    setTracingAutoDetect(false);
    assert.equal(isTracingEnabled(), false);
    await step.go();
    assert.equal(exporter.getFinishedSpans().length, 1, "no span once detection is off");
    ta.enableTracing();
    setTracingAutoDetect(false);
    await step.go();
    assert.equal(exporter.getFinishedSpans().length, 2, "enableTracing() is not undone by it");
  }));

test("maxOverhead: a burst of tiny tasks is traced in proportion, a request after a quiet spell whole", () =>
  withLocalProvider(async (local, exporter) => {
    const tiny = ta.op(async function budgetTiny(x: number) {
      return x;
    });
    const request = ta.op(async function budgetRequest() {
      return await ta.all([tiny.go(1), tiny.go(2), tiny.go(3)]);
    });
    assert.throws(() => ta.enableTracing({ tracerProvider: local, maxOverhead: 0 }), RangeError);
    assert.throws(() => ta.enableTracing({ tracerProvider: local, maxOverhead: 1 }), RangeError);
    assert.throws(() => ta.enableTracing({ tracerProvider: local, maxOverhead: 0.1, sampleRatio: 0.5 }), TypeError);
    ta.enableTracing({ tracerProvider: local, maxOverhead: 0.1 });
    await ta.all(Array.from({ length: 5_000 }, (_, i) => tiny.go(i)));
    const burst = exporter.getFinishedSpans().length;
    assert.ok(burst >= 1 && burst < 1_000, `a share of the burst is traced (${burst} of 5000)`);
    assert.deepEqual(
      ta.tracingStats(),
      { spans: burst, untracedTasks: 5_000 - burst, droppedSpans: 0, failedSpans: 0 },
      "every task counted once",
    );
    exporter.reset();
    // a profiler records every task meanwhile: that is not the budget's choice, nor on its bill
    const profiler = ta.profile();
    await ta.all(Array.from({ length: 20_000 }, (_, i) => tiny.go(i)));
    profiler.stop();
    exporter.reset();
    await sleep(100); // the budget is earned back while nothing runs
    await request.go();
    const spans = exporter.getFinishedSpans();
    const root = spans.find((s) => s.name === "op budgetRequest");
    assert.ok(root !== undefined, "the request after the quiet spell is traced");
    const untraced = root.attributes["thinkagain.untraced_before"];
    assert.ok(typeof untraced === "number" && untraced > 0, "the request's span says tasks were left out before it");
    const children = spans.filter((s) => s.name === "op budgetTiny");
    assert.equal(children.length, 3, "whole: its children with it");
    for (const c of children) assert.equal(c.parentSpanContext?.spanId, root.spanContext().spanId);
  }));

test("maxOverhead: with the budget spent, a traced request still gets every span, and every span ends", () =>
  withLocalProvider(async (_local, exporter) => {
    const tiny = ta.op(async function gateTiny(x: number) {
      return x;
    });
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    let atGate = false;
    const request = ta.op(async function gateRequest() {
      const first = await tiny.go(1);
      atGate = true;
      await gate; // meanwhile a flood of roots spends the budget
      const second = await tiny.go(2);
      const rest = await ta.all([tiny.go(3), tiny.go(4)]);
      return first + second + rest[0] + rest[1];
    });
    ta.enableTracing({ tracerProvider: _local, maxOverhead: 0.1 });
    const req = request.go();
    assert.ok(await eventually(() => atGate), "the request is waiting at its gate");
    // the flood is submitted in the same turn the request resumes in, before any top-up can come
    open();
    const flood = ta.all(Array.from({ length: 20_000 }, (_, i) => tiny.go(i)));
    assert.equal(await req, 10);
    await flood;
    const spans = exporter.getFinishedSpans();
    const root = spans.find((s) => s.name === "op gateRequest");
    assert.ok(root !== undefined, "the request was traced");
    const children = spans.filter((s) => s.parentSpanContext?.spanId === root.spanContext().spanId);
    assert.equal(children.length, 4, "all four of its tasks, also those submitted once the budget was spent");
    const stats = ta.tracingStats();
    assert.ok(stats.untracedTasks > 0 && stats.spans < 20_005, `the flood was mostly left out (${stats.spans} spans)`);
    assert.equal(spans.length, stats.spans, "every span made was ended");
  }));

test("maxOverhead: work that runs on microtasks alone keeps being traced in proportion", () =>
  withLocalProvider(async (local, exporter) => {
    // a loop of awaited in-process ops gives no timer a turn: the budget must be topped up anyway
    const step = ta.op(async function microStep(x: number) {
      let s = 0;
      for (let i = 0; i < 2_000; i++) s += i * x;
      return s;
    });
    ta.enableTracing({ tracerProvider: local, maxOverhead: 0.1 });
    const n = 40_000;
    let firstHalf = 0;
    for (let i = 0; i < n; i++) {
      await step.go(i);
      if (i === n / 2) firstHalf = exporter.getFinishedSpans().length;
    }
    const secondHalf = exporter.getFinishedSpans().length - firstHalf;
    assert.ok(firstHalf > 0 && secondHalf > 0, `both halves traced (${firstHalf}, ${secondHalf})`);
    assert.ok(firstHalf + secondHalf < n, "and only a share");
  }));

test("switching from maxOverhead to tracing every task traces every root at once", () =>
  withLocalProvider(async (local, exporter) => {
    const tiny = ta.op(async function switchTiny(x: number) {
      return x;
    });
    ta.enableTracing({ tracerProvider: local, maxOverhead: 0.1 });
    // one traced request with many children leaves the budget deep in debt
    await ta.op(async function switchBig() {
      await ta.all(Array.from({ length: 5_000 }, (_, i) => tiny.go(i)));
    }).go();
    ta.enableTracing({ tracerProvider: local });
    exporter.reset();
    const after = ta.op(async function switchAfter() {
      return 1;
    });
    await after.go();
    await after.go();
    assert.equal(exporter.getFinishedSpans().filter((s) => s.name === "op switchAfter").length, 2);
    assert.equal(ta.tracingStats().untracedTasks, 0, "nothing left out without sampling");
  }));

test("with the budget spent, what an untraced service method or retried op submits later is not a new root", () =>
  withLocalProvider(async (local, exporter) => {
    const tiny = ta.op(async function orphanTiny(x: number) {
      return x;
    });
    const leaf = ta.op(async function orphanLeaf(x: number) {
      return x;
    });
    const Svc = ta.service(
      class OrphanSvc {
        async handle() {
          await sleep(30); // the gate opens again meanwhile
          return await leaf.go(1);
        }
      },
    );
    const svc = Svc.init();
    await svc.handle();
    const retried = ta.op({ name: "orphanRetried", retries: 1 }, async () => {
      await sleep(30);
      return await leaf.go(2);
    });
    ta.enableTracing({ tracerProvider: local, maxOverhead: 0.1 });
    await sleep(20);
    const flood = ta.all(Array.from({ length: 2_000 }, (_, i) => tiny.go(i))); // spends the budget
    const calls = [svc.handle.go(), retried.go()]; // submitted with the gate shut: untraced
    await flood;
    assert.deepEqual(await ta.all(calls), [1, 2]);
    const names = exporter.getFinishedSpans().map((s) => s.name);
    assert.ok(!names.includes("call OrphanSvc.handle") && !names.includes("op orphanRetried"), "untraced");
    assert.ok(!names.includes("op orphanLeaf"), "their children are left out with them, not traced as roots");
  }));

test("tracingStats stops counting when tracing is turned off", () =>
  withLocalProvider(async (local) => {
    const tiny = ta.op(async function statsTiny(x: number) {
      return x;
    });
    ta.enableTracing({ tracerProvider: local, sampleRatio: 0.5 });
    await ta.all([1, 2, 3, 4].map((i) => tiny.go(i)));
    ta.disableTracing();
    await ta.all([5, 6, 7].map((i) => tiny.go(i)));
    assert.deepEqual(ta.tracingStats(), { spans: 2, untracedTasks: 2, droppedSpans: 0, failedSpans: 0 });
  }));

test("an op marked remote that runs here (no mesh, or local nodes only) is an INTERNAL span with executor local", () =>
  withLocalProvider(async (local, exporter) => {
    const capable = ta.op({ name: "spanCapableOp", remote: true }, async (x: number) => x + 1);
    ta.enableTracing({ tracerProvider: local });
    assert.equal(await capable.go(1), 2);
    await using mesh = new ta.Mesh([new ta.MeshNode("a")]);
    assert.equal(await mesh.run(() => capable.go(2)), 3);
    const spans = exporter.getFinishedSpans().filter((s) => s.name === "op spanCapableOp");
    assert.deepEqual(spans.map((s) => [s.kind, s.attributes["thinkagain.executor"]]), [
      [SpanKind.INTERNAL, "local"],
      [SpanKind.INTERNAL, "local"],
    ]);
  }));

/** Runs `fn` with a provider of its own (spans kept in memory), then puts the file's globals back. */
async function withLocalProvider(
  fn: (local: BasicTracerProvider, exporter: InMemorySpanExporter) => Promise<void>,
): Promise<void> {
  const exporter = new InMemorySpanExporter();
  const local = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  try {
    await fn(local, exporter);
  } finally {
    ta.disableTracing();
    trace.disable();
    trace.setGlobalTracerProvider(provider);
    context.disable();
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    setTracingAutoDetect(true);
    await local.shutdown();
  }
}
