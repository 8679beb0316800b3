// ta.put values on nodes (stored_puts.ts), with nodes in this process over the in-memory transport
// (which encodes every frame): a large put value crosses the driver's links once, is pulled node
// to node, and is freed with its ref or its mesh. Counted in frames and bytes, never timed.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../mod.ts";
import { frameBytes } from "../core/codec.ts";
import { serveFrames } from "../adapters/serve.ts";
import { eventually } from "../core/_test_utils.ts";
import { NodeServer } from "./node_server.ts";
import { serveInMemory } from "./in_memory.ts";
import { decodeDriverMessage } from "./protocol.ts";
import type { FrameHandler } from "./transport.ts";

const T = { timeout: 300_000 };
const N = 256 * 1024; // a 1 MiB Float32Array

const spSum = ta.op({ name: "spSum", remote: true }, (a: Float32Array, i: number) => {
  if (!(a instanceof Float32Array) || a.length !== N) throw new TypeError(`expected the put array, got ${String(a)}`);
  return a[0] + a[N - 1] + i;
});
const spLength = ta.op({ name: "spLength", remote: true }, (a: Float32Array) => a.length);
/** Two replicas, spread over the two nodes of the first test. */
const SpPair = ta.service(
  { name: "SpPair", replicas: 2 },
  class SpPair {
    sum(a: Float32Array, i: number): number {
      return a[0] + a[N - 1] + i;
    }
  },
);
const SpHolder = ta.service(
  { name: "SpHolder" },
  class SpHolder {
    sum(a: Float32Array, i: number): number {
      return a[0] + a[N - 1] + i;
    }
  },
);

/** A promise and what settles it. */
function gate(): { promise: Promise<void>; open(): void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}
/** Opened by the test that holds spHeld's calls (the nodes run in this process). */
let spGate = gate();
let spHeldStarted = gate();
const spHeld = ta.op({ name: "spHeld", remote: true }, async (a: Float32Array) => {
  spHeldStarted.open();
  await spGate.promise;
  return a.length;
});

/** Bytes (requests and their replies) and frames a node's handler saw, by message type. */
interface Traffic {
  bytes: Map<string, number>;
  frames: Map<string, number>;
}

function counted(handler: FrameHandler, t: Traffic): FrameHandler {
  return async (frame, peer) => {
    const type = decodeDriverMessage(frame).t;
    t.frames.set(type, (t.frames.get(type) ?? 0) + 1);
    const reply = await handler(frame, peer);
    t.bytes.set(type, (t.bytes.get(type) ?? 0) + frameBytes(frame) + (reply === undefined ? 0 : frameBytes(reply)));
    return reply;
  };
}

interface Node {
  node: NodeServer;
  endpoint: string;
  t: Traffic;
}

async function withNodes(
  names: string[],
  fn: (nodes: Node[]) => Promise<void>,
  options: { objectStoreBytes?: number } = {},
): Promise<void> {
  const nodes = names.map((name) => {
    const node = new NodeServer({ name, ...options });
    const t: Traffic = { bytes: new Map(), frames: new Map() };
    return { node, server: serveInMemory(name, counted(node.handler, t)), t };
  });
  try {
    await fn(nodes.map((n) => ({ node: n.node, endpoint: n.server.endpoint, t: n.t })));
  } finally {
    for (const n of nodes) {
      await n.node.drain();
      await n.server.close();
    }
  }
}

/** What the driver sent and received on its links: calls and stores (pulls are node to node). */
function driverBytes(nodes: Node[]): number {
  return nodes.reduce((s, n) => s + (n.t.bytes.get("call") ?? 0) + (n.t.bytes.get("store") ?? 0), 0);
}

test(
  "put: a 1 MiB value passed to 1,000 calls on two nodes crosses the driver's links once; the other node pulls it",
  T,
  async () => {
    await withNodes(["sp-a", "sp-b"], async (nodes) => {
      await using mesh = new ta.Mesh(nodes.map((n) => new ta.MeshNode(n.node.name, { endpoint: n.endpoint })));
      const value = new Float32Array(N).fill(0.5);
      const ref = ta.put(value);
      const pair = SpPair.init();
      const out = await mesh.run(() =>
        ta.all(Array.from({ length: 1000 }, (_, i) => (i % 2 === 0 ? spSum.go(ref, i) : pair.sum.go(ref, i))))
      );
      assert.deepEqual(out, Array.from({ length: 1000 }, (_, i) => 1 + i));
      const stores = nodes.reduce((s, n) => s + (n.t.frames.get("store") ?? 0), 0);
      assert.equal(stores, 1, "the value was stored once");
      const through = driverBytes(nodes);
      assert.ok(through > 4 * N, `${through} bytes through the driver: less than the value itself`);
      assert.ok(through < 2 * 4 * N, `${through} bytes through the driver for 1,000 calls of a ${4 * N}-byte value`);
      // both nodes got calls, and the one without the copy pulled it from the other
      const calls = nodes.map((n) => n.t.frames.get("call") ?? 0);
      assert.ok(calls.every((c) => c > 0), `calls per node: ${calls}`);
      const holder = nodes.find((n) => n.t.frames.get("store") === 1)!;
      assert.ok((holder.t.bytes.get("fetch") ?? 0) > 4 * N, "the other node did not pull the value from its holder");
      assert.equal(holder.node.objectStats().objects, 1);
      assert.equal(await ref, value);
    });
  },
);

