// The data plane across real node processes: an object whose node was SIGKILLed before its consumer
// pulled it fails typed (NodeLostError naming the node and the op), or is made again by its op
// when the op has retries (lineage).
import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import * as ta from "../mod.ts";
import { eventually, rejection } from "../core/_test_utils.ts";
import { type NodeProcess, startNodeProcess } from "../adapters/_test_nodes.ts";
import { dpLineageMake, dpLostMake, DpNodeSink } from "./_test_data_plane_app.ts";

/** Registered here only: no node has it, so it runs in this process. */
const dpHereOnly = ta.op({ name: "dpHereOnly", remote: true }, (a: Float32Array) => {
  if (!(a instanceof Float32Array)) throw new TypeError(`expected a Float32Array, got ${String(a)}`);
  return a.length;
});

const APP = fileURLToPath(new URL("./_test_data_plane_app.ts", import.meta.url));
const T = { timeout: 240_000 };
const N = 256 * 1024; // 1 MiB of float32: it stays on the node that made it

async function twoNodes(fn: (a: NodeProcess, mesh: ta.Mesh) => Promise<void>): Promise<void> {
  // A: the only GPU (the makers run there); B: the CPUs the sink needs
  const a = await startNodeProcess(APP, ["--port", "0", "--name", "A", "--gpus", "1", "--cpus", "1"]);
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
