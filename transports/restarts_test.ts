// Service restarts (`restarts: n`) over the in-memory transport: a lost node's instance is made again
// on a live node. The same with real node processes and SIGKILL is in adapters/residents_test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../mod.ts";
import { rejection } from "../core/_test_utils.ts";
import { NodeServer } from "./node_server.ts";
import { serveInMemory } from "./in_memory.ts";

const made: string[][] = [];
const Tally = ta.service(
  { name: "RestartsTestTally", restarts: 1, retries: 1 },
  class {
    n = 0;
    constructor(readonly label: string) {
      made.push([label, ta.currentInstance()!.node]);
    }
    add() {
      return { node: ta.currentInstance()!.node, n: ++this.n, label: this.label };
    }
  },
);

let seq = 0;
function twoNodes() {
  const names = [`restarts-test-${++seq}`, `restarts-test-${++seq}`];
  const nodes = names.map((_, i) => new NodeServer({ name: `n${i + 1}` }));
  const servers = names.map((n, i) => serveInMemory(n, nodes[i].handler));
  const mesh = new ta.Mesh(names.map((n, i) => new ta.MeshNode(`n${i + 1}`, { endpoint: `mem://${n}` })));
  return { nodes, servers, mesh };
}

test("service restarts: when its node is lost, the instance is made again (same arguments, fresh state) on a live node", async () => {
  const { nodes, servers, mesh } = twoNodes();
  try {
    await mesh.run(async () => {
      const t = Tally.init("first");
      const a = await t.add();
      assert.equal((await t.add()).n, 2);
      const home = a.node === "n1" ? 0 : 1;
      await servers[home].close(); // the node is gone: its connection drops
      const b = await t.add();
      assert.notEqual(b.node, a.node, "on the other node");
      assert.deepEqual(
        { n: b.n, label: b.label },
        { n: 1, label: "first" },
        "made again with its arguments; its state lost",
      );
      assert.equal((await t.add()).n, 2, "later calls go to the new instance");
      assert.deepEqual(made.filter(([l]) => l === "first").map(([, n]) => n), [a.node, b.node]);
    });
  } finally {
    await mesh.close();
    for (const n of nodes) await n.drain({ graceMs: 0 });
    for (const s of servers) await s.close();
  }
});

test("service restarts: a lost replica is made again on a third node, so the service keeps its replicas", async () => {
  const Pair = ta.service(
    { name: "RestartsTestPair", replicas: 2, restarts: 1, retries: 1 },
    class {
      where() {
        return ta.currentInstance()!.node;
      }
    },
  );
  const names = [1, 2, 3].map(() => `restarts-test-${++seq}`);
  const nodes = names.map((_, i) => new NodeServer({ name: `n${i + 1}` }));
  const servers = names.map((n, i) => serveInMemory(n, nodes[i].handler));
  // n3 is busy with another instance, so the pair is placed on n1 and n2
  await using mesh = new ta.Mesh(names.map((n, i) => new ta.MeshNode(`n${i + 1}`, { endpoint: `mem://${n}` })));
  try {
    await mesh.run(async () => {
      await Tally.init("busy").add();
      const busy = mesh.stats().instances[0].node;
      const pair = Pair.init();
      const at = new Set(await Promise.all([pair.where.go(), pair.where.go()]));
      assert.equal(at.size, 2);
      assert.ok(!at.has(busy));
      const lost = [...at][0];
      await servers[Number(lost.slice(1)) - 1].close();
      const after = new Set(await Promise.all(Array.from({ length: 6 }, () => pair.where.go())));
      assert.deepEqual([...after].sort(), [...at].filter((n) => n !== lost).concat(busy).sort(), "lost one made again");
    });
  } finally {
    await mesh.close();
    for (const n of nodes) await n.drain({ graceMs: 0 });
    for (const s of servers) await s.close();
  }
});

test("service restarts: past its count, a lost node's calls fail with NodeLostError", async () => {
  const Once = ta.service(
    { name: "RestartsTestNone", retries: 1 },
    class {
      where() {
        return ta.currentInstance()!.node;
      }
    },
  );
  const { nodes, servers, mesh } = twoNodes();
  try {
    await mesh.run(async () => {
      const h = Once.init();
      const at = await h.where();
      await servers[at === "n1" ? 0 : 1].close();
      assert.ok((await rejection(h.where())) instanceof ta.NodeLostError, "no restarts: not made again");
    });
  } finally {
    await mesh.close();
    for (const n of nodes) await n.drain({ graceMs: 0 });
    for (const s of servers) await s.close();
  }
});

test("service restarts must be an integer ≥ 0", () => {
  assert.throws(
    () =>
      ta.service(
        { name: "RestartsTestBad", restarts: -1 },
        class {
          f() {}
        },
      ),
    /service "RestartsTestBad": restarts must be an integer ≥ 0, got number -1/,
  );
});
