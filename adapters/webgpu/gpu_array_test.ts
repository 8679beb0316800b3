// GpuArray: its checks, its copy, and what a node does with one that a call's result holds (read
// back when it leaves, at any depth; destroyed when the node's store frees the result).
import { after, test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../../mod.ts";
import { NodeServer } from "../../transports/node_server.ts";
import { serveInMemory } from "../../transports/in_memory.ts";
import { eventually, rejection } from "../../core/_test_utils.ts";
import { GpuArray } from "./gpu_array.ts";
import { releaseGpuDevices, requestGpuDevice } from "./detect.ts";
import { noGpu } from "./_test_utils.ts";

// Destroy the cached device when this file is done, so none outlives its tests.
after(() => releaseGpuDevices());

/** An array on the GPU, nested in each shape a result may take. */
const gaNested = ta.op({ name: "gaNested", gpus: 1 }, async (shape: number) => {
  const g = GpuArray.from(await requestGpuDevice(0), new Float32Array([1, 2, 3]));
  return [{ emb: { docs: g } }, [[g]], new Map([["g", g]]), new Set([[g]])][shape];
});

/** The last array gaKeep made, looked at by the test (the node runs in this process). */
let gaLastMade: GpuArray<"f32"> | undefined;
const gaKeep = ta.op({ name: "gaKeep", gpus: 1 }, async () => {
  gaLastMade = GpuArray.from(await requestGpuDevice(0), new Float32Array([4, 5]));
  return gaLastMade;
});
/** Returns the array it was given: a second result kept on the node that holds it. */
const gaPass = ta.op({ name: "gaPass", gpus: 1 }, (g: GpuArray<"f32">) => ({ again: g }));

async function withGpuNode(name: string, fn: (node: NodeServer, mesh: ta.Mesh) => Promise<void>): Promise<void> {
  const node = new NodeServer({ name, gpus: 1 });
  const server = serveInMemory(name, node.handler);
  try {
    await using mesh = new ta.Mesh([new ta.MeshNode(name, { endpoint: server.endpoint, gpus: 1 })]);
    await fn(node, mesh);
  } finally {
    await node.drain();
    await server.close();
  }
}

test("GpuArray.empty refuses an element type other than f32, u32 and i32, naming it", () => {
  // (refused before the device is asked for anything)
  for (const type of ["f64", "f16", "toString", undefined]) {
    assert.throws(
      () => GpuArray.empty({} as GPUDevice, type as "f32", 2),
      (e: unknown) =>
        e instanceof TypeError &&
        e.message ===
          `Cannot create a GpuArray: its element type must be "f32", "u32" or "i32", got ${
            type === undefined ? "undefined" : JSON.stringify(type)
          }`,
    );
  }
});

test("GpuArray.copy copies the array on its device: each is freed on its own", { skip: noGpu }, async () => {
  const device = await requestGpuDevice(0);
  const a = GpuArray.from(device, new Uint32Array([7, 8, 9]));
  const b = a.copy();
  assert.equal(b.type, "u32");
  assert.deepEqual(await b.read(), new Uint32Array([7, 8, 9]));
  b.destroy();
  assert.deepEqual(await a.read(), new Uint32Array([7, 8, 9]));
  a.destroy();
  assert.throws(() => a.copy(), /Cannot copy GpuArray<u32>\[3\]: it was destroyed/);
  assert.equal(GpuArray.from(device, new Float32Array(0)).copy().length, 0);
});

test(
  "a GpuArray nested at any depth in a result, or in a Map or Set, is read back when the result leaves its node",
  { skip: noGpu },
  async () => {
    await withGpuNode("ga-nested", async (_node, mesh) => {
      const a = new Float32Array([1, 2, 3]);
      const out = await mesh.run(() => Promise.all([0, 1, 2, 3].map(async (shape) => await gaNested.go(shape))));
      assert.deepEqual(out, [{ emb: { docs: a } }, [[a]], new Map([["g", a]]), new Set([[a]])]);
    });
  },
);

test(
  "a GpuArray kept in a node's store is destroyed when the store frees the result, not while another result kept there holds it",
  { skip: noGpu },
  async () => {
    await withGpuNode("ga-free", async (node, mesh) => {
      await mesh.run(async () => {
        const made = gaKeep.go(); // not awaited: kept on the node, on the GPU
        const passed = gaPass.go(made);
        assert.ok(await eventually(() => passed.status === "completed", 10_000));
        assert.equal(node.objectStats().objects, 2);
        const g = gaLastMade!;
        made.release();
        assert.ok(await eventually(() => node.objectStats().objects === 1, 10_000), "the released result stayed");
        assert.deepEqual(await g.read(), new Float32Array([4, 5]), "destroyed while another result holds it");
        passed.release();
        assert.ok(await eventually(() => node.objectStats().objects === 0, 10_000), "the released result stayed");
        const e = await rejection(g.read());
        assert.match(String(e), /Cannot read GpuArray<f32>\[2\]: it was destroyed/);
      });
    });
  },
);
