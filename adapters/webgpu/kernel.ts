/// <reference types="@webgpu/types" />
/**
 * A small helper for WGSL compute kernels on typed arrays: define a kernel once, run it with typed
 * arrays on any `GPUDevice`, get typed arrays back.
 *
 * Per device it caches the compiled pipeline and bind group layout of each kernel and pools
 * buffers; each run uploads with `queue.writeBuffer`, records one command encoder, and reads all
 * outputs back through one staging buffer with one `mapAsync`.
 *
 * @module
 */
import { deviceLostError, onDeviceLost } from "./_lost.ts";
import { KernelError } from "./errors.ts";
import type { GpuDeviceLostError } from "./errors.ts";
import {
  align,
  ARRAY_CLASS,
  MAP_MODE_READ,
  noteReadback,
  typeOfArray,
  USAGE_COPY_DST,
  USAGE_COPY_SRC,
  USAGE_MAP_READ,
  USAGE_STORAGE,
  USAGE_UNIFORM,
} from "./_buffers.ts";
import { type ElementType, GpuArray, type TypedArrayFor } from "./gpu_array.ts";

/** Named integer sizes of one run (e.g. `{ m: 64, k: 32, n: 16 }`). */
export type KernelSizes<S extends string> = Readonly<Record<S, number>>;

/**
 * One `@binding` of the kernel's `@group(0)`. The binding index is the position in
 * {@linkcode KernelSpec.bindings} (insertion order).
 *
 * - `input`: `var<storage, read>`; the run passes a typed array or a {@linkcode GpuArray}.
 * - `output`: `var<storage, read_write>`, zero-filled before the dispatch and read back.
 * - `uniform`: `var<uniform>`; its values come from the run's sizes.
 */
export type KernelBinding<S extends string> =
  | { readonly kind: "input"; readonly type: ElementType; readonly length?: (sizes: KernelSizes<S>) => number }
  | { readonly kind: "output"; readonly type: ElementType; readonly length: (sizes: KernelSizes<S>) => number }
  | {
    readonly kind: "uniform";
    readonly type: ElementType;
    readonly value: (sizes: KernelSizes<S>) => readonly number[];
  };

/** Workgroup counts of a dispatch: `x` or `[x, y?, z?]`. */
export type Workgroups = number | readonly [number, number?, number?];

/** The definition of a kernel; see {@linkcode defineKernel}. */
export interface KernelSpec<S extends string, B extends Record<string, KernelBinding<S>>> {
  /** Name used in every error message about this kernel. */
  readonly name: string;
  /**
   * WGSL source with one `@compute` entry point named `main`. The helper appends
   * `const WORKGROUP_SIZE_X/Y/Z: u32` (from `workgroupSize`), so write
   * `@workgroup_size(WORKGROUP_SIZE_X, WORKGROUP_SIZE_Y)`; line numbers in errors stay yours.
   */
  readonly code: string;
  /** Workgroup size `[x, y?, z?]` (checked against the device limits). */
  readonly workgroupSize: readonly [number, number?, number?];
  /** Names of the integer sizes each run must give. */
  readonly sizes?: readonly S[];
  /** The bindings, in `@binding` order. */
  readonly bindings: B;
  /** Workgroups to dispatch for the given sizes (a run may override it). */
  readonly workgroups?: (sizes: KernelSizes<S>) => Workgroups;
}

/** What a run takes: a typed array or {@linkcode GpuArray} for each input binding. */
export type KernelInputs<B> = {
  readonly [K in keyof B as B[K] extends { kind: "input" } ? K : never]: B[K] extends
    { type: infer T extends ElementType } ? TypedArrayFor<T> | GpuArray<T>
    : never;
};

/** What a run returns: a typed array for each output binding. */
export type KernelOutputs<B> = {
  [K in keyof B as B[K] extends { kind: "output" } ? K : never]: B[K] extends { type: infer T extends ElementType }
    ? TypedArrayFor<T>
    : never;
};

