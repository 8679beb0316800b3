/**
 * What `service()` records about a service ({@linkcode ServiceDef}) and the process-wide registry
 * of services by name: what a node may create for a driver. Validation of the service options
 * lives here too.
 *
 * @module
 */
import { describe } from "./describe.ts";
import { checkKnownKeys, checkOptionType, type KnownKeys } from "./options.ts";
import { policyOf, type RunPolicy } from "./policy.ts";
import { NameRegistry, register } from "./registration.ts";

/** Options of `service()`. */
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
  /**
   * How many times an instance is made again, with its constructor arguments, on a live node when
   * its node is lost (default 0). Its state is lost: the new instance starts fresh. Calls that fail
   * with the node are sent to the new instance when they have `retries` left.
   */
  restarts?: number;
  /**
   * Calls that may wait in one instance's mailbox (not yet started) before further calls are
   * refused at once with `OverloadedError` (default {@linkcode DEFAULT_MAX_QUEUED}, 100k);
   * `"unbounded"` never refuses. A call goes to the replica with the fewest outstanding calls, so
   * one is refused only when every replica is full. A refused call with `retries` tries again after
   * a pause (10 ms doubling to 1 s), as a node's refusal is retried; as many calls per instance as
   * its mailbox holds may wait so, and past that a call is refused at once.
   */
  maxQueued?: number | "unbounded";
  /** What the service is for. */
  description?: string;
}

/**
 * The default `maxQueued` of a service: calls waiting in one instance's mailbox before more are
 * refused with `OverloadedError`. High enough for normal bursts, low enough to bound memory.
 *
 * @example
 * ```ts
 * import { DEFAULT_MAX_QUEUED } from "./service_def.ts";
 * if (DEFAULT_MAX_QUEUED !== 100_000) throw new Error("unexpected");
 * ```
 */
export const DEFAULT_MAX_QUEUED: number = 100_000;

/**
 * Validates a bound option that may be `"unbounded"` (`maxQueued`, `maxWaiting`).
 *
 * @param where Whose option it is (`service "S"`, `op "f"`).
 * @param what The option's name.
 * @param v The value given.
 * @param dflt The value when not given.
 * @returns The bound (`Infinity` for `"unbounded"`).
 * @throws {RangeError} When `v` is neither an integer ≥ 1 nor `"unbounded"`.
 *
 * @example
 * ```ts
 * import { boundOption } from "./service_def.ts";
 * if (boundOption('service "S"', "maxQueued", "unbounded", 10) !== Infinity) throw new Error("unexpected");
 * ```
 */
export function boundOption(where: string, what: string, v: unknown, dflt: number): number {
  if (v === undefined) return dflt;
  if (v === "unbounded") return Infinity;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
    throw new RangeError(`${where}: ${what} must be an integer ≥ 1 or "unbounded", got ${describe(v)}`);
  }
  return v;
}

const SERVICE_OPTION_KEYS: KnownKeys<ServiceOptions> = {
  name: true,
  gpus: true,
  cpus: true,
  replicas: true,
  maxConcurrency: true,
  retries: true,
  timeoutMs: true,
  restarts: true,
  maxQueued: true,
  description: true,
};

/** Any function: what a service's methods are, as handle types see them. */
// deno-lint-ignore no-explicit-any
export type AnyFn = (...args: any[]) => any;
/** Any class: what `service()` takes. */
// deno-lint-ignore no-explicit-any
export type AnyClass = new (...args: any[]) => any;

/** What `service()` knows about a service. */
export interface ServiceDef {
  readonly name: string;
  readonly cls: AnyClass;
  readonly gpus: number;
  readonly cpus: number;
  readonly replicas: number;
  readonly maxConcurrency: number;
  readonly policy: RunPolicy | undefined;
  /** Times an instance is re-created when its node is lost (`restarts`; absent: 0). */
  readonly restarts?: number;
  /** Calls that may wait in one instance's mailbox (`maxQueued`; `Infinity`: unbounded; absent: the default). */
  readonly maxQueued?: number;
  readonly methods: ReadonlySet<string>;
  readonly description: string | undefined;
}

const REGISTRY_KEY = Symbol.for("thinkagain.services");
// shared through globalThis so two copies of the module (e.g. a JSR and a local import) agree
// (a name two different classes were registered under throws when looked up: see registration.ts)
const registry: Map<string, ServiceDef> =
  ((globalThis as Record<symbol, unknown>)[REGISTRY_KEY] ??= new NameRegistry<ServiceDef>("service")) as Map<
    string,
    ServiceDef
  >;

/** Services declared in this process, by name (what a node may create). */
export function registeredServices(): ReadonlyMap<string, ServiceDef> {
  return registry;
}

/**
 * Lifecycle methods, never methods a caller may call: the constructor, `close` (an instance's
 * disposer when it has no `Symbol.asyncDispose`/`Symbol.dispose`, which are symbols and so never
 * callable) and `dispose` (the usual name of one). A remote caller must not dispose an instance.
 */
const LIFECYCLE: ReadonlySet<string> = new Set(["constructor", "close", "dispose"]);

function methodNamesOf(cls: AnyClass): Set<string> {
  const names = new Set<string>();
  for (let p = cls.prototype; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const k of Object.getOwnPropertyNames(p)) {
      if (LIFECYCLE.has(k) || k.startsWith("_")) continue;
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
 * Validates a service's options and class, registers it by name, and returns what it records.
 *
 * @param options The service options.
 * @param cls The class.
 * @returns The definition.
 * @throws {TypeError} For a bad class or name, or a method named `then` (its handle would be a
 * thenable); {@link RangeError} for a bad count.
 *
 * @example
 * ```ts
 * import { defineService } from "./service_def.ts";
 * const def = defineService({ replicas: 2 }, class Echo { echo(x: string) { return x; } });
 * if (def.name !== "Echo" || !def.methods.has("echo")) throw new Error("unexpected");
 * ```
 */
export function defineService(options: ServiceOptions, cls: AnyClass): ServiceDef {
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
  checkKnownKeys(`service "${name}"`, options, SERVICE_OPTION_KEYS);
  checkOptionType(`service "${name}"`, "description", options.description, "string");
  const methods = methodNamesOf(cls);
  if (methods.size === 0) {
    throw new TypeError(`service "${name}" has no public methods to call`);
  }
  if (methods.has("then")) {
    // `await` (and an async function's return) adopts any object with a `then` method: the handle
    // would be taken for a promise, and `then` called with resolve/reject as a method call's args
    throw new TypeError(
      `service "${name}": a method named "then" would make its handle a thenable: awaiting the handle, or ` +
        "returning it from an async function (mesh.run(async () => Svc.init())), would call that method and " +
        'never settle; rename it (e.g. "andThen")',
    );
  }
  const def: ServiceDef = {
    name,
    cls,
    gpus: gpuCount(name, options.gpus),
    cpus: count(name, "cpus", options.cpus, 0, 0),
    replicas: count(name, "replicas", options.replicas, 1, 1),
    maxConcurrency: count(name, "maxConcurrency", options.maxConcurrency, 1, 1),
    policy: policyOf("service", name, options.retries, options.timeoutMs),
    restarts: count(name, "restarts", options.restarts, 0, 0),
    maxQueued: boundOption(`service "${name}"`, "maxQueued", options.maxQueued, DEFAULT_MAX_QUEUED),
    methods,
    description: options.description,
  };
  register(registry, name, def, cls);
  return def;
}
