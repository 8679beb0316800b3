/// <reference types="@webgpu/types" />
/**
 * f32 matrix multiply on WebGPU through the kernel helper: a tiled kernel (128×128 output tile per
 * workgroup, 8×8 outputs per invocation held in registers, vec4 loads, 16-deep workgroup-memory
 * tiles of A and B).
 *
 * @module
 */
import type { GpuArray } from "./gpu_array.ts";
import { defineKernel } from "./kernel.ts";
import { requestGpuDevice } from "./detect.ts";

/** Options of {@linkcode matmul}. */
export interface MatmulOptions {
  /** Device to run on (default: adapter 0 through `requestGpuDevice`). */
  readonly device?: GPUDevice;
}

// A is m × (4·k4) and B is (4·k4) × (4·n4), both row-major and zero-padded to multiples of 4 columns
// so every row starts on a vec4. Each 16×16 workgroup computes a 128×128 tile of C; invocation
// (tx, ty) owns rows {4ty..4ty+3, 64+4ty..64+4ty+3} × vec4 columns {tx, 16+tx}: 8×8 outputs.
// Splitting each invocation's rows and columns into two halves 64 apart keeps neighbouring
// invocations on neighbouring vec4s of workgroup memory (no bank conflicts on real GPUs).
const TILED_WGSL = /* wgsl */ `
struct Dims { m: u32, k4: u32, n4: u32, _pad: u32 }
@group(0) @binding(0) var<storage, read> A: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> B: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> C: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> dims: Dims;

const BK: u32 = 16u;
// As[kk][r/4] holds A[m0 + r][k0 + kk] (transposed, so a vec4 is four rows); Bs[kk][c4] = B[k0 + kk][n0/4 + c4].
var<workgroup> As: array<vec4<f32>, 512>; // 16 × 32 vec4
var<workgroup> Bs: array<vec4<f32>, 512>; // 16 × 32 vec4

@compute @workgroup_size(WORKGROUP_SIZE_X, WORKGROUP_SIZE_Y)
fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let tx = lid.x;
  let ty = lid.y;
  let tid = ty * 16u + tx;
  let m0 = wid.y * 128u;
  let n04 = wid.x * 32u;
  let kp = dims.k4 * 4u;
  var acc: array<vec4<f32>, 16>;
  for (var i = 0u; i < 16u; i++) { acc[i] = vec4<f32>(0.0); }

  for (var k0 = 0u; k0 < kp; k0 += BK) {
    // A tile: 128 rows × 4 vec4 = 512 vec4, two per invocation.
    for (var l = 0u; l < 2u; l++) {
      let idx = tid + l * 256u;
      let r = idx / 4u;
      let c4 = idx % 4u;
      var v = vec4<f32>(0.0);
      let row = m0 + r;
      let kc4 = k0 / 4u + c4;
      if (row < dims.m && kc4 < dims.k4) { v = A[row * dims.k4 + kc4]; }
      let base = c4 * 4u;
      As[(base + 0u) * 32u + r / 4u][r % 4u] = v.x;
      As[(base + 1u) * 32u + r / 4u][r % 4u] = v.y;
      As[(base + 2u) * 32u + r / 4u][r % 4u] = v.z;
      As[(base + 3u) * 32u + r / 4u][r % 4u] = v.w;
    }
    // B tile: 16 rows × 32 vec4 = 512 vec4, two per invocation.
    for (var l = 0u; l < 2u; l++) {
      let idx = tid + l * 256u;
      let kr = idx / 32u;
      let c = idx % 32u;
      var v = vec4<f32>(0.0);
      if (k0 + kr < kp && n04 + c < dims.n4) { v = B[(k0 + kr) * dims.n4 + n04 + c]; }
      Bs[kr * 32u + c] = v;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      let a0 = As[kk * 32u + ty];
      let a1 = As[kk * 32u + 16u + ty];
      let b0 = Bs[kk * 32u + tx];
      let b1 = Bs[kk * 32u + 16u + tx];
      acc[0] += a0.x * b0; acc[1] += a0.y * b0; acc[2] += a0.z * b0; acc[3] += a0.w * b0;
      acc[4] += a1.x * b0; acc[5] += a1.y * b0; acc[6] += a1.z * b0; acc[7] += a1.w * b0;
      acc[8] += a0.x * b1; acc[9] += a0.y * b1; acc[10] += a0.z * b1; acc[11] += a0.w * b1;
      acc[12] += a1.x * b1; acc[13] += a1.y * b1; acc[14] += a1.z * b1; acc[15] += a1.w * b1;
    }
    workgroupBarrier();
  }

  for (var h = 0u; h < 2u; h++) {
    let c4 = n04 + h * 16u + tx;
    if (c4 >= dims.n4) { continue; }
    for (var i = 0u; i < 8u; i++) {
      let row = m0 + (i / 4u) * 64u + ty * 4u + (i % 4u);
      if (row < dims.m) { C[row * dims.n4 + c4] = acc[h * 8u + i]; }
    }
  }
}
`;

const tiled = defineKernel({
  name: "matmul_tiled",
  code: TILED_WGSL,
  workgroupSize: [16, 16],
  sizes: ["m", "k4", "n4"],
  bindings: {
    a: { kind: "input", type: "f32", length: ({ m, k4 }) => m * k4 * 4 },
    b: { kind: "input", type: "f32", length: ({ k4, n4 }) => k4 * 4 * n4 * 4 },
    c: { kind: "output", type: "f32", length: ({ m, n4 }) => m * n4 * 4 },
    dims: { kind: "uniform", type: "u32", value: ({ m, k4, n4 }) => [m, k4, n4, 0] },
  },
  workgroups: ({ m, n4 }) => [Math.ceil(n4 / 32), Math.ceil(m / 128)],
});

