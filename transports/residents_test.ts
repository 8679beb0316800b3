// Resident instances over the in-memory transport: a node's own instances (startResident), drivers
// connecting to them (Service.connect, mesh.connect), fair dispatch between callers. Real node
// processes (thinkagain serve --start, drivers on Bun and Deno, SIGKILL) are in
// adapters/residents_test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../mod.ts";
import { rejection, sleep } from "../core/_test_utils.ts";
import { LocalReplica } from "../core/local_replica.ts";
import { defineService } from "../core/service_def.ts";
import { FairDispatch } from "./fair_dispatch.ts";
import { NodeServer } from "./node_server.ts";
import { serveInMemory } from "./in_memory.ts";
import { inMemoryTransport } from "./in_memory.ts";
import { decodeNodeMessage, decodeReply, encodeMessage, PROTOCOL_VERSION, type WelcomeMessage } from "./protocol.ts";

let built = 0;
let disposed = 0;
const Shared = ta.service(
  { name: "ResidentTestShared", gpus: 1 },
  class {
    n = 0;
    constructor() {
      built++;
    }
    add(k: number) {
      return this.n += k;
    }
    where() {
      return `${ta.currentInstance()!.node}/${ta.currentInstance()!.gpus.map((g) => g.id).join(",")}`;
    }
    [Symbol.dispose]() {
      disposed++;
    }
  },
);

const Broken = ta.service(
  { name: "ResidentTestBroken", gpus: 1 },
  class {
    constructor() {
      throw new Error("weights not found");
    }
    gen() {
      return 1;
    }
  },
);

let release: (() => void) | undefined;
const Slow = ta.service(
  { name: "ResidentTestSlow" },
  class {
    ready: Promise<void>;
    constructor(fail?: boolean) {
      this.ready = new Promise<void>((
        resolve,
        reject,
      ) => (release = fail ? () => reject(new Error("no disk")) : resolve));
    }
    gen() {
      return "loaded";
    }
  },
);

let seq = 0;
async function withNode<T>(
  options: { gpus?: number },
  fn: (node: NodeServer, endpoint: string) => Promise<T>,
): Promise<T> {
  const node = new NodeServer({ name: "n1", gpus: options.gpus ?? 2 });
  const name = `residents-test-${++seq}`;
  const server = serveInMemory(name, node.handler);
  try {
    return await fn(node, `mem://${name}`);
  } finally {
    await node.drain({ graceMs: 0 });
    await server.close();
  }
}

test("Service.connect: drivers share the node's resident instance, built once; mesh.close() leaves it", async () => {
  const before = built, disposedBefore = disposed;
  await withNode({}, async (node, endpoint) => {
    assert.deepEqual(await node.startResident("ResidentTestShared"), ["resident/ResidentTestShared/0"]);
    const a = new ta.Mesh([new ta.MeshNode("n1", { endpoint })]);
    await using b = new ta.Mesh([new ta.MeshNode("n1", { endpoint })]);
    const ha = await a.run(() => Shared.connect());
    const hb = await b.connect(Shared);
    assert.equal(await a.run(() => ha.add(1)), 1);
    assert.equal(await b.run(() => hb.add(10)), 11, "the same instance, its state shared");
    await a.close();
    assert.equal(await b.run(() => hb.add(100)), 111, "a driver's mesh.close() does not touch it");
    assert.equal(built - before, 1);
    assert.equal(disposed - disposedBefore, 0);
    assert.equal(node.stats().instances.length, 1);
  });
  assert.equal(disposed - disposedBefore, 1, "disposed when the node drains");
});

test("Service.connect outside mesh.run, or with no resident anywhere, fails saying what was asked", async () => {
  await assert.rejects(Shared.connect(), /ResidentTestShared\.connect\(\) needs a mesh.*mesh\.connect/);
  await withNode({}, async (_node, endpoint) => {
    await using mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint })]);
    const e = await rejection(mesh.connect(Shared));
    assert.ok(e instanceof ta.PlacementError);
    assert.match(
      e.message,
      /Cannot connect to service "ResidentTestShared": no node of mesh "mesh" hosts a resident instance of it \(asked n1: no residents\)/,
    );
  });
  await using unreachable = new ta.Mesh([new ta.MeshNode("gone", { endpoint: "mem://residents-test-nowhere" })]);
  assert.match(
    (await rejection(unreachable.connect(Shared)) as Error).message,
    /asked gone \(mem:\/\/residents-test-nowhere\): unreachable/,
  );
  await assert.rejects(new ta.Mesh([new ta.MeshNode("x")]).connect({} as never), /mesh\.connect expects a service/);
});

