// Proves core/codec.ts works for a Deno user with no package.json and no node_modules (as when the
// package comes from JSR): a temporary folder holding only a deno.json import map, `deno run` there.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { ok, strictEqual } from "node:assert/strict";
import { test } from "node:test";

const repo = fileURLToPath(new URL("..", import.meta.url));

/** A deno executable: this one when running under Deno, else the repo's or one on PATH. */
function findDeno(): string | undefined {
  if ("Deno" in globalThis) return process.execPath;
  const local = join(repo, "node_modules", ".bin", "deno");
  for (const candidate of [local, "deno"]) {
    try {
      if (candidate !== "deno" && !existsSync(candidate)) continue;
      if (spawnSync(candidate, ["--version"], { timeout: 20_000 }).status === 0) return candidate;
    } catch {
      // try the next one
    }
  }
  return undefined;
}

const deno = findDeno();

/**
 * Runs `source` as main.ts with `deno run` in a temporary folder holding only the package's import
 * map (as JSR applies it: no package.json, no node_modules) and returns what it printed.
 */
function runWithImportMapOnly(source: string): { stdout: string; stderr: string } {
  const dir = mkdtempSync(join(tmpdir(), "thinkagain-jsr-"));
  try {
    const { imports } = JSON.parse(readFileSync(join(repo, "deno.json"), "utf8")) as {
      imports: Record<string, string>;
    };
    writeFileSync(join(dir, "deno.json"), JSON.stringify({ imports, nodeModulesDir: "none" }, null, 2));
    writeFileSync(join(dir, "main.ts"), source);
    const env: Record<string, string | undefined> = { ...process.env, DENO_NO_PACKAGE_JSON: "1", NO_COLOR: "1" };
    delete env.DENO_NODE_MODULES_DIR;
    const run = spawnSync(deno!, ["run", "-A", "--config", join(dir, "deno.json"), "main.ts"], {
      cwd: dir,
      env,
      encoding: "utf8",
      timeout: 170_000,
    });
    strictEqual(run.status, 0, `deno run failed:\n${run.stderr}`);
    ok(!existsSync(join(dir, "node_modules")), "deno must not have needed a node_modules folder");
    return { stdout: run.stdout, stderr: run.stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test(
  "core/codec.ts runs under Deno with only a deno.json import map (no package.json, no node_modules)",
  { skip: deno === undefined && "no deno executable found to spawn", timeout: 180_000 },
  () => {
    const codec = new URL("./codec.ts", import.meta.url).href;
    const run = runWithImportMapOnly(
      `import { decode, encode, errorFromWire, errorToWire } from ${JSON.stringify(codec)};
const back = decode(encode({ x: new Float32Array([1.5, 2.5]), m: new Map([["k", 2n ** 70n]]) })) as any;
const err = errorFromWire(decode(encode(errorToWire(new TypeError("bad")))));
console.log(JSON.stringify({
  f32: back.x instanceof Float32Array && back.x[1] === 2.5,
  map: back.m instanceof Map && back.m.get("k") === 2n ** 70n,
  err: err instanceof TypeError && err.message === "bad",
}));
`,
    );
    strictEqual(run.stdout.trim(), JSON.stringify({ f32: true, map: true, err: true }));
    ok(!/cbor-extract/.test(run.stderr), `cbor-extract must not be resolved:\n${run.stderr}`);
  },
);

test(
  "mod.ts (the whole public API) runs under Deno with only a deno.json import map, as a JSR user gets it",
  { skip: deno === undefined && "no deno executable found to spawn", timeout: 180_000 },
  () => {
    const mod = new URL("../mod.ts", import.meta.url).href;
    const run = runWithImportMapOnly(
      `import * as ta from ${JSON.stringify(mod)};
const addOne = ta.op(async function addOne(x: number) { return x + 1; });
const multiply = ta.op("multiply", async (x: number, f: number) => x * f);
const Counter = ta.service(class Counter { n = 0; add(k: number) { return this.n += k; } });
await using mesh = new ta.Mesh([new ta.MeshNode("n1", { gpus: 1 })]);
const out = await mesh.run(async () => {
  const c = Counter.init();
  await Promise.all([1, 2, 3].map((k) => c.add.go(k)));
  return { r: await multiply.go(addOne.go(5), 3), n: await c.add(0) };
});
console.log(JSON.stringify(out));
`,
    );
    strictEqual(run.stdout.trim(), JSON.stringify({ r: 18, n: 6 }));
  },
);
