// The driver side of remote nodes, where its behaviour hangs on a node that answers late, never, or
// as a new process: how long a welcome is trusted, closing bounded by the destroy deadline, and the
// slot a remote call gives back at its deadline.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../mod.ts";
import { eventually, gate, rejection, settlesWithin, sleep } from "../core/_test_utils.ts";
import { serveInMemory } from "./in_memory.ts";
import { NodeServer } from "./node_server.ts";
import { decodeDriverMessage } from "./protocol.ts";
import { linkFor } from "./link_table.ts";
import { NodeLink } from "./link.ts";
import type { Transport, TransportConnection } from "./transport.ts";
import { handleWire } from "./handle_wire.ts";
import { meshRuntime } from "../core/mesh.ts";
import { startRealServer } from "./_test_servers.ts";
import { type AddressInfo, createServer, type Socket } from "node:net";

const Tally = ta.service(
  class RemoteTally {
    n = 0;
    add(k: number) {
      return (this.n += k);
    }
  },
);

let seq = 0;
/** Longer than the bounds on waits below, so that a hang fails with the test's own message. */
const T = { timeout: 30_000 };

test("NodeLink over HTTP trusts a cached welcome until its TTL, then asks again and sees the node restarted", async () => {
  const onGpu = ta.op({ name: "welcomeTtlOnGpu", gpus: 1 }, (x: number) => x + 1);
  let node = new NodeServer({ name: "ttl", gpus: 0 });
  let hellos = 0, calls = 0;
  const server = await startRealServer((frame, peer) => {
    const t = decodeDriverMessage(frame).t;
    if (t === "hello") hellos++;
    if (t === "call") calls++;
    return node.handler(frame, peer);
  });
  const mesh = new ta.Mesh([new ta.MeshNode("ttl", { endpoint: server.endpoint, gpus: 1 })], {
    transport: "http",
    welcomeTtlMs: 60_000,
  });
  try {
    assert.equal(await mesh.run(() => onGpu.go(1)), 2);
    assert.deepEqual({ hellos, calls }, { hellos: 1, calls: 0 }, "the node has no GPU: the op ran in the driver");
    // the node restarts on the same endpoint, now with a GPU; over HTTP no connection drop tells of it
    await node.drain();
    node = new NodeServer({ name: "ttl", gpus: 1 });
    assert.equal(await mesh.run(() => onGpu.go(2)), 3);
    assert.deepEqual({ hellos, calls }, { hellos: 1, calls: 0 }, "within the TTL the cached welcome is trusted");
    // the mesh's link to the node: shorten its TTL (the same link linkFor gave the mesh's calls)
    linkFor(meshRuntime(mesh), "ttl", server.endpoint, {}, handleWire).welcomeTtlMs = 1;
    await sleep(20); // outlasts the TTL
    assert.equal(await mesh.run(() => onGpu.go(3)), 4);
    assert.deepEqual({ hellos, calls }, { hellos: 2, calls: 1 }, "past the TTL it asks again and calls the new node");
  } finally {
    await mesh.close();
    await server.close();
    await node.drain();
  }
});

test(
  "mesh.close against a node that never answers destroy ends at the destroy deadline, sending no more destroys on that link",
  T,
  async () => {
    const node = new NodeServer({ name: "deaf" });
    const name = `deaf-${++seq}`;
    let destroys = 0;
    const server = serveInMemory(name, (frame, peer) => {
      if (decodeDriverMessage(frame).t === "destroy") {
        destroys++;
        return new Promise<Uint8Array>(() => {}); // never answered
      }
      return node.handler(frame, peer);
    });
    const mesh = new ta.Mesh([new ta.MeshNode("deaf", { endpoint: `mem://${name}` })], { destroyTimeoutMs: 50 });
    try {
      const out = await mesh.run(() => Promise.all([Tally.init(), Tally.init(), Tally.init()].map((t) => t.add.go(1))));
      assert.deepEqual(out, [1, 1, 1]);
      assert.equal(await settlesWithin(mesh.close(), 10_000), true, "close does not wait on the destroy for ever");
      assert.equal(destroys, 1, "after one unanswered destroy the link's other instances are left to the lease");
    } finally {
      await server.close();
      await node.drain({ graceMs: 10 });
    }
  },
);

