/**
 * Errors of the WebGPU adapter. Bad arguments throw `TypeError` / `RangeError` at once; these are
 * the failures that come from the GPU side. Both extend core's `ThinkagainError`, so
 * `err instanceof ThinkagainError` catches them with the rest of thinkagain's errors, and their
 * `_tag` is their class name.
 *
 * @module
 */
import { ThinkagainError } from "../../core/errors.ts";

/**
 * A `GPUDevice` was lost (destroyed, driver reset, out of memory). Calls pending on it and later
 * calls reject with this error; request a new device with `requestGpuDevice`.
 *
 * @example A lost device's error names the reason
 * ```ts
 * import { GpuDeviceLostError } from "./errors.ts";
 * import { ThinkagainError } from "../../core/errors.ts";
 * const e = new GpuDeviceLostError("destroyed", "Device was destroyed.");
 * if (!e.message.startsWith("GPU device lost: destroyed") || e.reason !== "destroyed") throw new Error(e.message);
 * const caught: unknown = e;
 * if (!(caught instanceof ThinkagainError)) throw new Error("expected a ThinkagainError");
 * ```
 */
export class GpuDeviceLostError extends ThinkagainError {
  /** Always `"GpuDeviceLostError"` (for `Effect.catchTag`). */
  readonly _tag = "GpuDeviceLostError" as const;
  /** `GPUDeviceLostReason` (`"destroyed"` or `"unknown"`). */
  readonly reason: string;
  /**
   * Builds the error from what `GPUDevice.lost` resolved with.
   *
   * @param reason The `GPUDeviceLostInfo.reason`.
   * @param detail The `GPUDeviceLostInfo.message`.
   */
  constructor(reason: string, detail: string) {
    super({ message: `GPU device lost: ${reason}${detail ? ` (${detail})` : ""}` });
    this.reason = reason;
  }
}

/**
 * A kernel could not be built or run: its WGSL did not compile, its pipeline did not validate
 * against the declared bindings, or the GPU rejected a dispatch. `.kernel` names the kernel.
 *
 * @example A compile error names the kernel and the line
 * ```ts
 * import { KernelError } from "./errors.ts";
 * const e = new KernelError("vector_add", "WGSL compile error", "3:5 unresolved identifier 'x'");
 * if (e.kernel !== "vector_add" || !e.message.includes("3:5")) throw new Error(e.message);
 * if (e.name !== "KernelError") throw new Error(e.name);
 * ```
 */
export class KernelError extends ThinkagainError {
  /** Always `"KernelError"` (for `Effect.catchTag`). */
  readonly _tag = "KernelError" as const;
  /** Name of the kernel that failed. */
  readonly kernel: string;
  /**
   * Builds the error; the message reads `Kernel "<kernel>": <what>:` then the GPU's messages.
   *
   * @param kernel The kernel's name.
   * @param what What was attempted and failed (e.g. `"WGSL compile error"`).
   * @param detail The messages from the GPU.
   */
  constructor(kernel: string, what: string, detail: string) {
    super({ message: `Kernel "${kernel}": ${what}${detail ? `:\n${detail}` : ""}` });
    this.kernel = kernel;
  }
}
