import { test } from "node:test";
import assert from "node:assert/strict";
import { RemoteError, ThinkagainError } from "../../core/errors.ts";
import { errorFromWire, errorToWire } from "../../core/codec.ts";
import { GpuDeviceLostError, KernelError } from "./errors.ts";

test("KernelError and GpuDeviceLostError are ThinkagainErrors whose _tag and name are the class name", () => {
  const errors: Error[] = [
    new KernelError("vector_add", "WGSL compile error", "3:5 unresolved identifier 'x'"),
    new GpuDeviceLostError("destroyed", "Device was destroyed."),
  ];
  for (const err of errors) {
    assert.ok(err instanceof ThinkagainError, `${err.constructor.name} is not a ThinkagainError`);
    assert.ok(err instanceof Error);
    assert.equal(err._tag, err.constructor.name);
    assert.equal(err.name, err.constructor.name);
  }
  assert.equal(errors[0].message, "Kernel \"vector_add\": WGSL compile error:\n3:5 unresolved identifier 'x'");
  assert.equal(errors[1].message, "GPU device lost: destroyed (Device was destroyed.)");
});

test("KernelError sent over the wire arrives as RemoteError named KernelError, with its message", () => {
  const back = errorFromWire(errorToWire(new KernelError("matmul_tiled", "dispatch failed", "")));
  assert.ok(back instanceof RemoteError, String(back));
  assert.equal(back.remoteName, "KernelError");
  assert.equal(back.message, 'Kernel "matmul_tiled": dispatch failed');
});
