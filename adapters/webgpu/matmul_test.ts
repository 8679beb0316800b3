import { after, test } from "node:test";
import assert from "node:assert/strict";
import { matmul } from "./matmul.ts";
import { matmulCpu, matmulNaive } from "./_reference.ts";
import { noGpu, randomFloats } from "./_test_utils.ts";
import { releaseGpuDevices } from "./detect.ts";

// Destroy the cached device when this file is done, so none outlives its tests.
after(() => releaseGpuDevices());

function maxRelError(got: Float32Array, want: Float32Array): number {
  let scale = 0;
  for (const v of want) scale = Math.max(scale, Math.abs(v));
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / Math.max(scale, 1e-30));
  return worst;
}

const SHAPES: readonly [number, number, number][] = [
  [1, 1, 1],
  [128, 128, 128],
  [130, 37, 67], // none a multiple of 4 or of the 128×128 tile
  [33, 200, 129],
  [256, 64, 8],
];

for (const [m, k, n] of SHAPES) {
  test(`matmul equals the CPU reference within 1e-4 relative for ${m}×${k}·${k}×${n}`, { skip: noGpu }, async () => {
    const a = randomFloats(m * k, m * 31 + k);
    const b = randomFloats(k * n, n * 17 + k);
    const want = matmulCpu(a, b, m, k, n);
    const got = await matmul(a, b, m, k, n);
    assert.equal(got.length, m * n);
    assert.ok(maxRelError(got, want) < 1e-4, `max relative error ${maxRelError(got, want)}`);
  });
}

test("matmulNaive equals the CPU reference within 1e-4 relative for 70×45·45×33", { skip: noGpu }, async () => {
  const a = randomFloats(70 * 45, 1);
  const b = randomFloats(45 * 33, 2);
  const got = await matmulNaive(a, b, 70, 45, 33);
  assert.ok(maxRelError(got, matmulCpu(a, b, 70, 45, 33)) < 1e-4);
});

test("matmul rejects a shape mismatch naming the matrix and the expected size", async () => {
  await assert.rejects(matmul(new Float32Array(5), new Float32Array(6), 2, 3, 2), {
    name: "RangeError",
    message: "matmul: a must hold m×k = 2×3 = 6 elements, got 5",
  });
  await assert.rejects(matmul(new Float64Array(6) as unknown as Float32Array, new Float32Array(6), 2, 3, 2), {
    name: "TypeError",
    message: /matmul: a must be a Float32Array, got Float64Array/,
  });
});
