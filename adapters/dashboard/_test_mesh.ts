// Test fixture (private): a mesh of two in-memory nodes, a small RAG-like pipeline to run on it, and
// a reader of the dashboard's event stream.
import * as ta from "../../mod.ts";
import { NodeServer } from "../../server.ts";
import { serveInMemory } from "../../testing.ts";
import type { DashboardSnapshot } from "./app.ts";

export const Retriever = ta.service(
  { cpus: 2 },
  class DashRetriever {
    async retrieve(q: string): Promise<string[]> {
      return [`${q}:1`, `${q}:2`];
    }
  },
);

export const Generator = ta.service(
  { gpus: 1 },
  class DashGenerator {
    async generate(q: string, docs: string[]): Promise<string> {
      return `${q} (${docs.length} docs)`;
    }
  },
);

export const embed = ta.op(async function dashEmbed(q: string): Promise<string> {
  return q.toLowerCase();
});

/** The pipeline's handles. */
export interface Pipeline {
  retriever: ta.ServiceHandle<InstanceType<typeof Retriever.cls>>;
  generator: ta.ServiceHandle<InstanceType<typeof Generator.cls>>;
}

let seq = 0;

/** Two in-memory nodes (n1: 2 GPUs 8 CPUs, n2: 1 GPU 4 CPUs), a mesh over them, and a cleanup. */
export function twoNodeMesh(options: ta.MeshOptions = {}): { mesh: ta.Mesh; close(): Promise<void> } {
  const run = ++seq;
  const spec = [{ name: "n1", gpus: 2, cpus: 8 }, { name: "n2", gpus: 1, cpus: 4 }];
  const nodes = spec.map((s) => new NodeServer({ name: s.name, gpus: s.gpus, cpus: s.cpus, token: options.token }));
  const servers = nodes.map((n, i) =>
    serveInMemory(`dashboard-test-${run}-${spec[i].name}`, n.handler, { token: options.token })
  );
  const mesh = new ta.Mesh(
    spec.map((s, i) => new ta.MeshNode(s.name, { gpus: s.gpus, cpus: s.cpus, endpoint: servers[i].endpoint })),
    { name: `dash-${run}`, ...options },
  );
  return {
    mesh,
    async close() {
      await mesh.close();
      for (const s of servers) await s.close();
      for (const n of nodes) await n.drain({ graceMs: 50 });
    },
  };
}

/** Places the services (inside `mesh`). */
export function deploy(mesh: ta.Mesh): Promise<Pipeline> {
  return mesh.run(() => ({ retriever: Retriever.init(), generator: Generator.init() }));
}

/** Runs the pipeline once: embed, retrieve, generate. */
export function ask(mesh: ta.Mesh, p: Pipeline, q: string): Promise<string> {
  return mesh.run(async () => {
    const key = embed.go(q);
    const docs = p.retriever.retrieve.go(key);
    return await p.generator.generate.go(key, docs);
  });
}

/** Reads `snapshot` events from an event-stream response. */
export class SnapshotReader {
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private readonly decoder = new TextDecoder();
  private buffer = "";

  constructor(res: Response) {
    if (res.body === null) throw new Error("the event stream has no body");
    this.reader = res.body.getReader();
  }

  /** The next snapshot; rejects when the stream ends. */
  async next(): Promise<DashboardSnapshot> {
    for (;;) {
      const end = this.buffer.indexOf("\n\n");
      if (end >= 0) {
        const block = this.buffer.slice(0, end);
        this.buffer = this.buffer.slice(end + 2);
        const lines = block.split("\n");
        if (!lines.includes("event: snapshot")) continue;
        const data = lines.filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        return JSON.parse(data) as DashboardSnapshot;
      }
      const { value, done } = await this.reader.read();
      if (done) throw new Error("the event stream ended");
      this.buffer += this.decoder.decode(value, { stream: true });
    }
  }

  /**
   * Snapshots until one satisfies `ok`; fails after `limit` of them (a bound on a stream that keeps
   * sending, so a wrong figure fails the test instead of hanging it).
   */
  async until(ok: (s: DashboardSnapshot) => boolean, limit = 200): Promise<DashboardSnapshot> {
    let last: DashboardSnapshot | undefined;
    for (let i = 0; i < limit; i++) {
      last = await this.next();
      if (ok(last)) return last;
    }
    throw new Error(`no snapshot in ${limit} matched; the last: ${JSON.stringify(last)}`);
  }

  /** Stops reading (the server sees the page close). */
  cancel(): Promise<void> {
    return this.reader.cancel();
  }
}
