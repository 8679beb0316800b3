/**
 * A mesh of the pods behind a DNS name (a Kubernetes headless Service): `ta.Mesh.fromDns(name)`
 * resolves it (A records, or SRV records for a name that starts with `_`), asks each address's
 * `GET /healthz` which node answers there, builds the mesh of the ready ones, and re-resolves on an
 * interval while the mesh lives: a pod that appears is welcomed (new `init()`s place on it), a pod
 * whose address left the records and whose node no longer answers is removed (its calls fail with
 * `NodeLostError`, its replicas fail over). A pod that left the records but still answers is
 * kept while it does: when it says it drains, nothing new is placed or sent there, and the calls
 * it runs finish; once it stops answering it is removed.
 *
 * Lives among the adapters because it resolves names with `node:dns` (Bun, Deno and Node all have
 * it); the resolver can be replaced (tests stand several "pods" on 127.0.0.2, 127.0.0.3, …). Pods
 * are reached at their IPv4 addresses (A records); IPv6-only clusters are not covered yet.
 *
 * @module
 */
import { resolve4, resolveSrv } from "node:dns/promises";
import { describe } from "../core/describe.ts";
import { type Mesh, meshRuntime } from "../core/mesh.ts";
import { checkCallTimeout, MESH_OPTION_KEYS, type MeshOptions } from "../core/mesh_config.ts";
import { MeshNode } from "../core/mesh_node.ts";
import { checkKnownKeys, type KnownKeys } from "../core/options.ts";
import { AuthError } from "../core/errors.ts";
import { backgroundInterval } from "../transports/_common.ts";
import { handleWire } from "../transports/handle_wire.ts";
import { meshLink } from "../transports/link_table.ts";
import type { NodeHealth } from "../transports/server.ts";

/** How `fromDns` resolves names: `node:dns/promises` unless a test or a custom setup says otherwise. */
export interface DnsResolver {
  /** The IPv4 addresses of `hostname` (A records). */
  resolve4(hostname: string): Promise<string[]>;
  /** The SRV records of `name` (each a target host and a port). */
  resolveSrv(name: string): Promise<ReadonlyArray<{ readonly name: string; readonly port: number }>>;
}

/**
 * Options of `Mesh.fromDns`: how to reach the pods, how often to look again, and the mesh's own
 * options. `timeoutMs` here is how long to wait for the nodes; the mesh's call deadline (its
 * `timeoutMs`) is `callTimeoutMs`.
 */
export interface DnsMeshOptions extends Omit<MeshOptions, "remote"> {
  /** The port every pod serves on, for A records (default 7070; SRV records carry their own). */
  port?: number;
  /** How the driver reaches a pod (default `"ws"`; `"wss"`/`"https"` behind TLS). */
  scheme?: "ws" | "wss" | "http" | "https";
  /** How often the name is resolved again, ms (default 5000). */
  intervalMs?: number;
  /** How long `fromDns` waits for `nodes` ready nodes before it fails, ms (default 30 000). */
  timeoutMs?: number;
  /**
   * The mesh's default deadline for remote calls, ms: what `timeoutMs` is to `new Mesh` (default:
   * none). (`Mesh.fromConfig` passes a config's top-level `timeoutMs` here.)
   */
  callTimeoutMs?: number;
  /** How many ready nodes `fromDns` waits for (default 1). */
  nodes?: number;
  /** How names are resolved (default `node:dns/promises`). */
  resolver?: DnsResolver;
}

/** Default of {@linkcode DnsMeshOptions.port}. */
const DEFAULT_DNS_PORT = 7070;
/** Default of {@linkcode DnsMeshOptions.intervalMs}. */
const DEFAULT_DNS_INTERVAL_MS = 5_000;
/** Default of {@linkcode DnsMeshOptions.timeoutMs}. */
const DEFAULT_DNS_TIMEOUT_MS = 30_000;
/** How long one `/healthz` question may take, ms. */
const PROBE_TIMEOUT_MS = 3_000;

const DNS_KEYS: KnownKeys<
  Pick<DnsMeshOptions, "port" | "scheme" | "intervalMs" | "timeoutMs" | "callTimeoutMs" | "nodes" | "resolver">
