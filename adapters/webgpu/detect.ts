/// <reference types="@webgpu/types" />
/**
 * Finding WebGPU adapters and getting `GPUDevice`s for them.
 *
 * Deno and browsers have `navigator.gpu`. Bun and Node have none; there the optional `webgpu` npm
 * package (Dawn) is tried when it is installed. WebGPU cannot enumerate adapters, so the adapters
 * reported are the distinct ones returned for each power preference and for a forced fallback.
 *
 * @module
 */
import { onDeviceLost } from "./_lost.ts";

/** The limits reported for an adapter (a few that decide what kernels can run on it). */
export interface WebGpuLimits {
  /** Largest buffer, in bytes. */
  readonly maxBufferSize: number;
  /** Largest storage buffer one binding may see, in bytes. */
  readonly maxStorageBufferBindingSize: number;
  /** Largest number of workgroups in one dispatch dimension. */
  readonly maxComputeWorkgroupsPerDimension: number;
  /** Largest product of a workgroup's dimensions. */
  readonly maxComputeInvocationsPerWorkgroup: number;
  /** Largest workgroup-memory (`var<workgroup>`) size, in bytes. */
  readonly maxComputeWorkgroupStorageSize: number;
  /** Largest number of storage buffers one shader stage may bind. */
  readonly maxStorageBuffersPerShaderStage: number;
}

/**
 * One WebGPU adapter as found on this runtime: a description, not a device a mesh can use. For a
 * `ta.MeshNode`'s `gpus`, use `webgpuGpuDevices()` instead, which reports these as core
 * `GpuDevice`s.
 */
export interface WebGpuAdapterInfo {
  /**
   * Always `"webgpu-adapter"`: says what this object is to code that cannot import this module
   * (core's `Mesh` uses it to point at `webgpuGpuDevices()` when given one of these).
   */
  readonly kind: "webgpu-adapter";
  /** Position in the list returned by {@linkcode webgpuAdapters}; pass it to {@linkcode requestGpuDevice}. */
  readonly index: number;
  /** Human-readable adapter name, e.g. `"llvmpipe (LLVM 15.0.6, 256 bits)"` or `"NVIDIA H100"`. */
  readonly description: string;
  /** Vendor as the implementation reports it (a name or a PCI id); may be empty. */
  readonly vendor: string;
  /** GPU family, if reported; may be empty. */
  readonly architecture: string;
  /** Whether the implementation calls it a fallback adapter. */
  readonly isFallbackAdapter: boolean;
  /** Whether it runs on the CPU (a fallback adapter, or llvmpipe / lavapipe / SwiftShader / WARP). */
  readonly software: boolean;
  /** Where it came from: `navigator.gpu` or the `webgpu` npm package. */
  readonly source: "navigator.gpu" | "webgpu-npm";
  /** Optional features it supports (e.g. `"shader-f16"`, `"timestamp-query"`). */
  readonly features: readonly string[];
  /** A few key limits. */
  readonly limits: WebGpuLimits;
}

/** Options of {@linkcode requestGpuDevice}. */
export interface RequestGpuDeviceOptions {
  /** Extra features to require (they must be in the adapter's `features`). */
  readonly requiredFeatures?: readonly GPUFeatureName[];
  /** A label for the device (shown in validation messages). */
  readonly label?: string;
}

interface Found {
  readonly info: WebGpuAdapterInfo;
  readonly options: GPURequestAdapterOptions;
}

interface Discovery {
  readonly gpu: GPU | undefined;
  readonly source: WebGpuAdapterInfo["source"];
  readonly found: readonly Found[];
  readonly reason: string | undefined;
}

const SOFTWARE = /llvmpipe|lavapipe|swiftshader|software|microsoft basic render|warp/i;

const LIMIT_NAMES: readonly (keyof WebGpuLimits)[] = [
  "maxBufferSize",
  "maxStorageBufferBindingSize",
  "maxComputeWorkgroupsPerDimension",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupStorageSize",
  "maxStorageBuffersPerShaderStage",
];

// The `webgpu` package (Dawn for Node/Bun) is optional and not a dependency: a variable specifier
// keeps bundlers and type checkers from requiring it.
const WEBGPU_PACKAGE = "webgpu";

