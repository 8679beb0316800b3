// The dashboard's server end to end on a real port of this runtime, against a mesh of two
// in-memory nodes: the event stream, the token, the host check, the profile's DAG and trace, and
// listening only while a page is open. The page itself in a browser: browser_test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import * as ta from "../../mod.ts";
import { eventually } from "../../core/_test_utils.ts";
import { createDashboardApp, type DagLayout, serveDashboard } from "./mod.ts";
import { ask, deploy, embed, SnapshotReader, twoNodeMesh } from "./_test_mesh.ts";
import { NodeServer } from "../../server.ts";
import { serveInMemory } from "../../testing.ts";

/** A generous bound for tests that wait on a real server's stream (a busy machine), not a timing claim. */
const T = { timeout: 60_000 };

test(
  "serveDashboard streams snapshots whose nodes and instances match mesh.stats(), and new calls without reconnecting",
  T,
  async () => {
    const { mesh, close } = twoNodeMesh();
    const dashboard = await serveDashboard(mesh, { intervalMs: 50 });
    try {
      const p = await deploy(mesh);
      const res = await fetch(`${dashboard.url}/events`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-type") ?? "", /text\/event-stream/);
      const stream = new SnapshotReader(res);
      await stream.next(); // listening from here on
      await ask(mesh, p, "What is ML?");
      await ask(mesh, p, "Why?");
      let snap = await stream.until((s) => s.ops.find((o) => o.name === "DashGenerator.generate")?.completed === 2);
      const stats = mesh.stats();
      assert.deepEqual(
        snap.nodes.map((n) => [n.name, n.endpoint, n.gpus, n.cpus]),
        stats.nodes.map((n) => [n.name, n.endpoint, n.gpus, n.cpus]),
      );
      assert.deepEqual(snap.instances.map(({ id: _, ...i }) => i), stats.instances);
      assert.deepEqual(snap.instances.map((i) => [i.service, i.calls]), [["DashRetriever", 2], ["DashGenerator", 2]]);
      const byName = new Map(snap.ops.map((o) => [o.name, o]));
      assert.equal(byName.get("dashEmbed")?.calls, 2);
      assert.equal(byName.get("DashRetriever.retrieve")?.completed, 2);
      assert.equal(byName.get("DashGenerator.generate")?.kind, "method");
      assert.equal(snap.series.reduce((a, b) => a + b, 0), 6, "six calls settled in the last minute");
      assert.ok(byName.get("dashEmbed")!.window.p95 > 0);

      // one more call shows up on the same stream
      await ask(mesh, p, "And now?");
      snap = await stream.until((s) => s.ops.find((o) => o.name === "DashGenerator.generate")?.completed === 3);
      assert.equal(snap.instances.find((i) => i.service === "DashGenerator")?.calls, 3);
      await stream.cancel();
    } finally {
      await dashboard.close();
      await close();
    }
  },
);

test("serveDashboard listens to the task event stream only while a page is connected", T, async () => {
  await using mesh = new ta.Mesh([new ta.MeshNode("solo")]);
  await using dashboard = await serveDashboard(mesh, { intervalMs: 20, lingerMs: 0 });
  assert.equal(dashboard.app.listening, false);
  await mesh.run(() => embed.go("before"));
  const stream = new SnapshotReader(await fetch(`${dashboard.url}/events`));
  const first = await stream.next();
  assert.equal(dashboard.app.listening, true);
  assert.equal(dashboard.app.clients, 1);
  assert.deepEqual(first.ops, [], "what ran before the page opened is not counted");
  await mesh.run(() => embed.go("during"));
  await stream.until((s) => s.ops[0]?.completed === 1);
  await stream.cancel();
  assert.ok(await eventually(() => !dashboard.app.listening, 10_000), "stops listening once the page closed");
  assert.equal(dashboard.app.clients, 0);
});

test(
  "serveDashboard keeps listening for lingerMs after the last page closed, so a reload keeps the counts",
  T,
  async () => {
    await using mesh = new ta.Mesh([new ta.MeshNode("solo")]);
    await using dashboard = await serveDashboard(mesh, { intervalMs: 20, lingerMs: 60_000 });
    const first = new SnapshotReader(await fetch(`${dashboard.url}/events`));
    await first.next();
    await mesh.run(() => embed.go("x"));
    await first.until((s) => s.ops[0]?.completed === 1);
    await first.cancel();
    assert.ok(await eventually(() => dashboard.app.clients === 0, 10_000));
    assert.equal(dashboard.app.listening, true);
    const second = new SnapshotReader(await fetch(`${dashboard.url}/events`));
    assert.equal((await second.next()).ops[0]?.completed, 1, "the reload sees the call made before it");
    await second.cancel();
  },
);

test("a token-protected mesh's dashboard serves the page's shell but no data without the token", T, async () => {
  const { mesh, close } = twoNodeMesh({ token: "s3cret" });
  const dashboard = await serveDashboard(mesh, { intervalMs: 50 });
  try {
    const page = await fetch(dashboard.url);
    assert.equal(page.status, 200);
    const html = await page.text();
    assert.match(html, /Token needed/);
    assert.doesNotMatch(html, /"n1"|s3cret/, "the shell carries no data");
    assert.match(page.headers.get("content-security-policy") ?? "", /default-src 'none'/);
    for (const path of ["/api/snapshot", "/events", "/api/dag", "/trace.json"]) {
      const refused = await fetch(`${dashboard.url}${path}`);
      assert.equal(refused.status, 401, path);
      assert.match(await refused.text(), /needs the mesh's token/);
      const wrong = await fetch(`${dashboard.url}${path}?token=nope`);
      assert.equal(wrong.status, 401, `${path} with a wrong token`);
      await wrong.body?.cancel();
    }
    const byHeader = await fetch(`${dashboard.url}/api/snapshot`, { headers: { authorization: "Bearer s3cret" } });
    assert.equal(byHeader.status, 200);
    assert.equal((await byHeader.json()).nodes.length, 2);
    const stream = new SnapshotReader(await fetch(`${dashboard.url}/events?token=s3cret`));
    assert.equal((await stream.next()).mesh, mesh.name);
    await stream.cancel();
  } finally {
    await dashboard.close();
    await close();
  }
});

test("the dashboard refuses a Host name other than an IP address, localhost or the one it listens on", T, async () => {
  await using mesh = new ta.Mesh([new ta.MeshNode("solo")]);
  const dash = createDashboardApp(mesh, { listenHost: "dash.internal" });
  const get = (host: string) => dash.app.fetch(new Request("http://x/api/snapshot", { headers: { host } }));
  assert.equal((await get("evil.example:8080")).status, 403);
  assert.match(await (await get("evil.example")).text(), /does not answer to the host "evil.example"/);
  for (const ok of ["127.0.0.1:7071", "localhost:7071", "[::1]:7071", "dash.internal:7071"]) {
    assert.equal((await get(ok)).status, 200, ok);
  }
  const open = createDashboardApp(mesh, { allowHosts: ["*"] });
  assert.equal((await open.app.fetch(new Request("http://evil.example/api/snapshot"))).status, 200);
  dash.close();
  open.close();
});

test("the dashboard serves the last profile's DAG with its critical path, and its Chrome trace", T, async () => {
  const { mesh, close } = twoNodeMesh();
  const dashboard = await serveDashboard(mesh);
  try {
    const p = await deploy(mesh);
    {
      using _profile = ta.profile();
      await ask(mesh, p, "profiled");
    }
    const res = await fetch(`${dashboard.url}/api/dag`);
    assert.equal(res.status, 200);
    const dag = await res.json() as DagLayout;
    // the nodes run in this process: the profile also holds their own task of each method call
    const driver = dag.tasks.filter((t) => t.kind === "op" || t.executor === "remote");
    assert.deepEqual(driver.map((t) => t.name).sort(), [
      "DashGenerator.generate",
      "DashRetriever.retrieve",
      "dashEmbed",
    ]);
    const placed = new Map(mesh.stats().instances.map((i) => [i.service, i.node]));
    for (const t of driver.filter((t) => t.kind === "method")) {
      assert.equal(t.node, placed.get(t.name.split(".")[0]), `${t.name} names the node it was sent to`);
    }
    const gen = driver.find((t) => t.name === "DashGenerator.generate")!;
    const emb = driver.find((t) => t.name === "dashEmbed")!;
    assert.equal(dag.layers, 3, "embed → retrieve → generate");
    assert.equal(gen.layer, 2);
    assert.ok(gen.deps.includes(emb.id));
    assert.ok(gen.critical && dag.critical.at(-1) === gen.id);
    const snap = await (await fetch(`${dashboard.url}/api/snapshot`)).json();
    assert.equal(snap.profile.tasks, dag.tasks.length);
    assert.equal(snap.profile.active, false);
    const trace = await fetch(`${dashboard.url}/trace.json`);
    assert.match(trace.headers.get("content-disposition") ?? "", /attachment/);
    const events = (await trace.json()).traceEvents as { ph: string }[];
    assert.equal(events.filter((e) => e.ph === "X").length, dag.tasks.length);
  } finally {
    await dashboard.close();
    await close();
  }
});

test("the dashboard shows the trace id of the last traced run while tracing is on", T, async () => {
  const exporter = new InMemorySpanExporter();
  ta.enableTracing({
    tracerProvider: new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }),
  });
  try {
    await using mesh = new ta.Mesh([new ta.MeshNode("solo")]);
    await using dashboard = await serveDashboard(mesh, { intervalMs: 20 });
    const stream = new SnapshotReader(await fetch(`${dashboard.url}/events`));
    assert.equal((await stream.next()).tracing.enabled, true);
    await mesh.run(() => embed.go("traced"));
    const snap = await stream.until((s) => s.tracing.traceId !== undefined);
    const span = exporter.getFinishedSpans().find((s) => s.name === "op dashEmbed");
    assert.ok(span);
    assert.equal(snap.tracing.traceId, span.spanContext().traceId);
    await stream.cancel();
  } finally {
    ta.disableTracing();
  }
});