/** What {@linkcode Kernel.runOnDevice} returns: a {@linkcode GpuArray} for each output binding (no readback). */
export type KernelDeviceOutputs<B> = {
  [K in keyof B as B[K] extends { kind: "output" } ? K : never]: B[K] extends { type: infer T extends ElementType }
    ? GpuArray<T>
    : never;
};

/** Options of {@linkcode Kernel.run}. */
export interface KernelRunOptions<S extends string> {
  /** The named sizes the spec declares (required when it declares any). */
  readonly sizes?: KernelSizes<S>;
  /** Workgroups to dispatch (overrides the spec's `workgroups`). */
  readonly workgroups?: Workgroups;
}

interface Compiled {
  readonly pipeline: GPUComputePipeline;
  readonly layout: GPUBindGroupLayout;
}

/** Per-device state: compiled kernels, free buffers, calls in flight. */
class DeviceState {
  readonly compiled = new Map<object, Promise<Compiled>>();
  readonly free = new Map<string, GPUBuffer[]>();
  freeBytes = 0;
  readonly pending = new Set<(e: GpuDeviceLostError) => void>();
  lost: GpuDeviceLostError | undefined;
  static readonly MAX_FREE_BYTES = 512 * 1024 * 1024;

  constructor(device: GPUDevice) {
    onDeviceLost(device, (e) => {
      this.lost = e;
      for (const reject of this.pending) reject(e);
      this.pending.clear();
      this.free.clear();
      this.compiled.clear();
    });
  }

  acquire(device: GPUDevice, size: number, usage: number, label: string): GPUBuffer {
    const key = `${usage}:${size}`;
    const list = this.free.get(key);
    const buffer = list?.pop();
    if (buffer) {
      this.freeBytes -= size;
      return buffer;
    }
    return device.createBuffer({ size, usage, label });
  }

  release(buffer: GPUBuffer): void {
    if (this.lost) return;
    const key = `${buffer.usage}:${buffer.size}`;
    let list = this.free.get(key);
    if (!list) this.free.set(key, list = []);
    list.push(buffer);
    this.freeBytes += buffer.size;
    // Trim oldest-first across keys while above the cap.
    for (const [k, l] of this.free) {
      if (this.freeBytes <= DeviceState.MAX_FREE_BYTES) break;
      while (l.length && this.freeBytes > DeviceState.MAX_FREE_BYTES) {
        const b = l.shift()!;
        this.freeBytes -= b.size;
        b.destroy();
      }
      if (!l.length) this.free.delete(k);
    }
  }
}

const states = new WeakMap<GPUDevice, DeviceState>();
function stateOf(device: GPUDevice): DeviceState {
  let s = states.get(device);
  if (!s) states.set(device, s = new DeviceState(device));
  return s;
}

async function settledOrAfter(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([p, new Promise((r) => timer = setTimeout(r, ms))]);
  clearTimeout(timer);
}

function toTriple(w: Workgroups): [number, number, number] {
  return typeof w === "number" ? [w, 1, 1] : [w[0], w[1] ?? 1, w[2] ?? 1];
}

/**
 * A WGSL compute kernel, compiled on its first run on each device; usually made with
 * {@linkcode defineKernel}.
 *
 * @example A kernel that fills its output with 7
 * ```ts
 * import { Kernel } from "./kernel.ts";
 * import { releaseGpuDevices, requestGpuDevice, webgpuAdapters } from "./detect.ts";
 * const fill = new Kernel({
 *   name: "fill_7",
 *   code: `
 *     @group(0) @binding(0) var<storage, read_write> out: array<u32>;
 *     @compute @workgroup_size(WORKGROUP_SIZE_X)
 *     fn main(@builtin(global_invocation_id) id: vec3u) {
 *       if (id.x < arrayLength(&out)) { out[id.x] = 7u; }
 *     }`,
 *   workgroupSize: [64],
 *   bindings: { out: { kind: "output", type: "u32", length: () => 3 } },
 * });
 * if (fill.name !== "fill_7") throw new Error(fill.name);
 * if ((await webgpuAdapters()).length > 0) {
 *   const { out } = await fill.run(await requestGpuDevice(0), {});
 *   if (out.join() !== "7,7,7") throw new Error(`got ${out}`);
 *   await releaseGpuDevices();
 * }
 * ```
 */
