/**
 * `Mesh` and `MeshNode`: the nodes a pipeline runs on, placement of service replicas onto them by
 * free resources, and the mesh's lifetime (an Effect Scope whose finalizers dispose instances).
 * `mesh.run(fn)` makes the mesh current for `fn` and everything it submits, through
 * AsyncLocalStorage, so plain async code needs no mesh argument.
 *
 * @module
 */
import { Effect, Exit, Scope } from "effect";
import { runInContext } from "./context.ts";
import { CpuDevice, GpuDevice } from "./devices.ts";
import { type CancelledError, PlacementError } from "./errors.ts";
import { cancelTask, State, TaskRoster } from "./object_ref.ts";
import { closedError, describe, opLimiterOf } from "./op.ts";
import { Limiter } from "./scheduler.ts";
import { Deployment, LocalReplica, type Replica, type ServiceDef } from "./service.ts";

/** Resources and address of a {@link MeshNode}. */
export interface MeshNodeOptions {
  /** Number of GPUs, or the GPUs themselves (default 0). `Infinity`: unbounded, none assigned. */
  gpus?: number | readonly GpuDevice[];
  /** Number of CPU cores (default: unbounded). */
  cpus?: number;
  /** Where a remote node listens (`ws://host:port`, `http://host:port`); absent: a node in this process. */
  endpoint?: string;
}

/**
 * One node of a mesh: a name, its resources, and (for a remote node) its endpoint.
 *
 * @example
 * ```ts
 * import { MeshNode } from "./mesh.ts";
 * const n = new MeshNode("server1", { gpus: 8, cpus: 32 });
 * if (n.gpus.length !== 8 || n.cpus !== 32) throw new Error("unexpected");
 * ```
 */
export class MeshNode {
  /** Unique name within the mesh. */
  readonly name: string;
  /** The node's GPUs (ids 0..n-1 unless given). */
  readonly gpus: readonly GpuDevice[];
  /** True when the GPU count is unbounded (the default local runtime). */
  readonly unboundedGpus: boolean;
  /** CPU cores (`Infinity`: not limited). */
  readonly cpus: number;
  /** Endpoint of a remote node; `undefined` for a node inside this process. */
  readonly endpoint: string | undefined;

