/**
 * A driver finding the resident instances its mesh's nodes host: each node's `welcome` lists its
 * residents (`thinkagain serve --start`), and every one of the service asked for becomes a replica
 * that calls it by id. Such a replica never creates nor destroys its instance (the node owns it),
 * holds no lease on it, and fails over to a sibling resident on another node when its node is lost.
 * It reaches its node over the mesh's link to that node as it is now: a node that discovery
 * (`Mesh.discover`, `Mesh.fromDns`) removed and added back, at the same endpoint or another, gets a
 * new link, and the handle follows it (a resident's id is the same after its node restarts).
 *
 * @module
 */
import { GpuDevice } from "../core/devices.ts";
import { PlacementError } from "../core/errors.ts";
import type { Deployment } from "../core/deployment.ts";
import type { CancelHook } from "../core/cancel.ts";
import type { MeshRuntime } from "../core/mesh_runtime.ts";
import type { RunPolicy } from "../core/policy.ts";
import type { ServiceDef } from "../core/service_def.ts";
import { handleWire } from "./handle_wire.ts";
import type { NodeLink } from "./link.ts";
import { meshLink } from "./link_table.ts";
import { RemoteReplica } from "./remote_replica.ts";

/**
 * A replica of a resident instance: a {@linkcode RemoteReplica} that knows its instance's id, and
 * that follows its node when the mesh links to it anew. A node that left the mesh
 * (`mesh.removeNode`: discovery saw it go) has its link dropped for good; when a node of the same
 * name joins again (`mesh.addNode`, at the same endpoint or another), the mesh links to it anew,
 * and this replica's calls go over that link: to a replica made on it, which takes this one's
 * place in the handle's deployment. Looked for only while its link is lost: nothing per call else.
 */
class ResidentReplica extends RemoteReplica {
  private readonly mesh: MeshRuntime;
  /** Its instance's id on the node (`resident/Generator/0`: the same after the node restarts). */
  private readonly residentId: string;
  private readonly callPolicy: RunPolicy | undefined;
  private home: Deployment | undefined;
  /** The replica on the mesh's current link to its node, once it had one other than its own. */
  private successor: ResidentReplica | undefined;

  constructor(
    mesh: MeshRuntime,
    def: ServiceDef,
    index: number,
    link: NodeLink,
    gpus: readonly GpuDevice[],
    policy: RunPolicy | undefined,
    id: string,
  ) {
    super(mesh, def, [], index, link, gpus, policy, id);
    this.mesh = mesh;
    this.residentId = id;
    this.callPolicy = policy;
  }

  override attach(deployment: Deployment): void {
    super.attach(deployment);
    this.home = deployment;
  }

  /**
   * Down while its link is lost; when its node is back under a new link, the replica made there
   * takes its place in the deployment, and routing picks that one from then on.
   */
  override get down(): boolean {
    const down = super.down;
    if (down) this.renewed();
    return down;
  }

  override invoke(method: string, args: unknown[], hook: CancelHook, failover: boolean): Promise<unknown> {
    if (this.link.lost) {
      const next = this.renewed();
      if (next !== undefined) return next.invoke(method, args, hook, failover);
    }
    return super.invoke(method, args, hook, failover);
  }

  /**
   * The replica of this resident on the mesh's link to its node now, when that is another link
   * than its own (the node left and joined again): made once, and put in this one's place in the
   * deployment, so later calls and the handle passed on go there (and once that one's link is lost
   * too, where it leads). `undefined` while the mesh has no node of its name, or still links to it
   * as this replica does.
   */
  private renewed(): ResidentReplica | undefined {
    const last = this.successor;
    if (last !== undefined) return last.link.lost ? (last.renewed() ?? last) : last;
    const mesh = this.mesh;
    if (mesh.closed) return undefined;
    const node = mesh.nodes.find((n) => n.name === this.node);
    if (node === undefined || node.endpoint === undefined) return undefined;
    const link = meshLink(mesh, node, handleWire);
    if (link === this.link) return undefined;
    const next = new ResidentReplica(mesh, this.def, this.index, link, this.gpus, this.callPolicy, this.residentId);
    this.successor = next;
    const home = this.home;
    if (home !== undefined) {
      next.attach(home);
      const at = home.replicas.indexOf(this);
      if (at >= 0) home.replicas[at] = next;
    }
    return next;
  }
}

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
      return new ResidentReplica(mesh, def, r.replica, link, gpus, policy, r.id);
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