for (
  const [what, scheme] of [["accepts TCP connections and answers nothing", "http"], [
    "takes frames and answers none",
    "ws",
  ]] as const
) {
  test(
    `a ${scheme} endpoint that ${what} fails a service call as unreachable, and mesh.close() ends`,
    T,
    async () => {
      const sockets: Socket[] = [];
      const silent = createServer((socket) => sockets.push(socket)); // accepts, never answers
      await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
      const frozen = await startRealServer(() => new Promise<never>(() => {}), {}, "ws");
      const endpoint = scheme === "http"
        ? `http://127.0.0.1:${(silent.address() as AddressInfo).port}`
        : frozen.endpoint;
      const mesh = new ta.Mesh([new ta.MeshNode("silent", { endpoint })], { keepaliveMs: 100, lostAfterMs: 300 });
      try {
        const err = await rejection(mesh.run(() => Tally.init().add.go(1)));
        assert.ok(err instanceof ta.TransportError && err.reason === "unreachable", String(err));
        assert.match((err as Error).message, /answered nothing, not even a hello within 300 ms/);
        assert.equal(await settlesWithin(mesh.close(), 10_000), true, "close waits on the silent node");
      } finally {
        for (const socket of sockets) socket.destroy();
        await new Promise((resolve) => silent.close(resolve));
        await frozen.close();
      }
    },
  );
}

test(
  "a remote op whose only node refuses the mesh's token fails with AuthError; it does not run in the driver instead",
  T,
  async () => {
    let ranHere = 0;
    const where = ta.op({ name: "authRefusedWhere", remote: true }, () => ++ranHere);
    const node = new NodeServer({ name: "guarded" });
    const name = `guarded-${++seq}`;
    const server = serveInMemory(name, node.handler, { token: "right" });
    const wrong = new ta.Mesh([new ta.MeshNode("guarded", { endpoint: `mem://${name}` })], { token: "wrong" });
    const right = new ta.Mesh([new ta.MeshNode("guarded", { endpoint: `mem://${name}` })], { token: "right" });
    try {
      const err = await wrong.run(() => rejection(where.go()));
      assert.ok(err instanceof ta.AuthError, String(err));
      // with the right token it runs on the node (the same process here: the node's count)
      assert.equal(await right.run(() => where.go()), 1);
      assert.equal(ranHere, 1);
    } finally {
      await wrong.close();
      await right.close();
      await server.close();
      await node.drain({ graceMs: 10 });
    }
  },
);

test(
  "retries of a call on a node run its body retries + 1 times in all (the node retries; the driver only when the node could not run it)",
  T,
  async () => {
    let methodRuns = 0, opRuns = 0;
    const Flaky = ta.service(
      { name: "RetryCountFlaky", retries: 3 },
      class RetryCountFlaky {
        always(): number {
          throw new RangeError(`attempt ${++methodRuns}`);
        }
      },
    );
    const flakyOp = ta.op({ name: "retryCountFlakyOp", remote: true, retries: 2 }, (): number => {
      throw new Error(`op attempt ${++opRuns}`);
    });
    const node = new NodeServer({ name: "retries" });
    const name = `retries-${++seq}`;
    const server = serveInMemory(name, node.handler);
    try {
      await using mesh = new ta.Mesh([new ta.MeshNode("retries", { endpoint: `mem://${name}` })]);
      const failed = await mesh.run(() => rejection(Flaky.init().always.go()));
      assert.ok(failed instanceof ta.OpExecutionError, String(failed));
      assert.match((failed as Error).message, /attempt 4$/);
      assert.equal(methodRuns, 4, "retries: 3 runs the method 4 times");
      const opFailed = await mesh.run(() => rejection(flakyOp.go()));
      assert.match((opFailed as Error).message, /op attempt 3$/);
      assert.equal(opRuns, 3, "retries: 2 runs the op 3 times");
    } finally {
      await server.close();
      await node.drain({ graceMs: 10 });
    }
  },
);

test("a remote call past its deadline gives its slot back at once: with maxConcurrency 1 the next call is sent without a grace", async () => {
  // the deadline covers the quick calls too: 2 s leaves them time on a loaded machine (50 ms did not)
  const Single = ta.service(
    { timeoutMs: 2_000, maxConcurrency: 1 },
    class RemoteSingle {
      stuck() {
        return "stuck";
      }
      quick() {
        return "quick";
      }
    },
  );
  const node = new NodeServer({ name: "slow" });
  const held = gate();
  let heldCalls = 0;
  // a node that does not answer `stuck` (until the test ends): the driver's deadline passes first
  const server = await startRealServer((frame, peer) => {
    const m = decodeDriverMessage(frame);
    if (m.t === "call" && m.method === "stuck") {
      heldCalls++;
      return held.promise.then(() => node.handler(frame, peer));
    }
    return node.handler(frame, peer);
  });
  // over HTTP the driver itself holds an instance to maxConcurrency calls (no pipelining)
  const mesh = new ta.Mesh([new ta.MeshNode("slow", { endpoint: server.endpoint })], { transport: "http" });
  try {
    await mesh.run(async () => {
      const s = Single.init();
      assert.equal(await s.quick.go(), "quick");
      const first = s.stuck.go();
      const second = s.quick.go();
      assert.ok(await eventually(() => heldCalls === 1), "the first call reached the node");
      assert.equal(second.status, "pending", "the second call waits for the instance's one slot");
      assert.ok((await rejection(first)) instanceof ta.TimeoutError);
      assert.equal(second.status, "running", "the slot was given back at the deadline, not after a grace");
      assert.equal(await second, "quick");
      assert.equal(heldCalls, 1, "the node still has not answered the first call");
    });
  } finally {
    held.open();
    await mesh.close();
    await server.close();
    await node.drain({ graceMs: 10 });
  }
});

