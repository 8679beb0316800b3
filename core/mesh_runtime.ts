/**
 * A mesh's state while it lives: its nodes' free resources, the deployments placed on them, its
 * op limit, the calls not yet settled (what closing cancels or waits for), the remote executor its layer
 * provided, and its lifetime (an Effect Scope whose finalizers dispose instances in reverse order).
 * The public `Mesh` (`mesh.ts`) is a thin face over one of these; running code finds the runtime
 * in its run context, so ops and services never need the public class.
 *
 * @module
 */
import { warnStuck, watchStuck } from "./watchdog.ts";
import { Cause, Context, Effect, Exit, Fiber, Layer, Scope } from "effect";
import { currentContext, runningBody } from "./context.ts";
import { Deployment, type Replica, type ReplicaState } from "./deployment.ts";
import { describe } from "./describe.ts";
import { GpuDevice } from "./devices.ts";
import { type CallName, CancelledError, PlacementError } from "./errors.ts";
import { DEFAULT_MAX_WAITING, Limiter } from "./limiter.ts";
import { closeWithOwner, LocalReplica } from "./local_replica.ts";
import { MailboxReplica } from "./mailbox.ts";
import { untilDeadline } from "./long_timer.ts";
import type { Mesh } from "./mesh.ts";
import type { MeshOptions } from "./mesh_config.ts";
import { MeshNode } from "./mesh_node.ts";
import {
  type MutableNodeResources,
  type PlacementRequest,
  placeReplicas,
  releaseResources,
  takeResources,
} from "./placement.ts";
import { RemoteExecutor } from "./remote_executor.ts";
import { boundOption, type ServiceDef } from "./service_def.ts";
import { addWaiter, cancelTask, State, type Task, TaskRoster, type TaskTarget } from "./task.ts";
import type { Stream } from "./stream.ts";

/** What `Mesh.stats()` reports. */
export interface MeshStats {
  /** The mesh's name (`MeshOptions.name`, default `"mesh"`). */
  readonly name: string;
  /** True once the mesh was closed. */
  readonly closed: boolean;
  /** Each node with its total and free resources. */
  readonly nodes: ReadonlyArray<{
    /** Its name in this mesh (the `MeshNode`'s): what errors, driver spans and the profiler say. */
    readonly name: string;
    /**
     * The name the node gave itself (`thinkagain serve --name`), from its welcome: what its own
     * logs, spans and dashboard say. `undefined` until a remote node answered; an in-process node's
     * is its `name`. (A node's own `stats()` leaves it out.)
     */
    readonly servedAs?: string;
    /**
     * True while the mesh's link to the node has lost it (its connection broke, or it answered no
     * keepalive within `lostAfterMs`): its instances say `"lost"` and their calls go to siblings.
     * False again once it answers. (A node's own `stats()` leaves it out.)
     */
    readonly lost?: boolean;
    readonly endpoint: string | undefined;
    readonly gpus: { readonly total: number; readonly free: number };
    readonly cpus: { readonly total: number; readonly free: number };
  }>;
  /** Each service instance: where it runs and how busy it is (not those on removed nodes, draining or gone). */
  readonly instances: ReadonlyArray<{
    readonly service: string;
    readonly replica: number;
    readonly node: string;
    readonly gpus: readonly number[];
    /**
     * Calls submitted to it (those of a `"failed"` instance failed without running); one that went
     * on to a sibling because its node was lost or drains counts there.
     */
    readonly calls: number;
    readonly outstanding: number;
    /**
     * `"ready"`: the instance exists; `"creating"`: a remote one not created yet; `"failed"`: its
     * constructor threw or its node refused to create it (`error` says why); `"lost"`: its node
     * was lost, `"draining"`: its node shuts down (calls go to its siblings meanwhile). (A node's
     * own `stats()` leaves it out: the instances it lists exist.)
     */
    readonly state?: ReplicaState;
    /** Why the instance could not be created, when `state` is `"failed"`. */
    readonly error?: string;
  }>;
}

