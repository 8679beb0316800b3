import { after, test } from "node:test";
import assert from "node:assert/strict";
import { releaseGpuDevices, requestGpuDevice, webgpuAdapters, webgpuUnavailableReason } from "./detect.ts";
import { noGpu } from "./_test_utils.ts";

// Destroy the cached device when this file is done, so none outlives its tests.
after(() => releaseGpuDevices());

const hasNavigatorGpu = Boolean((globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu);

test(
  'webgpuAdapters tags each adapter kind "webgpu-adapter" with its index, a software one with description and limits',
  {
    skip: noGpu,
  },
  async () => {
    const adapters = await webgpuAdapters();
    assert.ok(adapters.length > 0);
    adapters.forEach((a, i) => {
      assert.equal(a.index, i);
      assert.equal(a.kind, "webgpu-adapter");
    });
    const software = adapters.find((a) => a.software);
    // This CI has no GPU: Deno finds llvmpipe. On a machine with a GPU there may be none.
    if (!software) return;
    assert.ok(software.description.length > 0);
    assert.ok(software.limits.maxStorageBufferBindingSize > 0);
    assert.ok(software.limits.maxComputeWorkgroupsPerDimension >= 65535);
    assert.equal(await webgpuUnavailableReason(), undefined);
  },
);

test("webgpuAdapters returns [] and a reason instead of throwing where there is no WebGPU", {
  skip: !noGpu && "this runtime has a WebGPU adapter",
}, async () => {
  assert.deepEqual(await webgpuAdapters(), []);
  const reason = await webgpuUnavailableReason();
  assert.ok(reason && reason.length > 10, String(reason));
  if (!hasNavigatorGpu) assert.match(reason!, /navigator\.gpu/);
  await assert.rejects(requestGpuDevice(0), { message: /^Cannot request a GPU device: / });
});

test("requestGpuDevice caches the device per adapter index and rejects a bad index", { skip: noGpu }, async () => {
  const d = await requestGpuDevice(0);
  assert.equal(await requestGpuDevice(0), d);
  await assert.rejects(requestGpuDevice(-1), RangeError);
  await assert.rejects(requestGpuDevice(99), { name: "RangeError", message: /adapter 99: there are \d+/ });
});

test("releaseGpuDevices destroys the cached device after its work, and the next request gets a new one", {
  skip: noGpu,
}, async () => {
  const d = await requestGpuDevice(0);
  const buffer = d.createBuffer({ size: 16, usage: GPUBufferUsage.COPY_DST });
  d.queue.writeBuffer(buffer, 0, new Float32Array([1, 2, 3, 4]));
  await releaseGpuDevices();
  const info = await d.lost;
  assert.equal(info.reason, "destroyed");
  const fresh = await requestGpuDevice(0);
  assert.notEqual(fresh, d);
  assert.equal(await requestGpuDevice(0), fresh);
  await releaseGpuDevices();
  assert.equal((await fresh.lost).reason, "destroyed");
  await releaseGpuDevices(); // nothing cached: a no-op
});
