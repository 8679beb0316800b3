// Nodes that come and go while a mesh runs (mesh.addNode / mesh.removeNode, what discovery calls):
// placement on a node that joined, NodeLostError and fail-over for one that left. Nodes are
// NodeServers behind the in-memory transport (encoded frames), in this process.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../mod.ts";
import { eventually, gate, rejection } from "../core/_test_utils.ts";
import { serveInMemory } from "./in_memory.ts";
import { NodeServer } from "./node_server.ts";
import { meshRuntime } from "../core/mesh.ts";
import { collectNow } from "../core/_runtime.ts";
import { handleWire } from "./handle_wire.ts";
import { meshLink } from "./link_table.ts";

let seq = 0;
/** Longer than the bounds on waits below, so that a hang fails the test instead of the run. */
const T = { timeout: 60_000 };

/** A node process stand-in: a NodeServer on a fresh in-memory endpoint. */
function startNode(name: string, options: { cpus?: number } = {}) {
  const endpoint = `mem://membership-${name}-${++seq}`;
  const node = new NodeServer({ name, ...options });
  const server = serveInMemory(endpoint.slice("mem://".length), node.handler);
  return {
    endpoint,
    node,
    meshNode: (declared: { cpus?: number } = {}) => new ta.MeshNode(name, { endpoint, ...declared }),
    async stop() {
      await server.close();
      await node.drain({ graceMs: 0 });
    },
  };
}

/** Holds its calls until the test opens the gate. */
let held = gate();
const Where = ta.service(
  { name: "MembershipWhere", cpus: 1 },
  class MembershipWhere {
    where(): string {
      return ta.currentInstance()!.node;
    }
    async hold(): Promise<string> {
      await held.promise;
      return ta.currentInstance()!.node;
    }
  },
);

const Spread = ta.service(
  { name: "MembershipSpread", replicas: 2, maxConcurrency: 100 },
  class MembershipSpread {
    where(): string {
      return ta.currentInstance()!.node;
    }
    async hold(): Promise<string> {
      await held.promise;
      return ta.currentInstance()!.node;
    }
  },
);

test("Mesh.addNode: a node that joins after the mesh started is placed on by new init()s", T, async () => {
  const a = startNode("a"), b = startNode("b");
  // each node fits one instance of a service that needs a CPU core
  const mesh = new ta.Mesh([a.meshNode({ cpus: 1 })]);
  try {
    const first = await mesh.run(async () => {
      const w = Where.init();
      return await w.where.go();
    });
    assert.equal(first, "a");
    const full = await rejection(mesh.run(() => Where.init()));
    assert.ok(full instanceof ta.PlacementError, `the mesh is full before b joins, got ${full}`);
    mesh.addNode(b.meshNode({ cpus: 1 }));
    assert.deepEqual(mesh.nodes.map((n) => n.name), ["a", "b"]);
    const second = await mesh.run(async () => await Where.init().where.go());
    assert.equal(second, "b", "the new init() went to the node that joined");
    assert.deepEqual(mesh.stats().instances.map((i) => i.node).sort(), ["a", "b"]);
  } finally {
    await mesh.close();
    await a.stop();
    await b.stop();
  }
});

test(
  "Mesh.removeNode: calls waiting on a node that left fail with NodeLostError naming it, new init()s avoid it",
  T,
  async () => {
    held = gate();
    const a = startNode("a"), b = startNode("b");
    const mesh = new ta.Mesh([a.meshNode({ cpus: 1 }), b.meshNode({ cpus: 1 })]);
    try {
      const [onB, w] = await mesh.run(async () => {
        Where.init(); // fills a (placement takes the first of equals)
        const w = Where.init();
        return [await w.where.go(), w] as const;
      });
      assert.equal(onB, "b");
      const [waiting] = await mesh.run(() => [w.hold.go()]);
      assert.ok(await eventually(() => b.node.activeCalls === 1, 10_000), "the call reached b before b leaves");
      assert.equal(mesh.removeNode("b", { reason: "its pod was deleted" }), true);
      const lost = await rejection(waiting);
      assert.ok(lost instanceof ta.NodeLostError, `expected NodeLostError, got ${lost}`);
      assert.equal(lost.node, "b");
      assert.match(lost.message, /Node "b" was lost: its pod was deleted/);
      // a later call of the replica on b has no sibling: it fails the same way, never reaching b again
      const later = await mesh.run(() => rejection(w.where.go()));
      assert.ok(later instanceof ta.NodeLostError, `expected NodeLostError, got ${later}`);
      assert.deepEqual(mesh.nodes.map((n) => n.name), ["a"]);
      assert.deepEqual(mesh.stats().nodes.map((n) => n.name), ["a"]);
      // a frees its core: the next init() goes there, never to b
      const c = startNode("c");
      mesh.addNode(c.meshNode({ cpus: 1 }));
      assert.equal(await mesh.run(async () => await Where.init().where.go()), "c");
      assert.equal(mesh.removeNode("b"), false, "already removed");
      held.open();
      await c.stop();
    } finally {
      held.open();
      await mesh.close();
      await a.stop();
      await b.stop();
    }
  },
);

