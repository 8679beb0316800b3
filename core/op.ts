/**
 * `op(fn)`: turns a plain (async or sync) function into an `Op` — still callable directly, and with
 * `.go(...args)` that submits it to the scheduler (`scheduler.ts`) and returns an `ObjectRef` at
 * once. When its inputs are ready, an op call takes a slot of the op's and the mesh's limits
 * (`limiter.ts`) and runs its body (`run_body.ts`) here, or on a node through the mesh's remote
 * executor when the op is remote-capable.
 *
 * @module
 */
import { currentContext, type RunContext } from "./context.ts";
import { describe } from "./describe.ts";
import { CancelledError, OpExecutionError, OverloadedError } from "./errors.ts";
import { listening } from "./events.ts";
import { DEFAULT_MAX_WAITING, Limiter } from "./limiter.ts";
import { checkKnownKeys, checkOptionType, type KnownKeys } from "./options.ts";
import { NameRegistry, register } from "./registration.ts";
import type { ObjectRef } from "./object_ref.ts";
import { checkCount, policyOf, type RunPolicy } from "./policy.ts";
import { runBody } from "./run_body.ts";
import { failedRef, submit } from "./scheduler.ts";
import { settle, State, type Task, type TaskTarget } from "./task.ts";
import { boundOption } from "./service_def.ts";
import type { SlotWait } from "./explain.ts";
import { armTracing } from "./tracing/lifecycle.ts";
import type { CallResult, RefArgs } from "./types.ts";

/** Options of {@link op}. */
export interface OpOptions {
  /** Name in errors, profiles and traces (default: the function's name). */
  name?: string;
  /** Extra attempts when the body throws (default 0). */
  retries?: number;
  /** Deadline per call, retries included, in ms; a late call fails with `TimeoutError` (default: none). */
  timeoutMs?: number;
  /** At most this many calls of this op run at once (default: unbounded). */
  maxConcurrency?: number;
  /**
   * With `maxConcurrency`: calls that may wait for a slot before further ready calls fail at once
   * with `OverloadedError` (default {@linkcode DEFAULT_MAX_WAITING}, 100k); `"unbounded"` never refuses.
   */
  maxWaiting?: number | "unbounded";
  /** What the op is for (shown by tools). */
  description?: string;
  /** May run on remote nodes that registered it (a node imports the same module). Default false. */
  remote?: boolean;
  /** GPUs one call needs; an op with GPUs is remote-capable (runs on a node with GPUs). Default 0. */
  gpus?: number;
}

const OP_OPTION_KEYS: KnownKeys<OpOptions> = {
  name: true,
  retries: true,
  timeoutMs: true,
  maxConcurrency: true,
  maxWaiting: true,
  description: true,
  remote: true,
  gpus: true,
};

/** What a node needs to run an op by name. */
export interface OpDef {
  readonly name: string;
  readonly fn: (...args: unknown[]) => unknown;
  readonly options: Readonly<OpOptions>;
  /** The op itself, so a node runs calls through the scheduler (limits, policy, profiling). */
  readonly op: Op<unknown[], unknown>;
  /**
   * Whether a call ready now would be refused for the op's own full waiting list (every slot
   * taken, `maxWaiting` calls waiting): a node answers such a call without making it.
   */
  readonly refuses: () => boolean;
  /** The error such a call is refused with. */
  readonly refusal: () => OverloadedError;
}

const REGISTRY_KEY = Symbol.for("thinkagain.ops");
// shared through globalThis so two copies of the module (e.g. a JSR and a local import) agree
// (a name two different functions were registered under throws when looked up: see registration.ts)
const opRegistry: Map<string, OpDef> =
  ((globalThis as Record<symbol, unknown>)[REGISTRY_KEY] ??= new NameRegistry<OpDef>("op")) as Map<string, OpDef>;

/** Remote-capable ops declared in this process, by name (what a node may run). */
export function registeredOps(): ReadonlyMap<string, OpDef> {
  return opRegistry;
}

/**
 * An op: call it directly (`await f(x)`, no scheduler) or submit it with `.go(...)` to get an
 * `ObjectRef` at once. `.go()` accepts refs wherever a value is expected.
 */
export interface Op<A extends unknown[], R> {
  /** Runs the function now and returns its result (errors are wrapped in `OpExecutionError`). */
  (...args: A): Promise<R>;
  /** Submits a call; returns its ref at once. The call starts when every ref among `args` resolved. */
  go(...args: RefArgs<A>): ObjectRef<R>;
  /** The op's name. */
  readonly opName: string;
  /** The options it was made with. */
  readonly options: Readonly<OpOptions>;
}

let anonymous = 0;

