#!/usr/bin/env bun
/**
 * The `thinkagain` command: `thinkagain serve <module>` starts a node that serves the services and
 * remote-capable ops its module registers, over HTTP (`/rpc`) and WebSocket (`/ws`) on one port, on
 * Bun, Deno or Node (`thinkagain --help` lists its options).
 *
 * ```sh
 * bun cli.ts serve ./app.ts --port 7070 --name n1 --gpus 1 --token secret
 * deno run -A cli.ts serve ./app.ts --port 0
 * ```
 *
 * It prints one ready line, `thinkagain node <name> listening on http://<host>:<port>`, and on
 * SIGINT/SIGTERM stops taking calls, drains the ones in flight, closes the port and exits 0.
 *
 * This entry sets the process up before it loads anything else: on Bun a node starts with the
 * allocator setting of `adapters/bun/allocator.ts` (the process restarts itself in place with it
 * when its environment lacks it). The command itself is `cli_serve.ts`.
 *
 * @module
 */
import process from "node:process";
import { restartWithNodeAllocator } from "./adapters/bun/allocator.ts";

if (import.meta.main) {
  const argv = process.argv.slice(2);
  if (argv[0] === "serve" && !argv.some((a) => a === "--help" || a === "-h")) restartWithNodeAllocator();
  const { runCli } = await import("./cli_serve.ts");
  process.exit(await runCli(argv));
}