test("Mesh.removeNode: a replicated service's calls fail over to the replica on a live node", T, async () => {
  held = gate();
  const a = startNode("a"), b = startNode("b");
  const mesh = new ta.Mesh([a.meshNode(), b.meshNode()]);
  try {
    const s = await mesh.run(() => Spread.init());
    assert.deepEqual(mesh.stats().instances.map((i) => i.node).sort(), ["a", "b"], "one replica on each node");
    // one call held on each replica (calls go to the least loaded)
    const holds = await mesh.run(() => [s.hold.go(), s.hold.go()]);
    assert.ok(await eventually(() => a.node.activeCalls === 1 && b.node.activeCalls === 1, 10_000));
    mesh.removeNode("b", { reason: "gone" });
    assert.deepEqual(mesh.stats().instances.map((i) => i.node), ["a"], "the replica on b left the stats with b");
    const outcomes = holds.map((h) => Promise.resolve(h).then((value) => ({ value }), (error) => ({ error })));
    const first = await Promise.race(outcomes);
    assert.ok("error" in first, "the call held on b failed first");
    assert.ok(first.error instanceof ta.NodeLostError && first.error.node === "b", `got ${first.error}`);
    // b's replica now has no call outstanding, a's has one: new calls are routed to b's and fail over
    const after = await mesh.run(() => Promise.all([s.where.go(), s.where.go(), s.where.go()]));
    assert.deepEqual(after, ["a", "a", "a"], "every call went to the replica on the live node");
    held.open();
    const values = (await Promise.all(outcomes)).flatMap((o) => ("value" in o ? [o.value] : []));
    assert.deepEqual(values, ["a"], "the call held on a finished");
  } finally {
    held.open();
    await mesh.close();
    await a.stop();
    await b.stop();
  }
});

test(
  "Mesh.removeNode with drain: calls already sent finish, nothing new goes there, removing it again drops it",
  T,
  async () => {
    held = gate();
    const a = startNode("a"), b = startNode("b");
    const mesh = new ta.Mesh([a.meshNode({ cpus: 1 }), b.meshNode({ cpus: 1 })]);
    try {
      const w = await mesh.run(async () => {
        Where.init(); // fills a
        const w = Where.init();
        assert.equal(await w.where.go(), "b");
        return w;
      });
      const [waiting] = await mesh.run(() => [w.hold.go()]);
      assert.ok(await eventually(() => b.node.activeCalls === 1, 10_000), "the call reached b");
      assert.equal(mesh.removeNode("b", { drain: true, reason: "its pod is stopping" }), true);
      assert.deepEqual(mesh.nodes.map((n) => n.name), ["a"], "nothing new is placed on b");
      assert.deepEqual(mesh.stats().instances.map((i) => i.node), ["a"], "b's instance left the stats with b");
      assert.ok((await rejection(mesh.run(() => Where.init()))) instanceof ta.PlacementError);
      held.open();
      assert.equal(await waiting, "b", "the call sent before finished on the draining node");
      assert.equal(mesh.removeNode("b", { drain: true }), false, "already draining");
      assert.equal(mesh.removeNode("b", { reason: "its pod is gone" }), true, "now it is gone");
      const later = await mesh.run(() => rejection(w.where.go()));
      assert.ok(later instanceof ta.NodeLostError && later.node === "b", `got ${later}`);
      assert.match(later.message, /its pod is gone/);
      assert.equal(mesh.removeNode("b"), false);
      assert.throws(() => mesh.removeNode("a", { drain: "yes" } as never), /drain must be a boolean/);
    } finally {
      held.open();
      await mesh.close();
      await a.stop();
      await b.stop();
    }
  },
);

/**
 * What `mesh` keeps while it lives (private fields, read for the test): its deployments, the nodes
 * it waits for to drain, and what its scope runs when it closes (an Effect Scope's state: empty, one
 * finalizer, or a map of them).
 */
function records(mesh: ta.Mesh): { deployments: number; leaving: number; onClose: number } {
  const rt = meshRuntime(mesh) as unknown as {
    deployments: unknown[];
    leaving: Map<string, unknown>;
    scope: { state: { _tag: string; finalizers?: Map<unknown, unknown> } };
  };
  const state = rt.scope.state;
  const onClose = state._tag !== "Open" ? 0 : state.finalizers?.size ?? 1;
  return { deployments: rt.deployments.length, leaving: rt.leaving.size, onClose };
}