interface NodeState extends MutableNodeResources {
  readonly node: MeshNode;
  /** Not counted: an unbounded node, or a remote node with no GPUs declared and none reported yet (it decides). */
  unboundedGpus: boolean;
  /** Its GPUs as known now: declared, then as the node reported (capped by what was declared). */
  devices: readonly GpuDevice[];
  /** Its CPU cores as known now (`Infinity`: not limited). */
  totalCpus: number;
  /** What the node last reported in its welcome. */
  reported: { gpus: number; cpus: number | null } | undefined;
  /** The name the node gave itself in its welcome. */
  servedAs: string | undefined;
}

/** A replica's state for `stats()`, with why it failed. */
function replicaState(r: Replica): { state: ReplicaState; error?: string } {
  const state = r.state ?? "ready";
  if (state !== "failed") return { state };
  const f = r.failure;
  return { state, error: f instanceof Error ? f.message : String(f) };
}

/** What placement knows of a node that has just joined: what it was declared with. */
function nodeState(node: MeshNode): NodeState {
  return {
    node,
    name: node.name,
    // a remote node without declared GPUs decides itself until it reports how many it has
    unboundedGpus: node.unboundedGpus || (node.endpoint !== undefined && !node.declares.gpus),
    devices: node.gpus,
    totalCpus: node.cpus,
    reported: undefined,
    servedAs: node.endpoint === undefined ? node.name : undefined,
    freeGpus: [...node.gpus],
    shared: new Map(),
    freeCpus: node.cpus,
    instances: 0,
  };
}

function requestOf(def: ServiceDef): PlacementRequest {
  return { service: def.name, gpus: def.gpus, cpus: def.cpus, replicas: def.replicas };
}

/** The live state of one mesh. */
export class MeshRuntime {
  /** The mesh's name. */
  readonly name: string;
  /** Its nodes, as they are now (nodes join and leave: {@linkcode MeshRuntime.addNode}). */
  readonly nodes: readonly MeshNode[];
  /** Its options. */
  readonly options: Readonly<MeshOptions>;
  /** The mesh-wide op concurrency limit, if any. */
  readonly limiter: Limiter | undefined;
  /**
   * Its op calls not yet settled (what closing cancels, or waits for while they run); none kept by
   * the default runtime.
   */
  roster: TaskRoster | undefined = new TaskRoster();
  /** Tasks submitted in this mesh so far, recorded or not (what its dashboard estimates its counts from). */
  tasksMade = 0;
  /** Remote execution, when the mesh was built with a remote layer. */
  readonly remote: RemoteExecutor | undefined;
  /** True when some node has an endpoint (is reached over a transport). */
  hasRemoteNodes: boolean;
  /** The public `Mesh` in front of this runtime (set by its constructor; none for the default runtime). */
  publicMesh: Mesh | undefined = undefined;
  private readonly states: NodeState[] = [];
  private readonly deployments: Deployment[] = [];
  /** Nodes removed while they drain (`removeNode(…, { drain: true })`), by name: their links stay until they are gone. */
  private readonly leaving = new Map<string, MeshNode>();
  /** Replicas on nodes removed from the mesh (draining or gone): `stats()` no longer lists them. */
  private readonly removedReplicas = new WeakSet<Replica>();
  /**
   * What forgets each replica's close at the mesh's close ({@linkcode MeshRuntime.addCleanup}): done
   * once its node is gone for good ({@linkcode MeshRuntime.nodeGone}).
   */
  private readonly replicaCleanups = new WeakMap<Replica, () => void>();
  /** Deployments whose service has `restarts`: their constructor arguments and restarts left. */
  private readonly restartable = new WeakMap<Deployment, { args: unknown[]; left: number }>();
  private readonly scope: Scope.Closeable = Scope.makeUnsafe("sequential");
  private closing: Promise<void> | undefined;
  private closeDeadline: number | undefined;
  /** The call closing the mesh and its ancestors, when `close()` is called from inside one. */
  private closeSpared: ReadonlySet<Task<unknown>> | undefined;
  /** The default runtime: instances are owned by their handles alone. */
  private transient = false;
  /** True once `close()` was called. */
  closed = false;
  /**
   * Streams made by this mesh's calls that are still open, with their calls (`stream_call.ts`): a
   * closing mesh stops them, since nothing can tell when their consumers would read on.
   */
  readonly openStreams: Map<Stream<unknown>, Task<unknown>> = new Map();

