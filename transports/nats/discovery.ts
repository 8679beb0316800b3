/**
 * Discovery on a NATS cluster: a driver asks every node to announce itself and builds a mesh of
 * whoever answers (`Mesh.discover`), then keeps listening: a node that announces itself later joins
 * the mesh (new `init()`s place on it). A node that says it leaves (it drains: `thinkagain serve`
 * on SIGTERM) is taken out without cutting its calls: nothing new is placed or sent there, the calls
 * it already has finish, and once its subject has no responders it is gone for good. One that
 * vanishes without a word is removed after missing discovery rounds (its calls fail with
 * `NodeLostError`, its replicas fail over).
 *
 * @module
 */
import type { Msg, Subscription } from "@nats-io/nats-core";
import { createInbox, headers as natsHeaders, NoRespondersError, RequestError } from "@nats-io/nats-core";
import { checkCallTimeout, type MeshOptions } from "../../core/mesh_config.ts";
import { MeshNode } from "../../core/mesh_node.ts";
import {
  ANNOUNCE_SUBJECT,
  decodeAnnouncement,
  DISCOVER_SUBJECT,
  LEAVE_SUBJECT,
  type NodeAnnouncement,
} from "./announcement.ts";
import { natsEndpoint, nodeSubject, parseNatsServers } from "./endpoint.ts";
import { H_DIRECT } from "./_headers.ts";
import { acquireNats, type NatsLease } from "./pool.ts";
import { backgroundInterval } from "../_common.ts";
import { setLongTimeout } from "../../core/long_timer.ts";

/** How long discovery collects answers unless told otherwise, ms. */
export const DEFAULT_DISCOVER_TIMEOUT_MS: number = 1_000;
/** How often a discovered mesh asks the cluster again who is there, unless told otherwise, ms. */
export const DEFAULT_REFRESH_MS: number = 5_000;
/** Rounds in a row a node must miss before the mesh takes it for gone. */
const REFRESH_MISSES = 3;

/**
 * Options of `Mesh.discover`: where to look, how long, and the mesh's own options. `timeoutMs`
 * here is how long to look; the mesh's call deadline (its `timeoutMs`) is `callTimeoutMs`.
 */
export interface DiscoverOptions extends Omit<MeshOptions, "remote"> {
  /** The NATS server(s) the nodes announce themselves on: `nats://host:4222` (seeds separated by commas). */
  nats: string;
  /** How long to collect answers, ms (default 1000). */
  timeoutMs?: number;
  /**
   * The mesh's default deadline for remote calls, ms: what `timeoutMs` is to `new Mesh` (default:
   * none). (`Mesh.fromConfig` passes a config's top-level `timeoutMs` here.)
   */
  callTimeoutMs?: number;
  /** Stop collecting as soon as this many nodes answered (default: collect for `timeoutMs`). */
  nodes?: number;
  /**
   * How often to ask the cluster again who is there, ms (default 5000; 0: never): a node that
   * answers none of 3 rounds in a row (a killed one, which could not say it leaves) is removed
   * from the mesh, and one whose announcement was missed joins.
   */
  refreshMs?: number;
}

/** Discovery asks again after this long, then twice as long each time, ms. */
const ASK_AGAIN_FIRST_MS = 100;
/** The longest gap between two questions of one discovery, ms. */
const ASK_AGAIN_MAX_MS = 1_000;

/** Options of {@linkcode discoverNodes}. */
export interface DiscoverNodesOptions {
  /** How long to collect answers, ms (default 1000). */
  timeoutMs?: number;
  /** Stop as soon as this many nodes answered. */
  nodes?: number;
}

/**
 * Asks every node on the cluster to announce itself and collects the answers (one per node name,
 * the latest session winning) for `timeoutMs`, or until `nodes` answered. The question is asked
 * again meanwhile (after 100 ms, then twice as long each time, at most every second), so a node
 * whose subscription had not yet reached the driver's server still answers.
 *
 * @param lease A NATS client.
 * @param options How long, how many.
 * @returns The announcements, by name.
 */
