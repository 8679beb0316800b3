/**
 * A call whose body returned a stream: its task completes at once with a {@linkcode Stream} over
 * the items, while its slot (the `done` callback: a mailbox slot, a concurrency limit) and its span
 * are held until the stream ends. Used by both ways a body runs (`run_body.ts`, `policy.ts`).
 *
 * @module
 */
import { contextEntered, currentContext, type RunContext, runningBody } from "./context.ts";
import { type CallName, CancelledError } from "./errors.ts";
import { emit } from "./events.ts";
import { failure, isThenable } from "./invoke.ts";
import { isAsyncGenerator, isGenerator, Stream, type StreamOptions } from "./stream.ts";
import { adoptChild, settle, State, type Task } from "./task.ts";

/**
 * Completes `task` with a {@linkcode Stream} over `source`; `done(task)` runs, and the task's
 * finished (or failed) event is emitted with its item count, when the stream ends.
 *
 * @param task The call.
 * @param source What its body returned (an async iterable, or a generator).
 * @param ctx The run context the producer's `next()` runs in.
 * @param done Gives the call's slot back.
 * @param deadline When the call's deadline passes (it covers the whole stream), if it has one.
 * @param rerun Runs the call's body again, for its retries (`undefined` once they are spent): a
 * generator that fails before its first item is taken is replaced by the one it returns.
 *
 * @example An op that streams: the ref resolves to the items as they come
 * ```ts
 * import { op } from "./op.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const count = op(async function* countTo(n: number) { for (let i = 1; i <= n; i++) yield i; });
 * const got: number[] = [];
 * for await (const x of await count.go(3)) got.push(x);
 * deepStrictEqual(got, [1, 2, 3]);
 * ```
 */
export function startStream(
  task: Task<unknown>,
  source: AsyncIterable<unknown> | Generator<unknown>,
  ctx: RunContext | undefined,
  done: ((task: Task<unknown>) => void) | undefined,
  deadline?: { at: number; timeoutMs: number },
  rerun?: () => unknown,
): void {
  const meta = task._meta;
  // a generator's body (async or not) runs in the call's context (what it submits is the call's child); any
  // other source (a remote stream, a ReadableStream) runs no code of the call's, and is not switched
  const generator = isAsyncGenerator(source) || isGenerator(source);
  const call = new StreamCall(task, generator ? ctx : undefined, done, deadline);
  const stream = new Stream(generator && rerun !== undefined ? new RetriedSource(source, rerun) : source, call);
  // a mesh that can close stops it then (the default runtime never closes: nothing to keep)
  const mesh = task._ctx?.mesh;
  if (mesh !== undefined && mesh.roster !== undefined && !stream.ended) {
    call.stream = stream;
    mesh.openStreams.set(stream, task);
  }
  // the task completes now, but its finished event waits for the end of the stream
  task._meta = undefined;
  settle(task, State.COMPLETED, stream);
  task._meta = meta;
}

/**
 * A streaming call's options for its {@linkcode Stream}: one object whose methods map the
 * producer's errors and end the call, rather than an options object and two closures per stream.
 */
class StreamCall implements StreamOptions {
  readonly name: string;
  readonly call: CallName;
  /** The call's record, if it is recorded (its finished event waits for the end of the stream). */
  readonly meta: Task<unknown>["_meta"];
  /** The stream, while its mesh lists it among its open ones. */
  stream: Stream<unknown> | undefined = undefined;
  constructor(
    readonly task: Task<unknown>,
    readonly ctx: RunContext | undefined,
    readonly done: ((task: Task<unknown>) => void) | undefined,
    readonly deadline: { at: number; timeoutMs: number } | undefined,
  ) {
    const target = task._target;
    this.name = target.name;
    this.call = target.kind === "method" ? { name: target.name, kind: "method" } : target.name;
    this.meta = task._meta;
  }

  fail(e: unknown): unknown {
    return failure(this.task, e);
  }

