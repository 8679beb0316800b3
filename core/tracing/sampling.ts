/**
 * Which root tasks are traced: a fixed share (`sampleRatio`), or what a time budget can pay for
 * (`maxOverhead`). The budget is earned at a share of the time that passes, topped up by a timer, and
 * spent at the estimated full cost of each traced task; spent, it shuts the sampling gate of the
 * event stream, so a new root costs what it costs untraced until the next top-up.
 *
 * @module
 */
import { setSamplingGate } from "../events.ts";
import { unrefTimer } from "../_runtime.ts";
import { tracingState } from "./state.ts";

/**
 * How often the budget is topped up while it is not full (ms). Between top-ups nothing reads the
 * clock: a root's check is one comparison.
 */
const BUDGET_TICK_MS = 5;
/**
 * Credit a quiet spell can save up, in ticks' worth of earnings: the first request after it is
 * traced whole, and a burst submitted at once gets about this much.
 */
const BUDGET_CAP_TICKS = 2;
/**
 * What tracing a task costs in all, against what its span's start and end cost when timed: the
 * context switches and events around its body, the SDK's later batching, encoding and sending, the
 * collection of all of it, and code that runs cold because traced tasks are rare. Calibrated with
 * `bench/tracing.ts` (sustained throughput, the SDK with its OTLP/protobuf exporter) on Bun and Deno;
 * the figures are in BENCHMARKS.md ("Tracing").
 */
const SPAN_COST_FACTOR = 20;

/**
 * @internal The root sampler of `maxOverhead`: trace while the budget, earned at `share` of the time
 * that passes and topped up by a timer, lasts. The check itself reads no clock and queues nothing.
 * The caller has stopped any earlier budget's timer.
 *
 * @param share The share of time tracing may cost, in (0, 1).
 * @returns The sampler to install with `setRootSampler`.
 *
 * @example A full budget traces the next root
 * ```ts
 * import { budgetSampler } from "./sampling.ts";
 * if (!budgetSampler(0.1)()) throw new Error("a full budget traces");
 * ```
 */
export function budgetSampler(share: number): () => boolean {
  tracingState.budgetShare = share;
  tracingState.budgetCap = share * BUDGET_TICK_MS * BUDGET_CAP_TICKS;
  tracingState.budgetCredit = tracingState.budgetCap;
  return budgeted;
}

function budgeted(): boolean {
  return tracingState.budgetCredit > 0;
}

/**
 * @internal Spends `ms` of the budget (a task traced under it), starting the top-ups if they had
 * stopped. Spent, it closes the sampling gate: until a top-up, new roots cost what they cost untraced.
 *
 * @param ms The estimated cost of the task, ms.
 *
 * @example
 * ```ts
 * import { budgetSampler, spend, stopBudgetTimer } from "./sampling.ts";
 * const sampler = budgetSampler(0.1);
 * spend(1_000);
 * const traced = sampler();
 * stopBudgetTimer();
 * if (traced) throw new Error("a spent budget traces nothing new");
 * ```
 */
export function spend(ms: number): void {
  tracingState.budgetCredit -= ms;
  if (tracingState.budgetCredit <= 0 && !tracingState.gateShut) {
    tracingState.gateShut = true;
    setSamplingGate(false);
  }
  if (tracingState.budgetTimer !== undefined) return;
  tracingState.budgetAt = performance.now();
  tracingState.budgetTimer = setInterval(topUp, BUDGET_TICK_MS);
  unrefTimer(tracingState.budgetTimer);
}

/**
 * @internal Earns what the time since the last top-up pays for, reopening the gate once there is
 * credit, and stops the timer once the budget is full (nothing to earn until something is spent).
 *
 * @example
 * ```ts
 * import { budgetSampler, topUp } from "./sampling.ts";
 * const sampler = budgetSampler(0.1);
 * topUp();
 * if (!sampler()) throw new Error("still full");
 * ```
 */
export function topUp(): void {
  const now = performance.now();
  tracingState.budgetCredit = Math.min(
    tracingState.budgetCap,
    tracingState.budgetCredit + (now - tracingState.budgetAt) * tracingState.budgetShare,
  );
  tracingState.budgetAt = now;
  if (tracingState.budgetCredit > 0 && tracingState.gateShut) {
    tracingState.gateShut = false;
    setSamplingGate(true);
  }
  if (tracingState.budgetCredit >= tracingState.budgetCap) stopBudgetTimer();
}

/**
 * @internal Opens the sampling gate and stops the top-ups.
 *
 * @example
 * ```ts
 * import { stopBudgetTimer } from "./sampling.ts";
 * import { tracingState } from "./state.ts";
 * stopBudgetTimer();
 * if (tracingState.budgetTimer !== undefined || tracingState.gateShut) throw new Error("stopped, open");
 * ```
 */
export function stopBudgetTimer(): void {
  tracingState.gateShut = false;
  setSamplingGate(true);
  if (tracingState.budgetTimer === undefined) return;
  clearInterval(tracingState.budgetTimer);
  tracingState.budgetTimer = undefined;
}

/**
 * @internal Folds one measured span cost (ms, start + end) into the estimate the budget spends.
 *
 * @param ms What the span's start and end took, ms.
 *
 * @example
 * ```ts
 * import { measured } from "./sampling.ts";
 * import { tracingState } from "./state.ts";
 * const before = tracingState.spanCostMs;
 * measured(1_000);
 * if (tracingState.spanCostMs > before * 4) throw new Error("one slow span moves the price a little");
 * tracingState.spanCostMs = before;
 * ```
 */
export function measured(ms: number): void {
  // one slow span (a cold start, a GC pause) moves the price by at most 4× its share
  const x = Math.min(Math.max(0.0005, ms * SPAN_COST_FACTOR), 4 * tracingState.spanCostMs);
  tracingState.spanCostMs = 0.8 * tracingState.spanCostMs + 0.2 * x;
}

/**
 * @internal A root sampler keeping exactly `ratio` of the roots, spread evenly (no randomness on the
 * hot path). For 1 it keeps every root, but is still a sampler: while one is installed, a task left
 * out (a call its driver sampled out, served here) leaves out what it submits too, instead of that
 * being traced as new roots.
 *
 * @param ratio The share of roots to trace, in (0, 1].
 * @returns The sampler.
 *
 * @example Every other root
 * ```ts
 * import { ratioSampler } from "./sampling.ts";
 * const sampler = ratioSampler(0.5);
 * const picks = [sampler(), sampler(), sampler(), sampler()];
 * if (picks.join() !== "true,false,true,false") throw new Error(picks.join());
 * if (!ratioSampler(1)()) throw new Error("1 keeps every root");
 * ```
 */
export function ratioSampler(ratio: number): () => boolean {
  if (ratio >= 1) return everyRoot;
  let credit = 1 - ratio; // the first root is traced
  return () => {
    credit += ratio;
    if (credit < 1) return false;
    credit -= 1;
    return true;
  };
}

function everyRoot(): boolean {
  return true;
}
