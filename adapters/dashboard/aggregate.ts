/**
 * What the dashboard shows per op and `Service.method`, aggregated from the task event stream in
 * O(1) per event: calls, how they ended, calls in flight, and over the last minute the calls per
 * second and the latency p50/p95 (from a log-scale histogram per second, so no event allocates and
 * no per-task list grows).
 *
 * Not every task has to be recorded (a recording budget, or tracing's sampling). Tasks are numbered
 * as they are made, recorded or not, so the gap between two recorded tasks' numbers counts the tasks
 * left out between them; they are counted as calls of the op recorded just before the gap (a flood
 * that shut the gate is a flood of that op), and each op's outcomes and rates are scaled by its
 * calls per recorded call. Exact whenever every task was recorded. Calls in flight and the
 * percentiles are those of the recorded tasks. An aggregator that counts only some tasks (a mesh's)
 * numbers the gaps by the count of those tasks (`scopeCount`), so work elsewhere in the process is
 * never counted as its calls; without that count it estimates nothing (its figures are lower bounds).
 *
 * @module
 */
import type { TaskEvent, TaskInfo } from "../../core/events.ts";
import { type Explanation, formatExplanation } from "../../core/explain.ts";
import { submittedCount } from "../../core/task.ts";

/** Histogram buckets per doubling of the duration: a percentile is off by at most ±9 %. */
const BUCKETS_PER_OCTAVE = 4;
/** Bucket 0 holds durations up to 1 µs; the last one holds everything past 2^28 µs (about 4.5 min). */
const BUCKETS = 1 + 28 * BUCKETS_PER_OCTAVE;
/** Names kept apart; calls of names past this many are counted under {@link OTHER}. */
const DEFAULT_MAX_NAMES = 500;
/** Where the calls of names past `maxNames` are counted. */
export const OTHER = "(other)";
/** Stuck tasks kept for the snapshot at most (the oldest reported goes first). */
const MAX_STUCK = 50;

/** Options of {@linkcode TaskAggregator}. */
export interface TaskAggregatorOptions {
  /** The clock, in ms on the scale of the events' `at` (default `performance.now`). */
  now?: () => number;
  /** Seconds in the sliding window of throughput and percentiles (default 60). */
  windowSeconds?: number;
  /** Most op/method names kept apart (default 500); the calls of later names count as `"(other)"`. */
  maxNames?: number;
  /**
   * Which recorded tasks count (default all). Every recorded task still counts toward the share of
   * tasks recorded; a mesh's dashboard counts only the tasks submitted in that mesh.
   */
  accept?: (task: TaskInfo) => boolean;
  /** Tasks made by this process so far, recorded or not (default the core's counter). */
  taskCount?: () => number;
  /**
   * With `accept`: how many of the tasks it accepts were made so far, recorded or not, the task of a
   * `"submitted"` event already counted when the event is sent (a mesh's `tasksMade`). The tasks it
   * accepts that were left out are estimated from its gaps; with `accept` and without it, none are
   * (the counts are those of the recorded tasks: lower bounds).
   */
  scopeCount?: () => number;
}

/** The figures of one op or `Service.method` in a {@linkcode AggregateSnapshot}. */
export interface NameStats {
  /** Op name or `Service.method`. */
  readonly name: string;
  /** `"op"` or `"method"`. */
  readonly kind: "op" | "method";
  /** Calls submitted since the aggregator started (estimated when not all were recorded). */
  readonly calls: number;
  /** Calls that completed (estimated likewise). */
  readonly completed: number;
  /** Calls that failed (estimated likewise). */
  readonly failed: number;
  /** Calls that were cancelled (estimated likewise). */
  readonly cancelled: number;
  /** Recorded calls submitted and not settled yet (running or waiting). */
  readonly inFlight: number;
  /** Of those, the ones whose body runs. */
  readonly running: number;
  /** True when some of its figures are estimates (not every task was recorded). */
  readonly estimated: boolean;
  /** Over the window: calls settled, calls per second, latency percentiles (ms). */
  readonly window: WindowStats;
  /** Calls settled per second over the window, oldest second first (the last one is the current). */
  readonly series: readonly number[];
}

