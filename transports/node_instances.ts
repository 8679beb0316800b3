/**
 * The instances a node hosts: those drivers create (`create`, each under its driver's lease), the
 * node's own (resident, `startResident`), and those that code running here makes (`init()` in a
 * method, a constructor or an op on the node: {@linkcode NodeInstances.deployNested}), all placed
 * on the one count of the node's GPUs and CPU cores, and disposed with what they held freed. The
 * node's call path finds them in {@linkcode NodeInstances.byId}.
 *
 * An instance that code running here made belongs to whoever that code works for: made by an
 * instance here (in its constructor or a method, also through the ops these call), it is disposed
 * with that instance; made by an op call a driver sent, it is held by that driver's lease (see
 * `node_leases.ts`); else (a call that names no lease, a node without leases) it is the node's own,
 * until the node drains.
 *
 * @module
 */
import {
  assignNodeGpus,
  type MutableNodeResources,
  type PlacementRequest,
  placeReplicas,
  releaseResources,
  takeResources,
} from "../core/placement.ts";
import { currentContext, type RunContext } from "../core/context.ts";
import { Deployment } from "../core/deployment.ts";
import type { GpuDevice } from "../core/devices.ts";
import { OpExecutionError, PlacementError, ProtocolError, TransportError } from "../core/errors.ts";
import type { Mesh } from "../core/mesh.ts";
import type { MeshRuntime } from "../core/mesh_runtime.ts";
import { LocalReplica } from "../core/local_replica.ts";
import type { CloseCause } from "../core/mailbox.ts";
import { registeredServices, type ServiceDef } from "../core/service_def.ts";
import type { Task } from "../core/task.ts";
import { randomId } from "./_common.ts";
import { reviveValue } from "./handle_wire.ts";
import { FairDispatch } from "./fair_dispatch.ts";
import type { Lease, LeaseCall, NodeLeases } from "./node_leases.ts";
import type { TransportName } from "./transport.ts";

/** How far up the calls that led to an `init()` {@linkcode NodeInstances.deployNested} looks for its maker. */
const MAX_MAKER_HOPS = 1024;

/**
 * The context an op call a driver sent runs in on a node: the node's runtime, and the lease the call
 * names, which the instances its body makes are held by (see {@linkcode NodeInstances.deployNested}).
 *
 * @example
 * ```ts
 * import { Mesh, MeshNode, meshRuntime } from "../core/mesh.ts";
 * import { ServedOp } from "./node_instances.ts";
 * await using mesh = new Mesh([new MeshNode("n1")]);
 * const ctx = new ServedOp(meshRuntime(mesh), "driver-lease");
 * if (ctx.owner !== "driver-lease" || ctx.ended) throw new Error("unexpected");
 * ```
 */
export class ServedOp implements RunContext, LeaseCall {
  /** The lease its body made instances under, while it runs. */
  lease: Lease | undefined = undefined;
  /** Set when the call has ended. */
  ended = false;
  /**
   * @param mesh The node's runtime.
   * @param owner The lease the call names, if any.
   */
  constructor(readonly mesh: MeshRuntime, readonly owner: string | undefined) {}
}

/** An instance made on this node, as the node holds it. */
export interface HostedInstance {
  /** The instance. */
  replica: LocalReplica;
  /** The GPUs it holds. */
  gpus: GpuDevice[];
  /** What it was placed by (released with it). */
  request: PlacementRequest;
  /** Its lease (none for a resident instance, or when the node has no leases). */
  owner?: string;
  /** Set for a resident instance: its callers' calls reach it round-robin. */
  fair?: FairDispatch;
  /** Set for an instance that code of instance `parent` made here: it is disposed with that one. */
  parent?: string;
  /** What its calls of each method are named and traced as (made at the method's first call). */
  served?: Map<string, ServedMethod>;
}

