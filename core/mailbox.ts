/**
 * A replica's mailbox (the actor model): calls are queued at submission and started in that
 * order, at most `maxConcurrency` at a time, each once its inputs resolved. Local replicas
 * (`local_replica.ts`) and replicas on other nodes (the transports' remote replica) say how a call
 * starts; the order and the limit are kept here for both.
 *
 * @module
 */
import type { InstanceInfo, RunContext } from "./context.ts";
import type { Replica } from "./deployment.ts";
import type { GpuDevice } from "./devices.ts";
import { CancelledError, type CancelReason, OpExecutionError, OverloadedError } from "./errors.ts";
import { endGrace, startGrace } from "./grace.ts";
import { untilDeadline } from "./long_timer.ts";
import { overloadBackoffMs } from "./policy.ts";
import { failedRef, submit, submittingParent } from "./scheduler.ts";
import { DEFAULT_MAX_QUEUED, type ServiceDef } from "./service_def.ts";
import { addWaiter, cancelTask, settle, State, type Task, type TaskTarget } from "./task.ts";
import { Stream } from "./stream.ts";
import type { SlotWait } from "./explain.ts";
import type { TimerId } from "./_runtime.ts";

const { PENDING, FAILED } = State;

/**
 * A replica's mailbox: calls are queued at submission and started in that order, at
 * most `limit` at a time, each once its inputs resolved. Subclasses say how a call starts.
 */
export abstract class MailboxReplica implements Replica {
  readonly index: number;
  readonly node: string;
  readonly gpus: readonly GpuDevice[];
  readonly def: ServiceDef;
  outstanding = 0;
  calls = 0;
  /** Calls that may run (or be in flight) at once. */
  protected limit: number;
  protected closing = false;
  private readonly queue: Task<unknown>[] = [];
  private head = 0;
  protected running = 0;
  /** Calls whose bodies run now (a cancelled call leaves it at once; close() does not wait for it). */
  private readonly active = new Set<Task<unknown>>();
  private readonly targets = new Map<string, MethodTarget>();
  private readonly enqueueBound = (task: Task<unknown>) => this.enqueue(task);
  /** Pass to `runBody` as its `done`. */
  readonly doneBound: (task: Task<unknown>) => void = (task) => this.done(task);

  constructor(def: ServiceDef, index: number, node: string, gpus: readonly GpuDevice[], limit: number) {
    this.def = def;
    this.index = index;
    this.node = node;
    this.gpus = gpus;
    this.limit = limit;
  }

  /** Starts a ready call; must eventually call `doneBound(task)` (runBody does). */
  protected abstract start(task: Task<unknown>, method: string): void;

  /** The error every call fails with instead of starting (a failed constructor), if any. */
  protected abstract unavailable(task: Task<unknown>): unknown;

  /** Disposes what the replica holds, after its calls have finished. */
  protected abstract dispose(deadline?: number): Promise<void>;

  /** Replicas behind a transport: their errors pass through unwrapped, their spans are CLIENT spans. */
  protected get remote(): boolean {
    return false;
  }

  /**
   * The replica whose slots a call made from code running inside `instance` would wait for, when
   * that call goes to the very instance it is made from (see {@linkcode selfCallError}).
   */
  protected replicaOf(_instance: InstanceInfo): MailboxReplica | undefined {
    return undefined;
  }

  call(method: string, args: unknown[], ctx: RunContext | undefined): Task<unknown> {
    let target = this.targets.get(method);
    if (target === undefined) this.targets.set(method, target = new MethodTarget(this, method, this.remote));
    if (ctx !== undefined && ctx.instance !== undefined) {
      const self = this.replicaOf(ctx.instance);
      if (self !== undefined && self.waitsForItself(submittingParent(ctx))) {
        this.calls++;
        return submit(target, args, ctx, (task) => this.holdSelfCall(task, self));
      }
    }
    // backpressure: a full mailbox refuses at once instead of growing (the handle routes to the
    // replica with the fewest outstanding calls, so its siblings are no emptier)
    const maxQueued = this.def.maxQueued ?? DEFAULT_MAX_QUEUED;
    if (this.waiting() >= maxQueued) {
      if (this.refuses()) return failedRef(target, this.overloaded(method, maxQueued));
      // with retries, the call tries again after a pause, as a node's refusal is retried
      this.calls++;
      return submit(target, args, ctx, (task) => this.enqueueLater(task, 0));
    }
    this.calls++;
    return submit(target, args, ctx, this.enqueueBound);
  }