  /**
   * @param nodes The nodes (validated, names unique).
   * @param options The mesh's options (validated).
   */
  constructor(nodes: readonly MeshNode[], options: Readonly<MeshOptions>) {
    this.name = options.name ?? "mesh";
    this.nodes = nodes;
    this.options = options;
    for (const node of nodes) this.states.push(nodeState(node));
    this.limiter = options.maxConcurrentOps === undefined ? undefined : new Limiter(
      options.maxConcurrentOps,
      boundOption("Mesh", "maxWaitingOps", options.maxWaitingOps, DEFAULT_MAX_WAITING),
    );
    this.hasRemoteNodes = nodes.some((n) => n.endpoint !== undefined);
    this.remote = options.remote === undefined ? undefined : this.buildRemote(options.remote);
    try {
      this.remote?.checkNodes?.(this);
    } catch (e) {
      Effect.runFork(Scope.close(this.scope, Exit.void));
      throw e;
    }
    const stuck = options.stuckAfterMs;
    if (stuck !== undefined && this.roster !== undefined) {
      const stop = watchStuck(this.roster, stuck, options.onStuck ?? warnStuck);
      this.addCleanup(() => Promise.resolve(stop()));
    }
  }

  /**
   * Builds the remote layer in the mesh's scope, now: a constructor cannot wait, so a layer that
   * needs asynchronous work is refused (its build is stopped), as is one that fails; either way the
   * scope is closed, releasing what the layer acquired, since no `close()` will come.
   *
   * @throws {TypeError} When the layer needs asynchronous work.
   * @throws {Error} When it fails, with its error as `cause`.
   */
  private buildRemote(layer: Layer.Layer<RemoteExecutor>): RemoteExecutor {
    const exit = Effect.runSyncExit(Layer.buildWithScope(layer, this.scope));
    if (Exit.isSuccess(exit)) return Context.get(exit.value, RemoteExecutor);
    let async: Cause.AsyncFiberError | undefined;
    for (const r of exit.cause.reasons) if (Cause.isDieReason(r) && Cause.isAsyncFiberError(r.defect)) async = r.defect;
    // the build left running (an async one) stops first, then what it acquired is released
    const stop = async === undefined ? Effect.void : Fiber.interrupt(async.fiber);
    Effect.runFork(stop.pipe(Effect.andThen(Scope.close(this.scope, Exit.void))));
    if (async !== undefined) {
      throw new TypeError(
        `Mesh "${this.name}": options.remote must build synchronously (new Mesh cannot wait), but the layer ` +
          "providing RemoteExecutor ran asynchronous work; do that work first and pass " +
          "Layer.succeed(RemoteExecutor, executor)",
      );
    }
    const e = Cause.squash(exit.cause);
    throw new Error(
      `Mesh "${this.name}": options.remote failed to build the remote executor: ${
        e instanceof Error ? e.message : String(e)
      }`,
      { cause: e },
    );
  }

  /** The runtime of the default local mesh: one node, unbounded resources, never closed. */
  static makeDefault(): MeshRuntime {
    const rt = new MeshRuntime([new MeshNode("local", { gpus: Infinity })], { name: "default" });
    rt.transient = true;
    rt.roster = undefined; // it never closes: its ops need no roster
    return rt;
  }