async function loadGpu(): Promise<{ gpu: GPU | undefined; source: WebGpuAdapterInfo["source"]; reason?: string }> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return { gpu: nav.gpu, source: "navigator.gpu" };
  let mod: { create?: (flags: string[]) => GPU };
  try {
    mod = await import(WEBGPU_PACKAGE);
  } catch {
    return {
      gpu: undefined,
      source: "webgpu-npm",
      reason: "this runtime has no navigator.gpu and the optional `webgpu` npm package is not installed",
    };
  }
  try {
    if (typeof mod.create !== "function") throw new Error("it exports no create()");
    return { gpu: mod.create([]), source: "webgpu-npm" };
  } catch (e) {
    return {
      gpu: undefined,
      source: "webgpu-npm",
      reason: `this runtime has no navigator.gpu and the \`webgpu\` npm package failed to load: ${
        (e as Error).message
      }`,
    };
  }
}

function describeAdapter(adapter: GPUAdapter, index: number, source: WebGpuAdapterInfo["source"]): WebGpuAdapterInfo {
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const legacy = (adapter as unknown as { isFallbackAdapter?: boolean }).isFallbackAdapter;
  const isFallbackAdapter = Boolean(info?.isFallbackAdapter ?? legacy ?? false);
  const description = info?.description || info?.device || "";
  const limits = {} as Record<keyof WebGpuLimits, number>;
  for (const name of LIMIT_NAMES) {
    limits[name] = Number((adapter.limits as unknown as Record<string, number>)[name] ?? 0);
  }
  return {
    kind: "webgpu-adapter",
    index,
    description,
    vendor: info?.vendor ?? "",
    architecture: info?.architecture ?? "",
    isFallbackAdapter,
    software: isFallbackAdapter || SOFTWARE.test(description),
    source,
    features: [...adapter.features].map(String).sort(),
    limits,
  };
}

const ADAPTER_REQUESTS: readonly GPURequestAdapterOptions[] = [
  {},
  { powerPreference: "high-performance" },
  { powerPreference: "low-power" },
  { forceFallbackAdapter: true },
];

async function discover(): Promise<Discovery> {
  const { gpu, source, reason } = await loadGpu();
  if (!gpu) return { gpu, source, found: [], reason };
  const found: Found[] = [];
  const seen = new Set<string>();
  for (const options of ADAPTER_REQUESTS) {
    let adapter: GPUAdapter | null = null;
    try {
      adapter = await gpu.requestAdapter(options);
    } catch {
      adapter = null;
    }
    if (!adapter) continue;
    const info = describeAdapter(adapter, found.length, source);
    const key = `${info.description}|${info.vendor}|${info.architecture}|${info.isFallbackAdapter}`;
    if (seen.has(key)) continue;
    seen.add(key);
    found.push({ info, options });
  }
  return {
    gpu,
    source,
    found,
    reason: found.length
      ? undefined
      : `${
        source === "navigator.gpu" ? "navigator.gpu" : "the `webgpu` npm package"
      } loaded but returned no adapter (no GPU driver or Vulkan/Metal/D3D12 loader found)`,
  };
}

let discovery: Promise<Discovery> | undefined;
function discovered(): Promise<Discovery> {
  return (discovery ??= discover());
}

/**
 * Lists the WebGPU adapters this runtime can reach, as descriptions (name, vendor, limits). Never
 * throws: where there is no WebGPU the list is empty and {@linkcode webgpuUnavailableReason} says
 * why. The result is computed once per process. To give a mesh node these GPUs, use
 * `webgpuGpuDevices()`, which returns them as core `GpuDevice`s.
 *
 * @returns The adapters, software (fallback) ones included, in a stable order.
 *
 * @example Listing adapters
 * ```ts
 * import { webgpuAdapters } from "./detect.ts";
 * const adapters = await webgpuAdapters();
 * for (const a of adapters) console.log(a.index, a.description, a.software ? "(software)" : "");
 * if (!adapters.every((a, i) => a.kind === "webgpu-adapter" && a.index === i)) throw new Error("unexpected");
 * ```
 */
export async function webgpuAdapters(): Promise<WebGpuAdapterInfo[]> {
  return (await discovered()).found.map((f) => f.info);
}

/**
 * Says why no WebGPU adapter is available, or `undefined` when there is at least one.
 *
 * @returns A sentence naming what is missing, or `undefined`.
 *
 * @example Reporting the missing GPU
 * ```ts
 * import { webgpuAdapters, webgpuUnavailableReason } from "./detect.ts";
 * const reason = await webgpuUnavailableReason();
 * if ((reason === undefined) !== ((await webgpuAdapters()).length > 0)) throw new Error("inconsistent");
 * ```
 */
export async function webgpuUnavailableReason(): Promise<string | undefined> {
  return (await discovered()).reason;
}

