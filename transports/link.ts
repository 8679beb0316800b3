/**
 * A link from a driver (a mesh, or a node calling other nodes) to one node: it connects lazily over
 * the chosen transport, sends protocol messages and decodes the replies, caches the node's
 * `welcome`, turns transport failures of calls into `NodeLostError`, and keeps the node's leases
 * alive while it holds instances there. Each owner's links are kept in `link_table.ts` (`linkFor`,
 * `meshLink`); when the refs a link holds prompt a collection is `link_collection.ts`.
 *
 * @module
 */
import type { Span } from "@opentelemetry/api";
import { errorFromWire, frameBytes, isValueRefusal } from "../core/codec.ts";
import { NodeLostError, TransportError } from "../core/errors.ts";
import { requestCollection } from "../core/_runtime.ts";
import type { CancelHook } from "../core/cancel.ts";
import { DEFAULT_KEEPALIVE_MS, DEFAULT_LOST_AFTER_MS } from "../core/mesh_config.ts";
import { MeshRuntime } from "../core/mesh_runtime.ts";
import type { NodeHealth } from "../core/explain.ts";
import { backgroundInterval, closedError, randomId } from "./_common.ts";
import {
  argumentRefusal,
  type CallMessage,
  type ChunkMessage,
  decodeReply,
  encodeMessage,
  PROTOCOL_VERSION,
  type ResultMessage,
  type WelcomeMessage,
} from "./protocol.ts";
import type { ConnectOptions, Transport, TransportConnection, TransportName } from "./transport.ts";
import { keepFields, pullsFrom } from "./objects.ts";
import { RemoteObject } from "./remote_object.ts";
import { type ChunkSource, RemoteChunks } from "./remote_chunks.ts";
import { decodeCallReply, decodeChunk } from "./stream_chunk.ts";
import { resolveStreamWindow } from "./stream_window.ts";
import { collectionBudget, collectionPrompts, collectNowAllowed, startPrompt } from "./link_collection.ts";

export { collectionBudget } from "./link_collection.ts";

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

/** The longest a hello waits for its welcome (the WebSocket connect timeout), ms. */
const HELLO_TIMEOUT_MS = 10_000;
/** The first backoff after a failed hello, ms; it doubles with each failure, up to the max. */
const HELLO_BACKOFF_MS = 1_000;
const HELLO_BACKOFF_MAX_MS = 30_000;

let callCounter = 0;
const callPrefix = crypto.randomUUID().slice(0, 8);
/**
 * How the consumer's end of a stream asks its link for chunks: one object per stream, holding the
 * link and the call's id (its methods the link's), instead of a record of closures.
 */
class LinkChunks implements ChunkSource {
  constructor(readonly link: NodeLink, readonly cid: string) {}
  credit(items: number, bytes: number): Promise<ChunkMessage> {
    return this.link.credit(this.cid, items, bytes);
  }
  cancel(): void {
    this.link.notify({ t: "cancel", cid: this.cid });
  }
  revive(item: unknown): unknown {
    return this.link.revive(item);
  }
  ended(): void {
    this.link.streamEnded();
  }
}

/** How long a `free` waits for its answer (nothing waits for it; this only bounds the promise). */
const FREE_TIMEOUT_MS = 60_000;

