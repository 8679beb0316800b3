// The node protocol end to end over the in-memory transport (real sockets and processes are in
// cli_test.ts): create, call, order, errors, cancel, deadlines, handles as arguments, remote ops.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../mod.ts";
import { eventually, gate, rejection, sleep } from "../core/_test_utils.ts";
import { NodeServer } from "./node_server.ts";
import { serveInMemory } from "./in_memory.ts";
import { inMemoryTransport } from "./in_memory.ts";
import {
  decodeDriverMessage,
  decodeReply,
  encodeMessage,
  PROTOCOL_VERSION,
  type ResultMessage,
  type WelcomeMessage,
} from "./protocol.ts";

const Counter = ta.service(
  class RemoteCounter {
    n = 0;
    async add(k: number) {
      const v = this.n;
      await sleep(0);
      this.n = v + k;
      return this.n;
    }
    fail() {
      throw new TypeError("bad");
    }
    where() {
      return ta.currentInstance()!.node;
    }
    async hang() {
      await sleep(5_000);
    }
  },
);

const Relay = ta.service(
  class Relay {
    async relay(counter: ta.ServiceHandle<{ add(k: number): Promise<number> }>, k: number) {
      return await counter.add.go(k);
    }
  },
);

const remoteSquare = ta.op({ name: "remoteSquare", remote: true }, async (x: number) => ({
  x: x * x,
  node: ta.currentInstance()?.node ?? "op",
}));

let seq = 0;
async function withNodes<T>(count: number, fn: (mesh: ta.Mesh, nodes: NodeServer[]) => Promise<T>): Promise<T> {
  const nodes: NodeServer[] = [];
  const servers: Array<{ close(): Promise<void> }> = [];
  const meshNodes: ta.MeshNode[] = [];
  for (let i = 0; i < count; i++) {
    const name = `node-test-${++seq}`;
    const node = new NodeServer({ name: `n${i + 1}`, gpus: 2 });
    nodes.push(node);
    servers.push(serveInMemory(name, node.handler));
    meshNodes.push(new ta.MeshNode(`n${i + 1}`, { endpoint: `mem://${name}`, gpus: 2 }));
  }
  const mesh = new ta.Mesh(meshNodes);
  try {
    return await fn(mesh, nodes);
  } finally {
    await mesh.close();
    for (const s of servers) await s.close();
    for (const n of nodes) await n.drain({ graceMs: 50 });
  }
}

test("remote service: instance created on the node, calls in order, state kept", async () => {
  await withNodes(1, async (mesh) => {
    const out = await mesh.run(async () => {
      const c = Counter.init();
      const all = await Promise.all(Array.from({ length: 100 }, () => c.add.go(1)));
      return { all, where: await c.where.go() };
    });
    assert.deepEqual(out.all, Array.from({ length: 100 }, (_, i) => i + 1));
    assert.equal(out.where, "n1");
    assert.equal(mesh.stats().instances[0].node, "n1");
  });
});

test("remote errors: a TypeError thrown on the node arrives as OpExecutionError with its name and message, no stack", async () => {
  await withNodes(1, async (mesh) => {
    const e = await mesh.run(() => rejection(Counter.init().fail.go()));
    assert.ok(e instanceof ta.OpExecutionError);
    assert.equal(e.op, "RemoteCounter.fail");
    assert.ok(e.cause instanceof TypeError);
    assert.equal((e.cause as Error).message, "bad");
    assert.ok(!String((e.cause as Error).stack ?? "").includes("node_test.ts"), "no server file paths leak");
  });
});

test("remote calls: deadline gives TimeoutError and cancels on the node; cancel() reaches the node", async () => {
  const Slow = ta.service(
    { timeoutMs: 30, name: "SlowRemote" },
    class {
      async hang() {
        await sleep(5_000);
      }
    },
  );
  await withNodes(1, async (mesh, [node]) => {
    const e = await mesh.run(() => rejection(Slow.init().hang.go()));
    assert.ok(e instanceof ta.TimeoutError);
    assert.ok(await eventually(() => node.activeCalls === 0), "the node was told to cancel");
    const [ref] = await mesh.run(async () => {
      const c = Counter.init();
      await c.where.go();
      return [c.hang.go()]; // in an array: returning the ref itself would wait for it
    });
    assert.ok(await eventually(() => node.activeCalls === 1), "the call runs on the node");
    ref.cancel();
    assert.ok((await rejection(ref)) instanceof ta.CancelledError);
    assert.ok(await eventually(() => node.activeCalls === 0), "the cancel reached the node");
  });
});

