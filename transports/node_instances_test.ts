// The instances a node hosts, also those that code running on the node makes (`init()` inside a
// method or an op there): one ledger of the node's GPUs and cores, and a lifetime tied to whoever
// made them (its instance, its driver's lease, or the node).
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../mod.ts";
import { gate, rejection, settlesWithin } from "../core/_test_utils.ts";
import { NodeServer, type NodeServerOptions } from "./node_server.ts";
import { inMemoryTransport, serveInMemory } from "./in_memory.ts";
import { encodeMessage } from "./protocol.ts";

let seq = 0;
/** A node in this process, and the endpoint a mesh reaches it at; drained and closed after `fn`. */
async function withNode<T>(
  options: Omit<NodeServerOptions, "name">,
  fn: (node: NodeServer, endpoint: string) => Promise<T>,
): Promise<T> {
  const node = new NodeServer({ name: "n1", ...options });
  const server = serveInMemory(`node-instances-${++seq}`, node.handler);
  try {
    return await fn(node, server.endpoint);
  } finally {
    await node.drain({ graceMs: 0 });
    await server.close();
  }
}

let childLive = 0;
const LeakChild = ta.service(
  { name: "NestedLeakChild" },
  class {
    constructor() {
      childLive++;
    }
    ping() {
      return ta.currentInstance()!.node;
    }
    [Symbol.dispose]() {
      childLive--;
    }
  },
);
const LeakParent = ta.service(
  { name: "NestedLeakParent" },
  class {
    child?: ta.ServiceHandle<InstanceType<typeof LeakChild.cls>>;
    early = LeakChild.init(); // made by the constructor: the parent's too
    async make() {
      this.child = LeakChild.init();
      return await this.child.ping();
    }
  },
);

test("an instance a method made on a node is disposed when the driver that made the method's instance closes its mesh", async () => {
  await withNode({}, async (node, endpoint) => {
    const before = childLive;
    {
      await using mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint })]);
      assert.equal(await mesh.run(() => LeakParent.init().make()), "n1");
      assert.equal(childLive, before + 2);
      assert.equal(node.stats().instances.length, 3, "the node lists them with its other instances");
    }
    assert.equal(childLive, before, "disposed with the instance whose code made them"); // before: before + 2 until the node drained
    assert.equal(node.stats().instances.length, 0);
  });
});

const GpuChild = ta.service(
  { name: "NestedGpuChild", gpus: 1 },
  class {
    gpu() {
      return ta.currentInstanceGpus()!.map((g) => g.id);
    }
  },
);
const GpuParent = ta.service(
  { name: "NestedGpuParent" },
  class {
    child?: ta.ServiceHandle<InstanceType<typeof GpuChild.cls>>;
    async make() {
      this.child = GpuChild.init();
      return await this.child.gpu();
    }
  },
);

test("a node never gives its one GPU to two gpus: 1 instances, one made inside a method there, one by a driver", async () => {
  await withNode({ gpus: 1 }, async (node, endpoint) => {
    await using mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint })]);
    await mesh.run(async () => {
      const parent = GpuParent.init();
      assert.deepEqual(await parent.make(), [0]);
      assert.equal(node.stats().nodes[0].gpus.free, 0, "the node counts it");
      // the driver's mesh does not know of it (it counts what it placed): the node refuses
      const e = await rejection(GpuChild.init().gpu());
      assert.ok(e instanceof ta.PlacementError, String(e)); // before: resolved [0], the same GPU
      // and a second one made on the node is refused there too
      const again = await rejection(parent.make());
      assert.ok(again instanceof ta.OpExecutionError && again.cause instanceof ta.PlacementError, String(again));
    });
  });
});

const CoreChild = ta.service(
  { name: "NestedCoreChild", cpus: 3 },
  class {
    ok() {
      return true;
    }
  },
);
const CoreUser = ta.service(
  { name: "NestedCoreUser", cpus: 2 },
  class {
    ok() {
      return true;
    }
  },
);
const makeCoreChild = ta.op({ name: "nestedMakeCoreChild", remote: true }, async () => {
  const child = CoreChild.init();
  return await child.ok();
});

test("cores a node's code took for an instance are not given to a driver's instance as well", async () => {
  await withNode({ cpus: 4 }, async (node, endpoint) => {
    await using mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint })]);
    await mesh.run(async () => {
      assert.equal(await makeCoreChild.go(), true); // an op made it: its driver's lease holds it
      assert.equal(node.stats().nodes[0].cpus.free, 1);
      const e = await rejection(CoreUser.init().ok());
      assert.ok(e instanceof ta.PlacementError && /cores/.test(e.message), String(e));
    });
  });
});