export class Kernel<S extends string, B extends Record<string, KernelBinding<S>>> {
  /** The definition. */
  readonly spec: KernelSpec<S, B>;
  private readonly entries: readonly [string, KernelBinding<S>][];
  private readonly source: string;

  /**
   * Checks the definition (name, code, workgroup size, at least one output); compiles nothing yet.
   *
   * @param spec The kernel definition.
   * @throws {TypeError | RangeError} On a missing name or code, a bad workgroup size, or no output binding.
   */
  constructor(spec: KernelSpec<S, B>) {
    if (!spec.name || typeof spec.code !== "string") {
      throw new TypeError("Cannot define a kernel: `name` and `code` are required");
    }
    const [x, y = 1, z = 1] = spec.workgroupSize;
    for (const v of [x, y, z]) {
      if (!Number.isInteger(v) || v < 1) {
        throw new RangeError(
          `Kernel "${spec.name}": workgroupSize must hold positive integers, got [${spec.workgroupSize}]`,
        );
      }
    }
    this.spec = spec;
    this.entries = Object.entries(spec.bindings);
    if (!this.entries.some(([, b]) => b.kind === "output")) {
      throw new TypeError(`Kernel "${spec.name}": declares no output binding`);
    }
    // Appended, not prepended, so the line numbers of compile errors match the user's code.
    this.source =
      `${spec.code}\nconst WORKGROUP_SIZE_X: u32 = ${x}u;\nconst WORKGROUP_SIZE_Y: u32 = ${y}u;\nconst WORKGROUP_SIZE_Z: u32 = ${z}u;\n`;
  }

  /** The kernel's name. */
  get name(): string {
    return this.spec.name;
  }

  /**
   * Runs the kernel once on `device`.
   *
   * @param device The device (e.g. from `requestGpuDevice()` or `gpu()`).
   * @param inputs A typed array or {@linkcode GpuArray} per input binding.
   * @param options The run's sizes and, optionally, workgroups.
   * @returns A typed array per output binding.
   * @throws {TypeError | RangeError} On a missing, mistyped or wrongly sized input, a missing size, or a dispatch over the device limits.
   * @throws {KernelError} When the WGSL does not compile or the GPU rejects the pipeline or dispatch.
   * @throws {GpuDeviceLostError} When the device is lost before or during the run.
   */
  run(device: GPUDevice, inputs: KernelInputs<B>, options: KernelRunOptions<S> = {}): Promise<KernelOutputs<B>> {
    const state = stateOf(device);
    const lost = state.lost ?? deviceLostError(device);
    if (lost) return Promise.reject(lost);
    return new Promise<KernelOutputs<B>>((resolve, reject) => {
      const onLost = (e: GpuDeviceLostError) => reject(e);
      state.pending.add(onLost);
      this.execute(device, state, inputs as Record<string, unknown>, options).then(
        (r) => {
          state.pending.delete(onLost);
          // A loss while mapping may surface as a map error; report the loss instead.
          if (state.lost) reject(state.lost);
          else resolve(r);
        },
        async (e) => {
          // A destroyed device fails mapAsync before device.lost settles; give the loss a moment
          // to arrive so the caller sees the cause, not the symptom.
          if (!state.lost) await settledOrAfter(device.lost, 100);
          state.pending.delete(onLost);
          reject(state.lost ?? e);
        },
      );
    });
  }

