// The data plane: chains on one node pipelined, large results kept where they were made and pulled
// node to node, freed by their owner. Counted in frames and bytes, never timed.
import { test } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import * as ta from "../mod.ts";
import { frameBytes } from "../core/codec.ts";
import { eventually, gcFunction, rejection } from "../core/_test_utils.ts";
import { requestCollection } from "../core/_runtime.ts";
import { NodeServer, type NodeServerOptions } from "./node_server.ts";
import { inMemoryTransport, serveInMemory } from "./in_memory.ts";
import { decodeDriverMessage, decodeReply, encodeMessage, type ResultMessage } from "./protocol.ts";
import type { FrameHandler } from "./transport.ts";
import { serveFrames } from "../adapters/serve.ts";
import { httpTransport } from "./http.ts";

const T = { timeout: 300_000 };

const dpInc = ta.op({ name: "dpInc", remote: true }, (x: number) => x + 1);
const dpBig = ta.op({ name: "dpBig", remote: true }, (n: number) => new Float32Array(n).fill(1.5));
const dpIncIn = ta.op({ name: "dpIncIn", remote: true }, (o: { v: number[] }) => o.v[0] + 1);
const dpRemade = ta.op({ name: "dpRemade", remote: true, retries: 2 }, (n: number) => new Float32Array(n).fill(2.5));
const DpProducer = ta.service(
  { name: "DpProducer", gpus: 1 },
  class DpProducer {
    make(n: number) {
      return new Float32Array(n).fill(1.5);
    }
    boom(n: number): Float32Array {
      throw new Error(`boom ${n}`);
    }
  },
);
/** Runs of DpConsumer.sum (its nodes are in memory: it runs in this process). */
let dpSumRuns = 0;
const DpConsumer = ta.service(
  { name: "DpConsumer", gpus: 2 },
  class DpConsumer {
    sum(a: Float32Array) {
      dpSumRuns++;
      let s = 0;
      for (let i = 0; i < a.length; i++) s += a[i];
      return s;
    }
    length(a: Float32Array) {
      return a.length;
    }
    pass(a: Float32Array) {
      return a;
    }
    sumParts(x: { parts: Float32Array[] }) {
      let s = 0;
      for (const a of x.parts) for (let i = 0; i < a.length; i++) s += a[i];
      return s;
    }
  },
);

/** Runs of dpTooBig (it runs in this process: its nodes are in memory). */
let dpTooBigRuns = 0;
/** Made on the one node with a GPU (A below); retries: its result could be made again (lineage). */
const dpTooBig = ta.op({ name: "dpTooBig", gpus: 1, retries: 2 }, (n: number) => {
  dpTooBigRuns++;
  return new Float32Array(n).fill(1);
});
const dpTooBigOnce = ta.op({ name: "dpTooBigOnce", gpus: 1 }, (n: number) => new Float32Array(n).fill(1));
/** Its 4 CPUs fit only node B below. */
const DpWideSink = ta.service(
  { name: "DpWideSink", cpus: 4 },
  class DpWideSink {
    length(a: Float32Array): number {
      return a.length;
    }
  },
);

const DpLog = ta.service(
  { name: "DpLog" },
  class DpLog {
    append(text: string, s: string) {
      return text + s;
    }
  },
);

/** Bytes and frames a node's handler saw, by message type (requests and their replies together). */
interface Traffic {
  bytes: Map<string, number>;
  frames: Map<string, number>;
}

function counted(
  handler: FrameHandler,
  traffic: Traffic,
  hold?: (type: string) => Promise<void> | undefined,
): FrameHandler {
  return async (frame, peer) => {
    const type = decodeDriverMessage(frame).t;
    traffic.frames.set(type, (traffic.frames.get(type) ?? 0) + 1);
    const reply = await handler(frame, peer);
    const held = hold?.(type);
    if (held !== undefined) await held;
    traffic.bytes.set(
      type,
      (traffic.bytes.get(type) ?? 0) + frameBytes(frame) + (reply === undefined ? 0 : frameBytes(reply)),
    );
    return reply;
  };
}

function traffic(): Traffic {
  return { bytes: new Map(), frames: new Map() };
}

async function withNode<T>(
  name: string,
  options: Partial<NodeServerOptions>,
  t: Traffic,
  hold: ((type: string) => Promise<void> | undefined) | undefined,
  fn: (node: NodeServer, endpoint: string) => Promise<T>,
): Promise<T> {
  const node = new NodeServer({ name, ...options });
  const server = serveInMemory(`dp-${name}`, counted(node.handler, t, hold));
  try {
    return await fn(node, server.endpoint);
  } finally {
    await node.drain();
    await server.close();
  }
}

test(
  "pipelining: a chain of 10 dependent op calls on one node reaches the node whole while no reply has come back",
  T,
  async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const t = traffic();
    await withNode("pipe", {}, t, (type) => (type === "call" ? gate : undefined), async (_node, endpoint) => {
      await using mesh = new ta.Mesh([new ta.MeshNode("pipe", { endpoint })]);
      const out = mesh.run(() => {
        let r = dpInc.go(0);
        for (let i = 1; i < 10; i++) r = dpInc.go(r);
        return r;
      });
      // every reply is held back: without pipelining, the second call would wait for the first's
      const all = await eventually(() => t.frames.get("call") === 10, 10_000);
      open();
      assert.ok(
        all,
        `${t.frames.get("call") ?? 0} of 10 calls reached the node in one round trip (the rest waited for replies)`,
      );
      assert.equal(await out, 10);
      // the kept results were freed once the calls naming them had left
      assert.ok(await eventually(() => _node.objectStats().keptResults === 0, 10_000), "kept results were not freed");
    });
  },
);

test(
  "pipelining: a chain of 5 dependent method calls on one remote instance reaches the node whole, in order",
  T,
  async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const t = traffic();
    await withNode("pipe-svc", {}, t, (type) => (type === "call" ? gate : undefined), async (_node, endpoint) => {
      await using mesh = new ta.Mesh([new ta.MeshNode("pipe-svc", { endpoint })]);
      const log = DpLog.init();
      const out = mesh.run(() => {
        let r = log.append.go("", "a");
        for (const s of ["b", "c", "d", "e"]) r = log.append.go(r, s);
        return r;
      });
      const all = await eventually(() => t.frames.get("call") === 5, 10_000);
      open();
      assert.ok(all, `${t.frames.get("call") ?? 0} of 5 calls reached the node in one round trip`);
      assert.equal(await out, "abcde");
    });
  },
);

