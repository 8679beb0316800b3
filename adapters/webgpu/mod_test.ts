import { test } from "node:test";
import assert from "node:assert/strict";

test("adapters/webgpu/mod.ts exports webgpuAdapters and webgpuGpuDevices but no test references", async () => {
  const mod: Record<string, unknown> = await import("./mod.ts");
  assert.equal(typeof mod.webgpuAdapters, "function");
  assert.equal(typeof mod.webgpuGpuDevices, "function");
  for (const name of ["webgpuDevices", "matmulNaive", "matmulCpu", "cosineTopKCpu"]) {
    assert.equal(name in mod, false, `${name} is exported`);
  }
});
