/**
 * The allocator setting a node process starts with on Bun.
 *
 * Bun's allocator (its own build of mimalloc) gives the free blocks inside pages that are still in
 * use back to the system each time the event loop's thread goes idle, and whatever is allocated
 * there next takes a page fault to get them again. A node idles between every burst of work it
 * gets (between a stream's chunks while it waits for credit, between an attack's rounds, between
 * the calls of a pipeline), so it paid those faults on every wake-up where a process that never
 * idles does not (BENCHMARKS.md, Streaming and Soak under attack, nineteenth session).
 * `MIMALLOC_PURGE_HOLES=0` turns that purge off; free whole pages and large allocations still go
 * back to the system as before. The allocator reads its options only when the process starts, so
 * `thinkagain serve` ({@linkcode restartWithNodeAllocator}) restarts itself in place with the
 * setting when its environment does not have it. A value set by whoever starts the node is kept.
 *
 * This module imports nothing: the command's entry (`cli.ts`) runs it before it loads anything
 * else, so the restart costs a runtime's start and no more.
 *
 * @module
 */

/**
 * What a node process on Bun is started with, unless its environment sets these already.
 *
 * @example
 * ```ts
 * import { NODE_ALLOCATOR_ENV } from "./allocator.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(NODE_ALLOCATOR_ENV.MIMALLOC_PURGE_HOLES, "0");
 * ```
 */
export const NODE_ALLOCATOR_ENV: Readonly<Record<string, string>> = Object.freeze({ MIMALLOC_PURGE_HOLES: "0" });

/** Whether this process runs on Bun. */
function onBun(): boolean {
  return typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";
}

/**
 * The variables of {@linkcode NODE_ALLOCATOR_ENV} that `env` does not set, on Bun; nothing on
 * another runtime (whose allocator does not read them).
 *
 * @param env The environment a node process starts (or started) with.
 * @param bun Whether the node runs on Bun (default: whether this process does).
 * @returns The variables to add (empty when none).
 *
 * @example
 * ```ts
 * import { missingNodeAllocatorEnv } from "./allocator.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * deepStrictEqual(missingNodeAllocatorEnv({}, true), { MIMALLOC_PURGE_HOLES: "0" });
 * deepStrictEqual(missingNodeAllocatorEnv({ MIMALLOC_PURGE_HOLES: "1" }, true), {}); // the user's own
 * deepStrictEqual(missingNodeAllocatorEnv({}, false), {});
 * ```
 */
export function missingNodeAllocatorEnv(
  env: Readonly<Record<string, string | undefined>>,
  bun: boolean = onBun(),
): Record<string, string> {
  const out: Record<string, string> = {};
  if (!bun) return out;
  for (const [k, v] of Object.entries(NODE_ALLOCATOR_ENV)) if (env[k] === undefined) out[k] = v;
  return out;
}

/** The parts of Bun's `process` this module uses. */
interface BunProcess {
  env: Record<string, string | undefined>;
  argv: string[];
  execArgv?: string[];
  execPath: string;
  execve?: (file: string, args: string[], env: Record<string, string | undefined>) => never;
}

/**
 * On Bun, when this process's environment lacks {@linkcode NODE_ALLOCATOR_ENV}'s settings:
 * replaces this process with the same program (same pid, runtime flags and arguments) started with
 * them (`process.execve`), and does not return. Otherwise, or where the runtime cannot do that,
 * returns and the process goes on as it is.
 *
 * @example On Deno or Node it does nothing
 * ```ts ignore
 * import { restartWithNodeAllocator } from "./allocator.ts";
 * restartWithNodeAllocator(); // on Bun without MIMALLOC_PURGE_HOLES: the program starts again with it
 * ```
 */
export function restartWithNodeAllocator(): void {
  const proc = (globalThis as { process?: BunProcess }).process;
  if (proc === undefined || typeof proc.execve !== "function") return;
  const missing = missingNodeAllocatorEnv(proc.env);
  if (Object.keys(missing).length === 0) return;
  // a program compiled into one executable (`bun build --compile`) names its own code in argv[1],
  // which it does not take as an argument again: left as it is
  const script = proc.argv[1] ?? "";
  if (script.startsWith("/$bunfs/") || script.startsWith("B:/~BUN/")) return;
  try {
    proc.execve(proc.execPath, [proc.execPath, ...(proc.execArgv ?? []), ...proc.argv.slice(1)], {
      ...proc.env,
      ...missing,
    });
  } catch {
    // (the system refused: the node runs with the allocator's defaults)
  }
}
