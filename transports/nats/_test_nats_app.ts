// The module every node of the NATS cluster tests imports (thinkagain serve … --nats …): the
// README's RAG pipeline (a retriever, a GPU generator, an embed op) under names of its own.
import * as ta from "../../mod.ts";

/** Keyword retrieval over a tiny corpus. */
export const NatsRetriever = ta.service(
  { name: "NatsRetriever" },
  class NatsRetriever {
    private readonly corpus = [
      "ThinkAgain composes async functions into a DAG",
      "Services are actors placed on a mesh of nodes",
      "NATS carries discovery, control and small messages",
      "A node only runs services its module registered",
    ];
    retrieve(query: string, k: number): string[] {
      const words = query.toLowerCase().split(/\W+/).filter(Boolean);
      return this.corpus
        .map((doc) => ({ doc, score: words.filter((w) => doc.toLowerCase().includes(w)).length }))
        .sort((a, b) => b.score - a.score || a.doc.localeCompare(b.doc))
        .slice(0, k)
        .map((x) => x.doc);
    }
  },
);

/** A generator that needs a GPU. */
export const NatsGenerator = ta.service(
  { name: "NatsGenerator", gpus: 1 },
  class NatsGenerator {
    generate(query: string, docs: string[], tokens: string[]): string {
      return `${query} (${tokens.length} tokens) -> ${docs.length} docs: ${docs.join(" | ")}`;
    }
  },
);

/** Spread over every node, retrying on another replica when a node dies. */
export const NatsWorker = ta.service(
  { name: "NatsWorker", replicas: 3, retries: 3, maxConcurrency: 1000 },
  class NatsWorker {
    async work(ms: number, i: number): Promise<{ i: number; node: string }> {
      await new Promise((r) => setTimeout(r, ms));
      return { i, node: ta.currentInstance()!.node };
    }
  },
);

/** One replica, no retries: a call whose node dies rejects with NodeLostError. */
export const NatsSolo = ta.service(
  { name: "NatsSolo" },
  class NatsSolo {
    async hold(ms: number): Promise<string> {
      await new Promise((r) => setTimeout(r, ms));
      return ta.currentInstance()!.node;
    }
    where(): string {
      return ta.currentInstance()!.node;
    }
  },
);

/** A remote-capable op. */
export const natsTokenize = ta.op(
  { name: "natsTokenize", remote: true },
  (text: string): string[] => text.toLowerCase().split(/\W+/).filter(Boolean),
);

/** The README's RAG pipeline: tokenize and retrieve in parallel, then generate. */
export async function ragPipeline(
  retriever: ReturnType<typeof NatsRetriever.init>,
  generator: ReturnType<typeof NatsGenerator.init>,
  query: string,
): Promise<string> {
  const tokens = natsTokenize.go(query);
  const docs = retriever.retrieve.go(query, 2);
  return await generator.generate.go(query, docs, tokens);
}

/** The name this process serves as (`--name`), for ops that say where they ran. */
const servedAs = (() => {
  const argv = (globalThis as { process?: { argv: string[] } }).process?.argv ?? [];
  const at = argv.indexOf("--name");
  return at >= 0 ? argv[at + 1] : "driver";
})();

/** A remote op every node registers: served through the op's NATS queue group. */
export const natsWhere = ta.op(
  { name: "natsWhere", remote: true },
  async (ms: number): Promise<string> => {
    await new Promise((r) => setTimeout(r, ms));
    return servedAs;
  },
);

/** Needs two GPUs: fits only a node started with --gpus 2. */
export const NatsBig = ta.service(
  { name: "NatsBig", gpus: 2 },
  class NatsBig {
    async hold(ms: number): Promise<string> {
      await new Promise((r) => setTimeout(r, ms));
      return ta.currentInstance()!.node;
    }
  },
);

/** Large values in and out: more than NATS' default max_payload (1 MB) each way. */
export const NatsTensor = ta.service(
  { name: "NatsTensor" },
  class NatsTensor {
    double(x: Float32Array): Float32Array {
      return x.map((v) => v * 2);
    }
  },
);
