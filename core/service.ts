/**
 * `service(cls)`: a class whose instances are actors placed on a mesh. `.init(...args)` returns a
 * handle at once; every public method is on the handle as a direct call and as `.go()`. Each
 * instance (replica) has a mailbox: calls start in submission order, one at a time unless
 * `maxConcurrency` allows more; calls are routed to the replica with the fewest outstanding calls.
 *
 * @module
 */
import { currentContext, type InstanceInfo, type RunContext, runInContext } from "./context.ts";
import { CancelledError, OpExecutionError } from "./errors.ts";
import type { GpuDevice } from "./devices.ts";
import { type ObjectRef, settle, State, type TaskTarget } from "./object_ref.ts";
import { describe, policyOf } from "./op.ts";
import { failedRef, runBody, type RunPolicy, submit } from "./scheduler.ts";
import type { RefArgs } from "./types.ts";
import { defaultMesh, type Mesh } from "./mesh.ts";

const { PENDING, FAILED } = State;

/** Options of {@link service}. */
export interface ServiceOptions {
  /** Name on the wire, in errors and profiles (default: the class name). */
  name?: string;
  /**
   * GPUs each replica needs (default 0). A share below 1 (`0.5`, `0.25`) lets instances split one
   * GPU: placement gives each the same device until the shares add up to 1.
   */
  gpus?: number;
  /** CPU cores each replica needs (default 0: not counted). */
  cpus?: number;
  /** Number of instances; calls go to the one with the fewest outstanding calls (default 1). */
  replicas?: number;
  /** Calls one instance may run at once (default 1: strictly one after another). */
  maxConcurrency?: number;
  /** Extra attempts when a method throws (default 0). */
  retries?: number;
  /** Deadline per call in ms (default: none). */
  timeoutMs?: number;
  /** What the service is for. */
  description?: string;
}

/** A method on a service handle: call it directly, or `.go()` for a ref. */
export interface ServiceMethod<A extends unknown[], R> {
  /** Submits the call and waits for its result. */
  (...args: A): Promise<R>;
  /** Submits the call; returns its ref at once. */
  go(...args: RefArgs<A>): ObjectRef<R>;
  /** `Service.method`. */
  readonly methodName: string;
}

// deno-lint-ignore no-explicit-any
type AnyFn = (...args: any[]) => any;
// deno-lint-ignore no-explicit-any
type AnyClass = new (...args: any[]) => any;

/** Names of the public methods of `T`. */
export type MethodNames<T> = {
  [K in keyof T]: K extends string ? (T[K] extends AnyFn ? K : never) : never;
}[keyof T];

/** The handle `.init()` returns: each public method of `T` as a {@link ServiceMethod}. */
export type ServiceHandle<T> =
  & {
    readonly [K in MethodNames<T>]: T[K] extends (...args: infer A) => infer R ? ServiceMethod<A, Awaited<R>> : never;
  }
  & { readonly [handleBrand]: unknown };

/** A class made into a service by {@link service}. */
export interface ServiceClass<C extends AnyClass> {
  /** Creates a handle; the instance is created when the handle is first used in a mesh (or at once inside `mesh.run`). */
  init(...args: ConstructorParameters<C>): ServiceHandle<InstanceType<C>>;
  /** The service's name. */
  readonly serviceName: string;
  /** The options it was declared with. */
  readonly options: Readonly<ServiceOptions>;
  /** The class itself. */
  readonly cls: C;
}

/** @internal What `service()` knows about a service. */
export interface ServiceDef {
  readonly name: string;
  readonly cls: AnyClass;
  readonly gpus: number;
  readonly cpus: number;
  readonly replicas: number;
  readonly maxConcurrency: number;
  readonly policy: RunPolicy | undefined;
  readonly methods: ReadonlySet<string>;
  readonly description: string | undefined;
}

