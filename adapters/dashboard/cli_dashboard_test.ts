// `thinkagain serve … --dashboard` in a real node process, and NodeServer.stats() (what a node's
// dashboard shows) in this one.
import { test } from "node:test";
import { request as httpRequest } from "node:http";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import * as ta from "../../mod.ts";
import { NodeServer } from "../../server.ts";
import { serveInMemory } from "../../testing.ts";
import { parseServeArgs } from "../../cli_serve.ts";
import { startNodeProcess } from "../_test_nodes.ts";
import { Generator, Retriever } from "../../examples/distributed_app.ts";
import { SnapshotReader } from "./_test_mesh.ts";

const APP = fileURLToPath(new URL("../../examples/distributed_app.ts", import.meta.url));

/** The status of GET `url` sent with the header `Host: host` (fetch may not set it). */
function statusWithHost(url: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers: { host } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", reject);
    req.end();
  });
}

test("thinkagain serve --dashboard serves the node's page, behind its token, with the instances drivers created", {
  timeout: 120_000,
}, async () => {
  const node = await startNodeProcess(
    APP,
    ["--port", "0", "--name", "n1", "--gpus", "2", "--cpus", "4", "--dashboard", "--allow-host", "nodes.example"],
    {
      env: { THINKAGAIN_TOKEN: "s3cret" },
    },
  );
  try {
    const m = /thinkagain node n1: dashboard on (http:\/\/[\d.]+:\d+)/.exec(node.output());
    assert.ok(m, `the node prints where its dashboard is:\n${node.output()}`);
    const url = m[1];
    const page = await fetch(url);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /thinkagain dashboard/);
    const refused = await fetch(`${url}/api/snapshot`);
    assert.equal(refused.status, 401, "the node's token protects its dashboard");
    await refused.body?.cancel();
    // the names the node answers to (--allow-host), its dashboard answers to as well
    for (const [host, status] of [["nodes.example", 200], ["evil.example", 403]] as const) {
      assert.equal(await statusWithHost(`${url}/api/snapshot?token=s3cret`, host), status, host);
    }

    const stream = new SnapshotReader(await fetch(`${url}/events?token=s3cret`));
    const first = await stream.next();
    assert.deepEqual(first.nodes, [{
      name: "n1",
      gpus: { total: 2, free: 2 },
      cpus: { total: 4, free: 4 },
      lost: false,
    }]);
    await using mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: node.url, gpus: 2, cpus: 4 })], {
      token: "s3cret",
    });
    await mesh.run(async () => {
      const r = Retriever.init();
      const g = Generator.init();
      await g.generate.go("q", r.retrieve.go("q", 2));
      await g.generate.go("q2", []);
    });
    const snap = await stream.until((s) => s.instances.find((i) => i.service === "Generator")?.calls === 2);
    assert.deepEqual(snap.instances.map((i) => [i.service, i.node, i.calls]).sort(), [
      ["Generator", "n1", 2],
      ["Retriever", "n1", 1],
    ]);
    assert.deepEqual(snap.nodes[0].gpus, { total: 2, free: 1 }, "the Generator holds one GPU");
    assert.deepEqual(snap.nodes[0].cpus, { total: 4, free: 3 }, "the Retriever holds one core");
    const ops = await stream.until((s) => s.ops.find((o) => o.name === "Generator.generate")?.completed === 2);
    assert.equal(ops.ops.find((o) => o.name === "Retriever.retrieve")?.completed, 1);
    await stream.cancel();
  } finally {
    node.kill();
    assert.equal(await node.cleanExit(), 0, node.output());
  }
});

test("thinkagain serve parses --dashboard with an optional inline port, and refuses a bad one", () => {
  assert.equal(parseServeArgs(["app.ts"], {}).dashboard, undefined);
  assert.equal(parseServeArgs(["app.ts", "--dashboard"], {}).dashboard, 0);
  assert.equal(parseServeArgs(["--dashboard", "app.ts"], {}).module, "app.ts", "a following word is the module");
  assert.equal(parseServeArgs(["app.ts", "--dashboard=7071"], {}).dashboard, 7071);
  assert.throws(
    () => parseServeArgs(["app.ts", "--dashboard=x"], {}),
    /--dashboard needs an integer from 0 to 65535, got "x"/,
  );
  assert.throws(() => parseServeArgs(["app.ts", "--dashboard=70000"], {}), /from 0 to 65535, got "70000"/);
});

test("NodeServer.stats reports the node's free GPUs and cores and the instances created on it", async () => {
  const node = new NodeServer({ name: "n1", gpus: 2, cpus: 8 });
  const server = serveInMemory("dashboard-node-stats", node.handler);
  try {
    await using mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: server.endpoint, gpus: 2, cpus: 8 })]);
    await mesh.run(async () => {
      const g = Generator.init();
      const r = Retriever.init();
      await Promise.all([g.generate.go("a", []), g.generate.go("b", []), r.retrieve.go("c", 1)]);
    });
    const s = node.stats();
    assert.deepEqual(s.nodes, [{
      name: "n1",
      endpoint: undefined,
      gpus: { total: 2, free: 1 },
      cpus: { total: 8, free: 7 },
    }]);
    assert.deepEqual(
      s.instances.map((i) => ({ service: i.service, calls: i.calls, outstanding: i.outstanding, gpus: i.gpus.length })),
      [
        { service: "Generator", calls: 2, outstanding: 0, gpus: 1 },
        { service: "Retriever", calls: 1, outstanding: 0, gpus: 0 },
      ],
    );
    await mesh.close();
    assert.ok(node.stats().instances.length === 0, "destroyed with the driver's mesh");
    assert.equal(node.stats().nodes[0].gpus.free, 2);
  } finally {
    await server.close();
    await node.drain({ graceMs: 50 });
  }
});
