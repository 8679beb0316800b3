/**
 * The driver side of remote nodes: a link per (mesh, node) that connects lazily over the chosen
 * transport, replicas whose calls travel as `call` frames (ordered, cancellable, with deadlines and
 * fail-over to sibling replicas), remote-capable ops, and service handles that travel as arguments.
 * Importing this module installs it into the core.
 *
 * @module
 */
import { errorFromWire } from "../core/codec.ts";
import { CancelledError, NodeLostError, ProtocolError, TransportError } from "../core/errors.ts";
import type { GpuDevice } from "../core/devices.ts";
import { type Mesh, type MeshNode, setRemoteReplicaFactory } from "../core/mesh.ts";
import type { ObjectRef } from "../core/object_ref.ts";
import { registeredOps, setRemoteOpRunner } from "../core/op.ts";
import { ABORTABLE, type CancelHook, runBody, type RunPolicy } from "../core/scheduler.ts";
import { type Span, trace as otelTrace } from "@opentelemetry/api";
import { injectTraceContext, isTracingEnabled } from "../core/tracing.ts";
import {
  Deployment,
  HandleState,
  handleStateOf,
  MailboxReplica,
  makeHandle,
  registeredServices,
  type ServiceDef,
} from "../core/service.ts";
import { envTransport } from "./_env.ts";
import { backgroundInterval, closedError } from "./_common.ts";
import { transportFor } from "./mod.ts";
import {
  type CallMessage,
  type CreatedMessage,
  decodeReply,
  encodeMessage,
  PROTOCOL_VERSION,
  type ResultMessage,
  type WelcomeMessage,
} from "./protocol.ts";
import type { ConnectOptions, Transport, TransportConnection, TransportName } from "./transport.ts";

const HANDLE_KEY = "$thinkagain.handle";
let callCounter = 0;
const callPrefix = crypto.randomUUID().slice(0, 8);

/** A lazily connected link to one node, shared by everything in one mesh (or one node process). */
export class NodeLink {
  readonly node: string;
  readonly endpoint: string;
  readonly transport: Transport;
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

