// Serving a model: one node loads the Generator once (`thinkagain serve examples/serving_app.ts
// --start Generator`), and two pipelines, one on Bun and one on Deno, use it at the same time.
// Run: bun examples/serving.ts   (or deno run -A examples/serving.ts)
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import process from "node:process";
import { fileURLToPath } from "node:url";
import * as ta from "../mod.ts";
import { Generator } from "./serving_app.ts";

const root = fileURLToPath(new URL("..", import.meta.url));

function command(runtime: "bun" | "deno", script: string, args: string[]): [string, string[]] {
  const local = `${root}node_modules/.bin/${runtime}`;
  const bin = existsSync(local) ? local : runtime;
  return [bin, runtime === "bun" ? [script, ...args] : ["run", "-A", "--quiet", script, ...args]];
}

/** Runs a program to its end; resolves with what it printed. */
function run(runtime: "bun" | "deno", script: string, args: string[]): Promise<string> {
  const [bin, argv] = command(runtime, script, args);
  const proc = spawn(bin, argv, { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  proc.stdout!.on("data", (d) => (out += d));
  return new Promise((resolve, reject) => {
    proc.on("error", reject);
    proc.on("close", (code) => code === 0 ? resolve(out) : reject(new Error(`${runtime} ${script} exited ${code}`)));
  });
}

/** Starts the model node; resolves once its ready line says the Generator is loaded. */
function startModelNode(): Promise<{ endpoint: string; proc: ChildProcess }> {
  const runtime = typeof (globalThis as { Bun?: unknown }).Bun === "object" ? "bun" : "deno";
  const args = ["serve", `${root}examples/serving_app.ts`, "--port", "0", "--name", "model-node", "--gpus", "1"];
  const [bin, argv] = command(runtime, `${root}cli.ts`, [...args, "--start", "Generator"]);
  const proc = spawn(bin, argv, { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    let out = "";
    proc.stdout!.on("data", (d) => {
      out += d;
      const m = /listening on http:\/\/(\S+)/.exec(out);
      if (m) resolve({ endpoint: `ws://${m[1]}`, proc });
    });
    proc.on("exit", (code) => reject(new Error(`the model node exited with ${code} before it was ready`)));
  });
}

export async function main(): Promise<{ bun: string[]; deno: string[]; info: { loads: number; calls: number } }> {
  const node = await startModelNode();
  try {
    const pipeline = `${root}examples/serving_pipeline.ts`;
    // two drivers at once, on two runtimes, one model
    const [bun, deno] = await Promise.all([
      run("bun", pipeline, [node.endpoint, "the mesh", "each node"]),
      run("deno", pipeline, [node.endpoint, "drivers connect", "a resident model"]),
    ]);
    await using mesh = new ta.Mesh([new ta.MeshNode("model-node", { endpoint: node.endpoint })]);
    const info = await mesh.run(async () => (await Generator.connect()).info());
    const lines = { bun: bun.trim().split("\n"), deno: deno.trim().split("\n") };
    for (const l of lines.bun) console.log(`bun driver: ${l}`);
    for (const l of lines.deno) console.log(`deno driver: ${l}`);
    console.log(
      `model: loaded ${info.loads} time(s) on ${info.node} (GPU ${info.gpus.join(",")}), ${info.calls} answers`,
    );
    return { ...lines, info };
  } finally {
    node.proc.kill("SIGTERM");
    await new Promise((r) => (node.proc.exitCode !== null ? r(null) : node.proc.on("exit", r)));
  }
}

if (import.meta.main) {
  await main();
  process.exit(0);
}
