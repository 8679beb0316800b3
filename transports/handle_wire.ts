/**
 * Service handles as values on the wire: a handle in an argument or a result travels as a reference
 * to its remote instances (a {@linkcode WireHandle}: CBOR tag `TAG_HANDLE`, never a plain object, so
 * user data is never taken for a handle), and arrives as a handle whose replicas reach those
 * instances over links of the receiving mesh or node.
 *
 * Where a handle that arrived may lead is decided here, never by the frame alone:
 * - on a driver (a mesh), each endpoint must be one of the mesh's own nodes; the call then goes over
 *   the mesh's link to it, with the mesh's token;
 * - on a node, an instance of its own is called in place; other endpoints must be the node's
 *   configured peers (`peers`, `--peer`: they get the node's token, or the peer's own) or nodes of
 *   a mesh a driver declared in its `hello`. A declared endpoint gets the node's token only when the
 *   driver that declared it presented that same token to the node (it holds the token already, and
 *   could send it there itself); else none: the token never goes to an endpoint named by someone who
 *   does not hold it. So nodes that share one token (every pod of a cluster) reach each other's
 *   results and instances with no `--peer`. Anything else is a `ProtocolError` naming the endpoint.
 *   A node remembers the last {@linkcode MAX_DECLARED_ENDPOINTS} declared endpoints, and holds at
 *   most `MAX_NODE_LINKS` links.
 *
 * @module
 */
import { WireHandle, type WireHandleReplica } from "../core/codec.ts";
import { ProtocolError } from "../core/errors.ts";
import { Deployment, type Replica } from "../core/deployment.ts";
import { HandleState, handleStateOf, makeHandle } from "../core/handle.ts";
import { MeshRuntime } from "../core/mesh_runtime.ts";
import { registeredServices, type ServiceDef } from "../core/service_def.ts";
import type { HandleWire, LinkOptions, NodeLink } from "./link.ts";
import { linkFor, meshLink } from "./link_table.ts";
import { noteReach, reachOf } from "./reach_refusal.ts";
import { RemoteReplica } from "./remote_replica.ts";
import type { PeerInfo } from "./transport.ts";

/** How deep the walks for handles go (as deep as decode reads). */
const MAX_WALK_DEPTH = 256;
/** How many endpoints declared by drivers a node remembers (the oldest is forgotten first). */
export const MAX_DECLARED_ENDPOINTS: number = 256;

function isPlain(v: object): boolean {
  const p = Object.getPrototypeOf(v);
  return p === Object.prototype || p === null;
}

/**
 * The key two spellings of one endpoint share: host, port and path, without the scheme (a node
 * serves HTTP and WebSocket on one port) or a trailing slash. The scheme of the link comes from the
 * configured endpoint, never from the frame.
 *
 * @param endpoint An endpoint URL.
 * @returns Its key, or `undefined` when it is not a URL.
 *
 * @example
 * ```ts
 * import { endpointKey } from "./handle_wire.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(endpointKey("ws://Node1:7070/"), endpointKey("http://node1:7070"));
 * ```
 */
export function endpointKey(endpoint: string): string | undefined {
  try {
    const url = new URL(endpoint);
    const port = url.port || ({ "http:": "80", "ws:": "80", "https:": "443", "wss:": "443" } as Record<string, string>)[
      url.protocol
    ] || "";
    return `${url.hostname.toLowerCase()}:${port}${url.pathname.replace(/\/+$/, "")}`;
  } catch {
    return undefined;
  }
}

/** A peer a node may reach with a token: its endpoint, and its own token when not the node's. */
export interface NodePeer {
  /** Where the peer listens. */
  readonly endpoint: string;
  /** The token to present there (default: the node's own `token`). */
  readonly token?: string;
}

/** Options of a {@linkcode HandleReach}. */
export interface HandleReachOptions {
  /** Endpoints (or peers with tokens) the node may reach with a token. */
  peers?: readonly (string | NodePeer)[];
  /** The node's own instance with this id, if any (handles of it are called in place). */
  local?: (id: string) => LocalInstance | undefined;
  /** The node's name (in the errors of a node that refused it). */
  name?: string;
  /**
   * The node's own token: the endpoints declared by a driver that presented it get it too (see the
   * module doc).
   */
  token?: string;
}

