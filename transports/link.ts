/**
 * A link from a driver (a mesh, or a node calling other nodes) to one node: it connects lazily over
 * the chosen transport, sends protocol messages and decodes the replies, caches the node's
 * `welcome`, turns transport failures of calls into `NodeLostError`, and keeps the node's leases
 * alive while it holds instances there.
 *
 * @module
 */
import type { Span } from "@opentelemetry/api";
import { errorFromWire, isValueRefusal } from "../core/codec.ts";
import { NodeLostError, TransportError } from "../core/errors.ts";
import type { CancelHook } from "../core/cancel.ts";
import type { MeshNode } from "../core/mesh_node.ts";
import { MeshRuntime } from "../core/mesh_runtime.ts";
import { backgroundInterval, closedError } from "./_common.ts";
import { envTransport } from "./_env.ts";
import {
  argumentRefusal,
  type CallMessage,
  decodeReply,
  encodeMessage,
  PROTOCOL_VERSION,
  type ResultMessage,
  type WelcomeMessage,
} from "./protocol.ts";
import type { ConnectOptions, Transport, TransportConnection, TransportName } from "./transport.ts";
import { transportFor } from "./transport_for.ts";

/**
 * How service handles inside values cross a link (implemented by `handleWire` in `handle_wire.ts`,
 * and passed in: handles become replicas that hold links, so this file cannot import it).
 */
export interface HandleWire {
  /** The value as it may travel from `owner`: handles become references to their instances. */
  toWire<T>(value: T, owner: object): T | Promise<T>;
  /** A value that arrived: references become handles that reach their instances from `from.owner`. */
  fromWire<T>(value: T, from: LinkOptions & { owner: object }): T;
}

/** How long a `welcome` is trusted over HTTP unless the mesh says otherwise (`welcomeTtlMs`), in ms. */
export const DEFAULT_WELCOME_TTL_MS = 5_000;
/** How long closing waits for a node to confirm a destroy unless the mesh says otherwise, in ms. */
export const DEFAULT_DESTROY_TIMEOUT_MS = 5_000;

let callCounter = 0;
const callPrefix = crypto.randomUUID().slice(0, 8);

/** A lazily connected link to one node, shared by everything in one mesh (or one node process). */
export class NodeLink {
  readonly node: string;
  readonly endpoint: string;
  readonly transport: Transport;
  /** How values travel on this link: handles in them go out as references, and come back as handles. */
  readonly handles: HandleWire;
  /** How long a `welcome` is trusted over a transport with no connection to tell of a restart (HTTP), ms. */
  welcomeTtlMs: number;
  /** How long closing waits for the node to confirm it destroyed an instance, ms. */
  destroyTimeoutMs: number;
  private readonly options: ConnectOptions;
  private conn: Promise<TransportConnection> | undefined;
  private open: TransportConnection | undefined;
  private welcomeP: Promise<WelcomeMessage> | undefined;
  private welcomeAt = 0;
  /** Set when an established connection dropped; cleared by the next successful request. */
  lost = false;
  /** True once any request got an answer: later failures mean the node was lost, not never there. */
  private reached = false;
  /** Calls in flight on this link. */
  inFlight = 0;
  /** This link's lease id: instances it creates live on the node while it keeps pinging with it. */
  readonly leaseId: string = crypto.randomUUID();
  /** What the link belongs to (a mesh, or a node process): handles arriving on it belong there too. */
  readonly holder: object;
  /** Instances this link created that are alive (it pings while there are any). */
  private held = 0;
  private keepalive: ReturnType<typeof setInterval> | undefined;
  private keepaliveMs = 0;
  private pinging = false;
  private closed = false;
  /** Set when a destroy went unanswered while closing: the rest are left to the node's lease. */
  unresponsive = false;

