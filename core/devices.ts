/**
 * Devices a node offers: GPUs (by index, with what a provider such as the WebGPU adapter knows of
 * them) and CPUs (by index, with the cores they offer). `devices()` asks every registered provider.
 *
 * @module
 */
import { describe } from "./describe.ts";
import { checkKnownKeys, checkOptionType, type KnownKeys } from "./options.ts";

/** Options of a {@link GpuDevice}. */
export interface GpuDeviceOptions {
  /** Human-readable name (e.g. the adapter description). */
  name?: string;
  /** Anything a provider wants to keep with the device (vendor, limits, a native handle). */
  meta?: Record<string, unknown>;
}

const GPU_DEVICE_OPTION_KEYS: KnownKeys<GpuDeviceOptions> = { name: true, meta: true };

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
  /**
   * A GPU of a node.
   *
   * @param id Index on its node.
   * @param options Name and provider data.
   */
  constructor(id: number, options: GpuDeviceOptions = {}) {
    if (!Number.isInteger(id) || id < 0) {
      throw new TypeError(`GpuDevice id must be a non-negative integer, got ${describe(id)}`);
    }
    checkKnownKeys("GpuDevice", options, GPU_DEVICE_OPTION_KEYS);
    checkOptionType("GpuDevice", "name", options.name, "string");
    if (options.meta !== undefined && (options.meta === null || typeof options.meta !== "object")) {
      throw new TypeError(`GpuDevice: meta must be an object, got ${describe(options.meta)}`);
    }
    this.id = id;
    this.name = options.name ?? `gpu${id}`;
    this.meta = options.meta ?? {};
  }
}

/** Options of a {@link CpuDevice}. */
export interface CpuDeviceOptions {
  /** Cores it offers to services that ask for `cpus` (default: not limited, `Infinity`). */
  cores?: number;
}

const CPU_DEVICE_OPTION_KEYS: KnownKeys<CpuDeviceOptions> = { cores: true };

/**
 * One CPU of a node, identified by its index like a {@link GpuDevice} (the Python seed's
 * `CpuDevice(0)`), with the cores it offers: `new CpuDevice(0, { cores: 8 })`. The first argument
 * is the device id, never a core count; without `cores` the CPU does not limit placement. A mesh
 * built from devices offers the sum of its CPUs' cores (`Infinity` if one is not limited).
 *
 * @example The seed's CPU device, and one with a core count
 * ```ts
 * import { CpuDevice } from "./devices.ts";
 * const cpu = new CpuDevice(0);
 * if (cpu.id !== 0 || cpu.cores !== Infinity) throw new Error("unexpected");
 * if (new CpuDevice(0, { cores: 8 }).cores !== 8) throw new Error("unexpected");
 * ```
 */
export class CpuDevice {
  /** Index of the CPU on its node. */
  readonly id: number;
  /** Cores it offers (`Infinity`: not limited). */
  readonly cores: number;
  /**
   * The CPU of a node, with the cores it offers.
   *
   * @param id Index on its node (default 0).
   * @param options The cores it offers.
   */
  constructor(id: number = 0, options: CpuDeviceOptions = {}) {
    if (!Number.isInteger(id) || id < 0) {
      throw new TypeError(
        `CpuDevice id must be a non-negative integer (a device index, as in GpuDevice), got ${describe(id)}; ` +
          "give a core count as new CpuDevice(0, { cores: n })",
      );
    }
    if (typeof options === "number") {
      // the seed's habit of a core count in second place: say how to give one
      throw new TypeError(`CpuDevice: options must be an object such as { cores: 8 }, got ${describe(options)}`);
    }
    checkKnownKeys("CpuDevice", options, CPU_DEVICE_OPTION_KEYS);
    const cores = options.cores ?? Infinity;
    if (!(cores === Infinity || (Number.isInteger(cores) && cores > 0))) {
      throw new RangeError(`CpuDevice cores must be a positive integer, got ${describe(options.cores)}`);
    }
    this.id = id;
    this.cores = cores;
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
 * provider order) and one `CpuDevice` (id 0) offering the number of logical cores.
 *
 * @returns GPUs first, then the CPU device.
 *
 * @example
 * ```ts
 * import { CpuDevice, devices } from "./devices.ts";
 * const found = await devices();
 * const cpu = found.at(-1);
 * if (!(cpu instanceof CpuDevice) || !(cpu.cores >= 1)) throw new Error("expected a CpuDevice last");
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
  return [...gpus, new CpuDevice(0, { cores: Math.max(1, cores) })];
}
