/**
 * When a driver prompts its runtime to collect garbage for the refs its links hold: a ref dropped
 * by its holder frees its object on the node only once this process's collector finds it, so a
 * link counts the bytes its refs pin on its node (`NodeLink.holdObject`) and prompts a collection
 * every {@linkcode collectionBudget} bytes. The prompts are this process's, shared by its links:
 * they are counted here ({@linkcode startPrompt}, {@linkcode collectionPrompts}), kept apart in
 * time, and a collection made at once is rationed ({@linkcode collectNowAllowed}).
 *
 * @module
 */
import { collectNow, collectsFreedMemory } from "../core/_runtime.ts";

/**
 * The most bytes a link's refs may come to pin on its node, above the fewest since the last
 * collection prompt, before the driver prompts its runtime to collect (see `NodeLink.holdObject`):
 * 16 MiB on Bun, 64 MiB elsewhere. A prompt costs the driver little on Bun (more when thorough),
 * and on V8 an `mmap` at once and then V8's marking of the whole heap, CPU that every 1 MiB
 * hand-off of `bench/data_plane.ts` on Deno pays a share of, the larger the closer the prompts
 * (BENCHMARKS.md, Data plane, eleventh session). Fewer bytes between prompts alone do not spare
 * the node: on Bun, A took about as many page faults per 1 MiB hand-off whether it held 2 or 60
 * dropped results; a node that collects its own heap once they are freed
 * (`FreeMessage.collected`, on Bun: `collectsFreedMemory`) does, while each `free` frees a few
 * MiB: far fewer faults at 8 and 16 MiB a prompt than at 64 (its next results land on fresh
 * pages).
 */
const COLLECT_EVERY_BYTES = (collectsFreedMemory ? 16 : 64) * 1024 * 1024;

/**
 * The fewest bytes between prompts, whatever a node says its store holds: a node's `welcome` and its
 * replies' sizes are its word, and a node that claimed a store of a few bytes (or objects of
 * terabytes) must not have the driver collect at every call.
 */
const COLLECT_MIN_BYTES = 1024 * 1024;
/** The least time between two collection prompts of this process, for the same reason. */
const COLLECT_MIN_INTERVAL_MS = 10;

/**
 * The least time between two collections made at once ({@linkcode collectNow}, which stops the
 * program for a full collection), whatever a node says of its store: 100 ms, and ten times what the
 * last one took, so that they never take more than a tenth of the process's time.
 */
const COLLECT_NOW_MIN_INTERVAL_MS = 100;
/** When the next collection may be made at once (`performance.now()`). */
let collectNowAfter = -Infinity;

/**
 * Collects at once ({@linkcode collectNow}) unless one was made too recently.
 *
 * @param now `performance.now()`.
 * @returns Whether it collected (or prompted: see `collectNow`).
 *
 * @example The second collection at once waits
 * ```ts
 * import { collectNowAllowed } from "./link_collection.ts";
 * import { strictEqual } from "node:assert/strict";
 * const now = performance.now();
 * strictEqual(collectNowAllowed(now), true);
 * strictEqual(collectNowAllowed(now), false); // at least 100 ms apart
 * ```
 */
export function collectNowAllowed(now: number): boolean {
  if (now < collectNowAfter) return false;
  collectNow();
  const took = performance.now() - now;
  collectNowAfter = now + Math.max(COLLECT_NOW_MIN_INTERVAL_MS, 10 * took);
  return true;
}

/**
 * Collection prompts made by this process's links (each link resets its count when another
 * prompted). Counted by {@linkcode startPrompt}; read where it is imported (a live binding).
 *
 * @example
 * ```ts
 * import { collectionPrompts } from "./link_collection.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(Number.isSafeInteger(collectionPrompts) && collectionPrompts >= 0, true);
 * ```
 */
export let collectionPrompts = 0;
/** When the last prompt was made (`performance.now()`). */
let lastPromptAt = -Infinity;

/**
 * Starts a collection prompt at `now`, unless the last one was made less than
 * `COLLECT_MIN_INTERVAL_MS` before (the next object a link holds asks again).
 *
 * @param now `performance.now()`.
 * @returns The prompt's number ({@linkcode collectionPrompts} after it), 0 when too soon.
 *
 * @example Prompts are at least 10 ms apart
 * ```ts
 * import { startPrompt } from "./link_collection.ts";
 * import { strictEqual } from "node:assert/strict";
 * const now = Math.floor(performance.now()); // (whole ms: `now + 10 - now` is exactly 10)
 * const n = startPrompt(now);
 * strictEqual(n > 0, true);
 * strictEqual(startPrompt(now + 1), 0);
 * strictEqual(startPrompt(now + 10), n + 1);
 * ```
 */
export function startPrompt(now: number): number {
  if (now - lastPromptAt < COLLECT_MIN_INTERVAL_MS) return 0;
  lastPromptAt = now;
  return ++collectionPrompts;
}

/**
 * How many bytes a link's refs may come to pin on a node above the fewest they pinned since the last
 * collection prompt before the next: an eighth of the node's store, at most 16 MiB on Bun (64 MiB
 * elsewhere: see `COLLECT_EVERY_BYTES`), at least 1 MiB
 * whatever the node says. An eighth, because a collection frees nothing at once: V8 marks the heap
 * on its own tasks while hand-offs go on (a store of 128 MiB held at most 51 to 69 dropped results of
 * 1 MiB in the test that runs 400 through it, in the Deno test runner's 100 MB heap; 25 on Bun), and
 * live refs need room too.
 *
 * @param storeBytes The node's store bound, as its welcome says (`undefined`: an older node).
 * @returns The budget in bytes.
 *
 * @example
 * ```ts
 * import { collectionBudget } from "./link_collection.ts";
 * import { strictEqual } from "node:assert/strict";
 * import { collectsFreedMemory } from "../core/_runtime.ts";
 * strictEqual(collectionBudget(undefined), (collectsFreedMemory ? 16 : 64) * 1024 * 1024);
 * strictEqual(collectionBudget(64 * 1024 * 1024), 8 * 1024 * 1024);
 * strictEqual(collectionBudget(8), 1024 * 1024); // a node's claim of a tiny store
 * ```
 */
export function collectionBudget(storeBytes: number | undefined): number {
  return storeBytes === undefined
    ? COLLECT_EVERY_BYTES
    : Math.max(COLLECT_MIN_BYTES, Math.min(COLLECT_EVERY_BYTES, storeBytes / 8));
}
