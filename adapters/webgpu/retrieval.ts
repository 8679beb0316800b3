/// <reference types="@webgpu/types" />
/**
 * Top-k cosine-similarity search over a matrix of embeddings kept on the GPU.
 *
 * The documents are normalized once and uploaded in chunks that fit the device's storage-binding
 * limit. A query runs one kernel per chunk: each invocation scores a run of 32 documents and keeps
 * its own top k in registers; the CPU merges those candidates (a few per 32 documents).
 *
 * @module
 */
import { GpuArray } from "./gpu_array.ts";
import { defineKernel } from "./kernel.ts";
import { requestGpuDevice } from "./detect.ts";

/** One search result: a document index and its cosine similarity to the query. */
export interface SearchHit {
  /** Row of the document in the matrix the index was built from. */
  readonly index: number;
  /** Cosine similarity in [-1, 1]. */
  readonly score: number;
}

/** Options of {@linkcode CosineIndex.create}. */
export interface CosineIndexOptions {
  /** Device to keep the embeddings on (default: adapter 0). */
  readonly device?: GPUDevice;
  /** Largest chunk in bytes (default: the device's maxStorageBufferBindingSize). */
  readonly maxChunkBytes?: number;
}

/**
 * Largest `k` a search may ask for (the per-invocation top-k lives in registers).
 *
 * @example Clamping a requested k
 * ```ts
 * import { MAX_K } from "./retrieval.ts";
 * const k = Math.min(100, MAX_K);
 * if (k !== 64) throw new Error(`got ${k}`);
 * ```
 */
export const MAX_K: number = 64;
const SEG = 32;
const WG = 64;

const scoreTopK = defineKernel({
  name: "cosine_topk",
  code: /* wgsl */ `
struct Params { n: u32, dim4: u32, k: u32, seg: u32 }
@group(0) @binding(0) var<storage, read> docs: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> query: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> outScore: array<f32>;
@group(0) @binding(3) var<storage, read_write> outIndex: array<u32>;
@group(0) @binding(4) var<uniform> p: Params;

const MAX_K: u32 = ${MAX_K}u;

@compute @workgroup_size(WORKGROUP_SIZE_X)
fn main(@builtin(global_invocation_id) id: vec3u) {
  let first = id.x * p.seg;
  if (first >= p.n) { return; }
  var best: array<f32, MAX_K>;
  var bestIdx: array<u32, MAX_K>;
  for (var i = 0u; i < p.k; i++) { best[i] = -3.0e38; bestIdx[i] = 0xffffffffu; }
  let last = min(first + p.seg, p.n);
  for (var d = first; d < last; d++) {
    var acc = vec4<f32>(0.0);
    let row = d * p.dim4;
    for (var j = 0u; j < p.dim4; j++) { acc += docs[row + j] * query[j]; }
    let s = acc.x + acc.y + acc.z + acc.w;
    if (s > best[p.k - 1u]) {
      // Insert after every entry >= s, so on equal scores the lower index stays ahead.
      var pos = p.k - 1u;
      while (pos > 0u && best[pos - 1u] < s) {
        best[pos] = best[pos - 1u];
        bestIdx[pos] = bestIdx[pos - 1u];
        pos--;
      }
      best[pos] = s;
      bestIdx[pos] = d;
    }
  }
  let out = id.x * p.k;
  for (var i = 0u; i < p.k; i++) { outScore[out + i] = best[i]; outIndex[out + i] = bestIdx[i]; }
}
`,
  workgroupSize: [WG],
  sizes: ["n", "dim4", "k"],
  bindings: {
    docs: { kind: "input", type: "f32", length: ({ n, dim4 }) => n * dim4 * 4 },
    query: { kind: "input", type: "f32", length: ({ dim4 }) => dim4 * 4 },
    outScore: { kind: "output", type: "f32", length: ({ n, k }) => Math.ceil(n / SEG) * k },
    outIndex: { kind: "output", type: "u32", length: ({ n, k }) => Math.ceil(n / SEG) * k },
    params: { kind: "uniform", type: "u32", value: ({ n, dim4, k }) => [n, dim4, k, SEG] },
  },
  workgroups: ({ n }) => Math.ceil(Math.ceil(n / SEG) / WG),
});

function checkMatrix(fn: string, docs: Float32Array, dim: number): number {
  if (!(docs instanceof Float32Array)) throw new TypeError(`${fn}: docs must be a Float32Array`);
  if (!Number.isInteger(dim) || dim < 1) throw new RangeError(`${fn}: dim must be a positive integer, got ${dim}`);
  if (docs.length % dim !== 0) {
    throw new RangeError(`${fn}: docs has ${docs.length} elements, not a multiple of dim ${dim}`);
  }
  return docs.length / dim;
}

function checkQuery(fn: string, query: Float32Array, dim: number, k: number, max: number): void {
  if (!(query instanceof Float32Array) || query.length !== dim) {
    throw new RangeError(
      `${fn}: query must be a Float32Array of ${dim} elements, got ${(query as { length?: number })?.length}`,
    );
  }
  if (!Number.isInteger(k) || k < 1 || k > max) {
    throw new RangeError(`${fn}: k must be an integer in 1..${max}, got ${k}`);
  }
}