  /**
   * @param node The node's name (in errors).
   * @param endpoint Where it listens.
   * @param transport How to reach it.
   * @param options Token and frame size limit for the connection.
   * @param handles How handles in values are turned into references and back (`handle_wire.ts`).
   * @param holder What the link belongs to (default: itself).
   * @param timeouts The welcome TTL and the destroy deadline (the mesh's `welcomeTtlMs`, `destroyTimeoutMs`).
   */
  constructor(
    node: string,
    endpoint: string,
    transport: Transport,
    options: ConnectOptions,
    handles: HandleWire,
    holder?: object,
    timeouts: { welcomeTtlMs?: number; destroyTimeoutMs?: number } = {},
  ) {
    this.welcomeTtlMs = timeouts.welcomeTtlMs ?? DEFAULT_WELCOME_TTL_MS;
    this.destroyTimeoutMs = timeouts.destroyTimeoutMs ?? DEFAULT_DESTROY_TIMEOUT_MS;
    this.node = node;
    this.endpoint = endpoint;
    this.transport = transport;
    this.options = options;
    this.handles = handles;
    this.holder = holder ?? this;
  }

  /** True when frames on this link arrive in the order sent (so calls may be pipelined). */
  get ordered(): boolean {
    return this.transport.name !== "http";
  }

  private connection(): Promise<TransportConnection> {
    if (this.conn === undefined) {
      const p = this.transport.connect(this.endpoint, this.options).then((c) => {
        c.onClose(() => {
          this.lost = true;
          this.welcomeP = undefined; // the node may come back as a new process
        });
        if (this.conn === p) this.open = c;
        return c;
      });
      p.catch(() => {
        if (this.conn === p) this.conn = undefined;
      });
      this.conn = p;
    }
    return this.conn;
  }

  /**
   * Sends a message and decodes the reply of the expected type; `span` gets the byte counts.
   * `timeoutMs` bounds the wait (protocol requests other than calls: a frozen node must not hold a
   * close or a keepalive forever); calls carry their own deadline.
   */
  async request<T extends { t: string }>(
    message: unknown,
    expected: T["t"],
    span?: Span,
    timeoutMs?: number,
  ): Promise<T> {
    if (this.closed) throw closedError(this.endpoint);
    // the connection, once open, is used directly (no await per call)
    const conn = this.open ?? await this.connection();
    if (conn.closed) {
      this.conn = undefined;
      this.open = undefined;
      return this.request(message, expected, span, timeoutMs);
    }
    const frame = encodeMessage(message);
    // the span's "sent" → "received" is the transfer plus the node's own SERVER span
    if (span !== undefined) span.addEvent("sent");
    const reply = await conn.request(frame, timeoutMs === undefined ? undefined : { timeoutMs });
    this.lost = false;
    this.reached = true;
    if (span !== undefined) {
      span.addEvent("received");
      span.setAttribute("thinkagain.bytes_sent", frame.byteLength);
      span.setAttribute("thinkagain.bytes_received", reply.byteLength);
    }
    return decodeReply<T>(reply, expected);
  }

  /** Sends a one-way message; dropped when not connected. */
  notify(message: unknown): void {
    if (this.closed) return;
    this.conn?.then((c) => c.notify(encodeMessage(message)), () => {});
  }

  /** Drops the cached `welcome`: the next one is asked of the node. */
  forgetWelcome(): void {
    this.welcomeP = undefined;
  }

  /**
   * The node's `welcome` (cached until the connection drops; over HTTP, where no connection tells
   * of a restart, for at most `welcomeTtlMs`, and until a call finds the node lost).
   */
  welcome(): Promise<WelcomeMessage> {
    if (
      !this.ordered && this.welcomeP !== undefined && performance.now() - this.welcomeAt > this.welcomeTtlMs
    ) {
      this.welcomeP = undefined;
    }
    if (this.welcomeP === undefined) {
      this.welcomeAt = performance.now();
      // a mesh declares its nodes: handles a node receives from it may lead there (without a token)
      const mesh = this.holder instanceof MeshRuntime
        ? this.holder.nodes.flatMap((n) => (n.endpoint === undefined ? [] : [n.endpoint]))
        : [];
      const hello = mesh.length > 0 ? { t: "hello", v: PROTOCOL_VERSION, mesh } : { t: "hello", v: PROTOCOL_VERSION };
      const p = this.request<WelcomeMessage>(hello, "welcome");
      p.catch(() => {
        if (this.welcomeP === p) this.welcomeP = undefined;
      });
      this.welcomeP = p;
    }
    return this.welcomeP;
  }

