/**
 * `Mesh`: the nodes a pipeline runs on. `mesh.run(fn)` makes the mesh current for `fn` and
 * everything it submits, through AsyncLocalStorage, so plain async code needs no mesh argument.
 * The state behind it (placement, lifetimes, limits) is its runtime (`mesh_runtime.ts`); nodes are
 * `mesh_node.ts`, options and JSON config `mesh_config.ts`.
 *
 * @module
 */
import { currentContext, runInContext } from "./context.ts";
import { describe } from "./describe.ts";
import { CpuDevice, GpuDevice } from "./devices.ts";
import {
  checkMeshOptionTypes,
  DEFAULT_KEEPALIVE_MS,
  DEFAULT_LOST_AFTER_MS,
  MESH_OPTION_KEYS,
  type MeshConfig,
  type MeshOptions,
  readMeshConfig,
} from "./mesh_config.ts";
import { MeshNode } from "./mesh_node.ts";
import { checkKnownKeys, type KnownKeys } from "./options.ts";
import { MeshRuntime, type MeshStats } from "./mesh_runtime.ts";

export type { MeshConfig, MeshDiscoverConfig, MeshDnsConfig, MeshNodeConfig, MeshOptions } from "./mesh_config.ts";
export { MeshNode, type MeshNodeOptions } from "./mesh_node.ts";
export type { MeshStats } from "./mesh_runtime.ts";

/** What `webgpuAdapters()` returns: adapter facts, not devices a mesh can place on. */
function isAdapterInfo(x: unknown): boolean {
  return typeof x === "object" && x !== null && (x as { kind?: unknown }).kind === "webgpu-adapter";
}

let runtimeOf: (mesh: Mesh) => MeshRuntime;

/** Options of {@link Mesh.close}. */
export interface MeshCloseOptions {
  /**
   * How long running calls may take to finish before they are cancelled, in ms, however long (also
   * past the 2^31 ms one timer holds). Default and `Infinity`: no limit.
   */
  graceMs?: number;
}

const CLOSE_OPTION_KEYS: KnownKeys<MeshCloseOptions> = { graceMs: true };

/** Options of {@link Mesh.removeNode}. */
export interface MeshRemoveNodeOptions {
  /** Why the node left, in the `NodeLostError` of its calls (default "it left the mesh"). */
  reason?: string;
  /**
   * The node is shutting down cleanly (it drains): nothing new goes there, but the calls already
   * sent finish; remove it again without `drain` once it is gone (default false).
   */
  drain?: boolean;
}

