/**
 * `ObjectRef<T>`: what `.go()` returns at once — a reference to a call's result, usable wherever a
 * value is (`await`, `Promise.all`, as another call's argument). The object behind it is the task
 * itself (`task.ts`); this interface is all of it that is public. Nothing else keeps a settled ref
 * alive, so results live as long as user code holds their refs, or until it releases them
 * (`ref.release()`, `using ref = op.go(...)`).
 *
 * @module
 */
import type { Effect } from "effect";
import type { TaskError } from "./errors.ts";
import type { TaskInfo } from "./events.ts";
import { waiterAdded, waiterDone } from "./grace.ts";
import { describe } from "./describe.ts";
import { type Explanation, formatExplanation } from "./explain.ts";
import { LazyValue } from "./lazy_value.ts";
import {
  addWaiter,
  cycleError,
  leaveParent,
  type RefStatus,
  releasedError,
  State,
  Task,
  type Waiter,
  waitingBody,
} from "./task.ts";

const { COMPLETED } = State;

export type { RefStatus } from "./task.ts";

/**
 * A reference to the result of a submitted op or service call. It is `PromiseLike`, so `await`,
 * `Promise.all` and `Promise.race` work; it can be passed to other `.go()` calls as an argument
 * (also inside arrays and plain objects), which makes the callee wait for it.
 *
 * @example Await a ref, or pass it on
 * ```ts
 * import { op } from "../mod.ts";
 * const addOne = op(async function addOne(x: number) { return x + 1; });
 * const ref = addOne.go(1);
 * const twice = addOne.go(ref);
 * if ((await twice) !== 3 || ref.status !== "completed") throw new Error("unexpected");
 * ```
 */
export interface ObjectRef<T> extends PromiseLike<T>, TaskInfo, Disposable {
  /** `"pending"` (waiting for inputs or a slot), `"running"`, `"completed"`, `"failed"` or `"cancelled"`. */
  readonly status: RefStatus;
  /**
   * Attaches callbacks like `Promise.prototype.then`. Rejections are thinkagain errors
   * (`OpExecutionError`, `CancelledError`, `TimeoutError`, …).
   */
  then<R1 = T, R2 = never>(
    onfulfilled?: ((value: T) => R1 | PromiseLike<R1>) | null,
    onrejected?: ((reason: unknown) => R2 | PromiseLike<R2>) | null,
  ): Promise<R1 | R2>;
  /** Like `Promise.prototype.catch`. */
  catch<R = never>(onrejected?: ((reason: unknown) => R | PromiseLike<R>) | null): Promise<T | R>;
  /** Like `Promise.prototype.finally`. */
  finally(onfinally?: (() => void) | null): Promise<T>;
  /** A real Promise of the result (created on first use, then reused). */
  promise(): Promise<T>;
  /** The result as an Effect: succeeds with the value, fails with the same error instance `await` rejects with. */
  readonly effect: Effect.Effect<T, TaskError>;
  /**
   * Cancels the task: a pending one never starts; a running one is interrupted where the executor
   * can (retries/timeouts, remote calls) and its result is ignored otherwise. The ref and every
   * dependent reject with `CancelledError`.
   *
   * @returns `true` if the task was still pending or running, `false` if it had already settled.
   */
  cancel(): boolean;
  /**
   * Why it is not done yet: the inputs it waits for (recursively, down to those running or stuck),
   * the slot it waits for (its op's `maxConcurrency`, the mesh's `maxConcurrentOps`, its instance's
   * mailbox and the calls ahead of it), its node and whether that node answered its last
   * keepalive, and for how long. Cheap enough to call in a loop; costs nothing when not called.
   */
  explain(): Explanation;
  /**
   * Gives up this process's hold on the result, without waiting for the garbage collector: a
   * result that stayed on a node (larger than the inline threshold) is freed there as soon as no
   * call in flight carries it (a call it was passed to and that has not finished keeps it). A value
   * held in this process is left to the collector. Idempotent. Awaiting the ref or passing it to a
   * call afterwards fails with `ReleasedError` naming the ref and its op.
   *
   * @example Free each intermediate result as soon as the next stage has it
   * ```ts
   * import * as ta from "../mod.ts";
   * const embed = ta.op(async function releaseDocEmbed(x: number) { return [x, x]; });
   * const score = ta.op(async function releaseDocScore(v: number[]) { return v[0] + v[1]; });
   * let total = 0;
   * for (let i = 0; i < 3; i++) {
   *   using v = embed.go(i); // released at the end of the block (Symbol.dispose)
   *   total += await score.go(v); // passed on before the release: the call keeps it until it ends
   * }
   * if (total !== 6) throw new Error("unexpected");
   * const r = embed.go(1);
   * r.release();
   * r.release(); // idempotent
   * await r.then(() => { throw new Error("unexpected"); }, (e) => {
   *   if (!(e instanceof ta.ReleasedError)) throw e;
   * });
   * ```
   */
  release(): void;
  /** Same as {@linkcode ObjectRef.release}: `using ref = op.go(...)` releases it at the end of the block. */
  [Symbol.dispose](): void;
  /** Plain-text form for logs: `ObjectRef(<id>, <status>)`. */
  toString(): string;
  /**
   * What `JSON.stringify` writes for a ref: its plain-text form, `"ObjectRef(<id>, <status>)"`,
   * never the call's arguments or its value (a ref logged as JSON leaks neither). A ref is this
   * process's handle on a call, not data: it cannot be structured-cloned (`structuredClone`,
   * `postMessage` throw a `DataCloneError`); send its value (`await ref`) instead.
   *
   * @example A ref in a JSON log line
   * ```ts
   * import * as ta from "../mod.ts";
   * import { throws } from "node:assert/strict";
   * const login = ta.op(async function toJsonDocLogin(user: string, password: string) { return user.length + password.length; });
   * const ref = login.go("alice", "hunter2");
   * const line = JSON.stringify({ event: "submitted", ref });
   * if (line !== `{"event":"submitted","ref":"${ref}"}` || line.includes("hunter2")) throw new Error(line);
   * throws(() => structuredClone(ref), (e: Error) => e.name === "DataCloneError");
   * await ref;
   * ```
   */
  toJSON(): string;
}

