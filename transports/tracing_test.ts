// One trace across processes: driver → node A → node B, with W3C trace context in the call envelope.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { context, propagation, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BasicTracerProvider, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import * as ta from "../mod.ts";
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from "../core/_test_otlp_receiver.ts";
import { type Runtime, startNodeProcess } from "../adapters/_test_nodes.ts";
import { TraceFront } from "./_test_tracing_app.ts";

const APP = fileURLToPath(new URL("./_test_tracing_app.ts", import.meta.url));
const T = { timeout: 120_000 };
let receiver: OtlpReceiver;
let provider: BasicTracerProvider;

before(async () => {
  receiver = await startOtlpReceiver();
  provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ "service.name": "driver" }),
    spanProcessors: [new SimpleSpanProcessor(new OTLPTraceExporter({ url: `${receiver.endpoint}/v1/traces` }))],
  });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
  ta.enableTracing();
});

after(async () => {
  ta.disableTracing();
  await provider.shutdown();
  trace.disable();
  context.disable();
  propagation.disable();
  await receiver.close();
});

async function chain(runtime: Runtime, env: Record<string, string>): Promise<ReceivedSpan[]> {
  const otel = { ...env, OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf" };
  const b = await startNodeProcess(APP, ["--port", "0", "--name", "b"], {
    runtime,
    env: { ...otel, OTEL_SERVICE_NAME: `b-${runtime}` },
  });
  const a = await startNodeProcess(APP, ["--port", "0", "--name", "a"], {
    runtime,
    env: { ...otel, OTEL_SERVICE_NAME: `a-${runtime}`, TRACE_BACK_ENDPOINT: `ws://127.0.0.1:${b.port}` },
  });
  let traceId = "";
  try {
    await using mesh = new ta.Mesh([new ta.MeshNode("a", { endpoint: `ws://127.0.0.1:${a.port}` })]);
    const out = await trace.getTracer("driver").startActiveSpan("driver.request", async (root) => {
      traceId = root.spanContext().traceId;
      const r = await mesh.run(() => TraceFront.init().handle.go("q"));
      root.end();
      return r;
    });
    assert.equal(out, "front(q!)");
  } finally {
    a.kill();
    b.kill();
    await a.cleanExit();
    await b.cleanExit(); // Deno's exporter flushes at exit
  }
  return receiver.waitFor(8, (s) => s.traceId === traceId, 30_000);
}

function checkChain(spans: ReceivedSpan[], runtime: Runtime): void {
  const find = (name: string, service: string) => {
    const found = spans.filter((s) => s.name === name && s.service === service);
    assert.equal(
      found.length,
      1,
      `one "${name}" from ${service}; got ${spans.map((s) => `${s.service}:${s.name}`).join(", ")}`,
    );
    return found[0];
  };
  const root = find("driver.request", "driver");
  const driverCall = find("call TraceFront.handle", "driver");
  const serveA = find("serve TraceFront.handle", `a-${runtime}`);
  const callA = find("call TraceFront.handle", `a-${runtime}`);
  const toB = find("call TraceBack.work", `a-${runtime}`);
  const serveB = find("serve TraceBack.work", `b-${runtime}`);
  const callB = find("call TraceBack.work", `b-${runtime}`);
  const user = find("back.user", `b-${runtime}`);
  assert.equal(driverCall.parentSpanId, root.spanId);
  assert.equal(serveA.parentSpanId, driverCall.spanId, "node A's server span continues the driver's call");
  assert.equal(serveA.kind, 2, "SERVER");
  assert.equal(driverCall.kind, 3, "the driver's span of a remote call is a CLIENT span");
  assert.equal(driverCall.attributes["thinkagain.executor"], "remote");
  assert.ok(Number(driverCall.attributes["thinkagain.bytes_sent"]) > 0, "bytes sent are recorded");
  assert.ok(Number(driverCall.attributes["thinkagain.bytes_received"]) > 0, "bytes received are recorded");
  assert.deepEqual(
    driverCall.events.map((e) => e.name).filter((n) => n !== "started"),
    ["sent", "received"],
    "queue wait (until started), transfer (sent → received, less the node's span) and execution are told apart",
  );
  assert.equal(toB.kind, 3, "A's call to B is a CLIENT span too");
  assert.equal(callB.attributes["thinkagain.executor"], "local");
  assert.equal(callA.parentSpanId, serveA.spanId);
  assert.equal(toB.parentSpanId, callA.spanId, "A's call to B is a child of the method running on A");
  assert.equal(serveB.parentSpanId, toB.spanId, "node B's server span continues A's call");
  assert.equal(callB.parentSpanId, serveB.spanId);
  assert.equal(user.parentSpanId, callB.spanId, "a user span on B nests under B's task");
  assert.equal(serveB.attributes["thinkagain.node"], "b");
}

test("a driver → node A → node B chain is one trace, nodes on Bun exporting through the SDK", T, async () => {
  checkChain(await chain("bun", {}), "bun");
});

test(
  "a driver → node A → node B chain is one trace, nodes on Deno exporting through OTEL_DENO=true (no SDK)",
  T,
  async () => {
    checkChain(await chain("deno", { OTEL_DENO: "true" }), "deno");
  },
);