/** Figures over the sliding window. */
export interface WindowStats {
  /** Calls settled in the window. */
  readonly settled: number;
  /** Calls that failed in the window. */
  readonly failed: number;
  /** Settled calls per second over the part of the window the aggregator has seen. */
  readonly perSecond: number;
  /** Median duration from the body's start to the call's end, ms (0 with no call). */
  readonly p50: number;
  /** 95th percentile of that duration, ms. */
  readonly p95: number;
  /** Longest, ms. */
  readonly max: number;
}

/** What {@linkcode TaskAggregator.snapshot} returns. */
export interface AggregateSnapshot {
  /** Seconds in the window. */
  readonly windowSeconds: number;
  /** Milliseconds since the aggregator started. */
  readonly elapsedMs: number;
  /** Per op / `Service.method`, by name. */
  readonly names: readonly NameStats[];
  /** Calls settled per second over the window, all names together, oldest first. */
  readonly series: readonly number[];
  /** Share of the tasks made over the window that were recorded (1: all of them). */
  readonly recordedShare: number;
  /** The root task (submitted outside any task) seen last, if any. */
  readonly lastRoot: TaskInfo | undefined;
  /** Tasks the watchdog reported stuck and not settled yet, oldest report first (at most 50). */
  readonly stuck: readonly StuckTask[];
  /** Stuck reports since the aggregator started, settled ones and those past the 50 included. */
  readonly stuckReported: number;
}

/** A task the mesh's watchdog reported stuck (a `"stuck"` event), in a {@linkcode AggregateSnapshot}. */
export interface StuckTask {
  /** The task's id (`name#seq`). */
  readonly id: string;
  /** Op name or `Service.method`. */
  readonly name: string;
  /** The node it runs or waits for, when known. */
  readonly node: string | undefined;
  /** What it waited for when reported (`Explanation.waitingFor`). */
  readonly waitingFor: Explanation["waitingFor"];
  /** How long it had been waiting when reported, ms (a lower bound when its times were not recorded). */
  readonly forMs: number;
  /** Milliseconds since the report. */
  readonly reportedAgoMs: number;
  /** The explanation as text (`ta.explain`'s). */
  readonly explanation: string;
}

/** One op/method's counters and its ring of per-second slots. */
class Entry {
  /** Recorded calls, and the calls estimated in all (recorded plus those left out). */
  recordedCalls = 0;
  calls = 0;
  /** Recorded outcomes. */
  completed = 0;
  failed = 0;
  cancelled = 0;
  inFlight = 0;
  running = 0;
  /** Second (`floor(at / 1000)`) each slot holds; -1: empty. */
  readonly second: Float64Array;
  /** Per slot: calls recorded, calls left out (counted from gaps), settled and failed (recorded). */
  readonly recordedIn: Float64Array;
  readonly leftOutIn: Float64Array;
  readonly settledIn: Uint32Array;
  readonly failedIn: Uint32Array;
  readonly min: Float64Array;
  readonly max: Float64Array;
  /** Histogram of each slot, allocated at its first duration and zeroed when the slot is reused. */
  readonly hist: (Uint32Array | undefined)[];

  constructor(readonly name: string, readonly kind: "op" | "method", slots: number) {
    this.second = new Float64Array(slots).fill(-1);
    this.recordedIn = new Float64Array(slots);
    this.leftOutIn = new Float64Array(slots);
    this.settledIn = new Uint32Array(slots);
    this.failedIn = new Uint32Array(slots);
    this.min = new Float64Array(slots);
    this.max = new Float64Array(slots);
    this.hist = new Array(slots).fill(undefined);
  }

  /** The slot of `second`, emptied first when it held an older second. */
  slot(second: number): number {
    const i = second % this.second.length;
    if (this.second[i] !== second) {
      this.second[i] = second;
      this.recordedIn[i] = 0;
      this.leftOutIn[i] = 0;
      this.settledIn[i] = 0;
      this.failedIn[i] = 0;
      this.min[i] = Infinity;
      this.max[i] = 0;
      this.hist[i]?.fill(0);
    }
    return i;
  }

  /** The slot holding `second`, or -1. */
  find(second: number): number {
    const i = second % this.second.length;
    return this.second[i] === second ? i : -1;
  }
}

/** The histogram bucket of a duration in ms. */
function bucketOf(ms: number): number {
  const us = ms * 1000;
  if (!(us > 1)) return 0;
  const b = 1 + Math.floor(Math.log2(us) * BUCKETS_PER_OCTAVE);
  return b < BUCKETS ? b : BUCKETS - 1;
}

