/**
 * A mesh's membership as discovery uses it: nodes that announce themselves join, nodes that leave
 * are removed, through the mesh runtime's own API for nodes that come and go.
 *
 * @module
 */
import type { Mesh } from "../core/mesh.ts";
import type { MeshNode } from "../core/mesh_node.ts";
import { meshRuntime } from "../core/mesh.ts";
import type { Membership } from "./nats/discovery.ts";

/** The runtime API for nodes that come and go (present once the mesh runtime offers it). */
interface DynamicRuntime {
  addNode(node: MeshNode): void;
  removeNode(name: string, detail?: string): void;
  readonly nodes: readonly MeshNode[];
  addCleanup(cleanup: () => Promise<void>): void;
}

/**
 * The membership of `mesh`: joins and leaves go to its runtime.
 *
 * @param mesh A mesh.
 * @returns Its membership, or `undefined` when its runtime takes no nodes after it was built.
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
  const rt = meshRuntime(mesh) as unknown as Partial<DynamicRuntime>;
  if (typeof rt.addNode !== "function" || typeof rt.removeNode !== "function") return undefined;
  const dyn = rt as DynamicRuntime;
  return {
    has: (name) => dyn.nodes.some((n) => n.name === name),
    join: (node) => dyn.addNode(node),
    leave: (name, detail) => dyn.removeNode(name, detail),
    onClose: (cleanup) => dyn.addCleanup(cleanup),
  };
}
