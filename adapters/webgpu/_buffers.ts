/// <reference types="@webgpu/types" />
// Private to adapters/webgpu: what the device array (gpu_array.ts) and the kernel helper
// (kernel.ts) share — the buffer usage flags, the typed array of each element type, the count of
// readbacks, and the key by which a value on a device is read back.

/** WGSL element types a binding may hold. */
export type ElementType = "f32" | "u32" | "i32";

// GPUBufferUsage / GPUMapMode values, spelled out so the helper works where the globals are absent.
export const USAGE_MAP_READ = 0x0001;
export const USAGE_COPY_SRC = 0x0004;
export const USAGE_COPY_DST = 0x0008;
export const USAGE_UNIFORM = 0x0040;
export const USAGE_STORAGE = 0x0080;
export const MAP_MODE_READ = 0x0001;

/** The typed array class of each element type. */
export const ARRAY_CLASS: Record<
  ElementType,
  Float32ArrayConstructor | Uint32ArrayConstructor | Int32ArrayConstructor
> = {
  f32: Float32Array,
  u32: Uint32Array,
  i32: Int32Array,
};

/** Rounds `n` up to a multiple of `to`. */
export function align(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

/**
 * The key of the method by which a value that lives on a device (a {@linkcode GpuArray}) is read
 * into this process when it has to leave it (a node sends it, or a driver awaits it): the
 * transports call `value[READBACK]()` and send what it answers. `Symbol.for`, so the transports
 * need not import this adapter.
 */
export const READBACK: unique symbol = Symbol.for("thinkagain.readback") as never;

/** What a value is, for an error message: `GpuArray<f32>`, `Float32Array`, `null`, `string`. */
export function typeOfArray(a: unknown): string {
  if (typeof (a as { [READBACK]?: unknown } | null)?.[READBACK] === "function") {
    return `GpuArray<${(a as { type: ElementType }).type}>`;
  }
  if (ArrayBuffer.isView(a)) return a.constructor.name;
  return a === null ? "null" : typeof a;
}

let readbacks = 0;

/** Counts one readback (see {@linkcode readbackCount}). */
export function noteReadback(): void {
  readbacks++;
}

/**
 * How many times this process has read results back from a GPU (one `mapAsync` each: every
 * kernel run, every `GpuArray.read`): what a pipeline that keeps its intermediate arrays on the
 * device saves.
 *
 * @returns The count so far.
 *
 * @example
 * ```ts
 * import { readbackCount } from "./gpu_array.ts";
 * if (readbackCount() < 0) throw new Error("unexpected");
 * ```
 */
export function readbackCount(): number {
  return readbacks;
}
