/**
 * Spans from task events. A task's span starts at submission and ends when the task settles; it is
 * made at the task's first start, when its inputs (links) and queue wait are known. The event
 * `"started"` marks when the body began (also the attribute `thinkagain.queue_wait_ms`), so queue
 * wait and execution are told apart without a second span per task. A retry adds another `"started"`
 * event with its `thinkagain.attempt`. Failure sets status ERROR and records the exception;
 * cancellation sets status ERROR with the description `cancelled`; `thinkagain.status`
 * (`failed`/`cancelled`, absent on success) says which.
 *
 * A task's `_trace` slot holds the caller's context from submission to the span's start, then the
 * span, and once the task settled only the span's context (dependents link to it).
 *
 * @module
 */
import {
  type Attributes,
  type Context,
  context,
  type Link,
  type Span,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import { sampling, type TaskEvent, type TaskInfo } from "../events.ts";
import { registeredContextManager } from "./provider.ts";
import { measured, spend } from "./sampling.ts";
import { TRACER_NAME, tracingState } from "./state.ts";

// performance.now() -> epoch ms, the form every OpenTelemetry SDK accepts as a TimeInput
const origin: number = performance.timeOrigin;

/** What the `_trace` slot of a task holds: before the span exists, the caller's context. */
interface Slot {
  _trace: unknown;
}

/** What each traced root's span carries, from its submission to its span's start. */
const untracedBefore = new WeakMap<object, number>();
/** Start costs of the tasks being timed (one in 16 while a budget is in use). */
const startCosts = new WeakMap<object, number>();

function isSpan(x: unknown): x is Span {
  return typeof x === "object" && x !== null && typeof (x as Span).spanContext === "function";
}

/**
 * @internal The span context in a task's `_trace` slot: of its span, or the context kept once it
 * settled; `undefined` before its span exists.
 *
 * @param x What the slot holds.
 * @returns The span context, if any.
 *
 * @example
 * ```ts
 * import { spanContextOf } from "./spans.ts";
 * const sc = { traceId: "0af7651916cd43dd8448eb211c80319c", spanId: "b7ad6b7169203331", traceFlags: 1 };
 * if (spanContextOf(sc) !== sc || spanContextOf(undefined) !== undefined) throw new Error("unexpected");
 * ```
 */
export function spanContextOf(x: unknown): SpanContext | undefined {
  if (isSpan(x)) return x.spanContext();
  if (typeof x === "object" && x !== null && typeof (x as SpanContext).traceId === "string") return x as SpanContext;
  return undefined;
}

/** Per op / `Service.method` name: the span name and the constant attributes, computed once. */
interface NameInfo {
  readonly span: string;
  readonly op: string | undefined;
  readonly service: string | undefined;
  readonly method: string | undefined;
}
const opNames = new Map<string, NameInfo>();
const methodNames = new Map<string, NameInfo>();

function nameInfo(task: TaskInfo): NameInfo {
  const map = task.kind === "op" ? opNames : methodNames;
  let info = map.get(task.name);
  if (info === undefined) {
    const dot = task.name.indexOf(".");
    info = task.kind === "op" ? { span: `op ${task.name}`, op: task.name, service: undefined, method: undefined } : {
      span: `call ${task.name}`,
      op: undefined,
      service: dot < 0 ? task.name : task.name.slice(0, dot),
      method: dot < 0 ? task.name : task.name.slice(dot + 1),
    };
    if (map.size < 10_000) map.set(task.name, info);
  }
  return info;
}

/** Creates the span of `task` (at its start, or at settle for a task that never started). */
function openSpan(task: TaskInfo & Slot, parentCtx: Context | undefined): Span {
  let ctx = parentCtx ?? context.active();
  if (trace.getSpan(ctx) === undefined) {
    // no context manager carried it (or the body awaited first): fall back to the calling task
    const parentSpan = (task.parent as (TaskInfo & Slot) | undefined)?._trace;
    if (isSpan(parentSpan)) ctx = trace.setSpan(ctx, parentSpan);
  }
  let links: Link[] | undefined;
  const deps = task.dependencies;
  for (let i = 0; i < deps.length; i++) {
    const sc = spanContextOf((deps[i] as TaskInfo & Slot)._trace);
    if (sc !== undefined) (links ??= []).push({ context: sc });
  }
  const info = nameInfo(task);
  const attributes: Attributes = { "thinkagain.task_id": task.seq }; // a number: no string per task
  if (info.op !== undefined) attributes["thinkagain.op"] = info.op;
  else {
    attributes["thinkagain.service"] = info.service;
    attributes["thinkagain.method"] = info.method;
  }
  const node = task.node;
  if (node !== undefined) attributes["thinkagain.node"] = node;
  const executor = task.executor;
  attributes["thinkagain.executor"] = executor;
  if (task.parent === undefined) {
    const untraced = untracedBefore.get(task);
    if (untraced !== undefined) attributes["thinkagain.untraced_before"] = untraced;
  }
  if (task.startedAt > 0) {
    const wait = task.startedAt - task.submittedAt;
    attributes["thinkagain.queue_wait_ms"] = wait > 0 ? wait : 0;
    attributes["thinkagain.attempt"] = task.attempt;
  }
  const span = (tracingState.tracer ?? trace.getTracer(TRACER_NAME)).startSpan(info.span, {
    // a call sent to another node is the client side of that node's SERVER span
    kind: executor === "remote" ? SpanKind.CLIENT : SpanKind.INTERNAL,
    attributes,
    links,
    startTime: task.submittedAt > 0 ? origin + task.submittedAt : undefined,
  }, ctx);
  task._trace = span;
  tracingState.spansMade++;
  return span;
}

/**
 * @internal The task event listener of live tracing: keeps the caller's context at submission, makes
 * the span at the first start, marks retries, and ends the span when the task settles.
 *
 * @param e The task event.
 *
 * @example A task's events make one span
 * ```ts
 * import { spanTaskEvent } from "./spans.ts";
 * import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
 * import { tracingState } from "./state.ts";
 * import type { TaskInfo } from "../events.ts";
 * const exporter = new InMemorySpanExporter();
 * tracingState.tracer = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
 *   .getTracer("example");
 * const task = {
 *   id: "step#1", seq: 1, kind: "op", name: "step", node: undefined, parent: undefined, dependencies: [],
 *   submittedAt: 1, readyAt: 1, startedAt: 2, settledAt: 3, attempt: 0, executor: "local", error: undefined,
 * } satisfies TaskInfo;
 * spanTaskEvent({ kind: "submitted", task, at: 1 });
 * spanTaskEvent({ kind: "started", task, at: 2 });
 * spanTaskEvent({ kind: "finished", task, at: 3 });
 * tracingState.tracer = undefined;
 * const names = exporter.getFinishedSpans().map((s) => s.name);
 * if (names.join() !== "op step") throw new Error(names.join());
 * ```
 */
export function spanTaskEvent(e: TaskEvent): void {
  const task = e.task as TaskInfo & Slot;
  switch (e.kind) {
    case "submitted":
      // synchronous inside .go(): the active context is the caller's
      task._trace = context.active();
      // a budget (maxOverhead) pays for every traced task as it is submitted, so a burst of
      // submissions in one turn is held to it
      // (tasks recorded for a profiler while it runs are not the budget's choice, nor on its bill)
      if (tracingState.wantedOverhead !== undefined && sampling()) spend(tracingState.spanCostMs);
      tracingState.recordedCount++;
      tracingState.recordedSinceRoot++;
      if (
        task.parent === undefined && sampling() &&
        (tracingState.wantedRatio < 1 || tracingState.wantedOverhead !== undefined)
      ) {
        // a traced root: its span says how many tasks since the previous one went untraced (a trace
        // backend shows the gap), worked out from task numbers, as nothing is done per untraced task
        // (only where this process samples: tracing every root, it leaves out only what callers did)
        const untraced = task.seq - tracingState.lastRootSeq - tracingState.recordedSinceRoot;
        if (untraced > 0) untracedBefore.set(task, untraced);
        tracingState.lastRootSeq = task.seq;
        tracingState.recordedSinceRoot = 0;
      }
      return;
    case "started": {
      const slot = task._trace;
      if (!isSpan(slot)) {
        // the first start: the span is made now, with its inputs known (links) and its queue wait.
        // Under a budget, the first 16 traced tasks and then one in 16 are timed to keep its price current.
        const timed = tracingState.wantedOverhead !== undefined &&
          (tracingState.measureTick++ < 16 || (tracingState.measureTick & 15) === 0);
        const t0 = timed ? performance.now() : 0;
        const span = openSpan(task, slot as Context | undefined);
        if (span.isRecording()) span.addEvent("started", undefined, origin + e.at);
        if (timed) startCosts.set(task, performance.now() - t0);
      } else if (slot.isRecording()) {
        // a retry
        slot.setAttribute("thinkagain.attempt", task.attempt);
        slot.addEvent("started", { "thinkagain.attempt": task.attempt }, origin + e.at);
      }
      return;
    }
    case "stuck":
      // the watchdog's report, not a step of the task's life: its span goes on
      return;
    default: {
      const slot = task._trace;
      const span = isSpan(slot) ? slot : openSpan(task, slot as Context | undefined);
      // keep only the span's context: dependents link to it, and the span object can be collected
      task._trace = span.spanContext();
      // a streaming call's span ends with its stream: how many items it gave
      if (task.streamItems !== undefined && span.isRecording()) {
        span.setAttribute("thinkagain.stream.items", task.streamItems);
      }
      if (!span.isRecording()) {
        // nothing would keep the attributes or the exception
      } else if (e.kind === "failed") {
        const err = task.error;
        span.setAttribute("thinkagain.status", "failed");
        if (task.startedAt === 0) span.setAttribute("thinkagain.skipped", true); // an input failed
        span.recordException(err instanceof Error ? err : String(err), origin + e.at);
        span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
      } else if (e.kind === "cancelled") {
        span.setAttribute("thinkagain.status", "cancelled");
        span.setStatus({ code: SpanStatusCode.ERROR, message: "cancelled" });
      }
      const startCost = tracingState.wantedOverhead === undefined ? undefined : startCosts.get(task);
      if (startCost === undefined) span.end(origin + e.at);
      else {
        const t0 = performance.now();
        span.end(origin + e.at);
        measured(startCost + performance.now() - t0);
      }
    }
  }
}

/**
 * @internal The body wrapper: runs the task body inside its span's context, so spans made there nest
 * under it. With no context manager registered, `context.with` could not carry it anyway: the body is
 * called as is (tasks it submits still find this span through their calling task).
 *
 * @param task The task whose body runs.
 * @param fn The body.
 * @param self `this` of the body.
 * @param args The body's arguments.
 * @returns What the body returns.
 *
 * @example Without a span, the body is called as is
 * ```ts
 * import { runInSpan } from "./spans.ts";
 * import type { TaskInfo } from "../events.ts";
 * const r = runInSpan({} as TaskInfo, (x) => (x as number) + 1, undefined, [1]);
 * if (r !== 2) throw new Error(String(r));
 * ```
 */
export function runInSpan(
  task: TaskInfo,
  fn: (...args: unknown[]) => unknown,
  self: unknown,
  args: unknown[],
): unknown {
  const span = (task as TaskInfo & Slot)._trace;
  if (!isSpan(span) || !(tracingState.contextCarries || registeredContextManager())) return fn.apply(self, args);
  return context.with(trace.setSpan(context.active(), span), fn, self, ...args);
}