const handleBrand: unique symbol = Symbol("thinkagain.handle");
const REGISTRY_KEY = Symbol.for("thinkagain.services");
// shared through globalThis so two copies of the module (e.g. a JSR and a local import) agree
const registry: Map<string, ServiceDef> = ((globalThis as Record<symbol, unknown>)[REGISTRY_KEY] ??= new Map()) as Map<
  string,
  ServiceDef
>;

/** @internal Services declared in this process, by name (what a node may create). */
export function registeredServices(): ReadonlyMap<string, ServiceDef> {
  return registry;
}

function methodNamesOf(cls: AnyClass): Set<string> {
  const names = new Set<string>();
  for (let p = cls.prototype; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const k of Object.getOwnPropertyNames(p)) {
      if (k === "constructor" || k.startsWith("_")) continue;
      const d = Object.getOwnPropertyDescriptor(p, k);
      if (d && typeof d.value === "function") names.add(k);
    }
  }
  return names;
}

/** Whole GPUs, or a share of one GPU (0 < gpus < 1) that instances of several services may split. */
function gpuCount(service: string, v: unknown): number {
  if (v === undefined) return 0;
  if (typeof v === "number" && v > 0 && v < 1 && Math.abs(v * 1000 - Math.round(v * 1000)) < 1e-9) return v;
  if (typeof v === "number" && Number.isInteger(v) && v >= 0) return v;
  throw new RangeError(
    `service "${service}": gpus must be a whole number ≥ 0 or a share of one GPU between 0 and 1 (e.g. 0.5), got ${
      describe(v)
    }`,
  );
}

function count(service: string, what: string, v: unknown, min: number, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
    throw new RangeError(`service "${service}": ${what} must be an integer ≥ ${min}, got ${describe(v)}`);
  }
  return v;
}

/**
 * Makes a service from a class.
 *
 * @param cls The class. Its public methods become the handle's methods.
 * @returns The service: `.init(...constructorArgs)` gives a handle.
 *
 * @example A counter keeps its state and sees its calls one at a time
 * ```ts
 * import * as ta from "../mod.ts";
 * const Counter = ta.service(class Counter {
 *   n = 0;
 *   async add(k: number) { const v = this.n; await Promise.resolve(); this.n = v + k; return this.n; }
 * });
 * const c = Counter.init();
 * await Promise.all(Array.from({ length: 100 }, () => c.add.go(1)));
 * if ((await c.add(0)) !== 100) throw new Error("lost an update");
 * ```
 */
export function service<C extends AnyClass>(cls: C): ServiceClass<C>;
/**
 * Makes a service from a class, with options.
 *
 * @param options `name`, `gpus`, `cpus`, `replicas`, `maxConcurrency`, `retries`, `timeoutMs`, `description`.
 * @param cls The class.
 * @returns The service.
 *
 * @example Replicas share the load
 * ```ts
 * import * as ta from "../mod.ts";
 * const Echo = ta.service({ replicas: 2 }, class Echo { async echo(x: string) { return x; } });
 * const e = Echo.init();
 * if ((await e.echo.go("hi")) !== "hi") throw new Error("unexpected");
 * ```
 */