  /**
   * A body reads the stream: it becomes that body's child, as a call the body made is (structured
   * cancellation, `task.ts`). Cancelling the body, or its deadline, stops the stream (its generator's
   * `finally` runs, on its node too) and the body's next read rejects; a body cancelled already
   * gets none of it. The stream's call is the child: it completed with its stream, which is stopped
   * when its parent goes.
   */
  onRead(stream: Stream<unknown>): void {
    const body = (runningBody.task ?? (contextEntered ? currentContext()?.parent : undefined)) as
      | Task<unknown>
      | undefined;
    if (body === undefined || body === this.task || adoptChild(body, this.task)) return;
    stream.cancel(
      new CancelledError(
        this.call,
        `stopped: the body reading it (${body.id}) was ${
          body._state === State.CANCELLED ? "cancelled" : "past its deadline"
        }`,
        "parent",
      ),
    );
  }

  onEnd(items: number, error: unknown): void {
    const task = this.task, meta = this.meta;
    if (this.stream !== undefined) {
      task._ctx?.mesh?.openStreams.delete(this.stream);
      this.stream = undefined;
    }
    if (meta !== undefined) {
      const at = performance.now();
      meta.streamItems = items;
      meta.settledAt = at;
      if (error !== undefined) task._error = error;
      emit(error === undefined ? "finished" : error instanceof CancelledError ? "cancelled" : "failed", task, at);
    }
    if (this.done !== undefined) this.done(task);
  }
}

type Source = Iterator<unknown> | AsyncIterator<unknown>;

/**
 * A generator call's items while it has given none: a generator that fails before its first item
 * is replaced by the one its body, run again, returns (`rerun`, while the call has retries left),
 * as a call that failed is retried. Once an item came (or the end), it is the generator's own
 * `next()`: a stream that failed after items were taken is not run again, they would come twice.
 * Made only for a call with retries.
 */
class RetriedSource implements AsyncIterator<unknown> {
  #source: Source;
  readonly #rerun: () => unknown;
  /** An item came, or the end: no more retries. */
  #started = false;
  /** Stopped (its consumer left, a cancel, the deadline): a failure now is not retried. */
  #stopped = false;
  /** The first `next()`, while it (or its retries) is pending: a `next()` meanwhile waits for it. */
  #first: Promise<unknown> | undefined = undefined;

  constructor(source: AsyncIterable<unknown> | Generator<unknown>, rerun: () => unknown) {
    this.#source = source as Source;
    this.#rerun = rerun;
  }

  next(): Promise<IteratorResult<unknown>> {
    // (a generator's next() answers at once: so does this, where the stream does not await it)
    if (this.#started) return this.#source.next() as Promise<IteratorResult<unknown>>;
    const first = this.#first;
    if (first !== undefined) return first.then(() => this.next(), () => this.next());
    return this.#attempt() as Promise<IteratorResult<unknown>>;
  }

  /** The first item (or the end) of the generator now in place, or of the next that replaces it. */
  #attempt(): unknown {
    let r: unknown;
    try {
      r = this.#source.next();
    } catch (e) {
      return this.#again(e); // a generator (not async) that threw
    }
    if (!isThenable(r)) {
      this.#started = true;
      return r;
    }
    const first = Promise.resolve(r).then((item) => {
      this.#first = undefined;
      this.#started = true;
      return item;
    }, (e) => {
      this.#first = undefined;
      return this.#again(e);
    });
    this.#first = first;
    return first;
  }

  /** The generator failed before its first item: the body runs again, or the failure stands. */
  #again(error: unknown): unknown {
    const next = this.#stopped ? undefined : this.#rerun();
    if (!isAsyncGenerator(next) && !isGenerator(next)) throw error; // retries spent (or no generator came)
    this.#source = next as Source;
    return this.#attempt();
  }

  return(value?: unknown): Promise<IteratorResult<unknown>> {
    this.#stopped = true;
    const source = this.#source;
    return (source.return === undefined ? { done: true, value } : source.return(value)) as Promise<
      IteratorResult<unknown>
    >;
  }

  throw(error?: unknown): Promise<IteratorResult<unknown>> {
    this.#stopped = true;
    const source = this.#source;
    if (source.throw === undefined) throw error;
    return source.throw(error) as Promise<IteratorResult<unknown>>;
  }
}
