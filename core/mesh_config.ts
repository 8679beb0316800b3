/**
 * How a mesh is configured: its options in code ({@linkcode MeshOptions}) and as JSON
 * ({@linkcode MeshConfig}, read by `Mesh.fromConfig`), validated here with errors that name the
 * field.
 *
 * @module
 */
import type { Explanation } from "./explain.ts";
import { Layer } from "effect";
import { readTextFile, workingDirectoryUrl } from "./_runtime.ts";
import { describe } from "./describe.ts";
import { MeshNode } from "./mesh_node.ts";
import { checkKnownKeys, checkOptionType, type KnownKeys } from "./options.ts";
import type { RemoteExecutor } from "./remote_executor.ts";
import { checkToken } from "./token.ts";

/** How often a mesh pings a node while calls are in flight there, unless `keepaliveMs` says otherwise, in ms. */
export const DEFAULT_KEEPALIVE_MS = 5_000;
/** How long a pinged node may answer nothing before it is taken for lost, unless `lostAfterMs` says otherwise, in ms. */
export const DEFAULT_LOST_AFTER_MS = 30_000;

/** Options of a `Mesh`. */
export interface MeshOptions {
  /** Name in errors and stats (default `"mesh"`). */
  name?: string;
  /** At most this many op calls run at once in this mesh (default: unbounded). */
  maxConcurrentOps?: number;
  /**
   * With `maxConcurrentOps`: at most this many ready op calls wait for one of its slots; past it a
   * call fails at once with `OverloadedError` (default 100,000; `"unbounded"` opts out).
   */
  maxWaitingOps?: number | "unbounded";
  /** Transport for remote nodes, overriding the endpoint scheme. */
  transport?: "http" | "websocket" | "in_memory" | "nats";
  /**
   * Auth token for remote nodes: visible ASCII characters (`!` to `~`), no spaces, as every
   * transport carries it unchanged (an HTTP header); the whitespace around it is dropped.
   */
  token?: string;
  /** Default deadline for remote calls, in ms. */
  timeoutMs?: number;
  /**
   * The layer that provides remote execution (nodes with an endpoint). The package root's `Mesh`
   * passes the transports' `layerRemote`; pass your own to run remote calls another way, or
   * none (with `thinkagain/core` alone) for a mesh of in-process nodes. It is built in the mesh's
   * scope when the mesh is made, so it must build synchronously: one that needs asynchronous work
   * (reading a config first) is a `TypeError`; do that work first and pass
   * `Layer.succeed(RemoteExecutor, executor)`.
   */
  remote?: Layer.Layer<RemoteExecutor>;
  /**
   * How long a node's `welcome` is trusted over a transport with no connection to tell of a
   * restart (HTTP), in ms (default 5000).
   */
  welcomeTtlMs?: number;
  /** How long closing waits for a node to confirm it destroyed an instance, in ms (default 5000). */
  destroyTimeoutMs?: number;
  /**
   * How often the mesh pings a node while calls are in flight there or it holds instances there, in
   * ms (default 5000).
   */
  keepaliveMs?: number;
  /**
   * How long a pinged node may answer nothing before it is taken for lost, in ms (default 30 000,
   * longer than `keepaliveMs`): the calls waiting on it fail with `NodeLostError` (a hung node, a
   * partition), new calls go to a replica elsewhere, and an answer that comes later is ignored. A
   * node whose event loop is blocked for longer (a long synchronous method) is taken for lost too.
   */
  lostAfterMs?: number;
  /**
   * The credit window of a stream from a node (a streaming call's items): how many items, and about
   * how many bytes of them, its producer may run ahead of this mesh's consumer before it waits
   * (default 1024 items and 4 MiB). Larger windows go faster over slow links; smaller ones hold less.
   */
  streamWindow?: { items?: number; bytes?: number };
  /**
   * A remote result larger than this many bytes (as encoded) stays in the object store of the node
   * that made it (default 64 KiB): the ref knows where, a call on another node pulls it from there
   * node to node, and `await ref` fetches it once. `Infinity`: every result comes back at once.
   */
  keepResultsAbove?: number;
  /**
   * The stuck-work watchdog (off by default): a task of this mesh pending or running for longer
   * than this many ms is reported once, with its `explain()`, to `onStuck`.
   */
  stuckAfterMs?: number;
  /** Told of each stuck task once, with its explanation (default: a `console.warn` of it). */
  onStuck?: (explanation: Explanation) => void;
}

