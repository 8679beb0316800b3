/**
 * Streams: an op or service method that is an async generator (or returns any `AsyncIterable`)
 * streams its items. Its ref resolves as soon as the call returns, to a {@linkcode Stream}: the
 * items in order, as they are produced, consumed once (`for await (const t of await ref)`), also
 * by a downstream op that takes the ref as an argument. The call keeps its slot (the instance's
 * mailbox, an op's concurrency limit) until the stream ends, so two streams on an instance with
 * `maxConcurrency: 1` never interleave; its span ends then too, with the item count. A consumer that
 * stops early (`break`), `ref.cancel()` or the call's deadline runs the generator's `finally`, and
 * so does the cancel or deadline of a body that reads the stream (its child: `stream_call.ts`).
 *
 * @module
 */
import type { TimerId } from "./_runtime.ts";
import { applyInContext, type RunContext } from "./context.ts";
import { type CallName, CancelledError, TimeoutError } from "./errors.ts";
import { endGrace, startGrace } from "./grace.ts";
import { setLongTimeout } from "./long_timer.ts";

/** What a {@linkcode Stream} tells its call when it ends: items taken, and the error it ended with. */
export type StreamEnd = (items: number, error: unknown) => void;

/** Options of a {@linkcode Stream}. */
export interface StreamOptions {
  /** The op or method that produced it (in errors). */
  readonly name?: string;
  /**
   * The same as its errors name it: a method's is a `Call` (default: `name`, an op's, an `Op`).
   * A `TimeoutError` or `CancelledError` of the stream carries its kind.
   */
  readonly call?: CallName;
  /** The run context each `next()` of the source runs in (the producing call's). */
  readonly ctx?: RunContext;
  /** Turns what the source threw into the error the consumer gets (default: as it is). */
  readonly fail?: (error: unknown) => unknown;
  /** Called once, when the stream ended: all items taken, the source threw, or it was stopped. */
  readonly onEnd?: StreamEnd;
  /**
   * Called once, in the reader's context, when it is first read (`next()`, `drain()`): a call's
   * stream becomes the child of the body that reads it (`stream_call.ts`).
   */
  readonly onRead?: (stream: Stream<unknown>) => void;
  /** `performance.now()` by which the stream must have ended, and the deadline's length in ms. */
  readonly deadline?: { readonly at: number; readonly timeoutMs: number };
}

/**
 * Whether `value` streams: an object with `Symbol.asyncIterator` (an async generator, a
 * `ReadableStream`, a {@linkcode Stream}), or a generator object (a `function*`'s result, whose
 * items are made as they are asked for). Other iterables (arrays, sets, maps) are values.
 *
 * @param value A body's result.
 * @returns `true` for an async iterable or a generator.
 *
 * @example
 * ```ts
 * import { isStreaming } from "./stream.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(isStreaming((async function* () { yield 1; })()), true);
 * strictEqual(isStreaming((function* () { yield 1; })()), true);
 * strictEqual(isStreaming([1, 2]), false);
 * ```
 */
