import { after, test } from "node:test";
import assert from "node:assert/strict";
import { GpuArray } from "./gpu_array.ts";
import { defineKernel } from "./kernel.ts";
import { releaseGpuDevices, requestGpuDevice } from "./detect.ts";
import { GpuDeviceLostError, KernelError } from "./errors.ts";
import { noGpu, randomFloats } from "./_test_utils.ts";

// Destroy the cached device when this file is done, so none outlives its tests.
after(() => releaseGpuDevices());

const ADD_WGSL = `
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> n: u32;
@compute @workgroup_size(WORKGROUP_SIZE_X)
fn main(@builtin(global_invocation_id) id: vec3u) {
  if (id.x < n) { out[id.x] = a[id.x] + b[id.x]; }
}`;

const add = defineKernel({
  name: "vector_add",
  code: ADD_WGSL,
  workgroupSize: [64],
  sizes: ["n"],
  bindings: {
    a: { kind: "input", type: "f32", length: ({ n }) => n },
    b: { kind: "input", type: "f32", length: ({ n }) => n },
    out: { kind: "output", type: "f32", length: ({ n }) => n },
    n: { kind: "uniform", type: "u32", value: ({ n }) => [n] },
  },
  workgroups: ({ n }) => Math.ceil(n / 64),
});

test("Kernel.run adds vectors exactly, reusing the pipeline and buffers across runs", { skip: noGpu }, async () => {
  const device = await requestGpuDevice(0);
  for (const n of [1, 1000, 100_003, 1000]) {
    const a = randomFloats(n, n);
    const b = randomFloats(n, n + 1);
    const { out } = await add.run(device, { a, b }, { sizes: { n } });
    assert.ok(out instanceof Float32Array);
    assert.equal(out.length, n);
    for (let i = 0; i < n; i++) assert.equal(out[i], Math.fround(a[i] + b[i]), `index ${i}`);
  }
});

test("Kernel.run runs concurrent calls on one device independently", { skip: noGpu }, async () => {
  const device = await requestGpuDevice(0);
  const results = await Promise.all([1, 2, 3, 4].map(async (v) => {
    const n = 500;
    const { out } = await add.run(device, { a: new Float32Array(n).fill(v), b: new Float32Array(n).fill(v) }, {
      sizes: { n },
    });
    return out;
  }));
  results.forEach((out, i) => assert.ok(out.every((x) => x === 2 * (i + 1))));
});

test("Kernel.run accepts a GpuArray input kept on the device", { skip: noGpu }, async () => {
  const device = await requestGpuDevice(0);
  const a = GpuArray.from(device, new Float32Array([1, 2, 3]));
  try {
    const { out } = await add.run(device, { a, b: new Float32Array([1, 1, 1]) }, { sizes: { n: 3 } });
    assert.deepEqual([...out], [2, 3, 4]);
  } finally {
    a.destroy();
  }
});

test("Kernel.run rejects a wrong input length naming the kernel and binding", { skip: noGpu }, async () => {
  const device = await requestGpuDevice(0);
  await assert.rejects(add.run(device, { a: new Float32Array(3), b: new Float32Array(4) }, { sizes: { n: 3 } }), {
    name: "RangeError",
    message: 'Kernel "vector_add": input "b" must have 3 elements for sizes {"n":3}, got 4',
  });
});

test("Kernel.run rejects a wrong array type, a missing input and a missing size", { skip: noGpu }, async () => {
  const device = await requestGpuDevice(0);
  const bad = { a: new Int32Array(3), b: new Float32Array(3) } as unknown as { a: Float32Array; b: Float32Array };
  await assert.rejects(add.run(device, bad, { sizes: { n: 3 } }), {
    name: "TypeError",
    message: 'Kernel "vector_add": input "a" must be a Float32Array or GpuArray<f32>, got Int32Array',
  });
  const missing = { a: new Float32Array(3) } as unknown as { a: Float32Array; b: Float32Array };
  await assert.rejects(add.run(device, missing, { sizes: { n: 3 } }), {
    name: "TypeError",
    message: /Kernel "vector_add": missing input "b"/,
  });
  await assert.rejects(add.run(device, { a: new Float32Array(3), b: new Float32Array(3) }), {
    name: "TypeError",
    message: 'Kernel "vector_add": size "n" must be a non-negative integer, got undefined',
  });
});

test("Kernel.run rejects a dispatch over maxComputeWorkgroupsPerDimension", { skip: noGpu }, async () => {
  const device = await requestGpuDevice(0);
  const max = device.limits.maxComputeWorkgroupsPerDimension;
  await assert.rejects(
    add.run(device, { a: new Float32Array(1), b: new Float32Array(1) }, { sizes: { n: 1 }, workgroups: max + 1 }),
    {
      name: "RangeError",
      message: `Kernel "vector_add": dispatch of ${
        max + 1
      }×1×1 workgroups exceeds this device's maxComputeWorkgroupsPerDimension (${max})`,
    },
  );
});

test(
  "Kernel.run rejects WGSL that does not compile with KernelError giving line and message",
  { skip: noGpu },
  async () => {
    const device = await requestGpuDevice(0);
    const broken = defineKernel({
      name: "broken",
      code:
        `@group(0) @binding(0) var<storage, read_write> out: array<f32>;\n@compute @workgroup_size(WORKGROUP_SIZE_X)\nfn main() { out[0] = undefined_thing; }`,
      workgroupSize: [1],
      bindings: { out: { kind: "output", type: "f32", length: () => 1 } },
    });
    const err = await broken.run(device, {}).then(() => undefined, (e) => e);
    assert.ok(err instanceof KernelError, String(err));
    assert.equal(err.kernel, "broken");
    assert.match(err.message, /^Kernel "broken": WGSL compile error:\n {2}3:\d+ .*undefined_thing/s);
  },
);

