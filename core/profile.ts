/**
 * `profile()`: records every task (ops and service calls, inside or outside a mesh) from the event
 * stream while it is active, and summarizes counts, latency percentiles, queue wait and the
 * caller→callee graph with fan-out.
 *
 * @module
 */
import { assignLanes } from "./_trace_lanes.ts";
import { currentContext } from "./context.ts";
import { describe } from "./describe.ts";
import { onTaskEvent, setAwaitProbe, type TaskEvent, type TaskInfo } from "./events.ts";

/** Latency statistics of one op or `Service.method`, in milliseconds. */
export interface OpStats {
  /** `"op"` or `"method"`. */
  readonly kind: "op" | "method";
  /**
   * Calls recorded: those that settled while profiling, and those submitted while profiling that
   * had not settled (`unsettled`). A call retried 4 times is one call of 5 attempts.
   */
  readonly count: number;
  /**
   * Calls submitted while profiling and not settled yet, or when the profile stopped (running or
   * waiting); their durations are not in the latency figures.
   */
  readonly unsettled: number;
  /** Calls that failed (after their last attempt). */
  readonly failed: number;
  /** Calls that were cancelled (before or while running; not counted as failed). */
  readonly cancelled: number;
  /**
   * Attempts of the body, retries included (a call that never started made none; one started and
   * not settled counts those it made so far).
   */
  readonly attempts: number;
  /** Attempts after a failed one: `attempts` minus the calls that started. */
  readonly retries: number;
  /** Mean duration, ms. */
  readonly mean: number;
  /** Median duration, ms. */
  readonly p50: number;
  /** 95th percentile of the duration, ms. */
  readonly p95: number;
  /** 99th percentile of the duration, ms. */
  readonly p99: number;
  /** Longest duration, ms. */
  readonly max: number;
  /** Mean time between submission and start: `meanInputWait` + `meanSlotWait`. */
  readonly meanQueueWait: number;
  /** Mean time between submission and its last input resolving (waiting for inputs). */
  readonly meanInputWait: number;
  /** Mean time between its inputs resolving and its start (the ready queue, a concurrency limit, the mailbox). */
  readonly meanSlotWait: number;
}

/** One caller→callee edge: `caller` submitted `calls` calls of `callee`. */
export interface CallEdge {
  /** Name of the calling op/method, or `"(main)"` for code outside any task. */
  readonly caller: string;
  /** Name of the called op or `Service.method`. */
  readonly callee: string;
  /** Number of calls. */
  readonly calls: number;
  /** Calls of `callee` per calling task: mean and max. */
  readonly fanout: { readonly mean: number; readonly max: number };
}

/** A finished task as the profiler keeps it (also what the timeline is made of). */
export interface TaskRecord {
  /** Task id. */
  readonly id: string;
  /** The op's name, or `Service.method` for a method call. */
  readonly name: string;
  /** `"op"` or `"method"`. */
  readonly kind: "op" | "method";
  /** Node it ran on (the node a remote op was sent to; `undefined`: this process). */
  readonly node: string | undefined;
  /** `"remote"` when it ran on another node, else `"local"`. */
  readonly executor: "local" | "remote";
  /** Id of the task that submitted it. */
  readonly parent: string | undefined;
  /** Ids of the tasks whose results it took. */
  readonly dependencies: readonly string[];
  /** `performance.now()` at submission. */
  readonly submittedAt: number;
  /** `performance.now()` when its inputs had resolved (0 if they never did). */
  readonly readyAt: number;
  /** `performance.now()` when the body started. */
  readonly startedAt: number;
  /** `performance.now()` when it settled. */
  readonly settledAt: number;
  /** Attempts of its body (1 + retries; 0 if it never started). */
  readonly attempts: number;
  /** How it ended. */
  readonly status: "completed" | "failed" | "cancelled";
}