test("put: a value stored on a node is freed when its ref is collected, and when the mesh closes", T, async () => {
  await withNodes(["sp-gc"], async ([n]) => {
    await using mesh = new ta.Mesh([new ta.MeshNode("sp-gc", { endpoint: n.endpoint })]);
    const holder = SpHolder.init();
    // made and dropped inside a function: nothing holds the ref or the value once it returned
    const use = async (fill: number) => {
      const ref = ta.put(new Float32Array(N).fill(fill));
      const out = await mesh.run(() => ta.all(Array.from({ length: 20 }, (_, i) => holder.sum.go(ref, i))));
      assert.deepEqual(out, Array.from({ length: 20 }, (_, i) => 2 * fill + i));
    };
    await use(1);
    await use(2);
    assert.equal(n.t.frames.get("store"), 2);
    let garbage: unknown = undefined;
    const empty = await eventually(() => {
      for (let i = 0; i < 20; i++) garbage = Array.from({ length: 100_000 }, (_, j) => ({ j }));
      return n.node.objectStats().objects === 0;
    }, 60_000);
    assert.ok(empty, `the node still holds ${n.node.objectStats().objects} put values after their refs were dropped`);
    assert.equal(n.node.objectStats().bytes, 0);
    assert.ok(garbage !== undefined);
    // one still held goes when its mesh closes
    const kept = ta.put(new Float32Array(N).fill(3));
    assert.equal(await mesh.run(() => holder.sum.go(kept, 0)), 6);
    assert.equal(n.node.objectStats().objects, 1);
    await mesh.close();
    assert.equal(n.node.objectStats().objects, 0, "closing the mesh left the put value on the node");
  });
});

test(
  "put: a small value travels with each call (no store); a mesh with keepResultsAbove: Infinity stores none",
  T,
  async () => {
    await withNodes(["sp-small"], async ([n]) => {
      for (
        const [value, options] of [[new Float32Array(1000), {}], [new Float32Array(N), {
          keepResultsAbove: Infinity,
        }]] as const
      ) {
        await using mesh = new ta.Mesh([new ta.MeshNode("sp-small", { endpoint: n.endpoint })], options);
        const ref = ta.put(value);
        assert.deepEqual(await mesh.run(() => ta.all([spLength.go(ref), spLength.go(ref)])), [
          value.length,
          value.length,
        ]);
      }
      assert.equal(n.t.frames.get("store") ?? 0, 0);
      assert.equal(n.node.objectStats().objects, 0);
    });
  },
);

test(
  "put: a node that freed the stored value (the driver's lease there expired) gets it stored again, and the call is answered",
  T,
  async () => {
    await withNodes(["sp-forget"], async ([n]) => {
      await using mesh = new ta.Mesh([new ta.MeshNode("sp-forget", { endpoint: n.endpoint })]);
      const holder = SpHolder.init();
      const ref = ta.put(new Float32Array(N).fill(1));
      assert.equal(await mesh.run(() => holder.sum.go(ref, 1)), 3);
      // the node frees what the driver's lease holds (as when the lease expired)
      const store = (n.node as unknown as { objects: { owners(): string[]; freeOwner(o: string): number } }).objects;
      for (const owner of store.owners()) store.freeOwner(owner);
      assert.equal(n.node.objectStats().objects, 0);
      assert.equal(await mesh.run(() => holder.sum.go(ref, 2)), 4);
      assert.equal(n.t.frames.get("store"), 2, "the value was stored again");
      assert.equal(n.node.objectStats().objects, 1);
    });
  },
);

test(
  "put: a node whose object store cannot keep the value gets it with each call, and every call is answered",
  T,
  async () => {
    await withNodes(["sp-full"], async ([n]) => {
      await using mesh = new ta.Mesh([new ta.MeshNode("sp-full", { endpoint: n.endpoint })]);
      const holder = SpHolder.init();
      const ref = ta.put(new Float32Array(N).fill(1));
      // the first calls are sent behind a store that is refused: they are sent again with the value
      const out = await mesh.run(() => ta.all(Array.from({ length: 20 }, (_, i) => holder.sum.go(ref, i))));
      assert.deepEqual(out, Array.from({ length: 20 }, (_, i) => 2 + i));
      assert.equal(await mesh.run(() => holder.sum.go(ref, 100)), 102);
      assert.equal(n.t.frames.get("store"), 1, "the store was tried once");
      assert.equal(n.node.objectStats().objects, 0);
    }, { objectStoreBytes: 1024 });
  },
);

