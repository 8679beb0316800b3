/**
 * `profile()`: records every task (ops and service calls, inside or outside a mesh) from the event
 * stream while it is active, and summarizes counts, latency percentiles, queue wait and the
 * caller→callee graph with fan-out.
 *
 * @module
 */
import { onTaskEvent, type TaskEvent, type TaskInfo } from "./events.ts";

/** Latency statistics of one op or `Service.method`, in milliseconds. */
export interface OpStats {
  readonly kind: "op" | "method";
  readonly count: number;
  readonly failed: number;
  readonly cancelled: number;
  readonly mean: number;
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly max: number;
  /** Mean time between submission and start (waiting for inputs, a slot or the mailbox). */
  readonly meanQueueWait: number;
}

/** One caller→callee edge: `caller` submitted `calls` calls of `callee`. */
export interface CallEdge {
  /** Name of the calling op/method, or `"(main)"` for code outside any task. */
  readonly caller: string;
  readonly callee: string;
  readonly calls: number;
  /** Calls of `callee` per calling task: mean and max. */
  readonly fanout: { readonly mean: number; readonly max: number };
}

/** A finished task as the profiler keeps it (also what the timeline is made of). */
export interface TaskRecord {
  readonly id: string;
  readonly name: string;
  readonly kind: "op" | "method";
  readonly node: string | undefined;
  readonly parent: string | undefined;
  readonly dependencies: readonly string[];
  readonly submittedAt: number;
  readonly startedAt: number;
  readonly settledAt: number;
  readonly status: "completed" | "failed" | "cancelled";
}

/** What {@link Profiler.summary} returns. */
export interface ProfileSummary {
  /** Milliseconds from `profile()` to the summary (or to `stop()`). */
  readonly elapsedMs: number;
  /** Per op / `Service.method`. */
  readonly ops: Readonly<Record<string, OpStats>>;
  /** Who called whom, with fan-out. */
  readonly graph: readonly CallEdge[];
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

let active: Profiler | undefined;

/**
 * A running profile. Use it with `using` (it stops when the scope ends) or call `stop()`.
 */
export class Profiler implements Disposable {
  /** `performance.now()` when profiling started. */
  readonly startedAt: number = performance.now();
  private stoppedAt: number | undefined;
  private readonly records: TaskRecord[] = [];
  private readonly fanout = new Map<string, Map<string, number>>(); // edge -> caller task id -> calls
  private readonly off: () => void;

  /** @internal use {@link profile} */
  constructor() {
    this.off = onTaskEvent((e) => this.record(e));
  }

  private record(e: TaskEvent): void {
    const t = e.task;
    if (e.kind === "submitted") {
      const edge = `${t.parent?.name ?? "(main)"}\u0000${t.name}`;
      let per = this.fanout.get(edge);
      if (per === undefined) this.fanout.set(edge, per = new Map());
      const key = t.parent?.id ?? "(main)";
      per.set(key, (per.get(key) ?? 0) + 1);
    } else if (e.kind === "finished" || e.kind === "failed" || e.kind === "cancelled") {
      this.records.push(toRecord(t, e.kind === "finished" ? "completed" : e.kind));
    }
  }

  /** True while recording. */
  get active(): boolean {
    return this.stoppedAt === undefined;
  }

  /** Every settled task recorded so far, in settle order. */
  tasks(): readonly TaskRecord[] {
    return this.records;
  }

