/**
 * thinkagain: distributed AI pipelines from plain async functions and classes.
 *
 * `.go()` submits work and returns an `ObjectRef` at once; refs passed into other `.go()` calls form
 * a DAG that runs as parallel as its dependencies allow; services are stateful actors placed on a
 * `Mesh` of nodes.
 *
 * @example The shortest useful program
 * ```ts
 * import * as ta from "./mod.ts";
 * const addOne = ta.op(async function addOne(x: number) { return x + 1; });
 * const multiply = ta.op("multiply", async (x: number, factor: number) => x * factor);
 * const result = await multiply.go(addOne.go(5), 3);
 * if (result !== 18) throw new Error(`expected 18, got ${result}`);
 * ```
 *
 * @module
 */
export * from "./core/mod.ts";
import type { Layer } from "effect";
import type { CpuDevice, GpuDevice } from "./core/devices.ts";
import { layerMesh as coreLayerMesh } from "./core/effect.ts";
import {
  getCurrentMesh as coreGetCurrentMesh,
  Mesh as CoreMesh,
  type MeshNode,
  type MeshOptions,
} from "./core/mesh.ts";
import { layerRemote } from "./transports/remote_executor.ts";
import type { DiscoverOptions } from "./transports/nats/discovery.ts";
import type { DnsMeshOptions } from "./adapters/dns.ts";
import { membershipOf } from "./transports/membership.ts";

export type { DiscoverOptions };
export type { DnsMeshOptions, DnsResolver } from "./adapters/dns.ts";

export { layerRemote };

/**
 * A set of nodes that services are placed on, reaching nodes with an endpoint over the transports
 * (`ws://`, `http://`, `mem://`): the core's `Mesh` built with {@linkcode layerRemote} as its remote
 * layer, unless `options.remote` names another. With no mesh, a default local mesh (one node with
 * unbounded resources) serves.
 *
 * @example Placement, run and close
 * ```ts
 * import * as ta from "./mod.ts";
 * const Gen = ta.service({ gpus: 4 }, class ModDocGen { async gen(q: string) { return q.toUpperCase(); } });
 * await using mesh = new ta.Mesh([new ta.MeshNode("a", { gpus: 8 }), new ta.MeshNode("b", { gpus: 8 })]);
 * const out = await mesh.run(async () => {
 *   const g = Gen.init();
 *   return await g.gen.go("hi");
 * });
 * if (out !== "HI" || mesh.stats().instances[0].gpus.length !== 4) throw new Error("unexpected");
 * ```
 */
export class Mesh extends CoreMesh {
  /**
   * A mesh of `nodesOrDevices`, reaching those with an endpoint over the transports.
   *
   * @param nodesOrDevices MeshNodes, or the devices of one local node.
   * @param options Name, limits, transport, token, deadline; `remote` replaces the transports' layer.
   */
  constructor(nodesOrDevices: ReadonlyArray<MeshNode | GpuDevice | CpuDevice>, options: MeshOptions = {}) {
    // options that are not an object go to the core's Mesh as given, which names what they are
    const withRemote = options !== null && typeof options === "object" && !Array.isArray(options) &&
      options.remote === undefined;
    super(nodesOrDevices, withRemote ? { ...options, remote: layerRemote } : options);
  }

  /**
   * Builds a mesh of the nodes on a NATS cluster: asks every node started with
   * `thinkagain serve app.ts --nats nats://…` to announce itself and places on whoever answers
   * within `timeoutMs` (or once `nodes` answered), each reached at its `nats://…/<name>` endpoint.
   * The mesh keeps listening: a node that announces itself later is placed on by new `init()`s,
   * and one that leaves fails its calls with `NodeLostError` (its replicas fail over). The NATS
   * client is loaded only here (the `./nats` entry).
   *
   * @param options The NATS server(s), how long to wait (`timeoutMs`), how many nodes to wait for,
   * and the mesh's own options (name, token…; its call deadline, `timeoutMs` to `new Mesh`, is
   * `callTimeoutMs` here).
   * @returns The mesh.
   * @throws {TypeError} When no node answered; `TransportError` when NATS is unreachable.
   *
   * @example No NATS server to ask
   * ```ts
   * import * as ta from "./mod.ts";
   * import { rejects } from "node:assert/strict";
   * await rejects(ta.Mesh.discover({ nats: "nats://127.0.0.1:9", timeoutMs: 500 }), (e: Error) =>
   *   e.name === "TransportError" && e.message.includes("nats://127.0.0.1:9"));
   * ```
   */
  static async discover(options: DiscoverOptions): Promise<Mesh> {
    const { discoverMesh } = await import("./transports/nats/discovery.ts");
    return await discoverMesh((nodes, o) => new Mesh(nodes, o), membershipOf, options);
  }