/**
 * The keys of {@linkcode MeshOptions} (any other is an error naming the closest of these).
 *
 * @example
 * ```ts
 * import { MESH_OPTION_KEYS } from "./mesh_config.ts";
 * if (!MESH_OPTION_KEYS.timeoutMs || "timeoutMS" in MESH_OPTION_KEYS) throw new Error("unexpected");
 * ```
 */
export const MESH_OPTION_KEYS: KnownKeys<MeshOptions> = {
  name: true,
  maxConcurrentOps: true,
  maxWaitingOps: true,
  transport: true,
  token: true,
  timeoutMs: true,
  remote: true,
  welcomeTtlMs: true,
  destroyTimeoutMs: true,
  keepaliveMs: true,
  lostAfterMs: true,
  streamWindow: true,
  keepResultsAbove: true,
  stuckAfterMs: true,
  onStuck: true,
};

/** The transports a mesh's `transport` option (and a config's) may name. */
const TRANSPORTS: readonly string[] = ["http", "websocket", "in_memory", "nats"];

/**
 * Checks the types of the {@linkcode MeshOptions} whose use comes later (a name, a token sent to
 * every node, a transport picked at the first call, the remote layer built at the first remote
 * call), so that a wrong one fails the mesh's construction, naming it. A token must be one every
 * transport carries as it is (visible ASCII, no spaces, once the whitespace around it is dropped).
 *
 * @param options The options given to a `Mesh`.
 * @throws {TypeError} Naming the option and what it got.
 *
 * @example
 * ```ts
 * import { checkMeshOptionTypes } from "./mesh_config.ts";
 * import { throws } from "node:assert/strict";
 * checkMeshOptionTypes({ name: "prod", token: "s3cret", transport: "http" });
 * throws(() => checkMeshOptionTypes({ token: 5 as never }), /Mesh: token must be a string, got number 5/);
 * throws(() => checkMeshOptionTypes({ token: "密码" }), /Mesh: token must be visible ASCII characters only/);
 * ```
 */
export function checkMeshOptionTypes(options: MeshOptions): void {
  const name: unknown = options.name;
  if (name !== undefined && (typeof name !== "string" || name === "")) {
    throw new TypeError(`Mesh: name must be a non-empty string, got ${describe(name)}`);
  }
  checkOptionType("Mesh", "token", options.token, "string");
  // one every transport carries as it is (the Mesh drops the whitespace around it first)
  checkToken("Mesh", options.token?.trim());
  const transport: unknown = options.transport;
  if (transport !== undefined && !TRANSPORTS.includes(transport as string)) {
    throw new TypeError(
      `Mesh: transport must be "http", "websocket", "nats" or "in_memory", got ${describe(transport)}`,
    );
  }
  if (options.remote !== undefined && !Layer.isLayer(options.remote)) {
    throw new TypeError(
      `Mesh: remote must be a Layer providing the remote executor (such as layerRemote), got ${
        describe(options.remote)
      }`,
    );
  }
}

/**
 * Checks the `callTimeoutMs` of a mesh that finds its nodes (`Mesh.discover`, `Mesh.fromDns`),
 * whose own `timeoutMs` is how long to look: it becomes the mesh's `timeoutMs`, checked as that is.
 *
 * @param what Who asks, in the error.
 * @param callTimeoutMs The mesh's call deadline, ms, if given.
 * @throws {RangeError} When it is not a positive number (`Infinity`: none).
 *
 * @example
 * ```ts
 * import { checkCallTimeout } from "./mesh_config.ts";
 * import { throws } from "node:assert/strict";
 * checkCallTimeout("Mesh.discover", 30_000);
 * throws(() => checkCallTimeout("Mesh.discover", 0), /Mesh\.discover: callTimeoutMs must be a positive number/);
 * ```
 */