  /**
   * Runs the kernel on `device` and leaves its outputs there, as {@linkcode GpuArray}s: nothing is
   * read back, so the next kernel (or op on the same node) takes them as inputs where they are; read
   * one with `read()` when it must leave (a node sends it on its own, see {@linkcode READBACK}).
   * The caller owns the outputs (`destroy()` frees them).
   *
   * @param device The device.
   * @param inputs A typed array or a `GpuArray` for each input binding.
   * @param options The run's sizes and workgroups.
   * @returns The outputs, on the device, once the dispatch was validated.
   *
   * @example Two kernels, one readback
   * ```ts
   * import { defineKernel } from "./kernel.ts";
   * import { readbackCount } from "./gpu_array.ts";
   * import { releaseGpuDevices, requestGpuDevice, webgpuAdapters } from "./detect.ts";
   * const double = defineKernel({
   *   name: "double_doc",
   *   code: `
   *     @group(0) @binding(0) var<storage, read> a: array<f32>;
   *     @group(0) @binding(1) var<storage, read_write> out: array<f32>;
   *     @compute @workgroup_size(WORKGROUP_SIZE_X)
   *     fn main(@builtin(global_invocation_id) id: vec3u) {
   *       if (id.x < arrayLength(&a)) { out[id.x] = a[id.x] * 2.0; }
   *     }`,
   *   workgroupSize: [64],
   *   sizes: ["n"],
   *   bindings: { a: { kind: "input", type: "f32" }, out: { kind: "output", type: "f32", length: ({ n }) => n } },
   *   workgroups: ({ n }) => Math.ceil(n / 64),
   * });
   * if ((await webgpuAdapters()).length > 0) {
   *   const device = await requestGpuDevice(0);
   *   const before = readbackCount();
   *   const once = await double.runOnDevice(device, { a: new Float32Array([1, 2]) }, { sizes: { n: 2 } });
   *   const twice = await double.runOnDevice(device, { a: once.out }, { sizes: { n: 2 } });
   *   if ((await twice.out.read()).join() !== "4,8" || readbackCount() !== before + 1) throw new Error("unexpected");
   *   once.out.destroy();
   *   twice.out.destroy();
   *   await releaseGpuDevices();
   * }
   * ```
   */
  runOnDevice(
    device: GPUDevice,
    inputs: KernelInputs<B>,
    options: KernelRunOptions<S> = {},
  ): Promise<KernelDeviceOutputs<B>> {
    const state = stateOf(device);
    const lost = state.lost ?? deviceLostError(device);
    if (lost) return Promise.reject(lost);
    return this.execute(device, state, inputs as Record<string, unknown>, options, true) as unknown as Promise<
      KernelDeviceOutputs<B>
    >;
  }

  /** The pipeline for `device`, built once. */
  private compile(device: GPUDevice, state: DeviceState): Promise<Compiled> {
    let c = state.compiled.get(this);
    if (!c) {
      c = this.build(device);
      state.compiled.set(this, c);
    }
    return c;
  }

  /** Compiles the shader and builds the pipeline. */
  private async build(device: GPUDevice): Promise<Compiled> {
    const name = this.spec.name;
    device.pushErrorScope("validation");
    const module = device.createShaderModule({ code: this.source, label: name });
    const info = await module.getCompilationInfo();
    const scopeError = await device.popErrorScope();
    const errors = info.messages.filter((m) => m.type === "error");
    if (errors.length || scopeError) {
      const detail = errors.length
        ? errors.map((m) => `  ${m.lineNum}:${m.linePos} ${m.message}`).join("\n")
        : `  ${scopeError!.message}`;
      throw new KernelError(name, "WGSL compile error", detail);
    }
    const layout = device.createBindGroupLayout({
      label: name,
      entries: this.entries.map(([, b], binding) => ({
        binding,
        visibility: 4, // GPUShaderStage.COMPUTE
        buffer: { type: b.kind === "input" ? "read-only-storage" : b.kind === "output" ? "storage" : "uniform" },
      })),
    });
    device.pushErrorScope("validation");
    let pipeline: GPUComputePipeline;
    try {
      pipeline = await device.createComputePipelineAsync({
        label: name,
        layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
        compute: { module, entryPoint: "main" },
      });
    } catch (e) {
      await device.popErrorScope();
      throw new KernelError(
        name,
        "pipeline creation failed (do the WGSL @binding declarations match the spec's bindings?)",
        `  ${(e as Error).message}`,
      );
    }
    const err = await device.popErrorScope();
    if (err) {
      throw new KernelError(
        name,
        "pipeline creation failed (do the WGSL @binding declarations match the spec's bindings?)",
        `  ${err.message}`,
      );
    }
    return { pipeline, layout };
  }