test(
  "data plane: a 1 MiB result made on node A and consumed on node B moves < 1 KiB through the driver",
  T,
  async () => {
    const ta_ = traffic(), tb = traffic();
    await withNode(
      "A",
      { gpus: 1 },
      ta_,
      undefined,
      (_a, endpointA) =>
        withNode("B", { gpus: 2 }, tb, undefined, async (_b, endpointB) => {
          await using mesh = new ta.Mesh([
            new ta.MeshNode("A", { endpoint: endpointA, gpus: 1 }),
            new ta.MeshNode("B", { endpoint: endpointB, gpus: 2 }),
          ]);
          const consumer = DpConsumer.init(); // needs 2 GPUs: only B has them
          const producer = DpProducer.init(); // 1 GPU: only A has one left
          // placed in that order (a service is placed at its first call)
          assert.equal(
            await mesh.run(() => consumer.length.go(new Float32Array(1))),
            1,
          );
          assert.equal((await mesh.run(() => producer.make.go(1))).length, 1);
          for (const t of [ta_, tb]) {
            t.bytes.clear();
            t.frames.clear();
          }
          const n = 256 * 1024; // 1 MiB of float32
          const sum = await mesh.run(() => consumer.sum.go(producer.make.go(n)));
          assert.equal(sum, 1.5 * n);
          const driverBytes = (ta_.bytes.get("call") ?? 0) + (tb.bytes.get("call") ?? 0);
          assert.ok(driverBytes < 1024, `the calls and their replies carried ${driverBytes} bytes through the driver`);
          // the bytes went A → B, once
          assert.equal(ta_.frames.get("fetch"), 1);
          assert.ok((ta_.bytes.get("fetch") ?? 0) > 4 * n, "the array did not travel node to node");
        }),
    );
  },
);

/** A (1 GPU) and B (2 GPUs) in memory, a producer placed on A and a consumer on B. */
async function twoNodes(
  hold: ((type: string) => Promise<void> | undefined) | undefined,
  fn: (
    nodes: { a: NodeServer; b: NodeServer; ta: Traffic; tb: Traffic },
    mesh: ta.Mesh,
    producer: ReturnType<typeof DpProducer.init>,
    consumer: ReturnType<typeof DpConsumer.init>,
  ) => Promise<void>,
): Promise<void> {
  const ta_ = traffic(), tb = traffic();
  await withNode(
    "A",
    { gpus: 1 },
    ta_,
    hold,
    (a, endpointA) =>
      withNode("B", { gpus: 2 }, tb, undefined, async (b, endpointB) => {
        await using mesh = new ta.Mesh([
          new ta.MeshNode("A", { endpoint: endpointA, gpus: 1 }),
          new ta.MeshNode("B", { endpoint: endpointB, gpus: 2 }),
        ]);
        const consumer = DpConsumer.init(); // needs 2 GPUs: only B has them
        const producer = DpProducer.init(); // 1 GPU: only A has one left
        await mesh.run(() => consumer.length.go(new Float32Array(1)));
        await mesh.run(() => producer.make.go(1));
        for (const t of [ta_, tb]) {
          t.bytes.clear();
          t.frames.clear();
        }
        await fn({ a, b, ta: ta_, tb }, mesh, producer, consumer);
      }),
  );
}

test(
  "hand-off: the call to B is sent, and B asks A for the result, while A's call has not answered yet",
  T,
  async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    let holding = false;
    await twoNodes(
      (type) => (holding && type === "call" ? gate : undefined),
      async ({ a, ta: ta_, tb }, mesh, producer, consumer) => {
        holding = true;
        const n = 256 * 1024;
        const sum = mesh.run(() => consumer.sum.go(producer.make.go(n)));
        // A's reply to the driver is held back: B got its call and pulled from A all the same
        const both = await eventually(() => tb.frames.get("call") === 1 && ta_.frames.get("fetch") === 1, 10_000);
        open();
        assert.ok(
          both,
          `with A's reply held, B got ${tb.frames.get("call") ?? 0} calls and A ${ta_.frames.get("fetch") ?? 0} pulls`,
        );
        assert.equal(await sum, 1.5 * n);
        assert.ok((ta_.bytes.get("fetch") ?? 0) > 4 * n, "the array did not travel node to node");
        // the published result is forgotten once the call pulling it ended
        assert.ok(await eventually(() => a.objectStats().published === 0, 10_000), "A still publishes the result");
      },
    );
  },
);

test(
  "hand-off then pipelining: a call on B that names the result of a call on B still pulling its argument from A waits for it",
  T,
  async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    let holding = false;
    await twoNodes(
      (type) => (holding && type === "fetch" ? gate : undefined),
      async ({ tb }, mesh, producer, consumer) => {
        holding = true;
        const n = 256 * 1024;
        // B's first call waits for A's array (its pull held back at A); the second names its result
        const length = mesh.run(() => consumer.length.go(consumer.pass.go(producer.make.go(n))));
        const both = await eventually(() => tb.frames.get("call") === 2, 10_000);
        open();
        assert.ok(both, `B got ${tb.frames.get("call") ?? 0} calls while its pull from A was held`);
        assert.equal(await length, n);
      },
    );
  },
);