test("NodeServer.startResident places replicas on the node's GPUs, all or none, and lists them in the welcome", async () => {
  await withNode({ gpus: 2 }, async (node, endpoint) => {
    await node.startResident("ResidentTestShared", { replicas: 2 });
    await assert.rejects(node.startResident("ResidentTestShared"), ta.PlacementError);
    await assert.rejects(
      node.startResident("NoSuchService"),
      /Cannot start resident service "NoSuchService" on node "n1": the module registered/,
    );
    await assert.rejects(
      node.startResident("ResidentTestShared", { replicas: 0 }),
      /replicas must be an integer from 1/,
    );
    const conn = await inMemoryTransport.connect(endpoint);
    const welcome = decodeReply<WelcomeMessage>(
      await conn.request(encodeMessage({ t: "hello", v: PROTOCOL_VERSION })),
      "welcome",
    );
    await conn.close();
    assert.deepEqual(welcome.residents, [
      { service: "ResidentTestShared", id: "resident/ResidentTestShared/0", replica: 0, gpus: [0] },
      { service: "ResidentTestShared", id: "resident/ResidentTestShared/1", replica: 1, gpus: [1] },
    ]);
    await using mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint })]);
    const h = await mesh.connect(Shared);
    const wheres = await mesh.run(() => Promise.all([h.where.go(), h.where.go()]));
    assert.deepEqual(wheres.sort(), ["n1/0", "n1/1"], "calls go to the least-loaded replica");
  });
});

test("NodeServer refuses to destroy a resident instance, whoever asks", async () => {
  await withNode({}, async (node, endpoint) => {
    const [id] = await node.startResident("ResidentTestShared");
    const conn = await inMemoryTransport.connect(endpoint);
    await assert.rejects(
      conn.request(encodeMessage({ t: "destroy", id })),
      /Cannot destroy instance .* it is resident/,
    );
    await conn.close();
    assert.equal(node.stats().instances.length, 1);
  });
});

test("decodeNodeMessage refuses a welcome whose residents are malformed", () => {
  const welcome = {
    t: "welcome",
    v: PROTOCOL_VERSION,
    node: "n",
    session: "s",
    gpus: 0,
    cpus: null,
    services: [],
    ops: [],
  };
  for (
    const residents of [{}, [1], [{ service: "S", id: "x", replica: -1, gpus: [] }], [{
      service: "S",
      id: "",
      replica: 0,
      gpus: [],
    }]]
  ) {
    assert.throws(() => decodeNodeMessage(encodeMessage({ ...welcome, residents })), ta.ProtocolError);
  }
  const ok = [{ service: "S", id: "resident/S/0", replica: 0, gpus: [1] }];
  assert.deepEqual((decodeNodeMessage(encodeMessage({ ...welcome, residents: ok })) as WelcomeMessage).residents, ok);
});

test("NodeServer.startResident: a constructor that throws fails the start, naming the service; its GPU is free again", async () => {
  await withNode({ gpus: 1 }, async (node) => {
    const e = await rejection(node.startResident("ResidentTestBroken"));
    assert.match(
      (e as Error).message,
      /Cannot start resident service "ResidentTestBroken" \(replica 0\) on node "n1": its constructor threw: weights not found/,
    );
    assert.equal(node.stats().instances.length, 0);
    assert.equal(node.stats().nodes[0].gpus.free, 1);
    void Broken;
  });
});