async function collect(lease: NatsLease, options: DiscoverNodesOptions): Promise<Map<string, NodeAnnouncement>> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_DISCOVER_TIMEOUT_MS;
  if (!(timeoutMs > 0 && Number.isFinite(timeoutMs))) {
    throw new RangeError(`discover: timeoutMs must be a positive number of ms, got ${timeoutMs}`);
  }
  if (options.nodes !== undefined && !(Number.isInteger(options.nodes) && options.nodes > 0)) {
    throw new RangeError(`discover: nodes must be a positive integer, got ${options.nodes}`);
  }
  const found = new Map<string, NodeAnnouncement>();
  const nc = lease.nc;
  const inbox = createInbox();
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  const sub = nc.subscribe(inbox, {
    callback: (_err, msg) => {
      const a = decodeAnnouncement(msg.data);
      if (a === undefined) return;
      found.set(a.node, a);
      if (options.nodes !== undefined && found.size >= options.nodes) done();
    },
  });
  // a long timer: a timeoutMs of 2^31 ms or more must not end the collection at once
  const stopTimer = setLongTimeout(done, timeoutMs);
  // The question is asked again, less and less often, until the time is up: a node's
  // subscription made on another server of the cluster reaches the driver's server only after a
  // while (its own "announced" line comes earlier), so a node may miss the first question.
  let again: ReturnType<typeof setTimeout> | undefined;
  let gap = ASK_AGAIN_FIRST_MS;
  const ask = () => {
    try {
      nc.publish(DISCOVER_SUBJECT, new Uint8Array(0), { reply: inbox });
    } catch {
      return done(); // the client closed meanwhile (the mesh closed): what was found is the answer
    }
    again = setTimeout(ask, gap);
    gap = Math.min(gap * 2, ASK_AGAIN_MAX_MS);
  };
  try {
    await nc.flush(); // the inbox is known before anyone answers to it
    ask();
    await finished;
  } finally {
    stopTimer();
    clearTimeout(again);
    sub.unsubscribe();
  }
  return found;
}

/**
 * The nodes announced on a NATS cluster: asks every node to announce itself and collects the
 * answers for `timeoutMs` (or until `nodes` answered).
 *
 * @param nats The NATS server(s), `nats://host:4222`.
 * @param options How long to wait, how many to wait for.
 * @returns The announcements, sorted by node name.
 * @throws {TypeError} For a bad URL; `TransportError` when NATS is unreachable.
 *
 * @example Nobody to ask
 * ```ts
 * import { discoverNodes } from "./discovery.ts";
 * import { rejects } from "node:assert/strict";
 * await rejects(discoverNodes("nats://127.0.0.1:9"), (e: Error) => e.name === "TransportError");
 * ```
 */
export async function discoverNodes(nats: string, options: DiscoverNodesOptions = {}): Promise<NodeAnnouncement[]> {
  const lease = await acquireNats(parseNatsServers(nats, "discover"), { purpose: `discovery on ${nats}` });
  try {
    return [...(await collect(lease, options)).values()].sort((a, b) => a.node.localeCompare(b.node));
  } finally {
    await lease.release();
  }
}

/**
 * A mesh node for an announced node, reached over NATS through `nats` (the driver's own servers:
 * the node may sit on another server of the cluster).
 *
 * @param a The announcement.
 * @param nats The NATS server(s) the driver connects to.
 * @returns The node, with the GPUs and CPUs it announced.
 *
 * @example
 * ```ts
 * import { announcedNode } from "./discovery.ts";
 * import { PROTOCOL_VERSION } from "../protocol.ts";
 * const a = { v: PROTOCOL_VERSION, node: "n1", endpoint: "nats://b:4222/n1", session: "s", gpus: 2, cpus: null, services: [], ops: [] };
 * const node = announcedNode(a, "nats://a:4222");
 * if (node.endpoint !== "nats://a:4222/n1" || node.gpus.length !== 2) throw new Error("unexpected");
 * ```
 */
export function announcedNode(a: NodeAnnouncement, nats: string): MeshNode {
  return new MeshNode(a.node, {
    endpoint: natsEndpoint(nats, a.node),
    gpus: a.gpus,
    ...(a.cpus === null ? {} : { cpus: a.cpus }),
  });
}

/** How a mesh takes nodes that come and go (the mesh runtime's membership). */
export interface Membership {
  /** Whether a node of this name is in the mesh. */
  has(name: string): boolean;
  /** A node that announced itself joins. */
  join(node: MeshNode): void;
  /** A node that left is removed: its calls fail with `NodeLostError`, its replicas fail over. */
  leave(name: string, detail: string): void;
  /**
   * A node that drains is taken out: nothing new is placed or sent there, the calls it has finish;
   * `leave` once it is gone drops it for good.
   */
  drain(name: string, detail: string): void;
  /** Runs `cleanup` when the mesh closes. */
  onClose(cleanup: () => Promise<void>): void;
}

