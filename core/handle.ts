/**
 * Service handles: what `.init()` returns. A handle is a proxy whose properties are the service's
 * methods (each a direct call and `.go()`); behind it, the constructor arguments and one
 * deployment per mesh, placed on first use in that mesh.
 *
 * @module
 */
import { currentContext } from "./context.ts";
import type { Deployment } from "./deployment.ts";
import { type CallName, CancelledError } from "./errors.ts";
import { defaultRuntime, type MeshRuntime } from "./mesh_runtime.ts";
import type { ObjectRef } from "./object_ref.ts";
import { failedRef } from "./scheduler.ts";
import type { AnyFn, ServiceDef } from "./service_def.ts";
import { State, type TaskTarget } from "./task.ts";
import type { CallResult, RefArgs } from "./types.ts";

const handleBrand: unique symbol = Symbol("thinkagain.handle");

/** A method on a service handle: call it directly, or `.go()` for a ref. */
export interface ServiceMethod<A extends unknown[], R> {
  /** Submits the call and waits for its result. */
  (...args: A): Promise<R>;
  /** Submits the call; returns its ref at once. */
  go(...args: RefArgs<A>): ObjectRef<R>;
  /** `Service.method`. */
  readonly methodName: string;
}

/** Names of the public methods of `T`. */
export type MethodNames<T> = {
  [K in keyof T]: K extends string ? (T[K] extends AnyFn ? K : never) : never;
}[keyof T];

/**
 * A service's settings as its handle reports them (`handle.config`, the seed's `handle.config`):
 * every option with its default filled in. What it was declared with is the class's `options`.
 * A service with a method named `config` keeps its method there; read its settings from the class.
 *
 * @example Read a handle's settings
 * ```ts
 * import * as ta from "../mod.ts";
 * const Gen = ta.service({ gpus: 4 }, class ConfigDocGen { gen(q: string) { return q; } });
 * const g = Gen.init();
 * if (g.config.gpus !== 4 || g.config.replicas !== 1 || Gen.options.gpus !== 4) throw new Error("unexpected");
 * ```
 */
export interface ServiceConfig {
  /** Its name. */
  readonly name: string;
  /** GPUs each replica needs (a share below 1 splits a GPU). */
  readonly gpus: number;
  /** CPU cores each replica needs (0: not counted). */
  readonly cpus: number;
  /** Number of instances. */
  readonly replicas: number;
  /** Calls one instance runs at once. */
  readonly maxConcurrency: number;
  /** Extra attempts when a method throws. */
  readonly retries: number;
  /** Deadline per call in ms, if any. */
  readonly timeoutMs: number | undefined;
  /** What the service is for, if said. */
  readonly description: string | undefined;
}

/**
 * The handle `.init()` returns: each public method of `T` as a {@link ServiceMethod}, and `config`
 * (its {@link ServiceConfig}) unless the service has a method of that name: methods come first.
 */
export type ServiceHandle<T> =
  & {
    readonly [K in MethodNames<T>]: T[K] extends (...args: infer A) => infer R ? ServiceMethod<A, CallResult<R>>
      : never;
  }
  & ("config" extends MethodNames<T> ? Record<never, never> : { readonly config: ServiceConfig })
  & { readonly [handleBrand]: unknown };

const configs = new WeakMap<ServiceDef, ServiceConfig>();

/** The settings of `def`, with defaults filled in (one frozen object per service). */
function configOf(def: ServiceDef): ServiceConfig {
  let c = configs.get(def);
  if (c === undefined) {
    c = Object.freeze({
      name: def.name,
      gpus: def.gpus,
      cpus: def.cpus,
      replicas: def.replicas,
      maxConcurrency: def.maxConcurrency,
      retries: def.policy?.retries ?? 0,
      timeoutMs: def.policy !== undefined && def.policy.timeoutMs > 0 ? def.policy.timeoutMs : undefined,
      description: def.description,
    });
    configs.set(def, c);
  }
  return c;
}

/**
 * The state behind a handle: its service, constructor args and its instance (replicas), placed in
 * the mesh current at its first use and called from every mesh after that.
 */
export class HandleState {
  readonly def: ServiceDef;
  readonly args: unknown[];
  /** Where its instance lives, once placed. */
  private home: Deployment | undefined;
  readonly methods: Map<string, ServiceMethod<unknown[], unknown>> = new Map();

  constructor(def: ServiceDef, args: unknown[]) {
    this.def = def;
    this.args = args;
  }