test("createDashboardApp refuses what is not a mesh, and intervals out of range, saying what it got", () => {
  assert.throws(() => createDashboardApp(null as never), /expects a Mesh \(or an object with stats\(\)\), got null/);
  const mesh = { stats: () => ({ name: "m", closed: false, nodes: [], instances: [] }) };
  assert.throws(() => createDashboardApp(mesh, { intervalMs: 0 }), /intervalMs must be a number ≥ 10, got number 0/);
  assert.throws(() => createDashboardApp(mesh, { lingerMs: -1 }), RangeError);
});

test("serveDashboard refuses an unknown option, naming the closest, and options of the wrong type", T, async () => {
  await using mesh = new ta.Mesh([new ta.MeshNode("solo")]);
  const refused = (options: unknown, message: RegExp) =>
    assert.rejects(serveDashboard(mesh, options as never), (e: unknown) => {
      assert.ok(e instanceof TypeError, `expected a TypeError, got ${e}`);
      assert.match((e as Error).message, message);
      return true;
    });
  await refused({ prot: 7071 }, /serveDashboard: unknown option "prot"; did you mean "port"\?/);
  await refused({ allowHosts: "x" }, /serveDashboard: allowHosts must be an array of host names, got the string "x"/);
  await refused({ token: 5 }, /serveDashboard: token must be a string, got number 5/);
  await refused(null, /serveDashboard: options must be an object, got null/);
  const stats = () => ({ name: "m", closed: false, nodes: [], instances: [] });
  assert.throws(
    () => createDashboardApp({ stats }, { port: 1 } as never),
    /createDashboardApp: unknown option "port"/,
  );
});