/**
 * One Chrome trace event (the Trace Event Format that Perfetto and chrome://tracing open): `X`
 * complete events for tasks (`ts`/`dur` in µs), `s`/`f` flow events for dependency edges, `M`
 * metadata naming processes (nodes) and threads (executors).
 */
export interface ChromeTraceEvent {
  /** What the event shows: a task's name, `"dependency"` for a flow, or the metadata's kind. */
  readonly name: string;
  /** Event phase: complete (X), flow start (s) / end (f), metadata (M). */
  readonly ph: "X" | "s" | "f" | "M";
  /** Start, µs. */
  readonly ts: number;
  /** Process track (one per node). */
  readonly pid: number;
  /** Thread track (one per executor lane). */
  readonly tid: number;
  /** Duration, µs (complete events). */
  readonly dur?: number;
  /** Category. */
  readonly cat?: string;
  /** Flow id (flow events). */
  readonly id?: number;
  /** Flow binding point. */
  readonly bp?: "e";
  /** Extra data shown by the viewer. */
  readonly args?: Readonly<Record<string, unknown>>;
}

/** What {@link Profiler.toChromeTrace} returns; `JSON.stringify` it to a `.json` file. */
export interface ChromeTrace {
  /** The events. */
  readonly traceEvents: readonly ChromeTraceEvent[];
  /** Unit the viewer shows. */
  readonly displayTimeUnit: "ms";
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

/** The calls of one op or method not settled (while recording, or when it stopped). */
interface Unsettled {
  kind: "op" | "method";
  calls: number;
  /** Those that started (running, or waiting to try again). */
  started: number;
  /** Their attempts so far. */
  attempts: number;
}

/** Most thread tracks per executor in a Chrome trace: past them a timeline is unreadable anyway. */
const MAX_TRACE_LANES = 256;

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

/** The profilers recording now, oldest first ({@link getProfiler} returns the last). */
const recording: Profiler[] = [];
/** The profiler started last, stopped or not: weakly, so a profile nobody keeps is freed. */
let lastStarted: WeakRef<Profiler> | undefined;

/** Who awaited a task: `""` for code outside any task, else the awaiting task's id. */
function awaiterId(): string {
  const task = currentContext()?.task as { id?: unknown } | undefined;
  return typeof task?.id === "string" ? task.id : "";
}

function noteAwait(task: TaskInfo): void {
  const by = awaiterId();
  const at = performance.now();
  for (let i = 0; i < recording.length; i++) recording[i].noteAwait(task.id, by, at);
}

/**
 * A running profile. Use it with `using` (it stops when the scope ends) or call `stop()`.
 */
export class Profiler implements Disposable {
  /** `performance.now()` when profiling started. */
  readonly startedAt: number = performance.now();
  private stoppedAt: number | undefined;
  private readonly records: TaskRecord[] = [];
  private readonly fanout = new Map<string, Map<string, number>>(); // edge -> caller task id -> calls
  /** task id -> who awaited it (`""`: code outside tasks) and when it first did */
  private readonly awaits = new Map<string, Array<readonly [string, number]>>();
  private readonly off: () => void;
  /** the calls submitted while recording and not settled yet (until it stops) */
  private readonly live = new Set<TaskInfo>();
  /** when stopped: the calls still unsettled then, per name (see {@link Profiler.unsettled}) */
  private unsettledAtStop: Map<string, Unsettled> | undefined;

  /** @internal use {@link profile} */
  constructor() {
    this.off = onTaskEvent((e) => this.record(e), { everyTask: true });
    recording.push(this);
    lastStarted = new WeakRef(this);
    setAwaitProbe(noteAwait);
  }

  /** @internal `by` (a task id, `""` for code outside tasks) awaited task `id` at `at`. */
  noteAwait(id: string, by: string, at: number): void {
    const list = this.awaits.get(id);
    if (list === undefined) this.awaits.set(id, [[by, at]]);
    else if (!list.some((a) => a[0] === by)) list.push([by, at]);
  }