test(
  "a call on B that pulls a result kept on A fails with NodeLostError once the driver takes A for lost (its lostAfterMs), not when B's own link would",
  T,
  async () => {
    let frozen = false;
    let thaw!: () => void;
    const ice = new Promise<void>((r) => (thaw = r));
    const ta_ = traffic(), tb = traffic();
    await withNode(
      "A",
      { gpus: 1 },
      ta_,
      () => (frozen ? ice : undefined),
      (_a, endpointA) =>
        withNode("B", { gpus: 2 }, tb, undefined, async (_b, endpointB) => {
          await using mesh = new ta.Mesh([
            new ta.MeshNode("A", { endpoint: endpointA, gpus: 1 }),
            new ta.MeshNode("B", { endpoint: endpointB, gpus: 2 }),
          ], { keepaliveMs: 100, lostAfterMs: 500 });
          const consumer = DpConsumer.init(), producer = DpProducer.init();
          try {
            await mesh.run(async () => {
              await consumer.length.go(new Float32Array(1));
              const made = producer.make.go(256 * 1024); // not awaited: kept on A
              await ta.wait([made]);
              frozen = true; // A answers nothing from now on: not B's pull, not the driver's pings
              const err = await rejection(consumer.sum.go(made));
              assert.ok(err instanceof ta.NodeLostError, String(err));
              assert.equal(err.node, "A");
              // the driver's verdict (B's own link to A would wait for its own keepalive window)
              assert.match(
                err.message,
                /node "B" was pulling a result of it for a call: no reply to keepalive pings for 500 ms/,
              );
            });
          } finally {
            thaw();
          }
        }),
    );
  },
);

test(
  "hand-off: a call cancelled while B pulls its result cancels B's call too: it rejects with the same CancelledError, and its body never runs",
  T,
  async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    let holding = false;
    const runs = dpSumRuns;
    await twoNodes(
      // A's reply to the driver and its answer to B's pull are held back: A's call has finished there
      (type) => (holding && (type === "call" || type === "fetch") ? gate : undefined),
      async ({ ta: ta_, tb }, mesh, producer, consumer) => {
        holding = true;
        try {
          const [big, sum] = await mesh.run(() => {
            const big = producer.make.go(1024);
            return [big, consumer.sum.go(big)] as const;
          });
          assert.ok(await eventually(() => tb.frames.get("call") === 1 && ta_.frames.get("fetch") === 1, 10_000));
          assert.equal(big.cancel(), true);
          const cancelled = await rejection(big);
          assert.ok(cancelled instanceof ta.CancelledError, String(cancelled));
          // B was told before its pull is answered: its call never starts
          assert.ok(await eventually(() => tb.frames.get("cancel") === 1, 10_000), "B got no cancel");
          open();
          // (today: B got no cancel, pulled A's result and summed it: `sum` completed with 1536)
          assert.equal(await rejection(sum), cancelled);
          assert.equal(sum.status, "cancelled");
        } finally {
          open();
        }
      },
    );
    // (the nodes drained: a call that was to run on B has run)
    assert.equal(dpSumRuns, runs, "B ran the call whose input was cancelled");
  },
);

test(
  "pipelining: a call cancelled while its dependent waits on the node for it rejects that dependent with the same CancelledError, even if the node answers it",
  T,
  async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const t = traffic();
    await withNode("pipe-cancel", {}, t, (type) => (type === "call" ? gate : undefined), async (_node, endpoint) => {
      await using mesh = new ta.Mesh([new ta.MeshNode("pipe-cancel", { endpoint })]);
      const [first, second] = await mesh.run(() => {
        const first = dpInc.go(0);
        return [first, dpInc.go(first)] as const;
      });
      try {
        // both reached the node (pipelined) and ran there; their replies are held back
        assert.ok(await eventually(() => t.frames.get("call") === 2, 10_000));
        first.cancel();
        const cancelled = await rejection(first);
        assert.ok(cancelled instanceof ta.CancelledError, String(cancelled));
        open();
        // (today: `second` completed with 2, the value of the call cancelled here)
        assert.equal(await rejection(second), cancelled);
        assert.equal(second.status, "cancelled");
      } finally {
        open();
      }
    });
  },
);

test("hand-off: B's call fails with the error of A's call, and A publishes nothing after", T, async () => {
  await twoNodes(undefined, async ({ a }, mesh, producer, consumer) => {
    await assert.rejects(mesh.run(() => consumer.sum.go(producer.boom.go(7))), /boom 7/);
    // a small result is handed off too (it comes back inline to the driver, and B pulls it)
    assert.equal(await mesh.run(() => consumer.sum.go(producer.make.go(3))), 4.5);
    assert.ok(await eventually(() => a.objectStats().published === 0, 10_000), "A still publishes results");
  });
});

test(
  "pipelining: a chain of 10 op calls, each result nested in the next one's argument, reaches the node whole",
  T,
  async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const t = traffic();
    await withNode("pipe-nested", {}, t, (type) => (type === "call" ? gate : undefined), async (node, endpoint) => {
      await using mesh = new ta.Mesh([new ta.MeshNode("pipe-nested", { endpoint })]);
      const out = mesh.run(() => {
        let r = dpIncIn.go({ v: [0] });
        for (let i = 1; i < 10; i++) r = dpIncIn.go({ v: [r] });
        return r;
      });
      const all = await eventually(() => t.frames.get("call") === 10, 10_000);
      open();
      assert.ok(all, `${t.frames.get("call") ?? 0} of 10 calls reached the node in one round trip`);
      assert.equal(await out, 10);
      assert.ok(await eventually(() => node.objectStats().keptResults === 0, 10_000), "kept results were not freed");
    });
  },
);

test(
  "data plane: 1 MiB results nested in an object argument go A → B as references, not through the driver",
  T,
  async () => {
    await twoNodes(undefined, async ({ ta: ta_, tb }, mesh, producer, consumer) => {
      const n = 256 * 1024;
      const sum = await mesh.run(async () => {
        const x = producer.make.go(n), y = producer.make.go(n);
        await eventually(() => x.status === "completed" && y.status === "completed", 10_000);
        const settled = await consumer.sumParts.go({ parts: [x, y] });
        // one still pending, nested: a hand-off
        return settled + await consumer.sumParts.go({ parts: [producer.make.go(n)] });
      });
      assert.equal(sum, 3 * 1.5 * n);
      const driverBytes = (ta_.bytes.get("call") ?? 0) + (tb.bytes.get("call") ?? 0);
      assert.ok(driverBytes < 2048, `the calls and their replies carried ${driverBytes} bytes through the driver`);
      assert.equal(ta_.frames.get("fetch"), 3);
      assert.ok((ta_.bytes.get("fetch") ?? 0) > 3 * 4 * n, "the arrays did not travel node to node");
    });
  },
);

