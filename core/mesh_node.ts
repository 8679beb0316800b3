/**
 * `MeshNode`: one node of a mesh — a name, its resources (GPUs, CPUs) and, for a node in another
 * process, its endpoint.
 *
 * @module
 */
import { describe } from "./describe.ts";
import { GpuDevice } from "./devices.ts";
import { checkKnownKeys, type KnownKeys } from "./options.ts";

/** Resources and address of a {@link MeshNode}. */
export interface MeshNodeOptions {
  /**
   * Number of GPUs, or the GPUs themselves (default 0; for a node with an endpoint: as many as the
   * node reports, and given ones are a cap). `Infinity`: unbounded, none assigned.
   */
  gpus?: number | readonly GpuDevice[];
  /** Number of CPU cores (default: unbounded; for a node with an endpoint: as the node reports, given ones a cap). */
  cpus?: number;
  /** Where a remote node listens (`ws://host:port`, `http://host:port`); absent: a node in this process. */
  endpoint?: string;
}

const NODE_OPTION_KEYS: KnownKeys<MeshNodeOptions> = { gpus: true, cpus: true, endpoint: true };

/** The endpoint schemes a transport serves (`transports/transport_for.ts` picks one by them). */
const ENDPOINT_SCHEMES: ReadonlySet<string> = new Set(["ws", "wss", "http", "https", "mem", "nats"]);

/**
 * What is wrong with a node endpoint whose scheme has a transport, in words, or `undefined` when
 * nothing is: it must parse as a URL (`new URL`, nothing more: no DNS) and name a host, so that a
 * typo is refused where the node is declared, not reported later as a failed call. `mem://` names a
 * node in this process (any name); `nats://` may list several seed servers
 * (`nats://h1:4222,h2:4222/<node>`), each of which must be a host.
 *
 * @param endpoint An endpoint such as `ws://10.0.0.2:7070`.
 * @returns Why it cannot name a node, or `undefined`.
 *
 * @example
 * ```ts
 * import { endpointProblem } from "./mesh_node.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(endpointProblem("ws://[::1]:7070"), undefined);
 * strictEqual(endpointProblem("nats://h1:4222,h2:4222/gpu1"), undefined);
 * strictEqual(endpointProblem("ws://::1:7070"), "it is not a URL (an IPv6 address goes in brackets: ws://[::1]:7070)");
 * strictEqual(endpointProblem("ws://a b:7070"), "it is not a URL");
 * strictEqual(endpointProblem("ws://"), "it names no host");
 * strictEqual(endpointProblem("nats:///gpu1"), "it names no host");
 * ```
 */
