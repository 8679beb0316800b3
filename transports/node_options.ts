/**
 * What a `NodeServer` is given ({@linkcode NodeServerOptions}), the defaults of its limits, and
 * their checks ({@linkcode resolveNodeLimits}): a bad option fails the node's construction, naming
 * the option and what it got.
 *
 * @module
 */
import type { GpuDevice } from "../core/devices.ts";
import { describe } from "../core/describe.ts";
import { checkKnownKeys, checkOptionType, type KnownKeys } from "../core/options.ts";
import { checkToken } from "../core/token.ts";
import type { NodePeer } from "./handle_wire.ts";
import type { TransportName } from "./transport.ts";

/** Options of a `NodeServer` (its constructor checks them with {@linkcode resolveNodeLimits}). */
export interface NodeServerOptions {
  /** The node's name (in errors, stats and the ready line). */
  name: string;
  /** GPUs this node offers: a count or the devices (default 0). */
  gpus?: number | readonly GpuDevice[];
  /** CPU cores this node offers (default: not limited). */
  cpus?: number;
  /**
   * Token this node presents to its `peers`, and to the nodes a driver that presented this same
   * token declared as its mesh (never to an endpoint a frame named). Visible ASCII characters (`!`
   * to `~`), no spaces: every transport carries it as it is.
   */
  token?: string;
  /**
   * Nodes this node may call with its token (or a peer's own) when a handle of an instance there
   * arrives as an argument. Handles may also lead to its own instances (called in place) and to the
   * nodes a driver declared as its mesh in its `hello` (with this node's token when that driver
   * presented it, else without one); any other endpoint is refused.
   */
  peers?: readonly (string | NodePeer)[];
  /** Transport override for calls this node makes to other nodes. */
  transport?: TransportName;
  /**
   * How long an instance outlives the last keepalive of the driver that created it, in ms (default
   * 30 000; 0: instances live until destroyed or the node drains). A driver pings every third of it
   * while it holds instances here, so an instance dies with its driver (a crash, a lost network)
   * instead of holding memory and GPUs until the node restarts.
   */
  leaseMs?: number;
  /**
   * Most calls one connection may have in flight here (default
   * {@linkcode DEFAULT_MAX_CALLS_PER_CONNECTION}); past it a call is refused with `OverloadedError`
   * before it runs. Over HTTP, where each request is a connection of its own, the bound holds for
   * all HTTP calls together.
   */
  maxCallsPerConnection?: number;
  /**
   * Most calls in flight on this node from all connections together (default
   * {@linkcode DEFAULT_MAX_IN_FLIGHT}, `--max-in-flight`); past it a call is refused with
   * `OverloadedError` before it runs. `"unbounded"`: no limit.
   */
  maxInFlight?: number | "unbounded";
  /**
   * Most bytes (the call frames, as received) the calls in flight on this node may hold together
   * (default {@linkcode DEFAULT_MAX_IN_FLIGHT_BYTES}, `--max-in-flight-bytes`); past it a call is
   * refused with `OverloadedError` before it runs. `"unbounded"`: no limit.
   */
  maxInFlightBytes?: number | "unbounded";
  /**
   * Most bytes (as encoded) the results kept here for drivers may hold together (the object store;
   * default 1 GiB, `--object-store-bytes`); a result past it fails its call with `OverloadedError`.
   */
  objectStoreBytes?: number;
  /** Told when a driver's lease expired and its instances were destroyed (for logs). */
  onLeaseExpired?: (event: { instances: number; services: string[]; leaseMs: number }) => void;
}

const NODE_SERVER_OPTION_KEYS: KnownKeys<NodeServerOptions> = {
  name: true,
  gpus: true,
  cpus: true,
  token: true,
  peers: true,
  transport: true,
  leaseMs: true,
  maxCallsPerConnection: true,
  maxInFlight: true,
  maxInFlightBytes: true,
  objectStoreBytes: true,
  onLeaseExpired: true,
};

/**
 * Default of {@link NodeServerOptions.leaseMs}.
 *
 * @example
 * ```ts
 * import { DEFAULT_LEASE_MS, resolveNodeLimits } from "./node_options.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(resolveNodeLimits({ name: "n1" }).leaseMs, DEFAULT_LEASE_MS);
 * ```
 */
export const DEFAULT_LEASE_MS = 30_000;

/**
 * Default of {@link NodeServerOptions.maxCallsPerConnection}.
 *
 * @example
 * ```ts
 * import { DEFAULT_MAX_CALLS_PER_CONNECTION } from "./node_options.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(DEFAULT_MAX_CALLS_PER_CONNECTION, 10_000);
 * ```
 */
export const DEFAULT_MAX_CALLS_PER_CONNECTION = 10_000;

/**
 * Default of {@link NodeServerOptions.maxInFlight}: calls in flight on one node, all connections together.
 *
 * @example
 * ```ts
 * import { DEFAULT_MAX_IN_FLIGHT } from "./node_options.ts";
 * if (DEFAULT_MAX_IN_FLIGHT !== 100_000) throw new Error("unexpected");
 * ```
 */