/** The middle (geometric) of a bucket, in ms. */
function bucketMiddle(b: number): number {
  if (b === 0) return 0.0005;
  return 2 ** ((b - 0.5) / BUCKETS_PER_OCTAVE) / 1000;
}

const round1 = (x: number) => Math.round(x * 10) / 10;

/**
 * Aggregates task events per op / `Service.method`. Feed it with `record` (from `onTaskEvent`);
 * read it with `snapshot`. Each event costs a map lookup and a few counter updates; only the first
 * event of a name in a new second clears that second's slot.
 *
 * @example Counting calls and their latency, with an injected clock
 * ```ts
 * import { TaskAggregator } from "./aggregate.ts";
 * import type { TaskInfo } from "../../core/events.ts";
 * let now = 10_000, made = 0;
 * const agg = new TaskAggregator({ now: () => now, taskCount: () => made });
 * const task = { name: "embed", kind: "op", seq: ++made, submittedAt: now, startedAt: now, settledAt: now + 4,
 *   parent: undefined, attempt: 0 } as unknown as TaskInfo;
 * agg.record({ kind: "submitted", task, at: now });
 * agg.record({ kind: "started", task, at: now });
 * now += 4;
 * agg.record({ kind: "finished", task, at: now });
 * const embed = agg.snapshot().names[0];
 * if (embed.completed !== 1 || embed.inFlight !== 0) throw new Error("expected one completed call");
 * if (Math.abs(embed.window.p50 - 4) > 0.4) throw new Error(`p50 ${embed.window.p50}`);
 * ```
 */
export class TaskAggregator {
  /** Clock reading when it started: tasks submitted before are counted only when they settle. */
  readonly since: number;
  /** Seconds in the window. */
  readonly windowSeconds: number;
  private readonly now: () => number;
  private readonly maxNames: number;
  private readonly accept: ((task: TaskInfo) => boolean) | undefined;
  private readonly taskCount: () => number;
  /** The count of the tasks that count here (undefined: not known, nothing is estimated). */
  private readonly scopeCount: (() => number) | undefined;
  private readonly entries = new Map<string, Entry>();
  private lastRoot: TaskInfo | undefined;
  /** Stuck reports by task, in report order, until the task settles. */
  private readonly stuck = new Map<TaskInfo, { explanation: Explanation; text: string; at: number }>();
  private stuckReported = 0;
  /** Number of the last task recorded (any). */
  private lastSeq: number;
  /** `scopeCount` at the last task recorded that counts here, its entry and its second. */
  private lastInScope: number;
  private lastEntry: Entry | undefined;
  private lastSecond = -1;
  /** Per slot of the process: its second, tasks recorded, tasks left out. */
  private readonly gSecond: Float64Array;
  private readonly gRecorded: Float64Array;
  private readonly gLeftOut: Float64Array;

  /**
   * An aggregator of the tasks of the last `windowSeconds`.
   *
   * @param options The clock, the window, the most names kept apart, which tasks count.
   */
  constructor(options: TaskAggregatorOptions = {}) {
    const w = options.windowSeconds ?? 60;
    if (!(Number.isInteger(w) && w >= 1 && w <= 3600)) {
      throw new RangeError(`TaskAggregator windowSeconds must be an integer in [1, 3600], got ${String(w)}`);
    }
    const m = options.maxNames ?? DEFAULT_MAX_NAMES;
    if (!(Number.isInteger(m) && m >= 1)) {
      throw new RangeError(`TaskAggregator maxNames must be an integer ≥ 1, got ${String(m)}`);
    }
    this.now = options.now ?? (() => performance.now());
    this.windowSeconds = w;
    this.maxNames = m;
    this.accept = options.accept;
    this.taskCount = options.taskCount ?? submittedCount;
    this.scopeCount = options.accept === undefined ? this.taskCount : options.scopeCount;
    this.since = this.now();
    this.lastSeq = this.taskCount();
    this.lastInScope = this.scopeCount?.() ?? 0;
    this.gSecond = new Float64Array(w + 1).fill(-1);
    this.gRecorded = new Float64Array(w + 1);
    this.gLeftOut = new Float64Array(w + 1);
  }