/**
 * Keeps a mesh's nodes in step with the cluster until the mesh closes: announcements of nodes it
 * lacks add them, leave messages take them out while they drain, and every `refreshMs` the
 * cluster is asked again: a discovered node that answers none of {@linkcode REFRESH_MISSES} rounds
 * in a row is removed, and a draining one whose subject has no responders any more is gone.
 *
 * @param lease A NATS client (released when the mesh closes).
 * @param nats The NATS server(s) the driver connects to (the nodes' endpoints go through them).
 * @param membership The mesh's membership.
 * @param managed The names discovery put in the mesh (only those are ever removed by it).
 * @param refreshMs How often to ask again (0: never).
 */
function watchMembership(
  lease: NatsLease,
  nats: string,
  membership: Membership,
  managed: Set<string>,
  refreshMs: number,
): void {
  const nc = lease.nc;
  /** The session each node left with: an answer of that session (sent before it left) is stale. */
  const left = new Map<string, string>();
  /** Nodes taken out while they drain, with the rounds their subject did not answer. */
  const draining = new Map<string, number>();
  const join = (a: NodeAnnouncement) => {
    if (left.get(a.node) === a.session) return;
    left.delete(a.node);
    draining.delete(a.node); // a new process of that name: joining takes the old one's place
    managed.add(a.node);
    if (!membership.has(a.node)) membership.join(announcedNode(a, nats));
  };
  const remove = (name: string, detail: string) => {
    managed.delete(name);
    misses.delete(name);
    if (membership.has(name)) membership.leave(name, detail);
  };
  const subs: Subscription[] = [
    nc.subscribe(ANNOUNCE_SUBJECT, {
      callback: (_e, m) => {
        const a = decodeAnnouncement(m.data);
        if (a !== undefined) join(a);
      },
    }),
    nc.subscribe(LEAVE_SUBJECT, {
      callback: (_e, m) => {
        const a = decodeAnnouncement(m.data);
        if (a === undefined) return;
        left.set(a.node, a.session);
        if (!managed.has(a.node) || !membership.has(a.node)) return;
        managed.delete(a.node);
        misses.delete(a.node);
        draining.set(a.node, 0);
        membership.drain(a.node, "it left the NATS cluster (it drains)");
      },
    }),
  ];
  const misses = new Map<string, number>();
  let closed = false, asking = false;
  const round = async () => {
    // this driver's own connection works (a reconnect is waited out), so silence is the nodes'
    await nc.flush();
    const found = await collect(lease, { timeoutMs: Math.min(DEFAULT_DISCOVER_TIMEOUT_MS, refreshMs / 2) });
    if (closed) return;
    for (const a of found.values()) {
      misses.delete(a.node);
      join(a);
    }
    // a draining node is gone once nobody serves its subject (or it stays silent for rounds)
    await Promise.all([...draining.keys()].map(async (name) => {
      const alive = await answers(lease, name, Math.min(DEFAULT_DISCOVER_TIMEOUT_MS, refreshMs / 2));
      if (closed || !draining.has(name)) return;
      const silent = alive === undefined ? draining.get(name)! + 1 : 0;
      if (alive === false || silent >= REFRESH_MISSES) {
        draining.delete(name);
        membership.leave(
          name,
          alive === false
            ? `it drained and left the NATS cluster (nobody serves ${nodeSubject(name)})`
            : `it drained and left the NATS cluster (${nodeSubject(name)} answered nothing for ${silent} rounds)`,
        );
      } else draining.set(name, silent);
    }));
    for (const name of [...managed]) {
      if (found.has(name)) continue;
      if (!membership.has(name)) {
        managed.delete(name); // removed by someone else
        continue;
      }
      const n = (misses.get(name) ?? 0) + 1;
      misses.set(name, n);
      if (n >= REFRESH_MISSES) {
        remove(name, `it answered no discovery on ${nats} for ${n} rounds in a row (${refreshMs} ms apart)`);
      }
    }
  };
  const timer = refreshMs > 0
    ? backgroundInterval(() => {
      if (asking || closed) return;
      asking = true;
      round().catch(() => {}).finally(() => (asking = false));
    }, refreshMs)
    : undefined;
  membership.onClose(async () => {
    closed = true;
    if (timer !== undefined) clearInterval(timer);
    for (const s of subs) s.unsubscribe();
    await lease.release();
  });
}

