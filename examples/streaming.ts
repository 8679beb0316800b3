// Streaming, LLM style: a token generator service on a node process streams its tokens over one
// WebSocket; the driver prints each token as it arrives, and a downstream op takes a second stream
// as its argument and consumes it as it arrives. The node calls the generator's next() only while
// the driver holds credit (the mesh's streamWindow), so a fast model never outruns a slow reader.
// Run: bun examples/streaming.ts   (or deno run -A examples/streaming.ts)
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import process from "node:process";
import { fileURLToPath } from "node:url";
import * as ta from "../mod.ts";
import { detokenize, TokenGenerator } from "./streaming_app.ts";

const root = fileURLToPath(new URL("..", import.meta.url));

/** Starts `thinkagain serve examples/streaming_app.ts` on this runtime; resolves once it listens. */
function startNode(): Promise<{ endpoint: string; proc: ChildProcess }> {
  const bun = typeof (globalThis as { Bun?: unknown }).Bun === "object";
  const local = `${root}node_modules/.bin/${bun ? "bun" : "deno"}`;
  const bin = existsSync(local) ? local : process.execPath;
  const pre = bun ? [] : ["run", "-A", "--quiet"];
  const args = [...pre, `${root}cli.ts`, "serve", `${root}examples/streaming_app.ts`, "--port", "0", "--name", "llm"];
  const proc = spawn(bin, args, { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    let out = "";
    proc.stdout!.on("data", (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve({ endpoint: m[1].replace("http://", "ws://"), proc });
    });
    proc.on("exit", (code) => reject(new Error(`the node exited with ${code} before it was ready`)));
    proc.on("error", reject);
  });
}

export async function main(): Promise<{ printed: string[]; joined: { text: string; count: number } }> {
  const node = await startNode();
  try {
    await using mesh = new ta.Mesh([new ta.MeshNode("llm", { endpoint: node.endpoint })], {
      streamWindow: { items: 64 }, // at most 64 tokens decoded ahead of the reader
    });
    return await mesh.run(async () => {
      const llm = TokenGenerator.init();
      // 1. the ref resolves to the stream as soon as the call returns: tokens print as they come
      const printed: string[] = [];
      for await (const token of await llm.generate.go("what is a mesh")) {
        printed.push(token);
        console.log("token:", token.trim());
      }
      // 2. a downstream op takes the stream ref like any ref and reads it as it arrives
      const joined = await detokenize.go(llm.generate.go("why stream"));
      console.log(`detokenize: ${joined.count} tokens: ${joined.text}`);
      return { printed, joined };
    });
  } finally {
    node.proc.kill("SIGTERM");
  }
}

if (import.meta.main) await main();