/** The `ObjectRef` value: only for `x instanceof ObjectRef` (refs are made by `.go()`). */
export interface ObjectRefConstructor {
  /** True when `value` is a ref returned by `.go()`. */
  [Symbol.hasInstance](value: unknown): value is ObjectRef<unknown>;
}

/**
 * Tells refs from other values: `x instanceof ObjectRef`.
 *
 * @example
 * ```ts
 * import { ObjectRef, op } from "../mod.ts";
 * const inc = op(async function inc(x: number) { return x + 1; });
 * if (!(inc.go(1) instanceof ObjectRef) || (Promise.resolve(1) instanceof ObjectRef)) throw new Error("unexpected");
 * ```
 */
export const ObjectRef: ObjectRefConstructor = Object.freeze({
  [Symbol.hasInstance](value: unknown): value is ObjectRef<unknown> {
    return value instanceof Task;
  },
});

// ---- structured cancellation ------------------------------------------------------------------

/**
 * Lets a ref outlive the call that submitted it. A call submitted inside an op's or method's body
 * is that body's child: cancelling the parent (or its deadline passing) cancels it too, on nodes as
 * well. `detach(ref)` makes it a root, as if it had been submitted outside any body. Detaching a
 * ref that has no parent (or has settled) changes nothing.
 *
 * @param ref A ref from `.go()`.
 * @returns The same ref.
 * @throws {TypeError} When `ref` is not a ref from `.go()`.
 *
 * @example Background work that survives its caller's cancel
 * ```ts
 * import * as ta from "../mod.ts";
 * const gate = Promise.withResolvers<void>();
 * const submitted = Promise.withResolvers<{ ref: ta.ObjectRef<string> }>(); // a ref is a thenable: wrap it
 * const background = ta.op(async function background() {
 *   await gate.promise;
 *   return "kept";
 * });
 * const caller = ta.op(async function caller() {
 *   submitted.resolve({ ref: ta.detach(background.go()) });
 *   await gate.promise;
 * });
 * const ref = caller.go();
 * const kept = (await submitted.promise).ref;
 * ref.cancel();
 * gate.resolve();
 * if ((await kept) !== "kept") throw new Error("the detached call was cancelled with its caller");
 * ```
 */
export function detach<T>(ref: ObjectRef<T>): ObjectRef<T> {
  if (!(ref instanceof Task)) throw new TypeError(`detach() expects a ref from .go(), got ${describe(ref)}`);
  if (ref._family !== undefined) leaveParent(ref as Task<unknown>);
  return ref;
}

