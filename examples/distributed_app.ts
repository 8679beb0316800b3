// The module every node of examples/distributed.ts imports (`thinkagain serve examples/distributed_app.ts`):
// it registers the services and remote ops that may run there. Nothing else can be created remotely.
import * as ta from "../mod.ts";

/** Keyword retrieval over a tiny corpus. */
export const Retriever = ta.service(
  { name: "Retriever", cpus: 1 },
  class Retriever {
    private readonly corpus = [
      "ThinkAgain composes async functions into a DAG",
      "Services are actors placed on a mesh of nodes",
      "Transports are chosen by configuration: websocket or http",
      "A node only runs services its module registered",
    ];
    retrieve(query: string, k: number): string[] {
      const words = query.toLowerCase().split(/\W+/).filter(Boolean);
      return this.corpus
        .map((doc) => ({ doc, score: words.filter((w) => doc.toLowerCase().includes(w)).length }))
        .sort((a, b) => b.score - a.score)
        .slice(0, k)
        .map((x) => x.doc);
    }
    node(): string {
      return ta.currentInstance()!.node;
    }
  },
);

/** A "generator" that needs a GPU, and that can consult a retriever handle it is given. */
export const Generator = ta.service(
  { name: "Generator", gpus: 1 },
  class Generator {
    calls = 0;
    generate(query: string, docs: string[]): string {
      this.calls++;
      return `[${ta.currentInstance()!.node}] ${query} -> ${docs.length} docs: ${docs[0] ?? "none"}`;
    }
    async generateWith(
      retriever: ta.ServiceHandle<InstanceType<typeof Retriever.cls>>,
      query: string,
    ): Promise<string> {
      // a nested call from this node to the retriever, wherever it lives
      const docs = await retriever.retrieve.go(query, 2);
      return this.generate(query, docs);
    }
    fail(message: string): never {
      throw new TypeError(message);
    }
    async slow(ms: number): Promise<number> {
      await new Promise((r) => setTimeout(r, ms));
      return ms;
    }
    count(): number {
      return this.calls;
    }
    node(): string {
      return ta.currentInstance()!.node;
    }
  },
);

/** A remote-capable op: runs on a node that registered it. */
export const tokenize = ta.op(
  { name: "tokenize", remote: true },
  (text: string): string[] => text.toLowerCase().split(/\W+/).filter(Boolean),
);

/** Two replicas that retry: a call whose node dies is retried on the other replica. */
export const Worker = ta.service(
  { name: "Worker", replicas: 2, retries: 2, maxConcurrency: 1000 },
  class Worker {
    async work(ms: number, i: number): Promise<number> {
      await new Promise((r) => setTimeout(r, ms));
      return i;
    }
  },
);

/** One replica, no retries: a call whose node dies rejects with NodeLostError. */
export const Solo = ta.service(
  { name: "Solo", maxConcurrency: 1000 },
  class Solo {
    async work(ms: number, i: number): Promise<number> {
      await new Promise((r) => setTimeout(r, ms));
      return i;
    }
    echo<T>(x: T): T {
      return x;
    }
  },
);