  /**
   * Whether a call made now would be refused with {@linkcode refusal}'s error: the mailbox is full,
   * and so, where the service has retries, is the room of the calls that wait to try again (bounded
   * too, as many as the mailbox holds, so a runaway producer still meets a refusal at once instead
   * of a queue that grows). A node answers such a call without making it (refusing must cost it
   * less than serving).
   */
  refuses(): boolean {
    const maxQueued = this.def.maxQueued ?? DEFAULT_MAX_QUEUED;
    return this.waiting() >= maxQueued &&
      ((this.def.policy?.retries ?? 0) === 0 || this.deferred.size >= maxQueued);
  }

  /**
   * The calls that wait for a slot (what `maxQueued` bounds): those outstanding beyond the slots. A
   * call made while a slot is free is about to start on it (a microtask later, not within the
   * `.go()` that made it), so it does not count, whether or not the code that made it yielded before
   * the next call: an idle instance with `maxQueued: 1` takes two calls made together, as an op with
   * `maxConcurrency: 1, maxWaiting: 1` does (`limiter.ts`).
   */
  private waiting(): number {
    return this.outstanding - this.limit;
  }

  /** The error a call of `method` is refused with while {@linkcode refuses} says so. */
  refusal(method: string): OverloadedError {
    return this.overloaded(method, this.def.maxQueued ?? DEFAULT_MAX_QUEUED);
  }

  /** Calls refused for a full mailbox that try again after a pause (with the pause's timer). */
  private readonly deferred = new Map<Task<unknown>, TimerId>();

  /**
   * Enters `task` in the queue after the `refusals`-th overload pause (10 ms doubling to 1 s, with
   * jitter: `overloadBackoffMs`), if there is room then; else it waits again, up to its `retries`
   * pauses, and then fails with `OverloadedError`. Out of the queue meanwhile, it keeps no order
   * with the calls made after it, and holds no slot.
   */
  private enqueueLater(task: Task<unknown>, refusals: number): void {
    const timer = startGrace(overloadBackoffMs(refusals), () => {
      this.deferred.delete(task);
      if (task._state !== PENDING) return; // cancelled, or an input failed, meanwhile
      const maxQueued = this.def.maxQueued ?? DEFAULT_MAX_QUEUED;
      if (this.waiting() < maxQueued) {
        this.enqueue(task);
        if (task._pending === 0) this.pump();
      } else if (refusals + 1 < (this.def.policy?.retries ?? 0)) {
        this.enqueueLater(task, refusals + 1);
      } else {
        task._args = undefined;
        settle(task, FAILED, this.overloaded((task._target as MethodTarget).method, maxQueued, refusals + 1));
      }
    });
    this.deferred.set(task, timer);
  }

  /** A call that waits to try again was cancelled: its timer goes; `true` if it was one. */
  private forgetDeferred(task: Task<unknown>): boolean {
    const timer = this.deferred.get(task);
    if (timer === undefined) return false;
    endGrace(timer);
    this.deferred.delete(task);
    return true;
  }

  private overloaded(method: string, maxQueued: number, tries = 0): OverloadedError {
    const again = tries === 0 ? "" : ` (also after ${tries} pause${tries === 1 ? "" : "s"}, its retries)`;
    return new OverloadedError(
      `Service "${this.def.name}" refused a call to ${this.def.name}.${method}: its instance ${this.index} on node ` +
        `"${this.node}" has ${maxQueued} call${
          maxQueued === 1 ? "" : "s"
        } queued${again} (maxQueued ${maxQueued}; raise it, or pass "unbounded")`,
    );
  }

