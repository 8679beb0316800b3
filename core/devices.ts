/**
 * Devices a node offers: GPUs (by index, with what a provider such as the WebGPU adapter knows of
 * them) and a CPU count. `devices()` asks every registered provider.
 *
 * @module
 */

/** Options of a {@link GpuDevice}. */
export interface GpuDeviceOptions {
  /** Human-readable name (e.g. the adapter description). */
  name?: string;
  /** Anything a provider wants to keep with the device (vendor, limits, a native handle). */
  meta?: Record<string, unknown>;
}

/**
 * One GPU, identified by its index on a node.
 *
 * @example
 * ```ts
 * import { GpuDevice } from "./devices.ts";
 * const g = new GpuDevice(0, { name: "H100" });
 * if (g.id !== 0 || g.name !== "H100") throw new Error("unexpected");
 * ```
 */
export class GpuDevice {
  /** Index of the GPU on its node. */
  readonly id: number;
  /** Human-readable name. */
  readonly name: string;
  /** Provider data (vendor, limits, whether it is a software adapter, …). */
  readonly meta: Record<string, unknown>;
  /** @param id Index on its node. @param options Name and provider data. */
  constructor(id: number, options: GpuDeviceOptions = {}) {
    if (!Number.isInteger(id) || id < 0) {
      throw new TypeError(`GpuDevice id must be a non-negative integer, got ${String(id)}`);
    }
    this.id = id;
    this.name = options.name ?? `gpu${id}`;
    this.meta = options.meta ?? {};
  }
}

/**
 * A number of CPU cores.
 *
 * @example
 * ```ts
 * import { CpuDevice } from "./devices.ts";
 * if (new CpuDevice(8).count !== 8) throw new Error("unexpected");
 * ```
 */
export class CpuDevice {
  /** Number of cores. */
  readonly count: number;
  /** @param count Number of cores. */
  constructor(count: number) {
    if (!(Number.isInteger(count) && count > 0)) {
      throw new TypeError(`CpuDevice count must be a positive integer, got ${String(count)}`);
    }
    this.count = count;
  }
}

/** A source of GPUs for {@link devices} (the WebGPU adapter registers one). */
export type DeviceProvider = () => Promise<GpuDevice[]>;

const providers: DeviceProvider[] = [];

/**
 * Registers a GPU provider consulted by {@link devices}. Returns a function that unregisters it.
 *
 * @param provider Returns the GPUs it finds (an empty array when there are none).
 * @returns A function that removes the provider again.
 *
 * @example
 * ```ts
 * import { devices, GpuDevice, registerDeviceProvider } from "./devices.ts";
 * const off = registerDeviceProvider(async () => [new GpuDevice(0, { name: "fake" })]);
 * const found = await devices();
 * off();
 * if (!found.some((d) => d instanceof GpuDevice && d.name === "fake")) throw new Error("missing");
 * ```
 */
export function registerDeviceProvider(provider: DeviceProvider): () => void {
  if (typeof provider !== "function") {
    throw new TypeError(`registerDeviceProvider expects a function, got ${typeof provider}`);
  }
  providers.push(provider);
  return () => {
    const i = providers.indexOf(provider);
    if (i >= 0) providers.splice(i, 1);
  };
}

/**
 * The devices of this process: every GPU the registered providers find (renumbered 0..n-1 in
 * provider order) and one `CpuDevice` with the number of logical cores.
 *
 * @returns GPUs first, then the CPU device.
 *
 * @example
 * ```ts
 * import { CpuDevice, devices } from "./devices.ts";
 * const found = await devices();
 * if (!(found.at(-1) instanceof CpuDevice)) throw new Error("expected a CpuDevice last");
 * ```
 */
export async function devices(): Promise<Array<GpuDevice | CpuDevice>> {
  const gpus: GpuDevice[] = [];
  for (const provider of providers) {
    try {
      for (const g of await provider()) {
        gpus.push(new GpuDevice(gpus.length, { name: g.name, meta: g.meta }));
      }
    } catch {
      // A provider that cannot look (no driver, no permission) contributes no GPUs.
    }
  }
  const cores = (globalThis.navigator as { hardwareConcurrency?: number } | undefined)?.hardwareConcurrency ?? 1;
  return [...gpus, new CpuDevice(Math.max(1, cores))];
}
