// The data plane across real node processes: an object whose node was SIGKILLed before its consumer
// pulled it fails typed (NodeLostError naming the node and the op), or is made again by its op
// when the op has retries (lineage); a hand-off (a call on B taking the pending result of a call on
// A) is sent to B at once and pulled A → B while A's op still runs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as ta from "../mod.ts";
import { eventually, rejection } from "../core/_test_utils.ts";
import { type NodeProcess, startNodeProcess } from "../adapters/_test_nodes.ts";
import { dpGatedMake, dpLineageMake, dpLostMake, DpNodeSink } from "./_test_data_plane_app.ts";
import { storedObjects } from "./_test_servers.ts";

/** Registered here only: no node has it, so it runs in this process. */
const dpHereOnly = ta.op({ name: "dpHereOnly", remote: true }, (a: Float32Array) => {
  if (!(a instanceof Float32Array)) throw new TypeError(`expected a Float32Array, got ${String(a)}`);
  return a.length;
});

const APP = fileURLToPath(new URL("./_test_data_plane_app.ts", import.meta.url));
const T = { timeout: 240_000 };
const N = 256 * 1024; // 1 MiB of float32: it stays on the node that made it

async function twoNodes(fn: (a: NodeProcess, mesh: ta.Mesh) => Promise<void>, argsOfA: string[] = []): Promise<void> {
  // A: the only GPU (the makers run there); B: the CPUs the sink needs
  const a = await startNodeProcess(APP, ["--port", "0", "--name", "A", "--gpus", "1", "--cpus", "1", ...argsOfA]);
  const b = await startNodeProcess(APP, ["--port", "0", "--name", "B", "--gpus", "0", "--cpus", "8"]);
  const mesh = new ta.Mesh([
    new ta.MeshNode("A", { endpoint: `ws://127.0.0.1:${a.port}`, gpus: 1, cpus: 1 }),
    new ta.MeshNode("B", { endpoint: `ws://127.0.0.1:${b.port}`, gpus: 0, cpus: 8 }),
  ], { lostAfterMs: 10_000 });
  try {
    await fn(a, mesh);
  } finally {
    await mesh.close({ graceMs: 0 });
    a.kill("SIGKILL");
    b.kill("SIGKILL");
    await Promise.all([a.exited, b.exited]);
  }
}

test(
  "an object whose node was SIGKILLed before its consumer pulled it fails the consumer with NodeLostError naming the node and the op",
  T,
  async () => {
    await twoNodes(async (a, mesh) => {
      await mesh.run(async () => {
        const sink = DpNodeSink.init();
        assert.equal(await sink.sum.go(new Float32Array([1, 2])), 3); // placed on B
        const made = dpLostMake.go(N);
        assert.ok(await eventually(() => made.status === "completed", 60_000), "the op did not finish on A");
        a.kill("SIGKILL");
        await a.exited;
        const e = await rejection(sink.sum.go(made));
        assert.ok(e instanceof ta.NodeLostError, String(e));
        assert.equal(e.node, "A");
        assert.match(e.message, /op "dpLostMake"/);
        const fetched = await rejection(made);
        assert.ok(fetched instanceof ta.NodeLostError, String(fetched));
        assert.equal(fetched.node, "A");
        assert.match(fetched.message, /op "dpLostMake"/);
      });
    });
  },
);

test(
  "an object of an op with retries whose node was SIGKILLed is made again (lineage): its consumer and the driver get it",
  T,
  async () => {
    await twoNodes(async (a, mesh) => {
      await mesh.run(async () => {
        const sink = DpNodeSink.init();
        assert.equal(await sink.sum.go(new Float32Array([1, 2])), 3);
        const made = dpLineageMake.go(N);
        assert.ok(await eventually(() => made.status === "completed", 60_000), "the op did not finish on A");
        a.kill("SIGKILL");
        await a.exited;
        assert.equal(await sink.sum.go(made), 3 * N);
        assert.deepEqual(await made, new Float32Array(N).fill(3));
      });
    });
  },
);

test(
  "objects nested in an argument whose node was SIGKILLed: one of an op with retries is made again (lineage), one of an op without fails its consumer with NodeLostError naming the op",
  T,
  async () => {
    await twoNodes(async (a, mesh) => {
      await mesh.run(async () => {
        const sink = DpNodeSink.init();
        assert.equal(await sink.sum.go(new Float32Array([1, 2])), 3); // placed on B
        const lost = dpLostMake.go(N), made = dpLineageMake.go(N);
        for (const r of [lost, made]) {
          assert.ok(await eventually(() => r.status === "completed", 60_000), "the op did not finish on A");
        }
        a.kill("SIGKILL");
        await a.exited;
        const e = await rejection(sink.sumParts.go({ parts: [lost], scale: 1 }));
        assert.ok(e instanceof ta.NodeLostError, String(e));
        assert.equal(e.node, "A");
        assert.match(e.message, /op "dpLostMake"/);
        // passed directly (sink.sum.go(made)) it is made again; nested, it is too
        assert.equal(await sink.sumParts.go({ parts: [made], scale: 1 }), 3 * N);
      });
    });
  },
);