/**
 * Prints why `ref` is not done yet (see {@linkcode ObjectRef.explain}) with `console.log`, one line
 * per ref, its pending inputs indented below it, and returns the text.
 *
 * @param ref A ref from `.go()`.
 * @returns The text printed.
 * @throws {TypeError} When `ref` is not a ref from `.go()`.
 *
 * @example A call queued behind a slow call in its instance's mailbox
 * ```ts
 * import * as ta from "../mod.ts";
 * const gate = Promise.withResolvers<void>();
 * const Model = ta.service(class ExplainDocModel {
 *   async run(x: number) { await gate.promise; return x; }
 * });
 * const m = Model.init();
 * const slow = m.run.go(1);
 * const queued = m.run.go(2);
 * await Promise.resolve(); // the first call starts
 * const text = ta.explain(queued);
 * if (!text.includes(`running: ${slow.id}`)) throw new Error(text);
 * gate.resolve();
 * await ta.all([slow, queued]);
 * ```
 */
export function explain(ref: ObjectRef<unknown>): string {
  if (!(ref instanceof Task)) throw new TypeError(`explain() expects a ref from .go(), got ${describe(ref)}`);
  const text = formatExplanation(ref.explain());
  console.log(text);
  return text;
}

// ---- fan-in without a promise per ref ---------------------------------------------------------

/**
 * Waits for every ref (or plain value) in `items`, like `Promise.all`, but without building a
 * promise per ref: cheaper in time and memory for large fan-ins. Rejects with the first failed
 * ref's own error.
 *
 * @param items Refs and/or values.
 * @returns The values, in order.
 *
 * @example
 * ```ts
 * import * as ta from "../mod.ts";
 * const sq = ta.op(async function sq(x: number) { return x * x; });
 * const out = await ta.all([sq.go(2), sq.go(3), 4]);
 * if (out.join() !== "4,9,4") throw new Error("unexpected");
 * ```
 */
export function all<T extends readonly unknown[]>(items: T): Promise<{ -readonly [K in keyof T]: Awaited<T[K]> }> {
  type Out = { -readonly [K in keyof T]: Awaited<T[K]> };
  if (!Array.isArray(items)) return Promise.reject(new TypeError("all() expects an array of refs or values"));
  return new Promise<Out>((resolve, reject) => {
    const out = new Array(items.length);
    let left = items.length;
    let failed = false;
    // counted as one waiter while it waits for a pending ref (see grace.ts)
    let waits = false;
    const fail = (e: unknown) => {
      // the refs still running keep this (now inert) waiter until they settle: removing it from each
      // would cost a search per ref, quadratic when many fan-ins share a long-running ref
      if (failed) return;
      failed = true;
      if (waits) waiterDone();
      reject(e);
    };
    // a ref that waits for the body calling this (if any) would never settle
    const body = waitingBody();
    let cycle: TypeError | undefined;
    // refs' values are read once all have settled, so one waiter serves every ref
    const finish = () => {
      // a value kept on a node (a LazyValue) is fetched, once, as `await ref` fetches it
      let lazy: Promise<void>[] | undefined;
      for (let i = 0; i < items.length; i++) {
        const v = items[i];
        if (!(v instanceof Task)) continue;
        const value = v._value;
        if (value instanceof LazyValue) (lazy ??= []).push(value.materialize().then((x) => void (out[i] = x)));
        else out[i] = value;
      }
      if (waits) waiterDone();
      if (lazy === undefined) resolve(out as Out);
      else Promise.all(lazy).then(() => resolve(out as Out), reject);
    };
    const waiter: Waiter = (ref) => {
      if (failed) return;
      if (ref._state !== COMPLETED) return fail(ref._error);
      if (--left === 0) finish();
    };
    for (let i = 0; i < items.length && !failed; i++) {
      const v = items[i];
      if (v instanceof Task) {
        if (v._released === true) fail(releasedError(v as Task<unknown>));
        else if (v._state >= COMPLETED) waiter(v);
        else if (body !== undefined && (cycle = cycleError(v, body)) !== undefined) fail(cycle);
        else {
          addWaiter(v, waiter);
          if (!waits) {
            waits = true;
            waiterAdded();
          }
        }
      } else if (v !== null && typeof (v as { then?: unknown })?.then === "function") {
        Promise.resolve(v).then((x) => {
          out[i] = x;
          if (--left === 0 && !failed) finish();
        }, fail);
      } else {
        out[i] = v;
        if (--left === 0) finish();
      }
    }
    if (items.length === 0) resolve(out as Out);
  });
}
