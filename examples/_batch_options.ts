// The OpenTelemetry SDK settings that examples/tracing.ts and the README use (a module of its own,
// so a test reads them without loading the example's services).

/**
 * The `BatchSpanProcessor`'s settings, as in the README. The SDK's defaults queue 2,048 ended spans
 * and send every 5 s: a fan-out of 10k tasks ends 10k spans within milliseconds, the queue
 * overflows and the processor drops the rest without a word. 65,536 holds several such bursts while
 * the exporter catches up (each queued span is a few hundred bytes to a few KB until it is sent);
 * batches of 2,048, sent at least every 500 ms, keep the queue short between bursts.
 *
 * @example
 * ```ts
 * import { BATCH_OPTIONS } from "./_batch_options.ts";
 * if (BATCH_OPTIONS.maxQueueSize < 50_000) throw new Error("five 10k fan-outs must fit");
 * ```
 */
export const BATCH_OPTIONS: { maxQueueSize: number; maxExportBatchSize: number; scheduledDelayMillis: number } = {
  maxQueueSize: 65_536,
  maxExportBatchSize: 2_048,
  scheduledDelayMillis: 500,
};