const devices = new Map<number, Promise<GPUDevice>>();

/**
 * Gets a `GPUDevice` for the adapter at `index` in {@linkcode webgpuAdapters}. The device is cached
 * per index and shared; once it is lost the cache drops it, so the next call creates a new one.
 * The device is created with the adapter's largest buffer and workgroup-memory limits.
 *
 * @param index Adapter index (default 0).
 * @param options Extra features and a label.
 * @returns The device.
 * @throws {Error} When there is no WebGPU or no adapter at `index` (the message says why).
 *
 * @example Getting a device when there is one
 * ```ts
 * import { releaseGpuDevices, requestGpuDevice, webgpuAdapters } from "./detect.ts";
 * if ((await webgpuAdapters()).length > 0) {
 *   const device = await requestGpuDevice(0);
 *   if (device !== await requestGpuDevice(0)) throw new Error("expected the cached device");
 *   await releaseGpuDevices(); // destroy it when done
 * }
 * ```
 */
export function requestGpuDevice(index: number = 0, options: RequestGpuDeviceOptions = {}): Promise<GPUDevice> {
  if (!Number.isInteger(index) || index < 0) {
    return Promise.reject(
      new RangeError(`Cannot request a GPU device: adapter index must be a non-negative integer, got ${index}`),
    );
  }
  let pending = devices.get(index);
  if (!pending) {
    pending = createDevice(index, options);
    devices.set(index, pending);
    pending.then(
      (device) =>
        onDeviceLost(device, () => {
          if (devices.get(index) === pending) devices.delete(index);
        }),
      () => {
        if (devices.get(index) === pending) devices.delete(index);
      },
    );
  }
  return pending;
}

/**
 * Destroys the devices {@linkcode requestGpuDevice} (and so `gpu()`, `matmul()` and
 * `CosineIndex.create()` without a `device`) cached, after the work submitted to them is done, and
 * forgets them: the next call creates a new device. Call it when the process (or a test file) is
 * done with the GPU, so no device outlives its user. Buffers and kernels on those devices must
 * not be used afterwards (they fail with `GpuDeviceLostError`).
 *
 * @returns Once every cached device is destroyed.
 *
 * @example Releasing the cached device when done
 * ```ts
 * import { releaseGpuDevices, requestGpuDevice, webgpuAdapters } from "./detect.ts";
 * if ((await webgpuAdapters()).length > 0) {
 *   const device = await requestGpuDevice(0);
 *   await releaseGpuDevices();
 *   const fresh = await requestGpuDevice(0);
 *   if (fresh === device) throw new Error("expected a new device");
 *   await releaseGpuDevices();
 * }
 * ```
 */
export async function releaseGpuDevices(): Promise<void> {
  const pending = [...devices.values()];
  devices.clear();
  for (const p of pending) {
    const device = await p.catch(() => undefined);
    if (!device) continue;
    await device.queue.onSubmittedWorkDone().catch(() => {});
    device.destroy();
  }
}

async function createDevice(index: number, options: RequestGpuDeviceOptions): Promise<GPUDevice> {
  const d = await discovered();
  if (!d.gpu || d.found.length === 0) throw new Error(`Cannot request a GPU device: ${d.reason}`);
  const found = d.found[index];
  if (!found) {
    throw new RangeError(
      `Cannot request a GPU device for adapter ${index}: there are ${d.found.length} (0..${d.found.length - 1})`,
    );
  }
  // An adapter can give out one device only, so request a fresh one the same way it was found.
  const adapter = await d.gpu.requestAdapter(found.options);
  if (!adapter) {
    throw new Error(`Cannot request a GPU device: adapter ${index} (${found.info.description}) is no longer available`);
  }
  const requiredLimits: Record<string, number> = {};
  for (
    const name of [
      "maxBufferSize",
      "maxStorageBufferBindingSize",
      "maxComputeWorkgroupStorageSize",
      "maxStorageBuffersPerShaderStage",
      "maxComputeInvocationsPerWorkgroup",
      "maxComputeWorkgroupSizeX",
      "maxComputeWorkgroupSizeY",
    ]
  ) {
    const v = (adapter.limits as unknown as Record<string, number>)[name];
    if (typeof v === "number") requiredLimits[name] = v;
  }
  return await adapter.requestDevice({
    label: options.label ?? `thinkagain:${index}:${found.info.description}`,
    requiredFeatures: options.requiredFeatures ? [...options.requiredFeatures] : [],
    requiredLimits,
  });
}