  /** Uploads, dispatches and reads back one run. */
  private async execute(
    device: GPUDevice,
    state: DeviceState,
    inputs: Record<string, unknown>,
    options: KernelRunOptions<S>,
    onDevice = false,
  ): Promise<KernelOutputs<B>> {
    const name = this.spec.name;
    const sizes = (options.sizes ?? {}) as Record<string, number>;
    for (const s of this.spec.sizes ?? []) {
      const v = sizes[s];
      if (!Number.isInteger(v) || v < 0) {
        throw new TypeError(`Kernel "${name}": size "${s}" must be a non-negative integer, got ${v}`);
      }
    }
    const limits = device.limits;
    const maxBinding = limits.maxStorageBufferBindingSize;

    // Validate everything before touching the GPU.
    type Plan = {
      binding: number;
      name: string;
      b: KernelBinding<S>;
      bytes: number;
      data?: ArrayBufferView;
      resident?: GpuArray;
      length: number;
    };
    const plans: Plan[] = [];
    this.entries.forEach(([bname, b], binding) => {
      if (b.kind === "input") {
        const v = inputs[bname];
        if (v === undefined) {
          throw new TypeError(`Kernel "${name}": missing input "${bname}" (${ARRAY_CLASS[b.type].name})`);
        }
        const resident = v instanceof GpuArray ? v : undefined;
        if (resident ? resident.type !== b.type : !(v instanceof ARRAY_CLASS[b.type])) {
          throw new TypeError(
            `Kernel "${name}": input "${bname}" must be a ${ARRAY_CLASS[b.type].name} or GpuArray<${b.type}>, got ${
              typeOfArray(v)
            }`,
          );
        }
        if (resident && resident.device !== device) {
          throw new TypeError(`Kernel "${name}": input "${bname}" is a GpuArray on another device`);
        }
        const length = (v as { length: number }).length;
        const expected = b.length?.(sizes as KernelSizes<S>);
        if (expected !== undefined && length !== expected) {
          throw new RangeError(
            `Kernel "${name}": input "${bname}" must have ${expected} elements for sizes ${
              JSON.stringify(sizes)
            }, got ${length}`,
          );
        }
        plans.push({
          binding,
          name: bname,
          b,
          bytes: length * 4,
          length,
          ...(resident ? { resident } : { data: v as ArrayBufferView }),
        });
      } else if (b.kind === "output") {
        const length = b.length(sizes as KernelSizes<S>);
        if (!Number.isInteger(length) || length < 0) {
          throw new RangeError(
            `Kernel "${name}": output "${bname}" length must be a non-negative integer, got ${length}`,
          );
        }
        plans.push({ binding, name: bname, b, bytes: length * 4, length });
      } else {
        const values = b.value(sizes as KernelSizes<S>);
        const data = new ARRAY_CLASS[b.type](align(Math.max(values.length, 1), 4));
        data.set(values);
        plans.push({ binding, name: bname, b, bytes: data.byteLength, data, length: values.length });
      }
    });
    for (const p of plans) {
      if (p.b.kind !== "uniform" && p.bytes > maxBinding) {
        throw new RangeError(
          `Kernel "${name}": ${p.b.kind} "${p.name}" is ${p.bytes} bytes, over this device's maxStorageBufferBindingSize (${maxBinding})`,
        );
      }
    }
    const wg = toTriple(options.workgroups ?? this.spec.workgroups?.(sizes as KernelSizes<S>) ?? 1);
    const maxWg = limits.maxComputeWorkgroupsPerDimension;
    if (wg.some((v) => !Number.isInteger(v) || v < 0)) {
      throw new RangeError(`Kernel "${name}": workgroups must be non-negative integers, got [${wg}]`);
    }
    if (wg.some((v) => v > maxWg)) {
      throw new RangeError(
        `Kernel "${name}": dispatch of ${
          wg.join("×")
        } workgroups exceeds this device's maxComputeWorkgroupsPerDimension (${maxWg})`,
      );
    }
    const [x, y = 1, z = 1] = this.spec.workgroupSize;
    if (
      x * y * z > limits.maxComputeInvocationsPerWorkgroup || x > limits.maxComputeWorkgroupSizeX ||
      y > limits.maxComputeWorkgroupSizeY || z > limits.maxComputeWorkgroupSizeZ
    ) {
      throw new RangeError(
        `Kernel "${name}": workgroup size ${x}×${y}×${z} exceeds this device's limits (maxComputeInvocationsPerWorkgroup ${limits.maxComputeInvocationsPerWorkgroup})`,
      );
    }

    const { pipeline, layout } = await this.compile(device, state);
    if (state.lost) throw state.lost;

    const acquired: GPUBuffer[] = [];
    let staging: GPUBuffer | undefined;
    let mapped = false;
    // outputs that stay on the device: arrays of their own (the caller owns them), never pooled
    const kept: Record<string, GpuArray> = {};
    try {
      const buffers: GPUBuffer[] = [];
      let readBytes = 0;
      const readOffsets: number[] = [];
      for (const p of plans) {
        if (p.resident) {
          buffers[p.binding] = p.resident.buffer;
          continue;
        }
        if (onDevice && p.b.kind === "output") {
          const a = kept[p.name] = GpuArray.empty(device, p.b.type, p.length);
          buffers[p.binding] = a.buffer;
          continue;
        }
        const size = Math.max(16, align(p.bytes, 16));
        const usage = p.b.kind === "uniform"
          ? USAGE_UNIFORM | USAGE_COPY_DST
          : USAGE_STORAGE | USAGE_COPY_DST | USAGE_COPY_SRC;
        const buffer = state.acquire(device, size, usage, `${name}.${p.name}`);
        acquired.push(buffer);
        buffers[p.binding] = buffer;
        // (nothing to write for an empty array: Deno's writeBuffer panics on one)
        if (p.data && p.data.byteLength > 0) {
          device.queue.writeBuffer(buffer, 0, p.data.buffer, p.data.byteOffset, p.data.byteLength);
        }
        if (p.b.kind === "output") {
          readOffsets[p.binding] = readBytes;
          readBytes += align(Math.max(p.bytes, 4), 8);
        }
      }
      if (!onDevice) {
        staging = state.acquire(
          device,
          Math.max(16, align(readBytes, 16)),
          USAGE_MAP_READ | USAGE_COPY_DST,
          `${name}.readback`,
        );
      }

      device.pushErrorScope("validation");
      const encoder = device.createCommandEncoder({ label: name });
      for (const p of plans) {
        // outputs start at zero; so does an empty input's one bound element (a pooled buffer holds
        // an earlier run's data)
        if (p.b.kind === "output" || (p.b.kind === "input" && p.bytes === 0 && !p.resident)) {
          encoder.clearBuffer(buffers[p.binding]);
        }
      }
      const pass = encoder.beginComputePass({ label: name });
      pass.setPipeline(pipeline);
      pass.setBindGroup(
        0,
        device.createBindGroup({
          layout,
          entries: plans.map((p) => ({
            binding: p.binding,
            // a storage array is bound at its own length, so that arrayLength() is what the caller
            // gave, not the rounded (and pooled: an earlier run's data past it) buffer; an empty
            // one as one element (a binding holds at least that), zeroed above
            resource: {
              buffer: buffers[p.binding],
              size: p.b.kind === "uniform" ? Math.max(16, align(p.bytes, 16)) : Math.max(4, p.bytes),
            },
          })),
        }),
      );
      if (wg[0] && wg[1] && wg[2]) pass.dispatchWorkgroups(wg[0], wg[1], wg[2]);
      pass.end();
      if (onDevice) {
        device.queue.submit([encoder.finish()]);
        const err = await device.popErrorScope();
        if (err) throw new KernelError(name, `dispatch of ${wg.join("×")} workgroups failed`, `  ${err.message}`);
        if (state.lost) throw state.lost;
        const out = { ...kept };
        for (const k of Object.keys(kept)) delete kept[k]; // handed over: not freed below
        return out as unknown as KernelOutputs<B>;
      }
      for (const p of plans) {
        if (p.b.kind === "output" && p.bytes > 0) {
          encoder.copyBufferToBuffer(buffers[p.binding], 0, staging!, readOffsets[p.binding], p.bytes);
        }
      }
      device.queue.submit([encoder.finish()]);
      const validation = device.popErrorScope();
      noteReadback();
      let mapError: unknown;
      const [err] = await Promise.all([
        validation,
        staging!.mapAsync(MAP_MODE_READ, 0, staging!.size).then(() => void (mapped = true), (e) => void (mapError = e)),
      ]);
      if (err) throw new KernelError(name, `dispatch of ${wg.join("×")} workgroups failed`, `  ${err.message}`);
      if (state.lost) throw state.lost;
      if (!mapped) {
        throw new KernelError(
          name,
          "reading the outputs back failed",
          `  ${(mapError as Error)?.message ?? String(mapError)}`,
        );
      }
      const range = staging!.getMappedRange(0, staging!.size);
      const out: Record<string, Float32Array | Uint32Array | Int32Array> = {};
      for (const p of plans) {
        if (p.b.kind !== "output") continue;
        const Ctor = ARRAY_CLASS[p.b.type];
        // Copy out of the mapped range: it is detached on unmap.
        out[p.name] = new Ctor(range.slice(readOffsets[p.binding], readOffsets[p.binding] + p.bytes));
      }
      staging!.unmap();
      mapped = false;
      return out as unknown as KernelOutputs<B>;
    } finally {
      for (const a of Object.values(kept)) a.destroy(); // a run that failed leaves nothing behind
      if (mapped) staging!.unmap();
      if (!state.lost) {
        for (const b of acquired) state.release(b);
        if (staging) state.release(staging);
      }
    }
  }
}

