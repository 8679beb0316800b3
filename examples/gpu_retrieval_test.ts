import { after, test } from "node:test";
import assert from "node:assert/strict";
import { runGpuRetrieval } from "./gpu_retrieval.ts";
import { noGpu } from "../adapters/webgpu/_test_utils.ts";
import { releaseGpuDevices } from "../adapters/webgpu/detect.ts";

// Destroy the cached device when this file is done, so none outlives its tests.
after(() => releaseGpuDevices());

test(
  "gpu_retrieval example: the GPU retriever service's top-k equals the CPU reference (3000 × 64)",
  { skip: noGpu },
  async () => {
    const r = await runGpuRetrieval({ docs: 3000, dim: 64, k: 8 });
    assert.equal(r.backend, "webgpu");
    assert.equal(r.matchesCpu, true);
    assert.equal(r.answers.length, 3);
    assert.ok(r.hits.every((h) => h.length === 8));
    assert.match(r.answers[0], /^What is ML\? → answered from doc#\d+/);
  },
);

test("gpu_retrieval example: without WebGPU (or forced) the CPU retriever answers and says why", async () => {
  const lines: string[] = [];
  const r = await runGpuRetrieval({ docs: 1000, dim: 32, k: 4, cpu: Boolean(!noGpu), log: (l) => lines.push(l) });
  assert.equal(r.backend, "cpu");
  assert.equal(r.matchesCpu, true);
  assert.match(lines[0], noGpu ? /^no WebGPU on this runtime: .*; the retriever runs on the CPU$/ : /^CPU \(forced\)/);
});