test("a handle passed to a method on another node reaches its instance there", async () => {
  await withNodes(2, async (mesh) => {
    const result = await mesh.run(async () => {
      const counter = Counter.init();
      const relay = Relay.init();
      await counter.add.go(10);
      return await relay.relay.go(counter, 5);
    });
    assert.equal(result, 15);
    const nodes = new Set(mesh.stats().instances.map((i) => i.node));
    assert.equal(nodes.size, 2, "the two services were spread over the two nodes");
  });
});

test("remote-capable ops run on a node that registered them; plain ops stay local", async () => {
  await withNodes(1, async (mesh) => {
    const out = await mesh.run(() => remoteSquare.go(7));
    assert.deepEqual(out, { x: 49, node: "op" });
  });
});

test("unknown service, unknown method and bad version get ProtocolError; the node keeps serving", async () => {
  const node = new NodeServer({ name: "strict" });
  const server = serveInMemory(`strict-${++seq}`, node.handler);
  const conn = await inMemoryTransport.connect(server.endpoint);
  try {
    await assert.rejects(
      conn.request(encodeMessage({ t: "create", service: "Nope", args: [], gpus: [], replica: 0 })),
      (e: unknown) => e instanceof ta.ProtocolError && /Unknown service "Nope"/.test(e.message),
    );
    await assert.rejects(conn.request(encodeMessage({ t: "hello", v: 99 })), ta.ProtocolError);
    await assert.rejects(conn.request(encodeMessage({ t: "explode" })), /Unknown message type/);
    await assert.rejects(conn.request(new Uint8Array([0x9f, 0x01])), ta.ProtocolError);
    const created = decodeReply<{ t: "created"; id: string }>(
      await conn.request(encodeMessage({ t: "create", service: "RemoteCounter", args: [], gpus: [], replica: 0 })),
      "created",
    );
    await assert.rejects(
      conn.request(encodeMessage({ t: "call", cid: "c1", id: created.id, method: "constructor", args: [] })),
      /has no method "constructor"/,
    );
    const w = decodeReply<WelcomeMessage>(
      await conn.request(encodeMessage({ t: "hello", v: PROTOCOL_VERSION })),
      "welcome",
    );
    assert.equal(w.node, "strict");
    assert.ok(w.services.includes("RemoteCounter"));
    assert.ok(w.ops.includes("remoteSquare"));
  } finally {
    await conn.close();
    await server.close();
    await node.drain();
  }
});

test("a remote node that stops answering: in-flight calls reject with NodeLostError naming it", async () => {
  const node = new NodeServer({ name: "doomed" });
  const name = `doomed-${++seq}`;
  const server = serveInMemory(name, node.handler);
  const mesh = new ta.Mesh([new ta.MeshNode("doomed", { endpoint: `mem://${name}` })]);
  try {
    const refs = await mesh.run(async () => {
      const c = Counter.init();
      await c.where.go();
      return Array.from({ length: 50 }, () => c.hang.go());
    });
    await sleep(5);
    await server.close();
    const errors = await Promise.all(refs.map((r) => rejection(r)));
    for (const e of errors) {
      assert.ok(e instanceof ta.NodeLostError, `expected NodeLostError, got ${e}`);
      assert.equal(e.node, "doomed");
    }
  } finally {
    await mesh.close();
    await node.drain({ graceMs: 50 });
  }
});