  /**
   * Places every replica of `def` (all or none, by `placement.ts`) and creates the instances.
   *
   * @param owner What the instances live as long as in the default runtime (a handle's state):
   * once it is collected, they are disposed when their calls are through. In a mesh they live until
   * it closes.
   * @throws {PlacementError} When a replica fits nowhere, or lands on a remote node and the mesh has no remote layer.
   */
  deploy(def: ServiceDef, args: unknown[], owner?: object): Deployment {
    if (this.closed) throw new TypeError(`Cannot place service "${def.name}": mesh "${this.name}" is closed`);
    const request = requestOf(def);
    const placed = placeReplicas(this.states, request);
    const remote = this.remote;
    if (remote === undefined) {
      const far = placed.find((p) => this.states[p.node].node.endpoint !== undefined);
      if (far !== undefined) {
        const node = this.states[far.node].node;
        throw new PlacementError(
          def.name,
          `Cannot place service "${def.name}" on node "${node.name}" (${node.endpoint}): this mesh has no remote ` +
            "executor; build it with the Mesh of the package root, or pass options.remote",
        );
      }
    }
    for (const p of placed) takeResources(this.states[p.node], p.gpus, request);
    const replicas: Replica[] = [];
    try {
      for (let i = 0; i < placed.length; i++) {
        const node = this.states[placed[i].node].node;
        const gpus = placed[i].gpus as GpuDevice[];
        replicas.push(
          node.endpoint === undefined
            ? new LocalReplica(def, args, this, i, node.name, gpus)
            : remote!.createReplica(this, def, args, i, node, gpus),
        );
      }
    } catch (e) {
      // all or nothing: the resources go back, and the instances made before the failure are
      // disposed (nothing else would ever close them)
      for (const p of placed) releaseResources(this.states[p.node], p.gpus, request);
      for (const r of replicas) r.close().catch(() => {});
      throw e;
    }
    const deployment = new Deployment(def, replicas, this.name);
    for (const r of replicas) r.attach?.(deployment);
    // the default runtime never closes and has unbounded resources: it keeps no record of its
    // instances, so an instance lives as long as its handle, and is disposed once that is collected
    if (this.transient) {
      if (owner !== undefined) closeWithOwner(owner, replicas);
      return deployment;
    }
    this.deployments.push(deployment);
    if ((def.restarts ?? 0) > 0) this.restartable.set(deployment, { args, left: def.restarts! });
    for (let i = 0; i < replicas.length; i++) {
      this.closeWithMesh(replicas[i], this.states[placed[i].node], placed[i].gpus as GpuDevice[], request);
    }
    return deployment;
  }

  /** Has the mesh's close close `replica` (after its calls) and give back what it took of `st`. */
  private closeWithMesh(replica: Replica, st: NodeState, gpus: GpuDevice[], request: PlacementRequest): void {
    const forget = this.addCleanup(() =>
      replica.close(this.closeDeadline, this.closeSpared).catch(() => {}).then(() =>
        releaseResources(st, gpus, request)
      )
    );
    this.replicaCleanups.set(replica, forget);
  }

  /**
   * Makes `lost`'s instance again (its node was lost) on a node not in `dead`, with the constructor
   * arguments it was deployed with, when its service has `restarts` left: placed by `placeReplicas`,
   * the new replica takes `lost`'s place in the deployment (later calls go to it) and closes with
   * the mesh. The instance's state is not carried over.
   *
   * @param deployment The deployment `lost` belongs to.
   * @param lost The replica whose node was lost.
   * @param dead Names of the nodes known lost (never placed on).
   * @returns The new replica; `undefined` when no restart is left, the mesh closed, or nothing fits.
   */
  restartReplica(deployment: Deployment, lost: Replica, dead: ReadonlySet<string>): Replica | undefined {
    const r = this.restartable.get(deployment);
    const at = deployment.replicas.indexOf(lost);
    if (r === undefined || r.left <= 0 || this.closed || deployment.disposed || at < 0) return undefined;
    const def = deployment.def;
    const request = { ...requestOf(def), replicas: 1 };
    const live = this.states.filter((s) => !dead.has(s.node.name));
    let st: NodeState, gpus: GpuDevice[];
    try {
      const [p] = placeReplicas(live, request);
      st = live[p.node];
      gpus = p.gpus as GpuDevice[];
    } catch {
      return undefined; // no live node fits: the call fails with its node
    }
    const node = st.node;
    if (node.endpoint !== undefined && this.remote === undefined) return undefined;
    takeResources(st, gpus, request);
    let replica: Replica;
    try {
      replica = node.endpoint === undefined
        ? new LocalReplica(def, r.args, this, lost.index, node.name, gpus)
        : this.remote!.createReplica(this, def, r.args, lost.index, node, gpus);
    } catch {
      releaseResources(st, gpus, request);
      return undefined;
    }
    r.left--;
    deployment.replicas[at] = replica;
    replica.attach?.(deployment);
    this.closeWithMesh(replica, st, gpus, request);
    // (forgotten when every node it had was gone: it lives again)
    if (!this.deployments.includes(deployment)) this.deployments.push(deployment);
    return replica;
  }