/**
 * Defines a WGSL compute kernel. Nothing is compiled until the first run on a device; then the
 * pipeline is cached for that device.
 *
 * @param spec Name, WGSL code (entry point `main`), workgroup size, bindings, sizes and dispatch.
 * @returns The kernel; call `kernel.run(device, inputs, { sizes })`.
 *
 * @example Vector add
 * ```ts
 * import { defineKernel } from "./kernel.ts";
 * import { releaseGpuDevices, requestGpuDevice, webgpuAdapters } from "./detect.ts";
 * const add = defineKernel({
 *   name: "vector_add",
 *   code: `
 *     @group(0) @binding(0) var<storage, read> a: array<f32>;
 *     @group(0) @binding(1) var<storage, read> b: array<f32>;
 *     @group(0) @binding(2) var<storage, read_write> out: array<f32>;
 *     @group(0) @binding(3) var<uniform> n: u32;
 *     @compute @workgroup_size(WORKGROUP_SIZE_X)
 *     fn main(@builtin(global_invocation_id) id: vec3u) {
 *       if (id.x < n) { out[id.x] = a[id.x] + b[id.x]; }
 *     }`,
 *   workgroupSize: [64],
 *   sizes: ["n"],
 *   bindings: {
 *     a: { kind: "input", type: "f32", length: ({ n }) => n },
 *     b: { kind: "input", type: "f32", length: ({ n }) => n },
 *     out: { kind: "output", type: "f32", length: ({ n }) => n },
 *     n: { kind: "uniform", type: "u32", value: ({ n }) => [n] },
 *   },
 *   workgroups: ({ n }) => Math.ceil(n / 64),
 * });
 * if ((await webgpuAdapters()).length > 0) {
 *   const device = await requestGpuDevice(0);
 *   const { out } = await add.run(device, { a: new Float32Array([1, 2, 3]), b: new Float32Array([10, 20, 30]) }, { sizes: { n: 3 } });
 *   if (out.join() !== "11,22,33") throw new Error(`got ${out}`);
 *   await releaseGpuDevices();
 * }
 * ```
 */
export function defineKernel<S extends string, B extends Record<string, KernelBinding<S>>>(
  spec: KernelSpec<S, B>,
): Kernel<S, B> {
  return new Kernel(spec);
}
