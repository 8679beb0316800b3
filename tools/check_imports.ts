/**
 * Keeps the import graph honest: no file imports another that imports it back, imports go
 * `adapters → transports → core` and never the other way, and `core/` and `transports/` touch no
 * runtime API (no `node:`, `bun:` or runtime-only npm imports, no `Bun`, `Deno` or `process`),
 * except in the one seam `core/_runtime.ts` (which may import `node:async_hooks`, `node:v8` and
 * `node:vm`, and feature-detect the runtime).
 *
 * A cycle is a loop of value imports: those decide what a module needs loaded before it runs, and
 * a loop among them is what makes import order matter (and what forced the `unknown`-typed fields
 * and casts this check was written against). Type-only imports (`import type`) are erased before
 * anything runs; they may point back — a task's context names its mesh, a mesh holds tasks — so
 * that the model stays typed without a file of duplicated interfaces. Test code (`*_test.ts`,
 * `_test_*.ts`, the transport conformance suite) may import across layers (a core test drives the
 * public API through `mod.ts`; a transport test needs a real server) but not in a cycle.
 *
 * ```sh
 * bun tools/check_imports.ts        # or: deno run -A tools/check_imports.ts
 * ```
 *
 * prints one line per violation and exits 1 when there is any.
 *
 * @example Checking a repository
 * ```ts
 * import { checkImports } from "./check_imports.ts";
 * import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { deepStrictEqual } from "node:assert/strict";
 * const root = await mkdtemp(join(tmpdir(), "check-imports-doc-"));
 * await mkdir(join(root, "core"));
 * await writeFile(join(root, "core/a.ts"), `import { b } from "./b.ts"; export const a = 1;`);
 * await writeFile(join(root, "core/b.ts"), `import { a } from "./a.ts"; export const b = 2;`);
 * const found = await checkImports(root);
 * await rm(root, { recursive: true });
 * deepStrictEqual(found.map((v) => v.message), ["import cycle: core/a.ts → core/b.ts → core/a.ts"]);
 * ```
 *
 * @module
 */
import { readdir, readFile } from "node:fs/promises";
import { posix } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

/** How a file refers to another. */
export type ImportKind = "import" | "import type" | "export from" | "export type from" | "dynamic import";

/** One module specifier a file refers to. */
export interface ImportSpecifier {
  /** The specifier as written (`"./mesh.ts"`, `"node:fs"`). */
  readonly specifier: string;
  /** The statement it came from. */
  readonly kind: ImportKind;
  /** 1-based line of the specifier. */
  readonly line: number;
}

/** A rule the import graph breaks. */
export type ImportViolation =
  | {
    /** Files that import each other in a ring. */
    readonly kind: "cycle";
    /** The ring, first file repeated at the end (`["core/a.ts", "core/b.ts", "core/a.ts"]`). */
    readonly cycle: readonly string[];
    /** One line for people. */
    readonly message: string;
  }
  | {
    /** An import against the direction `adapters → transports → core`. */
    readonly kind: "direction";
    /** The importing file, relative to the root. */
    readonly file: string;
    /** 1-based line of the import. */
    readonly line: number;
    /** The imported file, relative to the root. */
    readonly target: string;
    /** One line for people. */
    readonly message: string;
  }
  | {
    /** A runtime API in code that must run on any runtime. */
    readonly kind: "runtime-api";
    /** The file, relative to the root. */
    readonly file: string;
    /** 1-based line of the use. */
    readonly line: number;
    /** What was used: `node:fs`, `Deno`, `process`. */
    readonly api: string;
    /** One line for people. */
    readonly message: string;
  };

/** Options of {@linkcode checkImports}. */
export interface CheckImportsOptions {
  /** Folder names never entered (default: `node_modules` and every folder starting with `.`). */
  readonly skipDirs?: (name: string) => boolean;
}