/** An endpoint a driver declared, and whether a driver that presented the node's token did. */
interface Declared {
  readonly endpoint: string;
  readonly trusted: boolean;
}

/** An instance living in this process, as a replica of its service. */
export type LocalInstance = Replica & { readonly def: ServiceDef };

const reaches = new WeakMap<object, HandleReach>();

/**
 * Where handles that arrive at a node (the owner of the links they use) may lead: its own
 * instances, its configured peers, and the endpoints drivers declared as their mesh.
 *
 * @example A node that may reach one peer
 * ```ts
 * import { HandleReach } from "./handle_wire.ts";
 * import { strictEqual } from "node:assert/strict";
 * const node = {};
 * const reach = new HandleReach(node, { peers: ["ws://10.0.0.2:7070"] });
 * reach.declare(["ws://10.0.0.3:7070"]);
 * strictEqual(reach.peer("http://10.0.0.2:7070/")?.endpoint, "ws://10.0.0.2:7070");
 * strictEqual(reach.declared("ws://10.0.0.3:7070"), "ws://10.0.0.3:7070");
 * strictEqual(reach.declared("ws://evil.example:1"), undefined);
 * ```
 *
 * @example Endpoints declared by a driver that holds the node's token get the token
 * ```ts
 * import { HandleReach } from "./handle_wire.ts";
 * import { strictEqual } from "node:assert/strict";
 * const reach = new HandleReach({}, { token: "t" });
 * const peer = { transport: "websocket" as const, connectionId: 1, oneWay: false, holdsToken: (t: string) => t === "t" };
 * reach.declare(["ws://10.0.0.3:7070"], peer);
 * reach.declare(["ws://10.0.0.4:7070"]); // from a connection the node let in without its token
 * strictEqual(reach.declaration("ws://10.0.0.3:7070")?.trusted, true);
 * strictEqual(reach.declaration("ws://10.0.0.4:7070")?.trusted, false);
 * ```
 */
export class HandleReach {
  private readonly peers = new Map<string, NodePeer>();
  private readonly declaredEndpoints = new Map<string, Declared>();
  /** The node's own instance with an id, if any. */
  readonly local: (id: string) => LocalInstance | undefined;
  /** The node's name (`"node"` when not given). */
  readonly name: string;
  /** The node's own token, if any. */
  private readonly token: string | undefined;

  /**
   * @param owner The node (the owner of the links its handles use); handles arriving for it follow these rules.
   * @param options Its peers and its own instances.
   * @throws {TypeError} For a peer endpoint that is not a URL.
   */
  constructor(owner: object, options: HandleReachOptions = {}) {
    for (const p of options.peers ?? []) {
      const peer: NodePeer = typeof p === "string" ? { endpoint: p } : p;
      const key = endpointKey(peer.endpoint);
      if (key === undefined) throw new TypeError(`A peer endpoint must be a URL, got ${JSON.stringify(peer.endpoint)}`);
      this.peers.set(key, peer);
    }
    this.local = options.local ?? (() => undefined);
    this.name = options.name ?? "node";
    this.token = options.token;
    reaches.set(owner, this);
  }

  /** The configured peer at `endpoint` (however it is spelled), if any. */
  peer(endpoint: string): NodePeer | undefined {
    const key = endpointKey(endpoint);
    return key === undefined ? undefined : this.peers.get(key);
  }

  /** The endpoint as a driver declared it, if one did (and it was not forgotten since). */
  declared(endpoint: string): string | undefined {
    return this.declaration(endpoint)?.endpoint;
  }

  /**
   * The endpoint as a driver declared it, and whether a driver that presented the node's own token
   * did (then the node presents its token there), if one declared it and it was not forgotten since.
   */
  declaration(endpoint: string): Declared | undefined {
    const key = endpointKey(endpoint);
    return key === undefined ? undefined : this.declaredEndpoints.get(key);
  }

