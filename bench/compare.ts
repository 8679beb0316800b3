/**
 * Before and after: runs one benchmark file from two trees of this repository in turns, each run a
 * fresh process, on Bun and on Deno, and prints for every workload the median of the ratio the
 * benchmark itself reports (thinkagain ÷ its in-process baseline: plain Promises in `core.ts`, the
 * raw hono echo in `transport.ts`) for each tree, with its spread (min–max) over the rounds.
 *
 *     bun bench/compare.ts --before 82c709b --after HEAD bench/core.ts
 *     bun bench/compare.ts --before 82c709b --rounds 7 --runtimes bun bench/transport.ts -- --runs 15
 *
 * `--before` / `--after` are directories (a checkout) or git revisions of this repository; a revision
 * is extracted with `git archive` into a temporary directory that borrows this checkout's
 * `node_modules`, so the working tree of other people is never touched. `--after` defaults to this
 * checkout as it is. Each tree runs its own copy of the benchmark file. The order within a round is
 * runtime by runtime, before then after, so a machine that slows down or speeds up during the run
 * touches both trees alike. Arguments after `--` go to the benchmark.
 *
 * The benchmark must print a markdown table whose header has a ratio column (`ratio` or `ours/raw`)
 * and a `thinkagain` column; the first column names the row. Ratios are what to compare: the absolute
 * figures on a shared machine swing far more than a figure divided by its baseline measured in the
 * same process a moment before.
 *
 * @module
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

interface Options {
  before: string;
  after: string;
  rounds: number;
  runtimes: string[];
  bench: string;
  benchArgs: string[];
  json: string;
}

function usage(problem: string): never {
  console.error(
    `bench/compare.ts: ${problem}\n` +
      "usage: bun bench/compare.ts --before <dir|rev> [--after <dir|rev>] [--rounds 5] [--runtimes bun,deno] " +
      "[--json out.json] <bench file> [-- <bench args>]",
  );
  process.exit(2);
}

function parseArgs(argv: string[]): Options {
  const dash = argv.indexOf("--");
  const own = dash >= 0 ? argv.slice(0, dash) : argv;
  const benchArgs = dash >= 0 ? argv.slice(dash + 1) : [];
  const opts: Options = {
    before: "",
    after: ROOT,
    rounds: 5,
    runtimes: ["bun", "deno"],
    bench: "",
    benchArgs,
    json: "",
  };
  for (let i = 0; i < own.length; i++) {
    const a = own[i];
    const value = () => {
      if (i + 1 >= own.length) usage(`${a} needs a value`);
      return own[++i];
    };
    if (a === "--before") opts.before = value();
    else if (a === "--after") opts.after = value();
    else if (a === "--rounds") opts.rounds = Number(value());
    else if (a === "--runtimes") opts.runtimes = value().split(",");
    else if (a === "--json") opts.json = value();
    else if (a.startsWith("--")) usage(`unknown option ${a}`);
    else if (opts.bench === "") opts.bench = a;
    else usage(`one benchmark file at a time, got ${opts.bench} and ${a}`);
  }
  if (opts.before === "") usage("--before is required");
  if (opts.bench === "") usage("no benchmark file given");
  if (!Number.isInteger(opts.rounds) || opts.rounds < 1) usage(`--rounds must be an integer ≥ 1, got ${opts.rounds}`);
  for (const rt of opts.runtimes) if (rt !== "bun" && rt !== "deno") usage(`unknown runtime "${rt}" (bun or deno)`);
  return opts;
}

/** A directory to run in: `spec` itself if it is one, else the git revision `spec` extracted to a temporary one. */
function materialize(spec: string, temps: string[]): { dir: string; label: string } {
  if (existsSync(spec) && statSync(spec).isDirectory()) {
    const dir = resolve(spec);
    let rev = "";
    try {
      rev = execFileSync("git", ["-C", dir, "rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim();
      const dirty = execFileSync("git", ["-C", dir, "status", "--porcelain", "--untracked-files=no"], {
        encoding: "utf8",
      }).trim();
      if (dirty !== "") rev += " + uncommitted changes";
    } catch {
      rev = "not a git checkout";
    }
    return { dir, label: `${dir} (${rev})` };
  }
  let sha: string;
  try {
    sha = execFileSync("git", ["-C", ROOT, "rev-parse", "--short", `${spec}^{commit}`], { encoding: "utf8" }).trim();
  } catch {
    usage(`"${spec}" is neither a directory nor a git revision of ${ROOT}`);
  }
  const dir = mkdtempSync(join(tmpdir(), `thinkagain-${sha}-`));
  temps.push(dir);
  const tar = execFileSync("git", ["-C", ROOT, "archive", "--format=tar", sha], { maxBuffer: 1 << 30 });
  const untar = spawnSync("tar", ["-x", "-C", dir], { input: tar });
  if (untar.status !== 0) throw new Error(`extracting ${sha} into ${dir} failed: ${untar.stderr}`);
  symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"));
  return { dir, label: `${spec} (${sha}, extracted)` };
}

/** One row of the benchmark's table. */
interface Row {
  name: string;
  ratio: number;
  /** The thinkagain column as printed, unit included. */
  figure: string;
  /** The thinkagain column's number. */
  value: number;
}

function num(cell: string): number {
  return Number(cell.replace(/[,×\s]/g, "").replace(/[^\d.eE+-].*$/, ""));
}

/** The rows of the first markdown table in `out` that has a ratio column. */
function parseTable(out: string): Row[] {
  const lines = out.split("\n").map((l) => l.trim());
  for (let i = 0; i + 1 < lines.length; i++) {
    if (!lines[i].startsWith("|")) continue;
    const header = lines[i].split("|").slice(1, -1).map((c) => c.trim());
    const ri = header.findIndex((h) => h === "ratio" || h === "ours/raw");
    const ti = header.indexOf("thinkagain");
    if (ri < 0 || ti < 0) continue;
    const rows: Row[] = [];
    for (let j = i + 2; j < lines.length && lines[j].startsWith("|"); j++) {
      const cells = lines[j].split("|").slice(1, -1).map((c) => c.trim());
      rows.push({ name: cells[0], ratio: num(cells[ri]), figure: cells[ti], value: num(cells[ti]) });
    }
    return rows;
  }
  return [];
}

function command(rt: string, bench: string, args: string[]): [string, string[]] {
  // --expose-gc lets Deno collect between timed runs, as bench/run.sh does
  return rt === "bun" ? ["bun", [bench, ...args]] : ["deno", ["run", "-A", "--v8-flags=--expose-gc", bench, ...args]];
}

function version(rt: string): string {
  const v = execFileSync(rt, ["--version"], { encoding: "utf8" }).split("\n")[0].trim();
  return rt === "bun" ? `Bun ${v}` : v.replace(/^deno (\S+).*$/, "Deno $1");
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const f2 = (x: number) => (Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(2));

/** Median and min–max of `xs`, as `m (lo–hi)`. */
function spread(xs: number[]): string {
  return xs.length === 0 ? "—" : `${f2(median(xs))} (${f2(Math.min(...xs))}–${f2(Math.max(...xs))})`;
}

function figures(xs: Row[]): string {
  if (xs.length === 0) return "—";
  const unit = xs[0].figure.replace(/^[\d,.\s]+/, "");
  const m = median(xs.map((r) => r.value));
  const shown = m >= 1000 ? Math.round(m).toLocaleString("en-US") : m >= 10 ? m.toFixed(1) : m.toFixed(3);
  return unit === "" ? shown : `${shown} ${unit}`;
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const env = { ...process.env, PATH: `${join(ROOT, "node_modules", ".bin")}:${process.env.PATH ?? ""}` };
  process.env.PATH = env.PATH;
  const temps: string[] = [];
  try {
    const trees = { before: materialize(opts.before, temps), after: materialize(opts.after, temps) };
    for (const t of Object.values(trees)) {
      if (!existsSync(join(t.dir, opts.bench))) usage(`${opts.bench} does not exist in ${t.dir}`);
    }
    const started = new Date();
    const versions = Object.fromEntries(opts.runtimes.map((rt) => [rt, version(rt)]));
    // results[rt][tree][round] = rows
    const results: Record<string, Record<"before" | "after", Row[][]>> = {};
    for (const rt of opts.runtimes) results[rt] = { before: [], after: [] };
    for (let round = 1; round <= opts.rounds; round++) {
      for (const rt of opts.runtimes) {
        for (const which of ["before", "after"] as const) {
          const [cmd, args] = command(rt, opts.bench, opts.benchArgs);
          const t0 = performance.now();
          const r = spawnSync(cmd, args, { cwd: trees[which].dir, env, encoding: "utf8", maxBuffer: 1 << 26 });
          const secs = ((performance.now() - t0) / 1000).toFixed(0);
          const rows = r.status === 0 ? parseTable(r.stdout) : [];
          if (rows.length === 0) {
            throw new Error(
              `round ${round}, ${rt}, ${which}: \`${cmd} ${args.join(" ")}\` in ${
                trees[which].dir
              } exited ${r.status} ` +
                `with no table\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`,
            );
          }
          results[rt][which].push(rows);
          console.error(`round ${round}/${opts.rounds} ${rt} ${which}: ${rows.length} rows in ${secs} s`);
        }
      }
    }

    const out: string[] = [];
    out.push(`## ${opts.bench}: before and after, ${opts.rounds} rounds, each run a fresh process`);
    out.push("");
    out.push(`- before: ${trees.before.label}`);
    out.push(`- after: ${trees.after.label}`);
    out.push(`- started ${started.toISOString()}, ended ${new Date().toISOString()}`);
    out.push(`- bench args: ${opts.benchArgs.length === 0 ? "(defaults)" : opts.benchArgs.join(" ")}`);
    out.push("");
    out.push(
      "ratio = thinkagain ÷ the baseline measured in the same process, as the benchmark reports it; " +
        "median over rounds (min–max). after ÷ before compares the two medians; after above before counts the " +
        "rounds in which after's ratio was the higher of the pair (about half of them when nothing changed).",
    );
    for (const rt of opts.runtimes) {
      out.push("");
      out.push(`### ${versions[rt]}`);
      out.push("");
      out.push(
        "| workload | before: ratio | after: ratio | after ÷ before | after above before | before: thinkagain | after: thinkagain |",
      );
      out.push("|---|---:|---:|---:|---:|---:|---:|");
      const names = results[rt].after[0].map((r) => r.name);
      for (const name of names) {
        const pick = (which: "before" | "after") =>
          results[rt][which].map((rows) => rows.find((r) => r.name === name)).filter((r): r is Row => r !== undefined);
        const b = pick("before"), a = pick("after");
        const change = b.length === 0
          ? "—"
          : (median(a.map((r) => r.ratio)) / median(b.map((r) => r.ratio))).toFixed(2);
        // rounds in which after's ratio was above before's (each round runs the two back to back)
        let above = 0, paired = 0;
        for (let k = 0; k < Math.min(a.length, b.length); k++, paired++) if (a[k].ratio > b[k].ratio) above++;
        out.push(
          `| ${name} | ${spread(b.map((r) => r.ratio))} | ${
            spread(a.map((r) => r.ratio))
          } | ${change} | ${above}/${paired} | ${figures(b)} | ${figures(a)} |`,
        );
      }
    }
    console.log(out.join("\n"));
    if (opts.json !== "") {
      mkdirSync(dirname(resolve(opts.json)), { recursive: true });
      writeFileSync(
        opts.json,
        JSON.stringify({ bench: opts.bench, trees, versions, started, rounds: opts.rounds, results }, null, 2),
      );
    }
  } finally {
    for (const d of temps) rmSync(d, { recursive: true, force: true });
  }
}

await main();