export const DEFAULT_MAX_IN_FLIGHT: number = 100_000;

/**
 * Default of {@link NodeServerOptions.maxInFlightBytes}: bytes of call frames in flight on one node (1 GiB).
 *
 * @example
 * ```ts
 * import { DEFAULT_MAX_IN_FLIGHT_BYTES } from "./node_options.ts";
 * if (DEFAULT_MAX_IN_FLIGHT_BYTES !== 2 ** 30) throw new Error("unexpected");
 * ```
 */
export const DEFAULT_MAX_IN_FLIGHT_BYTES: number = 2 ** 30;

/** A node-wide bound option: an integer ≥ 1 or `"unbounded"` (Infinity). */
function nodeBound(what: string, v: unknown, dflt: number): number {
  if (v === undefined) return dflt;
  if (v === "unbounded") return Infinity;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 1) {
    throw new TypeError(`NodeServer ${what} must be an integer ≥ 1 or "unbounded", got ${describe(v)}`);
  }
  return v;
}

/** A node's lease and call limits, checked, with their defaults filled in. */
export interface NodeLimits {
  /** {@link NodeServerOptions.leaseMs} (0: no leases). */
  readonly leaseMs: number;
  /** {@link NodeServerOptions.maxCallsPerConnection}. */
  readonly maxCallsPerConnection: number;
  /** {@link NodeServerOptions.maxInFlight} (`Infinity`: unbounded). */
  readonly maxInFlight: number;
  /** {@link NodeServerOptions.maxInFlightBytes} (`Infinity`: unbounded). */
  readonly maxInFlightBytes: number;
}

/**
 * Checks a node's options (that each is one it knows, its name and token, and its lease and call
 * limits) and fills in the defaults.
 *
 * @param options What the node was given.
 * @returns Its limits.
 * @throws {TypeError} For options that are not an object, an unknown option (naming the closest
 * one), options without a non-empty name, a token that is not a string of visible ASCII characters
 * (no spaces: every transport carries it as it is), or a limit out of its range.
 *
 * @example
 * ```ts
 * import { resolveNodeLimits } from "./node_options.ts";
 * import { deepStrictEqual, throws } from "node:assert/strict";
 * deepStrictEqual(resolveNodeLimits({ name: "n1", leaseMs: 0, maxInFlight: "unbounded" }), {
 *   leaseMs: 0,
 *   maxCallsPerConnection: 10_000,
 *   maxInFlight: Infinity,
 *   maxInFlightBytes: 2 ** 30,
 * });
 * throws(() => resolveNodeLimits({ name: "n1", maxCallsPerConnection: 0 }), TypeError);
 * ```
 */
export function resolveNodeLimits(options: NodeServerOptions): NodeLimits {
  const name: unknown = (options as { name?: unknown } | null)?.name;
  const who = typeof name === "string" && name !== "" ? `NodeServer ${JSON.stringify(name)}` : "NodeServer";
  // a typo must not pass unnoticed: a "tokn" would leave the node presenting no token to its peers
  checkKnownKeys(who, options, NODE_SERVER_OPTION_KEYS);
  if (who === "NodeServer") {
    throw new TypeError(
      `NodeServer needs options with a non-empty name, got ${name === undefined ? "no name" : describe(name)}`,
    );
  }
  checkOptionType(who, "token", options.token, "string");
  // the token its clients present must reach it the same over every transport, and so must the
  // ones it presents to its peers
  checkToken(who, options.token);
  if (Array.isArray(options.peers)) {
    options.peers.forEach((p, i) => {
      const token: unknown = typeof p === "object" && p !== null ? p.token : undefined;
      if (typeof token === "string") checkToken(`${who} peers[${i}]`, token);
    });
  }
  checkOptionType(who, "onLeaseExpired", options.onLeaseExpired, "function");
  const leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
  if (typeof leaseMs !== "number" || !Number.isFinite(leaseMs) || leaseMs < 0) {
    throw new TypeError(`NodeServer leaseMs must be a number of ms ≥ 0, got ${describe(options.leaseMs)}`);
  }
  const maxCalls = options.maxCallsPerConnection ?? DEFAULT_MAX_CALLS_PER_CONNECTION;
  if (!Number.isSafeInteger(maxCalls) || maxCalls < 1) {
    throw new TypeError(
      `NodeServer maxCallsPerConnection must be an integer ≥ 1, got ${describe(options.maxCallsPerConnection)}`,
    );
  }
  const maxInFlight = nodeBound("maxInFlight", options.maxInFlight, DEFAULT_MAX_IN_FLIGHT);
  const maxInFlightBytes = nodeBound("maxInFlightBytes", options.maxInFlightBytes, DEFAULT_MAX_IN_FLIGHT_BYTES);
  return { leaseMs, maxCallsPerConnection: maxCalls, maxInFlight, maxInFlightBytes };
}