> = {
  port: true,
  scheme: true,
  intervalMs: true,
  timeoutMs: true,
  callTimeoutMs: true,
  nodes: true,
  resolver: true,
};

const systemResolver: DnsResolver = { resolve4, resolveSrv };

/** What the DNS name holds now: `host:port` addresses, or why it could not be resolved. */
async function addresses(name: string, port: number, resolver: DnsResolver): Promise<string[]> {
  if (name.startsWith("_")) {
    // SRV: each target has a port of its own (a named port of a headless Service)
    const srv = await resolver.resolveSrv(name);
    const each = await Promise.all(srv.map(async (r) => {
      const ips = await resolver.resolve4(r.name).catch(() => []);
      return ips.map((ip) => `${ip}:${r.port}`);
    }));
    return [...new Set(each.flat())].sort();
  }
  return [...new Set((await resolver.resolve4(name)).map((ip) => `${ip}:${port}`))].sort();
}

/**
 * The addresses of every name together; a name with no records (a pool scaled to zero, or no pod
 * ready yet) adds none, any other failure (DNS unreachable) fails the whole.
 */
async function addressesOf(names: readonly string[], port: number, resolver: DnsResolver): Promise<string[]> {
  const each = await Promise.all(names.map((n) =>
    addresses(n, port, resolver).catch((e) => {
      if (noRecords(e)) return [];
      throw e;
    })
  ));
  return [...new Set(each.flat())].sort();
}

/** True for the errors that mean "no such records" (no pod ready), not "DNS is unreachable". */
function noRecords(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return code === "ENOTFOUND" || code === "ENODATA" || code === "NXDOMAIN";
}

/** Which node answers at `address` and whether it takes work; `undefined` when nothing (or no node) answers. */
async function probe(address: string, scheme: string): Promise<NodeHealth | undefined> {
  const http = scheme === "wss" || scheme === "https" ? "https" : "http";
  try {
    const res = await fetch(`${http}://${address}/healthz`, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
    const body = await res.json() as Partial<NodeHealth>;
    if (typeof body?.name !== "string" || body.name === "" || typeof body.status !== "string") return undefined;
    return { status: body.status, name: body.name, protocol: Number(body.protocol) };
  } catch {
    return undefined;
  }
}

/** The ready nodes at `addrs`, by address (one address per node name: the first wins). */
async function readyNodes(
  addrs: readonly string[],
  scheme: string,
  taken: ReadonlySet<string>,
): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  const names = new Set(taken);
  const health = await Promise.all(addrs.map((a) => probe(a, scheme)));
  addrs.forEach((a, i) => {
    const h = health[i];
    if (h === undefined || h.status !== "ready" || names.has(h.name)) return;
    names.add(h.name);
    found.set(a, h.name);
  });
  return found;
}

function checkDnsOptions(name: unknown, options: DnsMeshOptions): void {
  const names = Array.isArray(name) ? name : [name];
  if (names.length === 0 || names.some((n) => typeof n !== "string" || n.trim() === "")) {
    throw new TypeError(
      `Mesh.fromDns needs a DNS name (a headless Service's) or a list of them, got ${describe(name)}`,
    );
  }
  if (options === null || typeof options !== "object") {
    throw new TypeError(`Mesh.fromDns: options must be an object, got ${describe(options)}`);
  }
  const { port, scheme, intervalMs, timeoutMs, nodes, resolver } = options;
  if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536)) {
    throw new RangeError(`Mesh.fromDns: port must be an integer from 1 to 65535, got ${describe(port)}`);
  }
  if (scheme !== undefined && !["ws", "wss", "http", "https"].includes(scheme)) {
    throw new TypeError(`Mesh.fromDns: scheme must be "ws", "wss", "http" or "https", got ${describe(scheme)}`);
  }
  for (const [k, v] of [["intervalMs", intervalMs], ["timeoutMs", timeoutMs]] as const) {
    if (v !== undefined && !(typeof v === "number" && v > 0 && v < 2 ** 31)) {
      throw new RangeError(`Mesh.fromDns: ${k} must be a number of ms > 0 and < 2^31, got ${describe(v)}`);
    }
  }
  if (nodes !== undefined && !(Number.isInteger(nodes) && nodes >= 1)) {
    throw new RangeError(`Mesh.fromDns: nodes must be an integer ≥ 1, got ${describe(nodes)}`);
  }
  checkCallTimeout("Mesh.fromDns", options.callTimeoutMs);
  if (
    resolver !== undefined &&
    (resolver === null || typeof resolver.resolve4 !== "function" || typeof resolver.resolveSrv !== "function")
  ) {
    throw new TypeError(`Mesh.fromDns: resolver needs resolve4 and resolveSrv functions, got ${describe(resolver)}`);
  }
}

