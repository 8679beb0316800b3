import { after, test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../../mod.ts";
import { gpu, registerWebGpu, webgpuGpuDevices } from "./gpu.ts";
import { defineKernel } from "./kernel.ts";
import { GpuDeviceLostError } from "./errors.ts";
import { noGpu } from "./_test_utils.ts";
import { releaseGpuDevices } from "./detect.ts";

// Destroy the cached device when this file is done, so none outlives its tests.
after(() => releaseGpuDevices());

const scale = defineKernel({
  name: "scale",
  code: `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(WORKGROUP_SIZE_X)
fn main(@builtin(global_invocation_id) id: vec3u) {
  if (id.x < arrayLength(&y)) { y[id.x] = 2.0 * x[id.x]; }
}`,
  workgroupSize: [64],
  sizes: ["n"],
  bindings: {
    x: { kind: "input", type: "f32", length: ({ n }) => n },
    y: { kind: "output", type: "f32", length: ({ n }) => n },
  },
  workgroups: ({ n }) => Math.ceil(n / 64),
});

const Doubler = ta.service(
  { gpus: 1 },
  class GpuTestDoubler {
    device: Promise<GPUDevice> = gpu();
    async double(values: number[]): Promise<number[]> {
      const { y } = await scale.run(await gpu(), { x: new Float32Array(values) }, { sizes: { n: values.length } });
      return [...y];
    }
    async sameDeviceAsConstructor(): Promise<boolean> {
      return (await this.device) === (await gpu());
    }
    async destroyDevice(): Promise<void> {
      (await gpu()).destroy();
    }
  },
);

test(
  "a gpus: 1 service placed on a WebGPU node gets a GPUDevice from gpu() and runs a kernel",
  { skip: noGpu },
  async () => {
    const gpus = await webgpuGpuDevices();
    await using mesh = new ta.Mesh([new ta.MeshNode("gpu-node", { gpus: gpus.slice(0, 1) })]);
    const { out, same } = await mesh.run(async () => {
      const d = Doubler.init();
      const out = await d.double.go([1, 2, 3.5]);
      return { out, same: await d.sameDeviceAsConstructor() };
    });
    assert.deepEqual(out, [2, 4, 7]);
    assert.equal(same, true);
  },
);

test("a second gpus: 1 instance on a 1-GPU WebGPU node is a PlacementError", { skip: noGpu }, async () => {
  const gpus = await webgpuGpuDevices();
  await using mesh = new ta.Mesh([new ta.MeshNode("gpu-node", { gpus: gpus.slice(0, 1) })]);
  await mesh.run(async () => {
    Doubler.init();
    assert.throws(() => Doubler.init(), ta.PlacementError);
  });
});

test("a service whose GPU device is lost fails its call with the loss, and a re-created instance works", {
  skip: noGpu,
}, async () => {
  const gpus = await webgpuGpuDevices();
  await using mesh = new ta.Mesh([
    new ta.MeshNode("gpu-node", { gpus: gpus.slice(0, 1) }),
    new ta.MeshNode("spare", { gpus: gpus.slice(0, 1) }),
  ]);
  await mesh.run(async () => {
    const first = Doubler.init();
    await first.destroyDevice.go();
    const err = await first.double.go([1]).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof ta.OpExecutionError, String(err));
    assert.ok(err.cause instanceof GpuDeviceLostError, String(err.cause));
    assert.match(err.message, /GPU device lost: destroyed/);
    const second = Doubler.init();
    assert.deepEqual(await second.double.go([5]), [10]);
  });
});

test("gpu() outside a service rejects, saying where it must be called", async () => {
  await assert.rejects(gpu(), { message: /gpu\(\) must be called inside a service instance's constructor or method/ });
});

test("registerWebGpu makes ta.devices() report the WebGPU adapters", { skip: noGpu }, async () => {
  const off = registerWebGpu();
  try {
    const found = (await ta.devices()).filter((d): d is ta.GpuDevice => d instanceof ta.GpuDevice);
    const webgpu = found.filter((g) => g.meta.source === "webgpu");
    assert.equal(webgpu.length, (await webgpuGpuDevices()).length);
    assert.ok(webgpu.every((g) => typeof g.meta.webgpuAdapterIndex === "number" && g.name.length > 0));
  } finally {
    off();
  }
});

test("gpu() in a gpus: 1 service on a runtime without WebGPU rejects with the reason", {
  skip: !noGpu && "this runtime has a WebGPU adapter",
}, async () => {
  const Probe = ta.service(
    { gpus: 1 },
    class GpuTestProbe {
      async device(): Promise<string> {
        return String(await gpu());
      }
    },
  );
  await using mesh = new ta.Mesh([new ta.MeshNode("declared-gpu", { gpus: 1 })]);
  const err = await mesh.run(() => Probe.init().device.go()).then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof ta.OpExecutionError, String(err));
  assert.match(
    err.message,
    /gpu\(\): service "GpuTestProbe" was assigned GPU 0 \(gpu0\), but this runtime has no navigator\.gpu/,
  );
});