test("closing a dashboard ends its open streams and stops listening", T, async () => {
  await using mesh = new ta.Mesh([new ta.MeshNode("solo")]);
  const dashboard = await serveDashboard(mesh, { intervalMs: 20, lingerMs: 60_000 });
  const stream = new SnapshotReader(await fetch(`${dashboard.url}/events`));
  await stream.next();
  await dashboard.close();
  await assert.rejects(stream.until(() => false, 1_000_000), /ended|closed|abort|terminated|reset|error/i);
  assert.equal(dashboard.app.listening, false);
});

test(
  "a flood of tiny calls is recorded in part, within the dashboard's budget, and its counts estimated",
  T,
  async () => {
    await using mesh = new ta.Mesh([new ta.MeshNode("solo")]);
    await using dashboard = await serveDashboard(mesh, { intervalMs: 20, maxOverhead: 0.001 });
    const stream = new SnapshotReader(await fetch(`${dashboard.url}/events`));
    await stream.next();
    const N = 20_000;
    await mesh.run(() => Promise.all(Array.from({ length: N }, (_, i) => embed.go(`q${i}`))));
    const snap = dashboard.app.snapshot();
    await stream.cancel();
    const row = snap.ops.find((o) => o.name === "dashEmbed")!;
    assert.ok(snap.recording.share < 0.5, `a share of the calls was recorded: ${snap.recording.share}`);
    assert.equal(snap.recording.maxOverhead, 0.001);
    assert.equal(row.estimated, true);
    assert.ok(Math.abs(row.calls - N) <= N * 0.1, `estimated calls ${row.calls} of ${N}`);
    assert.ok(Math.abs(row.completed - N) <= N * 0.1, `estimated completions ${row.completed} of ${N}`);
    assert.equal(row.inFlight, 0);
  },
);