export function endpointProblem(endpoint: string): string | undefined {
  // (a NATS endpoint's seeds may repeat the scheme: nats://h1,nats://h2/n1)
  const m = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)/i.exec(endpoint.replace(/,nats:\/\//gi, ","));
  if (m === null) return "it is not a URL";
  const scheme = m[1].toLowerCase();
  if (scheme === "mem") return endpoint.length === "mem://".length ? "it names no node (mem://name)" : undefined;
  // each seed of a NATS endpoint on its own
  for (const authority of scheme === "nats" ? m[2].split(",") : [m[2]]) {
    if (authority.replace(/^.*@/, "").replace(/:\d*$/, "") === "") return "it names no host";
    try {
      new URL(scheme === "nats" ? `nats://${authority}/` : endpoint);
    } catch {
      // a bare IPv6 address (ws://::1:7070) is the likely slip: say where its brackets go
      return "it is not a URL" +
        (/:.*:/.test(authority) && !authority.includes("[")
          ? ` (an IPv6 address goes in brackets: ${scheme}://[::1]:${scheme === "nats" ? 4222 : 7070})`
          : "");
    }
  }
  return undefined;
}

/**
 * One node of a mesh: a name, its resources, and (for a remote node) its endpoint.
 *
 * @example
 * ```ts
 * import { MeshNode } from "./mesh_node.ts";
 * const n = new MeshNode("server1", { gpus: 8, cpus: 32 });
 * if (n.gpus.length !== 8 || n.cpus !== 32) throw new Error("unexpected");
 * ```
 */
export class MeshNode {
  /** Unique name within the mesh. */
  readonly name: string;
  /** The node's GPUs (ids 0..n-1 unless given). */
  readonly gpus: readonly GpuDevice[];
  /** True when the GPU count is unbounded (the default local runtime). */
  readonly unboundedGpus: boolean;
  /** CPU cores (`Infinity`: not limited). */
  readonly cpus: number;
  /** Endpoint of a remote node; `undefined` for a node inside this process. */
  readonly endpoint: string | undefined;
  /**
   * Which resources were given. A remote node reports its own in its `welcome`: what was not given
   * is taken from there, and what was given caps it.
   */
  readonly declares: { readonly gpus: boolean; readonly cpus: boolean };

  /**
   * A node of a mesh: in this process, or reached at `options.endpoint`.
   *
   * @param name Unique within the mesh.
   * @param options Resources and endpoint.
   */
  constructor(name: string, options: MeshNodeOptions = {}) {
    if (typeof name !== "string" || name === "") {
      throw new TypeError(`MeshNode name must be a non-empty string, got ${describe(name)}`);
    }
    if (options === null || typeof options !== "object") {
      throw new TypeError(`MeshNode "${name}" options must be an object, got ${describe(options)}`);
    }
    checkKnownKeys(`MeshNode "${name}"`, options, NODE_OPTION_KEYS);
    this.name = name;
    const g = options.gpus ?? 0;
    this.unboundedGpus = g === Infinity;
    if (Array.isArray(g)) {
      if (!g.every((d) => d instanceof GpuDevice)) {
        const adapters = g.some((d) =>
          typeof d === "object" && d !== null && (d as { kind?: unknown }).kind === "webgpu-adapter"
        );
        throw new TypeError(
          `MeshNode "${name}": gpus must be a count or an array of GpuDevice` +
            (adapters ? "; got WebGPU adapter info (webgpuAdapters()): use webgpuGpuDevices() for devices" : ""),
        );
      }
      this.gpus = [...g];
    } else if (g === Infinity) {
      this.gpus = [];
    } else if (typeof g === "number" && Number.isInteger(g) && g >= 0) {
      this.gpus = Array.from({ length: g }, (_, i) => new GpuDevice(i));
    } else {
      throw new RangeError(`MeshNode "${name}": gpus must be a non-negative integer, got ${describe(g)}`);
    }
    const c = options.cpus ?? Infinity;
    if (!(c === Infinity || (typeof c === "number" && Number.isInteger(c) && c >= 0))) {
      throw new RangeError(`MeshNode "${name}": cpus must be a non-negative integer, got ${describe(c)}`);
    }
    this.cpus = c;
    if (
      options.endpoint !== undefined &&
      (typeof options.endpoint !== "string" || !/^[a-z][a-z0-9+.-]*:\/\//i.test(options.endpoint))
    ) {
      throw new TypeError(
        `MeshNode "${name}": endpoint must be a URL such as ws://127.0.0.1:7070, got ${describe(options.endpoint)}`,
      );
    }
    const scheme = options.endpoint?.slice(0, options.endpoint.indexOf(":")).toLowerCase();
    if (scheme !== undefined && !ENDPOINT_SCHEMES.has(scheme)) {
      // refused here, not at the first call, where placement would already have taken its resources
      throw new TypeError(
        `MeshNode "${name}": endpoint scheme "${scheme}" has no transport (use ws, wss, http, https, nats or mem), ` +
          `got ${JSON.stringify(options.endpoint)}`,
      );
    }
    const problem = options.endpoint === undefined ? undefined : endpointProblem(options.endpoint);
    if (problem !== undefined) {
      throw new TypeError(
        `MeshNode "${name}": endpoint ${JSON.stringify(options.endpoint)} cannot name a node: ${problem}`,
      );
    }
    this.endpoint = options.endpoint;
    this.declares = { gpus: options.gpus !== undefined && g !== Infinity, cpus: c !== Infinity };
  }
}
