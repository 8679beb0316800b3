// Private test module for adapters/bun/allocator_test.ts, served by `thinkagain serve`: an op that
// tells what the node's process started with.
import process from "node:process";
import * as ta from "../../mod.ts";

/** The node process's pid and its MIMALLOC_PURGE_HOLES (null when unset). */
export const allocatorFacts = ta.op(
  { name: "allocatorFacts", remote: true },
  () => ({ pid: process.pid, purgeHoles: process.env.MIMALLOC_PURGE_HOLES ?? null }),
);
