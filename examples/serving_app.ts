// The module a model node serves: the seed's LLM server (`python -m thinkagain.serve
// examples.llm:LLMServer`), ported. Start it with the model loaded once, before the node says ready:
//   bun cli.ts serve examples/serving_app.ts --gpus 1 --start Generator
// Every driver then shares that one instance (examples/serving_pipeline.ts): `Generator.connect()`.
import * as ta from "../mod.ts";

/** What the "weights" are learnt from (a real model would read gigabytes here). */
const CORPUS = "the mesh holds nodes . each node serves what its module registers . a resident model " +
  "loads once and every driver shares it . drivers connect and take turns . pipelines retrieve documents " +
  "then generate answers .";

let loads = 0;

/** Builds the model's table: which word follows which (the stand-in for loading weights). */
async function loadWeights(corpus: string): Promise<Map<string, string>> {
  await new Promise((r) => setTimeout(r, 50)); // reading the weights from disk
  const words = corpus.split(/\s+/);
  const next = new Map<string, string>();
  for (let i = 0; i + 1 < words.length; i++) if (!next.has(words[i])) next.set(words[i], words[i + 1]);
  return next;
}

/**
 * A language model on a GPU: loaded once when the node starts (`--start Generator`), its `ready`
 * promise tells the node when the load is done; calls run four at a time.
 */
export const Generator = ta.service(
  { name: "Generator", gpus: 1, maxConcurrency: 4, description: "the seed's LLMServer" },
  class Generator {
    /** Settles when the weights are loaded: the node prints its ready line only after. */
    readonly ready: Promise<Map<string, string>>;
    calls = 0;
    constructor(corpus: string = CORPUS) {
      loads++;
      this.ready = loadWeights(corpus);
    }

    /** Continues the prompt word by word, grounded on the documents retrieved for it. */
    async generate(prompt: string, docs: string[], maxTokens = 6): Promise<string> {
      const next = await this.ready;
      this.calls++;
      let word = prompt.split(/\s+/).at(-1) ?? "";
      const out: string[] = [];
      for (let i = 0; i < maxTokens && next.has(word); i++) out.push(word = next.get(word)!);
      return `${prompt} … ${out.join(" ")} [${docs.length} docs]`;
    }

    /** Where it runs, how often it was loaded in this process, and how many answers it gave. */
    info(): { node: string; gpus: number[]; loads: number; calls: number } {
      const me = ta.currentInstance()!;
      return { node: me.node, gpus: me.gpus.map((g) => g.id), loads, calls: this.calls };
    }
  },
);
