// Head sampling across a node, in one process: the driver's decision travels with the call, and a
// node's own sampling decides once per incoming call that carries none.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { context, propagation, SpanKind } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import * as ta from "../mod.ts";
import { injectTraceContext, withExtractedContext } from "../core/tracing/mod.ts";
import { spend } from "../core/tracing/sampling.ts";
import { tracingState } from "../core/tracing/state.ts";
import { NodeServer } from "../server.ts";
import { serveInMemory } from "../testing.ts";

const exporter = new InMemorySpanExporter();
const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });

before(() => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
});

after(async () => {
  ta.disableTracing();
  await tracerProvider.shutdown();
  context.disable();
  propagation.disable();
});

const Echo = ta.service(
  class SamplingEcho {
    async echo(x: number): Promise<number> {
      return await inner.go(x); // a task of the call's own: traced with it or not at all
    }
  },
);
const inner = ta.op(async function samplingInner(x: number) {
  return x;
});
// a resident instance with one call at a time: calls from drivers wait their turn on the node
// (fair dispatch) and are submitted later, with the decision they came with
const Resident = ta.service(
  { maxConcurrency: 1 },
  class SamplingResident {
    async echo(x: number): Promise<number> {
      return await inner.go(x);
    }
  },
);
const remoteInner = ta.op({ name: "samplingRemoteInner", remote: true }, async (x: number) => await inner.go(x));

const named = (spans: ReadableSpan[], name: string) => spans.filter((s) => s.name === name);

test("sampleRatio holds across a node: a call the driver sampled out makes no span on the node, a traced one its whole subtree", async () => {
  const node = new NodeServer({ name: "n1" });
  const server = serveInMemory("sampling-n1", node.handler);
  const mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: server.endpoint })]);
  exporter.reset();
  try {
    await node.startResident("SamplingResident");
    ta.enableTracing({ tracerProvider, sampleRatio: 0.1 });
    await mesh.run(async () => {
      const e = Echo.init();
      for (let i = 0; i < 100; i++) await e.echo.go(i);
      for (let i = 0; i < 100; i++) await remoteInner.go(i);
      const r = await Resident.connect();
      await Promise.all(Array.from({ length: 100 }, (_, i) => r.echo.go(i))); // most wait their turn
    });
    const spans = exporter.getFinishedSpans();
    for (
      const [client, serve] of [
        ["call SamplingEcho.echo", "serve SamplingEcho.echo"],
        ["op samplingRemoteInner", "serve samplingRemoteInner"],
        ["call SamplingResident.echo", "serve SamplingResident.echo"],
      ]
    ) {
      const clients = named(spans, client).filter((s) => s.kind === SpanKind.CLIENT);
      const serves = named(spans, serve);
      assert.equal(clients.length, 10, `a tenth of the ${client} roots`);
      const clientSpans = new Set(clients.map((s) => s.spanContext().spanId));
      assert.equal(serves.length, clients.length, `one ${serve} per traced call, none for the others`);
      for (const s of serves) {
        assert.ok(clientSpans.has(s.parentSpanContext?.spanId ?? ""), `${serve} under its caller`);
      }
    }
    // on the node: the method (INTERNAL) and op spans, each under its SERVER span, and the inner op under them
    const serveIds = new Set(spans.filter((s) => s.kind === SpanKind.SERVER).map((s) => s.spanContext().spanId));
    const nodeCalls = spans.filter((s) => s.kind === SpanKind.INTERNAL && s.name !== "op samplingInner");
    assert.equal(nodeCalls.length, 30);
    for (const s of nodeCalls) {
      assert.ok(serveIds.has(s.parentSpanContext?.spanId ?? ""), `${s.name} under a serve span`);
    }
    const callIds = new Set(nodeCalls.map((s) => s.spanContext().spanId));
    const inners = named(spans, "op samplingInner");
    assert.equal(inners.length, 30, "the inner op of each traced call, and no other");
    for (const s of inners) assert.ok(callIds.has(s.parentSpanContext?.spanId ?? ""), "the inner op under its call");
  } finally {
    ta.disableTracing();
    await mesh.close();
    await node.drain({ graceMs: 0 });
    await server.close();
  }
});

test("a node's own sampleRatio decides once per incoming call with no decision: SERVER span and subtree, or nothing", async () => {
  exporter.reset();
  try {
    ta.enableTracing({ tracerProvider, sampleRatio: 0.1 });
    for (let i = 0; i < 100; i++) {
      // as a node serves a driver that does not trace: no trace context in the envelope
      assert.equal(await withExtractedContext(undefined, () => Echo.init().echo.go(i), { name: "serve echo" }), i);
    }
    const spans = exporter.getFinishedSpans();
    const serves = named(spans, "serve echo");
    assert.equal(serves.length, 10, "a tenth of the incoming calls");
    const serveIds = new Set(serves.map((s) => s.spanContext().spanId));
    const calls = named(spans, "call SamplingEcho.echo");
    assert.equal(calls.length, 10, "the call of each traced serve span, and no other");
    for (const s of calls) assert.ok(serveIds.has(s.parentSpanContext?.spanId ?? ""), "the call under its serve span");
    assert.equal(named(spans, "op samplingInner").length, 10);
  } finally {
    ta.disableTracing();
  }
});

test("withExtractedContext follows the caller's decision: a sampled caller is traced past the node's own ratio, a not-sampled one not at all", async () => {
  exporter.reset();
  try {
    ta.enableTracing({ tracerProvider, maxOverhead: 0.5 });
    spend(60_000); // a budget in debt for long: this process would trace no root of its own
    assert.ok(tracingState.gateShut);
    const sampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const unsampled = "00-0af7651916cd43dd8448eb211c80319d-b7ad6b7169203331-00";
    for (let i = 0; i < 20; i++) {
      await withExtractedContext({ traceparent: sampled }, () => Echo.init().echo.go(i), { name: "serve sampled" });
      await withExtractedContext({ traceparent: unsampled }, () => Echo.init().echo.go(i), { name: "serve unsampled" });
    }
    let spans = exporter.getFinishedSpans();
    assert.equal(named(spans, "serve sampled").length, 20, "every call of a sampled caller, whatever the budget");
    assert.equal(named(spans, "op samplingInner").length, 20, "with its whole subtree");
    assert.equal(named(spans, "serve unsampled").length, 0);
    assert.ok(spans.every((s) => s.spanContext().traceId === "0af7651916cd43dd8448eb211c80319c"), "nothing else");
    // a node tracing every root still leaves out a call its caller sampled out, and what that call submits
    ta.enableTracing({ tracerProvider });
    exporter.reset();
    const ref = Echo.init().echo.go(1); // sampled out by nobody: traced
    await ref;
    exporter.reset();
    const carrier = injectTraceContext(ref);
    assert.match(carrier.traceparent, /-01$/);
    for (const tp of [unsampled]) {
      assert.equal(await withExtractedContext({ traceparent: tp }, () => Echo.init().echo.go(7)), 7);
    }
    spans = exporter.getFinishedSpans();
    assert.deepEqual(spans.map((s) => s.name), []);
  } finally {
    ta.disableTracing();
  }
});
