// Private test helpers: `thinkagain serve` node processes on 127.0.0.1, on Bun or Deno.
import { type ChildProcess, spawn } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";

export type Runtime = "bun" | "deno";

/** The runtime running this test. */
export function thisRuntime(): Runtime {
  return typeof (globalThis as { Bun?: unknown }).Bun === "object" ? "bun" : "deno";
}

/** Path of a runtime binary in node_modules/.bin (or this process's own for the current runtime). */
export function runtimeBinary(runtime: Runtime): string {
  if (runtime === thisRuntime()) return process.execPath;
  return fileURLToPath(new URL(`../node_modules/.bin/${runtime}`, import.meta.url));
}

/** Command line that runs `script` with `args` on `runtime`. */
export function runArgs(runtime: Runtime, script: string, args: string[]): [string, string[]] {
  return runtime === "bun"
    ? [runtimeBinary("bun"), [script, ...args]]
    : [runtimeBinary("deno"), ["run", "-A", "--quiet", script, ...args]];
}

const CLI = fileURLToPath(new URL("../cli.ts", import.meta.url));

/** A running node process. */
export interface NodeProcess {
  readonly url: string;
  readonly port: number;
  readonly proc: ChildProcess;
  /** Everything it printed so far. */
  output(): string;
  /** Resolves with the exit code (or signal name) when it exits. */
  readonly exited: Promise<number | string>;
  /**
   * Resolves with 0 when the node shut down cleanly after a signal (it printed its "drained" line
   * and exited 0), else with the exit code or signal. Deno's child_process reports a child that we
   * signalled as killed by that signal even when it handled it and exited 0, so the drained line is
   * the evidence there.
   */
  cleanExit(): Promise<number | string>;
  kill(signal?: NodeJS.Signals): void;
}

/**
 * Starts `thinkagain serve <module> …args` and waits for its ready line (or its exit, which
 * rejects with what it printed).
 */
export function startNodeProcess(
  module: string,
  args: string[],
  options: { runtime?: Runtime; env?: Record<string, string>; maxOpenFiles?: number } = {},
): Promise<NodeProcess> {
  let [bin, argv] = runArgs(options.runtime ?? thisRuntime(), CLI, ["serve", module, "--host", "127.0.0.1", ...args]);
  if (options.maxOpenFiles !== undefined) {
    // a node that runs out of file descriptors early (POSIX shells)
    [bin, argv] = ["/bin/sh", ["-c", `ulimit -n ${options.maxOpenFiles} && exec "$0" "$@"`, bin, ...argv]];
  }
  const proc = spawn(bin, argv, { env: { ...process.env, ...options.env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  const exited = new Promise<number | string>((resolve) => proc.on("exit", (code, sig) => resolve(code ?? sig ?? -1)));
  const closed = new Promise<void>((resolve) => proc.on("close", () => resolve()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`node did not start within 30 s:\n${out}`));
    }, 30_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      // the whole line (a port cut between two reads is not taken for a shorter one), any host
      const m = /thinkagain node \S+ listening on (http:\/\/\S+:(\d+))\r?\n/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({
          url: m[1],
          port: Number(m[2]),
          proc,
          output: () => out,
          exited,
          cleanExit: async () => {
            const code = await exited;
            // "exit" can come before the last output is read: wait for the streams to close
            await closed;
            if (code === 0) return 0;
            return thisRuntime() === "deno" && /drained, exiting/.test(out) && (code === "SIGTERM" || code === "SIGINT")
              ? 0
              : code;
          },
          kill: (s = "SIGTERM") => void proc.kill(s),
        });
      }
    };
    proc.stdout!.on("data", onData);
    proc.stderr!.on("data", (d: Buffer) => (out += d.toString()));
    exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`node exited with ${code} before it was ready:\n${out}`));
    });
  });
}

/** Resident set size of a process in bytes (Linux /proc), or undefined. */
export async function rssOf(pid: number): Promise<number | undefined> {
  try {
    const { readFileSync } = await import("node:fs");
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}