export function service<C extends AnyClass>(options: ServiceOptions, cls: C): ServiceClass<C>;
export function service<C extends AnyClass>(a: ServiceOptions | C, b?: C): ServiceClass<C> {
  const [options, cls] = typeof a === "function" ? [{} as ServiceOptions, a] : [a, b];
  if (options === null || typeof options !== "object") {
    throw new TypeError(`service() expects a class, or an options object and a class; got ${describe(options)}`);
  }
  if (typeof cls !== "function" || !cls.prototype) {
    throw new TypeError(`service() expects a class to wrap, got ${describe(cls)}`);
  }
  if (!/^class[\s{]/.test(Function.prototype.toString.call(cls)) && cls.prototype.constructor !== cls) {
    throw new TypeError(`service() expects a class, got ${describe(cls)}`);
  }
  if (options.name !== undefined && (typeof options.name !== "string" || options.name === "")) {
    throw new TypeError(`service() name must be a non-empty string, got ${describe(options.name)}`);
  }
  const name = options.name ?? cls.name;
  if (!name) throw new TypeError("service() needs a name: use a named class or pass { name }");
  const methods = methodNamesOf(cls);
  if (methods.size === 0) {
    throw new TypeError(`service "${name}" has no public methods to call`);
  }
  const def: ServiceDef = {
    name,
    cls,
    gpus: gpuCount(name, options.gpus),
    cpus: count(name, "cpus", options.cpus, 0, 0),
    replicas: count(name, "replicas", options.replicas, 1, 1),
    maxConcurrency: count(name, "maxConcurrency", options.maxConcurrency, 1, 1),
    policy: policyOf("service", name, options.retries, options.timeoutMs),
    methods,
    description: options.description,
  };
  registry.set(name, def);
  return {
    serviceName: name,
    options: Object.freeze({ ...options, name }),
    cls,
    init(...args: ConstructorParameters<C>): ServiceHandle<InstanceType<C>> {
      const state = new HandleState(def, args);
      // inside mesh.run the instance is placed now, so a placement failure throws here
      const mesh = currentContext()?.mesh as Mesh | undefined;
      if (mesh !== undefined) state.deployment(mesh);
      return makeHandle(state) as ServiceHandle<InstanceType<C>>;
    },
  };
}

// ---- handles ------------------------------------------------------------------------------------

/** @internal The state behind a handle: its service, constructor args and a deployment per mesh. */
export class HandleState {
  readonly def: ServiceDef;
  readonly args: unknown[];
  private readonly deployments = new Map<Mesh, Deployment>();
  readonly methods: Map<string, ServiceMethod<unknown[], unknown>> = new Map();

  constructor(def: ServiceDef, args: unknown[]) {
    this.def = def;
    this.args = args;
  }

  /** A deployment that serves every mesh (a handle received from another node). */
  pinned: Deployment | undefined;

  /** The deployment in `mesh`, placing the service there on first use (may throw PlacementError). */
  deployment(mesh: Mesh): Deployment {
    if (this.pinned !== undefined) return this.pinned;
    let d = this.deployments.get(mesh);
    if (d === undefined || d.disposed) {
      d = mesh._deploy(this.def, this.args);
      this.deployments.set(mesh, d);
    }
    return d;
  }

  method(name: string): ServiceMethod<unknown[], unknown> {
    let m = this.methods.get(name);
    if (m !== undefined) return m;
    const qualified = `${this.def.name}.${name}`;
    const go = (...args: unknown[]): ObjectRef<unknown> => {
      const ctx = currentContext();
      const mesh = (ctx?.mesh as Mesh | undefined) ?? defaultMesh();
      if (mesh.closed) {
        return failedRef(
          deadTarget(qualified),
          new CancelledError(qualified, `not started: mesh "${mesh.name}" is closed`),
        );
      }
      let d: Deployment;
      try {
        d = this.deployment(mesh);
      } catch (e) {
        return failedRef(deadTarget(qualified), e);
      }
      return d.route().call(name, args, ctx);
    };
    m = Object.assign((...args: unknown[]) => go(...args).promise(), { go, methodName: qualified });
    this.methods.set(name, m);
    return m;
  }
}

function deadTarget(name: string): TaskTarget {
  return { name, kind: "method", node: undefined, ready() {} };
}

const passThrough = new Set<string | symbol>([
  "then",
  "toJSON",
  "constructor",
  "asymmetricMatch",
  "nodeType",
  "$$typeof",
]);

/** @internal A handle for `state` (also used for handles revived from the wire). */
export function makeHandle(state: HandleState): object {
  const target = Object.create(HandleProto) as Record<PropertyKey, unknown>;
  target[handleBrand] = state;
  return new Proxy(target, {
    get(t, p) {
      if (typeof p === "string" && state.def.methods.has(p)) return state.method(p);
      if (p === handleBrand) return state;
      if (typeof p === "symbol" || passThrough.has(p) || p in Object.prototype) return Reflect.get(t, p);
      throw new TypeError(
        `Service "${state.def.name}" has no method "${p}"; its methods are: ${[...state.def.methods].join(", ")}`,
      );
    },
    has(_t, p) {
      return typeof p === "string" && state.def.methods.has(p);
    },
  });
}

const HandleProto = {
  toString(this: Record<PropertyKey, unknown>): string {
    return `ServiceHandle(${(this[handleBrand] as HandleState).def.name})`;
  },
};

/** @internal The handle's state, or undefined when `v` is not a service handle. */
export function handleStateOf(v: unknown): HandleState | undefined {
  if (typeof v !== "object" || v === null) return undefined;
  try {
    return (v as Record<PropertyKey, unknown>)[handleBrand] as HandleState | undefined;
  } catch {
    return undefined;
  }
}

// ---- deployments and replicas -------------------------------------------------------------------

/** @internal Where one replica runs and how calls reach it. */
export interface Replica {
  readonly index: number;
  readonly node: string;
  readonly gpus: readonly GpuDevice[];
  /** Calls queued or running. */
  readonly outstanding: number;
  /** Calls submitted so far. */
  readonly calls: number;
  call(method: string, args: unknown[], ctx: RunContext | undefined): ObjectRef<unknown>;
  /**
   * Rejects queued calls, waits for running ones (until `deadline`, a `performance.now()` time,
   * after which they are cancelled), then disposes the instance.
   */
  close(deadline?: number): Promise<void>;
  /** Rejects the calls not yet started and starts no more (the first, synchronous step of closing). */
  stopAccepting?(): void;
  /** Told which deployment it belongs to (remote replicas fail over to siblings). */
  attach?(deployment: Deployment): void;
}

/** @internal A service placed in one mesh: its replicas. */
export class Deployment {
  readonly def: ServiceDef;
  readonly replicas: Replica[];
  disposed = false;
  constructor(def: ServiceDef, replicas: Replica[]) {
    this.def = def;
    this.replicas = replicas;
  }
  /** The replica with the fewest outstanding calls (the first such, so one replica is stable). */
  route(): Replica {
    const rs = this.replicas;
    let best = rs[0];
    for (let i = 1; i < rs.length; i++) if (rs[i].outstanding < best.outstanding) best = rs[i];
    return best;
  }
}

/**
 * @internal A replica's mailbox: calls are queued at submission and started in that order, at
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
  private readonly queue: ObjectRef<unknown>[] = [];
  private head = 0;
  protected running = 0;
  /** Calls whose bodies run now (a cancelled call leaves it at once; close() does not wait for it). */
  private readonly active = new Set<ObjectRef<unknown>>();
  private readonly targets = new Map<string, MethodTarget>();
  private readonly enqueueBound = (task: ObjectRef<unknown>) => this.enqueue(task);
  /** Pass to `runBody` as its `done`. */
  readonly doneBound: (task: ObjectRef<unknown>) => void = (task) => this.done(task);

  constructor(def: ServiceDef, index: number, node: string, gpus: readonly GpuDevice[], limit: number) {
    this.def = def;
    this.index = index;
    this.node = node;
    this.gpus = gpus;
    this.limit = limit;
  }

  /** Starts a ready call; must eventually call `doneBound(task)` (runBody does). */
  protected abstract start(task: ObjectRef<unknown>, method: string): void;

  /** The error every call fails with instead of starting (a failed constructor), if any. */
  protected abstract unavailable(task: ObjectRef<unknown>): unknown;

  /** Disposes what the replica holds, after its calls have finished. */
  protected abstract dispose(deadline?: number): Promise<void>;

  /** Replicas behind a transport: their errors pass through unwrapped, their spans are CLIENT spans. */
  protected get remote(): boolean {
    return false;
  }

  call(method: string, args: unknown[], ctx: RunContext | undefined): ObjectRef<unknown> {
    let target = this.targets.get(method);
    if (target === undefined) this.targets.set(method, target = new MethodTarget(this, method, this.remote));
    this.calls++;
    return submit(target, args, ctx, this.enqueueBound);
  }

  private enqueue(task: ObjectRef<unknown>): void {
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
        q[this.head++] = undefined as unknown as ObjectRef<unknown>;
        continue;
      }
      if (task._pending !== 0) break;
      q[this.head++] = undefined as unknown as ObjectRef<unknown>;
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

  private done(task: ObjectRef<unknown>): void {
    this.running--;
    this.outstanding--;
    this.active.delete(task);
    this.pump();
  }

  /** A queued call failed or was cancelled before it started. */
  dropped(): void {
    this.outstanding--;
    this.pump();
  }

  stopAccepting(): void {
    if (this.closing) return;
    this.closing = true;
    const queued = this.queue.slice(this.head);
    this.queue.length = 0;
    this.head = 0;
    for (const task of queued) {
      if (task !== undefined && task._state === PENDING) {
        this.outstanding--;
        task._args = undefined;
        settle(task, State.CANCELLED, new CancelledError(task._target.name, "not started: the mesh closed"));
      }
    }
  }

  async close(deadline?: number): Promise<void> {
    this.stopAccepting();
    // wait for the calls still running; a cancelled one has settled and is not waited for
    const live = [...this.active].filter((t) => t._state === State.RUNNING);
    if (live.length > 0) {
      const all = Promise.allSettled(live.map((t) => t.promise()));
      if (deadline === undefined) await all;
      else {
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          all,
          new Promise((r) => (timer = setTimeout(r, Math.max(0, deadline - performance.now())))),
        ]);
        clearTimeout(timer);
        for (const t of live) t.cancel(); // past the deadline: stop waiting; late results are ignored
      }
    }
    await this.dispose(deadline);
  }
}

