/**
 * A RAG pipeline whose retriever is a GPU service: it holds a matrix of document embeddings on the
 * GPU and answers top-k cosine similarity there; an `embed` op turns questions into vectors and a
 * `generate` op writes the answer from the hits. Every retrieval is checked against a CPU
 * reference. Where this runtime has no WebGPU (Bun, Node without the `webgpu` package) it says so
 * and the retriever runs on the CPU instead.
 *
 * Run: `npx deno run -A examples/gpu_retrieval.ts [--docs 100000] [--dim 384] [--k 5]`
 * (or `GPU_RETRIEVAL_DOCS=5000`). Embeddings are generated from a seeded PRNG, so runs repeat.
 *
 * @module
 */
import * as ta from "../mod.ts";
import {
  CosineIndex,
  gpu,
  releaseGpuDevices,
  type SearchHit,
  webgpuAdapters,
  webgpuGpuDevices,
  webgpuUnavailableReason,
} from "../adapters/webgpu/mod.ts";
// The CPU reference is a test helper, not part of the public API.
import { cosineTopKCpu } from "../adapters/webgpu/_reference.ts";

/** Options of {@linkcode runGpuRetrieval}. */
export interface GpuRetrievalOptions {
  /** Number of documents (default 100 000). */
  readonly docs?: number;
  /** Embedding width (default 384). */
  readonly dim?: number;
  /** Hits per question (default 5). */
  readonly k?: number;
  /** Questions to ask (default three). */
  readonly questions?: readonly string[];
  /** Force the CPU retriever even where WebGPU exists. */
  readonly cpu?: boolean;
  /** Where progress lines go (default: nowhere). */
  readonly log?: (line: string) => void;
}

/** What {@linkcode runGpuRetrieval} found. */
export interface GpuRetrievalResult {
  /** Which retriever ran. */
  readonly backend: "webgpu" | "cpu";
  /** The adapter used, or why there was none. */
  readonly device: string;
  /** One answer per question. */
  readonly answers: readonly string[];
  /** The retriever's hits per question. */
  readonly hits: readonly (readonly SearchHit[])[];
  /** Whether every question's hits equal the CPU reference (same documents, same order). */
  readonly matchesCpu: boolean;
  /** Mean milliseconds per retrieval inside the pipeline. */
  readonly retrieveMs: number;
  /** Mean milliseconds per CPU-reference retrieval. */
  readonly cpuMs: number;
}

const SEED = 20241125;

/** Seeded embeddings in [-1, 1) (mulberry32), `count` floats. */
function embeddings(count: number, seed: number): Float32Array {
  const out = new Float32Array(count);
  let s = seed >>> 0;
  for (let i = 0; i < count; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2) - 1;
  }
  return out;
}