class OpTarget implements TaskTarget {
  readonly kind = "op" as const;
  leafRuns = 0;
  readonly node: string | undefined = undefined;
  readonly name: string;
  /**
   * May run on a node (`remote: true` or GPUs): not `TaskTarget.remote`, which means "runs on
   * another node"; a call is remote only once it was sent (`TaskMeta.executor`).
   */
  readonly remoteCapable: boolean;
  readonly gpus: number;
  readonly passErrors: boolean;
  readonly fn: (...args: unknown[]) => unknown;
  readonly policy: RunPolicy | undefined;
  readonly limiter: Limiter | undefined;
  private readonly startBound: (task: Task<unknown>) => void;
  private readonly doneBound: ((task: Task<unknown>) => void) | undefined;
  /** Tasks holding one of this op's slots while they wait for a slot of the mesh. */
  private readonly awaitingMesh = new Set<Task<unknown>>();

  constructor(name: string, fn: (...args: unknown[]) => unknown, options: OpOptions) {
    this.name = name;
    this.fn = fn;
    this.policy = policyOf("op", name, options.retries, options.timeoutMs);
    this.gpus = checkCount("gpus", "op", name, options.gpus, 0) ?? 0;
    this.remoteCapable = options.remote === true || this.gpus > 0;
    this.passErrors = this.remoteCapable;
    if ("concurrency" in options) {
      throw new TypeError(`op "${name}": the option "concurrency" is now "maxConcurrency" (calls of this op at once)`);
    }
    checkKnownKeys(`op "${name}"`, options, OP_OPTION_KEYS);
    // `remote: "yes"` must not leave the op local without a word
    checkOptionType(`op "${name}"`, "remote", options.remote, "boolean");
    checkOptionType(`op "${name}"`, "description", options.description, "string");
    const c = checkCount("maxConcurrency", "op", name, options.maxConcurrency, 1);
    const w = boundOption(`op "${name}"`, "maxWaiting", options.maxWaiting, DEFAULT_MAX_WAITING);
    this.limiter = c === undefined ? undefined : new Limiter(c, w);
    this.startBound = (task) => this.start(task);
    this.doneBound = this.limiter === undefined ? undefined : () => this.finish();
  }

  ready(task: Task<unknown>): void {
    if (this.limiter === undefined) this.start(task);
    else if (!this.limiter.acquire(task, this.startBound)) settle(task, State.FAILED, this.refusal());
  }

  /** See {@linkcode OpDef.refuses}. */
  refuses(): boolean {
    return this.limiter !== undefined && this.limiter.full();
  }

  /** The error a call its full waiting list refuses fails with. */
  refusal(): OverloadedError {
    const limiter = this.limiter!;
    return new OverloadedError(
      `op "${this.name}" refused a call: ${limiter.maxWaiting} calls already wait for one of its ` +
        `${limiter.max} slots (maxWaiting ${limiter.maxWaiting}; raise it, or pass "unbounded")`,
    );
  }

  private start(task: Task<unknown>): void {
    const mesh = task._ctx?.mesh;
    let fn = this.fn;
    if (this.remoteCapable && mesh !== undefined && mesh.remote !== undefined) {
      const remote = mesh.remote.opBody(mesh, this.name, this.gpus);
      if (remote !== undefined) {
        fn = remote;
        if (task._meta !== undefined) task._meta.executor = "remote";
      }
    }
    const meshLimiter = mesh?.limiter;
    if (meshLimiter !== undefined) {
      if (this.limiter !== undefined) this.awaitingMesh.add(task);
      const waits = meshLimiter.acquire(task, (t) => {
        this.awaitingMesh.delete(t);
        runBody(t, fn, undefined, t._ctx, this.policy, (x) => {
          meshLimiter.release();
          this.doneBound?.(x);
        });
      });
      if (!waits) {
        // refused: the op's own slot it holds goes back
        this.awaitingMesh.delete(task);
        settle(
          task,
          State.FAILED,
          new OverloadedError(
            `mesh "${mesh!.name}" refused a call of op "${this.name}": ${meshLimiter.maxWaiting} op calls already ` +
              `wait for one of its ${meshLimiter.max} slots (maxConcurrentOps ${meshLimiter.max}, maxWaitingOps ` +
              `${meshLimiter.maxWaiting}; raise it, or pass "unbounded")`,
          ),
        );
        this.doneBound?.(task);
      }
    } else {
      runBody(task, fn, undefined, task._ctx, this.policy, this.doneBound);
    }
  }

  private finish(): void {
    this.limiter!.release();
  }

  /** A pending task was cancelled or lost an input: a slot of this op it held is freed. */
  dropped(task: Task<unknown>): void {
    if (this.awaitingMesh.delete(task)) this.finish();
  }

  /** For `explain()`: the op's or the mesh's concurrency limit `task` waits for, if any. */
  slotWait(task: Task<unknown>): SlotWait | undefined {
    const own = this.limiter?.positionOf(task) ?? -1;
    if (own >= 0) {
      return { kind: "op", limit: this.limiter!.max, running: this.limiter!.running, ahead: [], aheadCount: own };
    }
    const mesh = task._ctx?.mesh?.limiter;
    const inMesh = mesh?.positionOf(task) ?? -1;
    if (inMesh >= 0) return { kind: "mesh", limit: mesh!.max, running: mesh!.running, ahead: [], aheadCount: inMesh };
    return undefined;
  }

