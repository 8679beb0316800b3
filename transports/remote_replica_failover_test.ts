// Replicas on nodes that stop serving: a node that drains (it refuses new calls) or is lost. Calls
// go to the siblings that are up, are counted where they ran, `mesh.stats()` says what happened to
// the instance and its node, and closing leaves a lost node's instances to its lease instead of
// trying to reach it once per instance.
import { test } from "node:test";
import assert from "node:assert/strict";
import { type AddressInfo, connect, createServer, type Socket } from "node:net";
import * as ta from "../mod.ts";
import { gate, rejection } from "../core/_test_utils.ts";
import { serveInMemory } from "./in_memory.ts";
import { NodeServer } from "./node_server.ts";
import { serveFrames } from "../adapters/serve.ts";

let seq = 0;
/** Longer than the bounds on waits below, so that a hang fails the test instead of the run. */
const T = { timeout: 60_000 };

/** A node process stand-in: a NodeServer on a fresh in-memory endpoint. */
function startNode(name: string, options: { maxInFlight?: number } = {}) {
  const endpoint = `mem://failover-${name}-${++seq}`;
  const node = new NodeServer({ name, ...options });
  const server = serveInMemory(endpoint.slice("mem://".length), node.handler);
  return { endpoint, node, server, meshNode: () => new ta.MeshNode(name, { endpoint }) };
}

/** Stops the nodes {@linkcode startNode} started: their servers, then the nodes at once. */
async function stopNodes(...nodes: ReturnType<typeof startNode>[]): Promise<void> {
  for (const n of nodes) {
    await n.server.close();
    await n.node.drain({ graceMs: 0 });
  }
}

let held = gate();
let holding = 0;
let bothHeld = gate();
const Pair = ta.service(
  { name: "FailoverPair", replicas: 2, maxConcurrency: 4 },
  class FailoverPair {
    where(): string {
      return ta.currentInstance()!.node;
    }
    async hold(): Promise<string> {
      if (++holding === 2) bothHeld.open();
      await held.promise;
      return ta.currentInstance()!.node;
    }
  },
);

test(
  "calls refused by a draining node go to a sibling replica (no retries needed: they never ran), and stats say it drains",
  T,
  async () => {
    held = gate();
    bothHeld = gate();
    holding = 0;
    const a = startNode("a"), b = startNode("b");
    const mesh = new ta.Mesh([a.meshNode(), b.meshNode()]);
    try {
      await mesh.run(async () => {
        const s = Pair.init();
        assert.deepEqual((await Promise.all([s.where.go(), s.where.go()])).sort(), ["a", "b"]);
        const holds = [s.hold.go(), s.hold.go()]; // one in flight on each node
        await bothHeld.promise;
        const draining = b.node.drain({ graceMs: 60_000 }); // its call in flight keeps it draining
        const during = await Promise.allSettled(Array.from({ length: 6 }, () => s.where.go()));
        assert.deepEqual(during.filter((r) => r.status === "rejected"), [], "no call fails while a sibling is up");
        assert.deepEqual(during.map((r) => (r as PromiseFulfilledResult<string>).value), Array(6).fill("a"));
        const onB = mesh.stats().instances.find((i) => i.node === "b")!;
        assert.equal(onB.state, "draining");
        held.open();
        assert.deepEqual((await Promise.all(holds)).sort(), ["a", "b"], "the calls in flight finished");
        await draining;
      });
      const calls = Object.fromEntries(mesh.stats().instances.map((i) => [i.node, i.calls]));
      assert.deepEqual(calls, { a: 8, b: 2 }, "calls are counted where they ran");
    } finally {
      held.open();
      await mesh.close();
      await stopNodes(a, b);
    }
  },
);