test("leases: an instance dies with the driver that stops pinging; a live driver's instance and state stay", async () => {
  const expiries: Array<{ instances: number; services: string[] }> = [];
  const node = new NodeServer({
    name: "leased",
    leaseMs: 120,
    onLeaseExpired: ({ instances, services }) => expiries.push({ instances, services }),
  });
  const name = `leased-${++seq}`;
  const server = serveInMemory(name, node.handler);
  const conn = await inMemoryTransport.connect(server.endpoint);
  const mesh = new ta.Mesh([new ta.MeshNode("leased", { endpoint: `mem://${name}` })]);
  const raw = async <T extends { t: string }>(m: unknown, expected: T["t"]) =>
    decodeReply<T>(await conn.request(encodeMessage(m)), expected);
  const count =
    async () => (await raw<{ t: "pong"; instances: number; expiredInstances: number }>({ t: "ping" }, "pong"));
  try {
    // a driver that is alive: its link pings, so a quiet spell of many leases loses nothing
    const [c] = await mesh.run(() => [Counter.init()]);
    assert.equal(await mesh.run(() => c.add.go(5)), 5);
    // a driver that died right after creating (it never pings), and an old-style create with no owner
    const dead = await raw<{ t: "created"; id: string; leaseMs: number }>(
      { t: "create", service: "RemoteCounter", args: [], gpus: [], replica: 0, owner: "dead-driver" },
      "created",
    );
    assert.equal(dead.leaseMs, 120);
    const unowned = await raw<{ t: "created"; id: string }>(
      { t: "create", service: "RemoteCounter", args: [], gpus: [], replica: 0 },
      "created",
    );
    assert.equal((await count()).instances, 3);
    // the dead driver's instance is destroyed, and so is the unowned one nobody called: it had a lease
    // of its own
    assert.ok(await eventually(async () => (await count()).instances === 1), "the unheard-of instances are destroyed");
    assert.equal((await count()).expiredInstances, 2);
    assert.deepEqual(
      expiries,
      [{ instances: 1, services: ["RemoteCounter"] }, { instances: 1, services: ["RemoteCounter"] }],
      "the node says so",
    );
    await sleep(400); // more than three leases without a call from the live driver
    assert.equal(await mesh.run(() => c.add.go(1)), 6, "the live driver's instance kept its state");
    // calling the expired instance says why it is gone
    await assert.rejects(
      conn.request(encodeMessage({ t: "call", cid: "late", id: dead.id, method: "add", args: [1] })),
      (e: unknown) => e instanceof ta.ProtocolError && /lease expired/.test(e.message),
    );
    await assert.rejects(
      conn.request(encodeMessage({ t: "call", cid: "old", id: unowned.id, method: "add", args: [2] })),
      (e: unknown) => e instanceof ta.ProtocolError && /lease expired/.test(e.message),
    );
    // closing the mesh destroys its instance and stops its keepalives
    await mesh.close();
    assert.equal((await count()).instances, 0);
  } finally {
    await mesh.close();
    await conn.close();
    await server.close();
    await node.drain({ graceMs: 50 });
  }
});

let drainRunning = gate(), drainRelease = gate();
const DrainHeld = ta.service(
  { name: "DrainHeld" },
  class {
    async work(x: number) {
      drainRunning.open();
      await drainRelease.promise;
      return x;
    }
  },
);

test("NodeServer.drain({ graceMs }) of Infinity or of 2^31 ms or more waits for calls in flight instead of cancelling them", async () => {
  for (const graceMs of [Infinity, 2 ** 31 + 10, 1e10]) {
    drainRunning = gate();
    drainRelease = gate();
    const node = new NodeServer({ name: "draining" });
    const name = `draining-${++seq}`;
    const server = serveInMemory(name, node.handler);
    const mesh = new ta.Mesh([new ta.MeshNode("draining", { endpoint: `mem://${name}` })]);
    try {
      const [ref] = await mesh.run(() => [DrainHeld.init().work.go(7)]);
      await drainRunning.promise;
      let drained = false;
      const draining = node.drain({ graceMs }).then(() => (drained = true));
      // setTimeout takes 2^31 ms or more for 1 ms: such a timer has fired by now
      for (let i = 0; i < 3; i++) await new Promise((r) => setTimeout(r, 1));
      assert.equal(node.activeCalls, 1, `graceMs ${graceMs}: the call in flight was cancelled`);
      assert.equal(drained, false, `graceMs ${graceMs}: drained before the call in flight finished`);
      drainRelease.open();
      assert.equal(await ref, 7, `graceMs ${graceMs}`);
      await draining;
    } finally {
      drainRelease.open();
      await mesh.close();
      await server.close();
      await node.drain({ graceMs: 0 });
    }
  }
});

