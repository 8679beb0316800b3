/**
 * Connecting to resident instances: a node started with `thinkagain serve app.ts --start Generator`
 * constructs `Generator` once and keeps it; a driver's `Generator.connect()` (inside `mesh.run`) or
 * `mesh.connect(Generator)` gets a handle to the resident replicas its mesh's nodes host, instead
 * of creating an instance of its own. Each call goes to the least-loaded of them. The handle owns
 * nothing: closing the mesh, or the driver dying, leaves the instances as they are.
 *
 * @module
 */
import { Deployment } from "./deployment.ts";
import { PlacementError } from "./errors.ts";
import { HandleState, makeHandle } from "./handle.ts";
import type { MeshRuntime } from "./mesh_runtime.ts";
import type { ServiceDef } from "./service_def.ts";

/**
 * A handle to the resident instances of `def` hosted by the nodes of `mesh`.
 *
 * @param mesh The mesh whose nodes are asked (their welcomes list their residents).
 * @param def The service.
 * @returns A service handle whose calls go to the least-loaded resident replica.
 * @throws {PlacementError} When the mesh cannot reach nodes, or none of its nodes hosts one (the
 * message names the nodes asked and what each said).
 *
 * @example A mesh with no nodes behind a transport has no residents to connect to
 * ```ts
 * import { Mesh, MeshNode, meshRuntime } from "./mesh.ts";
 * import { connectResidents } from "./connect.ts";
 * import { defineService } from "./service_def.ts";
 * import { PlacementError } from "./errors.ts";
 * import { rejects } from "node:assert/strict";
 * const def = defineService({ name: "ConnectDocGen" }, class { gen() { return 1; } });
 * await using mesh = new Mesh([new MeshNode("local")]);
 * await rejects(connectResidents(meshRuntime(mesh), def), PlacementError);
 * ```
 */
export async function connectResidents(mesh: MeshRuntime, def: ServiceDef): Promise<object> {
  if (mesh.closed) throw new TypeError(`Cannot connect to service "${def.name}": mesh "${mesh.name}" is closed`);
  const connect = mesh.remote?.connect;
  if (connect === undefined || !mesh.hasRemoteNodes) {
    throw new PlacementError(
      def.name,
      `Cannot connect to service "${def.name}": mesh "${mesh.name}" has no node ${
        mesh.hasRemoteNodes ? "it can reach (it was built without a remote layer)" : "with an endpoint"
      }; resident instances live on nodes started with \`thinkagain serve <module> --start ${def.name}\``,
    );
  }
  const replicas = await connect.call(mesh.remote, mesh, def);
  const deployment = new Deployment(def, replicas, mesh.name);
  for (const r of replicas) r.attach?.(deployment);
  const state = new HandleState(def, []);
  state.pinned = deployment;
  state.pinnedBy = mesh; // (its replicas reach the residents over this mesh's links)
  return makeHandle(state);
}