  /** True when `by` awaited task `id` no later than `until`. */
  private awaitedBy(id: string, by: string, until: number): boolean {
    const list = this.awaits.get(id);
    if (list === undefined) return false;
    for (const [who, at] of list) if (who === by && at <= until) return true;
    return false;
  }

  /** Takes one event from the stream. */
  private record(e: TaskEvent): void {
    const t = e.task;
    if (e.kind === "submitted") {
      const edge = `${t.parent?.name ?? "(main)"}\u0000${t.name}`;
      let per = this.fanout.get(edge);
      if (per === undefined) this.fanout.set(edge, per = new Map());
      const key = t.parent?.id ?? "(main)";
      per.set(key, (per.get(key) ?? 0) + 1);
      this.live.add(t);
    } else if (e.kind === "finished" || e.kind === "failed" || e.kind === "cancelled") {
      this.live.delete(t);
      this.records.push(toRecord(t, e.kind === "finished" ? "completed" : e.kind));
    }
  }

  /** True while recording. */
  get active(): boolean {
    return this.stoppedAt === undefined;
  }

  /** Every settled task recorded so far, in settle order (`summary()` counts the unsettled ones too). */
  tasks(): readonly TaskRecord[] {
    return this.records;
  }

  /** The calls unsettled now (while recording) or when it stopped, per name, with their attempts so far. */
  private unsettled(): Map<string, Unsettled> {
    if (this.unsettledAtStop !== undefined) return this.unsettledAtStop;
    const out = new Map<string, Unsettled>();
    for (const t of this.live) {
      let u = out.get(t.name);
      if (u === undefined) out.set(t.name, u = { kind: t.kind, calls: 0, started: 0, attempts: 0 });
      u.calls++;
      // one that started (and so runs, or waits to try again) made its attempts so far
      if (t.startedAt > 0) {
        u.started++;
        u.attempts += t.attempt + 1;
      }
    }
    return out;
  }

  /**
   * Counts, latency percentiles and the call graph of what ran so far: every call submitted while
   * profiling is counted, those not settled yet (or when it stopped) as `unsettled`.
   */
  summary(): ProfileSummary {
    const by = new Map<string, TaskRecord[]>();
    for (const r of this.records) {
      let list = by.get(r.name);
      if (list === undefined) by.set(r.name, list = []);
      list.push(r);
    }
    const unsettled = this.unsettled();
    for (const name of unsettled.keys()) if (!by.has(name)) by.set(name, []);
    const ops: Record<string, OpStats> = {};
    for (const [name, list] of by) {
      const open = unsettled.get(name);
      const ran = list.filter((r) => r.startedAt > 0);
      const d = ran.map((r) => r.settledAt - r.startedAt).sort((a, b) => a - b);
      let failed = 0, cancelled = 0, attempts = 0, inputWait = 0, slotWait = 0;
      for (const r of list) {
        if (r.status === "failed") failed++;
        else if (r.status === "cancelled") cancelled++;
        attempts += r.attempts;
      }
      for (const r of ran) {
        const ready = r.readyAt > 0 ? r.readyAt : r.submittedAt;
        inputWait += ready - r.submittedAt;
        slotWait += r.startedAt - ready;
      }
      const n = ran.length;
      attempts += open?.attempts ?? 0;
      ops[name] = {
        kind: list[0]?.kind ?? open!.kind,
        count: list.length + (open?.calls ?? 0),
        unsettled: open?.calls ?? 0,
        failed,
        cancelled,
        attempts,
        retries: attempts - n - (open?.started ?? 0),
        mean: n ? d.reduce((s, x) => s + x, 0) / n : 0,
        p50: percentile(d, 50),
        p95: percentile(d, 95),
        p99: percentile(d, 99),
        max: n ? d[n - 1] : 0,
        meanQueueWait: n ? (inputWait + slotWait) / n : 0,
        meanInputWait: n ? inputWait / n : 0,
        meanSlotWait: n ? slotWait / n : 0,
      };
    }
    const graph: CallEdge[] = [];
    for (const [edge, per] of this.fanout) {
      const [caller, callee] = edge.split("\u0000");
      // a loop, not Math.max(...counts): one caller per task can be hundreds of thousands of
      // arguments, past the engine's stack (Deno: "Maximum call stack size exceeded")
      let calls = 0, max = 0;
      for (const c of per.values()) {
        calls += c;
        if (c > max) max = c;
      }
      graph.push({ caller, callee, calls, fanout: { mean: calls / per.size, max } });
    }
    return { elapsedMs: (this.stoppedAt ?? performance.now()) - this.startedAt, ops, graph };
  }