  /**
   * Remembers the endpoints of a driver's mesh (from its `hello`); the oldest are forgotten past the
   * bound. Declared on a connection that presented the node's own token, they get that token.
   *
   * @param endpoints The endpoints of the driver's mesh.
   * @param by Who sent the `hello` (whether it presented the node's token).
   */
  declare(endpoints: readonly string[], by?: PeerInfo): void {
    // the declarer holds the node's token: giving it to the endpoints it names gives away nothing
    const trusted = this.token !== undefined && by?.holdsToken !== undefined && by.holdsToken(this.token);
    for (const endpoint of endpoints) {
      const key = endpointKey(endpoint);
      if (key === undefined) continue;
      // a token holder's declaration stays as it was made (another driver naming the endpoint, in
      // another spelling, say ws:// for wss://, changes nothing of where the token goes or how)
      const before = this.declaredEndpoints.get(key);
      this.declaredEndpoints.delete(key); // most recent last
      this.declaredEndpoints.set(key, before?.trusted && !trusted ? before : { endpoint, trusted });
      if (this.declaredEndpoints.size > MAX_DECLARED_ENDPOINTS) {
        this.declaredEndpoints.delete(this.declaredEndpoints.keys().next().value!);
      }
    }
  }
}

/** Whether `value` holds a service handle (in arrays and plain objects). */
function holdsHandle(value: unknown, depth = 0): boolean {
  if (typeof value !== "object" || value === null || depth > MAX_WALK_DEPTH) return false;
  if (handleStateOf(value) !== undefined) return true;
  if (Array.isArray(value)) return value.some((v) => holdsHandle(v, depth + 1));
  return isPlain(value) && Object.values(value).some((v) => holdsHandle(v, depth + 1));
}

/**
 * The value as it may travel: service handles become references to their remote instances. A
 * handle of an instance living in this process cannot travel: a TypeError says so.
 *
 * @param value A value that may hold handles (in arrays and plain objects).
 * @param owner The mesh (or node process) sending it: a handle travels as its deployment there.
 * @returns The value itself when it holds no handle, else (a promise of) a copy with references.
 *
 * @example A value without handles travels as it is
 * ```ts
 * import { wireValue } from "./handle_wire.ts";
 * import { strictEqual } from "node:assert/strict";
 * const args = [1, { docs: ["a"] }];
 * strictEqual(wireValue(args, {}), args);
 * ```
 */
export function wireValue<T>(value: T, owner: object): T | Promise<T> {
  return holdsHandle(value) ? replaceHandles(value, owner, 0) as Promise<T> : value;
}