  /**
   * A deployment that serves every mesh: a handle received from another node, or one `connect()`
   * made (then {@linkcode pinnedBy} is the mesh whose links reach it).
   */
  pinned: Deployment | undefined;
  /**
   * The mesh a `connect()` handle reaches its resident instances through: once it closed, so did
   * their links, and the handle's calls fail as every handle's do after its mesh closed.
   */
  pinnedBy: MeshRuntime | undefined;

  /**
   * The handle's instance: placed in `mesh` on first use (may throw PlacementError), then the same
   * one whatever mesh calls it, until the mesh it lives in (or, for a `connect()` handle, the mesh
   * it connected through) closes.
   *
   * @param mesh The mesh it is placed in, on first use.
   * @param method The method about to be called, named in the error (`Service.method`).
   * @throws {CancelledError} When the mesh its instance lived in (or it connected through) has closed.
   */
  deployment(mesh: MeshRuntime, method?: string): Deployment {
    const pinned = this.pinned;
    if (pinned !== undefined) {
      // (a closed mesh's links are closed: its calls would fail as if the node were lost)
      if (this.pinnedBy?.closed !== true) return pinned;
      throw new CancelledError(
        this.callName(method),
        `not started: this handle reached its resident instances through mesh "${this.pinnedBy.name}", which ` +
          "closed; connect() again from an open mesh",
        "mesh-closed",
      );
    }
    const home = this.home;
    if (home === undefined) return this.home = mesh.deploy(this.def, this.args, this);
    if (home.disposed) {
      throw new CancelledError(
        this.callName(method),
        `not started: this handle's instance was disposed when mesh "${home.mesh}" closed ` +
          "(a handle calls the instance made at its first use, from any mesh); init() a new handle",
        "mesh-closed",
      );
    }
    return home;
  }

  /** The call named in an error: `Service.method`, or the service alone. */
  private callName(method: string | undefined): CallName {
    return { name: method === undefined ? this.def.name : `${this.def.name}.${method}`, kind: "method" };
  }

  method(name: string): ServiceMethod<unknown[], unknown> {
    let m = this.methods.get(name);
    if (m !== undefined) return m;
    const qualified = `${this.def.name}.${name}`;
    const go = (...args: unknown[]): ObjectRef<unknown> => {
      const ctx = currentContext();
      const mesh = ctx?.mesh ?? defaultRuntime();
      if (mesh.closed) {
        return failedRef(
          deadTarget(qualified),
          new CancelledError(
            { name: qualified, kind: "method" },
            `not started: mesh "${mesh.name}" is closed`,
            "mesh-closed",
          ),
        );
      }
      let d: Deployment;
      try {
        d = this.deployment(mesh, name);
      } catch (e) {
        return failedRef(deadTarget(qualified), e);
      }
      const task = d.route().call(name, args, ctx);
      // while the mesh's stuck-work watchdog looks, it looks at this call too (a call made in the
      // mesh: its context names it, which is where the call leaves the list when it settles)
      const watched = mesh.roster?.calls;
      if (watched !== undefined && ctx?.mesh === mesh && task._state < State.COMPLETED) watched.add(task);
      return task;
    };
    m = Object.assign((...args: unknown[]) => go(...args).promise(), { go, methodName: qualified });
    this.methods.set(name, m);
    return m;
  }
}

function deadTarget(name: string): TaskTarget {
  return { name, kind: "method", node: undefined, ready() {} };
}

// asked of any object by await, JSON.stringify, test matchers and React: answered by the target
// (`then` is undefined: service() refuses a method of that name, so a handle is never a thenable)
const passThrough = new Set<string | symbol>([
  "then",
  "toJSON",
  "constructor",
  "asymmetricMatch",
  "nodeType",
  "$$typeof",
]);

/** A handle for `state` (also used for handles revived from the wire). */
export function makeHandle(state: HandleState): object {
  const target = Object.create(HandleProto) as Record<PropertyKey, unknown>;
  target[handleBrand] = state;
  return new Proxy(target, {
    get(t, p) {
      if (typeof p === "string" && state.def.methods.has(p)) return state.method(p);
      // not a method (a method named `config` wins): the service's settings
      if (p === "config") return configOf(state.def);
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

/** The handle's state, or undefined when `v` is not a service handle. */
export function handleStateOf(v: unknown): HandleState | undefined {
  if (typeof v !== "object" || v === null) return undefined;
  try {
    return (v as Record<PropertyKey, unknown>)[handleBrand] as HandleState | undefined;
  } catch {
    return undefined;
  }
}