test("NodeServer.drain rejects a negative or NaN graceMs, and drains nothing", async () => {
  const node = new NodeServer({ name: "undrained" });
  await assert.rejects(node.drain({ graceMs: -1 }), RangeError);
  await assert.rejects(
    node.drain({ graceMs: NaN }),
    /Cannot drain node "undrained": graceMs must be a number of ms ≥ 0 \(Infinity: no limit\), got number NaN/,
  );
  assert.equal(node.health().status, "ready");
  await node.drain({ graceMs: 0 });
});

test("NodeServer rejects a bad leaseMs with a TypeError", () => {
  assert.throws(() => new NodeServer({ name: "x", leaseMs: -1 }), /leaseMs must be a number of ms ≥ 0/);
  assert.throws(() => new NodeServer({ name: "x", leaseMs: Number.NaN }), TypeError);
});

test("a handle held on another node never re-creates an instance it did not create; the creator does", async () => {
  await withNodes(2, async (mesh, nodes) => {
    const [counter, relay] = await mesh.run(() => [Counter.init(), Relay.init()]);
    assert.equal(await mesh.run(() => relay.relay.go(counter, 5)), 5);
    // the counter's instance disappears from its node (as after a restart)
    const where = mesh.stats().instances.find((i) => i.service === "RemoteCounter")!.node;
    const node = nodes.find((n) => n.name === where)!;
    const ids = [...(node as unknown as { instances: Map<string, { replica: { def: { name: string } } }> }).instances]
      .filter(([, v]) => v.replica.def.name === "RemoteCounter").map(([id]) => id);
    assert.equal(ids.length, 1);
    await node.handler(encodeMessage({ t: "destroy", id: ids[0] }), {
      transport: "in_memory",
      connectionId: 0,
      oneWay: false,
    });
    // the relay knows the instance's id, not its constructor arguments: it says the instance is gone
    const e = await mesh.run(() => rejection(relay.relay.go(counter, 1)));
    assert.match(String((e as Error).message) + String(((e as Error).cause as Error)?.message), /Unknown instance/);
    // the driver made it: it makes it again (the state is gone, as after a node restart)
    assert.equal(await mesh.run(() => counter.add.go(2)), 2);
  });
});

test("calls to one remote instance leave in order, also when an earlier one carries a handle to resolve", async () => {
  const Log = ta.service(
    class OrderLog {
      log: string[] = [];
      push(tag: string, _handle?: unknown) {
        this.log.push(tag);
        return this.log.length;
      }
      get() {
        return this.log;
      }
    },
  );
  await withNodes(1, async (mesh) => {
    const out = await mesh.run(async () => {
      const log = Log.init();
      const other = Counter.init();
      await Promise.all([log.get.go(), other.where.go()]);
      const a = log.push.go("first, with a handle", other);
      const b = log.push.go("second");
      await Promise.all([a, b]);
      return await log.get.go();
    });
    assert.deepEqual(out, ["first, with a handle", "second"]);
  });
});

test("leases: a node whose own loop stalled past the lease does not take its live drivers for gone", async () => {
  const Spinner = ta.service(
    class LeaseSpinner {
      n = 0;
      add(k: number) {
        return (this.n += k);
      }
      spin(ms: number) {
        const end = performance.now() + ms;
        while (performance.now() < end) { /* a long synchronous method */ }
        return ms;
      }
    },
  );
  const expiries: unknown[] = [];
  const node = new NodeServer({ name: "stall", leaseMs: 100, onLeaseExpired: (e) => expiries.push(e) });
  const name = `stall-${++seq}`;
  const server = serveInMemory(name, node.handler);
  const mesh = new ta.Mesh([new ta.MeshNode("stall", { endpoint: `mem://${name}` })]);
  try {
    const [s] = await mesh.run(() => [Spinner.init()]);
    assert.equal(await mesh.run(() => s.add.go(5)), 5);
    await mesh.run(() => s.spin.go(400)); // the node (here, the same loop) is blocked for 4 leases
    await sleep(60);
    assert.equal(await mesh.run(() => s.add.go(1)), 6, "the instance and its state survived");
    assert.deepEqual(expiries, []);
  } finally {
    await mesh.close();
    await server.close();
    await node.drain({ graceMs: 50 });
  }
});

