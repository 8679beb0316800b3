/**
 * Fair dispatch for an instance many callers share (a node's resident instances): each caller (a
 * connection) has its own queue, and calls pass to the instance's mailbox round-robin between the
 * callers with calls waiting, only while the instance has a free slot (`maxConcurrency`). So one
 * driver flooding an instance with calls delays another driver's next call by at most one call per
 * other waiting caller, never by the flood; each caller's calls still start in the order it sent
 * them, and the instance's own limit holds, since its mailbox is fed no faster than it runs.
 *
 * @module
 */
import type { Context as OtelContext } from "@opentelemetry/api";
import type { RunContext } from "../core/context.ts";
import type { Replica } from "../core/deployment.ts";
import { addWaiter, settle, State, Task, type TaskTarget } from "../core/task.ts";
import { isTracingEnabled } from "../core/tracing/mod.ts";
import { servedContext, withServedContext } from "../core/tracing/propagation.ts";

const { PENDING, RUNNING } = State;

/**
 * When the node last read a frame (`performance.now()`), kept by the node for its dispatchers: calls
 * whose bodies only await promises run back to back in microtasks, and a dispatcher that has passed
 * calls on for {@linkcode SLICE_MS} while no frame was read gives the event loop a turn (a 0 ms
 * timer), so the node reads its sockets and other callers' calls join the turns.
 *
 * @example
 * ```ts
 * import type { ReadClock } from "./fair_dispatch.ts";
 * const clock: ReadClock = { lastRead: performance.now() };
 * if (clock.lastRead <= 0) throw new Error("unexpected");
 * ```
 */
export interface ReadClock {
  /** `performance.now()` when the last frame was read. */
  lastRead: number;
}

/** How long calls may pass on with no frame read before the event loop gets a turn, ms. */
const SLICE_MS = 2;

/** One caller's calls not yet passed to the instance, in the order sent. */
interface CallerQueue {
  readonly key: string;
  tasks: Task<unknown>[];
  head: number;
  /** True while it is in the ring of callers with calls waiting. */
  queued: boolean;
}

/** The target of a method's calls while they wait here. */
interface WaitTarget extends TaskTarget {
  readonly method: string;
}

/**
 * Feeds one replica's mailbox from per-caller queues, round-robin, at most `limit` calls at a time.
 *
 * @example Two callers take turns: b's call waits behind one of a's, not behind all of them
 * ```ts
 * import { FairDispatch } from "./fair_dispatch.ts";
 * import { LocalReplica } from "../core/local_replica.ts";
 * import { defineService } from "../core/service_def.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const seen: string[] = [];
 * const def = defineService({ name: "FairDispatchDoc" }, class { note(who: string) { seen.push(who); } });
 * const fair = new FairDispatch(new LocalReplica(def, [], undefined, 0, "n1", []), 1);
 * const calls = [
 *   fair.call("a", "note", ["a1"], undefined), fair.call("a", "note", ["a2"], undefined),
 *   fair.call("a", "note", ["a3"], undefined), fair.call("b", "note", ["b1"], undefined),
 * ];
 * await Promise.all(calls);
 * deepStrictEqual(seen, ["a1", "a2", "b1", "a3"]); // a1 started at once; then a2, b1, a3 in turn
 * ```
 */
export class FairDispatch {
  /** The replica the calls go to. */
  readonly replica: Replica;
  /** Calls passed to the replica and not yet settled. */
  private inFlight = 0;
  private readonly limit: number;
  private readonly callers = new Map<string, CallerQueue>();
  /** Callers with calls waiting, in turn order (`ringHead` is whose turn it is). */
  private ring: CallerQueue[] = [];
  private ringHead = 0;
  private readonly targets = new Map<string, WaitTarget>();
  /** The trace context each waiting call arrived in (only while tracing is on). */
  private readonly traces = new WeakMap<Task<unknown>, OtelContext>();
  private pumping = false;
  private pumpAgain = false;
  /** When calls began passing with no frame read (-1: the queue emptied, or the loop had a turn). */
  private sliceStart = -1;
  /** True while waiting for the event loop's turn. */
  private yielding = false;
  private readonly clock: ReadClock | undefined;

  /**
   * @param replica The instance's replica (its mailbox keeps order and `maxConcurrency`).
   * @param limit Calls passed to it at once (its `maxConcurrency`).
   * @param clock When its node last read a frame (see {@linkcode ReadClock}); without one, calls
   * pass on with no break.
   */
  constructor(replica: Replica, limit: number, clock?: ReadClock) {
    this.clock = clock;
    if (!Number.isSafeInteger(limit) || limit < 1) {
      throw new RangeError(`FairDispatch limit must be an integer ≥ 1, got ${String(limit)}`);
    }
    this.replica = replica;
    this.limit = limit;
  }