export function checkCallTimeout(what: string, callTimeoutMs: unknown): void {
  if (callTimeoutMs !== undefined && !(typeof callTimeoutMs === "number" && callTimeoutMs > 0)) {
    throw new RangeError(
      `${what}: callTimeoutMs must be a positive number of ms (the mesh's call deadline; Infinity: none), got ${
        describe(callTimeoutMs)
      }`,
    );
  }
}

/** A mesh as JSON configuration (what `Mesh.fromConfig` reads). */
export interface MeshConfig {
  /** The mesh's name. */
  name?: string;
  /** Transport for remote nodes. */
  transport?: "http" | "websocket" | "in_memory" | "nats";
  /** Auth token for remote nodes (visible ASCII, no spaces: see `MeshOptions.token`). */
  token?: string;
  /**
   * Default deadline for remote calls, ms (also with `discover` or `dns`, whose own `timeoutMs` is
   * how long to look: it reaches them as their `callTimeoutMs`).
   */
  timeoutMs?: number;
  /** At most this many op calls at once. */
  maxConcurrentOps?: number;
  /** The stuck-work watchdog: report each task pending or running longer than this many ms (off by default). */
  stuckAfterMs?: number;
  /** The nodes: name, endpoint (remote nodes), GPUs and CPUs (or `discover` instead). */
  nodes?: Array<MeshNodeConfig>;
  /** Find the nodes instead of listing them: whoever answers on a NATS cluster (`Mesh.discover`). */
  discover?: MeshDiscoverConfig;
  /** Find the nodes instead of listing them: the pods behind a DNS name (`Mesh.fromDns`). */
  dns?: MeshDnsConfig;
}

/**
 * Where a {@linkcode MeshConfig} finds its nodes by DNS (`Mesh.fromDns`): a Kubernetes headless
 * Service's name (its A records, every pod on `port`) or an SRV name (`_rpc._tcp.…`), resolved
 * again every `intervalMs` while the mesh lives.
 *
 * @example
 * ```ts
 * import type { MeshDnsConfig } from "./mesh_config.ts";
 * const d: MeshDnsConfig = { name: "thinkagain-gpu.default.svc.cluster.local", port: 7070, intervalMs: 5000 };
 * if (d.port !== 7070) throw new Error("unexpected");
 * ```
 */
export interface MeshDnsConfig {
  /** The DNS name, or several (one per node pool: their pods make one mesh). */
  name: string | string[];
  /** The port every pod serves on, for A records (default 7070). */
  port?: number;
  /** How the driver reaches a pod (default `"ws"`). */
  scheme?: "ws" | "wss" | "http" | "https";
  /** How often the name is resolved again, ms (default 5000). */
  intervalMs?: number;
  /** How long to wait for `nodes` ready nodes, ms (default 30 000). */
  timeoutMs?: number;
  /** How many ready nodes to wait for (default 1). */
  nodes?: number;
}

const DNS_CONFIG_KEYS: KnownKeys<MeshDnsConfig> = {
  name: true,
  port: true,
  scheme: true,
  intervalMs: true,
  timeoutMs: true,
  nodes: true,
};

/**
 * Where a {@linkcode MeshConfig} finds its nodes instead of listing them (`Mesh.discover`).
 *
 * @example
 * ```ts
 * import type { MeshDiscoverConfig } from "./mesh_config.ts";
 * const d: MeshDiscoverConfig = { nats: "nats://10.0.0.9:4222", timeoutMs: 2000 };
 * if (!d.nats.startsWith("nats://")) throw new Error("unexpected");
 * ```
 */
export interface MeshDiscoverConfig {
  /** The NATS server(s) the nodes announce themselves on (`nats://host:4222`). */
  nats: string;
  /** How long to collect answers, ms (default 1000). */
  timeoutMs?: number;
  /** Stop collecting once this many nodes answered. */
  nodes?: number;
  /** How often to ask the cluster again who is there, ms (default 5000; 0: never). */
  refreshMs?: number;
}

const DISCOVER_CONFIG_KEYS: KnownKeys<MeshDiscoverConfig> = {
  nats: true,
  timeoutMs: true,
  nodes: true,
  refreshMs: true,
};

