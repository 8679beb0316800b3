/// <reference types="@webgpu/types" />
// Private: which devices are lost, and who wants to hear of it. Shared by detect.ts and kernel.ts.
import { GpuDeviceLostError } from "./errors.ts";

const lostDevices = new WeakMap<GPUDevice, GpuDeviceLostError>();
const lostListeners = new WeakMap<GPUDevice, Set<(e: GpuDeviceLostError) => void>>();

/**
 * Calls `listener` once when `device` is lost (at once if it already is).
 * Internal plumbing shared by the kernel helper; not re-exported by mod.ts.
 */
export function onDeviceLost(device: GPUDevice, listener: (e: GpuDeviceLostError) => void): () => void {
  const lost = lostDevices.get(device);
  if (lost) {
    listener(lost);
    return () => {};
  }
  let set = lostListeners.get(device);
  if (!set) {
    set = new Set();
    lostListeners.set(device, set);
    device.lost.then((info) => {
      const error = new GpuDeviceLostError(String(info.reason ?? "unknown"), info.message ?? "");
      lostDevices.set(device, error);
      const listeners = lostListeners.get(device);
      lostListeners.delete(device);
      for (const l of listeners ?? []) l(error);
    });
  }
  set.add(listener);
  return () => set.delete(listener);
}

/** The loss error of `device`, or `undefined` while it is alive (as far as we have seen). */
export function deviceLostError(device: GPUDevice): GpuDeviceLostError | undefined {
  return lostDevices.get(device);
}
