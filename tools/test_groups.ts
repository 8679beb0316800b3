/**
 * Splits the test files in two, from what they do rather than from a list kept by hand:
 *
 * - **integration**: the test file, or a local file it imports (directly or through others), starts
 *   a process — it imports `node:child_process` or `node:cluster`, or calls `Deno.Command`,
 *   `Deno.run`, `Bun.spawn`, `Bun.spawnSync` or `Bun.$`. These are the tests that start nodes,
 *   nats-server, chromium, kubectl or a runtime; `npm run test:integration` runs them.
 * - **unit**: every other test file; `npm test` runs them (with the static checks and the doc tests).
 *
 * A file reached through `new URL("./x.ts", import.meta.url)` (a worker, an app a helper starts)
 * counts as imported. Comments and template-literal text are not code here (a fixture a test
 * writes to disk is not what the test does). Classing a file as integration when in doubt only
 * costs time; the opposite is caught when the tests run: the unit step's Deno run has no
 * permission to start processes (`--deny-run`), so a test that starts one fails there, naming
 * itself.
 *
 * ```sh
 * bun tools/test_groups.ts unit          # the unit test files, one path a line
 * bun tools/test_groups.ts integration   # the integration test files
 * bun tools/test_groups.ts why           # each integration file and the import chain that starts a process
 * ```
 *
 * @example Splitting a repository
 * ```ts
 * import { testGroups } from "./test_groups.ts";
 * import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { deepStrictEqual } from "node:assert/strict";
 * const root = await mkdtemp(join(tmpdir(), "test-groups-doc-"));
 * await mkdir(join(root, "core"));
 * await writeFile(join(root, "core/_nodes.ts"), `import { spawn } from "node:child_process"; export { spawn };`);
 * await writeFile(join(root, "core/a_test.ts"), `import { spawn } from "./_nodes.ts";`);
 * await writeFile(join(root, "core/b_test.ts"), `// spawn("node") is only a comment`);
 * const groups = await testGroups(root);
 * await rm(root, { recursive: true });
 * deepStrictEqual(groups.unit, ["core/b_test.ts"]);
 * deepStrictEqual(groups.integration.map((i) => i.chain), [["core/a_test.ts", "core/_nodes.ts"]]);
 * ```
 *
 * @module
 */
import { readdir, readFile } from "node:fs/promises";
import { posix } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { maskSource, parseImports } from "./check_imports.ts";

/** Where a file starts a process. */
export interface ProcessUse {
  /** The API, as `node:child_process` or `Deno.Command`. */
  readonly api: string;
  /** 1-based line. */
  readonly line: number;
}

/** A test file that starts processes, and how. */
export interface IntegrationTest {
  /** The test file, relative to the root (`core/task_test.ts`). */
  readonly file: string;
  /** The import chain from the test file to the file that starts a process (the file alone when it does so itself). */
  readonly chain: readonly string[];
  /** The first process API the last file of `chain` uses. */
  readonly use: ProcessUse;
}

/** The two groups of {@linkcode testGroups}. */
export interface TestGroups {
  /** Test files that start no process, sorted. */
  readonly unit: readonly string[];
  /** Test files that start a process, sorted by file. */
  readonly integration: readonly IntegrationTest[];
}

/** Options of {@linkcode testGroups}. */
export interface TestGroupsOptions {
  /** Folder names never entered (default: `node_modules` and every folder starting with `.`). */
  readonly skipDirs?: (name: string) => boolean;
}

/** What either runner takes for a test file: deno's `*_test.*`, `*.test.*`, `test.*`, bun's `*_spec.*`, `*.spec.*`. */
const TEST_FILE = /(^|[._])(test|spec)\.[cm]?[jt]sx?$/;
const SOURCE_FILE = /\.[cm]?[jt]sx?$/;

/** Modules whose import starts processes (an import statement or `import()` of one). */
const PROCESS_MODULES = new Set(["node:child_process", "child_process", "node:cluster", "cluster"]);

/** Process-starting runtime calls, looked for in code (comments and string and template text blanked). */
const PROCESS_CALLS: readonly { readonly api: string; readonly re: RegExp }[] = [
  { api: "Deno.Command", re: /(?<![\w$.])Deno\s*\.\s*Command(?![\w$])/g },
  { api: "Deno.run", re: /(?<![\w$.])Deno\s*\.\s*run(?![\w$])/g },
  { api: "Bun.spawn", re: /(?<![\w$.])Bun\s*\.\s*spawn(?![\w$])/g },
  { api: "Bun.spawnSync", re: /(?<![\w$.])Bun\s*\.\s*spawnSync(?![\w$])/g },
  { api: "Bun.$", re: /(?<![\w$.])Bun\s*\.\s*\$/g },
];

