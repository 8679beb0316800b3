// tools/test_groups.ts: which test files start processes (the integration step) and which do not.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { processUses, testGroups } from "./test_groups.ts";

/** A repository made of `files` (path → source) in a fresh folder; removed after `body`. */
async function withRepo(files: Record<string, string>, body: (root: string) => Promise<void>): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), "ta-test-groups-"));
  try {
    for (const [path, source] of Object.entries(files)) {
      await mkdir(dirname(join(root, path)), { recursive: true });
      await writeFile(join(root, path), source);
    }
    await body(root);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

test("processUses finds each process API in code, not in comments, strings or template text", () => {
  const source = [
    `import { spawn } from "node:child_process";`,
    `import cp from "child_process";`,
    `import cluster from "node:cluster";`,
    `const a = new Deno.Command("ls");`,
    `Bun.spawn(["ls"]); Bun.spawnSync(["ls"]); await Bun.$\`ls\`;`,
    `// Deno.Command in a comment`,
    "const fixture = `Bun.spawn(['x'])`; const said = 'Deno.Command(\\'ls\\')';",
    `const notIt = myDeno.Command; const alsoNot = Bun.spawner;`,
    `const lazy = await import("node:child_process");`,
  ].join("\n");
  assert.deepEqual(processUses(source), [
    { api: "node:child_process", line: 1 },
    { api: "node:child_process", line: 2 },
    { api: "node:cluster", line: 3 },
    { api: "Deno.Command", line: 4 },
    { api: "Bun.spawn", line: 5 },
    { api: "Bun.spawnSync", line: 5 },
    { api: "Bun.$", line: 5 },
    { api: "node:child_process", line: 9 },
  ]);
});

test("testGroups follows imports through helpers, and new URL references (workers, apps)", async () => {
  await withRepo({
    "core/mesh.ts": `export const mesh = 1;`,
    "core/mesh_test.ts": `import { mesh } from "./mesh.ts";`,
    "adapters/_nodes.ts": `import { spawn } from "node:child_process";\nexport const start = spawn;`,
    "adapters/_more.ts": `export { start } from "./_nodes.ts";`,
    "transports/far_test.ts": `import { start } from "../adapters/_more.ts";`,
    "transports/_worker.ts": `Deno.Command;`,
    "transports/worker_test.ts": `new Worker(new URL("./_worker.ts", import.meta.url));`,
    "transports/lazy_test.ts": `await import("../adapters/_nodes.ts");`,
    "transports/self.test.ts": `Bun.spawnSync(["true"]);`,
  }, async (root) => {
    const groups = await testGroups(root);
    assert.deepEqual(groups.unit, ["core/mesh_test.ts"]);
    assert.deepEqual(
      groups.integration.map((i) => [i.file, i.chain, i.use.api]),
      [
        [
          "transports/far_test.ts",
          ["transports/far_test.ts", "adapters/_more.ts", "adapters/_nodes.ts"],
          "node:child_process",
        ],
        ["transports/lazy_test.ts", ["transports/lazy_test.ts", "adapters/_nodes.ts"], "node:child_process"],
        ["transports/self.test.ts", ["transports/self.test.ts"], "Bun.spawnSync"],
        ["transports/worker_test.ts", ["transports/worker_test.ts", "transports/_worker.ts"], "Deno.Command"],
      ],
    );
  });
});

test("testGroups skips node_modules and dot folders, and survives an import cycle", async () => {
  await withRepo({
    "node_modules/pkg/x_test.ts": `import "node:child_process";`,
    ".gpu/y_test.ts": `import "node:child_process";`,
    "core/a.ts": `import "./b.ts";`,
    "core/b.ts": `import "./a.ts";`,
    "core/a_test.ts": `import "./a.ts";`,
  }, async (root) => {
    const groups = await testGroups(root);
    assert.deepEqual(groups, { unit: ["core/a_test.ts"], integration: [] });
  });
});

test("in this repository, tools/ci_test.ts (it runs bash) is integration and this file is unit", async () => {
  const groups = await testGroups(new URL("..", import.meta.url));
  assert.ok(groups.unit.includes("tools/test_groups_test.ts"));
  assert.ok(groups.integration.some((i) => i.file === "tools/ci_test.ts"));
});
