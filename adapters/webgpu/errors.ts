/**
 * Errors of the WebGPU adapter. Bad arguments throw `TypeError` / `RangeError` at once; these are
 * the failures that come from the GPU side.
 *
 * @module
 */

/**
 * A `GPUDevice` was lost (destroyed, driver reset, out of memory). Calls pending on it and later
 * calls reject with this error; request a new device with {@linkcode requestGpuDevice}.
 *
 * @example
 * ```ts
 * import { GpuDeviceLostError } from "./errors.ts";
 * const e = new GpuDeviceLostError("destroyed", "Device was destroyed.");
 * if (!e.message.startsWith("GPU device lost: destroyed")) throw new Error(e.message);
 * ```
 */
export class GpuDeviceLostError extends Error {
  /** Tag for `catchTag`-style matching. */
  readonly _tag = "GpuDeviceLostError" as const;
  /** `GPUDeviceLostReason` (`"destroyed"` or `"unknown"`). */
  readonly reason: string;
  /**
   * @param reason The `GPUDeviceLostInfo.reason`.
   * @param detail The `GPUDeviceLostInfo.message`.
   */
  constructor(reason: string, detail: string) {
    super(`GPU device lost: ${reason}${detail ? ` (${detail})` : ""}`);
    this.reason = reason;
  }
  /** The class name. */
  override get name(): string {
    return "GpuDeviceLostError";
  }
}

/**
 * A kernel could not be built or run: its WGSL did not compile, its pipeline did not validate
 * against the declared bindings, or the GPU rejected a dispatch. `.kernel` names the kernel.
 *
 * @example
 * ```ts
 * import { KernelError } from "./errors.ts";
 * const e = new KernelError("vector_add", "WGSL compile error", "3:5 unresolved identifier 'x'");
 * if (e.kernel !== "vector_add" || !e.message.includes("3:5")) throw new Error(e.message);
 * ```
 */
export class KernelError extends Error {
  /** Tag for `catchTag`-style matching. */
  readonly _tag = "KernelError" as const;
  /** Name of the kernel that failed. */
  readonly kernel: string;
  /**
   * @param kernel The kernel's name.
   * @param what What was attempted and failed (e.g. `"WGSL compile error"`).
   * @param detail The messages from the GPU.
   */
  constructor(kernel: string, what: string, detail: string) {
    super(`Kernel "${kernel}": ${what}${detail ? `:\n${detail}` : ""}`);
    this.kernel = kernel;
  }
  /** The class name. */
  override get name(): string {
    return "KernelError";
  }
}