  /** Creates one. @param name Unique within the mesh. @param options Resources and endpoint. */
  constructor(name: string, options: MeshNodeOptions = {}) {
    if (typeof name !== "string" || name === "") {
      throw new TypeError(`MeshNode name must be a non-empty string, got ${describe(name)}`);
    }
    if (options === null || typeof options !== "object") {
      throw new TypeError(`MeshNode "${name}" options must be an object, got ${describe(options)}`);
    }
    this.name = name;
    const g = options.gpus ?? 0;
    this.unboundedGpus = g === Infinity;
    if (Array.isArray(g)) {
      if (!g.every((d) => d instanceof GpuDevice)) {
        throw new TypeError(`MeshNode "${name}": gpus must be a count or an array of GpuDevice`);
      }
      this.gpus = [...g];
    } else if (g === Infinity) {
      this.gpus = [];
    } else if (typeof g === "number" && Number.isInteger(g) && g >= 0) {
      this.gpus = Array.from({ length: g }, (_, i) => new GpuDevice(i));
    } else {
      throw new RangeError(`MeshNode "${name}": gpus must be a non-negative integer, got ${describe(g)}`);
    }
    const c = options.cpus ?? Infinity;
    if (!(c === Infinity || (typeof c === "number" && Number.isInteger(c) && c >= 0))) {
      throw new RangeError(`MeshNode "${name}": cpus must be a non-negative integer, got ${describe(c)}`);
    }
    this.cpus = c;
    if (
      options.endpoint !== undefined &&
      (typeof options.endpoint !== "string" || !/^[a-z][a-z0-9+.-]*:\/\//i.test(options.endpoint))
    ) {
      throw new TypeError(
        `MeshNode "${name}": endpoint must be a URL such as ws://127.0.0.1:7070, got ${describe(options.endpoint)}`,
      );
    }
    this.endpoint = options.endpoint;
  }
}

/** Options of a {@link Mesh}. */
export interface MeshOptions {
  /** Name in errors and stats (default `"mesh"`). */
  name?: string;
  /** At most this many op calls run at once in this mesh (default: unbounded). */
  maxConcurrency?: number;
  /** Transport for remote nodes, overriding the endpoint scheme. */
  transport?: "http" | "websocket" | "in_memory";
  /** Auth token for remote nodes. */
  token?: string;
  /** Default deadline for remote calls, in ms. */
  timeoutMs?: number;
}

/** What {@link Mesh.stats} reports. */
export interface MeshStats {
  /** Name. */
  readonly name: string;
  /** True once the mesh was closed. */
  readonly closed: boolean;
  /** Each node with its total and free resources. */
  readonly nodes: ReadonlyArray<{
    readonly name: string;
    readonly endpoint: string | undefined;
    readonly gpus: { readonly total: number; readonly free: number };
    readonly cpus: { readonly total: number; readonly free: number };
  }>;
  /** Each service instance: where it runs and how busy it is. */
  readonly instances: ReadonlyArray<{
    readonly service: string;
    readonly replica: number;
    readonly node: string;
    readonly gpus: readonly number[];
    readonly calls: number;
    readonly outstanding: number;
  }>;
}

interface NodeState {
  readonly node: MeshNode;
  freeGpus: GpuDevice[];
  /** GPUs shared by fractional requests (`gpus: 0.5`): thousandths still free on each. */
  shared: Map<GpuDevice, number>;
  freeCpus: number;
  instances: number;
}

/** @internal Creates a replica on a remote node; installed by the transports layer. */
export type RemoteReplicaFactory = (
  mesh: Mesh,
  def: ServiceDef,
  args: unknown[],
  index: number,
  node: MeshNode,
  gpus: readonly GpuDevice[],
) => Replica;

let remoteFactory: RemoteReplicaFactory | undefined;

/** @internal Installs the factory for replicas on nodes with an endpoint. */
export function setRemoteReplicaFactory(factory: RemoteReplicaFactory): void {
  remoteFactory = factory;
}

/** A mesh as JSON configuration (what {@link Mesh.fromConfig} reads). */
export interface MeshConfig {
  /** The mesh's name. */
  name?: string;
  /** Transport for remote nodes. */
  transport?: "http" | "websocket" | "in_memory";
  /** Auth token for remote nodes. */
  token?: string;
  /** Default deadline for remote calls, ms. */
  timeoutMs?: number;
  /** At most this many op calls at once. */
  maxConcurrency?: number;
  /** The nodes: name, endpoint (remote nodes), GPUs and CPUs. */
  nodes: Array<{ name: string; endpoint?: string; gpus?: number; cpus?: number }>;
}

function cwdUrl(): string {
  // feature-detected: a runtime without a working directory needs absolute paths or URLs
  const g = globalThis as { process?: { cwd?: () => string }; Deno?: { cwd?: () => string } };
  const dir = g.process?.cwd?.() ?? g.Deno?.cwd?.();
  if (dir === undefined) {
    throw new TypeError("Mesh.fromConfig: pass an absolute path or URL (this runtime has no working directory)");
  }
  return `file://${dir.endsWith("/") ? dir : `${dir}/`}`;
}

/**
 * A set of nodes that services are placed on. With no mesh, a default local mesh (one node with
 * unbounded resources) serves.
 *
 * @example Placement, run and close
 * ```ts
 * import * as ta from "../mod.ts";
 * const Gen = ta.service({ gpus: 4 }, class Gen { async gen(q: string) { return q.toUpperCase(); } });
 * await using mesh = new ta.Mesh([new ta.MeshNode("a", { gpus: 8 }), new ta.MeshNode("b", { gpus: 8 })]);
 * const out = await mesh.run(async () => {
 *   const g = Gen.init();
 *   return await g.gen.go("hi");
 * });
 * if (out !== "HI" || mesh.stats().instances[0].gpus.length !== 4) throw new Error("unexpected");
 * ```
 */
export class Mesh implements AsyncDisposable {
  /** The mesh's name. */
  readonly name: string;
  /** Its nodes. */
  readonly nodes: readonly MeshNode[];
  /** Its options. */
  readonly options: Readonly<MeshOptions>;
  /** @internal mesh-wide op concurrency limit */ readonly _limiter: Limiter | undefined;
  /** @internal */ readonly _state: Map<string, NodeState> = new Map();
  /** @internal Its op calls not yet settled (what closing cancels); none kept by the default runtime. */
  _roster: TaskRoster | undefined = new TaskRoster();
  private readonly deployments: Deployment[] = [];
  private readonly scope: Scope.Closeable = Scope.makeUnsafe("sequential");
  private closing: Promise<void> | undefined;
  #closed = false;
  #closeDeadline: number | undefined;
  /** @internal The default runtime: instances are owned by their handles alone. */
  #transient = false;