  /**
   * The summary as an aligned text table, for printing: per op / `Service.method` its calls, how
   * they ended (failed, cancelled) or that they have not (unsettled), its attempts and retries,
   * latency, and where it waited before starting (a legend under the table says what each column
   * counts), then the call graph.
   *
   * @returns The table.
   *
   * @example A retried op shows one call and its retries
   * ```ts
   * import * as ta from "../mod.ts";
   * let n = 0;
   * const flaky = ta.op({ name: "flakyFormat", retries: 2 }, async () => {
   *   if (++n < 3) throw new Error("not yet");
   *   return n;
   * });
   * using p = ta.profile();
   * await flaky.go();
   * const row = p.format().split("\n").find((l) => l.startsWith("flakyFormat"))!.split(/ +/);
   * // name, kind, calls, failed, cancelled, unsettled, attempts, retries, …
   * if (row.slice(2, 8).join(" ") !== "1 0 0 0 3 2") throw new Error(row.join(" "));
   * ```
   */
  format(): string {
    const s = this.summary();
    const f = (x: number) => x < 1 ? `${(x * 1000).toFixed(0)}µs` : `${x.toFixed(2)}ms`;
    const rows = Object.entries(s.ops).map(([name, o]) => [
      name,
      o.kind,
      String(o.count),
      String(o.failed),
      String(o.cancelled),
      String(o.unsettled),
      String(o.attempts),
      String(o.retries),
      f(o.mean),
      f(o.p50),
      f(o.p95),
      f(o.p99),
      f(o.meanInputWait),
      f(o.meanSlotWait),
    ]);
    const head = [
      "name",
      "kind",
      "calls",
      "failed",
      "cancelled",
      "unsettled",
      "attempts",
      "retries",
      "mean",
      "p50",
      "p95",
      "p99",
      "wait:inputs",
      "wait:slot",
    ];
    const widths = head.map((h) => h.length);
    for (const r of rows) for (let i = 0; i < r.length; i++) if (r[i].length > widths[i]) widths[i] = r[i].length;
    const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
    const out = [
      `profile: ${s.elapsedMs.toFixed(1)} ms`,
      line(head),
      ...rows.map(line),
      "",
      "legend: calls = calls submitted; failed, cancelled = calls that ended so (a cancelled call is not failed);",
      "  unsettled = calls not settled yet (or when the profile stopped), not in the latency columns;",
      "  attempts = runs of the body, retries included; retries = attempts after a failed one;",
      "  mean..p99 = from the body's start to the call's end (every attempt); wait:inputs = mean time from",
      "  submission until its last input resolved; wait:slot = mean time from then until the body started",
      "  (the ready queue, a concurrency limit, the instance's mailbox)",
      "",
      "calls:",
    ];
    for (const e of s.graph) {
      out.push(
        `  ${e.caller} -> ${e.callee}: ${e.calls} call${e.calls === 1 ? "" : "s"} (fan-out mean ${
          e.fanout.mean.toFixed(1)
        }, max ${e.fanout.max})`,
      );
    }
    return out.join("\n");
  }