test(
  "a mesh's dashboard counts only the calls submitted in its mesh while a flood runs outside it",
  T,
  async () => {
    const mine = ta.op(async function dashMine(i: number) {
      return i;
    });
    const other = ta.op(async function dashOther(i: number) {
      return i;
    });
    await using mesh = new ta.Mesh([new ta.MeshNode("solo")]);
    await using dashboard = await serveDashboard(mesh, { intervalMs: 20, lingerMs: 0, maxOverhead: 0.001 });
    const stream = new SnapshotReader(await fetch(`${dashboard.url}/events`));
    await stream.next();
    for (let round = 0; round < 20; round++) {
      await mesh.run(() => Promise.all(Array.from({ length: 50 }, (_, i) => mine.go(i))));
      await Promise.all(Array.from({ length: 5_000 }, (_, i) => other.go(i)));
    }
    const snap = dashboard.app.snapshot();
    await stream.cancel();
    assert.ok(snap.recording.share < 0.5, `a share of the calls was recorded: ${snap.recording.share}`);
    assert.deepEqual(snap.ops.map((o) => [o.name, o.calls, o.completed]), [["dashMine", 1_000, 1_000]]);
  },
);

test(
  "the dashboard lists a task the mesh's watchdog reported stuck, with its explanation, until it settles",
  T,
  async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const hang = ta.op(async function dashStuckOp() {
      await held;
      return 7;
    });
    await using mesh = new ta.Mesh([new ta.MeshNode("solo")], { stuckAfterMs: 20, onStuck: () => {} });
    await using dashboard = await serveDashboard(mesh, { intervalMs: 20 });
    const stream = new SnapshotReader(await fetch(`${dashboard.url}/events`));
    try {
      const first = await stream.next();
      assert.deepEqual(first.stuck, { tasks: [], reported: 0 });
      const { ref } = await mesh.run(() => ({ ref: hang.go() }));
      const snap = await stream.until((s) => s.stuck.tasks.length > 0);
      assert.equal(snap.stuck.reported, 1);
      const [row] = snap.stuck.tasks;
      assert.deepEqual([row.id, row.name, row.waitingFor], [ref.id, "dashStuckOp", "running"]);
      assert.match(row.explanation, new RegExp(`^${ref.id.replace("#", "\\#")}: running `));
      // the report is not a call: the op has one call, in flight
      assert.deepEqual(snap.ops.map((o) => [o.name, o.calls, o.inFlight]), [["dashStuckOp", 1, 1]]);
      release();
      assert.equal(await ref, 7);
      const after = await stream.until((s) => s.stuck.tasks.length === 0);
      assert.equal(after.stuck.reported, 1);
    } finally {
      release();
      await stream.cancel();
    }
  },
);

test("the dashboard's snapshot says which node is lost and which instances are, as mesh.stats() does", T, async () => {
  const Pair = ta.service(
    { name: "DashLostPair", replicas: 2 },
    class DashLostPair {
      where(): string {
        return ta.currentInstance()!.node;
      }
    },
  );
  const up = new NodeServer({ name: "up" }), gone = new NodeServer({ name: "gone" });
  const upServer = serveInMemory("dash-lost-up", up.handler),
    goneServer = serveInMemory("dash-lost-gone", gone.handler);
  const mesh = new ta.Mesh([
    new ta.MeshNode("up", { endpoint: upServer.endpoint }),
    new ta.MeshNode("gone", { endpoint: goneServer.endpoint }),
  ]);
  try {
    const app = createDashboardApp(mesh);
    await mesh.run(async () => {
      const p = Pair.init();
      assert.deepEqual((await Promise.all([p.where.go(), p.where.go()])).sort(), ["gone", "up"]);
      const before = app.snapshot();
      assert.deepEqual(before.nodes.map((n) => [n.name, n.lost]), [["up", false], ["gone", false]]);
      await goneServer.close(); // its connection drops: the mesh loses the node
      await p.where.go().catch(() => undefined); // the link knows it by now
    });
    const snap = app.snapshot();
    assert.deepEqual(snap.nodes.map((n) => [n.name, n.lost]), [["up", false], ["gone", true]]);
    assert.deepEqual(Object.fromEntries(snap.instances.map((i) => [i.node, i.state])), { up: "ready", gone: "lost" });
  } finally {
    await mesh.close();
    await upServer.close();
    await up.drain({ graceMs: 0 });
    await gone.drain({ graceMs: 0 });
  }
});