test("data plane: a node refuses a piped result whose path does not lead to a null of the call's own", T, async () => {
  const t = traffic();
  await withNode("paths", {}, t, undefined, async (_node, endpoint) => {
    const conn = await inMemoryTransport.connect(endpoint);
    try {
      const kept = decodeReply<ResultMessage>(
        await conn.request(encodeMessage({ t: "call", cid: "k", op: "dpBig", args: [10], keepAbove: 0, owner: "o" })),
        "result",
      );
      assert.ok(kept.ok && kept.object !== undefined);
      const call = (args: unknown[], path: unknown[]) =>
        conn.request(
          encodeMessage({
            t: "call",
            cid: `c${Math.random()}`,
            op: "dpIncIn",
            args,
            pipe: [{ i: 0, path, oid: kept.object!.oid }],
          }),
        );
      await assert.rejects(call([{ v: [1] }], ["v", 0]), /hold no null/);
      await assert.rejects(call([{ v: [null] }], ["w", 0]), /hold no null/);
      await assert.rejects(call([{ v: [null] }], ["__proto__"]), /path/);
      await assert.rejects(call([{ v: [null] }], ["v", "length"]), /hold no null/);
      // the right place: the op gets the object's value there (a Float32Array: [0] is 1.5)
      const ok = decodeReply<ResultMessage>(await call([{ v: null }], ["v"]), "result");
      assert.ok(ok.ok);
      assert.equal(ok.value, 2.5);
    } finally {
      await conn.close();
    }
  });
});

test(
  "data plane: awaiting a large result in the driver fetches it once, lazily, and gives the same value",
  T,
  async () => {
    const t = traffic();
    await withNode("lazy", {}, t, undefined, async (node, endpoint) => {
      await using mesh = new ta.Mesh([new ta.MeshNode("lazy", { endpoint })]);
      const { ref } = await mesh.run(() => ({ ref: dpBig.go(100_000) })); // not awaited: a plain object
      const same = await mesh.run(async () => {
        const r = dpBig.go(100_000);
        await eventually(() => r.status === "completed", 10_000);
        assert.equal(t.frames.get("fetch") ?? 0, 0, "fetched before anyone asked");
        assert.equal(node.objectStats().objects, 2); // r's and ref's
        const a = await r, b = await r;
        assert.equal(a, b);
        return a;
      });
      assert.equal(t.frames.get("fetch"), 1);
      assert.deepEqual(same, new Float32Array(100_000).fill(1.5));
      assert.deepEqual(await ref, same);
      assert.equal(t.frames.get("fetch"), 2);
      // a small result still comes back inline
      assert.deepEqual(await mesh.run(() => dpBig.go(4)), new Float32Array(4).fill(1.5));
    });
  },
);

test("data plane: ta.all of results kept on a node fetches each and gives the values, as await does", T, async () => {
  const t = traffic();
  await withNode("all", {}, t, undefined, async (_node, endpoint) => {
    await using mesh = new ta.Mesh([new ta.MeshNode("all", { endpoint })]);
    const got = await mesh.run(async () => {
      const kept = dpBig.go(100_000), small = dpBig.go(4);
      for (const r of [kept, small]) await eventually(() => r.status === "completed", 10_000);
      return await ta.all([kept, small, 7]); // both settled before all() was called
    });
    assert.deepEqual(got, [new Float32Array(100_000).fill(1.5), new Float32Array(4).fill(1.5), 7]);
    const pending = await mesh.run(() => ta.all([dpBig.go(100_000)])); // settles while all() waits
    assert.deepEqual(pending, [new Float32Array(100_000).fill(1.5)]);
  });
});

test(
  "data plane: results kept on a node whose process restarted are lost with it: NodeLostError, or made again by an op with retries",
  T,
  async () => {
    const name = "dp-restart";
    let node = new NodeServer({ name: "R" });
    let server = serveInMemory(name, node.handler);
    try {
      await using mesh = new ta.Mesh([new ta.MeshNode("R", { endpoint: `mem://${name}` })]);
      const { kept, remade } = await mesh.run(async () => {
        const kept = dpBig.go(100_000), remade = dpRemade.go(100_000); // not awaited: kept on R
        for (const r of [kept, remade]) await eventually(() => r.status === "completed", 10_000);
        return { kept, remade };
      });
      assert.equal(node.objectStats().objects, 2);
      // R's process restarts: a new node at the same endpoint, which never held them
      await server.close();
      await node.drain();
      node = new NodeServer({ name: "R" });
      server = serveInMemory(name, node.handler);
      const lost = await mesh.run(() => rejection(kept.then((v) => v)));
      assert.ok(lost instanceof ta.NodeLostError, String(lost));
      assert.match((lost as Error).message, /restarted/);
      assert.deepEqual(await mesh.run(() => remade.then((v) => v)), new Float32Array(100_000).fill(2.5));
    } finally {
      await server.close();
      await node.drain();
    }
  },
);