/** @internal A replica living in this process: the instance and its run context. */
export class LocalReplica extends MailboxReplica {
  readonly ctx: RunContext;
  private instance: Record<string, unknown> | undefined;
  private initFailure: OpExecutionError | undefined;

  constructor(def: ServiceDef, args: unknown[], mesh: Mesh, index: number, node: string, gpus: readonly GpuDevice[]) {
    super(def, index, node, gpus, def.maxConcurrency);
    const info: InstanceInfo = { service: def.name, replica: index, node, gpus };
    this.ctx = { mesh, instance: info };
    try {
      this.instance = runInContext(this.ctx, () => new def.cls(...args));
    } catch (e) {
      this.initFailure = new OpExecutionError(`${def.name}.constructor`, e);
    }
  }

  /** What the constructor threw, wrapped; `undefined` when the instance exists. */
  get failure(): OpExecutionError | undefined {
    return this.initFailure;
  }

  protected unavailable(task: ObjectRef<unknown>): unknown {
    if (this.initFailure !== undefined) return this.initFailure;
    if (this.instance === undefined) return new CancelledError(task._target.name, "not started: instance disposed");
    return undefined;
  }

  protected start(task: ObjectRef<unknown>, method: string): void {
    const instance = this.instance!;
    runBody(
      task,
      instance[method] as (...a: unknown[]) => unknown,
      instance,
      this.ctx,
      this.def.policy,
      this.doneBound,
    );
  }

  protected async dispose(): Promise<void> {
    const instance = this.instance;
    this.instance = undefined;
    if (instance === undefined) return;
    const dispose =
      (instance[Symbol.asyncDispose as unknown as string] ?? instance[Symbol.dispose as unknown as string] ??
        instance["close"]) as (() => unknown) | undefined;
    if (typeof dispose === "function") await runInContext(this.ctx, () => dispose.call(instance));
  }
}

class MethodTarget implements TaskTarget {
  readonly kind = "method" as const;
  readonly name: string;
  readonly node: string;
  readonly method: string;
  readonly passErrors: boolean;
  readonly remote: boolean;
  private readonly replica: MailboxReplica;
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
  dropped(): void {
    this.replica.dropped();
  }
}
