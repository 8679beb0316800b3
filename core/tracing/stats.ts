/**
 * What tracing has done: spans made and tasks left untraced, worked out from the process's task count
 * so that nothing is counted per untraced task.
 *
 * @module
 */
import { submittedCount } from "../task.ts";
import { tracingState } from "./state.ts";

/** What tracing has done, from {@link tracingStats}. */
export interface TracingStats {
  /** Spans made (one per traced task). */
  readonly spans: number;
  /**
   * Tasks submitted that were not traced: `sampleRatio` or `maxOverhead` left their root out, and
   * with it everything it submitted (or tracing was idle, with no provider to take spans). A traced
   * root's span carries how many came just before it as `thinkagain.untraced_before`.
   */
  readonly untracedTasks: number;
  /**
   * Spans the OpenTelemetry SDK's `BatchSpanProcessor` dropped because its queue was full. Counted
   * only when its options went through `ta.watchDroppedSpans()` (the SDK tells no one otherwise).
   */
  readonly droppedSpans: number;
  /** Spans the SDK's exporter failed to send (counted as `droppedSpans` is). */
  readonly failedSpans: number;
}

/**
 * Counts of what tracing did since `enableTracing()` was last called (or since the process
 * started): spans made, and tasks left untraced. Without sampling every task is a span and
 * `untracedTasks` stays 0. Costs nothing per task: it is worked out from the process's task count.
 *
 * @returns The counts.
 *
 * @example Under sampling, what was left out is counted
 * ```ts
 * import * as ta from "../mod.ts";
 * import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
 * const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(new InMemorySpanExporter())] });
 * ta.enableTracing({ tracerProvider, sampleRatio: 0.5 });
 * const tiny = ta.op(async function tiny(x: number) { return x; });
 * await ta.all([1, 2, 3, 4].map((i) => tiny.go(i)));
 * const { spans, untracedTasks } = ta.tracingStats();
 * ta.disableTracing();
 * if (spans !== 2 || untracedTasks !== 2) throw new Error(`${spans} traced, ${untracedTasks} not`);
 * ```
 */
export function tracingStats(): TracingStats {
  const submitted = (tracingState.submittedFrozen ?? submittedCount()) - tracingState.submittedAtEnable;
  return {
    spans: tracingState.spansMade,
    untracedTasks: Math.max(0, submitted - tracingState.recordedCount),
    droppedSpans: tracingState.droppedSpans,
    failedSpans: tracingState.failedSpans,
  };
}

/**
 * @internal Starts the counts afresh (tracing is being enabled).
 *
 * @example
 * ```ts
 * import { resetStats, tracingStats } from "./stats.ts";
 * resetStats();
 * const { spans, untracedTasks } = tracingStats();
 * if (spans !== 0 || untracedTasks !== 0) throw new Error("fresh counts");
 * ```
 */
export function resetStats(): void {
  tracingState.spansMade = tracingState.recordedCount = tracingState.recordedSinceRoot = 0;
  tracingState.droppedSpans = tracingState.failedSpans = 0;
  tracingState.lastRootSeq = tracingState.submittedAtEnable = submittedCount();
  tracingState.submittedFrozen = undefined;
}

/**
 * @internal Stops the task count where it is (tracing is being turned off); a later freeze keeps the
 * first.
 *
 * @example
 * ```ts
 * import { freezeStats, resetStats, tracingStats } from "./stats.ts";
 * import { op } from "../op.ts";
 * resetStats();
 * freezeStats();
 * await op(async function noop() {}).go();
 * if (tracingStats().untracedTasks !== 0) throw new Error("not counted once frozen");
 * ```
 */
export function freezeStats(): void {
  tracingState.submittedFrozen ??= submittedCount();
}
