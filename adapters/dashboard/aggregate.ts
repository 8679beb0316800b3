/**
 * What the dashboard shows per op and `Service.method`, aggregated from the task event stream in
 * O(1) per event: calls, how they ended, calls in flight, and over the last minute the calls per
 * second and the latency p50/p95 (from a log-scale histogram per second, so no event allocates and
 * no per-task list grows).
 *
 * Not every task has to be recorded: when only a share of them is (a recording budget, or tracing's
 * sampling), the share is known per second from the process's task counter, and counts and rates
 * are estimated from the recorded ones (exact whenever every task was recorded). Calls in flight
 * and the percentiles are those of the recorded tasks.
 *
 * @module
 */
import type { TaskEvent, TaskInfo } from "../../core/events.ts";
import { submittedCount } from "../../core/task.ts";

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
  /**
   * Which recorded tasks count (default all). Every recorded task still counts toward the share of
   * tasks recorded; a mesh's dashboard counts only the tasks submitted in that mesh.
   */
  accept?: (task: TaskInfo) => boolean;
  /** Tasks made by this process so far, recorded or not (default the core's counter). */
  taskCount?: () => number;
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
}

/**
 * Calls that settled in each slot: those submitted in the same second, counted as recorded (the
 * second's share of recorded tasks is final only once it ends), and those submitted earlier, counted
 * already weighted by the share of the second they were submitted in.
 */
class Settled {
  readonly same: Uint32Array;
  readonly earlier: Float64Array;
  constructor(slots: number) {
    this.same = new Uint32Array(slots);
    this.earlier = new Float64Array(slots);
  }
  clear(i: number): void {
    this.same[i] = 0;
    this.earlier[i] = 0;
  }
  /** The estimate of slot `i`, given its second's share of recorded tasks. */
  estimate(i: number, share: number): number {
    return this.same[i] / share + this.earlier[i];
  }
}

/** One op/method's counters and its ring of per-second slots. */
class Entry {
  /** Estimates of the seconds already closed. */
  calls = 0;
  completed = 0;
  failed = 0;
  cancelled = 0;
  inFlight = 0;
  running = 0;
  estimated = false;
  /** Second (`floor(at / 1000)`) each slot holds; -1: empty. */
  readonly second: Float64Array;
  /** Recorded per slot: submitted; settled, by how. */
  readonly submittedIn: Uint32Array;
  readonly completedIn: Settled;
  readonly failedIn: Settled;
  readonly cancelledIn: Settled;
  readonly min: Float64Array;
  readonly max: Float64Array;
  /** Histogram of each slot, allocated at its first duration and zeroed when the slot is reused. */
  readonly hist: (Uint32Array | undefined)[];

  constructor(readonly name: string, readonly kind: "op" | "method", slots: number) {
    this.second = new Float64Array(slots).fill(-1);
    this.submittedIn = new Uint32Array(slots);
    this.completedIn = new Settled(slots);
    this.failedIn = new Settled(slots);
    this.cancelledIn = new Settled(slots);
    this.min = new Float64Array(slots);
    this.max = new Float64Array(slots);
    this.hist = new Array(slots).fill(undefined);
  }