  /** Creates one. @param nodesOrDevices MeshNodes, or the devices of one local node. @param options Name, limits, transport, token, deadline. */
  constructor(nodesOrDevices: ReadonlyArray<MeshNode | GpuDevice | CpuDevice>, options: MeshOptions = {}) {
    if (!Array.isArray(nodesOrDevices)) {
      throw new TypeError(
        `Mesh expects an array of MeshNode (or of GpuDevice/CpuDevice), got ${describe(nodesOrDevices)}`,
      );
    }
    if (options === null || typeof options !== "object") {
      throw new TypeError(`Mesh options must be an object, got ${describe(options)}`);
    }
    const nodes = nodesOrDevices.every((n) => n instanceof MeshNode) ? nodesOrDevices as MeshNode[] : undefined;
    if (nodes !== undefined) {
      if (nodes.length === 0) throw new TypeError("Mesh needs at least one node");
      this.nodes = [...nodes];
    } else if (nodesOrDevices.every((d) => d instanceof GpuDevice || d instanceof CpuDevice)) {
      const gpus = nodesOrDevices.filter((d): d is GpuDevice => d instanceof GpuDevice);
      const cpus = nodesOrDevices.filter((d): d is CpuDevice => d instanceof CpuDevice).reduce(
        (s, d) => s + d.count,
        0,
      );
      this.nodes = [new MeshNode("local", { gpus, cpus: cpus || Infinity })];
    } else {
      const bad = nodesOrDevices.find((n) =>
        !(n instanceof MeshNode || n instanceof GpuDevice || n instanceof CpuDevice)
      );
      throw new TypeError(
        bad === undefined
          ? "Mesh expects either MeshNodes or devices (GpuDevice/CpuDevice), not a mix"
          : `Mesh expects MeshNode, GpuDevice or CpuDevice items, got ${describe(bad)}`,
      );
    }
    for (const n of this.nodes) {
      if (this._state.has(n.name)) throw new TypeError(`Mesh has two nodes named "${n.name}"`);
      this._state.set(n.name, { node: n, freeGpus: [...n.gpus], shared: new Map(), freeCpus: n.cpus, instances: 0 });
    }
    const max = options.maxConcurrency;
    if (max !== undefined && !(Number.isInteger(max) && max >= 1)) {
      throw new RangeError(`Mesh maxConcurrency must be an integer ≥ 1, got ${describe(max)}`);
    }
    if (options.timeoutMs !== undefined && !(typeof options.timeoutMs === "number" && options.timeoutMs > 0)) {
      throw new RangeError(`Mesh timeoutMs must be a positive number, got ${describe(options.timeoutMs)}`);
    }
    this.name = options.name ?? "mesh";
    this.options = Object.freeze({ ...options });
    this._limiter = max === undefined ? undefined : new Limiter(max);
  }

  /**
   * Builds a mesh from a config object, or from a JSON file (a path, relative to the working
   * directory, or a URL). Bad configs are a TypeError naming the field.
   *
   * @param config The config, or where to read it.
   * @returns The mesh.
   *
   * @example
   * ```ts
   * import { Mesh } from "./mesh.ts";
   * const mesh = await Mesh.fromConfig({ name: "prod", nodes: [{ name: "a", gpus: 2 }, { name: "b", cpus: 4 }] });
   * if (mesh.nodes.length !== 2 || mesh.name !== "prod") throw new Error("unexpected");
   * await mesh.close();
   * ```
   */
  static async fromConfig(config: MeshConfig | string | URL): Promise<Mesh> {
    let c: unknown = config;
    if (typeof config === "string" || config instanceof URL) {
      const url = config instanceof URL
        ? config
        : new URL(config, /^[a-z][a-z0-9+.-]*:/i.test(config) ? undefined : cwdUrl());
      try {
        c = (await import(url.href, { with: { type: "json" } })).default;
      } catch (e) {
        throw new TypeError(`Mesh.fromConfig: cannot read ${url.href}: ${(e as Error).message}`);
      }
    }
    if (c === null || typeof c !== "object" || !Array.isArray((c as MeshConfig).nodes)) {
      throw new TypeError('Mesh.fromConfig: the config needs a "nodes" array');
    }
    const cfg = c as MeshConfig;
    const nodes = cfg.nodes.map((n, i) => {
      if (n === null || typeof n !== "object" || typeof n.name !== "string") {
        throw new TypeError(`Mesh.fromConfig: nodes[${i}] needs a "name" string`);
      }
      return new MeshNode(n.name, { gpus: n.gpus, cpus: n.cpus, endpoint: n.endpoint });
    });
    const known = new Set(["name", "transport", "token", "timeoutMs", "maxConcurrency", "nodes"]);
    const unknown = Object.keys(cfg).filter((k) => !known.has(k));
    if (unknown.length > 0) {
      throw new TypeError(`Mesh.fromConfig: unknown field${unknown.length > 1 ? "s" : ""} ${unknown.join(", ")}`);
    }
    if (cfg.transport !== undefined && !["http", "websocket", "in_memory"].includes(cfg.transport)) {
      throw new TypeError(
        `Mesh.fromConfig: transport must be "http", "websocket" or "in_memory", got ${describe(cfg.transport)}`,
      );
    }
    const options: MeshOptions = {};
    if (cfg.name !== undefined) options.name = cfg.name;
    if (cfg.transport !== undefined) options.transport = cfg.transport;
    if (cfg.token !== undefined) options.token = cfg.token;
    if (cfg.timeoutMs !== undefined) options.timeoutMs = cfg.timeoutMs;
    if (cfg.maxConcurrency !== undefined) options.maxConcurrency = cfg.maxConcurrency;
    return new Mesh(nodes, options);
  }