  /** Calls waiting for their turn, all callers together. */
  get waitingCalls(): number {
    let n = 0;
    for (const q of this.callers.values()) n += q.tasks.length - q.head;
    return n;
  }

  /**
   * Queues a call from `caller`; it passes to the replica in its turn. The ref settles as the call
   * does; cancelling it before its turn takes it out of the queue, after, cancels the call.
   *
   * @param caller Who sends it (a connection): each caller's calls keep their order.
   * @param method The method.
   * @param args Its arguments (values).
   * @param ctx The run context the call runs in.
   * @returns The call's ref.
   */
  call(caller: string, method: string, args: unknown[], ctx: RunContext | undefined): Task<unknown> {
    let target = this.targets.get(method);
    if (target === undefined) {
      const def = (this.replica as { def?: { name: string } }).def;
      const name = `${def?.name ?? "service"}.${method}`;
      const dropped = () => this.pump();
      const node = this.replica.node;
      this.targets.set(method, target = { name, method, kind: "method", node, ready() {}, dropped });
    }
    const task = new Task<unknown>(target, args, ctx);
    // the served call's context (its SERVER span, or that it is sampled out): it is submitted later
    if (isTracingEnabled()) this.traces.set(task, servedContext());
    let q = this.callers.get(caller);
    if (q === undefined) this.callers.set(caller, q = { key: caller, tasks: [], head: 0, queued: false });
    q.tasks.push(task);
    if (!q.queued) {
      q.queued = true;
      this.ring.push(q);
    }
    this.pump();
    return task;
  }

  /** Passes waiting calls to the replica, one per caller in turn, while it has free slots. */
  private pump(): void {
    if (this.pumping) {
      // a call refused at once finished inside start(): the loop below goes round again instead
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        while (this.inFlight < this.limit && !this.yielding) {
          const task = this.nextTask();
          if (task === undefined) {
            this.sliceStart = -1;
            break;
          }
          this.start(task);
          if (this.clock !== undefined && this.sliceSpent(this.clock)) break;
        }
      } while (this.pumpAgain);
    } finally {
      this.pumping = false;
    }
  }

  /** Whether calls passed on for a whole slice with no frame read: then the loop gets a turn first. */
  private sliceSpent(clock: ReadClock): boolean {
    const now = performance.now();
    if (this.sliceStart < 0 || clock.lastRead > this.sliceStart) {
      this.sliceStart = now;
      return false;
    }
    if (now - this.sliceStart < SLICE_MS) return false;
    this.yielding = true;
    setTimeout(() => {
      this.yielding = false;
      this.sliceStart = -1;
      this.pump();
    }, 0);
    return true;
  }

  /** The next caller's oldest waiting call (cancelled ones are dropped on the way). */
  private nextTask(): Task<unknown> | undefined {
    while (this.ringHead < this.ring.length) {
      const q = this.ring[this.ringHead];
      let task: Task<unknown> | undefined;
      while (q.head < q.tasks.length) {
        const t = q.tasks[q.head];
        q.tasks[q.head++] = undefined as unknown as Task<unknown>;
        if (t._state === PENDING) {
          task = t;
          break;
        }
      }
      this.ringHead++;
      if (q.head < q.tasks.length) this.ring.push(q); // more waiting: its next turn comes after the others'
      else {
        q.tasks = [];
        q.head = 0;
        q.queued = false;
        this.callers.delete(q.key);
      }
      if (this.ringHead > 1024 && this.ringHead * 2 > this.ring.length) {
        this.ring = this.ring.slice(this.ringHead);
        this.ringHead = 0;
      }
      if (task !== undefined) return task;
    }
    this.ring.length = 0;
    this.ringHead = 0;
    return undefined;
  }

  private start(task: Task<unknown>): void {
    const method = (task._target as WaitTarget).method;
    const trace = this.traces.get(task);
    const args = task._args ?? [];
    task._args = undefined;
    task._state = RUNNING;
    this.inFlight++;
    const send = () => this.replica.call(method, args, task._ctx);
    let inner: Task<unknown>;
    try {
      inner = trace === undefined ? send() : withServedContext(trace, send);
    } catch (e) {
      this.inFlight--;
      settle(task, State.FAILED, e);
      return;
    }
    if (inner._state >= State.COMPLETED) return this.finish(task, inner); // refused at once
    task._abort = () => inner.cancel();
    addWaiter(inner, () => this.finish(task, inner));
  }

  /** The call passed on settled: its ref settles the same way, and the next turn starts. */
  private finish(outer: Task<unknown>, inner: Task<unknown>): void {
    this.inFlight--;
    settle(outer, inner._state, inner._state === State.COMPLETED ? inner._value : inner._error);
    this.pump();
  }
}
