// A small RAG-style pipeline on a 2-node in-process mesh: a retriever service with two replicas,
// a GPU generator service, fan-out of embedding ops and fan-in into a merge op, one failing query
// handled, and the profile printed at the end.
// Run: npm run demo   (bun examples/demo.ts; also deno run -A examples/demo.ts)
import * as ta from "../mod.ts";

const CORPUS = [
  "thinkagain runs async functions as a DAG",
  "services are actors placed on a mesh of nodes",
  "ObjectRefs can be passed to other calls",
  "a failed op rejects its dependents",
  "the profiler reports latency percentiles",
  "meshes place GPU services on nodes with free GPUs",
];

const embed = ta.op(async function embed(text: string): Promise<number[]> {
  // a toy embedding: letter frequencies, so the demo needs no model
  const v = new Array(26).fill(0);
  for (const ch of text.toLowerCase()) {
    const i = ch.charCodeAt(0) - 97;
    if (i >= 0 && i < 26) v[i]++;
  }
  const norm = Math.hypot(...v) || 1;
  return v.map((x) => x / norm);
});

const Retriever = ta.service(
  { replicas: 2, cpus: 1 },
  // service names are process-wide (a node finds services by them): this demo's are its own
  class DocRetriever {
    private index: Array<{ text: string; vec: number[] }> = [];
    async load(docs: string[], vecs: number[][]) {
      this.index = docs.map((text, i) => ({ text, vec: vecs[i] }));
      return this.index.length;
    }
    async retrieve(query: number[], k: number): Promise<string[]> {
      if (this.index.length === 0) throw new Error("index is empty: call load() first");
      return this.index
        .map((d) => ({ d, score: d.vec.reduce((s, x, i) => s + x * query[i], 0) }))
        .sort((a, b) => b.score - a.score)
        .slice(0, k)
        .map((x) => x.d.text);
    }
  },
);

const Generator = ta.service(
  { gpus: 1 },
  class AnswerGenerator {
    async generate(question: string, docs: string[]): Promise<string> {
      if (question.trim() === "") throw new RangeError("empty question");
      const node = ta.currentInstance()?.node;
      return `Q: ${question}\n  A (from ${docs.length} docs, on ${node}): ${docs[0]}`;
    }
  },
);

const merge = ta.op(async function merge(answers: string[]) {
  return answers.join("\n");
});

export async function main(): Promise<{ answers: string; failed: string; summary: ta.ProfileSummary }> {
  await using mesh = new ta.Mesh([
    new ta.MeshNode("cpu-node", { cpus: 4 }),
    new ta.MeshNode("gpu-node", { gpus: 1, cpus: 4 }),
  ]);
  using profiler = ta.profile();
  const result = await mesh.run(async () => {
    const retriever = Retriever.init();
    const generator = Generator.init();
    // fan-out: one embedding per document, all in parallel; every replica loads the index
    const vecs = CORPUS.map((d) => embed.go(d));
    await Promise.all([retriever.load.go(CORPUS, vecs), retriever.load.go(CORPUS, vecs)]);
    const questions = ["how do refs work", "where do GPU services run", "what happens when an op fails"];
    const answers = questions.map((q) => generator.generate.go(q, retriever.retrieve.go(embed.go(q), 2)));
    // fan-in: merge waits for every answer ref
    const merged = await merge.go(answers);
    // an error, handled: the ref rejects with OpExecutionError naming the method
    let failed = "";
    try {
      await generator.generate.go("   ", []);
    } catch (e) {
      if (!(e instanceof ta.OpExecutionError)) throw e;
      failed = `${e.op} failed: ${(e.cause as Error).message}`;
    }
    return { answers: merged, failed };
  });
  console.log(result.answers);
  console.log(`\nhandled error -> ${result.failed}\n`);
  console.log("placement:");
  for (const i of mesh.stats().instances) {
    console.log(
      `  ${i.service}[${i.replica}] on ${i.node}${
        i.gpus.length ? ` (gpus ${i.gpus.join(",")})` : ""
      }: ${i.calls} calls`,
    );
  }
  console.log(`\n${profiler.format()}`);
  return { ...result, summary: profiler.summary() };
}

if (import.meta.main) await main();