  /**
   * A remote node said what it has (its `welcome`): from now on placement counts the node's own
   * GPUs and CPUs, capped by what the mesh declared for it (a mesh never uses more than it declared,
   * nor more than the node has). Replicas already placed there keep theirs.
   *
   * @param name The node's name in this mesh.
   * @param reported The GPUs and CPU cores the node offers (`null`: CPUs not limited), and the name
   * it gave itself (`node`).
   */
  nodeReported(
    name: string,
    reported: { readonly gpus: number; readonly cpus: number | null; readonly node?: string },
  ): void {
    const st = this.states.find((s) => s.node.name === name);
    if (st === undefined || st.node.endpoint === undefined) return;
    if (typeof reported.node === "string") st.servedAs = reported.node;
    const { gpus, cpus } = reported;
    if (st.reported !== undefined && st.reported.gpus === gpus && st.reported.cpus === cpus) return;
    st.reported = { gpus, cpus };
    const node = st.node;
    // what the replicas placed there hold: their GPUs (unknown ids for those placed while the node
    // decided: the node gave them its first free ones) and CPUs
    const held = new Set<number>();
    let heldUnknown = 0, heldCpus = 0;
    for (const d of this.deployments) {
      if (d.disposed) continue;
      for (const r of d.replicas) {
        // (one on a node of this name that left holds nothing here)
        if (r.node !== name || this.removedReplicas.has(r)) continue;
        heldCpus += d.def.cpus;
        if (r.gpus.length > 0) { for (const g of r.gpus) held.add(g.id); }
        else if (d.def.gpus > 0) heldUnknown += Math.ceil(d.def.gpus);
      }
    }
    if (Number.isInteger(gpus) && gpus >= 0) {
      const known = new Map(st.devices.map((g) => [g.id, g]));
      const devices = node.declares.gpus
        ? node.gpus.filter((g) => g.id < gpus)
        : Array.from({ length: gpus }, (_, i) => known.get(i) ?? new GpuDevice(i));
      const kept = new Set(devices);
      for (const g of [...st.shared.keys()]) if (!kept.has(g)) st.shared.delete(g);
      st.unboundedGpus = false;
      st.devices = devices;
      st.freeGpus = devices.filter((g) => !held.has(g.id) && !st.shared.has(g)).slice(heldUnknown);
    }
    if (typeof cpus === "number" && cpus >= 0) {
      st.totalCpus = Math.min(node.cpus, cpus);
      st.freeCpus = st.totalCpus - heldCpus;
    }
  }