  /**
   * The recorded tasks as a Chrome trace (open the JSON in https://ui.perfetto.dev or
   * chrome://tracing). Each node is a process; each executor on it (`ops`, or the service's name)
   * is a thread, split into as many lanes as it had tasks running at once, so slices never overlap
   * partially: at most 256 (the tasks past them are not drawn, and one more track's name says how
   * many). Every task is one complete event (`X`) from start to settle, its queue wait in
   * `args.queue_wait_ms`; a task that never started (an input failed, cancelled) is a zero-length
   * event at its settle time. Each dependency edge is a flow arrow (`s` at the input's end, `f` at
   * the dependent's start). Times are µs since `profile()` started.
   *
   * @returns The trace-event object.
   *
   * @example Write a timeline
   * ```ts
   * import * as ta from "../mod.ts";
   * const inc = ta.op(async function inc(x: number) { return x + 1; });
   * using p = ta.profile();
   * await inc.go(inc.go(1));
   * const trace = p.toChromeTrace();
   * const tasks = trace.traceEvents.filter((e) => e.ph === "X");
   * const flows = trace.traceEvents.filter((e) => e.ph === "s" || e.ph === "f");
   * if (tasks.length !== 2 || flows.length !== 2) throw new Error("expected 2 tasks and 1 arrow");
   * // Deno.writeTextFileSync("trace.json", JSON.stringify(trace));
   * ```
   */
  toChromeTrace(): ChromeTrace {
    const t0 = this.startedAt;
    const us = (t: number) => (t - t0) * 1000;
    const events: ChromeTraceEvent[] = [];
    const pids = new Map<string, number>();
    const placed = new Map<string, { pid: number; tid: number; start: number; end: number }>();
    const records = this.records.filter((r) => r.settledAt > 0);
    const startOf = (r: TaskRecord) => (r.startedAt > 0 ? r.startedAt : r.settledAt);
    records.sort((a, b) => startOf(a) - startOf(b) || a.settledAt - b.settledAt);
    // each executor's tasks, in order of start, laid out on its lanes
    const groups = new Map<string, { pid: number; executor: string; records: TaskRecord[] }>();
    for (const r of records) {
      const node = r.node ?? "local";
      let pid = pids.get(node);
      if (pid === undefined) {
        pids.set(node, pid = pids.size + 1);
        events.push({ name: "process_name", ph: "M", ts: 0, pid, tid: 0, args: { name: `node ${node}` } });
      }
      const executor = r.kind === "op" ? "ops" : r.name.slice(0, Math.max(0, r.name.indexOf("."))) || r.name;
      const key = `${node}\u0000${executor}`;
      let group = groups.get(key);
      if (group === undefined) groups.set(key, group = { pid, executor, records: [] });
      group.records.push(r);
    }
    let nextTid = 1;
    for (const { pid, executor, records: rs } of groups.values()) {
      const lanes = assignLanes(rs.map(startOf), rs.map((r) => r.settledAt), MAX_TRACE_LANES);
      const tids: number[] = [];
      let undrawn = 0;
      for (let i = 0; i < rs.length; i++) {
        const r = rs[i], lane = lanes[i];
        if (lane < 0) {
          undrawn++;
          continue;
        }
        let tid = tids[lane];
        if (tid === undefined) {
          tids[lane] = tid = nextTid++;
          const label = lane === 0 ? executor : `${executor} #${lane + 1}`;
          events.push({ name: "thread_name", ph: "M", ts: 0, pid, tid, args: { name: label } });
        }
        const start = startOf(r);
        placed.set(r.id, { pid, tid, start, end: r.settledAt });
        events.push({
          name: r.name,
          cat: r.kind,
          ph: "X",
          ts: us(start),
          dur: (r.settledAt - start) * 1000,
          pid,
          tid,
          args: {
            id: r.id,
            status: r.status,
            queue_wait_ms: r.startedAt > 0 ? r.startedAt - r.submittedAt : null,
            parent: r.parent ?? null,
          },
        });
      }
      if (undrawn > 0) {
        // an empty track whose name says what the lanes could not hold
        const name = `${executor}: ${undrawn} task(s) not drawn (past ${MAX_TRACE_LANES} running at once)`;
        events.push({ name: "thread_name", ph: "M", ts: 0, pid, tid: nextTid++, args: { name } });
      }
    }
    let flow = 0;
    for (const r of records) {
      const to = placed.get(r.id);
      if (to === undefined) continue;
      for (const d of r.dependencies) {
        const from = placed.get(d);
        if (from === undefined) continue;
        const id = ++flow;
        // "s" must lie inside the input's slice to bind to it: just before its end
        const sAt = from.end - Math.min((from.end - from.start) / 2, 0.000001);
        events.push({ name: "dependency", cat: "dependency", ph: "s", id, ts: us(sAt), pid: from.pid, tid: from.tid });
        events.push({
          name: "dependency",
          cat: "dependency",
          ph: "f",
          bp: "e",
          id,
          ts: us(to.start),
          pid: to.pid,
          tid: to.tid,
        });
      }
    }
    return { traceEvents: events, displayTimeUnit: "ms" };
  }

