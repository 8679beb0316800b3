/**
 * What the dashboard shows per op and `Service.method`, aggregated from the task event stream in
 * O(1) per event: calls since it started listening, how they ended, calls in flight, and over the
 * last minute the completions per second and the latency p50/p95 (from a log-scale histogram per
 * second, so no event allocates and no per-task list grows).
 *
 * @module
 */
import type { TaskEvent, TaskInfo } from "../../core/events.ts";

/** Histogram buckets per doubling of the duration: a percentile is off by at most ±9 %. */
const BUCKETS_PER_OCTAVE = 4;
/** Bucket 0 holds durations up to 1 µs; the last one holds everything past 2^28 µs (about 4.5 min). */
const BUCKETS = 1 + 28 * BUCKETS_PER_OCTAVE;
/** Names kept apart; calls of names past this many are counted under {@link OTHER}. */
const DEFAULT_MAX_NAMES = 500;
/** Where the calls of names past `maxNames` are counted. */
export const OTHER = "(other)";

/** Options of {@linkcode TaskAggregator}. */
export interface TaskAggregatorOptions {
  /** The clock, in ms on the scale of the events' `at` (default `performance.now`). */
  now?: () => number;
  /** Seconds in the sliding window of throughput and percentiles (default 60). */
  windowSeconds?: number;
  /** Most op/method names kept apart (default 500); the calls of later names count as `"(other)"`. */
  maxNames?: number;
}

/** The figures of one op or `Service.method` in a {@linkcode AggregateSnapshot}. */
export interface NameStats {
  /** Op name or `Service.method`. */
  readonly name: string;
  /** `"op"` or `"method"`. */
  readonly kind: "op" | "method";
  /** Calls submitted since the aggregator started. */
  readonly calls: number;
  /** Calls that completed. */
  readonly completed: number;
  /** Calls that failed. */
  readonly failed: number;
  /** Calls that were cancelled. */
  readonly cancelled: number;
  /** Calls submitted and not settled yet (running or waiting). */
  readonly inFlight: number;
  /** Of those, the ones whose body runs. */
  readonly running: number;
  /** Over the window: calls settled, completions per second, latency percentiles (ms). */
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
  /** The root task (submitted outside any task) seen last, if any. */
  readonly lastRoot: TaskInfo | undefined;
}

/** One op/method's counters and its ring of per-second slots. */
class Entry {
  calls = 0;
  completed = 0;
  failed = 0;
  cancelled = 0;
  inFlight = 0;
  running = 0;
  /** Second (`floor(at / 1000)`) each slot holds; -1: empty. */
  readonly second: Float64Array;
  readonly settled: Uint32Array;
  readonly failedIn: Uint32Array;
  readonly min: Float64Array;
  readonly max: Float64Array;
  /** Histogram of each slot, allocated at its first duration and zeroed when the slot is reused. */
  readonly hist: (Uint32Array | undefined)[];

  constructor(readonly name: string, readonly kind: "op" | "method", slots: number) {
    this.second = new Float64Array(slots).fill(-1);
    this.settled = new Uint32Array(slots);
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
      this.settled[i] = 0;
      this.failedIn[i] = 0;
      this.min[i] = Infinity;
      this.max[i] = 0;
      this.hist[i]?.fill(0);
    }
    return i;
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

/**
 * Aggregates task events per op / `Service.method`. Feed it with `record` (from `onTaskEvent`);
 * read it with `snapshot`. Each event costs a map lookup and a few counter updates; only the first
 * event of a name in a new second clears that second's slot.
 *
 * @example Counting calls and their latency, with an injected clock
 * ```ts
 * import { TaskAggregator } from "./aggregate.ts";
 * import type { TaskInfo } from "../../core/events.ts";
 * let now = 10_000;
 * const agg = new TaskAggregator({ now: () => now });
 * const task = { name: "embed", kind: "op", submittedAt: now, startedAt: now, settledAt: now + 4, parent: undefined,
 *   attempt: 0 } as unknown as TaskInfo;
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
  private readonly entries = new Map<string, Entry>();
  private lastRoot: TaskInfo | undefined;

  /** @param options The clock, the window and the most names kept apart. */
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
    this.since = this.now();
  }

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

  /**
   * Takes one event (pass it to `onTaskEvent`). A task submitted before the aggregator started
   * counts when it settles, never as in flight.
   *
   * @param event The event.
   */
  record(event: TaskEvent): void {
    const t = event.task;
    const e = this.entry(t);
    const seenFromStart = t.submittedAt >= this.since;
    switch (event.kind) {
      case "submitted":
        e.calls++;
        e.inFlight++;
        if (t.parent === undefined) this.lastRoot = t;
        return;
      case "started":
        if (seenFromStart && t.attempt === 0) e.running++;
        return;
      default: {
        if (event.kind === "finished") e.completed++;
        else if (event.kind === "failed") e.failed++;
        else e.cancelled++;
        if (seenFromStart) {
          e.inFlight--;
          if (t.startedAt > 0) e.running--;
        }
        const i = e.slot(Math.floor(event.at / 1000));
        e.settled[i]++;
        if (event.kind === "failed") e.failedIn[i]++;
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
    // the part of the window this aggregator has seen, for the rate (at least one second)
    const seenSeconds = Math.max(1, Math.min(w, (now - this.since) / 1000));
    const total = new Array<number>(w).fill(0);
    const names: NameStats[] = [];
    const merged = new Uint32Array(BUCKETS);
    for (const e of [...this.entries.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      merged.fill(0);
      const series = new Array<number>(w).fill(0);
      let settled = 0, failed = 0, timed = 0, min = Infinity, max = 0;
      for (let s = first; s <= current; s++) {
        const i = s % e.second.length;
        if (e.second[i] !== s) continue;
        series[s - first] = e.settled[i];
        total[s - first] += e.settled[i];
        settled += e.settled[i];
        failed += e.failedIn[i];
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
        calls: e.calls,
        completed: e.completed,
        failed: e.failed,
        cancelled: e.cancelled,
        inFlight: Math.max(0, e.inFlight),
        running: Math.max(0, e.running),
        window: { settled, failed, perSecond: settled / seenSeconds, p50: pct(0.5), p95: pct(0.95), max },
        series,
      });
    }
    return { windowSeconds: w, elapsedMs: now - this.since, names, series: total, lastRoot: this.lastRoot };
  }
}
