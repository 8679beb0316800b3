/**
 * The links of each owner (a mesh, or a node process calling other nodes): one {@linkcode NodeLink}
 * per owner and endpoint, made on first use ({@linkcode linkFor}, {@linkcode meshLink}), their
 * health ({@linkcode linkHealth}), and their end: one dropped when its node left the mesh
 * ({@linkcode dropLink}), all of a node process's when it drains ({@linkcode closeLinks}). A mesh
 * closes its links with itself; a node process keeps at most {@linkcode MAX_NODE_LINKS}.
 *
 * @module
 */
import { TransportError } from "../core/errors.ts";
import type { MeshNode } from "../core/mesh_node.ts";
import { MeshRuntime } from "../core/mesh_runtime.ts";
import type { NodeHealth } from "../core/explain.ts";
import { envTransport } from "./_env.ts";
import { type HandleWire, type LinkOptions, NodeLink } from "./link.ts";
import type { ConnectOptions } from "./transport.ts";
import { transportFor } from "./transport_for.ts";

const links = new WeakMap<object, Map<string, NodeLink>>();
/** What forgets a mesh's link's close at the mesh's close, for {@linkcode dropLink}. */
const closesWithMesh = new WeakMap<NodeLink, () => void>();

/** The most links a node process (any owner but a mesh) keeps to other nodes. */
export const MAX_NODE_LINKS: number = 1024;

/**
 * Closes every link `owner` made (a node process draining: the links it opened for handles that
 * arrived as arguments). A mesh's links close with the mesh.
 */
export async function closeLinks(owner: object): Promise<void> {
  const m = links.get(owner);
  if (m === undefined) return;
  links.delete(owner);
  await Promise.all([...m.values()].map((l) => l.close()));
}

/**
 * The health of `owner`'s link to the node named `node` (see {@linkcode NodeLink.health}), or
 * `undefined` when it has no link to that node.
 *
 * @param owner A mesh (or a node process) holding links.
 * @param node The node's name.
 * @returns What the link knows of the node's keepalives.
 */
export function linkHealth(owner: object, node: string): NodeHealth | undefined {
  const m = links.get(owner);
  if (m === undefined) return undefined;
  for (const link of m.values()) if (link.node === node) return link.health();
  return undefined;
}

/**
 * Drops `owner`'s link to `endpoint` for good (its node left the mesh): the calls waiting on it
 * fail at once with a `NodeLostError` saying `detail`, the link refuses every later request (a
 * replica that still holds it fails over), and a node that comes back at that endpoint gets a new
 * link.
 *
 * @param owner The mesh the link belongs to.
 * @param endpoint The node's endpoint.
 * @param detail Why the node is gone (in the errors).
 * @returns When the link is closed.
 */
export function dropLink(owner: object, endpoint: string, detail: string): Promise<void> {
  const m = links.get(owner);
  const link = m?.get(endpoint);
  if (link === undefined) return Promise.resolve();
  m!.delete(endpoint);
  // (closed here: the mesh forgets it, so that a mesh whose nodes come and go keeps none of theirs)
  closesWithMesh.get(link)?.();
  closesWithMesh.delete(link);
  link.giveUp(detail);
  return link.close();
}

/**
 * The link from `owner` (a mesh, or a node process) to `endpoint`, created on first use.
 *
 * @param owner The mesh or node process the link belongs to (it closes with a mesh).
 * @param nodeName The node's name (in errors).
 * @param endpoint Where the node listens.
 * @param options Token, transport override and frame size limit.
 * @param handles How handles travel on the link (`handleWire` from `handle_wire.ts`).
 * @returns The link, shared by every caller with the same owner and endpoint.
 */
export function linkFor(
  owner: object,
  nodeName: string,
  endpoint: string,
  options: LinkOptions,
  handles: HandleWire,
): NodeLink {
  let m = links.get(owner);
  if (m === undefined) links.set(owner, m = new Map());
  let link = m.get(endpoint);
  if (link === undefined) {
    // a mesh links to its configured nodes; a node's links (for handles that arrived) are bounded
    if (!(owner instanceof MeshRuntime) && m.size >= MAX_NODE_LINKS) {
      throw new TransportError(
        "refused",
        `Cannot open a link to ${endpoint}: this node already holds ${MAX_NODE_LINKS} links to other nodes, ` +
          "the most it keeps",
        endpoint,
      );
    }
    const transport = transportFor(endpoint, envTransport() ?? options.transport);
    const connect: ConnectOptions = {};
    if (options.token !== undefined) connect.token = options.token;
    if (options.maxFrameBytes !== undefined) connect.maxFrameBytes = options.maxFrameBytes;
    link = new NodeLink(nodeName, endpoint, transport, connect, handles, owner, options);
    m.set(endpoint, link);
    const l = link;
    if (owner instanceof MeshRuntime) {
      closesWithMesh.set(l, owner.addCleanup(() => l.close()));
      l.welcome().catch(() => {}); // learn early what the node has (placement uses it)
    }
  }
  return link;
}

/**
 * The link from `mesh` to one of its nodes with an endpoint, made with the mesh's token and transport.
 *
 * @param mesh The mesh the link belongs to.
 * @param node One of its nodes with an endpoint.
 * @param handles How handles travel on the link.
 * @returns The mesh's link to the node.
 */
export function meshLink(mesh: MeshRuntime, node: MeshNode, handles: HandleWire): NodeLink {
  return linkFor(mesh, node.name, node.endpoint!, meshLinkOptions(mesh), handles);
}

/**
 * The options a mesh's links take from the mesh's own (token, transport, welcome, destroy and
 * keepalive timings).
 *
 * @param mesh The mesh the links belong to.
 * @returns Options for {@linkcode linkFor}.
 *
 * @example A mesh's token reaches its links
 * ```ts
 * import { meshLinkOptions } from "./link_table.ts";
 * import type { MeshRuntime } from "../core/mesh_runtime.ts";
 * const mesh = { options: { token: "t" } } as unknown as MeshRuntime;
 * if (meshLinkOptions(mesh).token !== "t") throw new Error("token lost");
 * ```
 */
export function meshLinkOptions(mesh: MeshRuntime): LinkOptions {
  const o = mesh.options;
  return {
    token: o.token,
    transport: o.transport,
    welcomeTtlMs: o.welcomeTtlMs,
    destroyTimeoutMs: o.destroyTimeoutMs,
    keepaliveMs: o.keepaliveMs,
    lostAfterMs: o.lostAfterMs,
  };
}