function norm(x: Float32Array, from: number, dim: number): number {
  let s = 0;
  for (let j = 0; j < dim; j++) s += x[from + j] * x[from + j];
  return Math.sqrt(s);
}

/** Sorts by score descending, then index ascending (the order a search defines), keeping `k`. */
function takeTop(hits: SearchHit[], k: number): SearchHit[] {
  return hits.sort((a, b) => b.score - a.score || a.index - b.index).slice(0, k);
}

/**
 * Document embeddings kept on a GPU for top-k cosine search. Build it once with
 * {@linkcode CosineIndex.create}, query it many times, `destroy()` it when done.
 *
 * @example Three documents, one query
 * ```ts
 * import { CosineIndex } from "./retrieval.ts";
 * import { releaseGpuDevices, webgpuAdapters } from "./detect.ts";
 * if ((await webgpuAdapters()).length > 0) {
 *   const index = await CosineIndex.create(new Float32Array([1, 0, 0, 1, 1, 1]), 2);
 *   const [hit] = await index.search(new Float32Array([0, 2]), 1);
 *   index.destroy();
 *   await releaseGpuDevices(); // the default device, when done with the GPU
 *   if (hit.index !== 1) throw new Error(`got ${hit.index}`);
 * }
 * ```
 */
export class CosineIndex {
  /** Number of documents. */
  readonly size: number;
  /** Embedding width. */
  readonly dim: number;
  /** The device holding the embeddings. */
  readonly device: GPUDevice;
  private readonly dim4: number;
  private readonly chunks: readonly { readonly start: number; readonly rows: number; readonly data: GpuArray<"f32"> }[];

  private constructor(device: GPUDevice, size: number, dim: number, chunks: CosineIndex["chunks"]) {
    this.device = device;
    this.size = size;
    this.dim = dim;
    this.dim4 = Math.ceil(dim / 4);
    this.chunks = chunks;
  }

  /**
   * Normalizes `docs` (rows of `dim`) and uploads them in chunks.
   *
   * @param docs Row-major `n × dim` embeddings (not modified).
   * @param dim Embedding width.
   * @param options Device and chunk size.
   * @returns The index.
   */
  static async create(docs: Float32Array, dim: number, options: CosineIndexOptions = {}): Promise<CosineIndex> {
    const n = checkMatrix("CosineIndex.create", docs, dim);
    const device = options.device ?? await requestGpuDevice(0);
    const dim4 = Math.ceil(dim / 4);
    const rowBytes = dim4 * 16;
    const maxBytes = Math.min(options.maxChunkBytes ?? Infinity, device.limits.maxStorageBufferBindingSize);
    const maxRowsByDispatch = device.limits.maxComputeWorkgroupsPerDimension * WG * SEG;
    const rowsPerChunk = Math.max(1, Math.min(Math.floor(maxBytes / rowBytes), maxRowsByDispatch));
    const chunks = [];
    for (let start = 0; start < n || (n === 0 && chunks.length === 0); start += rowsPerChunk) {
      const rows = Math.min(rowsPerChunk, n - start);
      const data = new Float32Array(Math.max(rows, 1) * dim4 * 4);
      for (let r = 0; r < rows; r++) {
        const off = (start + r) * dim;
        const len = norm(docs, off, dim);
        const inv = len === 0 ? 0 : 1 / len;
        const to = r * dim4 * 4;
        for (let j = 0; j < dim; j++) data[to + j] = docs[off + j] * inv;
      }
      chunks.push({ start, rows, data: GpuArray.from(device, data) });
      if (n === 0) break;
    }
    return new CosineIndex(device, n, dim, chunks);
  }

  /**
   * The `k` documents most cosine-similar to `query`, best first (equal scores: lower index first).
   *
   * @param query `dim` floats (need not be normalized).
   * @param k How many (1..{@linkcode MAX_K}).
   * @returns The hits.
   */
  async search(query: Float32Array, k: number): Promise<SearchHit[]> {
    checkQuery("CosineIndex.search", query, this.dim, k, MAX_K);
    const q = new Float32Array(this.dim4 * 4);
    const qn = norm(query, 0, this.dim) || 1;
    for (let j = 0; j < this.dim; j++) q[j] = query[j] / qn;
    const parts = await Promise.all(
      this.chunks.filter((c) => c.rows > 0).map(async (c) => {
        const kk = Math.min(k, c.rows);
        const { outScore, outIndex } = await scoreTopK.run(this.device, { docs: c.data, query: q }, {
          sizes: { n: c.rows, dim4: this.dim4, k: kk },
        });
        const hits: SearchHit[] = [];
        for (let i = 0; i < outIndex.length; i++) {
          if (outIndex[i] !== 0xffffffff) hits.push({ index: c.start + outIndex[i], score: outScore[i] });
        }
        return hits;
      }),
    );
    return takeTop(parts.flat(), k);
  }

  /** Frees the GPU buffers. */
  destroy(): void {
    for (const c of this.chunks) c.data.destroy();
  }
}