export function isStreaming(value: unknown): value is AsyncIterable<unknown> | Generator<unknown> {
  return value !== null && typeof value === "object" &&
    (typeof (value as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === "function" ||
      isGenerator(value));
}

/** How long a stopped stream's producer may take to reach its `finally` before its slot is given back. */
const STOP_GRACE_MS = 1_000;

const DONE: IteratorReturnResult<undefined> = { done: true, value: undefined };
/** No `next()` waiting: a stream that is only drained (a node sending it) never makes a queue. */
const NO_WAITERS: never[] = [];
const ignore = (): void => {};
const toDone = (): IteratorReturnResult<undefined> => DONE;

type Settle<T> = (r: IteratorResult<T, undefined>) => void;
type Fail = (e: unknown) => void;
/**
 * A source that may have its next item at hand: `tryNext()` returns it (or the end) at once, or
 * `undefined` when `next()` has to wait; `tryReturn()`, when it has, stops it at once as `return()`
 * would (with no `next()` pending), with no promise.
 */
interface SyncSource<T> extends AsyncIterator<T> {
  tryNext?(): IteratorResult<T> | undefined;
  tryReturn?(): void;
}
interface Waiter<T> {
  resolve: Settle<T>;
  reject: Fail;
}

/**
 * What {@linkcode Stream.drainTo} hands a stream's items to, and tells how the drain ended: one
 * object for a stream's life (a node sending a stream over the wire is one), with no promise or
 * closure per drain.
 */
export interface StreamTaker<T> {
  /** Gets each item; returns whether it wants another (it must not throw). */
  take(item: T): boolean;
  /** The drain is over: `true` once the stream ended (all items taken), `false` when `take` said stop. */
  drained(ended: boolean): void;
  /** An error of the producer (mapped by the stream's `fail`), or why the stream was stopped (a cancel, its deadline). */
  failed(error: unknown): void;
}

/**
 * The items of a streaming call, in order, as they come: an async iterator, consumed once. Leaving
 * a `for await` early (`break`, a throw) or {@linkcode Stream.cancel} stops the producer (its
 * generator's `finally` runs); an error of the producer reaches the consumer after the items before
 * it.
 *
 * @example A generator's items, then its end
 * ```ts
 * import { Stream } from "./stream.ts";
 * import { deepStrictEqual, strictEqual } from "node:assert/strict";
 * let ended = -1;
 * const s = new Stream((async function* () { yield 1; yield 2; })(), { onEnd: (n) => (ended = n) });
 * const got: number[] = [];
 * for await (const x of s) got.push(x);
 * deepStrictEqual(got, [1, 2]);
 * strictEqual(ended, 2);
 * ```
 */
export class Stream<T> implements AsyncGenerator<T, undefined, undefined> {
  readonly #source: AsyncIterator<T>;
  /** The source, when it may have its next item at hand (see SyncSource). */
  readonly #sync: SyncSource<T> | undefined;
  readonly #options: StreamOptions;
  #items = 0;
  #ended = false;
  /** Why the stream was stopped (a cancel, a deadline): pending and later `next()`s reject with it. */
  #stopped: unknown = undefined;
  #iterated = false;
  /** Whether a reader took an item, or asked for one, already (see {@linkcode StreamOptions.onRead}). */
  #read = false;
  /** The consumer's pending `next()`s, oldest first from `#head`: a stop rejects them at once. */
  #waiting: (Waiter<T> | undefined)[] = NO_WAITERS;
  #head = 0;
  /** The pending {@linkcode Stream.drain}'s promise: a stop rejects it at once. */
  #taker: StreamTaker<T> | undefined;
  /** How to wake the drain's loop while it is parked (see #drainLoop). */
  #parked: (() => void) | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;

  /**
   * @param source What produces the items (an async generator, any async iterator or iterable, or a
   * generator: its `next()` answers at once, and is not awaited where the stream is drained).
   * @param options Name, run context, error mapping, end callback and deadline.
   */
  constructor(source: AsyncIterator<T> | AsyncIterable<T> | Generator<T>, options: StreamOptions = {}) {
    const it = source as Partial<AsyncIterator<T>> & Partial<AsyncIterable<T>>;
    this.#source = typeof it.next === "function" ? it as AsyncIterator<T> : it[Symbol.asyncIterator]!();
    const sync = this.#source as SyncSource<T>;
    this.#sync = typeof sync.tryNext === "function" ? sync : undefined;
    this.#options = options;
    const d = options.deadline;
    if (d !== undefined) this.#startDeadline(d);
  }

  // (apart from the constructor and next(): a function that makes a closure makes a scope for it on
  // every call, on Bun whether or not the closure is made)
  #startDeadline(d: { readonly at: number; readonly timeoutMs: number }): void {
    const left = Math.max(0, d.at - performance.now());
    // a long timer: a deadline of 2^31 ms or more must not fire at once, as a plain setTimeout does;
    // #timer is the step it waits on now, so that clearing it stops the chain
    setLongTimeout(
      () => {
        this.#timer = undefined;
        this.#stop(new TimeoutError(this.#callName(), d.timeoutMs));
      },
      left,
      (timer) => (this.#timer = timer),
    );
  }

  /** The producing call, as errors name it. */
  #callName(): CallName {
    return this.#options.call ?? this.#options.name ?? "stream";
  }

  /** Items taken so far. */
  get items(): number {
    return this.#items;
  }

  /** True once the stream ended (all items taken, an error, or stopped). */
  get ended(): boolean {
    return this.#ended;
  }

  /** The next item (or the end); an error of the producer rejects, after the items before it. */
  next(): Promise<IteratorResult<T, undefined>> {
    if (!this.#read) this.#readBy();
    // a source that holds items already (a remote stream's chunk) hands one over without a wait
    const sync = this.#sync;
    if (sync !== undefined && !this.#ended && this.#head === this.#waiting.length && this.#parked === undefined) {
      let r: IteratorResult<T> | undefined;
      try {
        r = sync.tryNext!();
      } catch (e) {
        return Promise.reject(this.#failed(e));
      }
      if (r !== undefined) {
        if (r.done) {
          this.#end(undefined);
          return Promise.resolve(DONE);
        }
        this.#items++;
        return Promise.resolve(r as IteratorResult<T, undefined>);
      }
    }
    if (this.#ended) return this.#stopped !== undefined ? Promise.reject(this.#stopped) : Promise.resolve(DONE);
    if (this.#parked !== undefined) {
      return Promise.reject(
        new TypeError(`Cannot read the stream of "${this.#options.name ?? "stream"}": it is being drained`),
      );
    }
    return this.#wait();
  }

  /**
   * The source's `next()`, whose answer the caller waits for (kept out of next(), whose item at
   * hand then costs no closure scope).
   */
  #wait(): Promise<IteratorResult<T, undefined>> {
    let p: Promise<IteratorResult<T>>;
    try {
      const ctx = this.#options.ctx;
      const src = this.#source;
      p = ctx === undefined
        ? src.next()
        : applyInContext(ctx, src.next as () => unknown, src, []) as Promise<IteratorResult<T>>;
    } catch (e) {
      return Promise.reject(this.#failed(e));
    }
    // a stop (cancel, deadline) rejects the pending next() at once: the producer may be stuck.
    // The source settles its next()s in order, so each answer goes to the oldest one waiting.
    const waiter = { resolve: undefined as unknown as Settle<T>, reject: undefined as unknown as Fail };
    const out = new Promise<IteratorResult<T, undefined>>((resolve, reject) => {
      waiter.resolve = resolve;
      waiter.reject = reject;
    });
    if (this.#waiting === NO_WAITERS) this.#waiting = [];
    this.#waiting.push(waiter);
    (p instanceof Promise ? p : Promise.resolve(p)).then(
      this.#onValue ??= (r) => this.#valueCame(r),
      this.#onError ??= (e) => this.#errorCame(e),
    );
    return out;
  }

  /**
   * Hands the items to `take` as fast as the producer makes them, until `take` returns `false` or
   * the stream ends: the producer's `next()` in a tight loop, in the call's context entered once,
   * with no promise or record per item (a node sending a stream over the wire takes its items this
   * way; a consumer's `next()` costs a promise each). Not to be mixed with a pending `next()`.
   *
   * @param take Gets each item; returns whether it wants another (it must not throw).
   * @returns `true` once the stream ended (all items taken), `false` when `take` said stop. An error
   * of the producer, or the reason the stream was stopped (a cancel, its deadline), rejects.
   *
   * @example Items in batches of two
   * ```ts
   * import { Stream } from "./stream.ts";
   * import { deepStrictEqual, strictEqual } from "node:assert/strict";
   * const s = new Stream((async function* () { yield 1; yield 2; yield 3; })());
   * const got: number[] = [];
   * strictEqual(await s.drain((x) => got.push(x) % 2 !== 0), false);
   * deepStrictEqual(got, [1, 2]);
   * strictEqual(await s.drain((x) => got.push(x) > 0), true);
   * deepStrictEqual(got, [1, 2, 3]);
   * ```
   */
  drain(take: (item: T) => boolean): Promise<boolean> {
    if (!this.#read) this.#readBy();
    return new Promise<boolean>((drained, failed) => this.drainTo({ take, drained, failed }));
  }

  /** Its first read: its options are told, in the reader's context (see {@linkcode StreamOptions.onRead}). */
  #readBy(): void {
    this.#read = true;
    const options = this.#options;
    if (options.onRead !== undefined) options.onRead(this as Stream<unknown>);
  }

  /**
   * {@linkcode Stream.drain} with a taker instead of a promise: `taker.take` gets the items, and
   * `taker.drained` or `taker.failed` is told how the drain ended, at once when it is over already
   * (the stream ended, was stopped, or is being read). A stop (a cancel, the deadline) tells
   * `failed` within the `cancel()` call.
   *
   * @param taker Takes the items, and is told the end.
   *
   * @example Items into an array, as a node's outlet takes them
   * ```ts
   * import { Stream } from "./stream.ts";
   * import { deepStrictEqual } from "node:assert/strict";
   * const got: number[] = [];
   * const ended = await new Promise<boolean>((drained, failed) =>
   *   new Stream((async function* () { yield 1; yield 2; })()).drainTo({ take: (x) => got.push(x) > 0, drained, failed })
   * );
   * deepStrictEqual([got, ended], [[1, 2], true]);
   * ```
   */
  drainTo(taker: StreamTaker<T>): void {
    if (this.#ended) return this.#stopped !== undefined ? taker.failed(this.#stopped) : taker.drained(true);
    if (this.#taker !== undefined || this.#head < this.#waiting.length) {
      return taker.failed(
        new TypeError(`Cannot drain the stream of "${this.#options.name ?? "stream"}": it is being read`),
      );
    }
    this.#taker = taker;
    // a loop parked by an earlier drain goes on where it stopped (its producer is at a yield)
    const parked = this.#parked;
    if (parked !== undefined) {
      this.#parked = undefined;
      return parked();
    }
    const ctx = this.#options.ctx;
    // the loop's awaits keep the context it started in: one switch for all the items it takes
    if (ctx === undefined) void this.#drainLoop();
    else void applyInContext(ctx, this.#drainLoop as (...args: unknown[]) => unknown, this, []);
  }

  /**
   * The drain's loop, for the stream's life: when `take` says stop, the drain resolves `false` and
   * the loop parks (its producer at a yield) until the next drain, or a stop, wakes it. An async
   * generator is read with `for await` (on Bun cheaper per item than awaiting each `next()`, and a
   * loop that parks instead of leaving never calls its `return()`); any other source with its
   * `next()`, awaited only when it returns a promise (a source with items at hand hands them over
   * with no microtask turn each).
   */
  async #drainLoop(): Promise<void> {
    const src = this.#source;
    let ended = false;
    try {
      if (isAsyncGenerator(src)) {
        for await (const item of src as AsyncGenerator<T>) {
          // stopped meanwhile (#stop told the taker already): leaving runs return(), a no-op
          // after #close's
          if (this.#ended) return;
          this.#items++;
          if (!this.#taker!.take(item) && (this.#ended || !await this.#park())) return;
        }
      } else {
        for (;;) {
          // a source whose next() returns its result itself (no promise) is not awaited
          const r: unknown = src.next();
          const res = (r instanceof Promise || typeof (r as { then?: unknown }).then === "function"
            ? await r
            : r) as IteratorResult<T>;
          if (this.#ended) {
            return;
          }
          if (res.done) {
            break;
          }
          this.#items++;
          if (!this.#taker!.take(res.value) && (this.#ended || !await this.#park())) {
            return;
          }
        }
      }
      if (this.#ended) return;
      this.#end(undefined);
      ended = true;
    } catch (e) {
      if (this.#ended) return;
      const t = this.#taker!;
      this.#taker = undefined;
      return t.failed(this.#failed(e));
    }
    const t = this.#taker;
    this.#taker = undefined;
    t?.drained(ended);
  }

  /**
   * `take` said stop: the drain resolves `false`, and the loop waits for the next drain (`true`) or
   * for the stream to be stopped (`false`: the loop leaves).
   */
  #park(): Promise<boolean> {
    const t = this.#taker!;
    this.#taker = undefined;
    const woken = new Promise<boolean>((resolve) => (this.#parked = () => resolve(!this.#ended)));
    t.drained(false);
    return woken;
  }

  #oldest(): Waiter<T> | undefined {
    const q = this.#waiting;
    const w = q[this.#head];
    if (w === undefined) return undefined;
    q[this.#head++] = undefined;
    if (this.#head === q.length) {
      q.length = 0;
      this.#head = 0;
    }
    return w;
  }

  /** What settles the oldest `next()` (made on the first that waits: a drained stream never needs them). */
  #onValue: ((r: IteratorResult<T>) => void) | undefined;
  #onError: ((e: unknown) => void) | undefined;

  #valueCame(r: IteratorResult<T>): void {
    const w = this.#oldest();
    if (w === undefined) return; // rejected by a stop meanwhile
    if (this.#ended) return w.resolve(DONE);
    if (r.done) {
      this.#end(undefined);
      return w.resolve(DONE);
    }
    this.#items++;
    w.resolve(r as IteratorResult<T, undefined>);
  }

  #errorCame(e: unknown): void {
    const w = this.#oldest();
    if (w === undefined) return;
    w.reject(this.#failed(e));
  }

  /** Stops the stream (a `for await` left early): the producer's `finally` runs. */
  return(): Promise<IteratorResult<T, undefined>> {
    const closing = this.#ended ? undefined : this.#close(undefined);
    return closing === undefined ? Promise.resolve(DONE) : closing.then(toDone);
  }

  /** Stops the stream with `error` thrown into the producer (its `catch`/`finally` run). */
  async throw(error?: unknown): Promise<IteratorResult<T, undefined>> {
    if (this.#ended) throw error;
    const src = this.#source;
    if (typeof src.throw !== "function") {
      await this.#close(error);
      throw error;
    }
    try {
      const r = await src.throw(error);
      if (!r.done) this.#items++;
      if (r.done) this.#end(undefined);
      return r as IteratorResult<T, undefined>;
    } catch (e) {
      throw this.#failed(e);
    }
  }

  /**
   * Stops the stream: the producer's `finally` runs, and the consumer's pending and later `next()`s
   * reject with `reason` (default a `CancelledError`).
   *
   * @param reason What the consumer's `next()` rejects with.
   * @returns `false` when the stream had ended already.
   */
  cancel(reason?: unknown): boolean {
    if (this.#ended) return false;
    this.#stop(reason ?? new CancelledError(this.#callName(), "cancelled mid-stream"));
    return true;
  }

  /** The stream itself; a second iteration is a `TypeError` (a stream is consumed once). */
  [Symbol.asyncIterator](): this {
    if (this.#iterated) {
      throw new TypeError(
        `Cannot iterate the stream of "${this.#options.name ?? "stream"}" again: a stream is consumed once ` +
          `(${this.#items} items were taken already)`,
      );
    }
    this.#iterated = true;
    return this;
  }

  /** `await using` a stream stops it when the scope ends. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.return();
  }

  #stop(reason: unknown): void {
    if (this.#ended) return;
    this.#stopped = reason;
    // a next() still pending: the producer may be inside an await, and its return() wait for it
    const busy = this.#head < this.#waiting.length || this.#taker !== undefined;
    for (let w = this.#oldest(); w !== undefined; w = this.#oldest()) w.reject(reason);
    const t = this.#taker;
    this.#taker = undefined;
    t?.failed(reason);
    this.#close(reason, busy)?.catch(ignore);
  }

  /**
   * Ends the stream, running the producer's `finally` (its `return()`), then tells the call: at once
   * (`undefined`) when the source is done with it as its `return()` comes back (a remote stream's
   * chunks, with no `next()` pending), else once its returned promise settles.
   */
  #close(
    error: unknown,
    busy = this.#head < this.#waiting.length || this.#taker !== undefined,
  ): Promise<void> | undefined {
    if (this.#ended) return undefined;
    this.#ended = true;
    this.#clearTimer();
    this.#wake();
    const src = this.#source, sync = this.#sync;
    let returned: unknown;
    try {
      if (!busy && sync !== undefined && typeof sync.tryReturn === "function") sync.tryReturn();
      else if (typeof src.return === "function") {
        const ctx = this.#options.ctx;
        returned = ctx === undefined ? src.return() : applyInContext(ctx, src.return as () => unknown, src, []);
      }
    } catch {
      // the producer's finally threw: the stream ends all the same
    }
    if (returned === undefined || !busy && this.#sync !== undefined) {
      (returned as Promise<unknown> | undefined)?.then?.(undefined, ignore);
      try {
        this.#tell(error);
      } catch (e) {
        return Promise.reject(e); // as the async path would
      }
      return undefined;
    }
    return this.#closing(returned, busy, error);
  }

  async #closing(returned: unknown, busy: boolean, error: unknown): Promise<void> {
    try {
      // at a yield (no next() pending) the producer's finally runs at once: no grace to keep
      if (!busy) return void await returned;
      // a generator inside an await runs its finally only once that await settles (JavaScript
      // cannot interrupt it): its slot is given back after a grace period all the same, as for
      // any body that cannot be stopped (policy.ts), so one stuck producer cannot wedge its instance
      // (the grace timer holds the process only while some ref is awaited: grace.ts)
      let timer: TimerId | undefined;
      const grace = new Promise<void>((resolve) => (timer = startGrace(STOP_GRACE_MS, resolve)));
      await Promise.race([returned, grace]);
      endGrace(timer!);
    } catch {
      // the producer's finally threw: the stream ends all the same
    } finally {
      this.#tell(error);
    }
  }

  #failed(e: unknown): unknown {
    const error = this.#options.fail === undefined ? e : this.#options.fail(e);
    this.#end(error);
    return error;
  }

  #end(error: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#clearTimer();
    this.#wake();
    this.#tell(error);
  }

  #tell(error: unknown): void {
    // called as the options' method: a call's options are one object with its methods (stream_call.ts)
    const options = this.#options;
    if (options.onEnd !== undefined) options.onEnd(this.#items, error);
  }

  /** A parked drain loop leaves (the stream ended): it returns, and nothing holds it. */
  #wake(): void {
    const parked = this.#parked;
    this.#parked = undefined;
    parked?.();
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

/**
 * Whether `v` is an async generator object (as `Object.prototype.toString` would say, by its
 * `Symbol.toStringTag`, read without making the string).
 *
 * @param v A body's result.
 * @returns `true` for an async generator.
 *
 * @example
 * ```ts
 * import { isAsyncGenerator } from "./stream.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(isAsyncGenerator((async function* () {})()), true);
 * strictEqual(isAsyncGenerator({ [Symbol.asyncIterator]() {} }), false);
 * ```
 */
export function isAsyncGenerator(v: unknown): boolean {
  return typeof v === "object" && v !== null &&
    (v as { [Symbol.toStringTag]?: unknown })[Symbol.toStringTag] === "AsyncGenerator";
}

/**
 * Whether `v` is a generator object (a `function*`'s result, by its `Symbol.toStringTag`): a stream
 * whose producer hands each item over as it is asked for, with no promise per item.
 *
 * @param v A body's result.
 * @returns `true` for a (synchronous) generator.
 *
 * @example
 * ```ts
 * import { isGenerator } from "./stream.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(isGenerator((function* () {})()), true);
 * strictEqual(isGenerator((async function* () {})()), false);
 * strictEqual(isGenerator([1][Symbol.iterator]()), false);
 * ```
 */
export function isGenerator(v: unknown): boolean {
  return typeof v === "object" && v !== null &&
    (v as { [Symbol.toStringTag]?: unknown })[Symbol.toStringTag] === "Generator";
}