/** A string literal of code that {@linkcode maskSource} left (comments and templates are gone). */
const STRING_LITERAL = /(["'])(?:\\.|(?!\1)[^\\\n])*\1/g;

const URL_REFERENCE = /(?<![\w$.])new\s+URL\(\s*(["'])(\.{1,2}\/[^"'\n]+)\1\s*,\s*import\.meta\.url\s*\)/g;

/**
 * The process APIs a source file uses, by line: imports of `node:child_process` or `node:cluster`
 * (static or `import()`), and calls of `Deno.Command`, `Deno.run`, `Bun.spawn`, `Bun.spawnSync` or
 * `Bun.$` in code (not in comments, strings or template text).
 *
 * @param source TypeScript or JavaScript source.
 * @returns Each use with its line.
 *
 * @example
 * ```ts
 * import { processUses } from "./test_groups.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const source = `// Deno.Command\nconst p = new Deno.Command("ls");\nconst s = "Bun.spawn";`;
 * deepStrictEqual(processUses(source), [{ api: "Deno.Command", line: 2 }]);
 * ```
 */
export function processUses(source: string): ProcessUse[] {
  const found: ProcessUse[] = [];
  for (const imp of parseImports(source)) {
    if (PROCESS_MODULES.has(imp.specifier)) {
      found.push({ api: imp.specifier.startsWith("node:") ? imp.specifier : `node:${imp.specifier}`, line: imp.line });
    }
  }
  const code = maskSource(source).replace(STRING_LITERAL, (s) => s[0] + " ".repeat(s.length - 2) + s[0]);
  for (const { api, re } of PROCESS_CALLS) {
    re.lastIndex = 0;
    for (let m = re.exec(code); m !== null; m = re.exec(code)) {
      found.push({ api, line: code.slice(0, m.index).split("\n").length });
    }
  }
  return found.sort((a, b) => a.line - b.line);
}

/** The local files `source` (the file `file`) imports or names with `new URL("./…", import.meta.url)`. */
function localReferences(file: string, source: string): string[] {
  const specifiers = parseImports(source).map((i) => i.specifier);
  const code = maskSource(source);
  URL_REFERENCE.lastIndex = 0;
  for (let m = URL_REFERENCE.exec(code); m !== null; m = URL_REFERENCE.exec(code)) specifiers.push(m[2]);
  const out: string[] = [];
  for (const specifier of specifiers) {
    if (!specifier.startsWith("./") && !specifier.startsWith("../")) continue;
    const target = posix.normalize(posix.join(posix.dirname(file), specifier.replace(/[?#].*$/, "")));
    if (!target.startsWith("../") && SOURCE_FILE.test(target)) out.push(target);
  }
  return out;
}

async function listFiles(dir: string, skipDirs: (name: string) => boolean, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(posix.join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix === "" ? entry.name : `${prefix}/${entry.name}`;
    if (entry.isDirectory()) {
      if (!skipDirs(entry.name)) out.push(...await listFiles(dir, skipDirs, rel));
    } else if (entry.isFile() && SOURCE_FILE.test(entry.name)) {
      out.push(rel);
    }
  }
  return out;
}

/**
 * Finds every test file under `root` (the names bun test or deno test take, outside
 * `node_modules` and dot folders) and puts it in the integration group when it, or a local file it
 * reaches through imports, starts a process; in the unit group otherwise.
 *
 * @param root The repository folder (a path or `file:` URL).
 * @param options Which folders to skip.
 * @returns Both groups, each sorted by path.
 *
 * @example
 * ```ts
 * import { testGroups } from "./test_groups.ts";
 * import { ok } from "node:assert/strict";
 * const groups = await testGroups(new URL("..", import.meta.url));
 * ok(groups.integration.some((i) => i.file === "tools/ci_test.ts")); // it runs bash
 * ok(groups.unit.includes("tools/test_groups_test.ts"));
 * ```
 */
export async function testGroups(root: string | URL, options: TestGroupsOptions = {}): Promise<TestGroups> {
  const dir = root instanceof URL || root.startsWith("file:") ? fileURLToPath(root) : root;
  const skipDirs = options.skipDirs ?? ((name: string) => name === "node_modules" || name.startsWith("."));
  const files = (await listFiles(dir, skipDirs)).sort();
  const known = new Set(files);
  const refs = new Map<string, string[]>();
  const uses = new Map<string, ProcessUse>();
  for (const file of files) {
    const source = await readFile(posix.join(dir, file), "utf8");
    refs.set(file, localReferences(file, source).filter((f) => known.has(f)));
    const use = processUses(source)[0];
    if (use !== undefined) uses.set(file, use);
  }
  const unit: string[] = [];
  const integration: IntegrationTest[] = [];
  for (const test of files.filter((f) => TEST_FILE.test(posix.basename(f)))) {
    // breadth first, so the chain shown is a shortest one
    const from = new Map<string, string | undefined>([[test, undefined]]);
    const queue = [test];
    let hit: string | undefined;
    for (let k = 0; k < queue.length && hit === undefined; k++) {
      const file = queue[k];
      if (uses.has(file)) hit = file;
      for (const next of refs.get(file) ?? []) {
        if (!from.has(next)) {
          from.set(next, file);
          queue.push(next);
        }
      }
    }
    if (hit === undefined) {
      unit.push(test);
      continue;
    }
    const chain: string[] = [];
    for (let f: string | undefined = hit; f !== undefined; f = from.get(f)) chain.unshift(f);
    integration.push({ file: test, chain, use: uses.get(hit)! });
  }
  return { unit, integration };
}

if (import.meta.main) {
  const mode = process.argv[2];
  if (mode !== "unit" && mode !== "integration" && mode !== "why") {
    console.error("usage: bun tools/test_groups.ts unit|integration|why");
    process.exit(2);
  }
  const groups = await testGroups(new URL("..", import.meta.url));
  if (mode === "unit") { for (const f of groups.unit) console.log(f); }
  else if (mode === "integration") { for (const i of groups.integration) console.log(i.file); }
  else {
    for (const i of groups.integration) {
      const last = i.chain[i.chain.length - 1];
      console.log(`${i.file}: ${i.chain.slice(1).map((f) => `→ ${f} `).join("")}(${last}:${i.use.line} ${i.use.api})`);
    }
    console.log(`${groups.integration.length} integration, ${groups.unit.length} unit test files`);
  }
}