test("data plane: mesh.close() frees the node's objects; a full store refuses with OverloadedError", T, async () => {
  const t = traffic();
  await withNode("store", { objectStoreBytes: 5 * 400_100 }, t, undefined, async (node, endpoint) => {
    {
      await using mesh = new ta.Mesh([new ta.MeshNode("store", { endpoint })]);
      const refs = await mesh.run(async () => {
        const refs = [1, 2, 3].map(() => dpBig.go(100_000));
        for (const r of refs) await eventually(() => r.status !== "pending" && r.status !== "running", 10_000);
        return refs;
      });
      assert.equal(node.objectStats().objects, 3);
      // (not awaited while they run: an awaited result comes back in its reply and is never stored)
      const more = await mesh.run(async () => {
        const more = [dpBig.go(100_000), dpBig.go(100_000), dpBig.go(100_000)];
        for (const r of more) await eventually(() => r.status !== "pending" && r.status !== "running", 10_000);
        return more;
      });
      const settled = await Promise.allSettled(more.map((r) => r.then(() => "kept")));
      const refused = settled.filter((s) => s.status === "rejected");
      assert.equal(refused.length, 1);
      assert.ok((refused[0] as PromiseRejectedResult).reason instanceof ta.OverloadedError);
      assert.match(String((refused[0] as PromiseRejectedResult).reason.message), /object store holds/);
      // it says what to do
      assert.match(String((refused[0] as PromiseRejectedResult).reason.message), /--object-store-bytes\) in 5 results/);
      assert.match(
        String((refused[0] as PromiseRejectedResult).reason.message),
        /using ref = op.go\(...\)` or `ref.release\(\)`/,
      );
      assert.equal(refs.length, 3);
    }
    assert.equal(node.objectStats().objects, 0, "closing the mesh left objects on the node");
  });
});

test(
  "data plane: awaiting a result kept on a node after mesh.close() freed it fails with CancelledError (mesh-closed), not NodeLostError",
  T,
  async () => {
    const t = traffic();
    await withNode("closed", {}, t, undefined, async (node, endpoint) => {
      const mesh = new ta.Mesh([new ta.MeshNode("closed", { endpoint })]);
      const { big } = await mesh.run(async () => {
        const big = dpBig.go(100_000); // not awaited while it runs: kept on the node
        await ta.wait([big]);
        return { big }; // (a plain object: a ref returned would be awaited)
      });
      assert.equal(big.status, "completed");
      await mesh.close();
      assert.equal(node.objectStats().objects, 0);
      const e = await rejection(big);
      // (today: NodeLostError 'Node "closed" was lost: the result of op "dpBig" ... is gone with it')
      assert.ok(e instanceof ta.CancelledError, String(e));
      assert.equal(e.reason, "mesh-closed");
      assert.match(e.message, /^Op "dpBig" was freed on node "closed" when its mesh closed/);
      assert.equal(t.frames.get("fetch") ?? 0, 0, "a closed mesh asked its node for the value");
    });
  },
);

test(
  "data plane: a large result its caller already awaits comes back in the reply (no second round trip to fetch it); one not awaited stays",
  T,
  async () => {
    const t = traffic();
    await withNode("awaited", {}, t, undefined, async (node, endpoint) => {
      await using mesh = new ta.Mesh([new ta.MeshNode("awaited", { endpoint })]);
      await mesh.run(async () => {
        const direct = await dpBig.go(300_000);
        assert.equal(direct.length, 300_000);
        assert.equal(direct[299_999], 1.5);
        assert.equal(node.objectStats().objects, 0, "an awaited result was stored on the node");
        assert.equal(t.frames.get("fetch") ?? 0, 0, "an awaited result was fetched in a second round trip");
        // a direct service call awaits too
        const log = DpLog.init();
        const text = await log.append("x".repeat(200_000), "y");
        assert.equal(text.length, 200_001);
        assert.equal(node.objectStats().objects, 0);
        assert.equal(t.frames.get("fetch") ?? 0, 0);
        // not awaited while it ran: it stays on the node until asked for, then is fetched once
        const later = dpBig.go(300_000);
        assert.ok(await eventually(() => later.status === "completed", 10_000));
        assert.equal(node.objectStats().objects, 1, "a result nobody awaited yet stays on its node");
        assert.equal((await later).length, 300_000);
        assert.equal(t.frames.get("fetch"), 1);
      });
    });
  },
);

test(
  "data plane: 1,000 results of 1 MiB created and dropped leave the node's store empty and its memory bounded",
  T,
  async () => {
    const MiB = 1024 * 1024;
    const batches = 20, perBatch = 50;
    const gc = gcFunction();
    /** One collection: the runtime's own where it has one, else garbage (plain objects grow the heap). */
    let garbage: unknown = undefined;
    const collect = () => {
      if (gc !== undefined) return gc();
      for (let i = 0; i < 20; i++) garbage = Array.from({ length: 100_000 }, (_, j) => ({ j }));
    };
    const t = traffic();
    await withNode("gc", {}, t, undefined, async (node, endpoint) => {
      await using mesh = new ta.Mesh([new ta.MeshNode("gc", { endpoint })]);
      // (the node lives in this process: its memory is this one's)
      let externalBefore = 0;
      let externalMost = 0;
      for (let batch = 0; batch < batches; batch++) {
        // the refs live only inside this body: once it returned, nothing holds them
        await mesh.run(async () => {
          const refs = Array.from({ length: perBatch }, () => dpBig.go(256 * 1024));
          for (const r of refs) assert.ok(await eventually(() => r.status === "completed", 10_000));
          // each result stayed on the node (never fetched): the store holds them all, 1 MiB each
          const held = node.objectStats();
          assert.equal(held.objects, perBatch, `batch ${batch}: the results were not kept on the node`);
          assert.ok(held.bytes >= perBatch * MiB, `batch ${batch}: the node holds ${held.bytes} bytes`);
        });
        // dropped: each collection runs the driver's finalizers, which tell the node to free them
        const empty = await eventually(() => {
          collect();
          return node.objectStats().objects === 0;
        }, 60_000);
        assert.ok(
          empty,
          `batch ${batch}: the node still holds ${node.objectStats().objects} objects after their refs were dropped`,
        );
        assert.equal(node.objectStats().bytes, 0, `batch ${batch}: bytes left in the node's store`);
        collect();
        // the arrays' bytes are the isolate's external memory (not its RSS: deno test --parallel runs
        // other test files in this process, and their memory counts in its RSS too)
        const external = process.memoryUsage().external;
        if (batch === 0) externalBefore = external; // (after one batch: the runtime's own growth is behind us)
        externalMost = Math.max(externalMost, external);
      }
      // 1,000 MiB went through the store; freed, the process holds about one batch (50 MiB) at most.
      // Kept, it would have grown by the 950 MiB made after the first batch.
      // (bounded only where the runtime collects on demand: the garbage that makes it collect otherwise
      // is itself a few hundred MiB of heap)
      const grewMiB = (externalMost - externalBefore) / MiB;
      if (gc !== undefined) {
        assert.ok(
          grewMiB < 256,
          `external memory grew by ${grewMiB.toFixed(0)} MiB over ${batches - 1} batches of 50 MiB`,
        );
      }
    });
    assert.ok(gc !== undefined || garbage !== undefined);
  },
);

