/**
 * The one piece of mutable state of tracing: what is wanted, what is live, the sampling budget and
 * the counts behind `tracingStats()`. Every other file of `core/tracing/` reads and writes it here;
 * none keeps state of its own beyond caches.
 *
 * @module
 */
import type { Context, Tracer, TracerProvider } from "@opentelemetry/api";

/**
 * @internal Instrumentation scope name of thinkagain's spans.
 *
 * @example
 * ```ts
 * import { TRACER_NAME } from "./state.ts";
 * if (TRACER_NAME !== "thinkagain") throw new Error(TRACER_NAME);
 * ```
 */
export const TRACER_NAME: string = "thinkagain";

/** @internal What tracing holds between calls (one object, so where each fact lives is one place). */
export interface TracingState {
  // ---- lifecycle (lifecycle.ts) ----
  /** Set while live: spans are being made. */
  tracer: Tracer | undefined;
  /** Unsubscribes the live listener; set exactly while live. */
  off: (() => void) | undefined;
  /** `enableTracing()` was called (and `disableTracing()` not since). */
  wanted: boolean;
  /** The provider `enableTracing()` was given, if any. */
  wantedProvider: TracerProvider | undefined;
  /** The `sampleRatio` wanted. */
  wantedRatio: number;
  /** The `maxOverhead` wanted, if any. */
  wantedOverhead: number | undefined;
  /** Whether a registered provider turns tracing on by itself. */
  autoDetect: boolean;
  /**
   * Whether detection was armed: by the first `op()` or `service()` (every task comes from one, so
   * the probe is in place before the first `.go()`), or by an explicit choice (`enableTracing`,
   * `disableTracing`, `setTracingAutoDetect`), after which defining an op arms nothing.
   */
  armed: boolean;
  /** Submissions counted by the probe (it looks every 1024th). */
  probeCount: number;
  /** Whether the probe also follows the global provider (none was given to `enableTracing()`). */
  following: boolean;
  /** Whether `context.with()` changes `context.active()` (a context manager is registered). */
  contextCarries: boolean;
  // ---- sampling budget (sampling.ts) ----
  /** Measured cost of tracing one task, ms (start and end of its span, sampled; times the cost factor). */
  spanCostMs: number;
  /** What the budget holds now, ms (negative: in debt). */
  budgetCredit: number;
  /** The most the budget saves up, ms. */
  budgetCap: number;
  /** The share of passing time the budget earns (`maxOverhead`). */
  budgetShare: number;
  /** `performance.now()` of the last top-up. */
  budgetAt: number;
  /** Tops the budget up while it is not full (unref'd: it never keeps a process alive). */
  budgetTimer: ReturnType<typeof setInterval> | undefined;
  /** Whether the spent budget has shut the sampling gate. */
  gateShut: boolean;
  /** Submissions counted while the gate is shut. */
  shutCount: number;
  /** Traced tasks counted to pick the ones whose span cost is timed. */
  measureTick: number;
  // ---- across a transport (propagation.ts) ----
  /**
   * While a node submits a call it serves: that call's context (its SERVER span's, or one whose
   * span context says it is not sampled), kept by a call that is held back and submitted later.
   */
  serving: Context | undefined;
  // ---- counts (stats.ts) ----
  /** Spans made since tracing was last enabled. */
  spansMade: number;
  /** Tasks recorded (so traced) since tracing was last enabled. */
  recordedCount: number;
  /** The process's task count when tracing was last enabled. */
  submittedAtEnable: number;
  /** The sequence number of the last traced root. */
  lastRootSeq: number;
  /** Tasks recorded since the last traced root's submission. */
  recordedSinceRoot: number;
  /** The task count when tracing was turned off (the count stops there), else undefined. */
  submittedFrozen: number | undefined;
  // ---- spans the SDK lost (dropped.ts) ----
  /** Spans the SDK's processor dropped, its queue full, since tracing was last enabled. */
  droppedSpans: number;
  /** Spans the SDK's exporter failed to send since tracing was last enabled. */
  failedSpans: number;
  /** Whether the first drop was warned about (once per process). */
  dropWarned: boolean;
  /** Whether the first failed export was warned about (once per process). */
  failWarned: boolean;
}

/**
 * @internal The state of tracing in this process. Every field is set here, so the object keeps one
 * shape and the per-task reads stay monomorphic.
 *
 * @example
 * ```ts
 * import { tracingState } from "./state.ts";
 * if (typeof tracingState.autoDetect !== "boolean") throw new Error("a flag");
 * ```
 */
export const tracingState: TracingState = {
  tracer: undefined,
  off: undefined,
  wanted: false,
  wantedProvider: undefined,
  wantedRatio: 1,
  wantedOverhead: undefined,
  autoDetect: true,
  armed: false,
  probeCount: 0,
  following: false,
  contextCarries: false,
  spanCostMs: 0.03,
  budgetCredit: 0,
  budgetCap: 0,
  budgetShare: 0,
  budgetAt: 0,
  budgetTimer: undefined,
  gateShut: false,
  shutCount: 0,
  measureTick: 0,
  serving: undefined,
  spansMade: 0,
  recordedCount: 0,
  submittedAtEnable: 0,
  lastRootSeq: 0,
  recordedSinceRoot: 0,
  submittedFrozen: undefined,
  droppedSpans: 0,
  failedSpans: 0,
  dropWarned: false,
  failWarned: false,
};