  /** Forgets the op's waiting calls that were cancelled (a mesh closed), so they do not wait for a slot. */
  pruneWaiting(): void {
    this.limiter?.prune();
  }
}

/**
 * Makes an op from a function.
 *
 * @param fn The function (async or not). Its name names the op.
 * @returns The op: callable directly, and `.go(...)` for a ref.
 *
 * @example The README pipeline
 * ```ts
 * import * as ta from "../mod.ts";
 * const addOne = ta.op(async function addOne(x: number) { return x + 1; });
 * const multiply = ta.op("multiply", async (x: number, factor: number) => x * factor);
 * const result = await multiply.go(addOne.go(5), 3);
 * if (result !== 18) throw new Error(`expected 18, got ${result}`);
 * ```
 */
export function op<A extends unknown[], R>(fn: (...args: A) => R): Op<A, CallResult<R>>;
/**
 * Makes an op from a function, with a name or options.
 *
 * @param nameOrOptions The op's name, or its options (`name`, `retries`, `timeoutMs`, `maxConcurrency`).
 * @param fn The function (async or not).
 * @returns The op.
 *
 * @example Retries and a deadline
 * ```ts
 * import * as ta from "../mod.ts";
 * let calls = 0;
 * const flaky = ta.op({ name: "flaky", retries: 2, timeoutMs: 1000 }, async () => {
 *   if (++calls < 3) throw new Error("not yet");
 *   return calls;
 * });
 * if ((await flaky.go()) !== 3) throw new Error("expected the third attempt to succeed");
 * ```
 */
export function op<A extends unknown[], R>(
  nameOrOptions: string | OpOptions,
  fn: (...args: A) => R,
): Op<A, CallResult<R>>;
export function op<A extends unknown[], R>(
  a: string | OpOptions | ((...args: A) => R),
  b?: (...args: A) => R,
): Op<A, CallResult<R>> {
  let options: OpOptions;
  let fn: unknown;
  if (typeof a === "function") {
    options = {};
    fn = a;
  } else if (typeof a === "string") {
    options = { name: a };
    fn = b;
  } else if (a !== null && typeof a === "object" && !Array.isArray(a)) {
    options = { ...a };
    fn = b;
  } else {
    throw new TypeError(`op() expects a function, or a name or options object and a function; got ${describe(a)}`);
  }
  if (typeof fn !== "function") {
    throw new TypeError(`op() expects a function to wrap, got ${describe(fn)}`);
  }
  if (options.name !== undefined && (typeof options.name !== "string" || options.name === "")) {
    throw new TypeError(`op() name must be a non-empty string, got ${describe(options.name)}`);
  }
  const name = options.name ?? ((fn as { name?: string }).name || `anonymous${++anonymous}`);
  armTracing();
  const body = fn as (...args: unknown[]) => unknown;
  const target = new OpTarget(name, body, options);
  const policy = target.policy;

  const go = (...args: unknown[]): Task<CallResult<R>> => {
    const ctx: RunContext | undefined = currentContext();
    const mesh = ctx?.mesh;
    if (mesh === undefined) return submit<CallResult<R>>(target, args, ctx);
    if (mesh.closed) {
      return failedRef(target, new CancelledError(name, `not started: mesh "${mesh.name}" is closed`));
    }
    const task = submit<CallResult<R>>(target, args, ctx);
    // on the mesh's roster until it settles, so closing the mesh cancels it if it has not started
    if (mesh.roster !== undefined && task._state === State.PENDING) mesh.roster.add(task as Task<unknown>);
    return task;
  };
  const call = (...args: A): Promise<CallResult<R>> => {
    // while profiling, direct calls go through the scheduler so they are recorded too
    if (listening || policy !== undefined || target.limiter !== undefined) return go(...args).promise();
    try {
      return Promise.resolve(body(...args) as R).then(undefined, (e) => {
        throw new OpExecutionError(name, e);
      }) as Promise<CallResult<R>>;
    } catch (e) {
      return Promise.reject(new OpExecutionError(name, e));
    }
  };
  Object.defineProperty(call, "name", { value: name });
  const made = Object.assign(call, {
    go: go as Op<A, CallResult<R>>["go"],
    opName: name,
    options: Object.freeze({ ...options, name }),
  });
  if (target.remoteCapable) {
    const def: OpDef = {
      name,
      fn: body,
      options: made.options,
      op: made as unknown as Op<unknown[], unknown>,
      refuses: () => target.refuses(),
      refusal: () => target.refusal(),
    };
    register(opRegistry, name, def, body);
  }
  return made;
}
