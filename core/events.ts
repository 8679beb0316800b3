/**
 * The internal event stream: task submitted / started / finished / failed / cancelled, and stuck (the
 * mesh's watchdog). The profiler, tracing and the dashboard listen here. With no listener the core
 * creates no events and reads no clock.
 *
 * @module
 */
import type { Explanation } from "./explain.ts";

/**
 * What happened to a task. `"stuck"` is not a step of its life but a report: the mesh's watchdog
 * (`stuckAfterMs`) found it pending or running for longer than that (once per task; the event's
 * `explanation` says why). It is sent for every stuck task, recorded or not, so its times may be 0.
 */
export type TaskEventKind = "submitted" | "started" | "finished" | "failed" | "cancelled" | "stuck";

/** The facts about a task that listeners can read (an `ObjectRef` implements it). */
export interface TaskInfo {
  /** Unique id of the task in this process: `<name>#<seq>`. */
  readonly id: string;
  /** Sequence number of the task in this process (the number in `id`). */
  readonly seq: number;
  /** `"op"` or `"method"`. */
  readonly kind: "op" | "method";
  /** Op name or `Service.method`. */
  readonly name: string;
  /** Node the task ran (or runs) on. */
  readonly node: string | undefined;
  /** The task that was running when this one was submitted (the caller), if any. */
  readonly parent: TaskInfo | undefined;
  /** Tasks whose results this task takes as arguments. */
  readonly dependencies: readonly TaskInfo[];
  /** Clock readings (`performance.now()` ms): submitted, started, settled. */
  readonly submittedAt: number;
  /**
   * `performance.now()` when its last input resolved and it became ready to start (its submission
   * time when no input was pending then). From here to `startedAt` it waited for a slot: the ready
   * queue, a concurrency limit or its instance's mailbox.
   */
  readonly readyAt: number;
  /** `performance.now()` when the body started. */
  readonly startedAt: number;
  /** `performance.now()` when it settled. */
  readonly settledAt: number;
  /** Retry attempt (0 for the first). */
  readonly attempt: number;
  /** Where the body runs: `"local"` (this process) or `"remote"` (a node over a transport). */
  readonly executor: "local" | "remote";
  /** The error, for failed and cancelled tasks. */
  readonly error: unknown;
  /** For a streaming call, once its stream ended: how many items it gave. */
  readonly streamItems?: number;
}

/** One event of the stream. */
export interface TaskEvent {
  /** What happened. */
  readonly kind: TaskEventKind;
  /** The task it happened to. */
  readonly task: TaskInfo;
  /** `performance.now()` at the event. */
  readonly at: number;
  /** For `"stuck"`: why the task is not done yet (what `ref.explain()` returned then). */
  readonly explanation?: Explanation;
}

/** A listener of the event stream. */
export type TaskEventListener = (event: TaskEvent) => void;

// replaced, never changed in place: an emit in progress keeps the array it started with, so a
// listener that unsubscribes (or subscribes) during an event does not make another miss it
let listeners: readonly TaskEventListener[] = [];
let everyTaskListeners = 0;

/**
 * @internal True while new tasks may be recorded: someone listens and, under a budget, the budget
 * lasts (see {@link setSamplingGate}). The hot path checks it before doing any event work.
 */
export let eventsEnabled = false;

/**
 * @internal True while anyone listens, even with the sampling gate closed: the tasks already
 * recorded, and those their bodies submit, are still recorded to the end.
 */
export let listening = false;

let gateOpen = true;

/**
 * @internal Opens or closes the sampling gate. Closed (a `maxOverhead` budget is spent), a task
 * submitted outside a recorded one costs what it costs with nobody listening: no sampler call, no
 * check at its start. A profiler (it wants every task) keeps the gate open.
 */
export function setSamplingGate(open: boolean): void {
  gateOpen = open;
  recompute();
}

function recompute(): void {
  listening = listeners.length > 0;
  eventsEnabled = listening && (gateOpen || everyTaskListeners > 0);
}

/**
 * @internal When set (and no listener asked for every task), decides for each root task (one
 * submitted outside any recorded task) whether it and the tasks it submits are recorded. Tracing
 * installs it for head sampling; the profiler always records every task.
 */
export let rootSampler: (() => boolean) | undefined;

