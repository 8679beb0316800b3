// GET /healthz: what an orchestrator's probes (Kubernetes readiness and liveness) ask a node. In
// process through createNodeApp, and against real `thinkagain serve` nodes on Bun and on Deno.
import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import * as ta from "../mod.ts";
import { startNodeProcess } from "../adapters/_test_nodes.ts";
import { eventually, gate, rejection } from "../core/_test_utils.ts";
import { NodeServer } from "./node_server.ts";
import { createNodeApp } from "./server.ts";
import { encodeMessage, PROTOCOL_VERSION } from "./protocol.ts";
import { webSocketTransport } from "./websocket.ts";
import { decode } from "../core/codec.ts";
import { Solo } from "../examples/distributed_app.ts";

const APP = fileURLToPath(new URL("../examples/distributed_app.ts", import.meta.url));
const T = { timeout: 120_000 };

/** Calls running on the node, as its pong says. */
async function activeCalls(url: string, token: string): Promise<number> {
  const conn = await webSocketTransport.connect(url, { token });
  try {
    return (decode(await conn.request(encodeMessage({ t: "ping" }))) as { activeCalls: number }).activeCalls;
  } finally {
    await conn.close();
  }
}

test("createNodeApp GET /healthz answers 200 ready without a token, 503 once the node drains", async () => {
  const node = new NodeServer({ name: "probe-n1", token: "secret" });
  const app = createNodeApp(node.handler, { token: "secret", health: () => node.health() });
  const ready = await app.fetch(new Request("http://127.0.0.1/healthz"));
  assert.equal(ready.status, 200);
  assert.equal(ready.headers.get("content-type"), "application/json");
  assert.deepEqual(await ready.json(), { status: "ready", name: "probe-n1", protocol: PROTOCOL_VERSION });
  // the token still guards the protocol
  assert.equal((await app.fetch(new Request("http://127.0.0.1/rpc", { method: "POST" }))).status, 401);
  await node.drain();
  const draining = await app.fetch(new Request("http://127.0.0.1/healthz"));
  assert.equal(draining.status, 503);
  assert.deepEqual(await draining.json(), { status: "draining", name: "probe-n1", protocol: PROTOCOL_VERSION });
});

test("GET /healthz answers 503 loading while a resident service is constructed; /livez answers 200 throughout", async () => {
  const built = gate();
  ta.service(
    { name: "HealthzSlowModel" },
    class HealthzSlowModel {
      ready: Promise<void> = built.promise;
      ask(): string {
        return "ok";
      }
    },
  );
  const node = new NodeServer({ name: "probe-n3" });
  const app = createNodeApp(node.handler, { health: () => node.health() });
  const get = async (path: string) => {
    const r = await app.fetch(new Request(`http://127.0.0.1${path}`));
    return [r.status, (await r.json()).status];
  };
  const started = node.startResident("HealthzSlowModel");
  assert.deepEqual(await get("/healthz"), [503, "loading"]);
  assert.deepEqual(await get("/livez"), [200, "loading"]);
  built.open();
  await started;
  assert.deepEqual(await get("/healthz"), [200, "ready"]);
  const draining = node.drain();
  assert.deepEqual(await get("/healthz"), [503, "draining"]);
  assert.deepEqual(await get("/livez"), [200, "draining"]);
  await draining;
});

test("createNodeApp serves no /healthz or /livez without a health option, and a browser page cannot read it", async () => {
  const bare = createNodeApp((f) => f);
  assert.equal((await bare.fetch(new Request("http://127.0.0.1/healthz"))).status, 404);
  assert.equal((await bare.fetch(new Request("http://127.0.0.1/livez"))).status, 404);
  const node = new NodeServer({ name: "probe-n2" });
  const app = createNodeApp(node.handler, { health: () => node.health() });
  const page = await app.fetch(
    new Request("http://127.0.0.1/healthz", { headers: { origin: "https://evil.example" } }),
  );
  assert.equal(page.status, 403);
  await node.drain();
});

for (const runtime of ["bun", "deno"] as const) {
  test(
    `thinkagain serve on ${runtime}: GET /healthz is ready without the token, and 503 draining after SIGTERM`,
    T,
    async () => {
      const n = await startNodeProcess(APP, ["--port", "0", "--name", `hz-${runtime}`, "--drain-ms", "600000"], {
        runtime,
        env: { THINKAGAIN_TOKEN: "probe-token" },
      });
      try {
        const ready = await fetch(`${n.url}/healthz`);
        assert.equal(ready.status, 200);
        const body = await ready.json();
        assert.deepEqual(body, { status: "ready", name: `hz-${runtime}`, protocol: PROTOCOL_VERSION });
        assert.ok(!JSON.stringify(body).includes("probe-token"));
        const rpc = await fetch(`${n.url}/rpc`, { method: "POST", headers: { "content-type": "application/cbor" } });
        assert.equal(rpc.status, 401);
        await rpc.body?.cancel();

        // a call in flight holds the drain: meanwhile the node says it is draining
        await using mesh = new ta.Mesh([new ta.MeshNode(`hz-${runtime}`, { endpoint: n.url.replace("http", "ws") })], {
          token: "probe-token",
        });
        // in an array: a ref returned from an async function would be awaited (it is a thenable)
        const [slow] = await mesh.run(async () => {
          const s = Solo.init();
          await s.echo.go(0);
          return [s.work.go(600_000, 1)];
        });
        assert.ok(await eventually(async () => (await activeCalls(n.url, "probe-token")) === 1, 30_000));
        n.kill("SIGTERM");
        let last = 0;
        assert.ok(
          await eventually(async () => {
            const r = await fetch(`${n.url}/healthz`).catch(() => undefined);
            if (r === undefined) return false;
            last = r.status;
            const h = await r.json();
            return r.status === 503 && h.status === "draining";
          }, 30_000),
          `expected 503 draining while the call runs, last status ${last}`,
        );
        const live = await fetch(`${n.url}/livez`);
        assert.equal(live.status, 200, "a draining node is alive");
        await live.body?.cancel();
        slow.cancel();
        assert.ok(await rejection(slow) instanceof ta.CancelledError);
        assert.equal(await n.cleanExit(), 0);
      } finally {
        n.kill("SIGKILL");
      }
    },
  );
}