test("leases: after a node restart with a shorter lease, the driver's keepalives follow the new one", async () => {
  const name = `relet-${++seq}`;
  let node = new NodeServer({ name: "relet", leaseMs: 0 });
  let server = serveInMemory(name, node.handler);
  const mesh = new ta.Mesh([new ta.MeshNode("relet", { endpoint: `mem://${name}` })]);
  try {
    const [c] = await mesh.run(() => [Counter.init()]);
    assert.equal(await mesh.run(() => c.add.go(1)), 1);
    await server.close();
    await node.drain({ graceMs: 10 });
    const expiries: unknown[] = [];
    node = new NodeServer({ name: "relet", leaseMs: 100, onLeaseExpired: (e) => expiries.push(e) });
    server = serveInMemory(name, node.handler);
    assert.equal(await mesh.run(() => c.add.go(1)), 1, "re-created after the restart");
    await sleep(450);
    assert.equal(await mesh.run(() => c.add.go(1)), 2, "kept alive under the new, shorter lease");
    assert.deepEqual(expiries, []);
  } finally {
    await mesh.close();
    await server.close();
    await node.drain({ graceMs: 10 });
  }
});

test("a cancel that overtakes its call (HTTP) makes the node refuse the call when it arrives", async () => {
  const node = new NodeServer({ name: "early" });
  // (its requests name their caller, as the HTTP transport's do: a cancel reaches only that caller's calls)
  const peer = { transport: "http", connectionId: 0, oneWay: true, caller: "early-driver" } as const;
  try {
    const created = decodeReply<{ t: "created"; id: string }>(
      (await node.handler(
        encodeMessage({ t: "create", service: "RemoteCounter", args: [], gpus: [], replica: 0 }),
        { ...peer, oneWay: false },
      ))!,
      "created",
    );
    await node.handler(encodeMessage({ t: "cancel", cid: "c-early" }), peer);
    await assert.rejects(
      Promise.resolve(
        node.handler(
          encodeMessage({ t: "call", cid: "c-early", id: created.id, method: "add", args: [5] }),
          { ...peer, oneWay: false },
        ),
      ),
      (e: unknown) => e instanceof ta.CancelledError,
    );
    // the call never ran: the counter is still at 0
    const r = decodeReply<ResultMessage>(
      (await node.handler(
        encodeMessage({ t: "call", cid: "c-next", id: created.id, method: "add", args: [1] }),
        { ...peer, oneWay: false },
      ))!,
      "result",
    );
    assert.deepEqual(r, { t: "result", ok: true, value: 1 });
  } finally {
    await node.drain();
  }
});

test("a handle passed node→node after its node restarted refers to the instance its creator made again", async () => {
  const Relay2 = ta.service(
    { gpus: 1 },
    class RestartRelay {
      async relay(h: ta.ServiceHandle<{ add(k: number): Promise<number> }>, k: number) {
        return await h.add.go(k);
      }
    },
  );
  const names = [`rr1-${++seq}`, `rr2-${++seq}`];
  const n1 = new NodeServer({ name: "n1", gpus: 1 });
  const s1 = serveInMemory(names[0], n1.handler);
  let n2 = new NodeServer({ name: "n2" });
  let s2 = serveInMemory(names[1], n2.handler);
  const mesh = new ta.Mesh([
    new ta.MeshNode("n1", { endpoint: `mem://${names[0]}`, gpus: 1 }),
    new ta.MeshNode("n2", { endpoint: `mem://${names[1]}` }),
  ]);
  try {
    const [relay, counter] = await mesh.run(() => [Relay2.init(), Counter.init()]);
    assert.equal(await mesh.run(() => relay.relay.go(counter, 1)), 1);
    await s2.close();
    await n2.drain({ graceMs: 10 });
    n2 = new NodeServer({ name: "n2" });
    s2 = serveInMemory(names[1], n2.handler);
    // the driver sees the new session before it hands the reference out, and makes the instance again
    assert.equal(await mesh.run(() => relay.relay.go(counter, 1)), 1, "a fresh instance (the old state died)");
    assert.equal(await mesh.run(() => relay.relay.go(counter, 1)), 2);
    assert.equal(await mesh.run(() => counter.add.go(1)), 3, "the same instance the driver calls directly");
  } finally {
    await mesh.close();
    await s1.close();
    await s2.close();
    await n1.drain({ graceMs: 10 });
    await n2.drain({ graceMs: 10 });
  }
});