async function replaceHandles(value: unknown, owner: object, depth: number): Promise<unknown> {
  if (typeof value !== "object" || value === null || depth > MAX_WALK_DEPTH) return value;
  const state = handleStateOf(value);
  if (state !== undefined) return await handleToWire(state, owner);
  if (Array.isArray(value)) return await Promise.all(value.map((v) => replaceHandles(v, owner, depth + 1)));
  if (!isPlain(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = await replaceHandles(v, owner, depth + 1);
  return out;
}

/** Instances of a node's own that arrived as handles: how they were named, to travel on as such. */
const localReferences = new WeakMap<Replica, WireHandleReplica>();

async function handleToWire(state: HandleState, owner: object): Promise<WireHandle> {
  if (!(owner instanceof MeshRuntime) && state.pinned === undefined) {
    // made on this node by code running here: nothing outside the node can reach it
    throw new TypeError(
      `Cannot send a handle of service "${state.def.name}" from node "${
        reaches.get(owner)?.name ?? "node"
      }": its instance was made there by code running on the node, and only that node's code can call it; ` +
        "to share an instance, init() it inside mesh.run on the driver (placed on a node, its handle may go to " +
        "any node of the mesh) and pass that handle in",
    );
  }
  const deployment = owner instanceof MeshRuntime ? state.deployment(owner) : state.pinned;
  const replicas = deployment?.replicas ?? [];
  if (replicas.length === 0 || !replicas.every((r) => r instanceof RemoteReplica || localReferences.has(r))) {
    throw new TypeError(
      `Cannot send a handle of service "${state.def.name}" to another node: its instance lives in this process; ` +
        "place the service on a node with an endpoint to share it",
    );
  }
  const wired = await Promise.all(replicas.map(async (r): Promise<WireHandleReplica> => {
    if (!(r instanceof RemoteReplica)) return localReferences.get(r)!;
    return { endpoint: r.link.endpoint, node: r.node, id: await r.reference() };
  }));
  return new WireHandle(state.def.name, wired);
}

/**
 * The value with handle references turned back into handles reachable from `from.owner` (see the
 * module doc for where they may lead).
 *
 * @param value A value that arrived from another node.
 * @param from The owner of the links the handles will use, with its link options.
 * @param depth How deep `value` already is in the walk.
 * @returns The value itself when it holds no reference, else a copy with handles.
 * @throws {ProtocolError} For a reference to a service this process did not register, or to an
 * endpoint it may not reach.
 *
 * @example A value without references comes back as it is; a handle-like plain object stays plain
 * ```ts
 * import { reviveValue } from "./handle_wire.ts";
 * import { strictEqual } from "node:assert/strict";
 * const value = { docs: ["a", "b"], forged: { "$thinkagain.handle": { service: "S", replicas: [] } } };
 * strictEqual(reviveValue(value, { owner: {} }), value);
 * ```
 */
export function reviveValue<T>(value: T, from: LinkOptions & { owner: object }, depth = 0): T {
  if (typeof value !== "object" || value === null || depth > MAX_WALK_DEPTH) return value;
  // bytes and typed arrays first: a stream's binary items are revived one by one
  if (ArrayBuffer.isView(value)) return value;
  if (value instanceof WireHandle) return reviveHandle(value, from) as T;
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const v = value[i];
      const r = reviveValue(v, from, depth + 1);
      if (r !== v) (out ??= value.slice())[i] = r;
    }
    return (out ?? value) as T;
  }
  if (!isPlain(value)) return value;
  let out: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(value)) {
    const r = reviveValue(v, from, depth + 1);
    if (r !== v) {
      out ??= { ...(value as Record<string, unknown>) };
      // defined, not assigned: a key "__proto__" stays an own key
      Object.defineProperty(out, k, { value: r, enumerable: true, writable: true, configurable: true });
    }
  }
  return (out ?? value) as T;
}

function refused(h: WireHandle, r: WireHandleReplica, why: string): ProtocolError {
  return new ProtocolError(
    `A handle of service "${h.service}" names endpoint ${JSON.stringify(r.endpoint)} (node ${
      JSON.stringify(r.node)
    }), which ${why}`,
  );
}

/** The replica through which `from.owner` reaches one instance a handle names. */
function replicaFor(
  h: WireHandle,
  r: WireHandleReplica,
  index: number,
  from: LinkOptions & { owner: object },
): Replica {
  const def = registeredServices().get(h.service)!;
  const owner = from.owner;
  if (owner instanceof MeshRuntime) {
    // a driver: only its own nodes, over its own links
    const key = endpointKey(r.endpoint);
    const node = owner.nodes.find((n) => n.endpoint !== undefined && endpointKey(n.endpoint) === key);
    if (node === undefined) {
      throw refused(h, r, "is not a node of this mesh: a handle from a node may only lead to the mesh's own nodes");
    }
    return new RemoteReplica(owner, def, [], index, meshLink(owner, node, handleWire), [], def.policy, r.id);
  }
  const reach = reaches.get(owner);
  const local = reach?.local(r.id);
  if (local !== undefined) {
    if (local.def !== def) throw refused(h, r, `names instance ${r.id}, of another service here`);
    if (!localReferences.has(local)) localReferences.set(local, r);
    return local;
  }
  const link = nodeLink(reach, r.node, r.endpoint, from);
  if (link === undefined) throw refused(h, r, UNREACHABLE);
  return new RemoteReplica(owner, def, [], index, link, [], def.policy, r.id);
}