test(
  "calls to a remote instance past the first runs (no context switch, the call sent without request()'s frame) keep their order, cancel and deadline",
  T,
  async () => {
    const Slow = ta.service(
      { name: `RemoteSlowTally${++seq}`, timeoutMs: 100_000 },
      class RemoteSlowTally {
        n = 0;
        async add(k: number) {
          const v = this.n;
          await sleep(0);
          return (this.n = v + k);
        }
        async hang(ms: number) {
          await sleep(ms);
          return ms;
        }
      },
    );
    const node = new NodeServer({ name: `fast-${seq}` });
    const server = serveInMemory(`fast-${seq}`, node.handler);
    const mesh = new ta.Mesh([new ta.MeshNode(`fast-${seq}`, { endpoint: server.endpoint })], {
      transport: "in_memory",
    });
    try {
      await mesh.run(async () => {
        const s = Slow.init();
        // past the 64 runs in a context of their own (LEAF_RUNS), one after another
        for (let i = 1; i <= 100; i++) assert.equal(await s.add.go(1), i);
        // sent together, on a busy instance (maxConcurrency 1): they queue, in order
        assert.deepEqual(await Promise.all([1, 2, 3].map((k) => s.add.go(k))), [101, 103, 106]);
        // a cancel reaches the node: the call there is cancelled (its body, a plain one, runs on)
        const hung = s.hang.go(60_000);
        await eventually(() => node.activeCalls === 1);
        hung.cancel();
        assert.ok((await rejection(hung)) instanceof ta.CancelledError);
        await eventually(() => node.activeCalls === 0);
      });
      // a deadline (the service's, sent with the call) ends a call that runs past it (1 s: each of
      // the 70 calls before must end within it, with both cores busy too)
      const Timed = ta.service(
        { name: `RemoteTimed${seq}`, timeoutMs: 1_000 },
        class RemoteTimed {
          async hang(ms: number) {
            await sleep(ms);
            return ms;
          }
        },
      );
      await mesh.run(async () => {
        const t = Timed.init();
        for (let i = 0; i < 70; i++) assert.equal(await t.hang.go(0), 0);
        const late = await rejection(t.hang.go(60_000));
        assert.ok(late instanceof ta.CancelledError || late instanceof ta.TimeoutError, String(late));
      });
    } finally {
      await mesh.close();
      await server.close();
      await node.drain({ graceMs: 10 });
    }
  },
);

test("mesh.stats() lists the GPU ids the node gave an instance placed before that node answered", async () => {
  const Gen = ta.service(
    { gpus: 1 },
    class StatsGpuGen {
      g() {
        return (ta.currentInstanceGpus() ?? []).map((d) => d.id);
      }
    },
  );
  const node = new NodeServer({ name: "g", gpus: 2 });
  const server = serveInMemory("stats-gpus-g", node.handler);
  const mesh = new ta.Mesh([new ta.MeshNode("g", { endpoint: server.endpoint })]);
  try {
    const [first, second] = await mesh.run(async () => {
      const a = Gen.init(), b = Gen.init(); // the first placed at once, before the node's welcome
      return [await a.g.go(), await b.g.go()];
    });
    assert.equal(first.length, 1);
    assert.deepEqual(mesh.stats().instances.map((i) => [...i.gpus]), [first, second]);
  } finally {
    await mesh.close();
    await node.drain({ graceMs: 0 });
    await server.close();
  }
});