  /**
   * A node joins the running mesh (found by discovery, or added by hand): from now on placement
   * considers it for new deployments (`init()`), and remote-capable ops may run on it. Deployments
   * made before keep their replicas where they are.
   *
   * @param node The node (its name new in this mesh).
   * @throws {TypeError} When the mesh is closed, `node` is no `MeshNode`, the name is taken, or its
   * endpoint cannot be reached as the mesh is configured.
   */
  addNode(node: MeshNode): void {
    if (!(node instanceof MeshNode)) throw new TypeError(`mesh.addNode expects a MeshNode, got ${describe(node)}`);
    if (this.closed) throw new TypeError(`Cannot add node "${node.name}": mesh "${this.name}" is closed`);
    if (this.nodes.some((n) => n.name === node.name)) {
      throw new TypeError(`Cannot add node "${node.name}" to mesh "${this.name}": it already has a node of that name`);
    }
    if (node.endpoint !== undefined && this.remote === undefined) {
      throw new TypeError(
        `Cannot add node "${node.name}" (${node.endpoint}) to mesh "${this.name}": the mesh has no remote executor; ` +
          "build it with the Mesh of the package root, or pass options.remote",
      );
    }
    const nodes = this.nodes as MeshNode[];
    nodes.push(node);
    try {
      this.remote?.checkNodes?.(this);
    } catch (e) {
      nodes.pop();
      throw e;
    }
    this.states.push(nodeState(node));
    if (node.endpoint !== undefined) this.hasRemoteNodes = true;
    // a node of this name that was draining is gone now: its place (and endpoint) is the new one's
    const old = this.leaving.get(node.name);
    if (old !== undefined) {
      this.leaving.delete(node.name);
      this.nodeGone(old, "a new node of the same name joined in its place");
    }
    this.remote?.nodeJoined?.(this, node);
  }

  /**
   * A node left the mesh (its pod went away, it announced it leaves): new deployments are no longer
   * placed on it and ops no longer sent there; the calls waiting on it fail with a `NodeLostError`
   * naming it and saying `detail`; its replicas' later calls fail over to their siblings on live
   * nodes, or to an instance made again on a live node when the service has `restarts` left.
   *
   * With `drain`, the node is shutting down cleanly: nothing new goes there, but the calls already
   * sent keep their connection and finish; removing it again without `drain` (once it is gone)
   * does the rest.
   *
   * @param name The node's name.
   * @param detail Why it left (in the `NodeLostError` of its calls).
   * @param options `drain`: the node drains (see above).
   * @returns `false` when the mesh has no such node (none, or removed already; a draining one is
   * removed for good by a second call) or is closed, else `true`.
   * @throws {TypeError} For a node of this process (no endpoint): it cannot leave.
   */
  removeNode(name: string, detail = "it left the mesh", options: { readonly drain?: boolean } = {}): boolean {
    if (this.closed) return false;
    const at = this.nodes.findIndex((n) => n.name === name);
    if (at < 0) {
      // a node removed while it drained: now it is gone
      const left = this.leaving.get(name);
      if (left === undefined || options.drain) return false;
      this.leaving.delete(name);
      this.nodeGone(left, detail);
      return true;
    }
    const node = this.nodes[at];
    if (node.endpoint === undefined) {
      throw new TypeError(
        `Cannot remove node "${name}" from mesh "${this.name}": it runs in this process; only nodes with an ` +
          "endpoint come and go",
      );
    }
    (this.nodes as MeshNode[]).splice(at, 1);
    for (const d of this.deployments) {
      for (const r of d.replicas) {
        if (r.node !== name) continue;
        this.removedReplicas.add(r);
        if (options.drain) r.nodeDraining?.(); // its calls go to siblings while it drains
      }
    }
    const st = this.states.findIndex((s) => s.node === node);
    if (st >= 0) this.states.splice(st, 1);
    this.hasRemoteNodes = this.nodes.some((n) => n.endpoint !== undefined);
    if (options.drain) this.leaving.set(name, node);
    else this.nodeGone(node, detail);
    return true;
  }

  /**
   * `node` is gone for good (removed, or its drain is over): its link is dropped, and the mesh
   * forgets its replicas there, and the deployments that had no others. Their instances went with
   * the node (or its lease frees them): closing the mesh has nothing left to do for them, and a
   * mesh whose nodes come and go must not keep something of each. A handle that still holds such a
   * deployment fails over or restarts as before ({@linkcode MeshRuntime.restartReplica} takes the
   * deployment back).
   */
  private nodeGone(node: MeshNode, detail: string): void {
    this.remote?.nodeLeft?.(this, node, detail);
    const deployments = this.deployments;
    let kept = 0;
    for (const d of deployments) {
      let live = false;
      for (const r of d.replicas) {
        const forget = this.replicaCleanups.get(r);
        if (forget === undefined) continue;
        if (r.node === node.name && this.removedReplicas.has(r)) {
          forget();
          this.replicaCleanups.delete(r);
        } else live = true;
      }
      if (live) deployments[kept++] = d;
    }
    deployments.length = kept;
  }