test("NodeServer.startResident waits for an instance's ready promise, and a rejected one fails the start", async () => {
  await withNode({}, async (node) => {
    let started = false;
    const p = node.startResident("ResidentTestSlow").then(() => (started = true));
    await sleep(10);
    assert.equal(started, false, "still loading");
    release!();
    await p;
    const failing = node.startResident("ResidentTestSlow", { args: [true] });
    release!();
    await assert.rejects(failing, /ResidentTestSlow" \(replica 1\) on node "n1": its ready promise rejected: no disk/);
    assert.equal(node.stats().instances.length, 1);
    void Slow;
  });
});

test("Service.connect while the node still loads its residents says so, and a later connect finds them (the welcome is asked again)", async () => {
  await withNode({}, async (node, endpoint) => {
    await using mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint })]);
    const loading = node.startResident("ResidentTestSlow");
    const early = await mesh.run(() => rejection(Slow.connect()));
    assert.ok(early instanceof ta.PlacementError, String(early));
    assert.match((early as Error).message, /n1: no residents, still loading the ones it starts/);
    assert.match((early as Error).message, /try again once it is ready, or start one with/);
    release!();
    await loading;
    const slow = await mesh.run(() => Slow.connect());
    assert.equal(await mesh.run(() => slow.gen.go()), "loaded");
  });
});

function fairFixture(maxConcurrency: number) {
  const started: string[] = [];
  let running = 0, most = 0;
  const gates: Array<() => void> = [];
  const def = defineService(
    { name: `FairTest${++seq}`, maxConcurrency },
    class {
      async work(tag: string) {
        started.push(tag);
        most = Math.max(most, ++running);
        await new Promise<void>((r) => gates.push(r));
        running--;
        return tag;
      }
    },
  );
  const replica = new LocalReplica(def, [], undefined, 0, "n1", []);
  const fair = new FairDispatch(replica, maxConcurrency);
  const openAll = async (until: () => boolean) => {
    while (!until()) {
      gates.splice(0).forEach((g) => g());
      await sleep(0);
    }
  };
  return { fair, started, most: () => most, openAll };
}

test("FairDispatch: a caller flooding an instance does not starve another; each caller's order holds", async () => {
  const { fair, started, openAll } = fairFixture(1);
  const a = Array.from({ length: 1000 }, (_, i) => fair.call("a", "work", [`a${i}`], undefined));
  const b = Array.from({ length: 10 }, (_, i) => fair.call("b", "work", [`b${i}`], undefined));
  await openAll(() => b.every((r) => r.status === "completed"));
  const lastB = started.indexOf("b9");
  assert.ok(lastB <= 21, `b's 10 calls started among the first 21, not after a's 1000 (b9 was #${lastB})`);
  await openAll(() => a.every((r) => r.status === "completed"));
  assert.deepEqual(started.filter((t) => t[0] === "a"), a.map((_, i) => `a${i}`), "a's calls in the order sent");
  assert.deepEqual(started.filter((t) => t[0] === "b"), b.map((_, i) => `b${i}`), "b's too");
});

test("FairDispatch keeps the instance's maxConcurrency, and a call cancelled before its turn never runs", async () => {
  const { fair, started, most, openAll } = fairFixture(2);
  const refs = Array.from({ length: 20 }, (_, i) => fair.call(i % 2 ? "a" : "b", "work", [`c${i}`], undefined));
  refs[10].cancel();
  await openAll(() => refs.every((r) => r.status !== "pending" && r.status !== "running"));
  assert.equal(most(), 2);
  assert.ok(!started.includes("c10"));
  assert.equal(refs[10].status, "cancelled");
  assert.equal(await refs[11], "c11");
});

const Ledger = ta.service(
  { name: "ResidentTestLedger" },
  class {
    log: string[] = [];
    async append(entry: string) {
      const before = this.log.length;
      await sleep(0); // a read-await-write: two calls at once would lose an entry
      this.log[before] = entry;
      return this.log.length;
    }
    entries() {
      return this.log;
    }
  },
);

test("A resident instance keeps its order and maxConcurrency for calls from several drivers at once", async () => {
  await withNode({}, async (node, endpoint) => {
    await node.startResident("ResidentTestLedger");
    const meshes = [0, 1, 2].map(() => new ta.Mesh([new ta.MeshNode("n1", { endpoint })]));
    try {
      await Promise.all(meshes.map((m, d) =>
        m.run(async () => {
          const ledger = await Ledger.connect();
          await Promise.all(Array.from({ length: 100 }, (_, i) => ledger.append.go(`d${d}-${i}`)));
        })
      ));
      const log = await meshes[0].run(async () => (await Ledger.connect()).entries());
      assert.equal(log.length, 300, "no call overlapped another (maxConcurrency 1)");
      for (const d of [0, 1, 2]) {
        const mine = log.filter((e) => e.startsWith(`d${d}-`));
        assert.deepEqual(mine, Array.from({ length: 100 }, (_, i) => `d${d}-${i}`), `driver ${d}'s calls in its order`);
      }
      assert.notDeepEqual(log.slice(0, 100), log.filter((e) => e.startsWith("d0-")), "the drivers' calls interleave");
    } finally {
      for (const m of meshes) await m.close();
    }
  });
});