/**
 * One node in a {@linkcode MeshConfig}.
 *
 * @example
 * ```ts
 * import type { MeshNodeConfig } from "./mesh_config.ts";
 * const node: MeshNodeConfig = { name: "gpu1", endpoint: "ws://10.0.0.2:7070", gpus: 1 };
 * if (node.name !== "gpu1") throw new Error("unexpected");
 * ```
 */
export interface MeshNodeConfig {
  /** Its name. */
  name: string;
  /** Where it listens (a remote node); absent: a node in this process. */
  endpoint?: string;
  /** Its GPUs. */
  gpus?: number;
  /** Its CPU cores. */
  cpus?: number;
}

const CONFIG_KEYS: KnownKeys<MeshConfig> = {
  name: true,
  transport: true,
  token: true,
  timeoutMs: true,
  maxConcurrentOps: true,
  stuckAfterMs: true,
  nodes: true,
  discover: true,
  dns: true,
};
const NODE_CONFIG_KEYS: KnownKeys<MeshNodeConfig> = { name: true, endpoint: true, gpus: true, cpus: true };

/**
 * Reads a mesh config: an object, or a JSON file (a path, relative to the working directory, or a
 * URL), into the nodes and options of a mesh. A file (a path or a `file:` URL) is read afresh on
 * every call, so a changed file is seen at once; another URL is loaded as a JSON module.
 *
 * @param config The config, or where to read it.
 * @returns The nodes and options.
 * @throws {TypeError} For an unreadable file, a file that is not JSON (naming it) or a bad config,
 * naming the field.
 *
 * @example
 * ```ts
 * import { readMeshConfig } from "./mesh_config.ts";
 * const { nodes, options } = await readMeshConfig({ name: "prod", nodes: [{ name: "a", gpus: 2 }] });
 * if (nodes[0].gpus.length !== 2 || options.name !== "prod") throw new Error("unexpected");
 * ```
 */
export async function readMeshConfig(
  config: MeshConfig | string | URL,
): Promise<{ nodes: MeshNode[]; options: MeshOptions; discover?: MeshDiscoverConfig; dns?: MeshDnsConfig }> {
  let c: unknown = config;
  if (typeof config === "string" || config instanceof URL) {
    let url: URL;
    if (config instanceof URL) url = config;
    else if (/^[a-z][a-z0-9+.-]*:/i.test(config)) url = new URL(config);
    else {
      const base = workingDirectoryUrl();
      if (base === undefined) {
        throw new TypeError("Mesh.fromConfig: pass an absolute path or URL (this runtime has no working directory)");
      }
      url = new URL(config, base);
    }
    if (url.protocol === "file:") c = parseConfigText(await readConfigFile(url), url);
    else {
      // a remote config (https:, data:) is loaded as a JSON module, where the runtime can
      try {
        c = (await import(url.href, { with: { type: "json" } })).default;
      } catch (e) {
        throw new TypeError(`Mesh.fromConfig: cannot read ${url.href}: ${(e as Error).message}`, { cause: e });
      }
    }
  }
  return parseMeshConfig(c);
}

/** A config file's text, read now: each call sees the file as it is (an import would be cached). */
async function readConfigFile(url: URL): Promise<string> {
  try {
    return await readTextFile(url);
  } catch (e) {
    throw new TypeError(`Mesh.fromConfig: cannot read ${url.href}: ${(e as Error).message}`, { cause: e });
  }
}

