/**
 * Spans the OpenTelemetry SDK lost, told to the user. The SDK's `BatchSpanProcessor` drops every span
 * that ends while its queue is full (2,048 by default: a fan-out of 10k tasks fills it in
 * milliseconds), and says so only through its self-observability metrics, when it is given a meter
 * provider (`selfObsMeterProvider`). {@link watchDroppedSpans} gives it one that counts what it
 * dropped (`queue_full`) and what failed to export, into `tracingStats()`, and warns once on the
 * console when the first span is lost, with the fix.
 *
 * @module
 */
import type { Attributes, Counter, Meter, MeterProvider } from "@opentelemetry/api";
import { createNoopMeter } from "@opentelemetry/api";
import { tracingState } from "./state.ts";

/** The SDK's counter of spans a processor finished with, dropped ones included (`error.type`). */
const PROCESSED = "otel.sdk.processor.span.processed";

function lost(count: number, attributes: Attributes | undefined): void {
  const why = attributes?.["error.type"];
  if (why === undefined || !(count > 0)) return;
  if (why === "queue_full") {
    tracingState.droppedSpans += count;
    if (!tracingState.dropWarned) {
      tracingState.dropWarned = true;
      console.warn(
        "thinkagain: the OpenTelemetry span processor dropped spans: its queue (maxQueueSize) was full. " +
          "Raise maxQueueSize above the spans a burst ends (one per task) or lower scheduledDelayMillis; " +
          "ta.tracingStats().droppedSpans counts them.",
      );
    }
  } else {
    tracingState.failedSpans += count;
    if (!tracingState.failWarned) {
      tracingState.failWarned = true;
      console.warn(
        `thinkagain: the OpenTelemetry exporter failed to send spans (${String(why)}); ` +
          "ta.tracingStats().failedSpans counts them.",
      );
    }
  }
}

/** A meter whose every instrument does nothing, except the processed-spans counter, which counts losses. */
function watchingMeter(): Meter {
  const meter = createNoopMeter();
  const createCounter = meter.createCounter.bind(meter);
  return new Proxy(meter, {
    get(target, key, receiver) {
      if (key !== "createCounter") return Reflect.get(target, key, receiver);
      return (name: string, options?: object): Counter => {
        const counter = createCounter(name, options);
        if (name !== PROCESSED) return counter;
        return { add: (value: number, attributes?: Attributes) => lost(value, attributes) };
      };
    },
  });
}

const provider: MeterProvider = { getMeter: () => watchingMeter() };

/**
 * Adds to a `BatchSpanProcessor`'s options the SDK's self-observability meter provider
 * (`selfObsMeterProvider`), through which it tells thinkagain each span it drops (its queue was
 * full) or fails to export: `tracingStats()` counts them (`droppedSpans`, `failedSpans`) and the first
 * of each is warned about once on the console. Nothing else is recorded; the options are returned
 * with the one key added.
 *
 * @param options The processor's options (`maxQueueSize`, `scheduledDelayMillis`, …; at least one,
 * so the result still type-checks as the SDK's options).
 * @returns The same options, with `selfObsMeterProvider` set.
 *
 * @example A queue too small for a burst: the drops are counted
 * ```ts
 * import * as ta from "../../mod.ts";
 * import { BasicTracerProvider, BatchSpanProcessor, InMemorySpanExporter } from "@opentelemetry/sdk-trace-base";
 * const warn = console.warn;
 * console.warn = () => {}; // the one warning, expected here
 * const exporter = new InMemorySpanExporter();
 * const processor = new BatchSpanProcessor(exporter, ta.watchDroppedSpans({ maxQueueSize: 10 }));
 * ta.enableTracing({ tracerProvider: new BasicTracerProvider({ spanProcessors: [processor] }) });
 * const tiny = ta.op(async function droppedDocTiny(x: number) { return x; });
 * await ta.all(Array.from({ length: 50 }, (_, i) => tiny.go(i)));
 * const { droppedSpans } = ta.tracingStats();
 * ta.disableTracing();
 * console.warn = warn;
 * await processor.forceFlush();
 * // every span was either exported or counted as dropped
 * const exported = exporter.getFinishedSpans().length;
 * await processor.shutdown();
 * if (droppedSpans === 0 || exported + droppedSpans !== 50) throw new Error(`${exported} + ${droppedSpans}`);
 * ```
 */
export function watchDroppedSpans<T extends object>(options: T): T & { selfObsMeterProvider: MeterProvider } {
  return { ...options, selfObsMeterProvider: provider };
}