  /**
   * Builds a mesh of the pods behind a DNS name: a Kubernetes headless Service
   * (`thinkagain-gpu.default.svc.cluster.local`: its A records, each pod at `port`) or an SRV name
   * (`_rpc._tcp.…`). Each address's `GET /healthz` says which node serves there; the ready ones
   * make the mesh. The name is resolved again every `intervalMs` while the mesh lives: a new pod
   * joins (new `init()`s place on it), a pod gone from the records whose node no longer answers is
   * removed (its calls fail with `NodeLostError`, its replicas fail over), and one that still
   * answers and says it drains (SIGTERM) gets nothing new while its calls finish, then is removed
   * once it stops answering. `node:dns` is loaded only here.
   *
   * @param name The DNS name, or several (one per node pool: their pods make one mesh).
   * @param options `port` (default 7070), `scheme` (default `"ws"`), `intervalMs` (default 5000),
   * `timeoutMs` and `nodes` (wait up to 30 s for 1 ready node by default), `resolver` (default
   * `node:dns/promises`), and the mesh's own options (token, name…; its call deadline, `timeoutMs`
   * to `new Mesh`, is `callTimeoutMs` here).
   * @returns The mesh.
   * @throws {TypeError} When fewer than `nodes` ready nodes answered within `timeoutMs`, saying what
   * the name resolved to; for bad options.
   *
   * @example A name that resolves to nothing
   * ```ts
   * import * as ta from "./mod.ts";
   * import { rejects } from "node:assert/strict";
   * const resolver = { resolve4: async () => [], resolveSrv: async () => [] };
   * await rejects(ta.Mesh.fromDns("nobody.test", { resolver, timeoutMs: 50 }), /found 0 ready nodes at "nobody.test"/);
   * ```
   */
  static async fromDns(name: string | readonly string[], options: DnsMeshOptions = {}): Promise<Mesh> {
    const { dnsMesh } = await import("./adapters/dns.ts");
    return await dnsMesh((nodes, o) => new Mesh(nodes, o), name, options);
  }
}

/**
 * The mesh of the surrounding `mesh.run`, also inside the ops and service methods it runs (on a
 * node, code run for a driver sees the node's own mesh, made by its `NodeServer`, which is a
 * {@linkcode Mesh} in every member); `undefined` outside any, where the default local runtime
 * serves. The seed's `get_current_mesh()`.
 *
 * @returns The current mesh, or `undefined`.
 *
 * @example
 * ```ts
 * import * as ta from "./mod.ts";
 * await using mesh = new ta.Mesh([new ta.MeshNode("a")]);
 * const where = ta.op(async function modDocWhereAmI() { return ta.getCurrentMesh(); });
 * if ((await mesh.run(() => where.go())) !== mesh) throw new Error("expected the mesh of mesh.run");
 * if (ta.getCurrentMesh() !== undefined) throw new Error("expected no mesh outside mesh.run");
 * ```
 */
export function getCurrentMesh(): Mesh | undefined {
  // (the package's Mesh adds no member to the core's, only its statics and default remote layer)
  return coreGetCurrentMesh();
}

/**
 * A layer that builds a {@linkcode Mesh} (remote nodes included), makes it current for the Effects
 * it is provided to, and closes it when the layer's scope ends.
 *
 * @param nodes The mesh's nodes or devices.
 * @param options The mesh's options.
 * @returns A layer providing `CurrentMesh`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect";
 * import * as ta from "./mod.ts";
 * const inc = ta.op(async function modDocInc(x: number) { return x + 1; });
 * const program = ta.goEffect(inc, 41).pipe(Effect.provide(ta.layerMesh([new ta.MeshNode("n1", { cpus: 2 })])));
 * if ((await Effect.runPromise(program)) !== 42) throw new Error("unexpected");
 * ```
 */
export function layerMesh(
  nodes: ReadonlyArray<MeshNode | GpuDevice | CpuDevice>,
  options?: MeshOptions,
): Layer.Layer<never> {
  return coreLayerMesh(nodes, options, Mesh);
}