/** @internal Installs (or removes) the root sampler. */
export function setRootSampler(sampler: (() => boolean) | undefined): void {
  rootSampler = sampler;
}

/** @internal True while root sampling decides what is recorded. */
export function sampling(): boolean {
  return rootSampler !== undefined && everyTaskListeners === 0;
}

/** @internal Whether a task submitted under `parent` (the running task, if any) is recorded. */
export function shouldRecord(parent: { _meta?: unknown } | undefined): boolean {
  if (rootSampler === undefined || everyTaskListeners > 0) return true;
  return parent !== undefined ? parent._meta !== undefined : rootSampler();
}

/** Options of {@link onTaskEvent}. */
export interface TaskEventOptions {
  /** Receive every task even while tracing samples (the profiler needs them all). Default false. */
  everyTask?: boolean;
}

/**
 * Subscribes to task events. Returns the unsubscribe function.
 *
 * @param listener Called synchronously for every event; it must be cheap and must not throw.
 * @returns A function that unsubscribes.
 *
 * @example
 * ```ts
 * import { onTaskEvent } from "./events.ts";
 * const off = onTaskEvent(() => {});
 * off();
 * ```
 */
export function onTaskEvent(listener: TaskEventListener, options: TaskEventOptions = {}): () => void {
  if (typeof listener !== "function") throw new TypeError("onTaskEvent expects a function");
  const every = options.everyTask === true;
  listeners = [...listeners, listener];
  if (every) everyTaskListeners++;
  recompute();
  let on = true;
  return () => {
    if (!on) return;
    on = false;
    const i = listeners.indexOf(listener);
    if (i >= 0) listeners = [...listeners.slice(0, i), ...listeners.slice(i + 1)];
    if (every) everyTaskListeners--;
    recompute();
  };
}

/** @internal Sends an event to every listener; a throwing listener is isolated. */
export function emit(kind: TaskEventKind, task: TaskInfo, at: number): void {
  const event: TaskEvent = { kind, task, at };
  const ls = listeners;
  for (let i = 0; i < ls.length; i++) {
    try {
      ls[i](event);
    } catch {
      // A faulty listener must never break the pipeline it observes.
    }
  }
}

/**
 * @internal Sends a `"stuck"` event (the watchdog's report of `task`, with its explanation) to every
 * listener, whether the sampling gate is open or not.
 */
export function emitStuck(task: TaskInfo, at: number, explanation: Explanation): void {
  const event: TaskEvent = { kind: "stuck", task, at, explanation };
  const ls = listeners;
  for (let i = 0; i < ls.length; i++) {
    try {
      ls[i](event);
    } catch {
      // A faulty listener must never break the pipeline it observes.
    }
  }
}

/**
 * @internal Wraps the call of a recorded task's body (tracing runs the body inside the task's span
 * context this way): it must call `fn.apply(self, args)` exactly once and return its result.
 */
export type BodyWrapper = (
  task: TaskInfo,
  fn: (...args: unknown[]) => unknown,
  self: unknown,
  args: unknown[],
) => unknown;

/** @internal The installed body wrapper, if any. */
export let bodyWrapper: BodyWrapper | undefined;

/**
 * @internal Installs (or, with `undefined`, removes) the body wrapper. Only one can be installed;
 * tracing owns it.
 */
export function setBodyWrapper(wrapper: BodyWrapper | undefined): void {
  bodyWrapper = wrapper;
}

/**
 * @internal Called by every `.go()` while set: tracing's check for a registered tracer provider
 * (it counts calls itself and looks only now and then). Unset, it costs one comparison.
 */
export let submitProbe: (() => void) | undefined;

/** @internal Installs (or, with `undefined`, removes) the submit probe. */
export function setSubmitProbe(probe: (() => void) | undefined): void {
  submitProbe = probe;
}

/**
 * @internal Called while set when a recorded task is awaited: its `then`/`catch`/`finally`, `ta.all`
 * or `.effect`, in the context of the awaiting code. The profiler installs it to tell a caller that
 * waited for a task from one that merely ran after it. Unset, it costs one comparison per await.
 */
export let awaitProbe: ((task: TaskInfo) => void) | undefined;

/** @internal Installs (or, with `undefined`, removes) the await probe. */
export function setAwaitProbe(probe: ((task: TaskInfo) => void) | undefined): void {
  awaitProbe = probe;
}
