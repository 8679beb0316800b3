/**
 * The DAG of a profile as the dashboard draws it: each recorded task in a layer one past the
 * deepest of its inputs and its caller, ordered by submission within its layer, with the critical
 * path marked. Pure: it takes the profiler's records and returns plain data.
 *
 * @module
 */
import type { Profiler, TaskRecord } from "../../core/profile.ts";

/** One task of a {@linkcode DagLayout}. */
export interface DagTask {
  /** Task id. */
  readonly id: string;
  /** Op name or `Service.method`. */
  readonly name: string;
  /** `"op"` or `"method"`. */
  readonly kind: "op" | "method";
  /** Node it ran on (`undefined`: this process). */
  readonly node: string | undefined;
  /** `"remote"` when this process sent it to a node, else `"local"`. */
  readonly executor: "local" | "remote";
  /** How it ended. */
  readonly status: TaskRecord["status"];
  /** Ms from the profile's start to its submission. */
  readonly submittedMs: number;
  /** Ms it waited before its body started (0 if it never started). */
  readonly waitMs: number;
  /** Ms from its body's start to its end (0 if it never started). */
  readonly runMs: number;
  /** Attempts of its body. */
  readonly attempts: number;
  /** Column: one past the deepest of its inputs and its caller among the drawn tasks. */
  readonly layer: number;
  /** Row within its layer, by submission. */
  readonly row: number;
  /** Ids of its inputs among the drawn tasks. */
  readonly deps: readonly string[];
  /** Id of the task that submitted it, when drawn. */
  readonly parent: string | undefined;
  /** True when it is on the critical path. */
  readonly critical: boolean;
}

/** What {@linkcode layoutDag} returns. */
export interface DagLayout {
  /** The drawn tasks. */
  readonly tasks: readonly DagTask[];
  /** Ids of the critical path, first to last. */
  readonly critical: readonly string[];
  /** Tasks recorded but not drawn (past `maxTasks`). */
  readonly omitted: number;
  /** How many layers the drawn tasks take (one past the deepest one's `layer`; 0 with none). */
  readonly layers: number;
}

/** Options of {@linkcode layoutDag}. */
export interface LayoutDagOptions {
  /** Most tasks drawn (default 300): the critical path, then the earliest submitted. */
  maxTasks?: number;
  /** Clock reading the `*Ms` figures count from (default: the earliest submission). */
  origin?: number;
}

/**
 * Lays out recorded tasks as layers.
 *
 * @param records The tasks (a profiler's `tasks()`).
 * @param critical The critical path (a profiler's `criticalPath()`).
 * @param options How many tasks at most, and the time origin.
 * @returns The layout.
 *
 * @example A diamond has three layers
 * ```ts
 * import * as ta from "../../mod.ts";
 * import { layoutDag } from "./dag.ts";
 * const one = ta.op(async function dagDocOne() { return 1; });
 * const add = ta.op(async function dagDocAdd(a: number, b: number) { return a + b; });
 * using p = ta.profile();
 * const s = one.go();
 * await add.go(add.go(s, 1), add.go(s, 2));
 * const dag = layoutDag(p.tasks(), p.criticalPath());
 * if (dag.layers !== 3 || dag.tasks.length !== 4) throw new Error(JSON.stringify(dag));
 * ```
 */
export function layoutDag(
  records: readonly TaskRecord[],
  critical: readonly TaskRecord[],
  options: LayoutDagOptions = {},
): DagLayout {
  const max = options.maxTasks ?? 300;
  if (!(Number.isInteger(max) && max >= 1)) {
    throw new RangeError(`layoutDag maxTasks must be an integer ≥ 1, got ${String(options.maxTasks)}`);
  }
  const onPath = new Set(critical.map((r) => r.id));
  const chosen = new Map<string, TaskRecord>();
  for (const r of critical) if (chosen.size < max) chosen.set(r.id, r);
  const bySubmission = [...records].sort((a, b) => a.submittedAt - b.submittedAt);
  for (const r of bySubmission) {
    if (chosen.size >= max) break;
    if (!chosen.has(r.id)) chosen.set(r.id, r);
  }
  const origin = options.origin ?? (bySubmission.length > 0 ? bySubmission[0].submittedAt : 0);
  // layer = 1 + the deepest of its inputs and caller; the graph is acyclic (a task cannot take its
  // caller's result, nor an input submitted after it), so a depth-first walk ends
  const layer = new Map<string, number>();
  const layerOf = (r: TaskRecord): number => {
    const known = layer.get(r.id);
    if (known !== undefined) return known;
    layer.set(r.id, 0); // a guard against a malformed record naming itself
    let l = 0;
    for (const d of r.dependencies) {
      const dep = chosen.get(d);
      if (dep !== undefined) l = Math.max(l, layerOf(dep) + 1);
    }
    const parent = r.parent === undefined ? undefined : chosen.get(r.parent);
    if (parent !== undefined) l = Math.max(l, layerOf(parent) + 1);
    layer.set(r.id, l);
    return l;
  };
  const rows: number[] = [];
  const tasks: DagTask[] = [];
  for (const r of [...chosen.values()].sort((a, b) => a.submittedAt - b.submittedAt)) {
    const l = layerOf(r);
    const row = rows[l] ?? 0;
    rows[l] = row + 1;
    const started = r.startedAt > 0;
    tasks.push({
      id: r.id,
      name: r.name,
      kind: r.kind,
      node: r.node,
      executor: r.executor,
      status: r.status,
      submittedMs: r.submittedAt - origin,
      waitMs: started ? r.startedAt - r.submittedAt : 0,
      runMs: started ? r.settledAt - r.startedAt : 0,
      attempts: r.attempts,
      layer: l,
      row,
      deps: r.dependencies.filter((d) => chosen.has(d)),
      parent: r.parent !== undefined && chosen.has(r.parent) ? r.parent : undefined,
      critical: onPath.has(r.id),
    });
  }
  return { tasks, critical: critical.map((r) => r.id), omitted: records.length - chosen.size, layers: rows.length };
}

/**
 * The layout of what a profiler recorded so far.
 *
 * @param profiler The profiler.
 * @param options How many tasks at most.
 * @returns The layout, its times counted from the profile's start.
 *
 * @example
 * ```ts
 * import * as ta from "../../mod.ts";
 * import { profileDag } from "./dag.ts";
 * const inc = ta.op(async function dagDocInc(x: number) { return x + 1; });
 * using p = ta.profile();
 * await inc.go(inc.go(1));
 * const dag = profileDag(p);
 * if (dag.critical.length !== 2 || !dag.tasks.every((t) => t.critical)) throw new Error("both are on the path");
 * ```
 */
export function profileDag(profiler: Profiler, options: Omit<LayoutDagOptions, "origin"> = {}): DagLayout {
  return layoutDag(profiler.tasks(), profiler.criticalPath(), { ...options, origin: profiler.startedAt });
}