  /** Counts, latency percentiles and the call graph of what ran so far. */
  summary(): ProfileSummary {
    const by = new Map<string, TaskRecord[]>();
    for (const r of this.records) {
      let list = by.get(r.name);
      if (list === undefined) by.set(r.name, list = []);
      list.push(r);
    }
    const ops: Record<string, OpStats> = {};
    for (const [name, list] of by) {
      const ran = list.filter((r) => r.startedAt > 0);
      const d = ran.map((r) => r.settledAt - r.startedAt).sort((a, b) => a - b);
      const waits = ran.map((r) => r.startedAt - r.submittedAt);
      ops[name] = {
        kind: list[0].kind,
        count: list.length,
        failed: list.filter((r) => r.status === "failed").length,
        cancelled: list.filter((r) => r.status === "cancelled").length,
        mean: d.length ? d.reduce((s, x) => s + x, 0) / d.length : 0,
        p50: percentile(d, 50),
        p95: percentile(d, 95),
        p99: percentile(d, 99),
        max: d.length ? d[d.length - 1] : 0,
        meanQueueWait: waits.length ? waits.reduce((s, x) => s + x, 0) / waits.length : 0,
      };
    }
    const graph: CallEdge[] = [];
    for (const [edge, per] of this.fanout) {
      const [caller, callee] = edge.split("\u0000");
      const counts = [...per.values()];
      const calls = counts.reduce((s, x) => s + x, 0);
      graph.push({ caller, callee, calls, fanout: { mean: calls / counts.length, max: Math.max(...counts) } });
    }
    return { elapsedMs: (this.stoppedAt ?? performance.now()) - this.startedAt, ops, graph };
  }

  /** The summary as an aligned text table, for printing. */
  format(): string {
    const s = this.summary();
    const f = (x: number) => x < 1 ? `${(x * 1000).toFixed(0)}µs` : `${x.toFixed(2)}ms`;
    const rows = Object.entries(s.ops).map(([name, o]) => [
      name, o.kind, String(o.count), String(o.failed), f(o.mean), f(o.p50), f(o.p95), f(o.p99), f(o.meanQueueWait),
    ]);
    const head = ["name", "kind", "calls", "failed", "mean", "p50", "p95", "p99", "queue"];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
    const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
    const out = [`profile: ${s.elapsedMs.toFixed(1)} ms`, line(head), ...rows.map(line), "", "calls:"];
    for (const e of s.graph) {
      out.push(`  ${e.caller} -> ${e.callee}: ${e.calls} call${e.calls === 1 ? "" : "s"} (fan-out mean ${e.fanout.mean.toFixed(1)}, max ${e.fanout.max})`);
    }
    return out.join("\n");
  }

  /** Stops recording (the summary stays readable). Idempotent. */
  stop(): void {
    if (this.stoppedAt !== undefined) return;
    this.stoppedAt = performance.now();
    this.off();
    if (active === this) active = undefined;
  }

  /** Same as {@link Profiler.stop}, for `using`. */
  [Symbol.dispose](): void {
    this.stop();
  }
}

function toRecord(t: TaskInfo, status: TaskRecord["status"]): TaskRecord {
  return {
    id: t.id,
    name: t.name,
    kind: t.kind,
    node: t.node,
    parent: t.parent?.id,
    dependencies: t.dependencies.map((d) => d.id),
    submittedAt: t.submittedAt,
    startedAt: t.startedAt,
    settledAt: t.settledAt,
    status,
  };
}

/**
 * Starts profiling every op and service call in this process until the profiler is stopped.
 *
 * @returns The profiler (use it with `using`).
 *
 * @example
 * ```ts
 * import * as ta from "../mod.ts";
 * const double = ta.op(async function double(x: number) { return 2 * x; });
 * using p = ta.profile();
 * await Promise.all([1, 2, 3].map((x) => double.go(x)));
 * const s = p.summary();
 * if (s.ops.double.count !== 3) throw new Error("expected 3 recorded calls");
 * ```
 */
export function profile(): Profiler {
  const p = new Profiler();
  active = p;
  return p;
}

/**
 * The profiler started last that is still recording, if any.
 *
 * @returns The active profiler or `undefined`.
 *
 * @example
 * ```ts
 * import * as ta from "../mod.ts";
 * using p = ta.profile();
 * if (ta.getProfiler() !== p) throw new Error("expected the active profiler");
 * ```
 */
export function getProfiler(): Profiler | undefined {
  return active;
}
