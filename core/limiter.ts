/**
 * Concurrency limits (an op's `maxConcurrency`, a mesh's `maxConcurrentOps`): small counting semaphores
 * whose waiters are tasks, handed slots in FIFO order.
 *
 * @module
 */
import { State, type Task } from "./task.ts";

const { PENDING } = State;

/**
 * The default `maxWaiting` of an op with `maxConcurrency`: ready calls that may wait for a slot
 * before more are refused with `OverloadedError`.
 *
 * @example
 * ```ts
 * import { DEFAULT_MAX_WAITING } from "./limiter.ts";
 * if (DEFAULT_MAX_WAITING !== 100_000) throw new Error("unexpected");
 * ```
 */
export const DEFAULT_MAX_WAITING: number = 100_000;

/**
 * A counting semaphore whose waiters are tasks; a released slot goes to the oldest
 * waiting task that is still pending.
 */
export class Limiter {
  readonly max: number;
  /** Tasks that may wait for a slot; past it {@linkcode acquire} refuses (`Infinity`: unbounded). */
  readonly maxWaiting: number;
  running = 0;
  private waiting: Task<unknown>[] = [];
  private head = 0;
  private resumes: Array<(task: Task<unknown>) => void> = [];

  constructor(max: number, maxWaiting: number = Infinity) {
    this.max = max;
    this.maxWaiting = maxWaiting;
  }

  /**
   * Starts `task` through `start` now if a slot is free, else when one frees up; returns false (and
   * neither starts nor keeps it) when `maxWaiting` tasks already wait.
   */
  acquire(task: Task<unknown>, start: (task: Task<unknown>) => void): boolean {
    if (this.running < this.max) {
      this.running++;
      start(task);
    } else {
      if (this.full()) return false;
      this.waiting.push(task);
      this.resumes.push(start);
    }
    return true;
  }

  /** Whether {@linkcode acquire} would refuse a task now: every slot taken, `maxWaiting` tasks waiting. */
  full(): boolean {
    if (this.running < this.max || this.waiting.length - this.head < this.maxWaiting) return false;
    this.prune(); // cancelled waiters do not count against the bound
    return this.waiting.length - this.head >= this.maxWaiting;
  }

  private releasing = false;

  /**
   * Frees a slot and hands it to the next waiting task. A task started here that finishes
   * synchronously releases from inside this loop: that nested release only frees its slot, and this
   * loop hands it on (no stack per queued task).
   */
  release(): void {
    this.running--;
    if (this.releasing) return;
    this.releasing = true;
    try {
      this.handOn();
    } finally {
      this.releasing = false;
    }
  }

  /**
   * Forgets the waiting tasks that settled meanwhile (a closed mesh cancelled them), so they are not
   * held until a slot frees, which may be never. Not while handing slots on (that loop skips them).
   */
  prune(): void {
    if (this.releasing) return;
    const waiting = this.waiting, resumes = this.resumes;
    let kept = 0;
    for (let i = this.head; i < waiting.length; i++) {
      if (waiting[i]._state !== PENDING) continue;
      waiting[kept] = waiting[i];
      resumes[kept] = resumes[i];
      kept++;
    }
    waiting.length = kept;
    resumes.length = kept;
    this.head = 0;
  }

  /**
   * For `explain()`: how many pending tasks wait ahead of `task` here, or -1 when it waits for no
   * slot of this limiter. A scan, done only when asked.
   */
  positionOf(task: Task<unknown>): number {
    let ahead = 0;
    for (let i = this.head; i < this.waiting.length; i++) {
      const t = this.waiting[i];
      if (t === task) return ahead;
      if (t !== undefined && t._state === PENDING) ahead++;
    }
    return -1;
  }

  private handOn(): void {
    while (this.head < this.waiting.length && this.running < this.max) {
      const task = this.waiting[this.head];
      const start = this.resumes[this.head];
      this.waiting[this.head] = undefined as unknown as Task<unknown>;
      this.head++;
      if (task._state !== PENDING) continue;
      this.running++;
      start(task);
    }
    if (this.head === this.waiting.length) {
      this.waiting.length = 0;
      this.resumes.length = 0;
      this.head = 0;
    }
  }
}