test("the dashboard's snapshot gives each instance an id of its own, also two init()s of one service on one node", async () => {
  const Sess = ta.service(
    { name: "DashIdsSess" },
    class DashIdsSess {
      n = 0;
      add(): number {
        return ++this.n;
      }
    },
  );
  await using mesh = new ta.Mesh([new ta.MeshNode("solo", { cpus: 4 })]);
  const app = createDashboardApp(mesh);
  try {
    await mesh.run(async () => {
      const a = Sess.init(), b = Sess.init();
      for (let i = 0; i < 6; i++) await a.add();
      await b.add();
    });
    const snap = app.snapshot();
    assert.deepEqual(snap.instances.map((i) => [i.id, i.replica, i.node, i.calls]), [
      ["DashIdsSess/0@solo", 0, "solo", 6],
      ["DashIdsSess/0@solo#2", 0, "solo", 1],
    ]);
  } finally {
    app.close();
  }
});

test("the dashboard's snapshot marks lost only the instances on the lost node, each under its own id", T, async () => {
  const Solo = ta.service(
    { name: "DashLostSolo" },
    class DashLostSolo {
      where(): string {
        return ta.currentInstance()!.node;
      }
    },
  );
  const up = new NodeServer({ name: "up" }), gone = new NodeServer({ name: "gone" });
  const upServer = serveInMemory("dash-ids-up", up.handler),
    goneServer = serveInMemory("dash-ids-gone", gone.handler);
  const mesh = new ta.Mesh([
    new ta.MeshNode("up", { endpoint: upServer.endpoint }),
    new ta.MeshNode("gone", { endpoint: goneServer.endpoint }),
  ]);
  try {
    const app = createDashboardApp(mesh);
    await mesh.run(async () => {
      // four instances of one service, replica 0 each: two on each node (placement spreads them)
      const hs = [Solo.init(), Solo.init(), Solo.init(), Solo.init()];
      assert.deepEqual((await Promise.all(hs.map((h) => h.where.go()))).sort(), ["gone", "gone", "up", "up"]);
      await goneServer.close(); // its connection drops: the mesh loses the node
      await Promise.all(hs.map((h) => h.where.go().catch(() => undefined))); // the link knows it by now
    });
    const snap = app.snapshot();
    assert.deepEqual(snap.instances.map((i) => `${i.id} ${i.state}`).sort(), [
      "DashLostSolo/0@gone lost",
      "DashLostSolo/0@gone#2 lost",
      "DashLostSolo/0@up ready",
      "DashLostSolo/0@up#2 ready",
    ]);
    app.close();
  } finally {
    await mesh.close();
    await upServer.close();
    await up.drain({ graceMs: 0 });
    await gone.drain({ graceMs: 0 });
  }
});

test("the dashboard's page is served as ASCII, its HTML text with no backslash-u escape (Bun keeps those of String.raw)", async () => {
  await using mesh = new ta.Mesh([new ta.MeshNode("solo")]);
  const app = createDashboardApp(mesh);
  try {
    const res = await app.app.fetch(new Request("http://127.0.0.1/"));
    const page = await res.text();
    // (a runtime's transpiler may rewrite a non-ASCII character of the page's source as an escape)
    assert.ok([...page].every((c) => c.charCodeAt(0) < 0x80), "ASCII only: the same bytes on every runtime");
    const html = page.slice(page.indexOf("<body>"), page.indexOf("<script"));
    assert.doesNotMatch(html, /\\u[0-9a-fA-F]{4}/, "no escape where the browser shows it as it is");
    assert.match(html, /<b id="mesh-name">&hellip;<\/b>/);
  } finally {
    app.close();
  }
});