  constructor(node: string, endpoint: string, transport: Transport, options: ConnectOptions, holder?: object) {
    this.node = node;
    this.endpoint = endpoint;
    this.transport = transport;
    this.options = options;
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
   * of a restart, for at most `remoteTimeouts.welcomeTtlMs`, and until a call finds the node lost).
   */
  welcome(): Promise<WelcomeMessage> {
    if (
      !this.ordered && this.welcomeP !== undefined && performance.now() - this.welcomeAt > remoteTimeouts.welcomeTtlMs
    ) {
      this.welcomeP = undefined;
    }
    if (this.welcomeP === undefined) {
      this.welcomeAt = performance.now();
      const p = this.request<WelcomeMessage>({ t: "hello", v: PROTOCOL_VERSION }, "welcome");
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
        return reviveValue(res.value, {
          owner: this.holder,
          token: this.options.token,
          transport: this.transport.name,
        });
      }
      throw errorFromWire(res.error);
    } catch (e) {
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

// ---- links per mesh --------------------------------------------------------------------------

const links = new WeakMap<object, Map<string, NodeLink>>();

/** Options for links made outside a mesh (a node calling other nodes). */
export interface LinkOptions {
  token?: string;
  transport?: TransportName;
  maxFrameBytes?: number;
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

/** The link from `owner` (a mesh, or a node process) to `endpoint`, created on first use. */
export function linkFor(owner: object, nodeName: string, endpoint: string, options: LinkOptions): NodeLink {
  let m = links.get(owner);
  if (m === undefined) links.set(owner, m = new Map());
  let link = m.get(endpoint);
  if (link === undefined) {
    const transport = transportFor(endpoint, envTransport() ?? options.transport);
    const connect: ConnectOptions = {};
    if (options.token !== undefined) connect.token = options.token;
    if (options.maxFrameBytes !== undefined) connect.maxFrameBytes = options.maxFrameBytes;
    link = new NodeLink(nodeName, endpoint, transport, connect, owner);
    m.set(endpoint, link);
    const l = link;
    const mesh = owner as Partial<Mesh>;
    if (typeof mesh._addCleanup === "function") mesh._addCleanup(() => l.close());
  }
  return link;
}

function meshLink(mesh: Mesh, node: MeshNode): NodeLink {
  return linkFor(mesh, node.name, node.endpoint!, {
    token: mesh.options.token,
    transport: mesh.options.transport,
  });
}

// ---- replicas on remote nodes -------------------------------------------------------------------

/**
 * @internal How long a `welcome` is trusted over a transport with no connection to tell of a
 * restart (HTTP), and how long closing waits for a node to confirm it destroyed an instance, in ms.
 * Only tests change them (to shorten a wait).
 */
export const remoteTimeouts: { welcomeTtlMs: number; destroyTimeoutMs: number } = {
  welcomeTtlMs: 5_000,
  destroyTimeoutMs: 5_000,
};

/** How many calls may be in flight to one instance over an ordered transport (pipelining). */
const PIPELINE = 1024;

/** A replica whose instance lives on a remote node. */
export class RemoteReplica extends MailboxReplica {
  readonly link: NodeLink;
  private readonly args: unknown[];
  private readonly policy: RunPolicy | undefined;
  private readonly owner: object;
  private instanceId: Promise<string> | undefined;
  /** The id once known, so calls need no await for it. */
  private createdId: string | undefined;
  /** Whether this replica made its instance (and so holds a lease on its link). */
  private holding = false;
  /** The node session the instance was made in (a restarted node has another). */
  private session: string | undefined;
  /**
   * False for a handle that arrived from elsewhere: it knows the instance's id, not its constructor
   * arguments, so it never creates the instance anew.
   */
  private readonly creator: boolean;
  private siblings: readonly RemoteReplica[] = [];
  private readonly bodies = new Map<string, (...args: unknown[]) => unknown>();

  constructor(
    owner: object,
    def: ServiceDef,
    args: unknown[],
    index: number,
    link: NodeLink,
    gpus: readonly GpuDevice[],
    policy: RunPolicy | undefined,
    existingId?: string,
  ) {
    super(def, index, link.node, gpus, link.ordered ? PIPELINE : def.maxConcurrency);
    this.owner = owner;
    this.link = link;
    this.args = args;
    this.policy = policy;
    this.creator = existingId === undefined;
    if (existingId !== undefined) {
      this.instanceId = Promise.resolve(existingId);
      this.createdId = existingId;
    } else this.instance().catch(() => {}); // create eagerly; failures surface on the calls
  }

  protected override get remote(): boolean {
    return true;
  }

  attach(deployment: Deployment): void {
    this.siblings = deployment.replicas.filter((r): r is RemoteReplica => r instanceof RemoteReplica && r !== this);
  }

  /** The instance id on the node, creating the instance when needed. */
  instance(): Promise<string> {
    if (this.instanceId === undefined) {
      const p = Promise.resolve(wireValue(this.args, this.owner)).then((args) =>
        this.link.request<CreatedMessage>({
          t: "create",
          service: this.def.name,
          args,
          gpus: this.gpus.map((g) => g.id),
          replica: this.index,
          owner: this.link.leaseId,
        }, "created")
      ).then((m) => {
        if (this.instanceId === p) {
          this.createdId = m.id;
          this.session = m.session;
        }
        if (!this.holding) {
          // (re-created after a node restart: the lease is already held)
          this.holding = true;
          this.link.hold();
        }
        this.link.leaseIs(m.leaseMs);
        return m.id;
      });
      p.catch(() => {
        if (this.instanceId === p) this.instanceId = undefined; // retried on the next call
      });
      this.instanceId = p;
    }
    return this.instanceId;
  }

  /**
   * The instance id to hand out as a reference: first made sure it lives in the node's current
   * session (the welcome is cached, and fetched again after the connection dropped), since the
   * holder of a reference cannot make the instance again; the creator can, and does so here.
   */
  async reference(): Promise<string> {
    const id = await this.instance();
    if (!this.creator || this.session === undefined) return id;
    let w = await this.link.welcome().catch(() => undefined);
    if (w === undefined || w.session === this.session) return id;
    // another session: make sure it is the node's session now, not a welcome cached before it changed
    this.link.forgetWelcome();
    w = await this.link.welcome().catch(() => undefined);
    if (w === undefined || w.session === this.session) return id;
    if (this.createdId === id) {
      this.createdId = undefined;
      this.instanceId = undefined;
    }
    return this.instance();
  }

  protected unavailable(): unknown {
    return undefined;
  }

  protected start(task: ObjectRef<unknown>, method: string): void {
    let body = this.bodies.get(method);
    if (body === undefined) {
      body = Object.assign((...a: unknown[]) => {
        const hook = a.pop() as CancelHook;
        return this.invoke(method, a, hook, true);
      }, { [ABORTABLE]: true });
      this.bodies.set(method, body);
    }
    runBody(task, body, this, undefined, this.policy, this.doneBound);
  }

  /** Sends one call; fails over to a sibling when this node is known lost. */
  async invoke(method: string, args: unknown[], hook: CancelHook, failover: boolean): Promise<unknown> {
    const trace = injectTraceContext(); // before any await: the active span is the call's own
    const span = isTracingEnabled() ? otelTrace.getActiveSpan() : undefined;
    if (failover && this.link.lost) {
      const alive = this.siblings.find((s) => !s.link.lost);
      if (alive !== undefined) return alive.invoke(method, args, hook, false);
    }
    const wired = this.wired(args, method, hook);
    const message = {
      id: "",
      method,
      args: wired instanceof Promise ? await wired : wired,
      ...(this.policy?.timeoutMs ? { timeoutMs: this.policy.timeoutMs } : {}),
      ...(trace.traceparent !== undefined ? { trace } : {}),
    };
    for (let attempt = 0;; attempt++) {
      let id = this.createdId;
      if (id === undefined) {
        try {
          id = await this.instance();
        } catch (e) {
          throw this.link.asNodeLost(e);
        }
      }
      message.id = id;
      try {
        return await this.link.call(message, hook, span);
      } catch (e) {
        // the node restarted and forgot the instance: its creator makes it again, once
        if (
          attempt === 0 && this.creator && e instanceof ProtocolError && e.message.startsWith("Unknown instance")
        ) {
          if (this.createdId === id) {
            this.createdId = undefined;
            this.instanceId = undefined;
          }
          continue;
        }
        // the instance died with an expired lease (this driver was silent too long): this call says
        // so, and the next one makes a new instance
        if (this.creator && e instanceof ProtocolError && /lease expired/.test(e.message) && this.createdId === id) {
          this.createdId = undefined;
          this.instanceId = undefined;
        }
        throw e;
      }
    }
  }

  /** Settles when the last call still turning handles into references has left or given up. */
  private wiring: Promise<void> | undefined;

  /**
   * The call's arguments as they travel. Turning a handle into a reference may wait (for its
   * instance to exist): the calls after such a call wait their turn, so calls to one instance still
   * leave in the order they started. A call cancelled (or past its deadline) while it waits gives up
   * its turn, so one handle whose node never answers cannot hold the others back.
   */
  private wired(args: unknown[], method: string, hook: CancelHook): unknown[] | Promise<unknown[]> {
    const wire = wireValue(args, this.owner);
    const before = this.wiring;
    if (before === undefined && !(wire instanceof Promise)) return wire;
    // observed through `mine` below, possibly only after earlier turns: never unhandled meanwhile
    if (wire instanceof Promise) wire.catch(noop);
    let giveUp!: () => void;
    const gaveUp = new Promise<never>((_, reject) => {
      giveUp = () => reject(new CancelledError(`${this.def.name}.${method}`, "cancelled before it was sent"));
    });
    gaveUp.catch(noop);
    hook.cancel = giveUp;
    const ready = before === undefined ? wire as Promise<unknown[]> : before.then(() => wire);
    const mine = Promise.race([ready, gaveUp]);
    // this turn ends when the call left or gave up, and never before the turns ahead of it
    const turn: Promise<void> = before === undefined ? mine.then(noop, noop) : before.then(() => mine).then(noop, noop);
    this.wiring = turn;
    turn.then(() => {
      if (this.wiring === turn) this.wiring = undefined;
      if (hook.cancel === giveUp) hook.cancel = undefined;
    });
    return mine;
  }

  protected async dispose(deadline?: number): Promise<void> {
    const p = this.instanceId;
    this.instanceId = undefined;
    this.createdId = undefined;
    try {
      if (p === undefined) return;
      // bounded: a frozen node must not hold mesh.close() forever (its lease frees the instance).
      // Once one destroy on a link went unanswered, the link's other instances are left to the lease.
      const most = remoteTimeouts.destroyTimeoutMs;
      const wait = deadline === undefined ? most : Math.min(most, Math.max(100, deadline - performance.now()));
      if (this.link.unresponsive) return;
      let timer: ReturnType<typeof setTimeout> | undefined;
      let timedOut = false;
      const id = await Promise.race([
        p.catch(() => undefined),
        new Promise<undefined>((r) => {
          timer = setTimeout(() => {
            timedOut = true;
            r(undefined);
          }, wait);
        }),
      ]);
      clearTimeout(timer);
      if (id === undefined) {
        // a create that never answered: the link's other instances are left to the lease too
        if (timedOut) this.link.unresponsive = true;
        return;
      }
      if (this.link.unresponsive) return;
      await this.link.request({ t: "destroy", id }, "destroyed", undefined, wait).catch((e) => {
        if (e instanceof TransportError && /No reply/.test(e.message)) this.link.unresponsive = true;
      });
    } finally {
      if (this.holding) {
        this.holding = false;
        this.link.release();
      }
    }
  }
}

setRemoteReplicaFactory((mesh, def, args, index, node, gpus) => {
  const policy = def.policy ?? (mesh.options.timeoutMs ? { retries: 0, timeoutMs: mesh.options.timeoutMs } : undefined);
  return new RemoteReplica(mesh, def, args, index, meshLink(mesh, node), gpus, policy);
});

// ---- remote-capable ops ----------------------------------------------------------------------

setRemoteOpRunner((mesh, name, gpus) => {
  if (!mesh.hasRemoteNodes) return undefined;
  const body = async (...a: unknown[]) => {
    const trace = injectTraceContext(); // before any await: the active span is the op's own
    const span = isTracingEnabled() ? otelTrace.getActiveSpan() : undefined;
    const hook = a.pop() as CancelHook;
    const candidates: NodeLink[] = [];
    await Promise.all(
      mesh.nodes.filter((n) => n.endpoint !== undefined).map(async (n) => {
        const link = meshLink(mesh, n);
        try {
          const w = await link.welcome();
          if (w.ops.includes(name) && w.gpus >= gpus) candidates.push(link);
        } catch {
          // an unreachable node cannot take the call
        }
      }),
    );
    if (candidates.length === 0) {
      // no node registered the op: it runs here, as a plain op would
      return registeredOps().get(name)!.fn(...a);
    }
    const link = candidates.reduce((a, b) => (b.inFlight < a.inFlight ? b : a));
    const timeoutMs = mesh.options.timeoutMs;
    return link.call(
      {
        op: name,
        args: await wireValue(a, mesh),
        ...(timeoutMs ? { timeoutMs } : {}),
        ...(trace.traceparent !== undefined ? { trace } : {}),
      },
      hook,
      span,
    );
  };
  return Object.assign(body, { [ABORTABLE]: true });
});

// ---- values on the wire: service handles travel as references ------------------------------------

function noop(): void {}

function isPlain(v: object): boolean {
  const p = Object.getPrototypeOf(v);
  return p === Object.prototype || p === null;
}

/** Whether `value` holds a service handle (in arrays and plain objects). */
function holdsHandle(value: unknown, depth = 0): boolean {
  if (typeof value !== "object" || value === null || depth > 32) return false;
  if (handleStateOf(value) !== undefined) return true;
  if (Array.isArray(value)) return value.some((v) => holdsHandle(v, depth + 1));
  return isPlain(value) && Object.values(value).some((v) => holdsHandle(v, depth + 1));
}

/**
 * The value as it may travel: service handles become references to their remote instances. A
 * handle of an instance living in this process cannot travel: a TypeError says so.
 */
export function wireValue<T>(value: T, owner: object): T | Promise<T> {
  return holdsHandle(value) ? replaceHandles(value, owner, 0) as Promise<T> : value;
}

async function replaceHandles(value: unknown, owner: object, depth: number): Promise<unknown> {
  if (typeof value !== "object" || value === null || depth > 32) return value;
  const state = handleStateOf(value);
  if (state !== undefined) return await handleToWire(state, owner);
  if (Array.isArray(value)) return await Promise.all(value.map((v) => replaceHandles(v, owner, depth + 1)));
  if (!isPlain(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = await replaceHandles(v, owner, depth + 1);
  return out;
}

async function handleToWire(state: HandleState, owner: object): Promise<unknown> {
  const deployment = typeof (owner as Partial<Mesh>)._deploy === "function"
    ? state.deployment(owner as Mesh)
    : state.pinned;
  const replicas = deployment?.replicas ?? [];
  if (replicas.length === 0 || !replicas.every((r) => r instanceof RemoteReplica)) {
    throw new TypeError(
      `Cannot send a handle of service "${state.def.name}" to another node: its instance lives in this process; ` +
        "place the service on a node with an endpoint to share it",
    );
  }
  const remote = replicas as RemoteReplica[];
  const ids = await Promise.all(remote.map((r) => r.reference()));
  return {
    [HANDLE_KEY]: {
      service: state.def.name,
      replicas: remote.map((r, i) => ({ endpoint: r.link.endpoint, node: r.node, id: ids[i] })),
    },
  };
}

/** The value with handle references turned back into handles reachable through `from`'s owner. */
export function reviveValue<T>(value: T, from: LinkOptions & { owner: object }, depth = 0): T {
  if (typeof value !== "object" || value === null || depth > 32) return value;
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
  const h = (value as Record<string, unknown>)[HANDLE_KEY];
  if (h !== undefined) return reviveHandle(h, from) as T;
  let out: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(value)) {
    const r = reviveValue(v, from, depth + 1);
    if (r !== v) (out ??= { ...(value as Record<string, unknown>) })[k] = r;
  }
  return (out ?? value) as T;
}

function reviveHandle(h: unknown, options: LinkOptions & { owner: object }): object {
  const spec = h as { service?: unknown; replicas?: unknown };
  const def = typeof spec.service === "string" ? registeredServices().get(spec.service) : undefined;
  if (def === undefined) {
    throw new ProtocolError(
      `A handle of unknown service ${JSON.stringify(spec.service)} arrived; this process did not register it`,
    );
  }
  if (!Array.isArray(spec.replicas) || spec.replicas.length === 0) {
    throw new ProtocolError("A handle arrived without replicas");
  }
  const replicas = spec.replicas.map((r: { endpoint?: unknown; node?: unknown; id?: unknown }, i: number) => {
    if (typeof r.endpoint !== "string" || typeof r.id !== "string") {
      throw new ProtocolError("A handle arrived with a malformed replica");
    }
    const link = linkFor(options.owner, typeof r.node === "string" ? r.node : r.endpoint, r.endpoint, options);
    return new RemoteReplica(options.owner, def, [], i, link, [], def.policy, r.id);
  });
  const state = new HandleState(def, []);
  state.pinned = new Deployment(def, replicas);
  for (const r of replicas) r.attach(state.pinned);
  return makeHandle(state);
}