/** A method of an instance as its calls are named (errors, streams) and traced (their SERVER span). */
export interface ServedMethod {
  /** `Service.method`. */
  readonly name: string;
  /** Its SERVER span's name and attributes. */
  readonly span: { readonly name: string; readonly attributes: { readonly "thinkagain.node": string } };
  /** The reply to a call its instance's full mailbox refuses (made at the first such refusal). */
  refused?: Uint8Array;
}

/** A resident instance as a node's welcome lists it. */
export interface ResidentInstance {
  /** Its service. */
  service: string;
  /** Its id. */
  id: string;
  /** Its replica index among the node's residents of that service. */
  replica: number;
  /** The ids of the GPUs it holds. */
  gpus: number[];
}

/** What a node's instances are made with: the node's own parts. */
export interface InstanceHost {
  /** The node's name. */
  readonly name: string;
  /** The node's session (in a `created` answer). */
  readonly session: string;
  /** The node's mesh (its one node's CPU cores). */
  readonly mesh: Mesh;
  /** Its runtime, which the instances are given. */
  readonly rt: MeshRuntime;
  /** The node's GPUs. */
  readonly gpus: readonly GpuDevice[];
  /** How handles in constructor arguments reach other nodes. */
  readonly linkOptions: { owner: object; token?: string; transport?: TransportName };
  /** When the node last read a frame (resident instances' dispatch yields to reads). */
  readonly readClock: { lastRead: number };
  /** The drivers' leases. */
  readonly leases: NodeLeases;
  /** Whether the node is draining (it makes no more instances). */
  draining(): boolean;
}

/**
 * A node's instances, with what is free of its GPUs and CPU cores.
 *
 * @example An instance created for a driver, then disposed
 * ```ts
 * import * as ta from "../mod.ts";
 * import { Mesh, MeshNode, meshRuntime } from "../core/mesh.ts";
 * import { NodeInstances } from "./node_instances.ts";
 * import { NodeLeases } from "./node_leases.ts";
 * import { strictEqual } from "node:assert/strict";
 * ta.service(class DocHostedEcho { echo(x: string) { return x; } });
 * const mesh = new Mesh([new MeshNode("n1")]);
 * const leases = new NodeLeases(0, {
 *   serviceOf: () => undefined,
 *   freeObjects() {},
 *   holdsObjects: () => false,
 *   destroy: async () => {},
 * });
 * const hosted = new NodeInstances({
 *   name: "n1",
 *   session: "s1",
 *   mesh,
 *   rt: meshRuntime(mesh),
 *   gpus: [],
 *   linkOptions: { owner: {} },
 *   readClock: { lastRead: 0 },
 *   leases,
 *   draining: () => false,
 * });
 * const { id } = hosted.create("DocHostedEcho", [], [], 0, undefined);
 * strictEqual(hosted.byId.get(id)?.replica.def.name, "DocHostedEcho");
 * await hosted.remove(id);
 * strictEqual(hosted.byId.size, 0);
 * await mesh.close();
 * ```
 */
export class NodeInstances {
  /** The instances, by id (the node's call path looks them up here). */
  readonly byId: Map<string, HostedInstance> = new Map();
  /** The resident instances (the node's own), as the welcome lists them. */
  readonly residents: ResidentInstance[] = [];
  /** Resident instances being constructed now (`GET /healthz` says "loading"). */
  loading = 0;
  /** What is free on this node: its own count, whatever drivers believe (several may share it). */
  readonly resources: MutableNodeResources;
  readonly #host: InstanceHost;
  /** The instances code of an instance here made, by that instance's id (disposed with it). */
  readonly #children = new Map<string, Set<string>>();
  /** The ids of the instances whose constructors run now (what they make is theirs). */
  readonly #constructing = new Set<string>();

  /** @param host The node. */
  constructor(host: InstanceHost) {
    this.#host = host;
    this.resources = {
      name: host.name,
      unboundedGpus: false,
      freeGpus: [...host.gpus],
      shared: new Map(),
      freeCpus: host.mesh.nodes[0].cpus, // (Infinity: not limited)
      instances: 0,
    };
  }