  /** True once `close()` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Runs `fn` with this mesh as the current one: every `.go()` inside it (also nested in ops and
   * service methods) uses this mesh.
   *
   * @param fn The pipeline.
   * @returns What `fn` returns.
   */
  run<R>(fn: () => R | PromiseLike<R>): Promise<R> {
    if (typeof fn !== "function") {
      return Promise.reject(new TypeError(`mesh.run expects a function, got ${describe(fn)}`));
    }
    if (this.#closed) return Promise.reject(new TypeError(`mesh "${this.name}" is closed`));
    try {
      return Promise.resolve(runInContext({ mesh: this }, fn));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** @internal Places every replica of `def` (all or none) and creates the instances. */
  _deploy(def: ServiceDef, args: unknown[]): Deployment {
    if (this.#closed) throw new TypeError(`Cannot place service "${def.name}": mesh "${this.name}" is closed`);
    const taken: Array<{ st: NodeState; gpus: GpuDevice[] }> = [];
    const counts = new Map<NodeState, number>();
    for (let r = 0; r < def.replicas; r++) {
      let best: NodeState | undefined;
      for (const st of this._state.values()) {
        if (!gpuFits(st, def.gpus) || st.freeCpus < def.cpus) continue;
        if (best === undefined) {
          best = st;
          continue;
        }
        // spread: fewest replicas of this service, then fewest instances, then most free GPUs/CPUs
        const a = counts.get(st) ?? 0, b = counts.get(best) ?? 0;
        if (a !== b) {
          if (a < b) best = st;
        } else if (st.instances !== best.instances) {
          if (st.instances < best.instances) best = st;
        } else if (st.freeGpus.length !== best.freeGpus.length) {
          // a GPU service goes where most GPUs are free; a CPU-only one keeps GPU nodes free
          if ((st.freeGpus.length > best.freeGpus.length) === def.gpus > 0) best = st;
        } else if (st.freeCpus > best.freeCpus) best = st;
      }
      if (best === undefined) {
        for (const t of taken) this.release(t.st, t.gpus, def);
        throw new PlacementError(def.name, this.placementMessage(def, r));
      }
      const gpus = takeGpus(best, def.gpus);
      best.freeCpus -= def.cpus;
      best.instances++;
      counts.set(best, (counts.get(best) ?? 0) + 1);
      taken.push({ st: best, gpus });
    }
    const replicas = taken.map(({ st, gpus }, i): Replica => {
      if (st.node.endpoint === undefined) return new LocalReplica(def, args, this, i, st.node.name, gpus);
      if (remoteFactory === undefined) {
        for (const t of taken) this.release(t.st, t.gpus, def);
        throw new PlacementError(
          def.name,
          `Cannot place service "${def.name}" on node "${st.node.name}" (${st.node.endpoint}): no transport is loaded for remote nodes`,
        );
      }
      return remoteFactory(this, def, args, i, st.node, gpus);
    });
    const deployment = new Deployment(def, replicas);
    for (const r of replicas) r.attach?.(deployment);
    // the default runtime never closes and has unbounded resources: it keeps no record of its
    // instances, so an instance lives exactly as long as its handle
    if (this.#transient) return deployment;
    this.deployments.push(deployment);
    for (let i = 0; i < replicas.length; i++) {
      const replica = replicas[i], { st, gpus } = taken[i];
      Effect.runSync(Scope.addFinalizer(
        this.scope,
        Effect.promise(() => replica.close(this.#closeDeadline).catch(() => {})).pipe(
          Effect.andThen(Effect.sync(() => this.release(st, gpus, def))),
        ),
      ));
    }
    return deployment;
  }

  /** @internal The default runtime's mesh (see {@link defaultMesh}). */
  static _makeDefault(): Mesh {
    const mesh = new Mesh([new MeshNode("local", { gpus: Infinity })], { name: "default" });
    mesh.#transient = true;
    mesh._roster = undefined; // it never closes: its ops need no roster
    return mesh;
  }

  /** @internal Runs `cleanup` when the mesh closes (after the instances created before it). */
  _addCleanup(cleanup: () => Promise<void>): void {
    Effect.runSync(Scope.addFinalizer(this.scope, Effect.promise(() => cleanup().catch(() => {}))));
  }

  /** True when some node has an endpoint (is reached over a transport). */
  get hasRemoteNodes(): boolean {
    return this.nodes.some((n) => n.endpoint !== undefined);
  }

  /** Gives an instance's resources back to its node. */
  private release(st: NodeState, gpus: GpuDevice[], def: ServiceDef): void {
    if (def.gpus > 0 && def.gpus < 1) {
      for (const g of gpus) {
        const left = (st.shared.get(g) ?? 0) + milli(def.gpus);
        if (left >= 1000) {
          st.shared.delete(g);
          st.freeGpus.push(g);
        } else st.shared.set(g, left);
      }
    } else st.freeGpus.push(...gpus);
    st.freeGpus.sort((a, b) => a.id - b.id);
    st.freeCpus += def.cpus;
    st.instances--;
  }

  /** What a failed placement asked for and what is free. */
  private placementMessage(def: ServiceDef, replica: number): string {
    const what = def.replicas > 1
      ? `replica ${replica + 1} of ${def.replicas} of service "${def.name}"`
      : `service "${def.name}"`;
    const states = [...this._state.values()];
    const maxBy = (f: (s: NodeState) => number) => states.reduce((a, b) => (f(b) > f(a) ? b : a));
    const gpuFit = states.some((s) => gpuFits(s, def.gpus));
    const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? "" : "s"}`;
    if (!gpuFit && def.gpus < 1) {
      const most = Math.max(0, ...states.map((s) => Math.max(s.freeGpus.length ? 1000 : 0, ...s.shared.values())));
      return `Cannot place ${what}: needs ${def.gpus} of a GPU, the most free on any one GPU is ${most / 1000}`;
    }
    if (!gpuFit) {
      const m = maxBy((s) => s.freeGpus.length);
      return `Cannot place ${what}: needs ${
        plural(def.gpus, "GPU")
      }, the largest free on any node is ${m.freeGpus.length} (${m.node.name})`;
    }
    const m = maxBy((s) => s.freeCpus);
    if (def.gpus === 0) {
      return `Cannot place ${what}: needs ${
        plural(def.cpus, "CPU")
      }, the largest free on any node is ${m.freeCpus} (${m.node.name})`;
    }
    const free = states.map((s) => `${s.node.name}: ${s.freeGpus.length} GPUs/${s.freeCpus} CPUs`).join(", ");
    return `Cannot place ${what}: needs ${plural(def.gpus, "GPU")} and ${
      plural(def.cpus, "CPU")
    } on one node; free: ${free}`;
  }

  /**
   * Which instance runs on which node, and each node's free resources.
   *
   * @returns A snapshot.
   */
  stats(): MeshStats {
    return {
      name: this.name,
      closed: this.#closed,
      nodes: [...this._state.values()].map((s) => ({
        name: s.node.name,
        endpoint: s.node.endpoint,
        gpus: {
          total: s.node.unboundedGpus ? Infinity : s.node.gpus.length,
          free: s.node.unboundedGpus ? Infinity : s.freeGpus.length,
        },
        cpus: { total: s.node.cpus, free: s.freeCpus },
      })),
      instances: this.deployments.filter((d) => !d.disposed).flatMap((d) =>
        d.replicas.map((r) => ({
          service: d.def.name,
          replica: r.index,
          node: r.node,
          gpus: r.gpus.map((g) => g.id),
          calls: r.calls,
          outstanding: r.outstanding,
        }))
      ),
    };
  }

  /**
   * Closes the mesh: op and service calls not yet started (waiting for inputs or for a slot) reject
   * with `CancelledError`, running calls finish, then every instance is disposed (its
   * `[Symbol.asyncDispose]`, `[Symbol.dispose]` or `close()`), in reverse order of creation.
   * Idempotent.
   *
   * @param options `timeoutMs`: how long running calls may take to finish (default: as long as they
   * need); past it they are cancelled (their refs reject with `CancelledError`) and the instances
   * are disposed anyway.
   * @returns When every instance is disposed.
   */
  close(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.closing !== undefined) return this.closing;
    const t = options.timeoutMs;
    if (t !== undefined && !(typeof t === "number" && t >= 0)) {
      return Promise.reject(new RangeError(`mesh.close: timeoutMs must be a number ≥ 0, got ${describe(t)}`));
    }
    this.#closeDeadline = t === undefined ? undefined : performance.now() + t;
    this.#closed = true;
    // set first: cancelling settles refs, whose listeners may call close() again
    let disposeAll!: (done: Promise<void>) => void;
    this.closing = new Promise<void>((resolve) => (disposeAll = resolve));
    for (const d of this.deployments) d.disposed = true;
    // every replica stops starting calls now, before any of them is closed and awaited in turn
    for (const d of this.deployments) for (const r of d.replicas) r.stopAccepting?.();
    this.cancelUnstarted();
    disposeAll(Effect.runPromise(Scope.close(this.scope, Exit.void)));
    return this.closing;
  }

  /**
   * Cancels the op calls submitted in this mesh that have not started, wherever they wait (for
   * inputs, in the ready queue, for a slot of the op or the mesh); running ones are left to finish.
   * A dependent of a cancelled call fails with its error, as after `ref.cancel()`. One error per op
   * name, so 100k waiting calls cost no 100k stack captures.
   */
  private cancelUnstarted(): void {
    if (this._roster === undefined) return;
    const tasks = this._roster.takeAll();
    const errors = new Map<string, CancelledError>();
    const limiters = new Set<Limiter>();
    for (let i = 0; i < tasks.length; i++) {
      const task = tasks[i];
      if (task._state !== State.PENDING) continue; // running, or failed already with an input cancelled here
      const name = task._target.name;
      let error = errors.get(name);
      if (error === undefined) errors.set(name, error = closedError(name, this));
      cancelTask(task, error);
      const limiter = opLimiterOf(task._target);
      if (limiter !== undefined) limiters.add(limiter);
    }
    // a limit shared with other meshes (an op's) or one whose running calls never return must not
    // hold the cancelled calls until a slot frees
    this._limiter?.prune();
    for (const limiter of limiters) limiter.prune();
  }

  /** Same as {@link Mesh.close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Thousandths of a GPU, so fractional shares add up exactly. */
function milli(gpus: number): number {
  return Math.round(gpus * 1000);
}

function gpuFits(st: NodeState, gpus: number): boolean {
  if (st.node.unboundedGpus || gpus === 0) return true;
  if (gpus >= 1) return st.freeGpus.length >= gpus;
  const need = milli(gpus);
  if (st.freeGpus.length > 0) return true;
  for (const left of st.shared.values()) if (left >= need) return true;
  return false;
}

/** Takes the GPUs for one instance: whole ones, or a share of the fullest GPU that still fits. */
function takeGpus(st: NodeState, gpus: number): GpuDevice[] {
  if (st.node.unboundedGpus || gpus === 0) return [];
  if (gpus >= 1) return st.freeGpus.splice(0, gpus);
  const need = milli(gpus);
  let pick: GpuDevice | undefined;
  for (const [g, left] of st.shared) if (left >= need && (pick === undefined || left < st.shared.get(pick)!)) pick = g;
  if (pick === undefined) {
    pick = st.freeGpus.shift()!;
    st.shared.set(pick, 1000);
  }
  st.shared.set(pick, st.shared.get(pick)! - need);
  return [pick];
}

let fallback: Mesh | undefined;

/** @internal The mesh used when no `mesh.run` is active: one local node, unbounded resources. */
export function defaultMesh(): Mesh {
  if (fallback === undefined || fallback.closed) fallback = Mesh._makeDefault();
  return fallback;
}