test("Mesh.removeNode lets the removed node's link be collected while the mesh lives on", T, async () => {
  const x = startNode("x");
  const mesh = new ta.Mesh([new ta.MeshNode("local", { cpus: 1 })]);
  try {
    const node = x.meshNode();
    mesh.addNode(node);
    let ref: WeakRef<object> | undefined;
    (() => {
      ref = new WeakRef(meshLink(meshRuntime(mesh), node, handleWire));
    })();
    assert.equal(mesh.removeNode("x"), true);
    const turn = () => new Promise((r) => setTimeout(r, 0));
    for (let i = 0; i < 100; i++) {
      await turn(); // (a deref() keeps what it found alive until the turn ends)
      collectNow();
      await turn();
      if (ref!.deref() === undefined) break;
    }
    assert.equal(ref!.deref(), undefined, "the dropped NodeLink is still held (by the mesh's close)");
  } finally {
    await mesh.close();
    await x.stop();
  }
});

test("Mesh.addNode and removeNode: what a mesh keeps does not grow with the nodes that came and went", T, async () => {
  const a = startNode("a"), x = startNode("x");
  const mesh = new ta.Mesh([a.meshNode({ cpus: 1 })]);
  try {
    const kept = await mesh.run(async () => {
      const w = Where.init(); // fills a: each cycle's instance goes to x
      assert.equal(await w.where.go(), "a");
      return w;
    });
    const cycle = async (i: number) => {
      mesh.addNode(x.meshNode({ cpus: 1 }));
      const w = await mesh.run(async () => {
        const w = Where.init();
        assert.equal(await w.where.go(), "x");
        return w;
      });
      // every other node drains first, then is removed for good
      if (i % 2 === 1) assert.equal(mesh.removeNode("x", { drain: true }), true);
      assert.equal(mesh.removeNode("x"), true);
      const lost = await mesh.run(() => rejection(w.where.go()));
      assert.ok(lost instanceof ta.NodeLostError, `a call after x left: ${lost}`);
    };
    await cycle(0);
    await cycle(1);
    const after2 = records(mesh);
    for (let i = 2; i < 8; i++) await cycle(i);
    assert.deepEqual(records(mesh), after2, "the mesh keeps something of every node that left");
    assert.equal(await mesh.run(() => kept.where.go()), "a", "the instance on a node still there serves on");
    assert.deepEqual(mesh.stats().instances.map((i) => i.node), ["a"]);
  } finally {
    await mesh.close();
    await a.stop();
    await x.stop();
  }
});

test("Mesh.removeNode: a service with restarts left whose only node left is made again on a live node", T, async () => {
  const Again = ta.service(
    { name: "MembershipAgain", cpus: 1, restarts: 1, retries: 1 },
    class MembershipAgain {
      where(): string {
        return ta.currentInstance()!.node;
      }
    },
  );
  const a = startNode("a"), x = startNode("x");
  const mesh = new ta.Mesh([x.meshNode({ cpus: 1 })]);
  try {
    const h = await mesh.run(async () => {
      const h = Again.init();
      assert.equal(await h.where.go(), "x");
      return h;
    });
    mesh.addNode(a.meshNode({ cpus: 1 }));
    assert.equal(mesh.removeNode("x"), true);
    assert.equal(records(mesh).deployments, 0, "its only node left");
    assert.equal(await mesh.run(() => h.where.go()), "a", "made again on a");
    assert.deepEqual(mesh.stats().instances.map((i) => i.node), ["a"], "the mesh has it again");
    assert.equal(records(mesh).deployments, 1);
    assert.equal(a.node.stats().instances.length, 1);
    await mesh.close();
    assert.equal(a.node.stats().instances.length, 0, "closing the mesh destroyed the instance made again");
  } finally {
    await mesh.close();
    await a.stop();
    await x.stop();
  }
});

test("Mesh.addNode and removeNode refuse bad input with a clear error", T, async () => {
  const a = startNode("a");
  const mesh = new ta.Mesh([a.meshNode(), new ta.MeshNode("here")]);
  try {
    assert.throws(() => mesh.addNode({ name: "x" } as unknown as ta.MeshNode), /addNode expects a MeshNode/);
    assert.throws(() => mesh.addNode(new ta.MeshNode("a")), /Cannot add node "a" to mesh "mesh": it already has/);
    assert.throws(() => mesh.removeNode("here"), /Cannot remove node "here".*runs in this process/);
    assert.throws(() => mesh.removeNode(3 as unknown as string), /expects a node name, got/);
    assert.throws(() => mesh.removeNode("a", { reson: "x" } as never), /reson/);
    assert.equal(mesh.removeNode("nobody"), false);
    const core = new (await import("../core/mesh.ts")).Mesh([new ta.MeshNode("local")]);
    assert.throws(
      () => core.addNode(new ta.MeshNode("far", { endpoint: "ws://127.0.0.1:9" })),
      /Cannot add node "far" \(ws:\/\/127\.0\.0\.1:9\) to mesh "mesh": the mesh has no remote executor/,
    );
    await core.close();
  } finally {
    await mesh.close();
    await a.stop();
  }
  assert.throws(() => mesh.addNode(new ta.MeshNode("late")), /Cannot add node "late": mesh "mesh" is closed/);
  assert.equal(mesh.removeNode("a"), false);
});