const REMOVE_NODE_OPTION_KEYS: KnownKeys<MeshRemoveNodeOptions> = { reason: true, drain: true };

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
  readonly #rt: MeshRuntime;

  static {
    runtimeOf = (mesh) => mesh.#rt;
  }

  /**
   * @param nodesOrDevices MeshNodes, or the devices of one local node.
   * @param options Name, limits, transport, token, deadline, remote layer.
   */
  constructor(nodesOrDevices: ReadonlyArray<MeshNode | GpuDevice | CpuDevice>, options: MeshOptions = {}) {
    let nodes: MeshNode[];
    if (!Array.isArray(nodesOrDevices)) {
      throw new TypeError(
        `Mesh expects an array of MeshNode (or of GpuDevice/CpuDevice), got ${describe(nodesOrDevices)}`,
      );
    }
    if (options === null || typeof options !== "object" || Array.isArray(options)) {
      throw new TypeError(`Mesh: options must be an object, got ${describe(options)}`);
    }
    const given = nodesOrDevices.every((n) => n instanceof MeshNode) ? nodesOrDevices as MeshNode[] : undefined;
    if (given !== undefined) {
      if (given.length === 0) throw new TypeError("Mesh needs at least one node");
      nodes = [...given];
    } else if (nodesOrDevices.every((d) => d instanceof GpuDevice || d instanceof CpuDevice)) {
      const gpus = nodesOrDevices.filter((d): d is GpuDevice => d instanceof GpuDevice);
      // the cores of its CPUs (a CPU that states none is not limited: Infinity)
      const cpus = nodesOrDevices.filter((d): d is CpuDevice => d instanceof CpuDevice).reduce(
        (s, d) => s + d.cores,
        0,
      );
      nodes = [new MeshNode("local", { gpus, cpus: cpus || Infinity })];
    } else {
      if (nodesOrDevices.some(isAdapterInfo)) {
        throw new TypeError(
          "Mesh expects MeshNode, GpuDevice or CpuDevice items, got WebGPU adapter info (from webgpuAdapters()); " +
            "use webgpuGpuDevices() for the GPUs a mesh can place services on",
        );
      }
      const bad = nodesOrDevices.find((n) =>
        !(n instanceof MeshNode || n instanceof GpuDevice || n instanceof CpuDevice)
      );
      throw new TypeError(
        bad === undefined
          ? "Mesh expects either MeshNodes or devices (GpuDevice/CpuDevice), not a mix"
          : `Mesh expects MeshNode, GpuDevice or CpuDevice items, got ${describe(bad)}`,
      );
    }
    const names = new Set<string>();
    for (const n of nodes) {
      if (names.has(n.name)) throw new TypeError(`Mesh has two nodes named "${n.name}"`);
      names.add(n.name);
    }
    if ("maxConcurrency" in options) {
      throw new TypeError('Mesh: the option "maxConcurrency" is now "maxConcurrentOps" (op calls running at once)');
    }
    checkKnownKeys("Mesh", options, MESH_OPTION_KEYS);
    checkMeshOptionTypes(options);
    // a token read from a file or a Secret often ends in a newline, which no header may carry: the
    // whitespace around it is dropped, as a node does with its --token-file
    if (typeof options.token === "string" && options.token.trim() !== options.token) {
      options = { ...options, token: options.token.trim() };
    }
    const stuck = options.stuckAfterMs;
    if (stuck !== undefined && !(typeof stuck === "number" && stuck > 0 && stuck < Infinity)) {
      throw new RangeError(`Mesh stuckAfterMs must be a positive number of ms, got ${describe(stuck)}`);
    }
    if (options.onStuck !== undefined && typeof options.onStuck !== "function") {
      throw new TypeError(`Mesh onStuck must be a function, got ${describe(options.onStuck)}`);
    }
    const max = options.maxConcurrentOps;
    if (max !== undefined && !(Number.isInteger(max) && max >= 1)) {
      throw new RangeError(`Mesh maxConcurrentOps must be an integer ≥ 1, got ${describe(max)}`);
    }
    if (options.timeoutMs !== undefined && !(typeof options.timeoutMs === "number" && options.timeoutMs > 0)) {
      throw new RangeError(
        `Mesh timeoutMs must be a positive number (Infinity: none), got ${describe(options.timeoutMs)}`,
      );
    }
    if (
      options.welcomeTtlMs !== undefined && !(typeof options.welcomeTtlMs === "number" && options.welcomeTtlMs >= 0)
    ) {
      throw new RangeError(`Mesh welcomeTtlMs must be a number ≥ 0, got ${describe(options.welcomeTtlMs)}`);
    }
    const destroy = options.destroyTimeoutMs;
    if (destroy !== undefined && !(typeof destroy === "number" && destroy >= 0 && destroy < 2 ** 31)) {
      throw new RangeError(`Mesh destroyTimeoutMs must be a number of ms ≥ 0 and < 2^31, got ${describe(destroy)}`);
    }
    for (const k of ["keepaliveMs", "lostAfterMs"] as const) {
      const v = options[k];
      if (v !== undefined && !(typeof v === "number" && v > 0 && v < 2 ** 31)) {
        throw new RangeError(`Mesh ${k} must be a number of ms > 0 and < 2^31, got ${describe(v)}`);
      }
    }
    const window = options.streamWindow;
    if (window !== undefined) {
      if (typeof window !== "object" || window === null || Array.isArray(window)) {
        throw new TypeError(`Mesh streamWindow must be an object { items?, bytes? }, got ${describe(window)}`);
      }
      checkKnownKeys("Mesh streamWindow", window, { items: true, bytes: true });
      for (const k of ["items", "bytes"] as const) {
        const v = window[k];
        if (v !== undefined && !(Number.isSafeInteger(v) && v > 0)) {
          throw new RangeError(`Mesh streamWindow.${k} must be a positive integer, got ${describe(v)}`);
        }
      }
    }
    const keepAbove = options.keepResultsAbove;
    if (keepAbove !== undefined && !(keepAbove === Infinity || (Number.isSafeInteger(keepAbove) && keepAbove >= 0))) {
      throw new RangeError(
        `Mesh keepResultsAbove must be a number of bytes ≥ 0 (or Infinity), got ${describe(keepAbove)}`,
      );
    }
    const lostAfter = options.lostAfterMs ?? DEFAULT_LOST_AFTER_MS;
    const keepalive = options.keepaliveMs ?? DEFAULT_KEEPALIVE_MS;
    if (lostAfter <= keepalive) {
      throw new RangeError(
        `Mesh lostAfterMs (${lostAfter}) must be longer than keepaliveMs (${keepalive}): a node is taken for ` +
          "lost only after pings went unanswered",
      );
    }
    this.name = options.name ?? "mesh";
    this.nodes = nodes;
    this.options = Object.freeze({ ...options });
    this.#rt = new MeshRuntime(this.nodes, this.options);
    this.#rt.publicMesh = this;
  }

  /**
   * Builds a mesh from a config object, or from a JSON file (a path, relative to the working
   * directory, or a URL). A file is read afresh on every call (an edited file is seen at once).
   * Bad configs are a TypeError naming the field; a file that is not JSON, one naming the file. Called on a subclass (the
   * package root's `Mesh`), it builds that subclass. A `discover` entry instead of `nodes`
   * (`{ "discover": { "nats": "nats://10.0.0.9:4222", "timeoutMs": 2000 } }`) builds the mesh of
   * the nodes that answer on that NATS cluster (the package root's `Mesh.discover`); a `dns` entry
   * (`{ "dns": { "name": "thinkagain-gpu.default.svc.cluster.local", "port": 7070 } }`) the mesh of
   * the pods behind that name (the package root's `Mesh.fromDns`).
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
  static async fromConfig<M extends Mesh>(
    this: new (nodes: MeshNode[], options: MeshOptions) => M,
    config: MeshConfig | string | URL,
  ): Promise<M> {
    const { nodes, options, discover, dns } = await readMeshConfig(config);
    // discovering nodes takes its own timeoutMs (how long to look); the config's is the mesh's call
    // deadline, which Mesh.discover and Mesh.fromDns take as their callTimeoutMs
    const { timeoutMs, ...rest } = options;
    const meshOptions = timeoutMs === undefined ? rest : { ...rest, callTimeoutMs: timeoutMs };
    if (dns !== undefined) {
      // resolving names needs node:dns, which only the package root's Mesh loads
      const fromDns = (this as unknown as { fromDns?: (name: string | string[], o: object) => Promise<M> }).fromDns;
      if (typeof fromDns !== "function") {
        throw new TypeError('Mesh.fromConfig: a "dns" entry needs the Mesh of the package root, which resolves names');
      }
      const { name, ...rest } = dns;
      return await fromDns.call(this, name, { ...rest, ...meshOptions });
    }
    if (discover !== undefined) {
      // finding nodes needs a NATS client, which only the package root's Mesh loads
      const find = (this as unknown as { discover?: (o: object) => Promise<M> }).discover;
      if (typeof find !== "function") {
        throw new TypeError(
          'Mesh.fromConfig: a "discover" entry needs the Mesh of the package root, which finds nodes over NATS',
        );
      }
      return await find.call(this, { ...discover, ...meshOptions });
    }
    return new this(nodes, options);
  }

  /** True once `close()` was called. */
  get closed(): boolean {
    return this.#rt.closed;
  }

  /** True when some node has an endpoint (is reached over a transport). */
  get hasRemoteNodes(): boolean {
    return this.#rt.hasRemoteNodes;
  }

  /**
   * The GPUs of all its nodes together (as declared by their `MeshNode`s); `Infinity` when a node's
   * GPUs are not limited. The seed's `mesh.total_gpus`.
   *
   * @example
   * ```ts
   * import * as ta from "../mod.ts";
   * await using mesh = new ta.Mesh([new ta.MeshNode("a", { gpus: 8 }), new ta.MeshNode("b", { gpus: 4 })]);
   * if (mesh.totalGpus !== 12) throw new Error(`expected 12, got ${mesh.totalGpus}`);
   * ```
   */
  get totalGpus(): number {
    let total = 0;
    for (const node of this.nodes) total += node.unboundedGpus ? Infinity : node.gpus.length;
    return total;
  }

  /**
   * The CPU cores of all its nodes together; `Infinity` when a node's cores are not limited (a
   * `MeshNode` without `cpus`, a `CpuDevice` without `cores`). Cores, not CPU devices: the seed's
   * `mesh.total_cpus` counted devices.
   *
   * @example
   * ```ts
   * import * as ta from "../mod.ts";
   * await using mesh = new ta.Mesh([new ta.MeshNode("a", { cpus: 32 }), new ta.MeshNode("b", { cpus: 16 })]);
   * if (mesh.totalCpus !== 48) throw new Error(`expected 48, got ${mesh.totalCpus}`);
   * await using open = new ta.Mesh([new ta.MeshNode("c")]);
   * if (open.totalCpus !== Infinity) throw new Error("a node without cpus is not limited");
   * ```
   */
  get totalCpus(): number {
    let total = 0;
    for (const node of this.nodes) total += node.cpus;
    return total;
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
    if (this.#rt.closed) return Promise.reject(new TypeError(`mesh "${this.name}" is closed`));
    try {
      return Promise.resolve(runInContext({ mesh: this.#rt }, fn));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * A handle to the resident instances of `service` that this mesh's nodes host (nodes started with
   * `thinkagain serve app.ts --start Name`): `service.connect()` run in this mesh. Each call goes
   * to the least-loaded one; the instances belong to their nodes, and closing the mesh leaves them.
   *
   * @param service A service (what `ta.service()` returned).
   * @returns Its handle.
   * @throws {PlacementError} When none of the mesh's nodes hosts one (the message names the nodes asked).
   *
   * @example With no node behind a transport there is nothing to connect to
   * ```ts
   * import * as ta from "../mod.ts";
   * import { rejects } from "node:assert/strict";
   * const Gen = ta.service(class MeshConnectDocGen { gen() { return 1; } });
   * await using mesh = new ta.Mesh([new ta.MeshNode("local")]);
   * await rejects(mesh.connect(Gen), ta.PlacementError);
   * ```
   */
  connect<H>(service: { connect(): Promise<H> }): Promise<H> {
    if (service === null || typeof service !== "object" || typeof service.connect !== "function") {
      return Promise.reject(
        new TypeError(`mesh.connect expects a service (from ta.service()), got ${describe(service)}`),
      );
    }
    return this.run(() => service.connect());
  }

  /**
   * Which instance runs on which node, and each node's free resources.
   *
   * @returns A snapshot.
   */
  stats(): MeshStats {
    return this.#rt.stats();
  }

  /**
   * Adds a node to the running mesh (discovery does this for nodes that appear later): new
   * `init()`s may be placed on it and remote-capable ops may run there; instances placed before
   * stay where they are. `mesh.nodes` lists it from now on.
   *
   * @param node The node; its name must be new in this mesh.
   * @throws {TypeError} When the mesh is closed, the name is taken, or the endpoint cannot be
   * reached as the mesh is configured.
   *
   * @example A node joins, and the next init() is placed on it
   * ```ts
   * import * as ta from "../mod.ts";
   * const Big = ta.service({ name: "AddNodeDocBig", gpus: 2 }, class { where() { return ta.currentInstance()!.node; } });
   * await using mesh = new ta.Mesh([new ta.MeshNode("small", { gpus: 1 })]);
   * mesh.addNode(new ta.MeshNode("big", { gpus: 2 }));
   * const where = await mesh.run(() => Big.init().where.go());
   * if (where !== "big" || mesh.nodes.length !== 2) throw new Error(`unexpected: ${where}`);
   * ```
   */
  addNode(node: MeshNode): void {
    this.#rt.addNode(node);
  }

  /**
   * Removes a node that left (its process or pod is gone, or it announced it leaves): nothing new
   * is placed or sent there, the calls waiting on it fail with a `NodeLostError` naming it (and
   * `reason`), and the later calls of its replicas fail over to their siblings on live nodes (or to
   * an instance made again elsewhere, for a service with `restarts`). With `drain: true` the node
   * is shutting down cleanly: nothing new goes there but the calls already sent finish, and a
   * second `removeNode` without `drain` (once it is gone) does the rest.
   *
   * @param name The node's name.
   * @param options `reason`: why it left, for the errors of its calls; `drain`: it drains.
   * @returns `false` when the mesh has no node of that name (none, or removed already; a draining one
   * is removed for good by a second call) or is closed.
   * @throws {TypeError} For a node without an endpoint (one in this process cannot leave).
   *
   * @example
   * ```ts
   * import * as ta from "../mod.ts";
   * await using mesh = new ta.Mesh([
   *   new ta.MeshNode("a", { endpoint: "ws://127.0.0.1:7071" }),
   *   new ta.MeshNode("b", { endpoint: "ws://127.0.0.1:7072" }),
   * ]);
   * if (!mesh.removeNode("b", { reason: "its pod was deleted" })) throw new Error("expected b removed");
   * if (mesh.removeNode("b") || mesh.nodes.map((n) => n.name).join() !== "a") throw new Error("unexpected");
   * ```
   */
  removeNode(name: string, options: MeshRemoveNodeOptions = {}): boolean {
    if (typeof name !== "string") throw new TypeError(`mesh.removeNode expects a node name, got ${describe(name)}`);
    if (options === null || typeof options !== "object") {
      throw new TypeError(`mesh.removeNode: options must be an object, got ${describe(options)}`);
    }
    checkKnownKeys("mesh.removeNode", options, REMOVE_NODE_OPTION_KEYS);
    const reason = options.reason;
    if (reason !== undefined && typeof reason !== "string") {
      throw new TypeError(`mesh.removeNode: reason must be a string, got ${describe(reason)}`);
    }
    if (options.drain !== undefined && typeof options.drain !== "boolean") {
      throw new TypeError(`mesh.removeNode: drain must be a boolean, got ${describe(options.drain)}`);
    }
    return this.#rt.removeNode(name, reason, { drain: options.drain });
  }

  /**
   * Closes the mesh: op and service calls not yet started (waiting for inputs or for a slot) reject
   * with `CancelledError` (`reason: "mesh-closed"`), as does any call made in the mesh from now on;
   * the op and method calls running finish, then every instance is disposed (its
   * `[Symbol.asyncDispose]`, `[Symbol.dispose]` or `close()`), in reverse order of creation. A call
   * that awaits the close of its own mesh (an op or a method calling `mesh.close()`) is not waited
   * for, nor are the calls it runs under; a method's instance is disposed when that method ends,
   * after the close returns. Idempotent.
   *
   * @param options `graceMs`: how long running calls may take to finish (default and `Infinity`: as
   * long as they need); past it they are cancelled (their refs reject with `CancelledError`,
   * `reason: "mesh-closed"`) and the instances are disposed anyway. The same name as a node's
   * `drain({ graceMs })`.
   * @returns When every instance is disposed.
   *
   * @example A call still running past `graceMs` is cancelled
   * ```ts
   * import * as ta from "../mod.ts";
   * const forever = ta.op(async function closeDocForever() { await new Promise(() => {}); });
   * const mesh = new ta.Mesh([new ta.MeshNode("n")]);
   * const [ref] = await mesh.run(() => [forever.go()]);
   * await mesh.close({ graceMs: 10 });
   * const e = await ref.then(() => undefined, (e) => e);
   * if (!(e instanceof ta.CancelledError) || e.reason !== "mesh-closed") throw new Error(String(e));
   * ```
   */
  close(options: MeshCloseOptions = {}): Promise<void> {
    if ("timeoutMs" in options) {
      return Promise.reject(new TypeError('mesh.close: the option "timeoutMs" is now "graceMs"'));
    }
    if (options === null || typeof options !== "object") {
      return Promise.reject(new TypeError(`mesh.close: options must be an object, got ${describe(options)}`));
    }
    try {
      checkKnownKeys("mesh.close", options, CLOSE_OPTION_KEYS);
    } catch (e) {
      return Promise.reject(e);
    }
    const t = options.graceMs;
    if (t !== undefined && !(typeof t === "number" && t >= 0)) {
      return Promise.reject(
        new RangeError(`mesh.close: graceMs must be a number of ms ≥ 0 (Infinity: no limit), got ${describe(t)}`),
      );
    }
    return this.#rt.close(t);
  }

  /** Same as {@link Mesh.close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * The mesh of the surrounding `mesh.run`, also inside the ops and service methods it runs (on a
 * node, code run for a driver sees the node's own mesh); `undefined` outside any, where the default
 * local runtime serves. The seed's `get_current_mesh()`.
 *
 * @returns The current mesh, or `undefined`.
 *
 * @example
 * ```ts
 * import * as ta from "../mod.ts";
 * await using mesh = new ta.Mesh([new ta.MeshNode("a")]);
 * const where = ta.op(async function whereAmI() { return ta.getCurrentMesh(); });
 * if ((await mesh.run(() => where.go())) !== mesh) throw new Error("expected the mesh of mesh.run");
 * if (ta.getCurrentMesh() !== undefined) throw new Error("expected no mesh outside mesh.run");
 * ```
 */
export function getCurrentMesh(): Mesh | undefined {
  return currentContext()?.mesh?.publicMesh;
}

/**
 * The runtime state behind a mesh, for the core's and the transports' own use (never re-exported
 * by a `mod.ts`).
 *
 * @param mesh A mesh.
 * @returns Its runtime.
 *
 * @example
 * ```ts
 * import { Mesh, MeshNode, meshRuntime } from "./mesh.ts";
 * await using mesh = new Mesh([new MeshNode("a")], { name: "m" });
 * if (meshRuntime(mesh).name !== "m") throw new Error("unexpected");
 * ```
 */
export function meshRuntime(mesh: Mesh): MeshRuntime {
  return runtimeOf(mesh);
}