const UNREACHABLE = "this node may not reach: it is neither one of its peers (--peer) nor a node of a mesh a " +
  "driver declared in its hello";

/**
 * The link from a node to another node a frame named, by the rules of the module doc, or
 * `undefined` where it may not go. The token goes to configured peers, and to endpoints declared by
 * a driver that presented it; never to one named by someone who does not hold it.
 */
function nodeLink(
  reach: HandleReach | undefined,
  node: string,
  endpoint: string,
  from: LinkOptions & { owner: object },
): NodeLink | undefined {
  const peer = reach?.peer(endpoint);
  const declared = peer === undefined ? reach?.declaration(endpoint) : undefined;
  if (peer === undefined && declared === undefined) return undefined;
  const options: LinkOptions = { transport: from.transport, maxFrameBytes: from.maxFrameBytes };
  const token = peer !== undefined ? peer.token ?? from.token : declared!.trusted ? from.token : undefined;
  if (token !== undefined) options.token = token;
  const link = linkFor(from.owner, node, peer?.endpoint ?? declared!.endpoint, options, handleWire);
  // a link is made once, and shared: how, the first time, which a refusal there later explains
  if (reachOf(link) === undefined) {
    noteReach(link, {
      self: reach!.name,
      how: peer !== undefined ? "peer" : "declared",
      token: token !== undefined,
      hasToken: from.token !== undefined,
    });
  }
  return link;
}

/**
 * The link through which a node (`from.owner`) reaches another node a frame named, by the rules
 * handles follow: a configured peer (with a token), or a node its driver declared in its `hello`
 * (with the node's token where that driver presented it); anything else is a `ProtocolError` saying
 * so. Used to pull objects node to node; a refusal there is told by `refusalExplained`
 * (`reach_refusal.ts`).
 *
 * @param node The other node's name (in errors).
 * @param endpoint Its endpoint, as the frame named it.
 * @param from The node's link options (token, transport) and the node itself as `owner`.
 * @param what What the frame asked for, for the error (`"An object of op \"embed\""`).
 * @returns The link (made on first use, shared after).
 * @throws {ProtocolError} When the node may not reach that endpoint.
 *
 * @example A node refuses an endpoint nobody declared
 * ```ts
 * import { HandleReach, reachableLink } from "./handle_wire.ts";
 * import { ProtocolError } from "../core/errors.ts";
 * import { throws } from "node:assert/strict";
 * const node = {};
 * new HandleReach(node, { peers: [] });
 * throws(() => reachableLink("a", "ws://evil.example:1", { owner: node }, "An object"), ProtocolError);
 * ```
 */
export function reachableLink(
  node: string,
  endpoint: string,
  from: LinkOptions & { owner: object },
  what: string,
): NodeLink {
  const link = nodeLink(reaches.get(from.owner), node, endpoint, from);
  if (link === undefined) {
    throw new ProtocolError(
      `${what} names endpoint ${JSON.stringify(endpoint)} (node ${JSON.stringify(node)}), which ${UNREACHABLE}`,
    );
  }
  return link;
}

function reviveHandle(h: WireHandle, from: LinkOptions & { owner: object }): object {
  const def = registeredServices().get(h.service);
  if (def === undefined) {
    throw new ProtocolError(
      `A handle of unknown service ${JSON.stringify(h.service)} arrived; this process did not register it`,
    );
  }
  const replicas = h.replicas.map((r, i) => replicaFor(h, r, i, from));
  const state = new HandleState(def, []);
  state.pinned = new Deployment(def, replicas);
  for (const r of replicas) if (r instanceof RemoteReplica) r.attach(state.pinned);
  return makeHandle(state);
}

/** Handles to and from the wire, as links and node servers pass it on (see {@linkcode HandleWire}). */
export const handleWire: HandleWire = { toWire: wireValue, fromWire: reviveValue };