test("a remote-capable op that no node registered runs here and gets a result kept on a node fetched", T, async () => {
  await twoNodes(async (_a, mesh) => {
    await mesh.run(async () => {
      const made = dpLostMake.go(N);
      assert.ok(await eventually(() => made.status === "completed", 60_000), "the op did not finish on A");
      assert.equal(await dpHereOnly.go(made), N);
    });
  });
});

test(
  "results nested in an object argument travel as references: made on A, pulled by B, never fetched by the driver",
  T,
  async () => {
    await twoNodes(async (_a, mesh) => {
      await mesh.run(async () => {
        const sink = DpNodeSink.init();
        assert.equal(await sink.sum.go(new Float32Array([1, 2])), 3); // placed on B
        // settled results (kept on A) nested in an object
        const x = dpLostMake.go(N), y = dpLostMake.go(N);
        assert.ok(await eventually(() => x.status === "completed" && y.status === "completed", 60_000));
        assert.equal(await sink.sumParts.go({ parts: [x, y], scale: 2 }), 2 * 2 * 2 * N);
        // the driver holds them as refs to A's store and never fetched their bytes
        for (const r of [x, y]) {
          const held = (r as unknown as { _value: { fetched?: unknown; node?: string } })._value;
          assert.equal(held.node, "A");
          assert.equal(held.fetched, undefined, "the driver fetched a result it only passed on");
        }
        // a pending result nested in an object: sent at once, B pulls it from A (a hand-off)
        assert.equal(await sink.sumParts.go({ parts: [dpLostMake.go(N)], scale: 1 }), 2 * N);
        // and one nested in an array inside an array
        assert.equal(await sink.sumParts.go({ parts: [[dpLostMake.go(4)][0]], scale: 3 }), 24);
      });
    });
  },
);

/** Bytes through one connection of a {@linkcode countingProxy}: `up` from its client, `down` to it. */
interface Counted {
  up: number;
  down: number;
}