test("NodeLink.close() does not wait for a connection still being made (a hung node's), and closes it once made", async () => {
  const connecting = gate<TransportConnection>();
  let asked = 0, closed = 0;
  const hung: Transport = {
    name: "websocket",
    connect() {
      asked++;
      return connecting.promise;
    },
  };
  const link = new NodeLink("hung", "ws://hung.invalid:1", hung, {}, handleWire);
  const request = link.request({ t: "ping" }, "pong").then(() => "answered", () => "failed");
  assert.ok(await eventually(() => asked === 1), "the request starts connecting");
  // before, close() awaited the connect (a WebSocket's is bounded only by its 10 s connect timeout)
  await link.close();
  connecting.open({
    endpoint: "ws://hung.invalid:1",
    get closed() {
      return closed > 0;
    },
    request: () => Promise.reject(new Error("closed")),
    notify() {},
    close: () => (closed++, Promise.resolve()),
    onClose: () => () => {},
  });
  assert.ok(await eventually(() => closed === 1), "the connection made after close() is closed");
  assert.equal(await request, "failed");
});

test(
  "a remote method call cancelled before it was sent never runs on the node: held a turn, waiting for its instance, or under a policy",
  T,
  async () => {
    let adds = 0, creates = 0;
    const Acc = ta.service(
      { name: `RemoteCancelAcc${++seq}` },
      class RemoteCancelAcc {
        n = 1;
        add(k: number) {
          adds++;
          return (this.n += k);
        }
        get() {
          return this.n;
        }
      },
    );
    const Retried = ta.service(
      { name: `RemoteCancelRetried${seq}`, retries: 1, timeoutMs: 100_000 },
      class RemoteCancelRetried {
        add() {
          adds++;
          return adds;
        }
      },
    );
    const node = new NodeServer({ name: `unsent-${seq}` });
    let created = gate();
    // a node whose `create` is answered once the test opens the gate: calls wait for their instance
    const server = serveInMemory(`unsent-${seq}`, (frame, peer) => {
      if (decodeDriverMessage(frame).t === "create") {
        creates++;
        return created.promise.then(() => node.handler(frame, peer));
      }
      return node.handler(frame, peer);
    });
    const mesh = new ta.Mesh([new ta.MeshNode(`unsent-${seq}`, { endpoint: server.endpoint })]);
    try {
      await mesh.run(async () => {
        const acc = Acc.init();
        // waiting for the instance the node has not made yet
        const early = acc.add.go(10);
        await eventually(() => creates === 1);
        assert.equal(early.status, "running");
        early.cancel();
        created.open();
        assert.ok((await rejection(early)) instanceof ta.CancelledError);
        assert.equal(await acc.get(), 1);
        // held the one turn every call takes before it leaves (the instance is made, the link up)
        const held = acc.add.go(100);
        await Promise.resolve();
        assert.equal(held.status, "running", "the call started, and has not left yet");
        held.cancel();
        assert.ok((await rejection(held)) instanceof ta.CancelledError);
        assert.equal(await acc.get(), 1, "one instance runs its calls in order: a call sent would have run first");
        // a call under a policy (retries, a deadline), cancelled before it left
        created = gate();
        created.open();
        const retried = Retried.init();
        assert.equal(await retried.add(), 1);
        const once = retried.add.go();
        await Promise.resolve();
        once.cancel();
        assert.ok((await rejection(once)) instanceof ta.CancelledError);
        assert.equal(await retried.add(), 2, "the cancelled call never ran");
        assert.equal(adds, 2);
      });
    } finally {
      created.open();
      await mesh.close();
      await server.close();
      await node.drain({ graceMs: 10 });
    }
  },
);

test("a remote method call queued on the node behind another and cancelled there never runs", T, async () => {
  let adds = 0;
  const running = gate(), release = gate();
  const Queue = ta.service(
    { name: `RemoteCancelQueue${++seq}` },
    class RemoteCancelQueue {
      async hold() {
        running.open();
        await release.promise;
        return "held";
      }
      add() {
        return ++adds;
      }
    },
  );
  const node = new NodeServer({ name: `queued-${seq}` });
  let calls = 0;
  const server = serveInMemory(`queued-${seq}`, (frame, peer) => {
    if (decodeDriverMessage(frame).t === "call") calls++;
    return node.handler(frame, peer);
  });
  const mesh = new ta.Mesh([new ta.MeshNode(`queued-${seq}`, { endpoint: server.endpoint })]);
  try {
    await mesh.run(async () => {
      const q = Queue.init();
      const first = q.hold.go();
      await running.promise;
      const queued = q.add.go();
      assert.ok(await eventually(() => calls === 2), "the second call reached the node");
      queued.cancel();
      assert.ok((await rejection(queued)) instanceof ta.CancelledError);
      release.open();
      assert.equal(await first, "held");
      assert.equal(await q.add(), 1, "the cancelled call never ran");
    });
  } finally {
    release.open();
    await mesh.close();
    await server.close();
    await node.drain({ graceMs: 10 });
  }
});