  /** The slot of `second`, emptied first when it held an older second. */
  slot(second: number): number {
    const i = second % this.second.length;
    if (this.second[i] !== second) {
      this.second[i] = second;
      this.submittedIn[i] = 0;
      this.completedIn.clear(i);
      this.failedIn.clear(i);
      this.cancelledIn.clear(i);
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
 * read it with `snapshot`; call `tick` now and then (a second that passes with no event is closed
 * then). Each event costs a map lookup and a few counter updates; only the first event of a name
 * in a new second clears that second's slot.
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
  private readonly entries = new Map<string, Entry>();
  private lastRoot: TaskInfo | undefined;
  /** The second being filled, and the task counter when it began. */
  private current: number;
  private countAtStart: number;
  /** Per slot of the process: its second, tasks recorded, tasks made. */
  private readonly gSecond: Float64Array;
  private readonly gRecorded: Float64Array;
  private readonly gMade: Float64Array;

  /** @param options The clock, the window, the most names kept apart, which tasks count. */
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
    this.since = this.now();
    this.gSecond = new Float64Array(w + 1).fill(-1);
    this.gRecorded = new Float64Array(w + 1);
    this.gMade = new Float64Array(w + 1);
    this.current = Math.floor(this.since / 1000);
    this.countAtStart = this.taskCount();
    this.gSecond[this.current % (w + 1)] = this.current;
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

  /** Share of the tasks made in the slot `g` that were recorded (1 when none was made or recorded). */
  private shareOf(g: number, made: number): number {
    // none recorded: nothing to scale up (and no division by zero)
    return made > 0 && this.gRecorded[g] > 0 ? Math.min(1, this.gRecorded[g] / made) : 1;
  }

  /**
   * Closes the second being filled when `second` is past it: its share, and each name's estimates.
   * `count` is the task counter at the end of the closed second (default: now).
   */
  private roll(second: number, count?: number): void {
    if (second <= this.current) return;
    const slots = this.gSecond.length;
    const g = this.current % slots;
    const made = Math.max(0, (count ?? this.taskCount()) - this.countAtStart);
    this.gMade[g] = made;
    const share = this.shareOf(g, made);
    for (const e of this.entries.values()) {
      const i = e.find(this.current);
      if (i < 0) continue;
      e.calls += e.submittedIn[i] / share;
      e.completed += e.completedIn.estimate(i, share);
      e.failed += e.failedIn.estimate(i, share);
      e.cancelled += e.cancelledIn.estimate(i, share);
      if (share < 1 && e.submittedIn[i] + e.completedIn.same[i] + e.failedIn.same[i] + e.cancelledIn.same[i] > 0) {
        e.estimated = true;
      }
    }
    this.current = second;
    this.countAtStart += made;
    const n = second % slots;
    this.gSecond[n] = second;
    this.gRecorded[n] = 0;
    this.gMade[n] = 0;
  }

  /** Closes the seconds that passed with no event (call it now and then, e.g. every 100 ms). */
  tick(): void {
    this.roll(Math.floor(this.now() / 1000));
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
    // a task is counted when it is made, just before it is recorded: it belongs to the new second
    if (second > this.current) this.roll(second, event.kind === "submitted" ? t.seq - 1 : undefined);
    const s = second < this.current ? this.current : second;
    if (event.kind === "submitted") this.gRecorded[s % this.gSecond.length]++;
    if (this.accept !== undefined && !this.accept(t)) return;
    const e = this.entry(t);
    const seenFromStart = t.submittedAt >= this.since;
    switch (event.kind) {
      case "submitted":
        e.submittedIn[e.slot(s)]++;
        e.inFlight++;
        if (t.parent === undefined) this.lastRoot = t;
        return;
      case "started":
        if (seenFromStart && t.attempt === 0) e.running++;
        return;
      default: {
        const i = e.slot(s);
        const into = event.kind === "finished" ? e.completedIn : event.kind === "failed" ? e.failedIn : e.cancelledIn;
        const from = Math.floor(t.submittedAt / 1000);
        if (from >= s) into.same[i]++;
        else {
          // submitted in a second already closed: weighted by that second's share, when known
          const g = from % this.gSecond.length;
          const share = this.gSecond[g] === from ? this.shareOf(g, this.gMade[g]) : 1;
          const w = share > 0 ? 1 / share : 1;
          into.earlier[i] += w;
          if (w !== 1) e.estimated = true;
        }
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
    this.roll(Math.floor(now / 1000));
    const w = this.windowSeconds;
    const slots = this.gSecond.length;
    const current = this.current;
    const first = current - w + 1;
    // the share recorded in each second of the window (the current one: so far)
    const shares = new Array<number>(w).fill(1);
    let recorded = 0, made = 0;
    for (let s = first; s <= current; s++) {
      const g = s % slots;
      if (this.gSecond[g] !== s) continue;
      const m = s === current ? this.taskCount() - this.countAtStart : this.gMade[g];
      shares[s - first] = this.shareOf(g, m);
      recorded += Math.min(this.gRecorded[g], m);
      made += m;
    }
    const shareNow = shares[w - 1];
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
        const i = e.find(s);
        if (i < 0) continue;
        const share = shares[s - first];
        const n = e.completedIn.estimate(i, share) + e.failedIn.estimate(i, share) +
          e.cancelledIn.estimate(i, share);
        series[s - first] = n;
        total[s - first] += n;
        settled += n;
        failed += e.failedIn.estimate(i, share);
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
      const i = e.find(current);
      const part = (c: Settled) => (i < 0 ? 0 : c.estimate(i, shareNow));
      const estimated = e.estimated || (shareNow < 1 && i >= 0);
      names.push({
        name: e.name,
        kind: e.kind,
        calls: Math.round(e.calls + (i < 0 ? 0 : e.submittedIn[i] / shareNow)),
        completed: Math.round(e.completed + part(e.completedIn)),
        failed: Math.round(e.failed + part(e.failedIn)),
        cancelled: Math.round(e.cancelled + part(e.cancelledIn)),
        inFlight: Math.max(0, e.inFlight),
        running: Math.max(0, e.running),
        estimated,
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
    return {
      windowSeconds: w,
      elapsedMs: now - this.since,
      names,
      series: total.map(round1),
      recordedShare: made > 0 ? Math.min(1, recorded / made) : 1,
      lastRoot: this.lastRoot,
    };
  }
}
