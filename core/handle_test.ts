// What a service handle means across meshes: one instance, placed at its first use.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../mod.ts";
import { meshRuntime } from "./mesh.ts";
import { collectUntil, gcFunction, rejection } from "./_test_utils.ts";
import { NodeServer } from "../transports/node_server.ts";
import { serveInMemory } from "../transports/in_memory.ts";

const Store = ta.service(
  class HandleStore {
    items: string[] = [];
    add(item: string) {
      this.items.push(item);
      return this.items.length;
    }
    where() {
      return { count: this.items.length, node: ta.currentInstance()!.node };
    }
  },
);

test("a handle made inside mesh.run keeps calling its instance outside it and from another mesh", async () => {
  await using a = new ta.Mesh([new ta.MeshNode("n1")], { name: "a" });
  await using b = new ta.Mesh([new ta.MeshNode("m1")], { name: "b" });
  const store = await a.run(async () => {
    const s = Store.init();
    await s.add("x");
    await s.add("y");
    return s;
  });
  assert.deepEqual(await store.where(), { count: 2, node: "n1" }, "outside any mesh");
  assert.deepEqual(await b.run(() => store.where()), { count: 2, node: "n1" }, "from another mesh");
  assert.equal(b.stats().instances.length, 0, "the other mesh placed nothing");
  // made outside, first used inside a mesh: placed there, and the same instance afterwards
  const late = Store.init();
  await b.run(() => late.add("z"));
  assert.deepEqual(await late.where(), { count: 1, node: "m1" });
});

test("after its mesh closed, a handle's calls fail with a CancelledError naming the mesh, in any mesh", async () => {
  const a = new ta.Mesh([new ta.MeshNode("n1")], { name: "first" });
  await using b = new ta.Mesh([new ta.MeshNode("m1")], { name: "second" });
  const store = await a.run(() => Store.init());
  assert.equal(await store.add("x"), 1);
  await a.close();
  for (const call of [() => store.add.go("y"), () => b.run(() => store.add.go("y"))]) {
    const e = await rejection(call());
    assert.ok(e instanceof ta.CancelledError, `expected CancelledError, got ${e}`);
    assert.equal((e as ta.CancelledError).reason, "mesh-closed");
    assert.equal((e as ta.CancelledError).op, "HandleStore.add", "the method, not only the service");
    assert.match(
      String(e),
      /Call "HandleStore\.add" was not started: this handle's instance was disposed when mesh "first" closed/,
    );
  }
  assert.equal(b.stats().instances.length, 0, "no new, empty instance was made");
});

const gc = gcFunction();
test("a handle does not keep the closed mesh it was used in alive", { skip: gc === undefined }, async () => {
  let collected = 0;
  const registry = new FinalizationRegistry(() => collected++);
  const store = await (async () => {
    const mesh = new ta.Mesh([new ta.MeshNode("n1")]);
    const s = await mesh.run(async () => {
      const s = Store.init();
      await s.add("x");
      return s;
    });
    registry.register(meshRuntime(mesh), "runtime");
    await mesh.close();
    return s;
  })();
  assert.equal(await collectUntil(gc!, () => collected, 1), 1, "the closed mesh was collected");
  assert.ok((await rejection(store.add.go("y"))) instanceof ta.CancelledError, "the handle still says why");
});

const ClosedResident = ta.service(
  { name: "HandleClosedResident" },
  class {
    get() {
      return 1;
    }
  },
);

test("a connect() handle used after its mesh closed fails with CancelledError mesh-closed, not NodeLostError", async () => {
  const node = new NodeServer({ name: "n1" });
  const server = serveInMemory("handle-closed-resident", node.handler);
  try {
    await node.startResident("HandleClosedResident");
    const mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: server.endpoint })], { name: "connected" });
    const h = await mesh.connect(ClosedResident);
    assert.equal(await mesh.run(() => h.get()), 1);
    await mesh.close();
    await using other = new ta.Mesh([new ta.MeshNode("m1")]);
    for (const call of [() => h.get(), () => other.run(() => h.get())]) {
      const e = await rejection(call());
      assert.ok(e instanceof ta.CancelledError, `expected CancelledError, got ${e}`); // before: NodeLostError
      assert.equal(e.reason, "mesh-closed");
      assert.match(String(e), /through mesh "connected", which closed; connect\(\) again/);
    }
  } finally {
    await node.drain({ graceMs: 0 });
    await server.close();
  }
});