  /**
   * Runs `cleanup` when the mesh closes (after the instances created before it).
   *
   * @returns Forgets `cleanup` without running it (what it would clean up ended another way): the
   * mesh then keeps nothing of it.
   */
  addCleanup(cleanup: () => Promise<void>): () => void {
    // in a scope of its own within the mesh's, which takes it out of the mesh's as it closes: the
    // mesh's scope would keep it until the mesh closes, and a mesh whose nodes come and go makes one
    // for each link and replica
    const own = Scope.forkUnsafe(this.scope);
    let forgotten = false;
    Effect.runSync(Scope.addFinalizer(
      own,
      Effect.suspend(() => forgotten ? Effect.void : Effect.promise(() => cleanup().catch(() => {}))),
    ));
    return () => {
      forgotten = true;
      Effect.runSync(Scope.close(own, Exit.void));
    };
  }

  /** A snapshot of placements and free resources. */
  stats(): MeshStats {
    return {
      name: this.name,
      closed: this.closed,
      nodes: this.states.map((s) => ({
        name: s.node.name,
        servedAs: s.servedAs,
        lost: s.node.endpoint !== undefined && this.remote?.nodeHealth?.(this, s.node.name)?.lost === true,
        endpoint: s.node.endpoint,
        gpus: {
          total: s.unboundedGpus ? Infinity : s.devices.length,
          free: s.unboundedGpus ? Infinity : s.freeGpus.length,
        },
        cpus: { total: s.totalCpus, free: s.freeCpus },
      })),
      instances: this.deployments.filter((d) => !d.disposed).flatMap((d) =>
        d.replicas.filter((r) => !this.removedReplicas.has(r)).map((r) => ({
          service: d.def.name,
          replica: r.index,
          node: r.node,
          gpus: r.gpus.map((g) => g.id),
          calls: r.calls,
          outstanding: r.outstanding,
          ...replicaState(r),
        }))
      ),
    };
  }

  /** Closes the mesh (see `Mesh.close`); `graceMs` is validated by the caller. */
  close(graceMs: number | undefined): Promise<void> {
    if (this.closing !== undefined) return this.closing;
    // Infinity: no deadline (as no graceMs); a finite one of any length is waited on a long timer
    this.closeDeadline = graceMs === undefined || graceMs === Infinity ? undefined : performance.now() + graceMs;
    this.closed = true;
    const spared = this.closeSpared = closingCalls();
    // set first: cancelling settles refs, whose listeners may call close() again
    let disposeAll!: (done: Promise<void>) => void;
    this.closing = new Promise<void>((resolve) => (disposeAll = resolve));
    for (const d of this.deployments) d.disposed = true;
    // open streams stop now: their generators' finally runs, their consumers' next() rejects
    for (const [stream, task] of [...this.openStreams]) {
      stream.cancel(new CancelledError(task._target, "stopped mid-stream: the mesh closed", "mesh-closed"));
    }
    // every replica stops starting calls now, before any of them is closed and awaited in turn
    for (const d of this.deployments) for (const r of d.replicas) r.stopAccepting?.();
    const running = this.cancelUnstarted();
    for (const d of this.deployments) {
      for (const r of d.replicas) if (r instanceof MailboxReplica) running.push(...r.runningCalls());
    }
    disposeAll(
      this.finishRunning(running, graceMs ?? Infinity, spared)
        .then(() => Effect.runPromise(Scope.close(this.scope, Exit.void)))
        .finally(() => {
          // handles keep their deployment (to say it closed), not the closed mesh its replicas reach
          for (const d of this.deployments) d.replicas.length = 0;
        }),
    );
    return this.closing;
  }