  /** Self-calls held out of the queue until the statement that made them has run (see {@linkcode holdSelfCall}). */
  private held: Set<Task<unknown>> | undefined;

  /**
   * A call the instance `self` makes to itself while the call making it (or one it runs under)
   * holds every slot: if that call waits for it, neither ever ends. Whether it does is known once
   * the statement that made the call has run: a call `ta.detach`ed there is no child of its caller
   * (a call's children count as waited for), so it is queued as any other and runs after the
   * current call, as an actor that schedules itself; one still its caller's child fails with
   * {@linkcode selfCallError}. A detached one that its caller awaits at once fails too; one it
   * awaits later waits forever, as nothing tells of that await here.
   */
  private holdSelfCall(task: Task<unknown>, self: MailboxReplica): void {
    const caller = task._family?.parent;
    (this.held ??= new Set()).add(task);
    queueMicrotask(() => {
      if (!this.held!.delete(task) || task._state !== PENDING) return; // cancelled, or the mesh closed
      const method = (task._target as MethodTarget).method;
      const parent = task._family?.parent; // undefined once detached
      if (parent !== undefined && self.waitsForItself(parent)) {
        task._args = undefined;
        settle(task, FAILED, selfCallError(self, method));
        return;
      }
      const maxQueued = this.def.maxQueued ?? DEFAULT_MAX_QUEUED;
      if (this.waiting() >= maxQueued) {
        if (!this.refuses()) return this.enqueueLater(task, 0);
        task._args = undefined;
        settle(task, FAILED, this.overloaded(method, maxQueued));
        return;
      }
      this.enqueue(task);
      if (task._pending === 0) this.pump();
      // detached, but awaited at once by its caller (an await's then() comes a microtask later): it
      // would still wait forever
      queueMicrotask(() => {
        if (task._state !== PENDING || (task._promise === undefined && task._waiters === undefined)) return;
        if (caller === undefined || caller._state !== State.RUNNING || !self.waitsForItself(caller)) return;
        task._args = undefined;
        settle(task, FAILED, selfCallError(self, method));
        this.dropped(task);
      });
    });
  }

  /**
   * Whether a call made by `caller` would wait for itself: no slot is free and every call running
   * here is `caller` or one of its ancestors (each waits, through its children, for `caller`).
   */
  private waitsForItself(caller: Task<unknown> | undefined): boolean {
    if (caller === undefined || this.running < this.limit) return false;
    let waiting = 0;
    for (let t: Task<unknown> | undefined = caller; t !== undefined; t = t._family?.parent) {
      if (this.active.has(t)) waiting++;
    }
    return waiting >= this.running;
  }

  private enqueue(task: Task<unknown>): void {
    this.outstanding++;
    this.queue.push(task);
  }

  private pumping = false;
  private pumpAgain = false;