test(
  "data plane: a driver that stops pinging loses its objects with its lease; one that pings keeps them",
  T,
  async () => {
    const t = traffic();
    await withNode("lease", { leaseMs: 300 }, t, undefined, async (node, endpoint) => {
      const conn = await inMemoryTransport.connect(endpoint);
      try {
        const keep = async (owner: string) => {
          const call = { t: "call", cid: `c-${owner}`, op: "dpBig", args: [10], keepAbove: 0, owner };
          const r = decodeReply<ResultMessage>(await conn.request(encodeMessage(call)), "result");
          assert.ok(r.ok && r.object !== undefined, "the result was not kept");
          return r.object.oid;
        };
        const gone = await keep("gone");
        const alive = await keep("alive");
        const fetch = async (oid: string) =>
          decodeReply<ResultMessage>(await conn.request(encodeMessage({ t: "fetch", oid })), "result");
        assert.equal(node.objectStats().objects, 2);
        // "alive" keeps pinging; "gone" is silent: its object goes when its lease expires
        let pinging = true;
        const pings = (async () => {
          while (pinging) {
            await conn.request(encodeMessage({ t: "ping", owner: "alive" }));
            await new Promise((r) => setTimeout(r, 50));
          }
        })();
        const freed = await eventually(() => node.objectStats().objects === 1, 30_000);
        try {
          assert.ok(freed, `the silent driver's object is still there (${node.objectStats().objects} objects)`);
          assert.ok((await fetch(alive)).ok, "the pinging driver's object went too");
          await assert.rejects(fetch(gone), /Unknown object/);
        } finally {
          pinging = false;
          await pings;
        }
      } finally {
        await conn.close();
      }
    });
  },
);

test(
  "data plane: a free for refs the driver's collector found dropped says so (the node then collects its own garbage); a release's does not",
  T,
  async () => {
    // (which: a node on Bun collects after MiBs of such frees, so that its next results reuse their memory)
    const frees: boolean[] = [];
    const node = new NodeServer({ name: "col" });
    const server = serveInMemory("dp-col", (frame, peer) => {
      const m = decodeDriverMessage(frame);
      if (m.t === "free" && m.oids.length > 0) frees.push(m.collected === true);
      return node.handler(frame, peer);
    });
    try {
      await using mesh = new ta.Mesh([new ta.MeshNode("col", { endpoint: server.endpoint })]);
      await mesh.run(async () => {
        const released = dpBig.go(100_000);
        assert.ok(await eventually(() => released.status === "completed", 10_000));
        released.release();
        assert.ok(await eventually(() => node.objectStats().objects === 0, 10_000), "the released result stayed");
      });
      assert.deepEqual(frees, [false]);
      await mesh.run(async () => {
        const dropped = dpBig.go(100_000);
        assert.ok(await eventually(() => dropped.status === "completed", 10_000));
        assert.equal(node.objectStats().objects, 1);
      });
      const freed = await eventually(() => {
        requestCollection(true);
        return node.objectStats().objects === 0;
      }, 60_000);
      assert.ok(freed, "the dropped ref's result stayed on the node");
      assert.deepEqual(frees, [false, true]);
      // a node reads the flag as a boolean, and refuses anything else
      const free = { t: "free", oids: ["x"], cids: [] };
      assert.equal(decodeDriverMessage(encodeMessage({ ...free, collected: true })).t, "free");
      assert.throws(
        () => decodeDriverMessage(encodeMessage({ ...free, collected: "yes" })),
        /"free" collected must be a boolean, got string/,
      );
    } finally {
      await node.drain();
      await server.close();
    }
  },
);

test(
  "release: a released result kept on a node is freed at once, once (not again when its ref is collected); a value held here is released harmlessly",
  T,
  async () => {
    const t = traffic();
    await withNode("rel", {}, t, undefined, async (node, endpoint) => {
      await using mesh = new ta.Mesh([new ta.MeshNode("rel", { endpoint })]);
      await mesh.run(async () => {
        const small = dpBig.go(4);
        assert.equal((await small).length, 4); // inline: nothing on the node to free
        small.release();
        assert.equal(node.objectStats().objects, 0);
        let kept: ta.ObjectRef<Float32Array> | undefined = dpBig.go(100_000);
        assert.ok(await eventually(() => kept!.status === "completed", 10_000));
        assert.equal(node.objectStats().objects, 1);
        kept.release();
        assert.ok(await eventually(() => node.objectStats().objects === 0, 10_000), "the released result stayed");
        kept.release();
        assert.equal(t.frames.get("free"), 1);
        // collected after its release: not freed twice
        const gc = gcFunction();
        kept = undefined;
        if (gc !== undefined) { for (let i = 0; i < 5; i++) gc(), await new Promise((r) => setTimeout(r, 0)); }
        await mesh.run(() => dpInc.go(1)); // a round trip after any free that collection sent
        assert.equal(t.frames.get("free"), 1, "the release and the collection both freed it");
      });
    });
  },
);

test(
  "release: a released result is kept on A while a call on B that carries it runs, and freed when that call ends",
  T,
  async () => {
    let open!: () => void;
    const held = new Promise<void>((r) => (open = r));
    // A's answers to B's pull wait: B's call is in flight meanwhile
    await twoNodes(
      (type) => (type === "fetch" ? held : undefined),
      async ({ a, ta: trafficA }, mesh, producer, consumer) => {
        await mesh.run(async () => {
          const n = 256 * 1024;
          const made = producer.make.go(n);
          assert.ok(await eventually(() => made.status === "completed", 10_000));
          const sum = consumer.sum.go(made);
          assert.ok(await eventually(() => trafficA.frames.get("fetch") === 1, 10_000), "B did not pull from A");
          try {
            made.release();
            await producer.make.go(1); // a round trip to A after a free the release would have sent
            assert.equal(trafficA.frames.get("free") ?? 0, 0, "freed while a call in flight carried it");
            assert.equal(a.objectStats().objects, 1);
          } finally {
            open(); // (a failed assertion must not leave the node's drain waiting on the held pull)
          }
          assert.equal(await sum, 1.5 * n);
          assert.ok(await eventually(() => a.objectStats().objects === 0, 10_000), "not freed once the call ended");
          assert.ok((await rejection(made)) instanceof ta.ReleasedError);
        });
      },
    );
  },
);