/**
 * Whether a node still serves its subject: `true` when it answers a request for its direct link,
 * `false` when NATS says nobody serves it, `undefined` when no answer came within `timeoutMs`.
 */
async function answers(lease: NatsLease, name: string, timeoutMs: number): Promise<boolean | undefined> {
  const hdrs = natsHeaders();
  hdrs.set(H_DIRECT, "1");
  try {
    await lease.nc.request(nodeSubject(name), new Uint8Array(0), { timeout: timeoutMs, headers: hdrs });
    return true; // (a node with a token answers too: that it refuses says it is there)
  } catch (e) {
    const none = e instanceof NoRespondersError ||
      (e instanceof RequestError && (e.isNoResponders() || e.cause instanceof NoRespondersError));
    return none ? false : undefined;
  }
}

/**
 * Builds a mesh of the nodes that answer on a NATS cluster (`Mesh.discover`): collects the
 * announcements, makes a `MeshNode` of each (its NATS endpoint, GPUs, CPUs), and, when the mesh
 * offers a membership, keeps listening for nodes that join or leave.
 *
 * @param make Builds the mesh from its nodes and options (the package root's `Mesh`).
 * @param membershipOf The mesh's membership, if it has one.
 * @param options Where, how long, how many, and the mesh's options.
 * @returns The mesh.
 * @throws {TypeError} When no node answered within `timeoutMs`, naming the servers.
 *
 * @example No NATS server to ask
 * ```ts
 * import { discoverMesh } from "./discovery.ts";
 * import { rejects } from "node:assert/strict";
 * await rejects(discoverMesh(() => ({}), () => undefined, { nats: "nats://127.0.0.1:9" }), (e: Error) =>
 *   e.name === "TransportError");
 * ```
 */
export async function discoverMesh<M>(
  make: (nodes: MeshNode[], options: MeshOptions) => M,
  membershipOf: (mesh: M) => Membership | undefined,
  options: DiscoverOptions,
): Promise<M> {
  if (options === null || typeof options !== "object" || typeof options.nats !== "string") {
    throw new TypeError('Mesh.discover needs { nats: "nats://host:4222" }');
  }
  const { nats, timeoutMs, nodes: want, refreshMs = DEFAULT_REFRESH_MS, callTimeoutMs, ...rest } = options;
  if (!(Number.isFinite(refreshMs) && refreshMs >= 0)) {
    throw new RangeError(`Mesh.discover: refreshMs must be a number of ms ≥ 0, got ${refreshMs}`);
  }
  checkCallTimeout("Mesh.discover", callTimeoutMs);
  const meshOptions: MeshOptions = callTimeoutMs === undefined ? rest : { ...rest, timeoutMs: callTimeoutMs };
  const lease = await acquireNats(parseNatsServers(nats, "Mesh.discover"), { purpose: `discovery on ${nats}` });
  let mesh: M;
  let watching = false;
  try {
    // listen for later announcements first, so a node starting meanwhile is not missed
    const pending: Msg[] = [];
    const early = lease.nc.subscribe(ANNOUNCE_SUBJECT, { callback: (_e, m) => void pending.push(m) });
    const found = await collect(lease, { timeoutMs, nodes: want });
    early.unsubscribe();
    for (const m of pending) {
      const a = decodeAnnouncement(m.data);
      if (a !== undefined && !found.has(a.node)) found.set(a.node, a);
    }
    if (found.size === 0) {
      throw new TypeError(
        `Mesh.discover: no node answered on ${nats} within ${timeoutMs ?? DEFAULT_DISCOVER_TIMEOUT_MS} ms ` +
          "(start nodes with thinkagain serve app.ts --nats " + nats + ")",
      );
    }
    const nodes = [...found.values()].sort((a, b) => a.node.localeCompare(b.node)).map((a) => announcedNode(a, nats));
    mesh = make(nodes, meshOptions);
    const membership = membershipOf(mesh);
    if (membership !== undefined) {
      watchMembership(lease, nats, membership, new Set(found.keys()), refreshMs);
      watching = true;
    }
  } finally {
    if (!watching) await lease.release();
  }
  return mesh;
}
