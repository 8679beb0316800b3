import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from "../core/_test_otlp_receiver.ts";

let receiver: OtlpReceiver;
before(async () => {
  receiver = await startOtlpReceiver();
});
after(() => receiver.close());

const repo = fileURLToPath(new URL("..", import.meta.url));

function run(bin: "bun" | "deno", args: string[], env: Record<string, string>): Promise<string> {
  const exe = fileURLToPath(new URL(`../node_modules/.bin/${bin}`, import.meta.url));
  return new Promise((resolve, reject) => {
    execFile(
      exe,
      args,
      { cwd: repo, env: { ...process.env, ...env }, timeout: 60_000 },
      (err, out, errOut) =>
        err ? reject(new Error(`${bin} ${args.join(" ")}: ${err.message}\n${errOut}`)) : resolve(out),
    );
  });
}

/** Checks the shape of the example's trace: root → 4 embeds, 4 retrieves (linked, with a nested span) → generate. */
function checkTrace(spans: ReceivedSpan[]): void {
  const named = (n: string) => spans.filter((s) => s.name === n);
  const [root] = named("rag request");
  assert.ok(root, "the user's root span arrived");
  const embeds = named("op embed"),
    retrieves = named("call Retriever.retrieve"),
    [generate] = named("call Generator.generate");
  assert.equal(embeds.length, 4);
  assert.equal(retrieves.length, 4);
  for (const s of [...embeds, ...retrieves, generate]) assert.equal(s.parentSpanId, root.spanId, s.name);
  const embedIds = new Set(embeds.map((s) => s.spanId));
  for (const r of retrieves) {
    assert.ok(r.links.length === 1 && embedIds.has(r.links[0].spanId), "retrieve links to its embed");
  }
  assert.deepEqual(new Set(generate.links.map((l) => l.spanId)), new Set(retrieves.map((s) => s.spanId)));
  const lookups = named("index.lookup");
  assert.equal(lookups.length, 4);
  for (const l of lookups) {
    assert.ok(retrieves.some((r) => r.spanId === l.parentSpanId), "user span nests under its call");
  }
  assert.equal(generate.attributes["thinkagain.service"], "Generator");
}

test("examples/tracing.ts on Bun exports its pipeline through the OpenTelemetry SDK (OTLP/HTTP protobuf)", async () => {
  const out = await run("bun", ["examples/tracing.ts"], {
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
    OTEL_SERVICE_NAME: "example-bun",
  });
  const traceId = /trace ([0-9a-f]{32})/.exec(out)?.[1];
  assert.ok(traceId, out);
  assert.match(out, /what is a trace\?: 8 docs/);
  checkTrace(await receiver.waitFor(14, (s) => s.traceId === traceId));
});

test("examples/tracing.ts on Deno exports through Deno's built-in OpenTelemetry (OTEL_DENO=true, no SDK)", async () => {
  const out = await run("deno", ["run", "-A", "--no-check", "examples/tracing.ts"], {
    OTEL_DENO: "true",
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
    OTEL_SERVICE_NAME: "example-deno",
  });
  const traceId = /trace ([0-9a-f]{32})/.exec(out)?.[1];
  assert.ok(traceId, out);
  const spans = await receiver.waitFor(14, (s) => s.traceId === traceId);
  assert.ok(spans.every((s) => s.service === "example-deno"));
  checkTrace(spans);
});