/**
 * The one file of `core/` that may reach the runtime: it may feature-detect `Bun`, `Deno` and
 * `process`, and import only the `node:` modules in `allowed`.
 */
export const RUNTIME_SEAM: { readonly file: string; readonly allowed: readonly string[] } = {
  file: "core/_runtime.ts",
  allowed: ["node:async_hooks", "node:v8", "node:vm"],
};

/** npm packages that only run on one runtime (a `core/` or `transports/` import of one is a runtime API use). */
const RUNTIME_PACKAGES = ["@hono/node-server", "ws", "hono/bun", "hono/deno"];

const REGEX_AFTER_WORD = new Set([
  "return",
  "typeof",
  "instanceof",
  "in",
  "of",
  "new",
  "delete",
  "void",
  "throw",
  "case",
  "do",
  "else",
  "yield",
  "await",
]);

/**
 * Blanks out comments, template-literal text and regular-expression bodies (newlines stay, so
 * offsets and line numbers do not move), leaving code and ordinary string literals. An `import` in
 * a JSDoc example or in a template literal that a test writes to disk is no import of this file.
 *
 * @param source TypeScript source.
 * @returns The same length of text with only code and plain strings left.
 *
 * @example
 * ```ts
 * import { maskSource } from "./check_imports.ts";
 * import { strictEqual } from "node:assert/strict";
 * const [comment, code] = maskSource('// import "x"\nconst s = `a${"b"}c`;').split("\n");
 * strictEqual(comment.trim(), "");
 * strictEqual(code, 'const s = ` ${"b"} `;');
 * ```
 */
export function maskSource(source: string): string {
  const out = source.split("");
  const n = source.length;
  const blank = (from: number, to: number) => {
    for (let k = from; k < to && k < n; k++) if (out[k] !== "\n") out[k] = " ";
  };
  /** For each open `${`, the brace depth its `}` brings back. */
  const templates: number[] = [];
  let depth = 0;
  let last = ""; // last significant code character ("a" for a word, number or value)
  let lastWord = "";
  /** Scans template text from `j`; returns where code resumes (after the closing backtick or a `${`). */
  const templateText = (j: number): number => {
    const start = j;
    while (j < n) {
      if (source[j] === "\\") j += 2;
      else if (source[j] === "`") {
        blank(start, j);
        last = "a";
        return j + 1;
      } else if (source[j] === "$" && source[j + 1] === "{") {
        blank(start, j);
        templates.push(depth);
        depth++;
        last = "{";
        return j + 2;
      } else j++;
    }
    blank(start, n);
    return n;
  };
  let i = 0;
  while (i < n) {
    const c = source[i];
    if (c === "/" && source[i + 1] === "/") {
      const end = source.indexOf("\n", i);
      const stop = end === -1 ? n : end;
      blank(i, stop);
      i = stop;
    } else if (c === "/" && source[i + 1] === "*") {
      const end = source.indexOf("*/", i + 2);
      const stop = end === -1 ? n : end + 2;
      blank(i, stop);
      i = stop;
    } else if (c === '"' || c === "'") {
      let j = i + 1;
      while (j < n && source[j] !== c && source[j] !== "\n") j += source[j] === "\\" ? 2 : 1;
      i = j + 1;
      last = "a";
    } else if (c === "`") {
      i = templateText(i + 1);
    } else if (c === "/" && (last === "" || "(,=:[!&|?{};+-*%<>~^".includes(last) || REGEX_AFTER_WORD.has(lastWord))) {
      // a regular expression; one that does not close on its line was a division after all
      let j = i + 1;
      let inClass = false;
      while (j < n && source[j] !== "\n" && (inClass || source[j] !== "/")) {
        if (source[j] === "\\") j++;
        else if (source[j] === "[") inClass = true;
        else if (source[j] === "]") inClass = false;
        j++;
      }
      if (j < n && source[j] === "/") {
        blank(i + 1, j);
        i = j + 1;
        last = "a";
        lastWord = "";
      } else {
        last = "/";
        lastWord = "";
        i++;
      }
    } else if (/[\w$]/.test(c)) {
      let j = i + 1;
      while (j < n && /[\w$]/.test(source[j])) j++;
      lastWord = source.slice(i, j);
      last = "a";
      i = j;
    } else {
      if (c === "{") depth++;
      else if (c === "}") {
        depth--;
        if (templates.length > 0 && templates[templates.length - 1] === depth) {
          templates.pop();
          i = templateText(i + 1);
          continue;
        }
      }
      if (!/\s/.test(c)) {
        last = c === ")" || c === "]" ? "a" : c;
        lastWord = "";
      }
      i++;
    }
  }
  return out.join("");
}