/** A config file's JSON, or a TypeError naming the file. */
function parseConfigText(text: string, url: URL): unknown {
  try {
    return JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text); // a byte order mark is no JSON
  } catch (e) {
    throw new TypeError(`Mesh.fromConfig: ${url.href} is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Validates a mesh config object into the nodes and options of a mesh.
 *
 * @param c The parsed JSON.
 * @returns The nodes and options.
 * @throws {TypeError} For a bad config, naming the field.
 *
 * @example
 * ```ts
 * import { parseMeshConfig } from "./mesh_config.ts";
 * import { throws } from "node:assert/strict";
 * throws(() => parseMeshConfig({ nodes: [], colour: "red" }), /unknown field "colour"/);
 * throws(() => parseMeshConfig({ nodes: [{ name: "a", endpont: "ws://h:1" }] }), /did you mean "endpoint"/);
 * const { discover } = parseMeshConfig({ discover: { nats: "nats://h:4222", timeoutMs: 500 } });
 * if (discover?.nats !== "nats://h:4222") throw new Error("unexpected");
 * ```
 */
export function parseMeshConfig(
  c: unknown,
): { nodes: MeshNode[]; options: MeshOptions; discover?: MeshDiscoverConfig; dns?: MeshDnsConfig } {
  const discover = c !== null && typeof c === "object" ? (c as MeshConfig).discover : undefined;
  const dns = c !== null && typeof c === "object" ? (c as MeshConfig).dns : undefined;
  if (
    c === null || typeof c !== "object" ||
    (discover === undefined && dns === undefined && !Array.isArray((c as MeshConfig).nodes))
  ) {
    throw new TypeError('Mesh.fromConfig: the config needs a "nodes" array (or a "discover" or "dns" entry)');
  }
  const cfg = c as MeshConfig;
  // a typo must not pass unnoticed: an "endpont" would turn a remote node into a local one
  checkKnownKeys("Mesh.fromConfig", cfg, CONFIG_KEYS, "field");
  if (discover !== undefined) {
    if (cfg.nodes !== undefined) {
      throw new TypeError('Mesh.fromConfig: give "nodes" or "discover", not both');
    }
    if (discover === null || typeof discover !== "object" || typeof discover.nats !== "string") {
      throw new TypeError(
        `Mesh.fromConfig: "discover" needs { "nats": "nats://host:4222" }, got ${describe(discover)}`,
      );
    }
    checkKnownKeys("Mesh.fromConfig: discover", discover, DISCOVER_CONFIG_KEYS, "field");
  }
  if (dns !== undefined) {
    if (cfg.nodes !== undefined || discover !== undefined) {
      throw new TypeError('Mesh.fromConfig: give one of "nodes", "discover" or "dns"');
    }
    if (
      dns === null || typeof dns !== "object" ||
      !(typeof dns.name === "string" || (Array.isArray(dns.name) && dns.name.every((n) => typeof n === "string")))
    ) {
      throw new TypeError(
        `Mesh.fromConfig: "dns" needs { "name": "thinkagain-gpu.default.svc.cluster.local" }, got ${describe(dns)}`,
      );
    }
    checkKnownKeys("Mesh.fromConfig: dns", dns, DNS_CONFIG_KEYS, "field");
  }
  const nodes = (cfg.nodes ?? []).map((n, i) => {
    if (n === null || typeof n !== "object" || typeof n.name !== "string") {
      throw new TypeError(`Mesh.fromConfig: nodes[${i}] needs a "name" string`);
    }
    checkKnownKeys(`Mesh.fromConfig: nodes[${i}] ("${n.name}")`, n, NODE_CONFIG_KEYS, "field");
    return new MeshNode(n.name, { gpus: n.gpus, cpus: n.cpus, endpoint: n.endpoint });
  });
  if (cfg.transport !== undefined && !TRANSPORTS.includes(cfg.transport)) {
    throw new TypeError(
      `Mesh.fromConfig: transport must be "http", "websocket", "nats" or "in_memory", got ${describe(cfg.transport)}`,
    );
  }
  const stuck = cfg.stuckAfterMs;
  if (stuck !== undefined && !(typeof stuck === "number" && stuck > 0 && stuck < Infinity)) {
    throw new TypeError(
      `Mesh.fromConfig: stuckAfterMs must be a positive number of ms (e.g. 60000), got ${describe(stuck)}`,
    );
  }
  const options: MeshOptions = {};
  if (cfg.name !== undefined) options.name = cfg.name;
  if (cfg.transport !== undefined) options.transport = cfg.transport;
  if (cfg.token !== undefined) options.token = cfg.token;
  if (cfg.timeoutMs !== undefined) options.timeoutMs = cfg.timeoutMs;
  if (cfg.maxConcurrentOps !== undefined) options.maxConcurrentOps = cfg.maxConcurrentOps;
  if (stuck !== undefined) options.stuckAfterMs = stuck;
  if (dns !== undefined) return { nodes, options, dns: { ...dns } };
  return discover === undefined ? { nodes, options } : { nodes, options, discover: { ...discover } };
}
