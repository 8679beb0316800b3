import { test } from "node:test";
import assert from "node:assert/strict";
import { runGpuPipeline } from "./gpu_pipeline.ts";
import { noGpu } from "../adapters/webgpu/_test_utils.ts";

test(
  "gpu_pipeline example: three kernels on a node keep their arrays on the GPU and read the result back once",
  { skip: noGpu, timeout: 120_000 },
  async () => {
    const input = Float32Array.from({ length: 100_000 }, (_, k) => k % 7);
    const r = await runGpuPipeline(input);
    assert.deepEqual(r.out, input.map((x) => (2 * x + 1) ** 2));
    assert.equal(r.readbacks, 1);
  },
);
