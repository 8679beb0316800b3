/**
 * The transports' implementation of the core's remote execution ({@linkcode RemoteExecutor}):
 * replicas of services placed on nodes with an endpoint, and remote-capable ops run on nodes that
 * registered them. A mesh gets it through {@linkcode layerRemote}; importing this module changes
 * nothing.
 *
 * @module
 */
import { Layer } from "effect";
import type { Replica } from "../core/deployment.ts";
import type { GpuDevice } from "../core/devices.ts";
import type { MeshNode } from "../core/mesh_node.ts";
import type { MeshRuntime } from "../core/mesh_runtime.ts";
import { RemoteExecutor } from "../core/remote_executor.ts";
import type { ServiceDef } from "../core/service_def.ts";
import { envTransport } from "./_env.ts";
import { handleWire } from "./handle_wire.ts";
import { dropLink, linkHealth, meshLink } from "./link_table.ts";
import type { NodeHealth } from "../core/explain.ts";
import { remoteOpBody } from "./remote_ops.ts";
import { RemoteReplica } from "./remote_replica.ts";
import { residentReplicas } from "./residents.ts";
import { transportFor } from "./transport_for.ts";

/**
 * Remote execution over the transports: what the core asks for when a service replica is placed on
 * a node with an endpoint (`createReplica`) and when a remote-capable op is called in a mesh with
 * such nodes (`opBody`).
 *
 * @example A mesh without remote nodes runs its ops here
 * ```ts
 * import { Mesh, MeshNode, meshRuntime } from "../core/mesh.ts";
 * import { remoteExecutor } from "./remote_executor.ts";
 * import { strictEqual } from "node:assert/strict";
 * await using mesh = new Mesh([new MeshNode("local")]);
 * strictEqual(remoteExecutor.opBody(meshRuntime(mesh), "anyOp", 0), undefined);
 * ```
 */
export const remoteExecutor: RemoteExecutor = {
  /**
   * A replica of `def` on `node`, reached over the mesh's link to it, with the service's retry and
   * deadline policy (or the mesh's deadline).
   */
  createReplica(
    mesh: MeshRuntime,
    def: ServiceDef,
    args: unknown[],
    index: number,
    node: MeshNode,
    gpus: readonly GpuDevice[],
  ): Replica {
    const t = mesh.options.timeoutMs; // Infinity: no deadline
    const policy = def.policy ?? (t && Number.isFinite(t) ? { retries: 0, timeoutMs: t } : undefined);
    return new RemoteReplica(mesh, def, args, index, meshLink(mesh, node, handleWire), gpus, policy);
  },
  /** Replicas of the resident instances of `def` the mesh's nodes host (see {@linkcode residentReplicas}). */
  connect(mesh: MeshRuntime, def: ServiceDef): Promise<Replica[]> {
    return residentReplicas(mesh, def);
  },
  /** The body that runs a remote-capable op on a node (see {@linkcode remoteOpBody}). */
  opBody(mesh: MeshRuntime, name: string, gpus: number): ((...args: unknown[]) => unknown) | undefined {
    return remoteOpBody(mesh, name, gpus);
  },
  /**
   * Every node's endpoint can be reached with the transport its scheme, the mesh's `transport`
   * option or `THINKAGAIN_TRANSPORT` picks (`THINKAGAIN_TRANSPORT=in_memory` with a `ws://` node is
   * a TypeError here, at `new Mesh(…)`, naming the node and where the override came from).
   */
  /** Whether `node` answers the keepalives of the mesh's link to it (see {@linkcode linkHealth}). */
  nodeHealth(mesh: MeshRuntime, node: string): NodeHealth | undefined {
    return linkHealth(mesh, node);
  },
  /**
   * A node joined: its link is made now and asks what it has, so placement counts its resources;
   * and the nodes this mesh already reaches are told of it (a `hello` again, which declares the
   * mesh's nodes), so that they may pull results kept there and reach instances there by handle.
   */
  nodeJoined(mesh: MeshRuntime, node: MeshNode): void {
    if (node.endpoint === undefined) return;
    meshLink(mesh, node, handleWire);
    for (const other of mesh.nodes) {
      // (only links already made: a node this mesh never reached gets the whole list at its first hello)
      if (other === node || other.endpoint === undefined || linkHealth(mesh, other.name) === undefined) continue;
      const link = meshLink(mesh, other, handleWire);
      link.forgetWelcome();
      link.welcome().catch(() => {});
    }
  },
  /** A node left: its link is dropped, failing the calls waiting on it (see {@linkcode dropLink}). */
  nodeLeft(mesh: MeshRuntime, node: MeshNode, detail: string): void {
    if (node.endpoint !== undefined) dropLink(mesh, node.endpoint, detail).catch(() => {});
  },
  checkNodes(mesh: MeshRuntime): void {
    const env = envTransport();
    const override = env ?? mesh.options.transport;
    const from = env !== undefined
      ? ` (THINKAGAIN_TRANSPORT=${env})`
      : override !== undefined
      ? ` (the mesh's transport option)`
      : "";
    for (const node of mesh.nodes) {
      if (node.endpoint === undefined) continue;
      try {
        transportFor(node.endpoint, override);
      } catch (e) {
        throw new TypeError(
          `Mesh "${mesh.name}": node "${node.name}" cannot be reached${from}: ${(e as Error).message}`,
          { cause: e },
        );
      }
    }
  },
};

/**
 * The layer that provides {@linkcode remoteExecutor} as the core's {@linkcode RemoteExecutor}: a
 * mesh built with it (`new Mesh(nodes, { remote: layerRemote })`) reaches nodes with an endpoint.
 *
 * @example A service on a node behind the in-memory transport
 * ```ts
 * import { service } from "../core/service.ts";
 * import { Mesh, MeshNode } from "../core/mesh.ts";
 * import { layerRemote } from "./remote_executor.ts";
 * import { NodeServer } from "./node_server.ts";
 * import { serveInMemory } from "./in_memory.ts";
 * import { strictEqual } from "node:assert/strict";
 * const Where = service(class LayerRemoteDocWhere { at() { return "on the node"; } });
 * const server = serveInMemory("doc-layer-remote", new NodeServer({ name: "n1" }).handler);
 * const mesh = new Mesh([new MeshNode("n1", { endpoint: "mem://doc-layer-remote" })], { remote: layerRemote });
 * try {
 *   strictEqual(await mesh.run(() => Where.init().at.go()), "on the node");
 * } finally {
 *   await mesh.close();
 *   await server.close();
 * }
 * ```
 */
export const layerRemote: Layer.Layer<RemoteExecutor> = Layer.succeed(RemoteExecutor, remoteExecutor);
