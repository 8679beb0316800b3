// Proves a JSR user can start a node and call it with the published package alone: a temporary
// folder holding only a deno.json whose import map gives `@thinkagain/thinkagain<subpath>` for each
// entry of this repo's deno.json `exports` (what JSR resolves, nothing else) plus the package's npm
// imports; no package.json, no node_modules. One Deno process serves a node through `./server` and
// `./deno`; another calls it through a Mesh built from the root entry alone.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";
import { deepStrictEqual, ok } from "node:assert/strict";
import { test } from "node:test";

const repo = fileURLToPath(new URL(".", import.meta.url));

/** A deno executable: this one when running under Deno, else the repo's or one on PATH. */
function findDeno(): string | undefined {
  if ("Deno" in globalThis) return process.execPath;
  for (const candidate of [join(repo, "node_modules", ".bin", "deno"), "deno"]) {
    if (candidate !== "deno" && !existsSync(candidate)) continue;
    if (spawnSync(candidate, ["--version"], { timeout: 20_000 }).status === 0) return candidate;
  }
  return undefined;
}

const deno = findDeno();

/** The import map a JSR user of this package gets: each exported subpath, and the package's own imports. */
function jsrImportMap(): Record<string, string> {
  const config = JSON.parse(readFileSync(join(repo, "deno.json"), "utf8")) as {
    exports: Record<string, string>;
    imports: Record<string, string>;
  };
  const imports = { ...config.imports };
  for (const [subpath, file] of Object.entries(config.exports)) {
    imports[`@thinkagain/thinkagain${subpath.slice(1)}`] = new URL(file, pathToFileURL(repo)).href;
  }
  return imports;
}

/** Starts `deno run -A <file> ...args` in `dir` with only its deno.json (no package.json, no node_modules). */
function denoRun(dir: string, file: string, args: string[] = []): ChildProcess {
  const env: Record<string, string | undefined> = { ...process.env, DENO_NO_PACKAGE_JSON: "1", NO_COLOR: "1" };
  delete env.DENO_NODE_MODULES_DIR;
  const child = spawn(deno!, ["run", "-A", "--config", join(dir, "deno.json"), file, ...args], { cwd: dir, env });
  child.stdout!.setEncoding("utf8");
  child.stderr!.setEncoding("utf8");
  return child;
}

/** Resolves with the first line `child` prints; rejects, with what it wrote to stderr, if it exits first. */
function firstLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = "";
    let err = "";
    child.stderr!.on("data", (s: string) => err += s);
    child.stdout!.on("data", (s: string) => {
      out += s;
      if (out.includes("\n")) resolve(out.slice(0, out.indexOf("\n")));
    });
    child.on("exit", (code) => reject(new Error(`deno exited with ${code} before printing a line:\n${err}`)));
  });
}

const APP = `import * as ta from "@thinkagain/thinkagain";
export const Greeter = ta.service(class JsrGreeter {
  greet(name: string): { text: string; pid: number } {
    return { text: \`hello \${name}\`, pid: Deno.pid };
  }
});
`;

const NODE = `import { serve, upgradeWebSocket } from "@thinkagain/thinkagain/deno";
import { createNodeApp, NodeServer } from "@thinkagain/thinkagain/server";
import "./app.ts";
const node = new NodeServer({ name: "n1" });
const server = await serve(createNodeApp(node.handler, { upgradeWebSocket }), { port: 0 });
console.log(server.url);
`;

const DRIVER = `import * as ta from "@thinkagain/thinkagain";
import { Greeter } from "./app.ts";
await using mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: Deno.args[0] })]);
const out = await mesh.run(() => Greeter.init().greet.go("jsr"));
console.log(JSON.stringify({ text: out.text, onTheNode: out.pid !== Deno.pid }));
`;

test(
  "NodeServer from @thinkagain/thinkagain/server serves a Mesh of the root entry alone, with only a JSR-style import map",
  { skip: deno === undefined && "no deno executable found to spawn", timeout: 180_000 },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), "thinkagain-jsr-server-"));
    let node: ChildProcess | undefined;
    try {
      writeFileSync(join(dir, "deno.json"), JSON.stringify({ imports: jsrImportMap(), nodeModulesDir: "none" }));
      writeFileSync(join(dir, "app.ts"), APP);
      writeFileSync(join(dir, "node.ts"), NODE);
      writeFileSync(join(dir, "driver.ts"), DRIVER);
      node = denoRun(dir, "node.ts");
      const url = await firstLine(node);
      ok(/^http:\/\/127\.0\.0\.1:\d+$/.test(url), `expected the node's URL, got ${url}`);
      const driver = denoRun(dir, "driver.ts", [url.replace(/^http/, "ws")]);
      let stderr = "";
      driver.stderr!.on("data", (s: string) => stderr += s);
      const [line, code] = await Promise.all([
        firstLine(driver).catch(() => ""),
        new Promise<number | null>((done) => driver.on("exit", done)),
      ]);
      deepStrictEqual(
        { code, line },
        { code: 0, line: JSON.stringify({ text: "hello jsr", onTheNode: true }) },
        stderr,
      );
      ok(!existsSync(join(dir, "node_modules")), "deno must not have needed a node_modules folder");
    } finally {
      node?.kill();
      if (node !== undefined && node.exitCode === null) await new Promise((done) => node!.on("exit", done));
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