  /**
   * Starts queued calls in order while slots are free and the head's inputs are resolved. A call
   * that finishes synchronously pumps again from inside this loop: that nested pump only asks this
   * one to go round once more, so 100k synchronous calls queued on one instance take no stack.
   */
  pump(): void {
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        this.pumpOnce();
      } while (this.pumpAgain);
    } finally {
      this.pumping = false;
    }
  }

  private pumpOnce(): void {
    const q = this.queue;
    while (!this.closing && this.head < q.length && this.running < this.limit) {
      const task = q[this.head];
      if (task._state !== PENDING) {
        q[this.head++] = undefined as unknown as Task<unknown>;
        continue;
      }
      if (task._pending !== 0) break;
      q[this.head++] = undefined as unknown as Task<unknown>;
      const failure = this.unavailable(task);
      if (failure !== undefined) {
        this.outstanding--;
        settle(task, FAILED, failure);
        continue;
      }
      this.running++;
      this.active.add(task);
      this.start(task, (task._target as MethodTarget).method);
    }
    if (this.head === q.length) {
      q.length = 0;
      this.head = 0;
    }
  }

  private done(task: Task<unknown>): void {
    this.running--;
    this.outstanding--;
    this.active.delete(task);
    if (this.released !== undefined) {
      const waiting = this.released;
      this.released = undefined;
      for (const w of waiting) w();
    }
    this.pump();
  }

  /** Who waits for a call to give its slot back (close, for the streams it stopped). */
  private released: (() => void)[] | undefined;

  /**
   * For `explain()`: what a queued call waits for here: the calls running (all of them, at most
   * `limit`) and the pending calls queued ahead of it (the first few ids, and how many).
   */
  slotWait(task: Task<unknown>): SlotWait | undefined {
    const ahead: string[] = [];
    let aheadCount = 0;
    const q = this.queue;
    for (let i = this.head; i < q.length; i++) {
      const t = q[i];
      if (t === task) {
        const running: string[] = [];
        for (const a of this.active) running.push(a.id);
        return { kind: "mailbox", limit: this.limit, running: this.running, runningIds: running, ahead, aheadCount };
      }
      if (t === undefined || t._state !== PENDING) continue;
      if (ahead.length < AHEAD_SHOWN) ahead.push(t.id);
      aheadCount++;
    }
    return undefined;
  }

  /** The calls whose bodies run now (what closing the mesh waits for, up to its `graceMs`). */
  runningCalls(): Task<unknown>[] {
    const running: Task<unknown>[] = [];
    for (const t of this.active) if (t._state === State.RUNNING) running.push(t);
    return running;
  }

  /** A queued call failed or was cancelled before it started. */
  dropped(task: Task<unknown>): void {
    if (this.held?.delete(task) || this.forgetDeferred(task)) return; // not in the queue: nothing to give back
    this.outstanding--;
    this.pump();
  }

  /**
   * Rejects the calls not yet started, saying why (`cause`, default: its mesh closed), and starts
   * no more.
   */
  stopAccepting(cause: CloseCause = MESH_CLOSED): void {
    if (this.closing) return;
    this.closing = true;
    const queued = this.queue.slice(this.head);
    for (const task of [...this.held ?? []]) {
      this.held!.delete(task);
      task._args = undefined;
      settle(task, State.CANCELLED, notStarted(task, cause));
    }
    for (const task of [...this.deferred.keys()]) {
      this.forgetDeferred(task);
      task._args = undefined;
      settle(task, State.CANCELLED, notStarted(task, cause));
    }
    this.queue.length = 0;
    this.head = 0;
    for (const task of queued) {
      if (task !== undefined && task._state === PENDING) {
        this.outstanding--;
        task._args = undefined;
        settle(task, State.CANCELLED, notStarted(task, cause));
      }
    }
  }

  /**
   * Closes the instance: the calls not started are rejected, those running are waited for until
   * `deadline` (then cancelled), and it is disposed.
   *
   * @param deadline When the calls still running are cancelled (`performance.now()` time; none:
   * they are waited for).
   * @param spared Calls that close its mesh (and those they run under): not waited for.
   * @param cause Why it closes, as the calls it stops say (default: its mesh closed; a node that
   * destroys an instance of a driver whose lease expired says so).
   */
  async close(deadline?: number, spared?: ReadonlySet<Task<unknown>>, cause: CloseCause = MESH_CLOSED): Promise<void> {
    this.stopAccepting(cause);
    // a stream still open holds its call's slot, but nothing here can tell when (or whether) its
    // consumer reads on: it is stopped now (its generator's finally runs, its consumer's next()
    // rejects with the CancelledError of `cause`), and its slot awaited, before the instance closes
    const streams = [...this.active].filter((t) => t._state === State.COMPLETED && t._value instanceof Stream);
    for (const t of streams) {
      (t._value as Stream<unknown>).cancel(
        new CancelledError(t._target, `stopped mid-stream: ${cause.what}`, cause.reason),
      );
    }
    while (streams.some((t) => this.active.has(t))) {
      await new Promise<void>((resolve) => (this.released ??= []).push(resolve));
    }
    // wait for the calls still running; a cancelled one has settled and is not waited for. One
    // that closes the mesh (or runs under the call that does) waits for this close: the instance
    // is disposed when it ends, and this close does not wait for that (else it would wait for itself)
    const live: Task<unknown>[] = [], closers: Task<unknown>[] = [];
    for (const t of this.active) if (t._state === State.RUNNING) (spared?.has(t) ? closers : live).push(t);
    if (live.length > 0) {
      const all = Promise.allSettled(live.map((t) => t.promise()));
      if (deadline === undefined || deadline === Infinity) await all;
      else {
        await untilDeadline(all, deadline);
        // past the deadline: stop waiting; late results are ignored
        for (const t of live) {
          if (t._state !== State.RUNNING) continue;
          cancelTask(t, new CancelledError(t._target, `cancelled: ${cause.pastDeadline}`, cause.reason));
        }
      }
    }
    const closing = closers.filter((t) => t._state === State.RUNNING);
    if (closing.length === 0) return await this.dispose(deadline);
    let left = closing.length;
    const ended = () => {
      if (--left === 0) this.dispose(deadline).catch(() => {}); // as the mesh's finalizer ignores it
    };
    for (const t of closing) addWaiter(t, ended);
  }
}

