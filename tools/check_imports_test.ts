import { deepStrictEqual } from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { checkImports, parseImports } from "./check_imports.ts";

/** Writes `files` (root-relative path → source) into a fresh temp folder, runs the check, removes it. */
async function checkTree(files: Record<string, string>): Promise<string[]> {
  const root = await mkdtemp(join(tmpdir(), "check-imports-test-"));
  try {
    for (const [path, source] of Object.entries(files)) {
      await mkdir(dirname(join(root, path)), { recursive: true });
      await writeFile(join(root, path), source);
    }
    return (await checkImports(root)).map((v) => v.message);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

test("checkImports finds no cycle, no import against adapters → transports → core and no runtime API in this repository", async () => {
  const found = await checkImports(new URL("..", import.meta.url));
  deepStrictEqual(found.map((v) => v.message), []);
});

test("checkImports reports a cycle, imports against the layer direction and runtime APIs in a small tree", async () => {
  const found = await checkTree({
    "mod.ts": `export * from "./core/mesh.ts";`,
    "core/mesh.ts": `import { Service } from "./service.ts";\nexport class Mesh {}`,
    "core/service.ts": `import { Mesh } from "./mesh.ts";\nexport class Service {}`,
    "core/op.ts": `import { http } from "../transports/http.ts";\nimport * as ta from "../mod.ts";`,
    "core/env.ts": `// Deno.env in a comment is fine\nexport const home = Deno.env.get("HOME") ?? process.env.HOME;`,
    "core/_runtime.ts": `import { AsyncLocalStorage } from "node:async_hooks";\nimport { readFile } from "node:fs";`,
    "core/mesh_test.ts":
      `import { readFile } from "node:fs";\nimport * as ta from "../mod.ts";\nconsole.log(Deno.args);`,
    "transports/http.ts": `import { serve } from "../adapters/serve.ts";\nimport { WebSocket } from "ws";`,
    "adapters/serve.ts": `import { createServer } from "node:http";\nexport const serve = Bun.serve;`,
  });
  deepStrictEqual(found, [
    "import cycle: core/mesh.ts → core/service.ts → core/mesh.ts",
    "core/_runtime.ts:2: imports node:fs: core/ and transports/ use Web-standard APIs only " +
    "(only core/_runtime.ts may import a node: module, and only node:async_hooks, node:v8, node:vm)",
    "core/env.ts:2: uses Deno: core/ and transports/ use Web-standard APIs only",
    "core/env.ts:2: uses process: core/ and transports/ use Web-standard APIs only",
    "core/op.ts:1: imports transports/http.ts: core/ must not import transports/ " +
    "(name what it needs as a service; the transports provide a layer)",
    "core/op.ts:2: imports mod.ts: core/ must not import root entry files (mod.ts, server.ts, testing.ts, cli.ts, …)",
    "transports/http.ts:1: imports adapters/serve.ts: transports/ must not import adapters/",
    "transports/http.ts:2: imports ws: core/ and transports/ use Web-standard APIs only",
  ]);
});

test("checkImports reports cycles of value and dynamic imports, not loops that need a type-only import", async () => {
  const found = await checkTree({
    "core/a.ts": `import type { B } from "./b.ts";\nexport interface A { b: B }`,
    "core/b.ts": `export type { A } from "./a.ts";\nexport interface B {}`,
    "core/c.ts": `export const d = () => import("./d.ts");`,
    "core/d.ts": `import {\n  c,\n} from "./c.ts";`,
    "core/e.ts": `import { f } from "./f.ts";\nexport const e = 1;`,
    "core/f.ts": `import type { e } from "./e.ts";\nexport const f = 2;`,
    "core/g_test.ts": `import { h } from "./h_test.ts";\nexport const g = 1;`,
    "core/h_test.ts": `import { g } from "./g_test.ts";\nexport const h = 1;`,
  });
  deepStrictEqual(found, [
    "import cycle: core/c.ts → core/d.ts → core/c.ts",
    "import cycle: core/g_test.ts → core/h_test.ts → core/g_test.ts",
  ]);
});

test("parseImports skips imports in comments, template literals and regular expressions", () => {
  const source = [
    "/** @example",
    ' * import * as ta from "../mod.ts";',
    " */",
    'const re = /["\'`]/g; // import "./not.ts"',
    'const program = `import { x } from "./inside.ts"; ${await import("./expr.ts")} done`;',
    "export { type A, b as c } from './real.ts';",
    'import "./side_effect.ts";',
    'const url = import.meta.resolve("./meta.ts");',
  ].join("\n");
  deepStrictEqual(parseImports(source).map((i) => [i.kind, i.specifier, i.line]), [
    ["dynamic import", "./expr.ts", 5],
    ["export from", "./real.ts", 6],
    ["import", "./side_effect.ts", 7],
  ]);
});