test("a call stuck resolving a handle (its node never creates it) holds later calls until it is cancelled; close stays bounded", async () => {
  const Mixed = ta.service(
    class StuckMixed {
      n = 0;
      add(k: number) {
        return (this.n += k);
      }
      relay(_h: unknown) {
        return "got";
      }
    },
  );
  const Gpu = ta.service(
    { gpus: 1 },
    class FrozenGpu {
      f() {
        return 1;
      }
    },
  );
  const names = [`sm1-${++seq}`, `sm2-${++seq}`];
  const node = new NodeServer({ name: "n1", gpus: 1 });
  const s1 = serveInMemory(names[0], node.handler);
  // a node that answers everything but never finishes creating
  const s2 = serveInMemory(names[1], (frame, peer) => {
    const m = decodeDriverMessage(frame);
    return m.t === "create" ? new Promise<Uint8Array>(() => {}) : node.handler(frame, peer);
  });
  const mesh = new ta.Mesh([
    new ta.MeshNode("n1", { endpoint: `mem://${names[0]}` }),
    new ta.MeshNode("frozen", { endpoint: `mem://${names[1]}`, gpus: 1 }),
  ]);
  try {
    await mesh.run(async () => {
      const m = Mixed.init();
      const g = Gpu.init();
      assert.equal(await m.add.go(1), 1);
      const stuck = m.relay.go(g);
      const middle = m.add.go(100);
      const later = m.add.go(1);
      await sleep(30);
      assert.equal(later.status, "running", "waits its turn behind the earlier calls");
      assert.equal(middle.cancel(), true);
      await sleep(30);
      assert.equal(later.status, "running", "a call behind that gave up does not let it pass the first");
      assert.equal(stuck.cancel(), true);
      assert.equal(await later, 2, "goes once the calls ahead gave up their turns");
    });
    const t0 = performance.now();
    await mesh.close({ graceMs: 100 });
    assert.ok(performance.now() - t0 < 5_000, "close does not wait on the create that never ends");
  } finally {
    await mesh.close();
    await s1.close();
    await s2.close();
    await node.drain({ graceMs: 10 });
  }
});

test("links opened for handles in results and arguments close with the mesh and the node", async () => {
  const opened: Array<{ closed: boolean }> = [];
  const connect = inMemoryTransport.connect;
  (inMemoryTransport as { connect: typeof connect }).connect = async (endpoint, options) => {
    const c = await connect(endpoint, options);
    opened.push(c);
    return c;
  };
  const Back = ta.service(
    class HandleBack {
      back(h: unknown) {
        return h;
      }
      async use(h: ta.ServiceHandle<{ add(k: number): Promise<number> }>) {
        return await h.add.go(10);
      }
    },
  );
  try {
    await withNodes(2, async (mesh) => {
      await mesh.run(async () => {
        const c = Counter.init();
        const r = Back.init();
        const h = await r.back.go(c) as ta.ServiceHandle<{ add(k: number): Promise<number> }>;
        assert.equal(await h.add.go(1), 1, "a handle that came back in a result works");
        assert.equal(await r.use.go(c), 11, "and one passed as an argument");
      });
    });
    assert.ok(opened.length >= 3, `the mesh and the nodes opened links (${opened.length})`);
    assert.deepEqual(opened.filter((c) => !c.closed), [], "every one of them is closed");
  } finally {
    (inMemoryTransport as { connect: typeof connect }).connect = connect;
  }
});

const LeaseHeld = ta.service(
  { name: "LeaseHeld" },
  class LeaseHeld {
    async work() {
      leaseRunning.open();
      await new Promise(() => {}); // runs until its node stops it
    }
  },
);
let leaseRunning = gate();

