/**
 * What the core needs from outside to run work on another node, as an Effect service: the core
 * names it, a `Layer` provides it (the transports' `layerRemote`, composed by the package root),
 * and a mesh gets it when it is built — never through a setter called at import time. A mesh with
 * no remote layer runs in-process nodes only, and placing a service on a node with an endpoint
 * fails with a `PlacementError` that says so.
 *
 * @module
 */
import { Context } from "effect";
import type { Deployment, Replica } from "./deployment.ts";
import type { GpuDevice } from "./devices.ts";
import type { MeshNode } from "./mesh_node.ts";
import type { MeshRuntime } from "./mesh_runtime.ts";
import type { ServiceDef } from "./service_def.ts";
import type { NodeHealth } from "./explain.ts";

/** Remote execution: replicas on nodes behind a transport, and op calls sent to nodes. */
export interface RemoteExecutor {
  /**
   * A replica of `def` on the remote `node` (its instance is created there on first use).
   *
   * @param mesh The mesh the replica belongs to (its options, its lifetime).
   * @param def The service.
   * @param args Its constructor arguments.
   * @param index The replica's index.
   * @param node The node placement chose (it has an endpoint).
   * @param gpus The GPUs placement assigned on that node.
   */
  createReplica(
    mesh: MeshRuntime,
    def: ServiceDef,
    args: unknown[],
    index: number,
    node: MeshNode,
    gpus: readonly GpuDevice[],
  ): Replica;
  /**
   * Replicas reaching the resident instances of `def` that the mesh's nodes host (started with
   * `thinkagain serve --start`), learned from their welcomes; rejects with a `PlacementError`
   * naming the nodes asked when none hosts one. Optional: without it, `Service.connect()` fails.
   */
  connect?(mesh: MeshRuntime, def: ServiceDef): Promise<Replica[]>;
  /**
   * A body that runs the remote-capable op `op` on a node that registered it, or `undefined` to
   * run it in this process (the mesh has no remote nodes).
   */
  opBody(mesh: MeshRuntime, op: string, gpus: number): ((...args: unknown[]) => unknown) | undefined;
  /**
   * Checks, when the mesh is made, that every node with an endpoint can be reached as configured
   * (e.g. the transport named in the options or the environment serves its scheme), so a
   * configuration mistake is an error at `new Mesh(…)`, not at the first call.
   *
   * @throws {TypeError} Naming the node, its endpoint and what cannot reach it.
   */
  checkNodes?(mesh: MeshRuntime): void;
  /**
   * A node joined the mesh after it was made (`mesh.addNode`): starts learning what it has, so
   * the next placements count its own GPUs and CPUs. Optional.
   */
  nodeJoined?(mesh: MeshRuntime, node: MeshNode): void;
  /**
   * A node left the mesh (`mesh.removeNode`): the calls waiting on it fail now with a
   * `NodeLostError` naming it and saying `detail`, later calls of its replicas fail over, and it is
   * never reached again through this mesh (a node of that name that joins later gets a new link).
   */
  nodeLeft?(mesh: MeshRuntime, node: MeshNode, detail: string): void;
  /**
   * For `ref.explain()`: whether the node named `node` answers its keepalive pings, as the mesh's
   * link to it knows (`undefined` when the mesh has no link to it yet). Optional; asked only by
   * `explain()` and the stuck-work watchdog.
   */
  nodeHealth?(mesh: MeshRuntime, node: string): NodeHealth | undefined;
}

/**
 * The service key of {@link RemoteExecutor}. Provide it with a layer, e.g.
 * `Layer.succeed(RemoteExecutor, impl)`.
 *
 * @example A mesh whose remote layer is a test double
 * ```ts
 * import { Layer } from "effect";
 * import * as core from "./mod.ts";
 * import { RemoteExecutor } from "./remote_executor.ts";
 * const layer = Layer.succeed(RemoteExecutor, {
 *   createReplica: () => { throw new Error("not in this test"); },
 *   opBody: () => undefined,
 * });
 * await using mesh = new core.Mesh([new core.MeshNode("a")], { remote: layer });
 * if (mesh.nodes.length !== 1) throw new Error("unexpected");
 * ```
 */
export const RemoteExecutor: Context.Service<RemoteExecutor, RemoteExecutor> = Context.Service<RemoteExecutor>(
  "@thinkagain/thinkagain/RemoteExecutor",
);

export type { Deployment };