  /**
   * The critical path: the chain of tasks that set the run's duration, in the order they settled.
   * It starts from the task that settled last and walks back along what each one really waited for:
   * its end waited for the last child task it awaited that settled while it ran; its start waited
   * for the last of its inputs to settle, or, when no input held it up, for the last earlier task
   * of the same caller that the caller awaited before submitting it (`await a.go(); b.go()`). A
   * task that merely settled earlier (never awaited by that caller, or awaited only afterwards) is
   * not on the chain. Shortening any task on this chain shortens the run; shortening others does not.
   *
   * @returns The chain, first to last (empty if nothing was recorded).
   *
   * @example Find the slow branch
   * ```ts
   * import * as ta from "../mod.ts";
   * const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
   * const fast = ta.op(async function fast() { return 1; });
   * const slow = ta.op(async function slow() { await wait(20); return 2; });
   * const add = ta.op(async function add(a: number, b: number) { return a + b; });
   * using p = ta.profile();
   * await add.go(fast.go(), slow.go());
   * const names = p.criticalPath().map((t) => t.name);
   * if (names.join(" > ") !== "slow > add") throw new Error(names.join(" > "));
   * ```
   */
  criticalPath(): readonly TaskRecord[] {
    const records = this.records.filter((r) => r.settledAt > 0);
    if (records.length === 0) return [];
    const byId = new Map<string, TaskRecord>();
    const children = new Map<string, TaskRecord[]>(); // caller id ("" outside tasks) -> its tasks
    for (const r of records) {
      byId.set(r.id, r);
      const key = r.parent ?? "";
      let list = children.get(key);
      if (list === undefined) children.set(key, list = []);
      list.push(r);
    }
    const seen = new Set<string>();
    const latest = (list: Iterable<TaskRecord>, ok: (r: TaskRecord) => boolean) => {
      let best: TaskRecord | undefined;
      for (const r of list) {
        if (!seen.has(r.id) && ok(r) && (best === undefined || r.settledAt > best.settledAt)) best = r;
      }
      return best;
    };
    // the last input to settle, else the last task its caller awaited before submitting it
    const startHeldBy = (t: TaskRecord): TaskRecord | undefined => {
      const inputs = t.dependencies.map((d) => byId.get(d)).filter((d) => d !== undefined);
      const input = latest(inputs, (d) => d.settledAt >= t.submittedAt);
      if (input !== undefined) return input;
      const caller = t.parent ?? "";
      const parent = t.parent !== undefined ? byId.get(t.parent) : undefined;
      const floor = parent !== undefined ? parent.startedAt : this.startedAt;
      return latest(
        children.get(caller) ?? [],
        (s) => s.settledAt <= t.submittedAt && s.settledAt >= floor && this.awaitedBy(s.id, caller, t.submittedAt),
      );
    };
    let cur: TaskRecord | undefined = latest(records, () => true);
    const path: TaskRecord[] = [];
    while (cur !== undefined) {
      const t: TaskRecord = cur;
      seen.add(t.id);
      path.push(t);
      const started = t.startedAt > 0 ? t.startedAt : t.settledAt;
      // what held its end: a child it awaited
      let next = latest(
        children.get(t.id) ?? [],
        (c) => c.settledAt >= started && c.settledAt <= t.settledAt && this.awaitedBy(c.id, t.id, t.settledAt),
      );
      // what held its start; nothing inside its caller: what held the caller's start, and so on up
      for (let u: TaskRecord | undefined = t; next === undefined && u !== undefined;) {
        next = startHeldBy(u);
        u = u.parent !== undefined ? byId.get(u.parent) : undefined;
        if (next === undefined && u !== undefined && !seen.has(u.id)) next = u;
      }
      cur = next;
    }
    return path.sort((a, b) => a.settledAt - b.settledAt);
  }