let opChildLive = 0;
let opChildMade = gate();
let opChildBusy = gate();
let opChildDisposed = gate();
const OpChild = ta.service(
  { name: "NestedOpChild" },
  class {
    constructor() {
      opChildLive++;
      opChildMade.open();
    }
    async work() {
      await opChildBusy.promise;
      return 1;
    }
    [Symbol.dispose]() {
      opChildLive--;
      opChildDisposed.open();
    }
  },
);
const opMakesChild = ta.op({ name: "nestedOpMakesChild", remote: true }, async () => {
  const child = OpChild.init();
  return await child.work(); // (held while the lease would have expired: the running call keeps it)
});

test("an instance an op made on a node lives while its driver's lease does, also while the op runs long", async () => {
  const expired = { dead: gate(), ours: gate() };
  const onLeaseExpired = ({ services }: { services: string[] }) =>
    services.includes("NestedOpChild") ? expired.ours.open() : expired.dead.open();
  await withNode({ leaseMs: 60, onLeaseExpired }, async (_node, endpoint) => {
    const mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint })]);
    const conn = await inMemoryTransport.connect(endpoint);
    const before = opChildLive;
    [opChildMade, opChildBusy, opChildDisposed] = [gate(), gate(), gate()];
    const alive = setInterval(() => {}, 1_000); // (the sweep's timer does not hold the process open)
    try {
      const ref = mesh.run(() => opMakesChild.go());
      await opChildMade.promise;
      // a driver that dies at once, after the op's instance was made: once its lease expired, the
      // op's lease was overdue too (the driver's pings name no lease: it holds nothing there), but
      // the op that made the instance still runs
      await conn.request(encodeMessage({
        t: "create",
        service: "NestedCoreUser",
        args: [],
        gpus: [],
        replica: 0,
        owner: "dead-driver",
      }));
      await expired.dead.promise;
      assert.equal(opChildLive, before + 1); // before: destroyed with the op's lease
      opChildBusy.open();
      assert.equal(await ref, 1);
      await mesh.close();
      // the driver is gone: its lease expires, and what its op made goes with it
      assert.ok(await settlesWithin(expired.ours.promise, 10_000), "its lease expired, with the op's instance");
      await opChildDisposed.promise;
      assert.equal(opChildLive, before);
    } finally {
      clearInterval(alive);
      await mesh.close();
      await conn.close();
    }
  });
});

const opMakesLeakChild = ta.op({ name: "nestedOpMakesLeakChild", remote: true }, async () => {
  return await LeakChild.init().ping();
});

test("an instance an op made on a node goes when its driver closes its mesh, not a lease later", async () => {
  await withNode({}, async (node, endpoint) => {
    const before = childLive;
    {
      await using mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint })]);
      await mesh.run(async () => {
        assert.equal(await LeakParent.init().make(), "n1"); // the driver holds an instance there
        assert.equal(await opMakesLeakChild.go(), "n1");
      });
      assert.equal(childLive, before + 3);
    }
    // (the default lease is 30 s: only the driver's close can have disposed it by now)
    assert.equal(childLive, before);
    assert.equal(node.stats().instances.length, 0);
  });
});

const Keeper = ta.service(
  { name: "NestedKeeper" },
  class {
    make() {
      return LeakChild.init(); // a handle of an instance made here, returned to the driver
    }
  },
);

test("a handle of an instance made by code on a node cannot be returned to the driver: the error says what to do", async () => {
  await withNode({}, async (_node, endpoint) => {
    await using mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint })]);
    const e = await rejection(mesh.run(() => Keeper.init().make()));
    assert.ok(
      e instanceof Error && /NestedLeakChild/.test(e.message) &&
        /init\(\) it inside mesh\.run on the driver/.test(e.message),
      String(e),
    );
  });
});

const ResidentMaker = ta.service(
  { name: "NestedResidentMaker" },
  class {
    child = LeakChild.init();
    ping() {
      return this.child.ping();
    }
  },
);

test("an instance a resident instance made is the node's too: no driver's close disposes it", async () => {
  const before = childLive;
  await withNode({}, async (node, endpoint) => {
    await node.startResident("NestedResidentMaker");
    for (let i = 0; i < 2; i++) {
      await using mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint })]);
      assert.equal(await mesh.run(async () => (await ResidentMaker.connect()).ping()), "n1");
    }
    assert.equal(childLive, before + 1);
  });
  assert.equal(childLive, before, "the node's drain disposes it");
});