  /**
   * Creates an instance of a registered service for a driver (`create`), on GPUs this node
   * chooses, under the driver's lease (or one of its own when the driver gave none).
   *
   * @param service The registered service's name.
   * @param args Its constructor's arguments, as they arrived.
   * @param gpus The GPU ids the driver asked for (a preference).
   * @param replica Its replica index.
   * @param owner The driver's lease id.
   * @returns The `created` answer.
   * @throws {ProtocolError} For an unknown service; {@link PlacementError} when no GPUs are free;
   * the constructor's error when it threw.
   */
  create(
    service: string,
    args: unknown[],
    gpus: readonly number[],
    replica: number,
    owner: string | undefined,
  ): { t: "created"; id: string; session: string; gpus: number[]; leaseMs: number } {
    if (this.#host.draining()) throw new TransportError("refused", `Node "${this.#host.name}" is shutting down`);
    const def = registeredServices().get(service);
    if (def === undefined) {
      throw new ProtocolError(
        `Unknown service "${service}": node "${this.#host.name}" registered ${
          [...registeredServices().keys()].join(", ") || "none"
        }`,
      );
    }
    // the node gives its own GPUs: the ids the driver asked for are a preference, never trusted
    const request: PlacementRequest = { service, gpus: def.gpus, cpus: def.cpus, replicas: 1 };
    const devices = assignNodeGpus(this.resources, request, { asked: gpus, gpuCount: this.#host.gpus.length });
    // and counts its own cores: its code may hold some that the driver's count does not know of
    this.#checkCpus(def);
    const id = randomId(); // (travels with every call to it: short)
    const local = this.#construct(def, reviveValue(args, this.#host.linkOptions), replica, devices, id);
    if (local.failure !== undefined) throw local.failure;
    takeResources(this.resources, devices, request);
    // an instance whose creator gave no lease id gets a lease of its own, renewed by its calls: an
    // instance nobody uses is not kept for ever
    const leased = this.#host.leases.leaseMs > 0 ? (owner ?? `\u0000${id}`) : undefined;
    this.byId.set(id, { replica: local, gpus: devices, request, owner: leased });
    if (leased !== undefined) this.#host.leases.holdInstance(leased, id);
    // the GPUs it got, which its driver shows (mesh.stats()): also one placed before this node answered
    const given = devices.map((d) => d.id);
    return { t: "created", id, session: this.#host.session, gpus: given, leaseMs: this.#host.leases.leaseMs };
  }

  /**
   * Disposes an instance (calls running on it are cancelled at `deadline`, if given) and frees its
   * GPUs and CPU cores; its lease ends if it held nothing else.
   *
   * @param id The instance.
   * @param deadline When the calls still running on it are cancelled (default: they are waited for).
   * @param cause Why, as the calls it stops say (default: its mesh closed; an expired lease says so).
   */
  async remove(id: string, deadline?: number, cause?: CloseCause): Promise<void> {
    const inst = this.byId.get(id);
    if (inst === undefined) return;
    this.byId.delete(id);
    // (the last instance its driver created: what the driver's op calls made here goes too)
    const ended = inst.owner === undefined ? undefined : this.#host.leases.release(inst.owner, id);
    if (inst.parent !== undefined) this.#children.get(inst.parent)?.delete(id);
    try {
      await inst.replica.close(deadline, undefined, cause);
    } finally {
      releaseResources(this.resources, inst.gpus, inst.request);
      // what its code made goes after it: its own dispose may still use them
      await this.#removeChildren(id, deadline, cause);
      await ended;
    }
  }

  /** Disposes the instances the code of instance `id` made here (see {@linkcode remove}). */
  async #removeChildren(id: string, deadline?: number, cause?: CloseCause): Promise<void> {
    const children = this.#children.get(id);
    if (children === undefined) return;
    this.#children.delete(id);
    await Promise.all([...children].map((c) => this.remove(c, deadline, cause).catch(() => {})));
  }

  /**
   * Places and makes an instance that code running on this node asked for (`init()` in a method,
   * a constructor or an op here: the node's runtime places with this). Each replica takes its
   * GPUs and CPU cores from this node's one count, the one drivers' instances take from, all or
   * none (a `PlacementError` when they do not fit); a constructor that throws leaves its replica
   * failed (its calls fail with that error), as in any mesh. The instances belong to whoever the
   * code that asked works for (see the module doc).
   *
   * @param def The service.
   * @param args Its constructor's arguments.
   * @returns Its deployment: the instances, called in place.
   * @throws {PlacementError} When the replicas do not fit on this node.
   * @throws {TransportError} When the node is draining.
   */
  deployNested(def: ServiceDef, args: unknown[]): Deployment {
    const host = this.#host;
    if (host.draining()) throw new TransportError("refused", `Node "${host.name}" is shutting down`);
    const request: PlacementRequest = { service: def.name, gpus: def.gpus, cpus: def.cpus, replicas: def.replicas };
    const placed = placeReplicas([this.resources], request);
    const maker = this.#maker();
    // (an op call naming no lease, or a node without leases: the node's own)
    const leased = maker instanceof ServedOp && maker.owner !== undefined && host.leases.leaseMs > 0
      ? maker
      : undefined;
    const replicas: LocalReplica[] = [];
    for (let i = 0; i < placed.length; i++) {
      const id = randomId();
      const devices = placed[i].gpus as GpuDevice[];
      const local = this.#construct(def, args, i, devices, id);
      replicas.push(local);
      if (local.failure !== undefined) continue; // (it holds nothing)
      takeResources(this.resources, devices, request);
      const inst: HostedInstance = { replica: local, gpus: devices, request };
      this.byId.set(id, inst);
      if (typeof maker === "string") {
        inst.parent = maker;
        let children = this.#children.get(maker);
        if (children === undefined) this.#children.set(maker, children = new Set());
        children.add(id);
      } else if (leased !== undefined) {
        inst.owner = leased.owner;
        host.leases.holdMade(leased.owner!, id, leased);
      }
    }
    return new Deployment(def, replicas, host.mesh.name);
  }

  /**
   * Who the code running now works for: the id of the instance here whose constructor or method
   * it is (also through the ops and tasks these submitted), or the op call a driver sent; found by
   * following the calls that led to it, nearest first.
   */
  #maker(): string | ServedOp | undefined {
    let ctx = currentContext();
    for (let hops = 0; ctx !== undefined && hops < MAX_MAKER_HOPS; hops++) {
      if (ctx instanceof ServedOp) return ctx;
      const id = ctx.instance?.id;
      if (id !== undefined && (this.byId.has(id) || this.#constructing.has(id))) return id;
      // the body's task, and the context it was submitted in: its caller's
      ctx = (ctx.parent as Task<unknown> | undefined)?._ctx;
    }
    return undefined;
  }

  /**
   * Constructs an instance here; what its constructor makes is its own, and goes if it throws.
   */
  #construct(def: ServiceDef, args: unknown[], index: number, devices: GpuDevice[], id: string): LocalReplica {
    this.#constructing.add(id);
    let local: LocalReplica;
    try {
      local = new LocalReplica(def, args, this.#host.rt, index, this.#host.name, devices, id);
    } finally {
      this.#constructing.delete(id);
    }
    if (local.failure !== undefined) this.#removeChildren(id).catch(() => {});
    return local;
  }

  /** Refuses an instance of `def` when this node's free cores cannot hold it. */
  #checkCpus(def: ServiceDef): void {
    if (def.cpus <= 0) return;
    const free = this.freeCpus();
    if (def.cpus <= free) return;
    throw new PlacementError(
      def.name,
      `Cannot place service "${def.name}" on node "${this.#host.name}": needs ${def.cpus} CPU cores, ${free} ` +
        "are free (the node's other instances hold the rest: also those made by code running on it)",
    );
  }

  /**
   * Starts resident instances of a registered service (see `NodeServer.startResident`).
   *
   * @param service The registered service's name.
   * @param options `replicas`: how many instances (default 1); `args`: constructor arguments.
   * @returns The ids of the instances.
   * @throws {TypeError} For an unknown service or a bad count; {@link PlacementError} when the
   * node's GPUs or CPUs cannot hold them; an `Error` naming the service when a constructor failed.
   */
  async startResident(service: string, options: { replicas?: number; args?: unknown[] } = {}): Promise<string[]> {
    if (this.#host.draining()) throw new TransportError("refused", `Node "${this.#host.name}" is shutting down`);
    const def = registeredServices().get(service);
    if (def === undefined) {
      throw new TypeError(
        `Cannot start resident service "${service}" on node "${this.#host.name}": the module registered ${
          [...registeredServices().keys()].map((n) => `"${n}"`).join(", ") || "no services"
        }`,
      );
    }
    const replicas = options.replicas ?? 1;
    if (!Number.isSafeInteger(replicas) || replicas < 1 || replicas > 4096) {
      throw new TypeError(
        `Cannot start resident service "${service}": replicas must be an integer from 1 to 4096, got ${
          String(replicas)
        }`,
      );
    }
    const args = options.args ?? [];
    const request: PlacementRequest = { service, gpus: def.gpus, cpus: def.cpus, replicas };
    const placed = placeReplicas([this.resources], request);
    const first = this.residents.filter((r) => r.service === service).length;
    const made: string[] = [];
    this.loading++;
    try {
      for (let i = 0; i < placed.length; i++) {
        const index = first + i;
        const id = `resident/${service}/${index}`;
        const devices = placed[i].gpus as GpuDevice[];
        const local = this.#construct(def, args, index, devices, id);
        const failed = (cause: unknown) =>
          new Error(
            `Cannot start resident service "${service}" (replica ${index}) on node "${this.#host.name}": ${
              cause instanceof OpExecutionError && cause.cause !== undefined
                ? `its constructor threw: ${(cause.cause as Error)?.message ?? String(cause.cause)}`
                : `its ready promise rejected: ${(cause as Error)?.message ?? String(cause)}`
            }`,
            { cause },
          );
        if (local.failure !== undefined) throw failed(local.failure);
        takeResources(this.resources, devices, request);
        this.byId.set(id, {
          replica: local,
          gpus: devices,
          request,
          fair: new FairDispatch(local, def.maxConcurrency, this.#host.readClock),
        });
        made.push(id);
        const ready = local.value?.ready as PromiseLike<unknown> | undefined;
        if (ready !== null && typeof ready === "object" && typeof ready.then === "function") {
          try {
            await ready;
          } catch (e) {
            throw failed(e);
          }
        }
        if (this.#host.draining()) throw new TransportError("refused", `Node "${this.#host.name}" is shutting down`);
      }
    } catch (e) {
      for (const id of made) await this.remove(id).catch(() => {});
      throw e;
    } finally {
      this.loading--;
    }
    for (const id of made) {
      const inst = this.byId.get(id)!;
      this.residents.push({ service, id, replica: inst.replica.index, gpus: inst.gpus.map((g) => g.id) });
    }
    return made;
  }

  /** CPU cores not held by instances here (`Infinity`: not limited). */
  freeCpus(): number {
    return this.resources.freeCpus;
  }

  /** Disposes every instance (the node drains), each before those its code made. */
  async closeAll(): Promise<void> {
    const first = [...this.byId].filter(([, i]) => i.parent === undefined);
    await Promise.all(first.map(([id]) => this.remove(id).catch(() => {})));
    // (none, unless made by a parent that went meanwhile)
    const left = [...this.byId.values()];
    this.byId.clear();
    this.#children.clear();
    await Promise.all(left.map((i) => i.replica.close().catch(() => {})));
  }
}
