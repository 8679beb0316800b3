/// <reference types="@webgpu/types" />
/**
 * A typed array kept on a GPU device ({@linkcode GpuArray}), to pass to many kernel runs without
 * uploading it again, and to keep a kernel's outputs where the next kernel reads them: read back
 * into this process only when it must leave the device.
 *
 * @module
 */
import {
  align,
  ARRAY_CLASS,
  type ElementType,
  MAP_MODE_READ,
  noteReadback,
  READBACK,
  readbackCount,
  typeOfArray,
  USAGE_COPY_DST,
  USAGE_COPY_SRC,
  USAGE_MAP_READ,
  USAGE_STORAGE,
} from "./_buffers.ts";

import { GpuDeviceLostError } from "./errors.ts";

export { type ElementType, READBACK, readbackCount };

/** The typed array that holds elements of type `T`. */
export type TypedArrayFor<T extends ElementType> = T extends "f32" ? Float32Array
  : T extends "u32" ? Uint32Array
  : Int32Array;

/**
 * A typed array kept on one device, to pass to many runs without uploading it again (e.g. a
 * document-embedding matrix). Create it with {@linkcode GpuArray.from}; free it with `destroy()`
 * (or `using`).
 *
 * Returned by an op or method whose result stays on its node (not sent back at once), it is handed
 * to that node's object store, which destroys it when it frees the result (its driver's refs
 * released or collected, its lease expired, the node drained), unless another result kept there
 * holds it too. A method that keeps an array for its own later calls (a cache) returns a
 * {@linkcode GpuArray.copy} of it, not the array itself.
 *
 * @example Keeping an input on the GPU
 * ```ts
 * import { GpuArray } from "./gpu_array.ts";
 * import { releaseGpuDevices, requestGpuDevice, webgpuAdapters } from "./detect.ts";
 * if ((await webgpuAdapters()).length > 0) {
 *   const device = await requestGpuDevice(0);
 *   const docs = GpuArray.from(device, new Float32Array([1, 2, 3, 4]));
 *   if (docs.length !== 4 || docs.type !== "f32") throw new Error("unexpected");
 *   docs.destroy();
 *   await releaseGpuDevices();
 * }
 * ```
 */
export class GpuArray<T extends ElementType = ElementType> {
  /** The device the data lives on. */
  readonly device: GPUDevice;
  /** The buffer (usage STORAGE | COPY_SRC | COPY_DST). */
  readonly buffer: GPUBuffer;
  /** Element type. */
  readonly type: T;
  /** Number of elements. */
  readonly length: number;

  private constructor(device: GPUDevice, buffer: GPUBuffer, type: T, length: number) {
    this.device = device;
    this.buffer = buffer;
    this.type = type;
    this.length = length;
  }

  /**
   * Uploads `data` to a new buffer on `device`.
   *
   * @param device The device.
   * @param data A `Float32Array`, `Uint32Array` or `Int32Array`.
   * @returns The array on the device.
   */
  static from<A extends Float32Array | Uint32Array | Int32Array>(
    device: GPUDevice,
    data: A,
  ): GpuArray<A extends Float32Array ? "f32" : A extends Uint32Array ? "u32" : "i32"> {
    const type = data instanceof Float32Array
      ? "f32"
      : data instanceof Uint32Array
      ? "u32"
      : data instanceof Int32Array
      ? "i32"
      : undefined;
    if (!type) {
      throw new TypeError(
        `Cannot create a GpuArray: expected a Float32Array, Uint32Array or Int32Array, got ${typeOfArray(data)}`,
      );
    }
    const buffer = device.createBuffer({
      size: Math.max(16, align(data.byteLength, 4)),
      usage: USAGE_STORAGE | USAGE_COPY_SRC | USAGE_COPY_DST,
      label: `GpuArray<${type}>[${data.length}]`,
    });
    // (nothing to write for an empty array: Deno's writeBuffer panics on one)
    if (data.byteLength > 0) device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
    return new GpuArray(device, buffer, type, data.length) as GpuArray<
      A extends Float32Array ? "f32" : A extends Uint32Array ? "u32" : "i32"
    >;
  }