/**
 * Builds a mesh of the ready nodes behind a DNS name and keeps it in step with the name while the
 * mesh lives (see the module doc). What the package root's `Mesh.fromDns` calls.
 *
 * @param make Builds the mesh from its nodes and options (the package root's `Mesh`).
 * @param name The DNS name: a headless Service (`thinkagain-gpu.default.svc.cluster.local`, A
 * records) or an SRV name (`_rpc._tcp.thinkagain-gpu.default.svc.cluster.local`); or several (one
 * per node pool), whose pods make one mesh.
 * @param options Port, scheme, interval, how long and for how many nodes to wait, the resolver,
 * and the mesh's own options (token, name…; its call deadline is `callTimeoutMs`).
 * @returns The mesh.
 * @throws {TypeError} For a bad name or options, and when fewer than `nodes` ready nodes answered
 * within `timeoutMs` (saying what the name resolved to).
 *
 * @example Two "pods" on one machine, named by an injected resolver
 * ```ts
 * import { dnsMesh } from "./dns.ts";
 * import { serveFrames } from "./serve.ts";
 * import { NodeServer } from "../server.ts";
 * import * as ta from "../mod.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const a = new NodeServer({ name: "pod-0" });
 * const first = await serveFrames(a.handler, { hostname: "127.0.0.2", port: 0, health: () => a.health() });
 * const b = new NodeServer({ name: "pod-1" });
 * const second = await serveFrames(b.handler, { hostname: "127.0.0.3", port: first.port, health: () => b.health() });
 * const resolver = { resolve4: async () => ["127.0.0.2", "127.0.0.3"], resolveSrv: async () => [] };
 * const mesh = await dnsMesh((nodes, o) => new ta.Mesh(nodes, o), "pods.test", { port: first.port, resolver, nodes: 2 });
 * deepStrictEqual(mesh.nodes.map((n) => n.name), ["pod-0", "pod-1"]);
 * await mesh.close();
 * await Promise.all([first.close(), second.close(), a.drain(), b.drain()]);
 * ```
 */
