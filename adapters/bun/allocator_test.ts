import { test } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { fileURLToPath } from "node:url";
import * as ta from "../../mod.ts";
import { type Runtime, startNodeProcess } from "../_test_nodes.ts";
import { missingNodeAllocatorEnv, NODE_ALLOCATOR_ENV } from "./allocator.ts";
import { allocatorFacts } from "./_test_allocator_app.ts";

const APP = fileURLToPath(new URL("./_test_allocator_app.ts", import.meta.url));
const T = { timeout: 120_000 };

test("a node's allocator settings: only what the environment lacks, and only on Bun", () => {
  assert.deepEqual(missingNodeAllocatorEnv({}, true), { ...NODE_ALLOCATOR_ENV });
  assert.deepEqual(missingNodeAllocatorEnv({ MIMALLOC_PURGE_HOLES: "1", PATH: "/bin" }, true), {});
  assert.deepEqual(missingNodeAllocatorEnv({ MIMALLOC_PURGE_HOLES: "" }, true), {}, "set, even empty, is the user's");
  assert.deepEqual(missingNodeAllocatorEnv({}, false), {});
});

/** Starts `thinkagain serve` on `runtime` with `env` added, and asks the node what it started with. */
async function factsOf(runtime: Runtime, env: Record<string, string> = {}) {
  const node = await startNodeProcess(APP, ["--port", "0", "--name", "alloc"], { runtime, env });
  try {
    await using mesh = new ta.Mesh([new ta.MeshNode("alloc", { endpoint: `ws://127.0.0.1:${node.port}` })]);
    const facts = await mesh.run(() =>
      allocatorFacts.go() as unknown as Promise<{ pid: number; purgeHoles: string | null }>
    );
    return { ...facts, spawned: node.proc.pid, output: node.output() };
  } finally {
    // its SIGTERM reaches the node (same pid), which drains and exits 0
    node.kill();
    assert.equal(await node.cleanExit(), 0, node.output());
  }
}

test(
  "thinkagain serve on Bun runs its node with the allocator setting, in the process it was started as",
  T,
  async () => {
    const own = process.env.MIMALLOC_PURGE_HOLES; // a value in this environment is passed on, and kept
    const facts = await factsOf("bun");
    assert.equal(facts.purgeHoles, own ?? NODE_ALLOCATOR_ENV.MIMALLOC_PURGE_HOLES);
    assert.equal(facts.pid, facts.spawned, "restarted in place: whoever started the node still holds its pid");
    assert.equal(facts.output.match(/listening on http/g)?.length, 1, "one ready line");
  },
);

test("thinkagain serve on Bun keeps an allocator setting it was given", T, async () => {
  const facts = await factsOf("bun", { MIMALLOC_PURGE_HOLES: "1" });
  assert.equal(facts.purgeHoles, "1");
  assert.equal(facts.pid, facts.spawned);
});

test("thinkagain serve on Deno leaves the environment alone (its allocator does not read it)", T, async () => {
  const facts = await factsOf("deno");
  assert.equal(facts.purgeHoles, process.env.MIMALLOC_PURGE_HOLES ?? null);
  assert.equal(facts.pid, facts.spawned);
});

test("the node image (deploy/k8s/Dockerfile) starts its Bun nodes with the same settings, so they need no restart", async () => {
  const { readFile } = await import("node:fs/promises");
  const dockerfile = await readFile(new URL("../../deploy/k8s/Dockerfile", import.meta.url), "utf8");
  for (const [k, v] of Object.entries(NODE_ALLOCATOR_ENV)) {
    assert.match(dockerfile, new RegExp(`^ENV ${k}=${v}$`, "m"), `ENV ${k}=${v} in the Dockerfile`);
  }
});
