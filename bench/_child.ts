// Private to bench/: starts a benchmark's server side as a child process of the same runtime.
import { type ChildProcess, spawn } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { missingNodeAllocatorEnv } from "../adapters/bun/allocator.ts";

/**
 * Runs the benchmark file at `benchUrl` again with `--server <kind>` (under Deno with `run -A`) and
 * resolves once the child prints `PORT <n>`; rejects if it exits first. `runtimeArgs` go to the
 * runtime before the file (Bun's `--cpu-prof`, say). A child that stands for a node (`node: true`)
 * starts with what `thinkagain serve` starts a node with on its runtime (on Bun its allocator
 * setting, `adapters/bun/allocator.ts`); the baselines (raw servers, proxies) with this process's
 * environment as it is. `runtime` runs the child on the other runtime than this process's, from
 * this repository's `node_modules/.bin`.
 */
export function startBenchChild(
  benchUrl: string,
  kind: string,
  runtimeArgs: readonly string[] = [],
  options: { node?: boolean; runtime?: "bun" | "deno" } = {},
): Promise<{ child: ChildProcess; port: number }> {
  const self = fileURLToPath(benchUrl);
  const here = "Deno" in globalThis ? "deno" : "bun";
  const runtime = options.runtime ?? here;
  const exec = runtime === here
    ? process.execPath
    : fileURLToPath(new URL(`../node_modules/.bin/${runtime}`, import.meta.url));
  const argv = runtime === "deno"
    ? ["run", "-A", ...runtimeArgs, self, "--server", kind]
    : [...runtimeArgs, self, "--server", kind];
  const env = options.node
    ? { ...process.env, ...missingNodeAllocatorEnv(process.env, runtime === "bun") }
    : process.env;
  const child = spawn(exec, argv, { stdio: ["ignore", "pipe", "inherit"], env });
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (d: Uint8Array) => {
      out += new TextDecoder().decode(d);
      const m = /PORT (\d+)/.exec(out);
      if (m) resolve({ child, port: Number(m[1]) });
    });
    child.on("exit", (code) => reject(new Error(`bench server (${kind}) exited with ${code}`)));
  });
}