function hashString(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** Stand-in embedding model: a question maps to a fixed pseudo-random vector. */
const embed = ta.op(async function embed(question: string, dim: number): Promise<Float32Array> {
  return embeddings(dim, hashString(question));
});

/** Stand-in generator: cites the documents it was given. */
const generate = ta.op(async function generate(question: string, hits: readonly SearchHit[]): Promise<string> {
  const cited = hits.map((h) => `doc#${h.index} (${h.score.toFixed(3)})`).join(", ");
  return `${question} → answered from ${cited}`;
});

/** Retriever on a GPU: the embeddings live on the device placement assigned to this instance. */
const GpuRetriever = ta.service(
  { gpus: 1, description: "top-k cosine retrieval on WebGPU" },
  class GpuRetriever {
    readonly index: Promise<CosineIndex>;
    constructor(docs: number, dim: number) {
      this.index = gpu().then((device) => CosineIndex.create(embeddings(docs * dim, SEED), dim, { device }));
    }
    async retrieve(query: Float32Array, k: number): Promise<SearchHit[]> {
      return await (await this.index).search(query, k);
    }
    // Called by the mesh when it closes: frees the GPU buffers.
    async [Symbol.asyncDispose](): Promise<void> {
      (await this.index).destroy();
    }
  },
);

/** The same retriever on the CPU, for runtimes without WebGPU. */
const CpuRetriever = ta.service(
  { description: "top-k cosine retrieval on the CPU" },
  class CpuRetriever {
    readonly docs: Float32Array;
    readonly dim: number;
    constructor(docs: number, dim: number) {
      this.docs = embeddings(docs * dim, SEED);
      this.dim = dim;
    }
    async retrieve(query: Float32Array, k: number): Promise<SearchHit[]> {
      return cosineTopKCpu(this.docs, this.dim, query, k);
    }
  },
);

/**
 * Builds the mesh, runs the pipeline for each question, and checks each retrieval against the CPU
 * reference.
 *
 * @param options Sizes, questions, backend and logging.
 * @returns Answers, hits, whether they match the CPU reference, and timings.
 *
 * @example A small run
 * ```ts
 * import { runGpuRetrieval } from "./gpu_retrieval.ts";
 * import { releaseGpuDevices } from "../adapters/webgpu/mod.ts";
 * const r = await runGpuRetrieval({ docs: 500, dim: 16, k: 3 });
 * await releaseGpuDevices(); // the device the retriever service used
 * if (!r.matchesCpu || r.answers.length !== 3) throw new Error("unexpected");
 * ```
 */
export async function runGpuRetrieval(options: GpuRetrievalOptions = {}): Promise<GpuRetrievalResult> {
  const docs = options.docs ?? 100_000;
  const dim = options.dim ?? 384;
  const k = options.k ?? 5;
  const questions = options.questions ?? ["What is ML?", "How do GPUs multiply matrices?", "Why cosine similarity?"];
  const log = options.log ?? (() => {});

  const adapters = options.cpu ? [] : await webgpuAdapters();
  const onGpu = adapters.length > 0;
  const device = onGpu
    ? `${adapters[0].description}${adapters[0].software ? " (software adapter)" : ""}`
    : options.cpu
    ? "CPU (forced)"
    : `no WebGPU on this runtime: ${await webgpuUnavailableReason()}`;
  log(onGpu ? `retriever on WebGPU: ${device}` : `${device}; the retriever runs on the CPU`);

  const mesh = new ta.Mesh([
    new ta.MeshNode("local", { gpus: onGpu ? (await webgpuGpuDevices()).slice(0, 1) : [], cpus: 4 }),
  ]);
  try {
    const t0 = performance.now();
    const run = await mesh.run(async () => {
      const retriever = onGpu ? GpuRetriever.init(docs, dim) : CpuRetriever.init(docs, dim);
      // Warm up: builds the index (generation, upload) and compiles the kernel outside the timing.
      await retriever.retrieve.go(await embed.go("warm-up", dim), k);
      const t1 = performance.now();
      const perQuestion = await Promise.all(questions.map(async (q) => {
        const query = embed.go(q, dim);
        const hits = retriever.retrieve.go(query, k);
        return { answer: await generate.go(q, hits), hits: await hits, query: await query };
      }));
      return { perQuestion, ms: (performance.now() - t1) / questions.length };
    });
    log(
      `${docs} × ${dim} embeddings; setup + ${questions.length} questions in ${(performance.now() - t0).toFixed(0)} ms`,
    );

    const reference = embeddings(docs * dim, SEED);
    const c0 = performance.now();
    const expected = run.perQuestion.map((r) => cosineTopKCpu(reference, dim, r.query, k));
    const cpuMs = (performance.now() - c0) / questions.length;
    const matchesCpu = run.perQuestion.every((r, i) =>
      r.hits.length === expected[i].length &&
      r.hits.every((h, j) => h.index === expected[i][j].index && Math.abs(h.score - expected[i][j].score) < 1e-4)
    );
    for (const r of run.perQuestion) log(r.answer);
    log(
      `retrieval: ${run.ms.toFixed(1)} ms per question in the pipeline (${onGpu ? "GPU" : "CPU"}); CPU reference ${
        cpuMs.toFixed(1)
      } ms; top-${k} ${matchesCpu ? "matches" : "DIFFERS FROM"} the CPU reference`,
    );
    return {
      backend: onGpu ? "webgpu" : "cpu",
      device,
      answers: run.perQuestion.map((r) => r.answer),
      hits: run.perQuestion.map((r) => r.hits),
      matchesCpu,
      retrieveMs: run.ms,
      cpuMs,
    };
  } finally {
    await mesh.close();
  }
}

function cliArg(name: string): string | undefined {
  const args = (globalThis as { Deno?: { args: string[] } }).Deno?.args ??
    (globalThis as { process?: { argv: string[] } }).process?.argv.slice(2) ?? [];
  const i = args.indexOf(`--${name}`);
  return i < 0 ? undefined : (args[i + 1] ?? "");
}

function envDocs(): string | undefined {
  const g = globalThis as {
    Deno?: { env: { get(k: string): string | undefined } };
    process?: { env: Record<string, string | undefined> };
  };
  try {
    return g.Deno?.env.get("GPU_RETRIEVAL_DOCS") ?? g.process?.env.GPU_RETRIEVAL_DOCS;
  } catch {
    return undefined; // no --allow-env
  }
}

if ((import.meta as ImportMeta & { main?: boolean }).main) {
  const docs = Number(cliArg("docs") ?? envDocs() ?? 100_000);
  const result = await runGpuRetrieval({
    docs,
    dim: Number(cliArg("dim") ?? 384),
    k: Number(cliArg("k") ?? 5),
    cpu: cliArg("cpu") !== undefined,
    log: (line) => console.log(line),
  });
  await releaseGpuDevices();
  if (!result.matchesCpu) throw new Error("GPU retrieval differs from the CPU reference");
}
