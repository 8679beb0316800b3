/**
 * Remote ops over NATS queue groups: when the nodes that registered an op are all reached through
 * the same NATS servers, a call goes to the op's queue group and NATS hands it to one of them, so
 * the driver neither scans nodes per call nor keeps a link per node busy.
 *
 * @module
 */
import type { MeshRuntime } from "../../core/mesh_runtime.ts";
import type { HandleWire, NodeLink } from "../link.ts";
import { linkFor, meshLinkOptions } from "../link_table.ts";
import { opQueueEndpoint } from "./endpoint.ts";

/**
 * The mesh's link to the queue group of `op` among `candidates` (the links to the nodes that
 * registered it), or `undefined` when they are fewer than two or not all NATS nodes on the same
 * servers (then the driver picks a node itself).
 *
 * @param mesh The mesh the call runs in.
 * @param op The op's registered name.
 * @param candidates Links to the nodes that registered it.
 * @param handles How handles travel on the link.
 * @returns The link to `nats://…/op:<op>`, or `undefined`.
 *
 * @example Nodes on other transports are chosen by the driver
 * ```ts
 * import { natsQueueLink } from "./queue_link.ts";
 * import { MeshRuntime } from "../../core/mesh_runtime.ts";
 * import { handleWire } from "../handle_wire.ts";
 * const mesh = new MeshRuntime([], {});
 * if (natsQueueLink(mesh, "embed", [], handleWire) !== undefined) throw new Error("unexpected");
 * ```
 */
export function natsQueueLink(
  mesh: MeshRuntime,
  op: string,
  candidates: readonly NodeLink[],
  handles: HandleWire,
): NodeLink | undefined {
  const endpoint = opQueueEndpoint(candidates.map((l) => l.endpoint), op);
  if (endpoint === undefined) return undefined;
  return linkFor(mesh, endpoint.slice(endpoint.lastIndexOf("/") + 1), endpoint, meshLinkOptions(mesh), handles);
}
