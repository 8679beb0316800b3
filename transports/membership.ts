/**
 * A mesh's membership as discovery uses it: nodes that announce themselves join, nodes that leave
 * are removed (those that drain, with `drain: true`), through the mesh runtime's own API for nodes
 * that come and go.
 *
 * @module
 */
import type { Mesh } from "../core/mesh.ts";
import type { MeshNode } from "../core/mesh_node.ts";
import { meshRuntime } from "../core/mesh.ts";
import type { Membership } from "./nats/discovery.ts";

/** The mesh's API for nodes that come and go (`mesh.addNode`, `mesh.removeNode`). */
interface DynamicMesh {
  addNode(node: MeshNode): void;
  removeNode(name: string, options?: { reason?: string; drain?: boolean }): boolean;
  readonly nodes: readonly MeshNode[];
}

/**
 * The membership of `mesh`: joins and leaves go to its `addNode` and `removeNode`.
 *
 * @param mesh A mesh.
 * @returns Its membership, or `undefined` when the mesh takes no nodes after it was built.
 *
 * @example
 * ```ts
 * import * as ta from "../mod.ts";
 * import { membershipOf } from "./membership.ts";
 * await using mesh = new ta.Mesh([new ta.MeshNode("a")]);
 * const m = membershipOf(mesh);
 * if (m !== undefined && !m.has("a")) throw new Error("unexpected");
 * ```
 */
export function membershipOf(mesh: Mesh): Membership | undefined {
  const dyn = mesh as unknown as Partial<DynamicMesh>;
  if (typeof dyn.addNode !== "function" || typeof dyn.removeNode !== "function") return undefined;
  const m = dyn as DynamicMesh;
  return {
    has: (name) => m.nodes.some((n) => n.name === name),
    join: (node) => {
      if (!mesh.closed) m.addNode(node);
    },
    leave: (name, detail) => {
      if (!mesh.closed) m.removeNode(name, { reason: detail });
    },
    drain: (name, detail) => {
      if (!mesh.closed) m.removeNode(name, { reason: detail, drain: true });
    },
    onClose: (cleanup) => meshRuntime(mesh).addCleanup(cleanup),
  };
}