  /** The error of a call that had not started when this mesh closed. */
  closedError(name: CallName): CancelledError {
    return new CancelledError(name, `not started: mesh "${this.name}" closed`, "mesh-closed");
  }

  /**
   * Cancels the op calls submitted in this mesh that have not started, wherever they wait (for
   * inputs, in the ready queue, for a slot of the op or the mesh), and returns those running, which
   * closing waits for. A dependent of a cancelled call fails with its error, as after `ref.cancel()`.
   * One error per op name, so 100k waiting calls cost no 100k stack captures.
   */
  private cancelUnstarted(): Task<unknown>[] {
    if (this.roster === undefined) return [];
    const tasks = this.roster.takeAll();
    const running: Task<unknown>[] = [];
    const errors = new Map<string, CancelledError>();
    const targets = new Set<TaskTarget>();
    for (let i = 0; i < tasks.length; i++) {
      const task = tasks[i];
      if (task._state !== State.PENDING) {
        if (task._state === State.RUNNING) running.push(task);
        continue; // else failed already, with an input cancelled here
      }
      const name = task._target.name;
      let error = errors.get(name);
      if (error === undefined) errors.set(name, error = this.closedError(task._target));
      cancelTask(task, error);
      targets.add(task._target);
    }
    // a limit shared with other meshes (an op's) or one whose running calls never return must not
    // hold the cancelled calls until a slot frees
    this.limiter?.prune();
    for (const target of targets) target.pruneWaiting?.();
    return running;
  }

  /**
   * Waits for the op and method calls that ran when the mesh closed, until its `graceMs` passed,
   * then cancels those still running (one error per call name), so that no instance is disposed
   * under a call of the mesh. What they submit meanwhile is refused (the mesh is closed). `spared`:
   * the call that closes the mesh and its ancestors, which wait for the close and so are not waited
   * for (else the close would wait for itself).
   */
  private async finishRunning(
    tasks: Task<unknown>[],
    graceMs: number,
    spared: ReadonlySet<Task<unknown>>,
  ): Promise<void> {
    const live = tasks.filter((t) => t._state === State.RUNNING && !spared.has(t));
    if (live.length === 0) return;
    let left = live.length;
    const all = new Promise<void>((resolve) => {
      const settled = () => {
        if (--left === 0) resolve();
      };
      for (const t of live) addWaiter(t, settled);
    });
    const deadline = this.closeDeadline;
    if (deadline === undefined) return await all;
    await untilDeadline(all, deadline);
    const errors = new Map<string, CancelledError>();
    for (const t of live) {
      if (t._state !== State.RUNNING) continue;
      const name = t._target.name;
      let error = errors.get(name);
      if (error === undefined) {
        const detail = `cancelled: mesh "${this.name}" closed and its graceMs (${graceMs} ms) passed`;
        errors.set(name, error = new CancelledError(t._target, detail, "mesh-closed"));
      }
      cancelTask(t, error); // late results are ignored
    }
  }
}

/**
 * The call that closes a mesh now, when `close()` is called from inside one (an op or a method
 * awaiting it), with the calls it runs under: they wait for the close, so the close must not wait
 * for them. Best effort: a body known to submit nothing may run without a context of its own,
 * and is then found only in its synchronous part.
 */
function closingCalls(): Set<Task<unknown>> {
  const spared = new Set<Task<unknown>>();
  let t = (runningBody.task ?? currentContext()?.parent) as Task<unknown> | undefined;
  for (; t !== undefined; t = t._family?.parent) spared.add(t);
  return spared;
}

let fallback: MeshRuntime | undefined;

/**
 * The runtime used when no `mesh.run` is active: one local node, unbounded resources.
 *
 * @returns The default runtime (made on first use).
 *
 * @example
 * ```ts
 * import { defaultRuntime } from "./mesh_runtime.ts";
 * if (defaultRuntime() !== defaultRuntime() || defaultRuntime().name !== "default") throw new Error();
 * ```
 */
export function defaultRuntime(): MeshRuntime {
  if (fallback === undefined || fallback.closed) fallback = MeshRuntime.makeDefault();
  return fallback;
}