test("FairDispatch gives the event loop a turn when calls that only await promises pass on with no frame read", async () => {
  const started: string[] = [];
  const def = defineService(
    { name: `FairTestMicro${++seq}` },
    class {
      async work(tag: string) {
        started.push(tag);
        await Promise.resolve();
      }
    },
  );
  // a node that reads nothing meanwhile: its clock stays where it is
  const fair = new FairDispatch(new LocalReplica(def, [], undefined, 0, "n1", []), 1, { lastRead: 0 });
  // b's call arrives from the event loop (a timer), as a call read from another socket does
  const b = new Promise<ReturnType<FairDispatch["call"]>>((resolve) =>
    setTimeout(() => resolve(fair.call("b", "work", ["b"], undefined)), 0)
  );
  const a = Array.from({ length: 20_000 }, (_, i) => fair.call("a", "work", [`a${i}`], undefined));
  await (await b);
  await Promise.all(a);
  const at = started.indexOf("b");
  // run back to back in microtasks, a's 20,000 calls would all run before the timer could fire
  assert.ok(at < 20_000, `b's call started among a's flood (#${at}), not after all of it`);
});

const Readd = ta.service(
  { name: "ResidentTestReadd" },
  class {
    where() {
      return ta.currentInstance()!.node;
    }
  },
);

test("A connected handle reaches the node's residents again after the node is removed and added back (discovery, fromDns)", async () => {
  // n1, n2, and n1 again at another endpoint (a pod restarted on another IP)
  const nodes = ["n1", "n2", "n1"].map((name) => new NodeServer({ name }));
  const servers = nodes.map((n, i) => serveInMemory(`residents-readd-${i}`, n.handler));
  try {
    for (const n of nodes) await n.startResident("ResidentTestReadd");
    const listed = (i: number) => new ta.MeshNode(`n${i + 1}`, { endpoint: servers[i].endpoint });
    // one node: no sibling to go to while it is away
    await using solo = new ta.Mesh([listed(0)]);
    const h = await solo.connect(Readd);
    assert.equal(await solo.run(() => h.where()), "n1");
    solo.removeNode("n1", { reason: "it answered no discovery" }); // what discover and fromDns do when it goes
    const away = await solo.run(() => rejection(h.where()));
    assert.ok(away instanceof ta.NodeLostError && /answered no discovery/.test(away.message), String(away));
    solo.addNode(listed(0)); // ... and when it is back
    assert.equal(await solo.run(() => h.where()), "n1", "the same handle reaches the node added back");
    // again, back at another endpoint: the handle follows the mesh's link to the node of that name
    solo.removeNode("n1", { reason: "its pod was deleted" });
    solo.addNode(new ta.MeshNode("n1", { endpoint: servers[2].endpoint }));
    assert.equal(await solo.run(() => h.where()), "n1");
    assert.equal(nodes[2].stats().instances[0].calls, 1, "the call went to the node at its new endpoint");

    // two nodes: while n1 is away its calls go to n2; once it is back, calls reach it again
    await using pair = new ta.Mesh([listed(0), listed(1)]);
    const both = await pair.connect(Readd);
    const spread = () => pair.run(() => Promise.all([both.where.go(), both.where.go()]));
    assert.deepEqual((await spread()).sort(), ["n1", "n2"]);
    pair.removeNode("n1", { reason: "its pod was deleted" });
    assert.deepEqual(await spread(), ["n2", "n2"]);
    pair.addNode(listed(0));
    assert.deepEqual((await spread()).sort(), ["n1", "n2"], "the handle's replica on n1 follows the node added back");
  } finally {
    for (const n of nodes) await n.drain({ graceMs: 0 });
    for (const s of servers) await s.close();
  }
});