test("leases: a call running when its driver's lease expires is cancelled with reason lease-expired, its message naming the lease", async () => {
  leaseRunning = gate();
  const expired = gate();
  const node = new NodeServer({ name: "unleased", leaseMs: 50, onLeaseExpired: () => expired.open() });
  const name = `unleased-${++seq}`;
  let mute = false;
  const server = serveInMemory(name, (frame, peer) => {
    // the driver's keepalives get lost from now on (a driver stopped, or cut off, while it waits)
    if (mute && decodeDriverMessage(frame).t === "ping") return new Promise<Uint8Array>(() => {});
    return node.handler(frame, peer);
  });
  const mesh = new ta.Mesh([new ta.MeshNode("unleased", { endpoint: `mem://${name}` })]);
  try {
    const [ref] = await mesh.run(() => [LeaseHeld.init().work.go()]);
    await leaseRunning.promise;
    mute = true;
    await expired.promise;
    const e = await rejection(ref);
    assert.ok(e instanceof ta.CancelledError, String(e));
    // (today: reason "mesh-closed", "the mesh closed and its graceMs passed": the mesh is open)
    assert.equal(e.reason, "lease-expired");
    assert.match(
      e.message,
      /^Call "LeaseHeld.work" was cancelled: its node destroyed its instance, its driver sent no keepalive for 50 ms \(lease expired\)$/,
    );
  } finally {
    await mesh.close({ graceMs: 0 });
    await server.close();
    await node.drain({ graceMs: 10 });
  }
});

test("leases: keepalives to a node that stopped answering go one at a time, not in a pile", async () => {
  const node = new NodeServer({ name: "mute", leaseMs: 60 });
  const name = `mute-${++seq}`;
  let pings = 0;
  let mute = false;
  const server = serveInMemory(name, (frame, peer) => {
    const m = decodeDriverMessage(frame);
    if (m.t === "ping" && m.owner !== undefined && mute) {
      pings++;
      return new Promise<Uint8Array>(() => {}); // never answered
    }
    return node.handler(frame, peer);
  });
  const mesh = new ta.Mesh([new ta.MeshNode("mute", { endpoint: `mem://${name}` })]);
  try {
    await mesh.run(async () => {
      await Counter.init().add.go(1);
    });
    mute = true;
    await sleep(300); // fifteen keepalive periods
    assert.equal(pings, 1, "the next keepalive waits for the one still unanswered");
  } finally {
    await mesh.close({ graceMs: 50 });
    await server.close();
    await node.drain({ graceMs: 10 });
  }
});

test("a node's frame handler answers calls by their own promise, and every other frame as before", async () => {
  const node = new NodeServer({ name: "serve-paths" });
  const peer = { transport: "websocket", connectionId: 9_001, oneWay: false } as const;
  try {
    // a frame that does not decode: a rejected promise, never a throw in the caller's stack
    let answer: unknown;
    assert.doesNotThrow(() => (answer = node.handler(new Uint8Array([0xff, 0x00]), peer)));
    assert.ok(answer instanceof Promise);
    await assert.rejects(answer, (e: unknown) => e instanceof ta.ProtocolError);
    const created = decodeReply<{ t: "created"; id: string }>(
      (await node.handler(
        encodeMessage({ t: "create", service: "RemoteCounter", args: [], gpus: [], replica: 0 }),
        peer,
      ))!,
      "created",
    );
    const call = (cid: string, k: number) =>
      encodeMessage({ t: "call", cid, id: created.id, method: "add", args: [k] });
    // a call sent one-way is refused, and does not run
    await assert.rejects(
      Promise.resolve(node.handler(call("c-one-way", 100), { ...peer, oneWay: true })),
      (e: unknown) => e instanceof ta.ProtocolError && /one-way "call"/.test(e.message),
    );
    // calls that reach a busy instance wait in its mailbox, in order (add reads, yields, writes)
    const answers = await Promise.all([1, 2, 3].map((k) => node.handler(call(`c-${k}`, k), peer)));
    assert.deepEqual(answers.map((a) => decodeReply<ResultMessage>(a!, "result")), [
      { t: "result", ok: true, value: 1 },
      { t: "result", ok: true, value: 3 },
      { t: "result", ok: true, value: 6 },
    ]);
    // a call id in use by a call in flight is refused as before
    const first = node.handler(call("c-twice", 1), peer);
    await assert.rejects(
      Promise.resolve(node.handler(call("c-twice", 1), peer)),
      (e: unknown) => e instanceof ta.ProtocolError && /already in use/.test(e.message),
    );
    assert.deepEqual(decodeReply<ResultMessage>((await first)!, "result"), { t: "result", ok: true, value: 7 });
  } finally {
    await node.drain();
  }
});
