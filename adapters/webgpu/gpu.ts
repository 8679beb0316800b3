/// <reference types="@webgpu/types" />
/**
 * WebGPU for thinkagain services: the adapters as core `GpuDevice`s (a device provider for
 * `ta.devices()`), and {@linkcode gpu}, which gives the service instance that is running the
 * `GPUDevice` placement assigned to it.
 *
 * @module
 */
import { currentInstance, currentInstanceGpus } from "../../core/context.ts";
import { GpuDevice, registerDeviceProvider } from "../../core/devices.ts";
import { requestGpuDevice, webgpuAdapters, webgpuUnavailableReason } from "./detect.ts";

/**
 * The WebGPU adapters as core `GpuDevice`s: what a `ta.MeshNode`'s `gpus` takes. (To read an
 * adapter's name, vendor and limits, use {@linkcode webgpuAdapters}.) Each keeps, in `meta`,
 * `source: "webgpu"`, `webgpuAdapterIndex` (what {@linkcode gpu} uses), `vendor`, `architecture`,
 * `software`, `isFallbackAdapter` and `limits`.
 *
 * @returns One `GpuDevice` per adapter; `[]` where there is no WebGPU.
 *
 * @example A mesh node with this runtime's first WebGPU adapter
 * ```ts
 * import * as ta from "../../mod.ts";
 * import { webgpuGpuDevices } from "./gpu.ts";
 * const gpus = await webgpuGpuDevices();
 * for (const g of gpus) if (g.meta.source !== "webgpu") throw new Error("unexpected");
 * await using mesh = new ta.Mesh([new ta.MeshNode("local", { gpus: gpus.slice(0, 1) })]);
 * ```
 */
export async function webgpuGpuDevices(): Promise<GpuDevice[]> {
  return (await webgpuAdapters()).map((a) =>
    new GpuDevice(a.index, {
      name: a.description || `webgpu${a.index}`,
      meta: {
        source: "webgpu",
        webgpuAdapterIndex: a.index,
        vendor: a.vendor,
        architecture: a.architecture,
        software: a.software,
        isFallbackAdapter: a.isFallbackAdapter,
        limits: a.limits,
      },
    })
  );
}

let unregister: (() => void) | undefined;

/**
 * Makes `ta.devices()` (and so `--gpus auto`) report this runtime's WebGPU adapters. Idempotent.
 *
 * @returns A function that removes the provider again.
 *
 * @example `ta.devices()` then reports the WebGPU adapters
 * ```ts
 * import { registerWebGpu } from "./gpu.ts";
 * import { devices, GpuDevice } from "../../core/devices.ts";
 * const off = registerWebGpu();
 * const gpus = (await devices()).filter((d) => d instanceof GpuDevice);
 * off();
 * if (!gpus.every((g) => g.meta.source === "webgpu")) throw new Error("unexpected");
 * ```
 */
export function registerWebGpu(): () => void {
  if (!unregister) {
    const off = registerDeviceProvider(webgpuGpuDevices);
    unregister = () => {
      off();
      unregister = undefined;
    };
  }
  return unregister;
}

/** Options of {@linkcode gpu}. */
export interface GpuOptions {
  /** Which of the instance's assigned GPUs (default 0), for services with `gpus` > 1. */
  readonly index?: number;
}

/**
 * The `GPUDevice` assigned to the service instance whose constructor or method is running. Call it
 * inside a service declared with `ta.service({ gpus: 1 }, class …)`. The assigned core `GpuDevice`
 * maps to a WebGPU adapter by `meta.webgpuAdapterIndex` (set by {@linkcode registerWebGpu}) or,
 * for nodes declared with a GPU count, by its `id`. Instances on the same adapter share its device;
 * once that device is lost, the next call (e.g. from a re-created instance) gets a new one.
 *
 * @param options Which assigned GPU.
 * @returns The device.
 * @throws {Error} Outside a service instance, in one that asked for no GPU, or when the assigned GPU has no WebGPU adapter here.
 *
 * @example Outside a service it rejects, saying why
 * ```ts
 * import { gpu } from "./gpu.ts";
 * const err = await gpu().then(() => undefined, (e: Error) => e);
 * if (!err?.message.includes("inside a service")) throw new Error(String(err));
 * ```
 */
export async function gpu(options: GpuOptions = {}): Promise<GPUDevice> {
  const gpus = currentInstanceGpus();
  if (gpus === undefined) {
    throw new Error(
      "gpu() must be called inside a service instance's constructor or method (declare it with ta.service({ gpus: 1 }, class …))",
    );
  }
  const service = currentInstance()?.service ?? "?";
  const i = options.index ?? 0;
  if (gpus.length === 0) {
    throw new Error(`gpu(): service "${service}" was placed without GPUs; declare it with ta.service({ gpus: 1 }, …)`);
  }
  const assigned = gpus[i];
  if (!assigned) throw new RangeError(`gpu(): service "${service}" has ${gpus.length} GPU(s), asked for index ${i}`);
  const meta = assigned.meta ?? {};
  const adapterIndex = typeof meta.webgpuAdapterIndex === "number" ? meta.webgpuAdapterIndex : assigned.id;
  const adapters = await webgpuAdapters();
  if (adapters.length === 0) {
    throw new Error(
      `gpu(): service "${service}" was assigned GPU ${assigned.id} (${assigned.name}), but ${await webgpuUnavailableReason()}`,
    );
  }
  if (adapterIndex >= adapters.length) {
    throw new Error(
      `gpu(): service "${service}" was assigned GPU ${assigned.id} (${assigned.name}), but this runtime has ${adapters.length} WebGPU adapter(s)`,
    );
  }
  return await requestGpuDevice(adapterIndex);
}
