/**
 * A driver finding the resident instances its mesh's nodes host: each node's `welcome` lists its
 * residents (`thinkagain serve --start`), and every one of the service asked for becomes a replica
 * that calls it by id. Such a replica never creates nor destroys its instance (the node owns it),
 * holds no lease on it, and fails over to a sibling resident on another node when its node is lost.
 *
 * @module
 */
import { GpuDevice } from "../core/devices.ts";
import { PlacementError } from "../core/errors.ts";
import type { MeshRuntime } from "../core/mesh_runtime.ts";
import type { ServiceDef } from "../core/service_def.ts";
import { handleWire } from "./handle_wire.ts";
import { meshLink } from "./link_table.ts";
import { RemoteReplica } from "./remote_replica.ts";

/**
 * Replicas for the resident instances of `def` on the nodes of `mesh` (every node with an
 * endpoint is asked, at once).
 *
 * @param mesh The driver's mesh.
 * @param def The service.
 * @returns One replica per resident instance, in node order.
 * @throws {PlacementError} When no node hosts one; the message names every node asked and what it said.
 *
 * @example A node without residents: the error names it
 * ```ts
 * import { Mesh, MeshNode, meshRuntime } from "../core/mesh.ts";
 * import { defineService } from "../core/service_def.ts";
 * import { PlacementError } from "../core/errors.ts";
 * import { layerRemote } from "./remote_executor.ts";
 * import { NodeServer } from "./node_server.ts";
 * import { serveInMemory } from "./in_memory.ts";
 * import { residentReplicas } from "./residents.ts";
 * import { rejects } from "node:assert/strict";
 * const def = defineService({ name: "ResidentsDocGen" }, class { gen() { return 1; } });
 * const node = new NodeServer({ name: "n1" });
 * const server = serveInMemory("doc-residents", node.handler);
 * await using mesh = new Mesh([new MeshNode("n1", { endpoint: "mem://doc-residents" })], { remote: layerRemote });
 * await rejects(residentReplicas(meshRuntime(mesh), def), (e) => e instanceof PlacementError && /n1/.test(e.message));
 * await server.close();
 * ```
 */
export async function residentReplicas(mesh: MeshRuntime, def: ServiceDef): Promise<RemoteReplica[]> {
  const nodes = mesh.nodes.filter((n) => n.endpoint !== undefined);
  const t = mesh.options.timeoutMs; // Infinity: no deadline
  const policy = def.policy ?? (t && Number.isFinite(t) ? { retries: 0, timeoutMs: t } : undefined);
  const said: string[] = [];
  let loading = false;
  const found = await Promise.all(nodes.map(async (node) => {
    const link = meshLink(mesh, node, handleWire);
    let welcome;
    try {
      welcome = await link.welcome();
    } catch (e) {
      said.push(`${node.name} (${node.endpoint}): unreachable: ${(e as Error)?.message ?? String(e)}`);
      return [];
    }
    const residents = welcome.residents ?? [];
    const mine = residents.filter((r) => r.service === def.name);
    if (mine.length === 0) {
      // asked again next time (a link keeps its node's welcome): residents may have started since
      link.forgetWelcome();
      const others = [...new Set(residents.map((r) => r.service))];
      said.push(
        `${node.name}: ${others.length === 0 ? "no residents" : `residents ${others.join(", ")}`}${
          welcome.loading ? ", still loading the ones it starts (its /healthz says loading)" : ""
        }`,
      );
      if (welcome.loading) loading = true;
    }
    return mine.map((r) => {
      const gpus = r.gpus.map((id) => new GpuDevice(id));
      return new RemoteReplica(mesh, def, [], r.replica, link, gpus, policy, r.id);
    });
  }));
  const replicas = found.flat();
  if (replicas.length === 0) {
    throw new PlacementError(
      def.name,
      `Cannot connect to service "${def.name}": no node of mesh "${mesh.name}" hosts a resident instance of it ` +
        `(asked ${said.join("; ")}); ${
          loading ? "try again once it is ready, or " : ""
        }start one with \`thinkagain serve <module> --start ${def.name}\``,
    );
  }
  return replicas;
}