/** Set when a dpHeldLength call started; it returns once gates' "held" opens (its node runs in this process). */
let dpHeldStarted: () => void = () => {};
const dpHeldLength = ta.op({ name: "dpHeldLength", remote: true }, async (a: Float32Array) => {
  dpHeldStarted();
  await gates.get("held");
  return a.length;
});

test(
  "release: a released result is kept on its node while a call pipelined to that node that names it runs, and freed when that call ends",
  T,
  async () => {
    let open!: () => void;
    gates.set("held", new Promise<void>((r) => (open = r)));
    const started = new Promise<void>((r) => (dpHeldStarted = r));
    await withNode("rel-piped", {}, traffic(), undefined, async (node, endpoint) => {
      await using mesh = new ta.Mesh([new ta.MeshNode("rel-piped", { endpoint })]);
      await mesh.run(async () => {
        const made = dpBig.go(100_000);
        const held = dpHeldLength.go(made); // sent at once, naming made's result on the node
        try {
          await started;
          assert.ok(await eventually(() => made.status === "completed", 10_000));
          assert.equal(node.objectStats().objects, 1);
          made.release();
          await dpInc.go(1); // a round trip after a free the release would have sent
          assert.equal(node.objectStats().objects, 1, "freed while a call on its node that names it runs");
        } finally {
          open(); // (a failed assertion must not leave the node's drain waiting on the call)
        }
        assert.equal(await held, 100_000);
        assert.ok(await eventually(() => node.objectStats().objects === 0, 10_000), "not freed once the call ended");
      });
    });
  },
);

test(
  "release: a loop of hand-offs A → B that releases each result (`using`) leaves A's store empty; without release A keeps them",
  T,
  async () => {
    await twoNodes(undefined, async ({ a }, mesh, producer, consumer) => {
      const n = 64 * 1024; // 256 KiB: above the inline threshold
      await mesh.run(async () => {
        for (let i = 0; i < 20; i++) {
          using made = producer.make.go(n);
          assert.equal(await consumer.sum.go(made), 1.5 * n);
        }
      });
      assert.ok(await eventually(() => a.objectStats().objects === 0, 10_000), `A holds ${a.objectStats().objects}`);
      // the same loop holding its refs (as dropped refs the collector has not reached yet): A keeps each
      const refs: ta.ObjectRef<Float32Array>[] = [];
      await mesh.run(async () => {
        for (let i = 0; i < 20; i++) {
          const made = producer.make.go(n);
          refs.push(made);
          assert.equal(await consumer.sum.go(made), 1.5 * n);
        }
      });
      assert.equal(a.objectStats().objects, 20);
      for (const r of refs) r.release();
      assert.ok(await eventually(() => a.objectStats().objects === 0, 10_000));
      // released while pending, its consumer on B sent already (a hand-off): B still gets it
      await mesh.run(async () => {
        const sums = [];
        for (let i = 0; i < 20; i++) {
          const made = producer.make.go(n);
          sums.push(consumer.sum.go(made));
          made.release();
        }
        assert.deepEqual(await ta.all(sums), new Array(20).fill(1.5 * n));
      });
      assert.ok(await eventually(() => a.objectStats().objects === 0, 10_000), `A holds ${a.objectStats().objects}`);
    });
  },
);

const HandoffSvc = ta.service(
  { name: "DpHandoffSvc" },
  class DpHandoffSvc {
    where() {
      return ta.currentInstance()!.node;
    }
    make(n: number) {
      return new Float32Array(n).fill(1);
    }
    sum(a: Float32Array) {
      let s = 0;
      for (let i = 0; i < a.length; i++) s += a[i];
      return s;
    }
    async held(a: Float32Array, gate: string) {
      await gates.get(gate);
      return a.length;
    }
  },
);
/** Gates a {@linkcode HandoffSvc.held} call waits on, by name (its node runs in this process). */
const gates = new Map<string, Promise<void>>();

/** Nodes A and B served on real sockets (`scheme` endpoints), a mesh over them, a producer on A and a consumer on B. */
async function handoffNodes(
  scheme: "http" | "ws",
  options: Partial<NodeServerOptions>,
  fn: (
    a: NodeServer,
    mesh: ta.Mesh,
    producer: ReturnType<typeof HandoffSvc.init>,
    consumer: ReturnType<typeof HandoffSvc.init>,
  ) => Promise<void>,
): Promise<void> {
  const a = new NodeServer({ name: "A", ...options }), b = new NodeServer({ name: "B", ...options });
  const sa = await serveFrames(a.handler, { port: 0 }), sb = await serveFrames(b.handler, { port: 0 });
  const mesh = new ta.Mesh([
    new ta.MeshNode("A", { endpoint: `${scheme}://127.0.0.1:${sa.port}` }),
    new ta.MeshNode("B", { endpoint: `${scheme}://127.0.0.1:${sb.port}` }),
  ]);
  try {
    const [x, y] = [HandoffSvc.init(), HandoffSvc.init()];
    const onA = (await mesh.run(() => x.where.go())) === "A";
    const [producer, consumer] = onA ? [x, y] : [y, x];
    assert.equal(await mesh.run(() => consumer.where.go()), "B");
    await fn(a, mesh, producer, consumer);
  } finally {
    await mesh.close();
    await a.drain();
    await b.drain();
    await sa.close();
    await sb.close();
  }
}

for (const scheme of ["http", "ws"] as const) {
  test(
    `hand-off (${scheme}): concurrent hand-offs leave nothing published on the producing node once they ended, also those whose consumer started after the result came back`,
    T,
    async () => {
      await handoffNodes(scheme, {}, async (a, mesh, producer, consumer) => {
        await mesh.run(async () => {
          for (let round = 0; round < 4; round++) {
            // the consumer takes one call at a time: most start once A's result is back, with its value
            const sums = await Promise.all(Array.from({ length: 5 }, () => consumer.sum.go(producer.make.go(25_000))));
            assert.deepEqual(sums, new Array(5).fill(25_000));
          }
        });
        assert.ok(
          await eventually(() => a.objectStats().published === 0, 10_000),
          `A still publishes ${a.objectStats().published} results after the calls pulling them ended`,
        );
      });
    },
  );
}

