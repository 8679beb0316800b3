/**
 * WebGPU for thinkagain: find adapters, give `gpus: 1` services their `GPUDevice`, and run WGSL
 * compute kernels on typed arrays (with a tiled f32 matmul and a top-k cosine index built on it).
 * Not re-exported by the root `mod.ts`; import this subpath.
 *
 * Deno and browsers reach WebGPU through `navigator.gpu` (Deno without a GPU finds the llvmpipe
 * software adapter); Bun and Node through the optional `webgpu` npm package when it finds an
 * adapter. Where there is none, {@linkcode webgpuAdapters} is empty and
 * {@linkcode webgpuUnavailableReason} says why.
 *
 * Two lists, two purposes: {@linkcode webgpuAdapters} describes the adapters (name, vendor,
 * limits; each has `kind: "webgpu-adapter"`), while {@linkcode webgpuGpuDevices} returns them as
 * core `GpuDevice`s, which is what a `ta.MeshNode`'s `gpus` takes.
 *
 * @example A GPU service
 * ```ts
 * import * as ta from "../../mod.ts";
 * import { gpu, matmul, releaseGpuDevices, webgpuGpuDevices } from "./mod.ts";
 *
 * const Multiplier = ta.service({ gpus: 1 }, class ModExampleMultiplier {
 *   async square(a: number[]): Promise<number[]> {
 *     return [...await matmul(new Float32Array(a), new Float32Array(a), 2, 2, 2, { device: await gpu() })];
 *   }
 * });
 * const gpus = await webgpuGpuDevices();
 * if (gpus.length > 0) {
 *   await using mesh = new ta.Mesh([new ta.MeshNode("local", { gpus: gpus.slice(0, 1) })]);
 *   const out = await mesh.run(() => Multiplier.init().square.go([1, 2, 3, 4]));
 *   if (out.join() !== "7,10,15,22") throw new Error(`got ${out}`);
 * }
 * await releaseGpuDevices(); // when done with the GPU
 * ```
 *
 * @module
 */
export {
  releaseGpuDevices,
  requestGpuDevice,
  type RequestGpuDeviceOptions,
  type WebGpuAdapterInfo,
  webgpuAdapters,
  type WebGpuLimits,
  webgpuUnavailableReason,
} from "./detect.ts";
export { GpuDeviceLostError, KernelError } from "./errors.ts";
export {
  defineKernel,
  Kernel,
  type KernelBinding,
  type KernelDeviceOutputs,
  type KernelInputs,
  type KernelOutputs,
  type KernelRunOptions,
  type KernelSizes,
  type KernelSpec,
  type Workgroups,
} from "./kernel.ts";
export { type ElementType, GpuArray, READBACK, readbackCount, type TypedArrayFor } from "./gpu_array.ts";
export { matmul, type MatmulOptions, matmulResident } from "./matmul.ts";
export { CosineIndex, type CosineIndexOptions, MAX_K, type SearchHit } from "./retrieval.ts";
export { gpu, type GpuOptions, registerWebGpu, webgpuGpuDevices } from "./gpu.ts";