/** A TCP proxy to `port` on 127.0.0.1 that counts each connection's bytes, in the order they were opened. */
async function countingProxy(port: number): Promise<{ port: number; conns: Counted[]; close(): Promise<void> }> {
  const conns: Counted[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const c: Counted = { up: 0, down: 0 };
    conns.push(c);
    const upstream = net.connect(port, "127.0.0.1");
    sockets.add(client).add(upstream);
    client.on("data", (d) => {
      c.up += d.length;
      upstream.write(d);
    });
    upstream.on("data", (d) => {
      c.down += d.length;
      client.write(d);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    for (const s of [client, upstream]) {
      s.on("close", end);
      s.on("error", end);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    conns,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * Nodes A and B as in {@linkcode twoNodes}, each behind a counting proxy (the mesh and B's pulls go
 * through them), the sink placed on B and the driver's connection to A open (A's proxy's first), and
 * a directory for {@linkcode dpGatedMake}'s gate.
 */
async function twoNodesCounted(
  fn: (
    nodes: { a: NodeProcess; toA: Counted[]; toB: Counted[]; dir: string },
    sink: ReturnType<typeof DpNodeSink.init>,
  ) => Promise<void>,
): Promise<void> {
  const a = await startNodeProcess(APP, ["--port", "0", "--name", "A", "--gpus", "1", "--cpus", "1"]);
  const b = await startNodeProcess(APP, ["--port", "0", "--name", "B", "--gpus", "0", "--cpus", "8"]);
  const pa = await countingProxy(a.port), pb = await countingProxy(b.port);
  const dir = mkdtempSync(join(tmpdir(), "ta-handoff-"));
  const mesh = new ta.Mesh([
    new ta.MeshNode("A", { endpoint: `ws://127.0.0.1:${pa.port}`, gpus: 1, cpus: 1 }),
    new ta.MeshNode("B", { endpoint: `ws://127.0.0.1:${pb.port}`, gpus: 0, cpus: 8 }),
  ], { lostAfterMs: 10_000 });
  try {
    await mesh.run(async () => {
      const sink = DpNodeSink.init();
      assert.equal(await sink.sum.go(new Float32Array([1, 2])), 3); // placed on B
      assert.equal((await dpLostMake.go(4)).length, 4); // on A: the driver's connection to it is open
      assert.equal(pa.conns.length, 1, "something besides the driver connected to A");
      await fn({ a, toA: pa.conns, toB: pb.conns, dir }, sink);
    });
  } finally {
    await mesh.close({ graceMs: 0 });
    a.kill("SIGKILL");
    b.kill("SIGKILL");
    await Promise.all([a.exited, b.exited]);
    await pa.close();
    await pb.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const total = (conns: Counted[]) => conns.reduce((n, c) => n + c.up + c.down, 0);

test(
  "a hand-off between node processes: B gets its call and pulls from A while A's op still runs; the result is right and < 1 KiB goes through the driver",
  T,
  async () => {
    await twoNodesCounted(async ({ toA, toB, dir }, sink) => {
      const driverBefore = toA[0].up + toA[0].down + total(toB);
      const sum = sink.sum.go(dpGatedMake.go(N, dir));
      assert.ok(await eventually(() => existsSync(join(dir, "started")), 60_000), "A's op did not start");
      // A's op waits for the gate, so A has not replied: B got its call all the same, and asked A
      // (B's link to A is the second connection through A's proxy)
      const pulled = await eventually(() => toA.length === 2 && toA[1].up > 0, 60_000);
      writeFileSync(join(dir, "open"), "");
      assert.ok(pulled, "B did not pull from A before A's op ended (the call to B waited for A's reply)");
      assert.equal(await sum, 4 * N);
      assert.ok(toA[1].down > 4 * N, `the array did not travel A → B (${toA[1].down} bytes)`);
      const driver = toA[0].up + toA[0].down + total(toB) - driverBefore;
      assert.ok(driver < 1024, `${driver} bytes went through the driver's connections`);
    });
  },
);

test("a hand-off between node processes whose op on A fails rejects the call on B with the op's error", T, async () => {
  await twoNodesCounted(async ({ toA, dir }, sink) => {
    writeFileSync(join(dir, "fail"), "");
    const made = dpGatedMake.go(N, dir);
    const sum = sink.sum.go(made);
    assert.ok(await eventually(() => toA.length === 2 && toA[1].up > 0, 60_000), "B did not pull from A");
    writeFileSync(join(dir, "open"), "");
    const e = await rejection(sum);
    assert.ok(e instanceof Error, String(e));
    assert.match(e.message, /dpGatedMake\(262144\) failed as the test asked/);
    assert.match(String(await rejection(made)), /failed as the test asked/);
  });
});

test(
  "a hand-off between node processes whose node A is SIGKILLed while B waits for the result fails B's call with NodeLostError naming A",
  T,
  async () => {
    await twoNodesCounted(async ({ a, toA, dir }, sink) => {
      const made = dpGatedMake.go(N, dir);
      const sum = sink.sum.go(made);
      // B waits on A: its pull is there, A's op holds the result back
      assert.ok(await eventually(() => toA.length === 2 && toA[1].up > 0, 60_000), "B did not pull from A");
      a.kill("SIGKILL");
      await a.exited;
      const e = await rejection(sum);
      assert.ok(e instanceof ta.NodeLostError, String(e));
      assert.equal(e.node, "A");
      const lost = await rejection(made);
      assert.ok(lost instanceof ta.NodeLostError, String(lost));
      assert.equal(lost.node, "A");
    });
  },
);

test(
  "a loop of 1 MiB hand-offs A → B between node processes that releases each result (`using`) leaves A's store empty; without release A keeps them",
  T,
  async () => {
    await twoNodes(async (a, mesh) => {
      await mesh.run(async () => {
        const sink = DpNodeSink.init();
        assert.equal(await sink.sum.go(new Float32Array([1, 2])), 3); // placed on B
        for (let i = 0; i < 30; i++) {
          using made = dpLostMake.go(N);
          assert.equal(await sink.sum.go(made), 2 * N);
        }
        assert.ok(await eventually(async () => (await storedObjects(a.port)) === 0, 30_000), "A kept released results");
        // the same loop holding its refs (as dropped refs the driver's collector has not reached): A keeps each
        const refs: ta.ObjectRef<Float32Array>[] = [];
        for (let i = 0; i < 30; i++) {
          const made = dpLostMake.go(N);
          refs.push(made);
          assert.equal(await sink.sum.go(made), 2 * N);
        }
        assert.equal(await storedObjects(a.port), 30);
        for (const r of refs) r.release();
        assert.ok(await eventually(async () => (await storedObjects(a.port)) === 0, 30_000), "A kept released results");
      });
    });
  },
);

test(
  "a loop of 400 hand-offs of 1 MiB whose refs are dropped, through a node A whose store holds 128 MiB (127 of them): the driver has its refs collected as they pin A's store, so none fails and A never holds more than 96",
  T,
  async () => {
    const storeBytes = 128 * 1024 * 1024;
    await twoNodes(async (a, mesh) => {
      await mesh.run(async () => {
        const sink = DpNodeSink.init();
        assert.equal(await sink.sum.go(new Float32Array([1, 2])), 3); // placed on B
        let most = 0;
        for (let i = 0; i < 400; i++) {
          // the ref is dropped: nothing releases it, only the driver's collector finds it
          assert.equal(await sink.sum.go(dpLostMake.go(N)), 2 * N);
          most = Math.max(most, await storedObjects(a.port));
        }
        // 128 MiB hold 127 results of 1 MiB (a 128th fails its call with OverloadedError). The
        // driver prompts a collection every 16 MiB its refs pin there; Bun's is synchronous, V8's
        // marks the heap on its own tasks and frees them tens of hand-offs later
        assert.ok(most <= 96, `A held up to ${most} results nobody refers to`);
      });
    }, ["--object-store-bytes", String(storeBytes)]);
  },
);