  /** The entry of `task`'s name, made on first use. */
  private entry(task: TaskInfo): Entry {
    const name = task.name;
    let e = this.entries.get(name);
    if (e === undefined) {
      if (this.entries.size >= this.maxNames) {
        e = this.entries.get(OTHER);
        if (e === undefined) this.entries.set(OTHER, e = new Entry(OTHER, task.kind, this.windowSeconds + 1));
        return e;
      }
      this.entries.set(name, e = new Entry(name, task.kind, this.windowSeconds + 1));
    }
    return e;
  }

  /** The process-wide slot of `second`, emptied first when it held an older second. */
  private gSlot(second: number): number {
    const g = second % this.gSecond.length;
    if (this.gSecond[g] !== second) {
      this.gSecond[g] = second;
      this.gRecorded[g] = 0;
      this.gLeftOut[g] = 0;
    }
    return g;
  }

  /**
   * Takes one event (pass it to `onTaskEvent`). A task submitted before the aggregator started
   * counts when it settles, never as in flight.
   *
   * @param event The event.
   */
  record(event: TaskEvent): void {
    const t = event.task;
    const second = Math.floor(event.at / 1000);
    const accepted = this.accept === undefined || this.accept(t);
    if (event.kind === "submitted") {
      const g = this.gSlot(second);
      if (t.seq > this.lastSeq + 1) this.gLeftOut[g] += t.seq - this.lastSeq - 1;
      if (t.seq > this.lastSeq) this.lastSeq = t.seq;
      this.gRecorded[g]++;
      if (accepted && this.scopeCount !== undefined) {
        // the tasks that count here left out since the last one recorded: calls of that one's op
        const n = this.accept === undefined ? t.seq : this.scopeCount();
        const e = this.lastEntry;
        if (n > this.lastInScope + 1 && e !== undefined) {
          e.calls += n - this.lastInScope - 1;
          e.leftOutIn[e.slot(second)] += n - this.lastInScope - 1;
        }
        if (n > this.lastInScope) this.lastInScope = n;
        this.lastEntry = this.entry(t);
        this.lastSecond = second;
      }
    }
    if (!accepted) return;
    if (event.kind === "stuck") {
      // a report, not a step of the task's life: it counts nothing
      if (event.explanation === undefined || this.stuck.has(t)) return;
      this.stuckReported++;
      const x = event.explanation;
      this.stuck.set(t, { explanation: x, text: formatExplanation(x), at: event.at });
      if (this.stuck.size > MAX_STUCK) this.stuck.delete(this.stuck.keys().next().value!);
      return;
    }
    const e = this.entry(t);
    const seenFromStart = t.submittedAt >= this.since;
    switch (event.kind) {
      case "submitted":
        e.recordedCalls++;
        e.calls++;
        e.recordedIn[e.slot(second)]++;
        e.inFlight++;
        if (t.parent === undefined) this.lastRoot = t;
        return;
      case "started":
        if (seenFromStart && t.attempt === 0) e.running++;
        return;
      default: {
        if (this.stuck.size > 0) this.stuck.delete(t);
        const i = e.slot(second);
        e.settledIn[i]++;
        if (event.kind === "finished") e.completed++;
        else if (event.kind === "failed") {
          e.failed++;
          e.failedIn[i]++;
        } else e.cancelled++;
        if (seenFromStart) {
          e.inFlight--;
          if (t.startedAt > 0) e.running--;
        }
        if (t.startedAt > 0) {
          const d = t.settledAt - t.startedAt;
          let h = e.hist[i];
          if (h === undefined) e.hist[i] = h = new Uint32Array(BUCKETS);
          h[bucketOf(d)]++;
          if (d < e.min[i]) e.min[i] = d;
          if (d > e.max[i]) e.max[i] = d;
        }
      }
    }
  }

