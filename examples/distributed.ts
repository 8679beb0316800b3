// The RAG pipeline across two node processes: one on Bun, one on Deno (when both are installed),
// each started with `thinkagain serve examples/distributed_app.ts`. The driver code is the same as
// for an in-process mesh; only the MeshNodes' endpoints differ. Set THINKAGAIN_TRANSPORT=http to
// run the same pipeline over HTTP instead of WebSocket.
// Run: bun examples/distributed.ts   (or deno run -A examples/distributed.ts)
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import process from "node:process";
import { fileURLToPath } from "node:url";
import * as ta from "../mod.ts";
import { Generator, Retriever, tokenize } from "./distributed_app.ts";

const root = fileURLToPath(new URL("..", import.meta.url));

function runtimeCommand(runtime: "bun" | "deno"): [string, string[]] | undefined {
  const local = `${root}node_modules/.bin/${runtime}`;
  const bin = existsSync(local) ? local : runtime;
  return runtime === "bun" ? [bin, []] : [bin, ["run", "-A", "--quiet"]];
}

/** Starts `thinkagain serve` on a runtime and resolves with its endpoint once it is ready. */
function startNode(
  runtime: "bun" | "deno",
  name: string,
  gpus: number,
): Promise<{ endpoint: string; proc: ChildProcess }> {
  const [bin, pre] = runtimeCommand(runtime)!;
  const proc = spawn(bin, [
    ...pre,
    `${root}cli.ts`,
    "serve",
    `${root}examples/distributed_app.ts`,
    "--port",
    "0",
    "--name",
    name,
    "--gpus",
    String(gpus),
  ], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    let out = "";
    proc.stdout!.on("data", (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve({ endpoint: m[1].replace("http://", "ws://"), proc });
    });
    proc.on("exit", (code) => reject(new Error(`${runtime} node ${name} exited with ${code} before it was ready`)));
    proc.on("error", reject);
  });
}

async function runtimeAvailable(runtime: "bun" | "deno"): Promise<boolean> {
  const [bin] = runtimeCommand(runtime)!;
  return await new Promise((resolve) => {
    const p = spawn(bin, ["--version"], { stdio: "ignore" });
    p.on("error", () => resolve(false));
    p.on("exit", (code) => resolve(code === 0));
  });
}

export async function main(): Promise<{ answers: string[]; runtimes: string[]; placement: string[] }> {
  const runtimes: Array<"bun" | "deno"> = [];
  for (const r of ["bun", "deno"] as const) if (await runtimeAvailable(r)) runtimes.push(r);
  if (runtimes.length === 0) throw new Error("neither bun nor deno is installed: run npm install");
  const pair = runtimes.length === 2 ? runtimes : [runtimes[0], runtimes[0]];
  const nodes = await Promise.all([startNode(pair[0], "cpu-node", 0), startNode(pair[1], "gpu-node", 1)]);
  try {
    await using mesh = new ta.Mesh([
      new ta.MeshNode("cpu-node", { endpoint: nodes[0].endpoint, cpus: 4 }),
      new ta.MeshNode("gpu-node", { endpoint: nodes[1].endpoint, gpus: 1, cpus: 4 }),
    ]);
    const answers = await mesh.run(async () => {
      const retriever = Retriever.init(); // placed on a node with a free CPU
      const generator = Generator.init(); // needs a GPU: only gpu-node has one
      const questions = ["what is a mesh", "how are transports chosen"];
      const direct = questions.map((q) => generator.generate.go(q, retriever.retrieve.go(q, 2)));
      // the generator (on gpu-node) calls the retriever (on cpu-node) itself, through the handle
      const nested = generator.generateWith.go(retriever, "which services can a node run");
      const tokens = tokenize.go("Bun and Deno, one mesh");
      return [...(await Promise.all(direct)), await nested, (await tokens).join(" ")];
    });
    const placement = mesh.stats().instances.map((i) => `${i.service} on ${i.node}`);
    // each line says what it is: which call gave it and where it ran
    const labels = [
      "answer 1 (retrieve on cpu-node, then generate on gpu-node)",
      "answer 2 (retrieve on cpu-node, then generate on gpu-node)",
      "answer 3 (the generator calls the retriever itself, through the handle)",
      "tokenize (a remote op, run on a node)",
    ];
    console.log(`nodes: cpu-node on ${pair[0]}, gpu-node on ${pair[1]}`);
    answers.forEach((a, i) => console.log(`${labels[i]}: ${a}`));
    console.log(`placement (service on node): ${placement.join(", ")}`);
    return { answers, runtimes: pair, placement };
  } finally {
    for (const n of nodes) n.proc.kill("SIGTERM");
    await Promise.all(
      nodes.map((n) => new Promise((r) => (n.proc.exitCode !== null ? r(null) : n.proc.on("exit", r)))),
    );
  }
}

if (import.meta.main) {
  await main();
  process.exit(0);
}