/**
 * Why a replica closes, as the `CancelledError`s of the calls it stops say: its mesh closed
 * (`mesh.close()`), or its node destroyed it (a driver's lease that expired, `node_leases.ts`).
 */
export interface CloseCause {
  /** Their `reason`. */
  readonly reason: CancelReason;
  /** What happened, in words (`the mesh closed`): the calls not started and the streams stopped say it. */
  readonly what: string;
  /** The same, for the calls still running at the close's deadline (`the mesh closed and its graceMs passed`). */
  readonly pastDeadline: string;
}

/** The cause of a replica's close unless told otherwise: its mesh closed. */
const MESH_CLOSED: CloseCause = {
  reason: "mesh-closed",
  what: "the mesh closed",
  pastDeadline: "the mesh closed and its graceMs passed",
};

/** The error of a call still queued when its replica closed (a closing replica starts nothing more). */
function notStarted(task: Task<unknown>, cause: CloseCause): CancelledError {
  return new CancelledError(task._target, `not started: ${cause.what}`, cause.reason);
}

/**
 * The error of a call that an instance makes to itself through its own handle while it has no free
 * slot: the call would wait for the call making it, which waits for it, forever.
 */
function selfCallError(replica: MailboxReplica, method: string): OpExecutionError {
  const service = replica.def.name;
  return new OpExecutionError(
    { name: `${service}.${method}`, kind: "method" },
    new TypeError(
      `Service "${service}" called itself through its own handle (${service}.${method}) from inside one of its ` +
        `calls; its instance runs at most ${replica.def.maxConcurrency} call(s) at once, so this call would wait ` +
        `forever for the call making it, which waits for it. Call this.${method}() directly, or raise ` +
        `maxConcurrency; for a call that need not be waited for, ta.detach() it: it then runs after the current call`,
    ),
  );
}

/** How many of the calls queued ahead of one `explain()` names. */
const AHEAD_SHOWN = 10;

class MethodTarget implements TaskTarget {
  readonly kind = "method" as const;
  leafRuns = 0;
  readonly name: string;
  readonly node: string;
  readonly method: string;
  readonly passErrors: boolean;
  readonly remote: boolean;
  /** The replica whose mailbox it queues in (the transports ask it where a call goes, to pipeline). */
  readonly replica: MailboxReplica;
  constructor(replica: MailboxReplica, method: string, remote: boolean) {
    this.replica = replica;
    this.method = method;
    this.passErrors = remote;
    this.remote = remote;
    this.name = `${replica.def.name}.${method}`;
    this.node = replica.node;
  }
  ready(): void {
    this.replica.pump();
  }
  dropped(task: Task<unknown>): void {
    this.replica.dropped(task);
  }
  slotWait(task: Task<unknown>): SlotWait | undefined {
    return this.replica.slotWait(task);
  }
}