function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let k = text.indexOf("\n"); k !== -1 && k < offset; k = text.indexOf("\n", k + 1)) line++;
  return line;
}

const STATIC_IMPORT = /(?<![\w$.])import\s+(type\s+)?[\w$\s{},*]*?\bfrom\s*(["'])([^"'\n]+)\2/y;
const BARE_IMPORT = /(?<![\w$.])import\s*(["'])([^"'\n]+)\1/y;
const DYNAMIC_IMPORT = /(?<![\w$.])import\s*\(\s*(["'])([^"'\n]+)\1\s*[,)]/y;
const EXPORT_FROM = /(?<![\w$.])export\s+(type\s+)?(?:\*(?:\s+as\s+[\w$]+)?|\{[^}]*\})\s*from\s*(["'])([^"'\n]+)\2/y;

/**
 * The modules a TypeScript file refers to: `import … from`, `import type … from`, bare
 * `import "…"`, `export … from`, and `import("…")` with a literal specifier. Comments, template
 * literals and regular expressions are skipped.
 *
 * @param source TypeScript source.
 * @returns Each specifier with its statement kind and line, in source order.
 *
 * @example
 * ```ts
 * import { parseImports } from "./check_imports.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const found = parseImports(`import type { A } from "./a.ts";\nexport * from "./b.ts";\nawait import("./c.ts");`);
 * deepStrictEqual(found.map((i) => [i.kind, i.specifier, i.line]), [
 *   ["import type", "./a.ts", 1],
 *   ["export from", "./b.ts", 2],
 *   ["dynamic import", "./c.ts", 3],
 * ]);
 * ```
 */
export function parseImports(source: string): ImportSpecifier[] {
  const code = maskSource(source);
  const found: ImportSpecifier[] = [];
  const keyword = /(?<![\w$.])(import|export)(?![\w$])/g;
  for (let m = keyword.exec(code); m !== null; m = keyword.exec(code)) {
    const at = m.index;
    const tryMatch = (re: RegExp): RegExpExecArray | null => {
      re.lastIndex = at;
      return re.exec(code);
    };
    let hit: { specifier: string; kind: ImportKind; end: number } | undefined;
    if (m[1] === "import") {
      const s = tryMatch(STATIC_IMPORT);
      const b = s ? null : tryMatch(BARE_IMPORT);
      const d = s || b ? null : tryMatch(DYNAMIC_IMPORT);
      if (s) hit = { specifier: s[3], kind: s[1] ? "import type" : "import", end: STATIC_IMPORT.lastIndex };
      else if (b) hit = { specifier: b[2], kind: "import", end: BARE_IMPORT.lastIndex };
      else if (d) hit = { specifier: d[2], kind: "dynamic import", end: DYNAMIC_IMPORT.lastIndex };
    } else {
      const e = tryMatch(EXPORT_FROM);
      if (e) hit = { specifier: e[3], kind: e[1] ? "export type from" : "export from", end: EXPORT_FROM.lastIndex };
    }
    if (hit === undefined) continue;
    const specifierAt = code.lastIndexOf(hit.specifier, hit.end);
    found.push({ specifier: hit.specifier, kind: hit.kind, line: lineAt(code, specifierAt) });
    keyword.lastIndex = hit.end;
  }
  return found;
}

/** Each use of `Bun`, `Deno` or `process` as code (not in a comment or string), by line. */
function runtimeGlobals(source: string): { api: string; line: number }[] {
  const code = maskSource(source);
  const uses = new Map<string, { api: string; line: number }>();
  const patterns = [
    /(?<![\w$])(Bun|Deno)(?![\w$])/g,
    /(?<![\w$])(process)(?=\s*(?:\?\.|\.(?!\.)|\[))/g,
    /(?<![\w$])typeof\s+(process)(?![\w$])/g,
    /(?<![\w$])globalThis\s*\[\s*["'](Bun|Deno|process)["']\s*\]/g,
    /["'](Bun|Deno|process)["']\s*in\s+globalThis(?![\w$])/g,
  ];
  for (const re of patterns) {
    for (const m of code.matchAll(re)) {
      const line = lineAt(code, m.index);
      uses.set(`${line}:${m[1]}`, { api: m[1], line });
    }
  }
  return [...uses.values()].sort((a, b) => a.line - b.line || a.api.localeCompare(b.api));
}

/** Whether a file is test code, exempt from the runtime-API and direction rules (never from the cycle rule). */
function isTestCode(file: string): boolean {
  const base = posix.basename(file);
  return base.endsWith("_test.ts") || base.startsWith("_test_") || file === "transports/_conformance.ts";
}

type Layer = "core" | "transports" | "adapters" | "root" | "other";

function layerOf(file: string): Layer {
  if (!file.includes("/")) return "root";
  const top = file.slice(0, file.indexOf("/"));
  return top === "core" || top === "transports" || top === "adapters" ? top : "other";
}

/** What each layer may not import, and why. */
const FORBIDDEN: Partial<Record<Layer, Partial<Record<Layer, string>>>> = {
  core: {
    transports: "core/ must not import transports/ (name what it needs as a service; the transports provide a layer)",
    adapters: "core/ must not import adapters/",
    root: "core/ must not import root entry files (mod.ts, server.ts, testing.ts, cli.ts, …)",
  },
  transports: {
    adapters: "transports/ must not import adapters/",
  },
};

async function listTsFiles(root: string, skipDirs: (name: string) => boolean): Promise<string[]> {
  const files: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    const entries = await readdir(posix.join(root, dir), { withFileTypes: true });
    for (const entry of entries) {
      const rel = dir === "" ? entry.name : `${dir}/${entry.name}`;
      if (entry.isDirectory()) {
        if (!skipDirs(entry.name)) await walk(rel);
      } else if (entry.isFile() && entry.name.endsWith(".ts")) files.push(rel);
    }
  };
  await walk("");
  return files.sort();
}

/** Resolves a relative specifier of `from` to a root-relative path; `undefined` for anything else. */
function resolveRelative(from: string, specifier: string): string | undefined {
  if (!specifier.startsWith("./") && !specifier.startsWith("../")) return undefined;
  const path = specifier.replace(/[?#].*$/, "");
  const resolved = posix.normalize(posix.join(posix.dirname(from), path));
  return resolved.startsWith("../") ? undefined : resolved;
}

/** Every elementary cycle that is the shortest one through some file of a strongly connected set. */
function shortestCycles(members: readonly string[], edges: Map<string, Set<string>>): string[][] {
  const inSet = new Set(members);
  const seen = new Set<string>();
  const cycles: string[][] = [];
  for (const start of [...members].sort()) {
    // breadth-first from start back to start, inside the set only
    const parent = new Map<string, string>();
    const queue = [start];
    let found: string | undefined;
    for (let q = 0; q < queue.length && found === undefined; q++) {
      const at = queue[q];
      for (const next of [...(edges.get(at) ?? [])].sort()) {
        if (!inSet.has(next)) continue;
        if (next === start) {
          found = at;
          break;
        }
        if (!parent.has(next)) {
          parent.set(next, at);
          queue.push(next);
        }
      }
    }
    if (found === undefined) continue;
    const path = [found];
    while (path[0] !== start) path.unshift(parent.get(path[0])!);
    // the same ring seen from another file is reported once, starting at its smallest file
    const smallest = path.indexOf([...path].sort()[0]);
    const ring = [...path.slice(smallest), ...path.slice(0, smallest)];
    const key = ring.join("\n");
    if (seen.has(key)) continue;
    seen.add(key);
    cycles.push([...ring, ring[0]]);
  }
  return cycles;
}

/** Tarjan's strongly connected components (iterative), each with more than one file or a self-import. */
function cyclicComponents(nodes: readonly string[], edges: Map<string, Set<string>>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const components: string[][] = [];
  let next = 0;
  for (const root of nodes) {
    if (index.has(root)) continue;
    const work: { node: string; children: string[]; i: number }[] = [];
    const enter = (node: string) => {
      index.set(node, next);
      low.set(node, next);
      next++;
      stack.push(node);
      onStack.add(node);
      work.push({ node, children: [...(edges.get(node) ?? [])], i: 0 });
    };
    enter(root);
    while (work.length > 0) {
      const frame = work[work.length - 1];
      if (frame.i < frame.children.length) {
        const child = frame.children[frame.i++];
        if (!index.has(child)) enter(child);
        else if (onStack.has(child)) low.set(frame.node, Math.min(low.get(frame.node)!, index.get(child)!));
        continue;
      }
      work.pop();
      if (work.length > 0) {
        const up = work[work.length - 1].node;
        low.set(up, Math.min(low.get(up)!, low.get(frame.node)!));
      }
      if (low.get(frame.node) === index.get(frame.node)) {
        const component: string[] = [];
        let member: string;
        do {
          member = stack.pop()!;
          onStack.delete(member);
          component.push(member);
        } while (member !== frame.node);
        if (component.length > 1 || edges.get(frame.node)?.has(frame.node)) components.push(component.sort());
      }
    }
  }
  return components;
}

/**
 * Analyses the import graph of every `.ts` file under `root` (except `node_modules` and dot
 * folders such as `.git` and `.gpu`) and returns what breaks the rules: import cycles (type-only
 * and dynamic imports included; each file in a cycle gets its shortest one), imports against
 * `adapters → transports → core` (test files included), and runtime APIs in `core/` and
 * `transports/` outside test code.
 *
 * @param root The repository folder (a path or `file:` URL).
 * @param options Which folders to skip.
 * @returns The violations, cycles first, then by file and line; empty when the graph is clean.
 *
 * @example A layering violation
 * ```ts
 * import { checkImports } from "./check_imports.ts";
 * import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { deepStrictEqual } from "node:assert/strict";
 * const root = await mkdtemp(join(tmpdir(), "check-imports-doc-"));
 * await mkdir(join(root, "core"));
 * await mkdir(join(root, "transports"));
 * await writeFile(join(root, "transports/http.ts"), "export const http = 1;");
 * await writeFile(join(root, "core/mesh.ts"), `import { http } from "../transports/http.ts";`);
 * const found = await checkImports(root);
 * await rm(root, { recursive: true });
 * deepStrictEqual(found.map((v) => v.kind), ["direction"]);
 * ```
 */
export async function checkImports(root: string | URL, options: CheckImportsOptions = {}): Promise<ImportViolation[]> {
  const dir = root instanceof URL || root.startsWith("file:") ? fileURLToPath(root) : root;
  const skipDirs = options.skipDirs ?? ((name: string) => name === "node_modules" || name.startsWith("."));
  const files = await listTsFiles(dir, skipDirs);
  const known = new Set(files);
  const edges = new Map<string, Set<string>>(); // value imports only: what a cycle is made of
  const layering: ImportViolation[] = [];
  for (const file of files) {
    const source = await readFile(posix.join(dir, file), "utf8");
    const out = new Set<string>();
    const runtimeChecked = (layerOf(file) === "core" || layerOf(file) === "transports") && !isTestCode(file);
    const valueEdges = new Set<string>();
    for (const imp of parseImports(source)) {
      const target = resolveRelative(file, imp.specifier);
      if (target !== undefined) {
        if (known.has(target)) {
          out.add(target);
          if (imp.kind !== "import type" && imp.kind !== "export type from") valueEdges.add(target);
        }
        const why = isTestCode(file) ? undefined : FORBIDDEN[layerOf(file)]?.[layerOf(target)];
        if (why !== undefined) {
          layering.push({
            kind: "direction",
            file,
            line: imp.line,
            target,
            message: `${file}:${imp.line}: imports ${target}: ${why}`,
          });
        }
      } else if (runtimeChecked) {
        const spec = imp.specifier.replace(/^npm:\/?/, "").replace(/@[^/]*$/, "");
        const isRuntime = /^(node|bun):/.test(spec) || !/^[a-z]+:/.test(spec) && !spec.startsWith("/") &&
            RUNTIME_PACKAGES.some((p) => spec === p || spec.startsWith(`${p}/`));
        const allowed = file === RUNTIME_SEAM.file && RUNTIME_SEAM.allowed.includes(imp.specifier);
        if (isRuntime && !allowed) {
          const where = /^node:/.test(spec)
            ? ` (only ${RUNTIME_SEAM.file} may import a node: module, and only ${RUNTIME_SEAM.allowed.join(", ")})`
            : "";
          layering.push({
            kind: "runtime-api",
            file,
            line: imp.line,
            api: imp.specifier,
            message:
              `${file}:${imp.line}: imports ${imp.specifier}: core/ and transports/ use Web-standard APIs only${where}`,
          });
        }
      }
    }
    if (runtimeChecked && file !== RUNTIME_SEAM.file) {
      for (const use of runtimeGlobals(source)) {
        layering.push({
          kind: "runtime-api",
          file,
          line: use.line,
          api: use.api,
          message: `${file}:${use.line}: uses ${use.api}: core/ and transports/ use Web-standard APIs only`,
        });
      }
    }
    edges.set(file, valueEdges);
  }
  const cycles: ImportViolation[] = [];
  for (const component of cyclicComponents(files, edges)) {
    for (const cycle of shortestCycles(component, edges)) {
      cycles.push({ kind: "cycle", cycle, message: `import cycle: ${cycle.join(" → ")}` });
    }
  }
  cycles.sort((a, b) => a.message.localeCompare(b.message));
  layering.sort((a, b) =>
    (a as { file: string }).file.localeCompare((b as { file: string }).file) ||
    (a as { line: number }).line - (b as { line: number }).line || a.message.localeCompare(b.message)
  );
  return [...cycles, ...layering];
}

if (import.meta.main) {
  const root = fileURLToPath(new URL("..", import.meta.url));
  const found = await checkImports(root);
  for (const v of found) console.log(v.message);
  // where several cycles share an import, cutting that one import breaks them all: say which
  const shared = new Map<string, number>();
  for (const v of found) {
    if (v.kind !== "cycle") continue;
    for (let k = 1; k < v.cycle.length; k++) {
      const edge = `${v.cycle[k - 1]} → ${v.cycle[k]}`;
      shared.set(edge, (shared.get(edge) ?? 0) + 1);
    }
  }
  const [edge, count] = [...shared].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))[0] ?? ["", 0];
  if (count > 1) console.log(`(${count} of these cycles go through the import ${edge})`);
  if (found.length > 0) {
    console.log(`${found.length} import graph violation${found.length === 1 ? "" : "s"} (tools/check_imports.ts)`);
    process.exitCode = 1;
  } else {
    console.log(
      "import graph: no cycles, imports go adapters → transports → core, no runtime API in core/ or transports/",
    );
  }
}
