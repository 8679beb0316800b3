/**
 * What keeps an open dashboard cheap: recording a task for the event stream costs the core more
 * than a no-op task itself (a context and clock readings per task), so a dashboard records new root
 * tasks only while a time budget lasts. The budget is earned at `maxOverhead` of the time that
 * passes (saving up at most 5 ms' worth) and spent at an estimate of what recording one task
 * costs; spent, it shuts the event stream's sampling gate, and a new root task costs what it costs
 * with nobody listening until a timer reopens the gate 5 ms later. Nothing ticks while the gate is
 * open. A pipeline of tens of tasks is recorded whole; a flood of tiny tasks in part, and the
 * aggregator estimates its counts from the share recorded. While tracing is on, the gate is
 * tracing's: the budget leaves it alone.
 *
 * @module
 */
import { setSamplingGate } from "../../core/events.ts";
import { isTracingEnabled } from "../../core/tracing/lifecycle.ts";
import { unrefTimer } from "../../core/_runtime.ts";

/**
 * Credit saved up at most, in ms of time passing: a burst after a quiet spell gets this much, and
 * no more, so bursts of tiny tasks after every pause are not recorded at a cost past the share.
 */
const CAP_MS = 5;
/** How long a shut gate stays shut before the budget is topped up and looked at again, ms. */
const REOPEN_MS = 5;

/**
 * What recording one task costs the core, in ms, by runtime: about 2.5 times what `bench/dashboard.ts`
 * measures per task (the fanout with every task recorded against nobody listening; BENCHMARKS.md,
 * Dashboard, earlier runs), as a busy machine pays more.
 */
function defaultCostMs(): number {
  return typeof (globalThis as { Bun?: unknown }).Bun === "object" ? 0.001 : 0.004;
}

/** Options of {@linkcode RecordingBudget}. */
export interface RecordingBudgetOptions {
  /** Share of the time recording may cost, in (0, 1) (default 0.02). */
  maxOverhead?: number;
  /** Estimated cost of recording one task, in ms (default: measured per runtime). */
  costPerTaskMs?: number;
  /** The clock, in ms (default `performance.now`). */
  now?: () => number;
  /** Opens or shuts the event stream's sampling gate (default: the core's). */
  setGate?: (open: boolean) => void;
  /** Whether the gate is the budget's to use (default: while tracing is off). */
  mayUseGate?: () => boolean;
  /** Runs `fn` after `ms` (default: an unref'd `setTimeout`); returns a cancel function. */
  schedule?: (fn: () => void, ms: number) => () => void;
}

function scheduleTimer(fn: () => void, ms: number): () => void {
  const t = setTimeout(fn, ms);
  unrefTimer(t);
  return () => clearTimeout(t);
}

/**
 * A recording budget: `spend()` for every task recorded, `release()` when done (reopens the gate if
 * it shut it).
 *
 * @example A flood shuts the gate, time reopens it
 * ```ts
 * import { RecordingBudget } from "./budget.ts";
 * let now = 0, open = true;
 * const budget = new RecordingBudget({ maxOverhead: 0.05, costPerTaskMs: 0.01, now: () => now,
 *   setGate: (o) => (open = o), mayUseGate: () => true, schedule: () => () => {} });
 * for (let i = 0; i < 10_000 && open; i++) budget.spend();
 * if (open) throw new Error("a flood spends the budget");
 * now += 10;
 * budget.topUp(); // what its timer does
 * if (!open) throw new Error("time earns it back");
 * budget.release();
 * ```
 */
export class RecordingBudget {
  /** Share of the time recording may cost. */
  readonly maxOverhead: number;
  /** Estimated cost of recording one task, ms. */
  readonly costPerTaskMs: number;
  private readonly now: () => number;
  private readonly setGate: (open: boolean) => void;
  private readonly mayUseGate: () => boolean;
  private readonly schedule: (fn: () => void, ms: number) => () => void;
  private readonly cap: number;
  private credit: number;
  private last: number;
  private shut = false;
  private cancelTimer: (() => void) | undefined;
  /** Times the budget shut the gate. */
  shutCount = 0;

  /**
   * A budget that keeps recording within `maxOverhead` of the time.
   *
   * @param options The share of time, the cost per task, and (for tests) the clock, gate and timer.
   */
  constructor(options: RecordingBudgetOptions = {}) {
    const share = options.maxOverhead ?? 0.02;
    if (!(typeof share === "number" && share > 0 && share < 1)) {
      throw new RangeError(`maxOverhead must be a number in (0, 1), got ${String(options.maxOverhead)}`);
    }
    const cost = options.costPerTaskMs ?? defaultCostMs();
    if (!(typeof cost === "number" && cost > 0 && Number.isFinite(cost))) {
      throw new RangeError(`costPerTaskMs must be a positive number, got ${String(options.costPerTaskMs)}`);
    }
    this.maxOverhead = share;
    this.costPerTaskMs = cost;
    this.now = options.now ?? (() => performance.now());
    this.setGate = options.setGate ?? setSamplingGate;
    this.mayUseGate = options.mayUseGate ?? (() => !isTracingEnabled());
    this.schedule = options.schedule ?? scheduleTimer;
    this.cap = share * CAP_MS;
    this.credit = this.cap;
    this.last = this.now();
  }

  /** True while the budget keeps the gate shut. */
  get gateShut(): boolean {
    return this.shut;
  }

  /** One task was recorded: its cost is spent; spent out, the budget shuts the gate. */
  spend(): void {
    this.credit -= this.costPerTaskMs;
    if (this.credit > 0) return;
    this.topUp(); // what the time since the last look earned
    if (this.credit > 0 || this.shut || !this.mayUseGate()) return;
    this.shut = true;
    this.shutCount++;
    this.setGate(false);
    this.armTimer();
  }

  /** Tops the credit up after `REOPEN_MS`, and again after each while the gate stays shut. */
  private armTimer(): void {
    this.cancelTimer = this.schedule(() => {
      this.cancelTimer = undefined;
      this.topUp();
      if (this.shut) this.armTimer();
    }, REOPEN_MS);
  }

  /** Earns what the time since the last top-up is worth; reopens the gate once there is credit. */
  topUp(): void {
    const t = this.now();
    this.credit = Math.min(this.cap, this.credit + this.maxOverhead * (t - this.last));
    this.last = t;
    // tracing turned on meanwhile: the gate is its own now
    if (this.shut && (this.credit > 0 || !this.mayUseGate())) {
      this.shut = false;
      this.cancelTimer?.();
      this.cancelTimer = undefined;
      this.setGate(true);
    }
  }

  /** Reopens the gate if this budget shut it, and stops its timer. */
  release(): void {
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    if (!this.shut) return;
    this.shut = false;
    this.setGate(true);
  }
}