test(
  "after mesh.removeNode(…, { drain: true }) nothing new is sent to the node: a replicated service's calls go to the sibling",
  T,
  async () => {
    const a = startNode("a"), b = startNode("b");
    const mesh = new ta.Mesh([a.meshNode(), b.meshNode()]);
    try {
      await mesh.run(async () => {
        const s = Pair.init();
        assert.deepEqual((await Promise.all([s.where.go(), s.where.go()])).sort(), ["a", "b"]);
        assert.equal(mesh.removeNode("b", { drain: true }), true); // (b itself does not drain yet)
        assert.deepEqual(await Promise.all([s.where.go(), s.where.go(), s.where.go()]), ["a", "a", "a"]);
      });
    } finally {
      await mesh.close();
      await stopNodes(a, b);
    }
  },
);

test(
  "a lost node's instance: stats say lost (and so does its node), new calls go to the siblings that are up, spread, counted there",
  T,
  async () => {
    const Three = ta.service(
      { name: "FailoverThree", replicas: 3 },
      class FailoverThree {
        where(): string {
          return ta.currentInstance()!.node;
        }
      },
    );
    const nodes = [startNode("a"), startNode("b"), startNode("c")];
    const mesh = new ta.Mesh(nodes.map((n) => n.meshNode()));
    try {
      const ran = await mesh.run(async () => {
        const r = Three.init();
        assert.deepEqual((await Promise.all([r.where.go(), r.where.go(), r.where.go()])).sort(), ["a", "b", "c"]);
        await nodes[1].server.close(); // b is lost: its connection drops
        const probe = await r.where.go().catch(() => "lost"); // the link knows it by now
        return [probe, ...await Promise.all(Array.from({ length: 10 }, () => r.where.go()))];
      });
      const probe = ran.shift();
      const count = (node: string) => ran.filter((n) => n === node).length;
      assert.deepEqual([count("a"), count("b"), count("c")], [5, 0, 5], "spread over the replicas that are up");
      const stats = mesh.stats();
      const state = Object.fromEntries(stats.instances.map((i) => [i.node, i.state]));
      assert.deepEqual(state, { a: "ready", b: "lost", c: "ready" });
      assert.deepEqual(stats.nodes.map((n) => [n.name, n.lost]), [["a", false], ["b", true], ["c", false]]);
      const calls = Object.fromEntries(stats.instances.map((i) => [i.node, i.calls]));
      // the first three calls ran one on each node; the probe ran on a sibling, or failed on b
      const probeRan = probe === "a" || probe === "c";
      assert.deepEqual(
        { ac: calls.a + calls.c, b: calls.b },
        { ac: 12 + (probeRan ? 1 : 0), b: probeRan ? 1 : 2 },
        "every call is counted where it ran",
      );
    } finally {
      await mesh.close();
      await stopNodes(...nodes);
    }
  },
);

/**
 * A TCP proxy to `port` that can freeze like a SIGSTOPped node process: the kernel still accepts
 * connections, nothing answers. Counts the connections accepted while frozen.
 */