  /**
   * Calls a method or op on the node; transport failures of a sent call become `NodeLostError`.
   */
  async call(message: Omit<CallMessage, "t" | "cid">, hook: CancelHook | undefined, span?: Span): Promise<unknown> {
    const cid = `${callPrefix}-${++callCounter}`;
    if (hook !== undefined) hook.cancel = () => this.notify({ t: "cancel", cid });
    this.inFlight++;
    try {
      const res = await this.request<ResultMessage>({ t: "call", cid, ...message }, "result", span);
      if (res.ok) {
        // handles in the result belong to whoever holds this link (its mesh), and close with it
        return this.handles.fromWire(res.value, {
          owner: this.holder,
          token: this.options.token,
          transport: this.transport.name,
        });
      }
      throw errorFromWire(res.error);
    } catch (e) {
      if (isValueRefusal(e)) {
        const what = message.op !== undefined ? `op "${message.op}"` : `method "${message.method}"`;
        throw argumentRefusal(e, message.args, `Cannot call ${what} on node "${this.node}"`);
      }
      throw this.asNodeLost(e);
    } finally {
      this.inFlight--;
      if (hook !== undefined) hook.cancel = undefined;
    }
  }

  /**
   * A transport failure of a call means the node was lost: the connection broke under it, or (over
   * HTTP, where each call connects anew) a node that answered before cannot be reached any more.
   */
  asNodeLost(e: unknown): unknown {
    if (
      e instanceof TransportError &&
      (e.reason === "closed" || e.reason === "io" || (e.reason === "unreachable" && this.reached))
    ) {
      this.lost = true;
      this.welcomeP = undefined; // the node that comes back may register other names
      return new NodeLostError(this.node, e.message);
    }
    return e;
  }

  /** An instance this link created exists on the node now: keepalives go out while any does. */
  hold(): void {
    this.held++;
  }

  /**
   * The node's lease is `leaseMs` (told by every `created`: a restarted node may have another):
   * keepalives go out every third of the shortest lease seen, on a timer that does not hold the
   * process open, while this link holds instances.
   */
  leaseIs(leaseMs: number | undefined): void {
    if (this.closed || this.held === 0 || !(typeof leaseMs === "number" && leaseMs > 0)) return;
    const every = Math.max(5, Math.floor(leaseMs / 3));
    if (this.keepalive !== undefined && this.keepaliveMs <= every) return;
    this.stopKeepalive();
    this.keepaliveMs = every;
    this.keepalive = backgroundInterval(() => {
      // one at a time: a frozen node must not collect a pile of them; a lost node is noticed by the
      // calls, and a keepalive that fails is simply the next one's job
      if (this.pinging) return;
      this.pinging = true;
      this.request({ t: "ping", owner: this.leaseId }, "pong", undefined, Math.max(every * 3, 1_000))
        .catch(() => {})
        .finally(() => (this.pinging = false));
    }, every);
  }

  /** One held instance was destroyed: keepalives stop with the last. */
  release(): void {
    if (--this.held > 0) return;
    this.held = 0;
    this.stopKeepalive();
  }

  private stopKeepalive(): void {
    if (this.keepalive !== undefined) clearInterval(this.keepalive);
    this.keepalive = undefined;
    this.keepaliveMs = 0;
  }

  /** Closes the connection; the link refuses requests from now on. */
  async close(): Promise<void> {
    this.closed = true;
    this.stopKeepalive();
    const c = this.conn;
    this.conn = undefined;
    this.open = undefined;
    if (c) await c.then((x) => x.close(), () => {});
  }
}

const links = new WeakMap<object, Map<string, NodeLink>>();

/** The most links a node process (any owner but a mesh) keeps to other nodes. */
export const MAX_NODE_LINKS = 1024;

/** Options for links made outside a mesh (a node calling other nodes). */
export interface LinkOptions {
  token?: string;
  transport?: TransportName;
  maxFrameBytes?: number;
  /** How long a `welcome` is trusted over a transport with no connection to tell of a restart (HTTP), ms. */
  welcomeTtlMs?: number;
  /** How long closing waits for the node to confirm it destroyed an instance, ms. */
  destroyTimeoutMs?: number;
}

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
    if (owner instanceof MeshRuntime) owner.addCleanup(() => l.close());
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
  return linkFor(mesh, node.name, node.endpoint!, {
    token: mesh.options.token,
    transport: mesh.options.transport,
    welcomeTtlMs: mesh.options.welcomeTtlMs,
    destroyTimeoutMs: mesh.options.destroyTimeoutMs,
  }, handles);
}
