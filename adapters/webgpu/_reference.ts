/// <reference types="@webgpu/types" />
// Private: the references that tests, examples and bench/gpu_matmul.ts check the public kernels
// against. Never re-exported by mod.ts. Arguments are trusted (callers are this repository's own
// tests); the naive kernel's input lengths are still checked by the kernel helper.
import { defineKernel } from "./kernel.ts";
import { requestGpuDevice } from "./detect.ts";
import type { MatmulOptions } from "./matmul.ts";
import type { SearchHit } from "./retrieval.ts";

const naive = defineKernel({
  name: "matmul_naive",
  code: /* wgsl */ `
struct Dims { m: u32, k: u32, n: u32, _pad: u32 }
@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<f32>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@group(0) @binding(3) var<uniform> dims: Dims;
@compute @workgroup_size(WORKGROUP_SIZE_X, WORKGROUP_SIZE_Y)
fn main(@builtin(global_invocation_id) id: vec3u) {
  let col = id.x;
  let row = id.y;
  if (row >= dims.m || col >= dims.n) { return; }
  var s = 0.0;
  for (var i = 0u; i < dims.k; i++) { s += A[row * dims.k + i] * B[i * dims.n + col]; }
  C[row * dims.n + col] = s;
}
`,
  workgroupSize: [16, 16],
  sizes: ["m", "k", "n"],
  bindings: {
    a: { kind: "input", type: "f32", length: ({ m, k }) => m * k },
    b: { kind: "input", type: "f32", length: ({ k, n }) => k * n },
    c: { kind: "output", type: "f32", length: ({ m, n }) => m * n },
    dims: { kind: "uniform", type: "u32", value: ({ m, k, n }) => [m, k, n, 0] },
  },
  workgroups: ({ m, n }) => [Math.ceil(n / 16), Math.ceil(m / 16)],
});

/**
 * GPU baseline for `matmul`: one invocation per output, scalar loads, no tiling. bench/gpu_matmul.ts
 * reports it beside the tiled kernel.
 *
 * @param a Row-major `m × k` matrix.
 * @param b Row-major `k × n` matrix.
 * @param m Rows of `a`.
 * @param k Columns of `a`, rows of `b`.
 * @param n Columns of `b`.
 * @param options The device to use (default: adapter 0).
 * @returns Row-major `m × n` product.
 */
export async function matmulNaive(
  a: Float32Array,
  b: Float32Array,
  m: number,
  k: number,
  n: number,
  options: MatmulOptions = {},
): Promise<Float32Array> {
  const device = options.device ?? await requestGpuDevice(0);
  return (await naive.run(device, { a, b }, { sizes: { m, k, n } })).c;
}

/**
 * CPU reference for `matmul`: `c = a · b` with f64 accumulation.
 *
 * @param a Row-major `m × k`.
 * @param b Row-major `k × n`.
 * @param m Rows of `a`.
 * @param k Columns of `a`.
 * @param n Columns of `b`.
 * @returns The `m × n` product.
 */
export function matmulCpu(a: Float32Array, b: Float32Array, m: number, k: number, n: number): Float32Array {
  const c = new Float32Array(m * n);
  const row = new Float64Array(n);
  for (let i = 0; i < m; i++) {
    row.fill(0);
    for (let p = 0; p < k; p++) {
      const av = a[i * k + p];
      const off = p * n;
      for (let j = 0; j < n; j++) row[j] += av * b[off + j];
    }
    c.set(row, i * n);
  }
  return c;
}

function norm(x: Float32Array, from: number, dim: number): number {
  let s = 0;
  for (let j = 0; j < dim; j++) s += x[from + j] * x[from + j];
  return Math.sqrt(s);
}

/**
 * CPU reference for `CosineIndex.search`: the `k` documents (rows of `docs`, each `dim` long) most
 * cosine-similar to `query`, best first; equal scores keep the lower index first.
 *
 * @param docs Row-major `n × dim` embeddings.
 * @param dim Embedding width.
 * @param query `dim` floats.
 * @param k How many to return (fewer when there are fewer documents).
 * @returns The top `k` hits.
 */
export function cosineTopKCpu(docs: Float32Array, dim: number, query: Float32Array, k: number): SearchHit[] {
  const n = docs.length / dim;
  const qn = norm(query, 0, dim) || 1;
  // A bounded sorted list: k is small next to n.
  const top: SearchHit[] = [];
  for (let i = 0; i < n; i++) {
    const off = i * dim;
    let dot = 0;
    for (let j = 0; j < dim; j++) dot += docs[off + j] * query[j];
    const dn = norm(docs, off, dim);
    const score = dn === 0 ? 0 : dot / (dn * qn);
    if (top.length === k && score <= top[k - 1].score) continue;
    let pos = top.length;
    while (pos > 0 && top[pos - 1].score < score) pos--;
    top.splice(pos, 0, { index: i, score });
    if (top.length > k) top.pop();
  }
  return top;
}