async function freezingProxy(port: number) {
  let frozen = false, acceptedWhileFrozen = 0;
  const sockets: Socket[] = [];
  const server = createServer((client) => {
    sockets.push(client);
    client.on("error", () => {});
    if (frozen) {
      acceptedWhileFrozen++;
      client.pause();
      return;
    }
    const upstream = connect(port, "127.0.0.1");
    sockets.push(upstream);
    upstream.on("error", () => {});
    client.on("data", (d) => frozen || upstream.write(d));
    upstream.on("data", (d) => frozen || client.write(d));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    freeze: () => (frozen = true),
    get acceptedWhileFrozen() {
      return acceptedWhileFrozen;
    },
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const Hung = ta.service(
  { name: "FailoverHung", replicas: 2, maxConcurrency: 2 },
  class FailoverHung {
    where(): string {
      return ta.currentInstance()!.node;
    }
    async slow(): Promise<void> {
      await held.promise;
    }
  },
);

test(
  "mesh.close() does not try to reach a node it took for lost (hung: it accepts connections, answers nothing) once per instance",
  T,
  async () => {
    held = gate();
    const node = new NodeServer({ name: "n" });
    const served = await serveFrames(node.handler, { hostname: "127.0.0.1", port: 0 });
    const proxy = await freezingProxy(served.port);
    const mesh = new ta.Mesh([new ta.MeshNode("n", { endpoint: `ws://127.0.0.1:${proxy.port}` })], {
      keepaliveMs: 100,
      lostAfterMs: 500,
    });
    try {
      const err = await mesh.run(async () => {
        const h = Hung.init();
        await Promise.all([h.where.go(), h.where.go()]); // two instances on the node
        const call = h.slow.go();
        proxy.freeze();
        return await rejection(call);
      });
      assert.ok(err instanceof ta.NodeLostError, `the call fails with NodeLostError, got ${err}`);
      await mesh.close();
      assert.ok(proxy.acceptedWhileFrozen <= 1, `close connected ${proxy.acceptedWhileFrozen} times to a lost node`);
    } finally {
      held.open();
      await mesh.close();
      await proxy.close();
      await node.drain({ graceMs: 0 });
      await served.close();
    }
  },
);

test(
  "with retries, a call a full node refuses (OverloadedError) goes to a sibling replica with room first; refused by all, its retries pause and the error says they were spent; without retries the refusal is its error",
  T,
  async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const body = class {
      async hold(): Promise<string> {
        started();
        await held;
        return ta.currentInstance()!.node;
      }
      where(i: number): string {
        return `${i}@${ta.currentInstance()!.node}`;
      }
    };
    const Retried = ta.service({ name: "FailoverFullRetried", replicas: 2, retries: 3 }, body);
    const Plain = ta.service({ name: "FailoverFullPlain", replicas: 2 }, body);
    const Alone = ta.service({ name: "FailoverFullAlone", retries: 2 }, body);
    const a = startNode("a", { maxInFlight: 1 }), b = startNode("b");
    const mesh = new ta.Mesh([a.meshNode(), b.meshNode()]);
    try {
      await mesh.run(async () => {
        const rep = Retried.init(), plain = Plain.init();
        assert.deepEqual(await Promise.all([rep.where.go(0), rep.where.go(1)]), ["0@a", "1@b"]);
        assert.deepEqual(await Promise.all([plain.where.go(0), plain.where.go(1)]), ["0@a", "1@b"]);
        const alone = Alone.init(); // on a (the mesh places it on the first node)
        assert.equal(await alone.where.go(0), "0@a");
        // one call holds node a's only slot: calls routed to replica 0 are refused there
        const first = rep.hold.go();
        await running;
        const more = await Promise.all([2, 3, 4, 5].map((i) => rep.where.go(i)));
        assert.deepEqual(more, ["2@b", "3@b", "4@b", "5@b"], "node b had room for all of them");
        const refused = await Promise.allSettled([2, 3].map((i) => plain.where.go(i)));
        assert.deepEqual(refused.map((r) => r.status).sort(), ["fulfilled", "rejected"]);
        const noRetries = (refused.find((r) => r.status === "rejected") as PromiseRejectedResult).reason;
        assert.ok(noRetries instanceof ta.OverloadedError, String(noRetries));
        assert.match(noRetries.message, /^Node "a" refused a call to where: /);
        const spent = await rejection(alone.where.go(1)); // no sibling: its retries pause, then fail
        assert.ok(spent instanceof ta.OverloadedError, String(spent));
        assert.match(spent.message, /^Node "a" refused a call to where: .* \(also after 2 pauses, its retries\)$/);
        release();
        assert.equal(await first, "a");
      });
      const calls = Object.fromEntries(
        mesh.stats().instances.filter((i) => i.service === "FailoverFullRetried").map((i) => [i.node, i.calls]),
      );
      assert.deepEqual(calls, { a: 2, b: 5 }, "calls are counted where they ran");
    } finally {
      release();
      await mesh.close();
      await stopNodes(a, b);
    }
  },
);