  /** Stops recording (the summary stays readable). Idempotent. */
  stop(): void {
    if (this.stoppedAt !== undefined) return;
    this.stoppedAt = performance.now();
    this.off();
    // what was still unsettled is counted as such; the tasks themselves are let go
    this.unsettledAtStop = this.unsettled();
    this.live.clear();
    // stopped in any order: a nested profiler stopped first leaves the outer one current again
    const i = recording.indexOf(this);
    if (i >= 0) recording.splice(i, 1);
    if (recording.length === 0) setAwaitProbe(undefined);
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
    executor: t.executor,
    parent: t.parent?.id,
    dependencies: t.dependencies.map((d) => d.id),
    submittedAt: t.submittedAt,
    readyAt: t.readyAt,
    startedAt: t.startedAt,
    settledAt: t.settledAt,
    attempts: t.startedAt > 0 ? t.attempt + 1 : 0,
    status,
  };
}

/**
 * Starts profiling every op and service call in this process until the profiler is stopped.
 *
 * @returns The profiler (use it with `using`).
 * @throws {TypeError} When given an argument: it takes no options, and one given must not be
 * ignored without a word.
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
  // (`arguments`: a typed rest parameter would make passing one a compile error only)
  if (arguments.length > 1 || arguments[0] !== undefined) {
    throw new TypeError(`profile() takes no options, got ${describe(arguments[0])}`);
  }
  return new Profiler();
}

/**
 * The profiler started last that is still recording, if any: when a nested profiler stops, the
 * one around it is current again.
 *
 * @returns The active profiler or `undefined`.
 *
 * @example
 * ```ts
 * import * as ta from "../mod.ts";
 * using p = ta.profile();
 * if (ta.getProfiler() !== p) throw new Error("expected the active profiler");
 * {
 *   using inner = ta.profile();
 *   if (ta.getProfiler() !== inner) throw new Error("expected the inner profiler");
 * }
 * if (ta.getProfiler() !== p) throw new Error("expected the outer profiler again");
 * ```
 */
export function getProfiler(): Profiler | undefined {
  return recording.length === 0 ? undefined : recording[recording.length - 1];
}

/**
 * The profiler started last, still recording or stopped, while something else keeps it alive (it
 * is held weakly): what a dashboard shows as "the last profile".
 *
 * @returns The last profiler started, or `undefined`.
 *
 * @example
 * ```ts
 * import { lastProfiler, profile } from "./profile.ts";
 * const p = profile();
 * p.stop();
 * if (lastProfiler() !== p) throw new Error("expected the profiler started last, stopped or not");
 * ```
 */
export function lastProfiler(): Profiler | undefined {
  return lastStarted?.deref();
}