test(
  "put over HTTP (no order between requests): calls that overtake the store wait for it on the node; one store",
  T,
  async () => {
    const nodes = ["sp-http-a", "sp-http-b"].map((name) => {
      const node = new NodeServer({ name });
      const t: Traffic = { bytes: new Map(), frames: new Map() };
      return { node, t, served: serveFrames(counted(node.handler, t), { port: 0, hostname: "127.0.0.1" }) };
    });
    try {
      const urls = await Promise.all(nodes.map(async (n) => (await n.served).url));
      await using mesh = new ta.Mesh(
        nodes.map((n, i) => new ta.MeshNode(n.node.name, { endpoint: urls[i] })),
        { transport: "http" },
      );
      const pair = SpPair.init();
      const ref = ta.put(new Float32Array(N).fill(0.5));
      const out = await mesh.run(() => ta.all(Array.from({ length: 100 }, (_, i) => pair.sum.go(ref, i))));
      assert.deepEqual(out, Array.from({ length: 100 }, (_, i) => 1 + i));
      assert.equal(nodes.reduce((s, n) => s + (n.t.frames.get("store") ?? 0), 0), 1, "the value was stored once");
      const through = nodes.reduce((s, n) => s + (n.t.bytes.get("call") ?? 0) + (n.t.bytes.get("store") ?? 0), 0);
      assert.ok(through < 2 * 4 * N, `${through} bytes through the driver for 100 calls of a ${4 * N}-byte value`);
    } finally {
      for (const n of nodes) {
        await n.node.drain();
        await (await n.served).close();
      }
    }
  },
);

test("put: a released put ref frees its copy stored on a node at once, as a released result does", T, async () => {
  await withNodes(["sp-release"], async ([n]) => {
    await using mesh = new ta.Mesh([new ta.MeshNode("sp-release", { endpoint: n.endpoint })]);
    const value = new Float32Array(N);
    await mesh.run(async () => {
      {
        using p = ta.put(value);
        assert.equal(await spLength.go(p), N);
        assert.equal(n.node.objectStats().objects, 1);
      }
      assert.ok(
        await eventually(() => n.node.objectStats().objects === 0, 10_000),
        "the put copy stayed after release",
      );
    });
  });
});

test(
  "put: the copy of a value put twice is freed when its last ref is released; put again, it is stored anew",
  T,
  async () => {
    await withNodes(["sp-release-2"], async ([n]) => {
      await using mesh = new ta.Mesh([new ta.MeshNode("sp-release-2", { endpoint: n.endpoint })]);
      const value = new Float32Array(N);
      await mesh.run(async () => {
        const first = ta.put(value), second = ta.put(value);
        assert.deepEqual(await ta.all([spLength.go(first), spLength.go(second)]), [N, N]);
        assert.equal(n.t.frames.get("store"), 1);
        first.release();
        assert.equal(await spLength.go(new Float32Array(4)), 4); // a round trip after a free the release would send
        assert.equal(n.node.objectStats().objects, 1, "freed while another ref of the value holds it");
        second.release();
        assert.ok(await eventually(() => n.node.objectStats().objects === 0, 10_000), "the put copy stayed");
        {
          using again = ta.put(value);
          assert.equal(await spLength.go(again), N);
          assert.equal(n.t.frames.get("store"), 2, "not stored anew");
          assert.equal(n.node.objectStats().objects, 1);
        }
        assert.ok(await eventually(() => n.node.objectStats().objects === 0, 10_000), "the new copy stayed");
      });
    });
  },
);

test(
  "put: a put ref released while a call that names its copy runs keeps the copy until that call ends",
  T,
  async () => {
    spGate = gate();
    spHeldStarted = gate();
    await withNodes(["sp-release-held"], async ([n]) => {
      await using mesh = new ta.Mesh([new ta.MeshNode("sp-release-held", { endpoint: n.endpoint })]);
      await mesh.run(async () => {
        const p = ta.put(new Float32Array(N));
        const held = spHeld.go(p);
        try {
          await spHeldStarted.promise;
          p.release();
          assert.equal(await spLength.go(new Float32Array(4)), 4); // a round trip after a free the release would send
          assert.equal(n.node.objectStats().objects, 1, "freed while a call in flight names it");
        } finally {
          spGate.open(); // (a failed assertion must not leave the node's drain waiting on the call)
        }
        assert.equal(await held, N);
        assert.ok(await eventually(() => n.node.objectStats().objects === 0, 10_000), "not freed once the call ended");
      });
    });
  },
);