function kindOf(v: unknown): string {
  return v === null ? "null" : typeof v === "object" ? (v as object).constructor.name : typeof v;
}

function checkShape(fn: string, a: Float32Array, b: Float32Array, m: number, k: number, n: number): void {
  for (const [name, v] of [["m", m], ["k", k], ["n", n]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`${fn}: ${name} must be a positive integer, got ${v}`);
  }
  if (!(a instanceof Float32Array)) throw new TypeError(`${fn}: a must be a Float32Array, got ${kindOf(a)}`);
  if (!(b instanceof Float32Array)) throw new TypeError(`${fn}: b must be a Float32Array, got ${kindOf(b)}`);
  if (a.length !== m * k) {
    throw new RangeError(`${fn}: a must hold m×k = ${m}×${k} = ${m * k} elements, got ${a.length}`);
  }
  if (b.length !== k * n) {
    throw new RangeError(`${fn}: b must hold k×n = ${k}×${n} = ${k * n} elements, got ${b.length}`);
  }
}

function padColumns(
  x: Float32Array,
  rows: number,
  cols: number,
  padCols: number,
  padRows: number = rows,
): Float32Array {
  if (cols === padCols && rows === padRows) return x;
  const out = new Float32Array(padRows * padCols);
  for (let r = 0; r < rows; r++) out.set(x.subarray(r * cols, r * cols + cols), r * padCols);
  return out;
}

/**
 * Multiplies row-major f32 matrices on the GPU with the tiled kernel: `c = a · b`, where `a` is
 * `m × k` and `b` is `k × n`. Any sizes work; when `k` or `n` is not a multiple of 4 the inputs are
 * zero-padded on the CPU first (a copy).
 *
 * @param a Row-major `m × k` matrix.
 * @param b Row-major `k × n` matrix.
 * @param m Rows of `a`.
 * @param k Columns of `a`, rows of `b`.
 * @param n Columns of `b`.
 * @param options The device to use.
 * @returns Row-major `m × n` product.
 * @throws {RangeError | TypeError} On a shape mismatch (naming which matrix).
 *
 * @example 2×2 product
 * ```ts
 * import { matmul } from "./matmul.ts";
 * import { releaseGpuDevices, webgpuAdapters } from "./detect.ts";
 * if ((await webgpuAdapters()).length > 0) {
 *   const c = await matmul(new Float32Array([1, 2, 3, 4]), new Float32Array([5, 6, 7, 8]), 2, 2, 2);
 *   if (c.join() !== "19,22,43,50") throw new Error(`got ${c}`);
 *   await releaseGpuDevices(); // the default device, when done with the GPU
 * }
 * ```
 */
export async function matmul(
  a: Float32Array,
  b: Float32Array,
  m: number,
  k: number,
  n: number,
  options: MatmulOptions = {},
): Promise<Float32Array> {
  checkShape("matmul", a, b, m, k, n);
  const device = options.device ?? await requestGpuDevice(0);
  const k4 = Math.ceil(k / 4);
  const n4 = Math.ceil(n / 4);
  const ap = padColumns(a, m, k, k4 * 4);
  const bp = padColumns(b, k, n, n4 * 4, k4 * 4);
  const { c } = await tiled.run(device, { a: ap, b: bp }, { sizes: { m, k4, n4 } });
  return n4 * 4 === n ? c : unpadColumns(c, m, n4 * 4, n);
}

function unpadColumns(x: Float32Array, rows: number, padCols: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) out.set(x.subarray(r * padCols, r * padCols + cols), r * cols);
  return out;
}

/**
 * Multiplies with the tiled kernel on inputs already on the GPU (padded as {@linkcode matmul}
 * pads them: `a` is `m × 4·ceil(k/4)`, `b` is `4·ceil(k/4) × 4·ceil(n/4)`); returns the padded
 * `m × 4·ceil(n/4)` product. For benchmarks and pipelines that keep operands resident.
 *
 * @param a `a` on the device.
 * @param b `b` on the device.
 * @param dims `{ m, k, n }` of the unpadded problem.
 * @returns The padded product.
 *
 * @example An identity `b` kept on the device
 * ```ts
 * import { matmulResident } from "./matmul.ts";
 * import { GpuArray } from "./gpu_array.ts";
 * import { releaseGpuDevices, requestGpuDevice, webgpuAdapters } from "./detect.ts";
 * if ((await webgpuAdapters()).length > 0) {
 *   const device = await requestGpuDevice(0);
 *   const a = GpuArray.from(device, new Float32Array([1, 2, 3, 4]));
 *   const b = GpuArray.from(device, new Float32Array([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]));
 *   const c = await matmulResident(a, b, { m: 1, k: 4, n: 4 });
 *   if (c.join() !== "1,2,3,4") throw new Error(`got ${c}`);
 *   a.destroy();
 *   b.destroy();
 *   await releaseGpuDevices();
 * }
 * ```
 */
export async function matmulResident(
  a: GpuArray<"f32">,
  b: GpuArray<"f32">,
  dims: { readonly m: number; readonly k: number; readonly n: number },
): Promise<Float32Array> {
  const { c } = await tiled.run(a.device, { a, b }, {
    sizes: { m: dims.m, k4: Math.ceil(dims.k / 4), n4: Math.ceil(dims.n / 4) },
  });
  return c;
}