/** The objects and kept call results a link frees with its next `free` (see `FreeMessage`). */
interface FreeBatch {
  oids: string[];
  cids: string[];
  collected?: boolean;
}

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
  /** How often this link pings the node while it has calls in flight or holds instances there, ms. */
  readonly keepaliveMs: number;
  /** How long the node may answer nothing while pinged before its calls fail with `NodeLostError`, ms. */
  readonly lostAfterMs: number;
  private readonly options: ConnectOptions;
  private conn: Promise<TransportConnection> | undefined;
  private open: TransportConnection | undefined;
  private welcomeP: Promise<WelcomeMessage> | undefined;
  private welcomeAt = 0;
  /** The welcome `welcomeP` resolved with (known only once it has: see `knownWelcome`). */
  private welcomed: { from: Promise<WelcomeMessage>; welcome: WelcomeMessage } | undefined;
  /** The last hello that failed, answered again at once until `until` (a backoff, not a new wait). */
  private helloFailure: { error: unknown; until: number } | undefined;
  private helloBackoffMs = 0;
  /** Set when an established connection dropped; cleared by the next successful request. */
  lost = false;
  /**
   * Why the requests of a connection that never answered ended (its hello timed out): the
   * `TransportError("unreachable")` they reject with instead of the connection's close.
   */
  private unreachable: TransportError | undefined;
  /** Why the node was taken for lost when the link itself gave up on it (a missed keepalive window). */
  private lostDetail: string | undefined;
  /** Replies received (counted, not timed: the watch reads the clock, the hot path does not). */
  private heard = 0;
  /** True once any request got an answer: later failures mean the node was lost, not never there. */
  private reached = false;
  /** Calls in flight on this link. */
  inFlight = 0;
  /**
   * This link's lease id: instances it creates live on the node while it keeps pinging with it. It
   * travels with every call, so it is short enough for the decoder's short-text path (96 random
   * bits, 24 hex digits).
   */
  readonly leaseId: string = randomId();
  /** What the link belongs to (a mesh, or a node process): handles arriving on it belong there too. */
  readonly holder: object;
  /**
   * What this link holds on the node, alive there while its lease is (it pings while there is
   * any): the instances it created, the objects it keeps there, the results published for it.
   */
  private held = 0;
  /** The liveness watch: pings while the link has calls in flight or holds instances. */
  private watch: ReturnType<typeof setInterval> | undefined;
  private watchEvery = 0;
  /** The lease keepalive period the node asked for (a third of its lease), 0 when none. */
  private leaseEvery = 0;
  private lastTick = 0;
  private heardAtTick = 0;
  private lastHeardAt = 0;
  private pinging = false;
  /** When the last keepalive ping went out and when the last pong came (0: never), for `health()`. */
  private pingSentAt = 0;
  private pongAt = 0;
  private closed = false;
  /** Whether its node was taken for lost (or removed) when it was closed. */
  private lostAtClose = false;
  /** The connection that declared this link's data-plane fields (its `session`), if any. */
  private sessionOn: TransportConnection | undefined;
  /** Set when a destroy went unanswered while closing: the rest are left to the node's lease. */
  unresponsive = false;

  /**
   * @param node The node's name (in errors).
   * @param endpoint Where it listens.
   * @param transport How to reach it.
   * @param options Token and frame size limit for the connection.
   * @param handles How handles in values are turned into references and back (`handle_wire.ts`).
   * @param holder What the link belongs to (default: itself).
   * @param timeouts The welcome TTL, the destroy deadline and the keepalive window (the mesh's
   * `welcomeTtlMs`, `destroyTimeoutMs`, `keepaliveMs`, `lostAfterMs`).
   */
  constructor(
    node: string,
    endpoint: string,
    transport: Transport,
    options: ConnectOptions,
    handles: HandleWire,
    holder?: object,
    timeouts: { welcomeTtlMs?: number; destroyTimeoutMs?: number; keepaliveMs?: number; lostAfterMs?: number } = {},
  ) {
    this.welcomeTtlMs = timeouts.welcomeTtlMs ?? DEFAULT_WELCOME_TTL_MS;
    this.destroyTimeoutMs = timeouts.destroyTimeoutMs ?? DEFAULT_DESTROY_TIMEOUT_MS;
    this.keepaliveMs = timeouts.keepaliveMs ?? DEFAULT_KEEPALIVE_MS;
    this.lostAfterMs = timeouts.lostAfterMs ?? DEFAULT_LOST_AFTER_MS;
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

  /**
   * True once the link was closed while its node was not taken for lost (its owner, a mesh, closed):
   * what it held there was freed then (or left to the node's lease), the node itself is fine.
   */
  get closedByOwner(): boolean {
    return this.closed && !this.lostAtClose;
  }

  private connection(): Promise<TransportConnection> {
    if (this.conn === undefined) {
      const p = this.transport.connect(this.endpoint, this.options).then((c) => {
        this.declareSession(c);
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
   * On a WebSocket, says once, as the connection's first frame, the data-plane fields every call
   * would carry (`keepAbove`, `owner`: a `session` message), so calls on it leave them out.
   */
  private declareSession(c: TransportConnection): void {
    if (this.transport.name !== "websocket") return;
    const fields = keepFields(this);
    if (fields.keepAbove === undefined) return;
    c.notify(encodeMessage({ t: "session", keepAbove: fields.keepAbove, owner: fields.owner }));
    this.sessionOn = c;
  }

  /**
   * The data-plane fields a call on this link carries (see `objects.ts`' `keepFields`): none on a
   * connection that declared them in its `session`.
   */
  callKeepFields(): { keepAbove?: number; owner?: string } {
    return this.open !== undefined && this.open === this.sessionOn && !this.open.closed ? NO_FIELDS : keepFields(this);
  }

  /**
   * Sends a message and decodes the reply of the expected type; `span` gets the byte counts.
   * `timeoutMs` bounds the wait (protocol requests other than calls: a frozen node must not hold a
   * close or a keepalive forever); calls carry their own deadline.
   */
  async request<T extends { t: string }>(
    message: unknown,
    expected: T["t"] | readonly T["t"][] | ((reply: Uint8Array) => T),
    span?: Span,
    timeoutMs?: number,
    onSent?: () => void,
  ): Promise<T> {
    if (this.closed) throw closedError(this.endpoint);
    // the connection, once open, is used directly (no await per call)
    const conn = this.open ?? await this.connection();
    if (conn.closed) {
      this.conn = undefined;
      this.open = undefined;
      return this.request(message, expected, span, timeoutMs, onSent);
    }
    const frame = encodeMessage(message);
    // the span's "sent" → "received" is the transfer plus the node's own SERVER span
    if (span !== undefined) span.addEvent("sent");
    // a keepalive or a hello goes past a transport's bound on requests under way (see RequestOptions)
    const t = (message as { t?: unknown }).t;
    const replied = t === "ping" || t === "hello"
      ? conn.request(frame, { timeoutMs, urgent: true })
      : conn.request(frame, timeoutMs === undefined ? undefined : { timeoutMs });
    // the frame is on its way: what must follow it on this ordered link may go now (pipelining)
    if (onSent !== undefined) onSent();
    let reply: Uint8Array;
    try {
      reply = await replied;
    } catch (e) {
      throw this.unreached(e);
    }
    this.answered();
    if (span !== undefined) {
      span.addEvent("received");
      // (a frame's large arrays travel beside it: frameBytes counts them)
      span.setAttribute("thinkagain.bytes_sent", frameBytes(frame));
      span.setAttribute("thinkagain.bytes_received", frameBytes(reply));
    }
    return typeof expected === "function" ? expected(reply) : decodeReply<T>(reply, expected);
  }

  /** A reply came: the node is reachable and not lost (request() and call()'s direct path). */
  private answered(): void {
    this.heard++;
    this.lost = false;
    this.lostDetail = undefined;
    this.reached = true;
    this.unreachable = undefined;
  }

  /**
   * The hello of a connection nothing ever answered timed out: the connection is closed, and its
   * requests fail as unreachable (see {@linkcode NodeLink.unreached}); the next one connects anew.
   */
  private neverAnswered(timeout: TransportError): void {
    const c = this.conn;
    this.conn = undefined;
    this.open = undefined;
    this.unreachable = new TransportError(
      "unreachable",
      `Cannot reach ${this.endpoint}: it answered nothing, not even a hello within ` +
        `${Math.min(this.lostAfterMs, HELLO_TIMEOUT_MS)} ms (not a thinkagain node, or it hangs)`,
      this.endpoint,
      timeout,
    );
    if (c) c.then((x) => x.close(), () => {});
  }

  /** A request's failure, as unreachable when its connection was closed for never answering. */
  private unreached(e: unknown): unknown {
    return this.unreachable !== undefined && !this.reached && e instanceof TransportError && e.reason === "closed"
      ? this.unreachable
      : e;
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
   * of a restart, for at most `welcomeTtlMs`, and until a call finds the node lost). A hello is
   * answered within `lostAfterMs` (at most 10 s) or fails; a failed one is remembered: asking again
   * within a backoff (1 s, doubling up to 30 s) fails at once with the same error, so a frozen node
   * costs its callers one wait per backoff, not one per call.
   */
  welcome(): Promise<WelcomeMessage> {
    if (
      !this.ordered && this.welcomeP !== undefined && performance.now() - this.welcomeAt > this.welcomeTtlMs
    ) {
      this.welcomeP = undefined;
    }
    if (this.welcomeP === undefined) {
      const failed = this.helloFailure;
      if (failed !== undefined && performance.now() < failed.until) return Promise.reject(failed.error);
      this.welcomeAt = performance.now();
      // a mesh declares its nodes: handles a node receives from it may lead there (with the node's
      // token when this link presented it, see HandleReach)
      const mesh = this.holder instanceof MeshRuntime
        ? this.holder.nodes.flatMap((n) => (n.endpoint === undefined ? [] : [n.endpoint]))
        : [];
      const hello = mesh.length > 0 ? { t: "hello", v: PROTOCOL_VERSION, mesh } : { t: "hello", v: PROTOCOL_VERSION };
      const p = this.request<WelcomeMessage>(hello, "welcome", undefined, Math.min(this.lostAfterMs, HELLO_TIMEOUT_MS));
      p.then((welcome) => {
        this.helloFailure = undefined;
        this.helloBackoffMs = 0;
        if (this.welcomeP === p) this.welcomed = { from: p, welcome };
        // the mesh places on what the node has, not only on what was declared for it
        if (this.holder instanceof MeshRuntime) this.holder.nodeReported(this.node, welcome);
      }, (error) => {
        if (this.welcomeP === p) this.welcomeP = undefined;
        if (this.closed) return;
        this.helloBackoffMs = Math.min(Math.max(HELLO_BACKOFF_MS, this.helloBackoffMs * 2), HELLO_BACKOFF_MAX_MS);
        this.helloFailure = { error, until: performance.now() + this.helloBackoffMs };
        // nothing ever answered, not even the hello: the requests waiting on the connection end,
        // unreachable (over HTTP, or a WebSocket upgraded by a peer that reads nothing, they would
        // wait for ever: no keepalive can take for lost a node that was never reached)
        if (!this.reached && error instanceof TransportError && error.reason === "io") this.neverAnswered(error);
      });
      this.welcomeP = p;
    }
    return this.welcomeP;
  }

  /**
   * The node's `welcome` when it is already known (a hello answered, still trusted), without
   * asking; `undefined` while unknown, asked, or failed.
   */
  knownWelcome(): WelcomeMessage | undefined {
    const w = this.welcomed;
    if (w === undefined || w.from !== this.welcomeP) return undefined;
    if (!this.ordered && performance.now() - this.welcomeAt > this.welcomeTtlMs) return undefined;
    return w.welcome;
  }

  /**
   * Calls a method or op on the node; transport failures of a sent call become `NodeLostError`.
   */
  async call(
    message: Omit<CallMessage, "t" | "cid">,
    hook: CancelHook | undefined,
    span?: Span,
    onSent?: (cid: string) => void,
  ): Promise<unknown> {
    const cid = `${callPrefix}-${++callCounter}`;
    if (hook !== undefined) hook.cancel = () => this.notify({ t: "cancel", cid });
    this.inFlight++;
    if (this.watch === undefined) this.startWatch();
    let streaming = false;
    try {
      // a window other than the default travels with every call (its result may be a stream)
      const window = this.streamWindow();
      // the caller's message becomes the call (no copy: this runs once per call)
      const call = message as Mutable<CallMessage>;
      call.t = "call";
      call.cid = cid;
      if (window !== undefined) {
        call.creditItems = window.items;
        call.creditBytes = window.bytes;
      }
      let res: ResultMessage | ChunkMessage;
      const conn = this.open;
      // other nodes whose results its node pulls: watched meanwhile (see whilePullable)
      const from = call.pipe === undefined ? undefined : pullsFrom(message);
      if (span === undefined && conn !== undefined && !conn.closed && !this.closed) {
        // the common case, as request() does it without its async function around (a promise and
        // a job less per call): an open connection, no span to tell
        const replied = conn.request(encodeMessage(call));
        if (onSent !== undefined) onSent(cid);
        const reply = from === undefined ? await replied : await this.whilePullable(replied, from, cid);
        this.answered();
        res = decodeCallReply(reply);
      } else {
        const sent = onSent === undefined ? undefined : () => onSent(cid);
        const replied = this.request<ResultMessage | ChunkMessage>(call, decodeCallReply, span, undefined, sent);
        res = from === undefined ? await replied : await this.whilePullable(replied, from, cid);
      }
      if (res.t === "chunk") {
        streaming = true;
        return this.openStream(cid, res, window ?? resolveStreamWindow(undefined));
      }
      if (res.ok && res.object !== undefined) {
        // it stayed on the node: the ref holds where, and fetches it when awaited
        const madeBy = message.op !== undefined ? `op "${message.op}"` : `method "${message.method}"`;
        const call = message.op ?? { name: message.method!, kind: "method" as const };
        return new RemoteObject(this, res.object.oid, res.object.bytes, `${madeBy} on node "${this.node}"`, call);
      }
      if (res.ok) {
        // handles in the result belong to whoever holds this link (its mesh), and close with it
        return this.handles.fromWire(res.value, this.wireFrom ??= this.from());
      }
      throw errorFromWire(res.error);
    } catch (e) {
      if (isValueRefusal(e)) {
        const what = message.op !== undefined ? `op "${message.op}"` : `method "${message.method}"`;
        throw argumentRefusal(e, message.args, `Cannot call ${what} on node "${this.node}"`);
      }
      throw this.asNodeLost(e);
    } finally {
      if (!streaming) this.inFlight--; // a stream is in flight until it ends
      if (hook !== undefined) hook.cancel = undefined;
    }
  }

  /** Whose handles the results of calls on this link hold (made once: read per call). */
  private wireFrom: (LinkOptions & { owner: object }) | undefined;

  private from(): LinkOptions & { owner: object } {
    return { owner: this.holder, token: this.options.token, transport: this.transport.name };
  }

  /** The stream window of this link's mesh, when it set one (`undefined`: the default). */
  private streamWindow(): Required<{ items: number; bytes: number }> | undefined {
    const w = this.holder instanceof MeshRuntime ? this.holder.options.streamWindow : undefined;
    return w === undefined ? undefined : resolveStreamWindow(w);
  }

  /**
   * The consumer's end of the stream that call `cid` answered with `first`: later chunks are asked
   * for with `credit` (a transport failure meanwhile is the node lost), and leaving it early
   * cancels the call on the node. The call counts as in flight (the node is watched) until it ends.
   */
  private openStream(
    cid: string,
    first: ChunkMessage,
    window: { items: number; bytes: number },
  ): RemoteChunks {
    return new RemoteChunks(new LinkChunks(this, cid), first, window);
  }

  /** Asks the node for call `cid`'s next chunk (see LinkChunks). */
  credit(cid: string, items: number, bytes: number): Promise<ChunkMessage> {
    return this.request<ChunkMessage>({ t: "credit", cid, items, bytes }, decodeChunk).catch((e) => {
      throw this.asNodeLost(e);
    });
  }

  /** An item of a stream that arrived, with the handles in it this link's (see LinkChunks). */
  revive(item: unknown): unknown {
    return this.handles.fromWire(item, this.wireFrom ??= this.from());
  }

  /** A stream of this link's ended: its call is no longer in flight. */
  streamEnded(): void {
    this.inFlight--;
  }

  /**
   * A transport failure of a call means the node was lost: the connection broke under it, or (over
   * HTTP, where each call connects anew) a node that answered before cannot be reached any more.
   */
  asNodeLost(e: unknown): unknown {
    e = this.unreached(e);
    if (
      e instanceof TransportError &&
      (e.reason === "closed" || e.reason === "io" || (e.reason === "unreachable" && this.reached))
    ) {
      this.lost = true;
      this.welcomeP = undefined; // the node that comes back may register other names
      return new NodeLostError(this.node, this.lostDetail ?? e.message, e);
    }
    return e;
  }

  /** An instance this link created exists on the node now: keepalives go out while any does. */
  hold(): void {
    this.held++;
    if (this.watch === undefined) this.startWatch();
  }

  /**
   * The node's lease is `leaseMs` (told by every `created`: a restarted node may have another):
   * while this link holds instances, its pings carry its lease id at least every third of the
   * shortest lease seen.
   */
  leaseIs(leaseMs: number | undefined): void {
    if (this.closed || this.held === 0 || !(typeof leaseMs === "number" && leaseMs > 0)) return;
    const every = Math.max(5, Math.floor(leaseMs / 3));
    if (this.leaseEvery !== 0 && this.leaseEvery <= every) return;
    this.leaseEvery = every;
    this.stopWatch();
    this.startWatch();
  }

  /** One held instance was destroyed: keepalives stop with the last (and the last call). */
  release(): void {
    if (--this.held > 0) return;
    this.held = 0;
    this.leaseEvery = 0;
  }

  /**
   * Watches the node while this link has calls in flight or holds instances: a ping every
   * `keepaliveMs` (every third of the node's lease, if shorter), on a timer that does not hold the
   * process open. A node that answers nothing (no reply, no pong) for `lostAfterMs` hangs or is cut
   * off: the link gives up on it (see {@link NodeLink.giveUp}).
   */
  private startWatch(): void {
    if (this.closed) return;
    const every = this.leaseEvery > 0 ? Math.min(this.keepaliveMs, this.leaseEvery) : this.keepaliveMs;
    this.watchEvery = every;
    this.lastTick = performance.now();
    this.lastHeardAt = this.lastTick;
    this.heardAtTick = this.heard;
    this.watch = backgroundInterval(() => this.tick(), every);
  }

  private tick(): void {
    if (this.inFlight === 0 && this.held === 0) return this.stopWatch();
    const now = performance.now();
    // a tick far later than due means this process's own event loop stalled (a long synchronous
    // stretch): replies that came meanwhile are still unread, so nobody is taken for lost on that
    // account and the window starts again
    const stalled = now - this.lastTick > 2 * this.watchEvery + 50;
    this.lastTick = now;
    if (stalled || this.heard !== this.heardAtTick) {
      this.heardAtTick = this.heard;
      this.lastHeardAt = now;
    } else if (now - this.lastHeardAt > this.lostAfterMs) {
      this.giveUp(`no reply to keepalive pings for ${this.lostAfterMs} ms (the node hangs or is cut off)`);
      this.lastHeardAt = now; // a new window for the next connection
    }
    // one at a time: a frozen node must not collect a pile of them
    if (this.pinging) return;
    this.pinging = true;
    this.pingSentAt = now;
    const ping = this.held > 0 ? { t: "ping", owner: this.leaseId } : { t: "ping" };
    this.request(ping, "pong", undefined, this.lostAfterMs)
      .then(() => (this.pongAt = performance.now()), () => {})
      .finally(() => (this.pinging = false));
  }

  /**
   * Whether the node answers its keepalive pings (for `ref.explain()` and the watchdog): lost, or
   * whether the last ping sent got its pong, and when each happened.
   *
   * @returns The node's health as this link knows it.
   */
  health(): NodeHealth {
    const now = performance.now();
    return {
      node: this.node,
      lost: this.lost,
      answeredLastKeepalive: this.pingSentAt === 0 || this.pongAt >= this.pingSentAt,
      lastPingAgoMs: this.pingSentAt === 0 ? undefined : now - this.pingSentAt,
      lastPongAgoMs: this.pongAt === 0 ? undefined : now - this.pongAt,
    };
  }

  private stopWatch(): void {
    if (this.watch !== undefined) clearInterval(this.watch);
    this.watch = undefined;
  }

  /**
   * Gives up on the node: its connection is dropped, so every call waiting on it fails at once
   * with `NodeLostError` saying `detail` and a late answer has nowhere to arrive; new calls fail
   * over to a replica on another node where there is one, and the next request connects anew.
   */
  /** Who waits to hear that this link gave up on its node (see {@linkcode NodeLink.watchFor}). */
  private lostListeners: Set<(detail: string) => void> | undefined;

  /**
   * Watches the node (as for a call in flight) until the returned function is called, and tells
   * `lost` why if this link gives up on it meanwhile: a call on another node that pulls a result
   * from this one waits for it.
   *
   * @param lost Told once, with the reason, if the node is taken for lost.
   * @returns Stops the watch.
   */
  watchFor(lost: (detail: string) => void): () => void {
    this.inFlight++;
    if (this.watch === undefined) this.startWatch();
    (this.lostListeners ??= new Set()).add(lost);
    let stopped = false;
    return () => {
      if (stopped) return;
      stopped = true;
      this.inFlight--;
      this.lostListeners?.delete(lost);
    };
  }

  /**
   * `reply`, or a `NodeLostError` naming one of `from` (the nodes whose results call `cid`'s node
   * pulls) should this process take it for lost first; the call is cancelled on its node then.
   * Without it the call would wait until its node's own link to that node gave up, on that node's
   * keepalive timings, not this mesh's `lostAfterMs`.
   */
  private async whilePullable<T>(reply: Promise<T>, from: readonly NodeLink[], cid: string): Promise<T> {
    const stops: (() => void)[] = [];
    try {
      return await new Promise<T>((resolve, reject) => {
        for (const source of from) {
          stops.push(source.watchFor((detail) => {
            this.notify({ t: "cancel", cid });
            reject(
              new NodeLostError(
                source.node,
                `node "${this.node}" was pulling a result of it for a call: ${detail}`,
              ),
            );
          }));
        }
        reply.then(resolve, reject);
      });
    } finally {
      for (const stop of stops) stop();
    }
  }

  giveUp(detail: string): void {
    if (this.lostListeners !== undefined) { for (const lost of [...this.lostListeners]) lost(detail); }
    const c = this.conn;
    this.conn = undefined;
    this.open = undefined;
    this.lost = true;
    this.lostDetail = detail;
    this.welcomeP = undefined;
    if (c) c.then((x) => x.close(), () => {});
  }

  /** Objects this link's owner holds on the node (results kept there): their sizes, by id. */
  private readonly objects = new Map<string, number>();
  /** The bytes of {@linkcode NodeLink.objects} together: what this link's refs pin on the node. */
  private pinnedBytes = 0;
  /** The fewest bytes pinned since the last collection prompt (see {@linkcode NodeLink.holdObject}). */
  private pinnedLow = 0;
  /** {@linkcode collectionPrompts} when this link last looked. */
  private promptsSeen = 0;
  /** What the collection after the last thorough one left pinned (see {@linkcode NodeLink.prompt}). */
  private thoroughFloor = 0;
  /** Set by a thorough prompt: the next prompt measures what it left. */
  private afterThorough = false;
  /** Objects and kept call results to free with the next `free` (sent once per turn of the event loop). */
  private toFree: FreeBatch | undefined;
  /** `free` batches sent and not answered yet (closing sends them again). */
  private freesSent: Set<FreeBatch> | undefined;
  /** Results the node publishes for calls sent on this link, until forgotten (see `holdPublished`). */
  private readonly publishedIds = new Set<string>();

  /**
   * An object of `bytes` the node keeps for this link's owner: the lease is kept alive while any
   * is. A ref dropped by its holder frees its object only when this process's garbage collector
   * finds it, and a driver that only passes refs on allocates too little for that to come on its
   * own; so once the bytes its refs pin here have grown by {@linkcode NodeLink.collectEvery} since
   * the fewest of the last prompt, the runtime is asked to collect (`requestCollection`).
   */
  holdObject(oid: string, bytes: number): void {
    if (this.objects.has(oid)) return;
    this.objects.set(oid, bytes);
    this.hold();
    if (this.promptsSeen !== collectionPrompts) {
      // another link prompted: what this one's dropped refs pinned is being collected too
      this.promptsSeen = collectionPrompts;
      this.pinnedLow = this.pinnedBytes;
    }
    this.pinnedBytes += bytes;
    const every = this.collectEvery();
    if (this.pinnedBytes - this.pinnedLow >= every) this.prompt(every);
  }

  /**
   * Asks the runtime to collect. The fewest bytes pinned since the last prompt are what its
   * collection left (live refs, and dropped ones it missed: a quick collection, Bun's without
   * `thorough`, misses refs that were alive at an earlier one); once that has grown by half of
   * `every` above what the last thorough collection left, this one is thorough.
   */
  private prompt(every: number): void {
    const now = performance.now();
    const made = startPrompt(now);
    if (made === 0) return; // the next object asks again
    const left = this.pinnedLow;
    if (this.afterThorough) {
      this.thoroughFloor = left;
      this.afterThorough = false;
    }
    const thorough = left - this.thoroughFloor >= every / 2;
    if (thorough) this.afterThorough = true;
    this.promptsSeen = made;
    this.pinnedLow = this.pinnedBytes;
    // once this link's refs pin half of the node's store, the prompts' collections came too late
    // (V8 marks on its own tasks, slower on a busy machine: in a loop of dropped 1 MiB results a
    // small store came close to full so) or the refs are live: collect now, rarely (at most a
    // tenth of the time, see collectNowAllowed), before the store refuses results
    const store = this.knownWelcome()?.objectStoreBytes;
    if (store !== undefined && this.pinnedBytes >= Math.max(store / 2, 4 * every) && collectNowAllowed(now)) {
      this.afterThorough = true;
      return;
    }
    requestCollection(thorough);
  }

  /** {@linkcode collectionBudget} for this link's node, by what its welcome says. */
  private collectEvery(): number {
    return collectionBudget(this.knownWelcome()?.objectStoreBytes);
  }

  /** How many objects this link's owner holds on the node. */
  get heldObjects(): number {
    return this.objects.size;
  }

  /** Fetches the value of object `oid` from the node (a lost node is `NodeLostError`). */
  async fetchObject(oid: string): Promise<unknown> {
    this.inFlight++;
    if (this.watch === undefined) this.startWatch();
    try {
      const res = await this.request<ResultMessage>({ t: "fetch", oid }, "result");
      if (!res.ok) throw errorFromWire(res.error);
      return this.handles.fromWire(res.value, {
        owner: this.holder,
        token: this.options.token,
        transport: this.transport.name,
      });
    } catch (e) {
      throw this.asNodeLost(e);
    } finally {
      this.inFlight--;
    }
  }

  /**
   * Tells the node to free object `oid`; batched with others.
   *
   * @param oid The object.
   * @param collected Whether its ref was found dropped by this process's garbage collector (not
   * released): the node then collects its own garbage soon (see `FreeMessage.collected`).
   */
  freeObject(oid: string, collected = false): void {
    const bytes = this.objects.get(oid);
    if (bytes === undefined) return;
    this.objects.delete(oid);
    this.pinnedBytes -= bytes;
    if (this.pinnedBytes < this.pinnedLow) this.pinnedLow = this.pinnedBytes;
    this.release();
    const batch = this.queueFree();
    batch.oids.push(oid);
    if (collected) batch.collected = true;
  }

  /** Tells the node to forget the kept result of call `cid` (its pipelined calls have left). */
  freeResult(cid: string): void {
    this.queueFree().cids.push(cid);
  }

  /**
   * The node publishes the result of a call sent on this link as `id` (a hand-off) until
   * {@linkcode NodeLink.forgetPublished}: meanwhile the link's pings carry its lease (the node
   * forgets it when the lease expires), and closing the link forgets it.
   */
  holdPublished(id: string): void {
    if (this.publishedIds.has(id)) return;
    this.publishedIds.add(id);
    this.hold();
  }

  /** Tells the node to forget the result it published as `id` (the calls that pull it have ended). */
  forgetPublished(id: string): void {
    if (this.publishedIds.delete(id)) this.release();
    this.queueFree().oids.push(id);
  }

  private queueFree(): FreeBatch {
    if (this.toFree === undefined) {
      const batch: FreeBatch = this.toFree = { oids: [], cids: [] };
      queueMicrotask(() => {
        if (this.toFree === batch) this.toFree = undefined;
        // a connection that dropped took what it kept and published on the node with it; over HTTP
        // nothing lasts between requests, so the node forgets only when told (or the lease expires)
        if (this.closed || (this.conn === undefined && this.ordered)) return;
        // asked with a reply, not sent one-way: a one-way frame leaves the node nothing to send, so
        // its ACK is delayed (40 ms on Linux) and, where the socket has Nagle on (Deno's WebSocket
        // client), the next call waits behind it
        const sent = this.freesSent ??= new Set();
        sent.add(batch);
        const answered = () => void sent.delete(batch);
        this.request({ t: "free", ...batch }, "freed", undefined, FREE_TIMEOUT_MS).then(answered, answered);
      });
    }
    return this.toFree;
  }

  /** Closes the connection; the link refuses requests from now on. */
  async close(): Promise<void> {
    if (!this.closed) this.lostAtClose = this.lost;
    if (!this.closed && this.open !== undefined && !this.unresponsive) {
      // the objects it holds there and the results published for it go now, not with its lease,
      // and so do the frees not sent yet or not answered (over HTTP, closing aborts a request under
      // way, which the node may never have read)
      const oids = [...this.objects.keys(), ...this.publishedIds];
      const cids: string[] = [];
      for (const batch of [this.toFree, ...(this.freesSent ?? [])]) {
        if (batch === undefined) continue;
        oids.push(...batch.oids);
        cids.push(...batch.cids);
      }
      this.toFree = this.freesSent = undefined;
      this.objects.clear();
      this.publishedIds.clear();
      this.pinnedBytes = this.pinnedLow = this.thoroughFloor = 0;
      if (oids.length > 0 || cids.length > 0) {
        await this.request({ t: "free", oids, cids }, "freed", undefined, this.destroyTimeoutMs).catch(() => {});
      }
    }
    this.closed = true;
    this.stopWatch();
    const c = this.conn, opened = this.open;
    this.conn = undefined;
    this.open = undefined;
    if (opened !== undefined) await opened.close();
    // a connection still being made (a keepalive's, to a hung node) is closed once made, not waited
    // for: a node that accepts and never answers would hold close() for the transport's connect timeout
    else if (c !== undefined) c.then((x) => x.close(), () => {});
  }
}

/** Options for links made outside a mesh (a node calling other nodes). */
export interface LinkOptions {
  token?: string;
  transport?: TransportName;
  maxFrameBytes?: number;
  /** How long a `welcome` is trusted over a transport with no connection to tell of a restart (HTTP), ms. */
  welcomeTtlMs?: number;
  /** How long closing waits for the node to confirm it destroyed an instance, ms. */
  destroyTimeoutMs?: number;
  /** How often a link pings a node while it has calls in flight or holds instances there, ms. */
  keepaliveMs?: number;
  /** How long a pinged node may answer nothing before its calls fail with `NodeLostError`, ms. */
  lostAfterMs?: number;
}

const NO_FIELDS: { keepAbove?: number; owner?: string } = Object.freeze({});

/** A property-writable copy of a message type, for building one field by field. */
export type Mutable<T> = { -readonly [K in keyof T]: T[K] };