  /**
   * A zero-filled array of `length` elements of `type` on `device` (what a kernel run on the
   * device writes its outputs into).
   *
   * @param device The device.
   * @param type The element type (`"f32"`, `"u32"` or `"i32"`).
   * @param length How many elements.
   * @returns The array on the device.
   * @throws {TypeError} For another element type.
   * @throws {RangeError} For a length that is not an integer ≥ 0.
   */
  static empty<T extends ElementType>(device: GPUDevice, type: T, length: number): GpuArray<T> {
    if (!Object.hasOwn(ARRAY_CLASS, type)) {
      throw new TypeError(
        `Cannot create a GpuArray: its element type must be "f32", "u32" or "i32", got ${
          typeof type === "string" ? JSON.stringify(type) : String(type)
        }`,
      );
    }
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new RangeError(`Cannot create a GpuArray: length must be an integer ≥ 0, got ${String(length)}`);
    }
    const buffer = device.createBuffer({
      size: Math.max(16, align(length * 4, 16)),
      usage: USAGE_STORAGE | USAGE_COPY_SRC | USAGE_COPY_DST,
      label: `GpuArray<${type}>[${length}]`,
    });
    return new GpuArray(device, buffer, type, length);
  }

  /**
   * Reads the array back into this process (one readback, counted by {@linkcode readbackCount}).
   *
   * @returns A typed array with its elements.
   */
  async read(): Promise<TypedArrayFor<T>> {
    if (this.#destroyed) {
      // (WebGPU reads a destroyed buffer as zeros, silently)
      throw new TypeError(`Cannot read ${this.buffer.label}: it was destroyed`);
    }
    try {
      return await this.#read();
    } catch (e) {
      // a device that was destroyed or lost says so; WebGPU only says "validation error occurred"
      const lost = await Promise.race([
        this.device.lost,
        new Promise<undefined>((r) => setTimeout(() => r(undefined), 0)),
      ]);
      if (lost !== undefined) throw new GpuDeviceLostError(String(lost.reason ?? "unknown"), lost.message ?? "");
      throw e;
    }
  }

  async #read(): Promise<TypedArrayFor<T>> {
    const bytes = this.length * 4;
    const staging = this.device.createBuffer({
      size: Math.max(16, align(bytes, 16)),
      usage: USAGE_MAP_READ | USAGE_COPY_DST,
      label: `${this.buffer.label}.read`,
    });
    try {
      const encoder = this.device.createCommandEncoder({ label: `${this.buffer.label}.read` });
      if (bytes > 0) encoder.copyBufferToBuffer(this.buffer, 0, staging, 0, align(bytes, 4));
      this.device.queue.submit([encoder.finish()]);
      noteReadback();
      await staging.mapAsync(MAP_MODE_READ, 0, staging.size);
      const out = new ARRAY_CLASS[this.type](staging.getMappedRange(0, staging.size).slice(0, bytes));
      staging.unmap();
      return out as TypedArrayFor<T>;
    } finally {
      staging.destroy();
    }
  }

  /** The array as it leaves the device (see {@linkcode READBACK}): read back once. */
  [READBACK](): Promise<TypedArrayFor<T>> {
    return this.read();
  }

  /**
   * A new array on the same device with the same elements, copied there (no readback): what a
   * method that keeps this array for its own later calls returns, since a result that stays on its
   * node is destroyed when the node frees it.
   *
   * @returns The copy.
   * @throws {TypeError} When this array was destroyed.
   *
   * @example A cache kept, a copy returned
   * ```ts
   * import { GpuArray } from "./gpu_array.ts";
   * import { releaseGpuDevices, requestGpuDevice, webgpuAdapters } from "./detect.ts";
   * import { deepStrictEqual } from "node:assert/strict";
   * if ((await webgpuAdapters()).length > 0) {
   *   const cache = GpuArray.from(await requestGpuDevice(0), new Int32Array([1, 2, 3]));
   *   const out = cache.copy();
   *   deepStrictEqual(await out.read(), new Int32Array([1, 2, 3]));
   *   out.destroy(); // (as the node does, freeing the result)
   *   deepStrictEqual(await cache.read(), new Int32Array([1, 2, 3]));
   *   cache.destroy();
   *   await releaseGpuDevices();
   * }
   * ```
   */
  copy(): GpuArray<T> {
    if (this.#destroyed) throw new TypeError(`Cannot copy ${this.buffer.label}: it was destroyed`);
    const out = GpuArray.empty(this.device, this.type, this.length);
    if (this.length > 0) {
      const encoder = this.device.createCommandEncoder({ label: `${this.buffer.label}.copy` });
      encoder.copyBufferToBuffer(this.buffer, 0, out.buffer, 0, this.length * 4);
      this.device.queue.submit([encoder.finish()]);
    }
    return out;
  }

  #destroyed = false;

  /** Frees the buffer: reading it afterwards is an error. Idempotent. */
  destroy(): void {
    this.#destroyed = true;
    this.buffer.destroy();
  }

  /** `destroy()`, for `using`, and for a node's object store freeing a result that held it. */
  [Symbol.dispose](): void {
    this.destroy();
  }
}
