// One pipeline using the resident Generator of a model node (examples/serving.ts runs two at once,
// one on Bun and one on Deno). It retrieves in this process and generates on the node.
// Run: bun examples/serving_pipeline.ts ws://127.0.0.1:7070 "the mesh"
import process from "node:process";
import * as ta from "../mod.ts";
import { Generator } from "./serving_app.ts";

const DOCS = ["each node serves services", "drivers connect to a resident model", "the mesh places services"];

/** Finds the documents that share a word with the question (runs in the driver). */
export const retrieve = ta.op(async function retrieve(question: string): Promise<string[]> {
  const words = new Set(question.split(/\s+/));
  return DOCS.filter((d) => d.split(/\s+/).some((w) => words.has(w)));
});

/**
 * Answers each question with the node's resident Generator: connect (no instance of its own, the
 * model is already loaded), then retrieve → generate per question, all in flight at once.
 */
export async function answer(endpoint: string, questions: string[]): Promise<string[]> {
  await using mesh = new ta.Mesh([new ta.MeshNode("model-node", { endpoint })]);
  return await mesh.run(async () => {
    const generator = await Generator.connect();
    return await Promise.all(questions.map((q) => generator.generate.go(q, retrieve.go(q))));
  });
}

if (import.meta.main) {
  const [endpoint, ...questions] = process.argv.slice(2);
  for (const a of await answer(endpoint, questions)) console.log(a);
}