test("Kernel.run rejects bindings that do not match the WGSL with KernelError", { skip: noGpu }, async () => {
  const device = await requestGpuDevice(0);
  const mismatched = defineKernel({
    name: "mismatched",
    code: ADD_WGSL,
    workgroupSize: [64],
    bindings: { out: { kind: "output", type: "f32", length: () => 1 } },
  });
  await assert.rejects(mismatched.run(device, {}), (e: unknown) => {
    assert.ok(e instanceof KernelError);
    assert.match(e.message, /^Kernel "mismatched": pipeline creation failed/);
    return true;
  });
});

test(
  "Kernel.run fails pending and later calls with GpuDeviceLostError, and a new device works after",
  { skip: noGpu },
  async () => {
    const device = await requestGpuDevice(0);
    const n = 200_000;
    const pending = add.run(device, { a: new Float32Array(n), b: new Float32Array(n) }, { sizes: { n } });
    device.destroy();
    await assert.rejects(pending, (e: unknown) => {
      assert.ok(e instanceof GpuDeviceLostError, String(e));
      assert.match(e.message, /^GPU device lost: destroyed/);
      return true;
    });
    await assert.rejects(
      add.run(device, { a: new Float32Array(1), b: new Float32Array(1) }, { sizes: { n: 1 } }),
      GpuDeviceLostError,
    );
    const fresh = await requestGpuDevice(0);
    assert.notEqual(fresh, device);
    const { out } = await add.run(fresh, { a: new Float32Array([1]), b: new Float32Array([2]) }, { sizes: { n: 1 } });
    assert.equal(out[0], 3);
  },
);

test("Kernel.run reuses pooled buffers: a repeated run of the same shape creates none", { skip: noGpu }, async () => {
  const device = await requestGpuDevice(0);
  const n = 4096;
  const args = { a: randomFloats(n, 1), b: randomFloats(n, 2) };
  await add.run(device, args, { sizes: { n } });
  const original = device.createBuffer;
  let created = 0;
  device.createBuffer = function (this: GPUDevice, d: GPUBufferDescriptor) {
    created++;
    return original.call(this, d);
  };
  try {
    await add.run(device, args, { sizes: { n } });
    assert.equal(created, 0);
  } finally {
    device.createBuffer = original;
  }
});

const LENGTH_WGSL = `
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(1)
fn main(@builtin(global_invocation_id) id: vec3u) {
  var s = 0.0;
  for (var i = 0u; i < arrayLength(&a); i++) { s += a[i]; }
  out[0] = s;
  out[1] = f32(arrayLength(&a));
}`;

/** The sum of its input and the input's `arrayLength()`, which a kernel bounds its loops by. */
const sumAll = defineKernel({
  name: "sum_all",
  code: LENGTH_WGSL,
  workgroupSize: [1],
  bindings: {
    a: { kind: "input", type: "f32" },
    out: { kind: "output", type: "f32", length: () => 2 },
  },
  workgroups: () => 1,
});

test(
  "Kernel.run binds an input at its own length: arrayLength() is what the caller gave, never an earlier run's data in a pooled buffer",
  { skip: noGpu },
  async () => {
    const device = await requestGpuDevice(0);
    // a 4-element output leaves 8 in a 16-byte buffer the pool hands out again
    await add.run(device, { a: Float32Array.of(1, 2, 3, 4), b: Float32Array.of(1, 2, 3, 4) }, { sizes: { n: 4 } });
    for (const a of [Float32Array.of(10, 20, 30), Float32Array.of(10), Float32Array.of(1, 2, 3, 4, 5)]) {
      const { out } = await sumAll.run(device, { a });
      assert.deepEqual([...out], [a.reduce((x, y) => x + y, 0), a.length]);
      const resident = GpuArray.from(device, a);
      const kept = await sumAll.run(device, { a: resident });
      assert.deepEqual([...kept.out], [a.reduce((x, y) => x + y, 0), a.length], "a GpuArray input too");
      resident.destroy();
    }
  },
);

test(
  "Kernel.run and GpuArray.from take empty arrays (no write of nothing, which aborted Deno)",
  { skip: noGpu },
  async () => {
    const device = await requestGpuDevice(0);
    const { out } = await add.run(device, { a: new Float32Array(0), b: new Float32Array(0) }, { sizes: { n: 0 } });
    assert.equal(out.length, 0);
    const empty = GpuArray.from(device, new Float32Array(0));
    assert.equal((await empty.read()).length, 0);
    // an empty input is one zero element to a kernel (a binding holds at least one)
    const summed = await sumAll.run(device, { a: new Float32Array(0) });
    assert.equal(summed.out[0], 0);
    empty.destroy();
  },
);

test("GpuArray.read of a destroyed array is an error naming it, and on a released device a GpuDeviceLostError", {
  skip: noGpu,
}, async () => {
  const device = await requestGpuDevice(0);
  const gone = GpuArray.from(device, Float32Array.of(5, 6));
  gone.destroy();
  await assert.rejects(gone.read(), /^TypeError: Cannot read GpuArray<f32>\[2\]: it was destroyed/);
  const kept = GpuArray.from(device, Float32Array.of(3, 4));
  await releaseGpuDevices();
  await assert.rejects(kept.read(), (e: unknown) => e instanceof GpuDeviceLostError && /destroyed/.test(e.message));
});