test(
  "hand-off over HTTP: mesh.close() makes the node forget what it published for calls that had not ended",
  T,
  async () => {
    let open!: () => void;
    gates.set("close", new Promise<void>((r) => (open = r)));
    await handoffNodes("http", {}, async (a, mesh, producer, consumer) => {
      const pulled = mesh.run(() => consumer.held.go(producer.make.go(10), "close")).then(() => undefined, (e) => e);
      assert.ok(await eventually(() => a.objectStats().published === 1, 10_000), "A publishes the result");
      try {
        await mesh.close({ graceMs: 0 }); // the call on B is cancelled
        // the driver said so as it closed: nothing is left for the lease to find
        assert.equal(a.objectStats().published, 0);
        assert.ok((await pulled) instanceof ta.CancelledError);
      } finally {
        open();
      }
    });
  },
);

test(
  "a result published for a driver over HTTP is forgotten when its lease expires (the driver never freed it)",
  T,
  async () => {
    const node = new NodeServer({ name: "A", leaseMs: 200 });
    const served = await serveFrames(node.handler, { port: 0 });
    const conn = await httpTransport.connect(`http://127.0.0.1:${served.port}`);
    try {
      // a driver's hand-off: the call publishes its result under its lease, then the driver is gone
      const call = { t: "call", cid: "c1", op: "dpInc", args: [1], publish: "p:gone-1", owner: "gone-driver" };
      const reply = decodeReply<ResultMessage>(await conn.request(encodeMessage(call)), "result");
      assert.deepEqual(reply, { t: "result", ok: true, value: 2 });
      assert.equal(node.objectStats().published, 1);
      assert.ok(
        await eventually(() => node.objectStats().published === 0, 10_000),
        "the result is still published after its driver's lease expired",
      );
      assert.equal(node.objectStats().publishedBytes, 0);
    } finally {
      await conn.close();
      await node.drain();
      await served.close();
    }
  },
);

test(
  "a published result that came back in its reply counts against the object store's bound while published",
  T,
  async () => {
    const node = new NodeServer({ name: "A", objectStoreBytes: 4096 });
    const served = await serveFrames(node.handler, { port: 0 });
    const conn = await httpTransport.connect(`http://127.0.0.1:${served.port}`);
    const ask = async (message: Record<string, unknown>) =>
      decodeReply<ResultMessage>(await conn.request(encodeMessage(message)), "result");
    try {
      // 1 KiB, no keepAbove: its value comes back in the reply, and the node holds that frame for pulls
      assert.equal((await ask({ t: "call", cid: "c1", op: "dpBig", args: [256], publish: "p:small" })).ok, true);
      const held = node.objectStats().publishedBytes;
      assert.ok(held > 1024 && held < 2048, `${held} bytes counted`);
      // a kept result no longer fits beside it
      const kept = await ask({ t: "call", cid: "c2", op: "dpBig", args: [768], keepAbove: 0 });
      assert.equal(kept.ok, false);
      assert.match(
        String((kept as { error: { message: string } }).error.message),
        /bytes of results published for other nodes/,
      );
      // 8 KiB: more than the whole store, the pull gets the store's error (the caller still got its value)
      const big = await ask({ t: "call", cid: "c3", op: "dpBig", args: [2048], publish: "p:big" });
      assert.equal(big.ok, true);
      const pulled = await ask({ t: "fetch", oid: "p:big" });
      assert.equal(pulled.ok, false);
      assert.match(
        String((pulled as { error: { message: string } }).error.message),
        /larger than its whole object store/,
      );
      assert.equal(node.objectStats().publishedBytes, held);
      await conn.request(encodeMessage({ t: "free", oids: ["p:small", "p:big"], cids: [] }));
      assert.deepEqual([node.objectStats().published, node.objectStats().publishedBytes], [0, 0]);
    } finally {
      await conn.close();
      await node.drain();
      await served.close();
    }
  },
);

test(
  "a kept result too large for its node's frames, pulled by a call on another node, fails that call with the transport's too-large error naming the argument, the sizes and the limit; its node is not taken for lost and its op is not run again",
  T,
  async () => {
    const a = new NodeServer({ name: "A", gpus: 1, cpus: 1 });
    const b = new NodeServer({ name: "B", gpus: 0, cpus: 8 });
    const sa = serveInMemory("dp-too-large-a", a.handler, { maxFrameBytes: 1 << 20 });
    const sb = serveInMemory("dp-too-large-b", b.handler);
    try {
      await using mesh = new ta.Mesh([
        new ta.MeshNode("A", { endpoint: sa.endpoint, gpus: 1, cpus: 1 }),
        new ta.MeshNode("B", { endpoint: sb.endpoint, gpus: 0, cpus: 8 }),
      ]);
      await mesh.run(async () => {
        const sink = DpWideSink.init();
        assert.equal(await sink.length.go(new Float32Array(1)), 1); // placed on B
        // 2 MiB each: pulled from A as it is made (a hand-off), and once kept there (retries: no hand-off)
        for (const made of [dpTooBigOnce.go(512 * 1024), dpTooBig.go(512 * 1024)]) {
          const e = await rejection(sink.length.go(made));
          assert.ok(e instanceof ta.TransportError, String(e));
          assert.equal(e.reason, "too-large");
          assert.match(
            e.message,
            /^Node "B" cannot pull argument 0 of method "length" \((the result of a call|a result kept) on node "A"\) from node "A": it is too large to move between nodes: its \d+ bytes as encoded are over the frame limit of 1048576 bytes\. Raise --max-frame-bytes/,
          );
          assert.doesNotMatch(e.message, /awaiting it here/);
        }
        assert.equal(dpTooBigRuns, 1, "the op was made again (lineage) for a node that was never lost");
        assert.equal(await dpTooBig.go(4).then((v) => v.length), 4, "node A was taken for lost");
      });
    } finally {
      await a.drain();
      await b.drain();
      await sa.close();
      await sb.close();
    }
  },
);
