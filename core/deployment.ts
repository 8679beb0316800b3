/**
 * A service placed in one mesh: its replicas, and which one a call goes to (the least loaded, by
 * `placement.ts`).
 *
 * @module
 */
import type { RunContext } from "./context.ts";
import type { GpuDevice } from "./devices.ts";
import { leastLoaded } from "./placement.ts";
import type { ServiceDef } from "./service_def.ts";
import type { Task } from "./task.ts";

function outstandingOf(r: Replica): number {
  return r.outstanding;
}

/**
 * Whether a replica's instance exists and serves (see {@linkcode Replica.state}); `mesh.stats()`
 * reports it per instance.
 *
 * @example
 * ```ts
 * import { Mesh, MeshNode } from "./mesh.ts";
 * import { service } from "./service.ts";
 * const Broken = service(class DeploymentDocBroken { constructor() { throw new Error("no model"); } hi() { return 1; } });
 * await using mesh = new Mesh([new MeshNode("n1")]);
 * await mesh.run(() => Broken.init().hi.go()).catch(() => {});
 * if (mesh.stats().instances[0].state !== "failed") throw new Error("a failed instance says so");
 * ```
 */
export type ReplicaState = "creating" | "ready" | "failed" | "lost" | "draining";

/** Where one replica runs and how calls reach it. */
export interface Replica {
  readonly index: number;
  readonly node: string;
  readonly gpus: readonly GpuDevice[];
  /** Calls queued or running. */
  readonly outstanding: number;
  /** Calls submitted so far. */
  readonly calls: number;
  /**
   * Whether its instance exists: `"creating"` (a remote instance not created yet), `"ready"`,
   * `"failed"` (its constructor threw, or the node refused to create it: its calls fail without
   * running), `"lost"` (its node was lost: calls go to its siblings) or `"draining"` (its node shuts
   * down and refuses new calls: they go to its siblings). Absent: ready.
   */
  readonly state?: ReplicaState;
  /**
   * True while its node cannot take new calls (lost, or draining) and they should go to a sibling
   * that can (see {@linkcode Deployment.route}). Read on every call: a field or a cheap getter.
   * Absent: false.
   */
  readonly down?: boolean;
  /** Why creating the instance failed, while `state` is `"failed"`. */
  readonly failure?: unknown;
  call(method: string, args: unknown[], ctx: RunContext | undefined): Task<unknown>;
  /**
   * Rejects queued calls, waits for running ones (until `deadline`, a `performance.now()` time,
   * after which they are cancelled), then disposes the instance. `spared`: the call closing the
   * mesh and those it runs under, which wait for the close: not waited for; an instance running one
   * is disposed when it ends, after the close.
   */
  close(deadline?: number, spared?: ReadonlySet<Task<unknown>>): Promise<void>;
  /** Rejects the calls not yet started and starts no more (the first, synchronous step of closing). */
  stopAccepting?(): void;
  /** Told which deployment it belongs to (remote replicas fail over to siblings). */
  attach?(deployment: Deployment): void;
  /**
   * Its node shuts down cleanly (`mesh.removeNode(…, { drain: true })`): the calls it has finish,
   * new ones go to its siblings while one is up.
   */
  nodeDraining?(): void;
}

/** A service placed in one mesh: its replicas. */
export class Deployment {
  readonly def: ServiceDef;
  /** Emptied once its mesh has closed, so a handle that still holds it keeps no closed mesh alive. */
  readonly replicas: Replica[];
  /** The mesh it was placed in (`undefined`: a handle that arrived from another node). */
  readonly mesh: string | undefined;
  disposed = false;
  constructor(def: ServiceDef, replicas: Replica[], mesh?: string) {
    this.def = def;
    this.replicas = replicas;
    this.mesh = mesh;
  }
  /**
   * The replica with the fewest outstanding calls (the first such, so one replica is stable) among
   * those up; when none is (every node lost or draining), among all: there the call fails over,
   * makes its instance again (`restarts`) or fails with its node.
   */
  route(): Replica {
    const rs = this.replicas;
    if (rs.length === 1) return rs[0];
    // (leastLoaded's loop, skipping the replicas that are down: no array made per call)
    let best: Replica | undefined;
    let bestLoad = Infinity;
    for (let i = 0; i < rs.length; i++) {
      const r = rs[i];
      if (r.down === true) continue;
      if (best === undefined || r.outstanding < bestLoad) {
        best = r;
        bestLoad = r.outstanding;
      }
    }
    return best ?? leastLoaded(rs, outstandingOf)!;
  }
}
