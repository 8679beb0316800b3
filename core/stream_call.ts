/**
 * A call whose body returned a stream: its task completes at once with a {@linkcode Stream} over
 * the items, while its slot (the `done` callback: a mailbox slot, a concurrency limit) and its span
 * are held until the stream ends. Used by both ways a body runs (`run_body.ts`, `policy.ts`).
 *
 * @module
 */
import type { RunContext } from "./context.ts";
import { type CallName, CancelledError } from "./errors.ts";
import { emit } from "./events.ts";
import { failure } from "./invoke.ts";
import { isAsyncGenerator, isGenerator, Stream, type StreamOptions } from "./stream.ts";
import { settle, State, type Task } from "./task.ts";

/**
 * Completes `task` with a {@linkcode Stream} over `source`; `done(task)` runs, and the task's
 * finished (or failed) event is emitted with its item count, when the stream ends.
 *
 * @param task The call.
 * @param source What its body returned (an async iterable, or a generator).
 * @param ctx The run context the producer's `next()` runs in.
 * @param done Gives the call's slot back.
 * @param deadline When the call's deadline passes (it covers the whole stream), if it has one.
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
): void {
  const meta = task._meta;
  // a generator's body (async or not) runs in the call's context (what it submits is the call's child); any
  // other source (a remote stream, a ReadableStream) runs no code of the call's, and is not switched
  const call = new StreamCall(task, isAsyncGenerator(source) || isGenerator(source) ? ctx : undefined, done, deadline);
  const stream = new Stream(source, call);
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