  /**
   * The figures now: per name (sorted by name), and the settled calls per second of all names.
   *
   * @returns A snapshot (plain data, safe to serialize except `lastRoot`).
   */
  snapshot(): AggregateSnapshot {
    const now = this.now();
    const w = this.windowSeconds;
    const current = Math.floor(now / 1000);
    const first = current - w + 1;
    // the tasks made since the last one recorded: left out so far, counted (for the figures below,
    // not kept: the next recorded task counts them for good) in the second of the last one recorded
    const pending = this.scopeCount === undefined ? 0 : Math.max(0, this.scopeCount() - this.lastInScope);
    const pendingEntry = this.lastEntry;
    const pendingSecond = this.lastSecond;
    let recorded = 0, leftOut = Math.max(0, this.taskCount() - this.lastSeq);
    for (let s = first; s <= current; s++) {
      const g = s % this.gSecond.length;
      if (this.gSecond[g] !== s) continue;
      recorded += this.gRecorded[g];
      leftOut += this.gLeftOut[g];
    }
    // the part of the window this aggregator has seen, for the rate (at least one second)
    const seenSeconds = Math.max(1, Math.min(w, (now - this.since) / 1000));
    const total = new Array<number>(w).fill(0);
    const names: NameStats[] = [];
    const merged = new Uint32Array(BUCKETS);
    for (const e of [...this.entries.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      const extra = e === pendingEntry ? pending : 0;
      const calls = e.calls + extra;
      // calls per recorded call: over the window, else since the start
      let inWindow = 0, outWindow = extra;
      for (let s = first; s <= current; s++) {
        const i = e.find(s);
        if (i < 0) continue;
        inWindow += e.recordedIn[i];
        outWindow += e.leftOutIn[i];
      }
      const allTime = e.recordedCalls > 0 ? calls / e.recordedCalls : 1;
      const scale = inWindow > 0 ? (inWindow + outWindow) / inWindow : allTime;
      merged.fill(0);
      const series = new Array<number>(w).fill(0);
      let settled = 0, failed = 0, timed = 0, min = Infinity, max = 0;
      for (let s = first; s <= current; s++) {
        const i = e.find(s);
        if (i < 0) continue;
        // calls per recorded call in this second (most calls settle in the second they were made),
        // else over the window
        const out = e.leftOutIn[i] + (s === pendingSecond ? extra : 0);
        const k = e.recordedIn[i] > 0 ? (e.recordedIn[i] + out) / e.recordedIn[i] : scale;
        const n = e.settledIn[i] * k;
        series[s - first] = n;
        total[s - first] += n;
        settled += n;
        failed += e.failedIn[i] * k;
        const h = e.hist[i];
        if (h === undefined) continue;
        for (let b = 0; b < BUCKETS; b++) {
          merged[b] += h[b];
          timed += h[b];
        }
        if (e.min[i] < min) min = e.min[i];
        if (e.max[i] > max) max = e.max[i];
      }
      const pct = (p: number): number => {
        if (timed === 0) return 0;
        const rank = Math.max(1, Math.ceil(p * timed));
        let acc = 0;
        for (let b = 0; b < BUCKETS; b++) {
          acc += merged[b];
          if (acc >= rank) return Math.min(max, Math.max(min, bucketMiddle(b)));
        }
        return max;
      };
      names.push({
        name: e.name,
        kind: e.kind,
        calls: Math.round(calls),
        completed: Math.round(e.completed * allTime),
        failed: Math.round(e.failed * allTime),
        cancelled: Math.round(e.cancelled * allTime),
        inFlight: Math.max(0, e.inFlight),
        running: Math.max(0, e.running),
        estimated: calls !== e.recordedCalls,
        window: {
          settled: Math.round(settled),
          failed: Math.round(failed),
          perSecond: settled / seenSeconds,
          p50: pct(0.5),
          p95: pct(0.95),
          max,
        },
        series: series.map(round1),
      });
    }
    const stuck: StuckTask[] = [];
    for (const [task, { explanation: x, text, at }] of this.stuck) {
      // a task left out of the recording settles unseen: its status says so
      const status = (task as { readonly status?: string }).status;
      if (status !== undefined && status !== "pending" && status !== "running") {
        this.stuck.delete(task);
        continue;
      }
      stuck.push({
        id: x.id,
        name: x.name,
        node: x.node,
        waitingFor: x.waitingFor,
        forMs: x.forMs,
        reportedAgoMs: Math.max(0, now - at),
        explanation: text,
      });
    }
    return {
      windowSeconds: w,
      elapsedMs: now - this.since,
      names,
      series: total.map(round1),
      recordedShare: recorded + leftOut > 0 ? recorded / (recorded + leftOut) : 1,
      lastRoot: this.lastRoot,
      stuck,
      stuckReported: this.stuckReported,
    };
  }
}