export async function dnsMesh<M extends Mesh>(
  make: (nodes: MeshNode[], options: MeshOptions) => M,
  name: string | readonly string[],
  options: DnsMeshOptions = {},
): Promise<M> {
  checkDnsOptions(name, options);
  const names = typeof name === "string" ? [name] : [...name];
  const label = names.map((n) => `"${n}"`).join(", ");
  const { remote: _, ...meshKeys } = MESH_OPTION_KEYS;
  checkKnownKeys("Mesh.fromDns", options, { ...meshKeys, ...DNS_KEYS });
  const {
    port = DEFAULT_DNS_PORT,
    scheme = "ws",
    intervalMs = DEFAULT_DNS_INTERVAL_MS,
    timeoutMs = DEFAULT_DNS_TIMEOUT_MS,
    nodes: want = 1,
    resolver = systemResolver,
    callTimeoutMs,
    ...rest
  } = options;
  // the mesh's own timeoutMs is its call deadline; this one was how long to look
  const meshOptions: MeshOptions = callTimeoutMs === undefined ? rest : { ...rest, timeoutMs: callTimeoutMs };
  const endpoint = (address: string) => `${scheme}://${address}`;

  // the first nodes: resolve and ask until `want` ready nodes answered, or time is up
  const deadline = performance.now() + timeoutMs;
  let found = new Map<string, string>();
  let seen: string[] = [];
  let lastError: unknown;
  for (;;) {
    try {
      // a lookup that answers late (an unreachable cluster DNS: seconds) or never is bounded by what
      // is left of timeoutMs
      let timer: ReturnType<typeof setTimeout> | undefined;
      // (never less than 50 ms: a lookup at the deadline still gets its answer, not a timeout)
      const left = Math.max(50, deadline - performance.now());
      seen = await Promise.race([
        addressesOf(names, port, resolver),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer from the resolver within ${timeoutMs} ms`)), left);
        }),
      ]).finally(() => clearTimeout(timer));
      lastError = undefined;
    } catch (e) {
      seen = [];
      lastError = e;
    }
    found = await readyNodes(seen, scheme, new Set());
    if (found.size >= want) break;
    const left = deadline - performance.now();
    if (left <= 0) {
      const what = lastError !== undefined
        ? `resolving it failed: ${(lastError as Error)?.message ?? String(lastError)}`
        : seen.length === 0
        ? `${names.length === 1 ? "it has" : "they have"} no addresses`
        : `${names.length === 1 ? "it" : "they"} resolved to ${seen.join(", ")}, and ${found.size} of them ` +
          "answered GET /healthz as a ready node";
      throw new TypeError(
        `Mesh.fromDns: found ${found.size} ready node${found.size === 1 ? "" : "s"} at ${label} within ` +
          `${timeoutMs} ms, wanted ${want}: ${what}`,
      );
    }
    await new Promise((r) => setTimeout(r, Math.min(left, Math.min(intervalMs, 1_000))));
  }
  const nodes = [...found].map(([address, node]) => new MeshNode(node, { endpoint: endpoint(address) }));
  const mesh = make(nodes, meshOptions);
  const rt = meshRuntime(mesh);
  // what each node has (its welcome) before the first init(): placement must not take a node that
  // has declared nothing for one with GPUs; a token the nodes refuse fails here, not at the first call
  const welcomed = await Promise.allSettled(nodes.map((n) => meshLink(rt, n, handleWire).welcome()));
  const refused = welcomed.find((w) => w.status === "rejected" && w.reason instanceof AuthError);
  if (refused !== undefined) {
    await mesh.close();
    throw (refused as PromiseRejectedResult).reason;
  }
  const known = new Map(found); // address → node name
  const draining = new Set<string>(); // addresses of nodes removed while they drain

  let busy = false;
  const tick = async () => {
    if (busy || rt.closed) return;
    busy = true;
    try {
      // a node removed by someone else may come back at its address
      for (const [a, n] of known) if (!draining.has(a) && !rt.nodes.some((x) => x.name === n)) known.delete(a);
      let now: Set<string>;
      try {
        now = new Set(await addressesOf(names, port, resolver));
      } catch {
        return; // DNS unreachable: nobody is taken for gone on that account
      }
      // gone from the records: a node that still answers drains (nothing new goes there, its calls
      // finish); one that no longer answers is gone
      const vanished = [...known].filter(([a]) => !now.has(a));
      const still = await Promise.all(vanished.map(([a]) => probe(a, scheme)));
      vanished.forEach(([a, n], i) => {
        if (rt.closed) return;
        const h = still[i];
        if (h?.name === n) {
          if (h.status !== "ready" && !draining.has(a)) {
            draining.add(a);
            rt.removeNode(n, `it is ${h.status} and left the DNS records of ${label}`, { drain: true });
          }
          return;
        }
        known.delete(a);
        draining.delete(a);
        rt.removeNode(n, `its address ${a} left the DNS records of ${label} and it no longer answers`);
      });
      const fresh = [...now].filter((a) => !known.has(a));
      const taken = new Set(rt.nodes.map((x) => x.name));
      for (const [a, n] of await readyNodes(fresh, scheme, taken)) {
        if (rt.closed) return;
        // what it has, first: it joins with its GPUs and CPUs known to placement
        const w = await meshLink(rt, new MeshNode(n, { endpoint: endpoint(a) }), handleWire).welcome()
          .catch(() => undefined);
        if (w === undefined || rt.closed || rt.nodes.some((x) => x.name === n)) continue; // next round
        rt.addNode(
          new MeshNode(n, { endpoint: endpoint(a), gpus: w.gpus, ...(w.cpus === null ? {} : { cpus: w.cpus }) }),
        );
        known.set(a, n);
      }
    } catch {
      // one failed round changes nothing; the next one tries again
    } finally {
      busy = false;
    }
  };
  const timer = backgroundInterval(() => void tick(), intervalMs);
  rt.addCleanup(() => {
    clearInterval(timer);
    return Promise.resolve();
  });
  return mesh;
}
