// The services of examples/streaming.ts, registered by the node that runs them
// (`thinkagain serve examples/streaming_app.ts`) and by the driver, which imports the same module.
import * as ta from "../mod.ts";

/** A stand-in for an LLM: streams its answer one token at a time, as a model decodes it. */
export const TokenGenerator = ta.service(
  { name: "TokenGenerator", maxConcurrency: 1 },
  class TokenGenerator {
    /** Counts how many generations ran to the end or were stopped (their `finally`). */
    finished = 0;

    async *generate(prompt: string, delayMs = 5): AsyncGenerator<string> {
      const words = `Answering "${prompt}": a mesh streams tokens as they are decoded`.split(" ");
      try {
        for (const word of words) {
          await new Promise((r) => setTimeout(r, delayMs)); // one decoding step
          yield `${word} `;
        }
      } finally {
        this.finished++; // also when the consumer stops early: the model frees its slot here
      }
    }
  },
);

/** A downstream step that consumes a stream as it arrives: joins the tokens and counts them. */
export const detokenize = ta.op(async function detokenize(tokens: AsyncIterable<string>) {
  let text = "";
  let count = 0;
  for await (const t of tokens) {
    text += t;
    count++;
  }
  return { text: text.trim(), count };
});
