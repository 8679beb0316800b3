/**
 * The NATS transport: a node serves its frames on the subject `thinkagain.node.<name>` of a NATS
 * cluster, and a connection to `nats://host:4222/<name>` sends each frame as a NATS request to it.
 * Replies come back on one inbox per connection (requests multiplexed by id); error replies carry
 * the header `Ta-Error` and a CBOR `{ tag, message, data }` body. The token travels in a header;
 * so does the caller's deadline (`timeoutMs`), after which the node stops the work.
 *
 * NATS carries control and small messages: a frame over the server's `max_payload` (1 MB by
 * default) is refused with a `TransportError("too-large")` that says so and points to the node's
 * direct link (its `ws://` or `http://` endpoint). When no node subscribes to the subject any more
 * (NATS "no responders"), the node is gone: the request, and every other one waiting on that node,
 * fails with `TransportError("closed")` (a mesh's calls turn it into `NodeLostError` and fail
 * over). NATS may lose a message when a server of the cluster dies under it, so a request waiting
 * longer than {@linkcode AUDIT_EVERY_MS} is audited: the node is asked whether it still works on
 * it, and one it has not seen twice in a row fails with `TransportError("io")` instead of hanging.
 *
 * @module
 */
import {
  createInbox,
  headers as natsHeaders,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  type Subscription,
} from "@nats-io/nats-core";
import { decode, encode, frameBytes, inlineFrame } from "../../core/codec.ts";
import { ProtocolError, TransportError } from "../../core/errors.ts";
import { armRequest, authRefused, backgroundInterval, closedError, CloseListeners, decodeError } from "../_common.ts";
import type { Pending } from "../_common.ts";
import {
  checkFrameSize,
  type ConnectOptions,
  type RequestOptions,
  resolveMaxFrameBytes,
  type Transport,
  type TransportConnection,
} from "../transport.ts";
import {
  H_AUDIT,
  H_AUTH,
  H_BYE,
  H_DIRECT,
  H_ERROR,
  H_MEMBER,
  H_NOTIFY,
  H_PARKED,
  H_PARKED_AT,
  H_TIMEOUT,
  H_TOKEN,
} from "./_headers.ts";
import { callCid, cancelCid, endsStream, StreamRoutes } from "./_stream_routes.ts";
import { fetchFrame } from "./parking.ts";
import { webSocketTransport } from "../websocket.ts";
import { isNatsNodeName, type NatsEndpoint, nodeSubject, parseNatsEndpoint } from "./endpoint.ts";
import { acquireNats, type NatsLease, redactUrl } from "./pool.ts";

/** How long a request waits before the node is asked whether it still works on it, ms. */
export const AUDIT_EVERY_MS: number = 1_000;
/** How long an audit of a queue group's calls waits for its members' answers, ms. */
const AUDIT_COLLECT_MS = 1_500;
/** The most requests one audit asks about. */
const AUDIT_BATCH = 1_000;
/** The most bytes of headers a request adds to its frame (token, deadline). */
const HEADER_ALLOWANCE = 512;

interface NatsPending extends Pending {
  readonly sentAt: number;
  /** Audits that found the node not working on it (two in a row: it was lost). */
  misses: number;
  /** An audit's own request: never audited itself. */
  readonly audit: boolean;
  /** To an op's queue group: the frame (a call's id is read from it if it opens a stream). */
  readonly frame?: Uint8Array;
  /** A stream's pull sent to the member that runs it: its call's id. */
  readonly routed?: string;
}

/**
 * The error of a frame NATS cannot carry: it names the limit and where large values go instead.
 *
 * @param bytes The frame's size.
 * @param maxPayload The server's `max_payload`.
 * @param endpoint The peer.
 * @param what `"frame"` or `"reply"`.
 * @returns A `TransportError("too-large")`.
 *
 * @example
 * ```ts
 * import { overMaxPayload } from "./transport.ts";
 * const e = overMaxPayload(2_000_000, 1_048_576, "nats://h:4222/n1", "frame");
 * if (e.reason !== "too-large" || !e.message.includes("direct")) throw new Error("unexpected");
 * ```
 */
export function overMaxPayload(bytes: number, maxPayload: number, endpoint: string, what: string): TransportError {
  return new TransportError(
    "too-large",
    `Cannot send a ${what} of ${bytes} bytes to ${endpoint} over NATS: the NATS server's max_payload is ` +
      `${maxPayload} bytes. NATS carries control and small messages; reach the node over its direct link ` +
      "(its ws:// or http:// endpoint, as its ready line prints) to move large values, or raise max_payload " +
      "in the NATS server's configuration",
    endpoint,
  );
}

/**
 * A view of a received payload as a plain `Uint8Array` (the client hands out Node `Buffer`s, which
 * compare and encode differently), without a copy.
 *
 * @param data A payload.
 * @returns The same bytes as a `Uint8Array`.
 *
 * @example
 * ```ts
 * import { plainBytes } from "./transport.ts";
 * class Sub extends Uint8Array {}
 * const view = plainBytes(new Sub([1, 2]));
 * if (view.constructor !== Uint8Array || view[1] !== 2) throw new Error("unexpected");
 * ```
 */
export function plainBytes(data: Uint8Array): Uint8Array {
  return data.constructor === Uint8Array ? data : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

class NatsTransportConnection implements TransportConnection {
  readonly endpoint: string;
  /** The endpoint as errors show it (no password). */
  readonly #shown: string;
  readonly #target: NatsEndpoint;
  readonly #lease: NatsLease;
  readonly #nc: NatsConnection;
  readonly #inbox: string;
  readonly #token: string | undefined;
  readonly #maxFrameBytes: number;
  readonly #pending = new Map<number, NatsPending>();
  readonly #listeners = new CloseListeners();
  /** Headers of a plain request (the token), made once. */
  readonly #plainHeaders: MsgHdrs | undefined;
  /** The inbox's subscription (the NATS client is shared: it outlives this connection). */
  readonly #replies: Subscription;
  /** The node's direct link, for frames too large for NATS (asked of the node on first need). */
  #directConn: Promise<TransportConnection | undefined> | undefined;
  /**
   * Direct links by URL, for fetching parked replies from the node that parked them (through a
   * queue group, not necessarily the one `#directConn` reaches).
   */
  readonly #directs = new Map<string, Promise<TransportConnection>>();
  /** For an op's queue group: the member running each open stream (its pulls go there). */
  readonly #streams: StreamRoutes | undefined;
  #nextId = 0;
  #closed = false;
  /** True once the node answered anything: "no responders" afterwards means it went away. */
  #reached = false;
  #audit: ReturnType<typeof setInterval> | undefined;
  #auditing = false;

  constructor(endpoint: string, target: NatsEndpoint, lease: NatsLease, options: ConnectOptions) {
    this.endpoint = endpoint;
    this.#shown = redactUrl(endpoint);
    this.#target = target;
    this.#lease = lease;
    this.#nc = lease.nc;
    this.#token = options.token;
    this.#maxFrameBytes = resolveMaxFrameBytes(options.maxFrameBytes);
    this.#inbox = createInbox();
    this.#streams = target.broadcast === undefined ? undefined : new StreamRoutes();
    if (this.#token !== undefined) {
      this.#plainHeaders = natsHeaders();
      this.#plainHeaders.set(H_TOKEN, this.#token);
    }
    this.#replies = this.#nc.subscribe(`${this.#inbox}.*`, { callback: (_err, msg) => this.#onReply(msg) });
    // the client closed for good (not a reconnect): nothing will ever answer
    this.#nc.closed().then(() => this.#fail(closedError(this.#shown), true));
  }

  get closed(): boolean {
    return this.#closed;
  }

  request(frame: Uint8Array, options?: RequestOptions): Promise<Uint8Array> {
    if (this.#closed) return Promise.reject(closedError(this.#shown));
    const tooLarge = checkFrameSize(frame, this.#maxFrameBytes, this.#shown);
    if (tooLarge) return Promise.reject(tooLarge);
    const overPayload = this.#overPayload(frameBytes(frame));
    // (the direct link, a WebSocket, sends large arrays beside the frame; NATS one message per frame)
    if (overPayload) return this.#viaDirect(frame, options, overPayload);
    frame = inlineFrame(frame);
    let hdrs = this.#plainHeaders;
    if (options?.timeoutMs !== undefined) {
      hdrs = natsHeaders();
      if (this.#token !== undefined) hdrs.set(H_TOKEN, this.#token);
      hdrs.set(H_TIMEOUT, String(Math.max(1, Math.ceil(options.timeoutMs))));
    }
    return this.#send(frame, hdrs, options, false);
  }

  #send(
    frame: Uint8Array,
    hdrs: MsgHdrs | undefined,
    options: RequestOptions | undefined,
    audit: boolean,
    to?: string,
  ) {
    return new Promise<Uint8Array>((resolve, reject) => {
      const id = ++this.#nextId;
      const pending: NatsPending = { resolve, reject, cleanup: undefined, sentAt: performance.now(), misses: 0, audit };
      let subject = to ?? this.#target.subject;
      if (this.#streams !== undefined && !audit) {
        // a stream's pull goes to the member that runs it; a call's frame is kept in case it opens one
        const route = this.#streams.memberFor(frame);
        if (route !== undefined) {
          subject = nodeSubject(route.member);
          (pending as { routed?: string }).routed = route.cid;
        } else (pending as { frame?: Uint8Array }).frame = frame;
      }
      pending.cleanup = armRequest(pending, options, this.#shown, () => this.#pending.delete(id));
      if (options?.signal?.aborted) return; // rejected by armRequest, never sent
      this.#pending.set(id, pending);
      try {
        this.#nc.publish(subject, frame, { reply: `${this.#inbox}.${id}`, headers: hdrs });
      } catch (cause) {
        this.#settle(id)?.reject(this.#publishFailure(cause, frame.byteLength));
        return;
      }
      if (this.#audit === undefined && !audit) {
        this.#audit = backgroundInterval(() => this.#runAudit(), AUDIT_EVERY_MS);
      }
    });
  }

  /** The node's direct link (`undefined`: it has none), asked for once and kept while it works. */
  #direct(): Promise<TransportConnection | undefined> {
    if (this.#directConn === undefined) {
      const p: Promise<TransportConnection | undefined> = this.#askDirect(undefined, () => {
        if (this.#directConn === p) this.#directConn = undefined;
      });
      this.#directConn = p;
    }
    return this.#directConn;
  }

  /**
   * The direct link the node on `subject` (default: this connection's) gives when asked, connected
   * (`undefined`: it has none); `gone` runs if asking fails or the link closes.
   */
  #askDirect(subject: string | undefined, gone: () => void): Promise<TransportConnection | undefined> {
    const hdrs = natsHeaders();
    hdrs.set(H_DIRECT, "1");
    if (this.#token !== undefined) hdrs.set(H_TOKEN, this.#token);
    const p = this.#send(new Uint8Array(0), hdrs, { timeoutMs: 10_000 }, true, subject).then(async (body) => {
      const url = new TextDecoder().decode(body);
      if (url === "") return undefined;
      const conn = await this.#directAt(url);
      conn.onClose(gone);
      return conn;
    });
    p.catch(gone);
    return p;
  }

  /** The direct link at `url` (a node's), connected once and kept while it works. */
  #directAt(url: string): Promise<TransportConnection> {
    let p = this.#directs.get(url);
    if (p === undefined) {
      const made = webSocketTransport.connect(url, { token: this.#token, maxFrameBytes: this.#maxFrameBytes });
      made.then((conn) => {
        conn.onClose(() => {
          if (this.#directs.get(url) === made) this.#directs.delete(url);
        });
      }, () => {
        if (this.#directs.get(url) === made) this.#directs.delete(url);
      });
      this.#directs.set(url, p = made);
    }
    return p;
  }

  /**
   * A parked reply, fetched from the node that parked it (`at`: its name, a member of the queue
   * group this connection calls), else from the node's direct link. Its direct endpoint is asked of
   * that node's own subject, as `#direct` asks this connection's: never taken from the reply, so a
   * peer cannot send this process, and its token, to an endpoint it chose.
   */
  async #fetchParked(id: string, at: string | undefined): Promise<Uint8Array> {
    if (at !== undefined && !isNatsNodeName(at)) throw badMember(at, this.#shown);
    const direct = at ? await this.#directOf(at) : await this.#direct();
    if (direct === undefined) throw this.#noDirect("reply");
    return await direct.request(fetchFrame(id));
  }

  /** Direct links of the queue group's members by name (see `#fetchParked`), the latest few. */
  readonly #memberDirects = new Map<string, Promise<TransportConnection | undefined>>();

  /** The direct link of node `member`, asked of its own subject once and kept while it works. */
  #directOf(member: string): Promise<TransportConnection | undefined> {
    let p = this.#memberDirects.get(member);
    if (p === undefined) {
      const made: Promise<TransportConnection | undefined> = this.#askDirect(nodeSubject(member), () => {
        if (this.#memberDirects.get(member) === made) this.#memberDirects.delete(member);
      });
      this.#memberDirects.set(member, p = made);
      // bounded: the oldest is asked again when next needed
      if (this.#memberDirects.size > MAX_MEMBER_DIRECTS) {
        this.#memberDirects.delete(this.#memberDirects.keys().next().value!);
      }
    }
    return p;
  }

  /** A request NATS cannot carry goes over the node's direct link, or fails with `tooLarge`. */
  async #viaDirect(frame: Uint8Array, options: RequestOptions | undefined, tooLarge: TransportError) {
    const direct = await this.#direct().catch(() => undefined);
    if (direct === undefined) throw tooLarge;
    return await direct.request(frame, options);
  }

  #noDirect(what: string): TransportError {
    return new TransportError(
      "too-large",
      `A ${what} from ${this.#shown} was too large for NATS and the node's direct link cannot be reached`,
      this.#shown,
    );
  }

  #overPayload(bytes: number): TransportError | undefined {
    const max = this.#nc.info?.max_payload;
    return max !== undefined && bytes + HEADER_ALLOWANCE > max
      ? overMaxPayload(bytes, max, this.#shown, "frame")
      : undefined;
  }

  #publishFailure(cause: unknown, bytes: number): TransportError {
    const max = this.#nc.info?.max_payload;
    if (max !== undefined && bytes + HEADER_ALLOWANCE > max) return overMaxPayload(bytes, max, this.#shown, "frame");
    if (this.#closed) return closedError(this.#shown);
    return new TransportError(
      "io",
      `Cannot send a frame to ${this.#shown} over NATS: ${cause instanceof Error ? cause.message : String(cause)}`,
      this.#shown,
      cause,
    );
  }

  #settle(id: number): NatsPending | undefined {
    const p = this.#pending.get(id);
    if (p === undefined) return undefined;
    this.#pending.delete(id);
    p.cleanup?.();
    if (this.#pending.size === 0) this.#stopAudit();
    return p;
  }

  #onReply(msg: Msg): void {
    const subject = msg.subject;
    const id = Number(subject.slice(subject.lastIndexOf(".") + 1));
    const h = msg.headers;
    if (h !== undefined && h.code === 503) return this.#noResponders(id);
    const p = this.#settle(id);
    if (p === undefined) return; // given up on (aborted, timed out, lost): a late reply
    this.#reached = true;
    const body = plainBytes(msg.data);
    if (p.routed !== undefined && (h?.has(H_ERROR) || endsStream(body))) this.#streams!.forget(p.routed);
    if (h === undefined) return p.resolve(body);
    if (h.has(H_AUTH)) return p.reject(authRefused(this.#shown, this.#token !== undefined));
    const member = h.get(H_MEMBER);
    if (member && !isNatsNodeName(member)) return p.reject(badMember(member, this.#shown));
    if (member && p.frame !== undefined) {
      // a call to a queue group opened a stream: it runs on `member`, where its pulls go
      const cid = callCid(p.frame);
      if (cid !== undefined) this.#streams!.opened(cid, member);
    }
    const parked = h.get(H_PARKED);
    if (parked) {
      // too large for NATS: the reply waits on the node that parked it, fetched over its direct link
      this.#fetchParked(parked, h.get(H_PARKED_AT) || undefined).then(p.resolve, p.reject);
      return;
    }
    if (h.has(H_ERROR)) return p.reject(decodeError(body));
    p.resolve(body);
  }

  /** Nobody serves the subject: the node is gone (or never came), for every request waiting on it. */
  #noResponders(id: number): void {
    const routed = this.#pending.get(id)?.routed;
    if (routed !== undefined) {
      // the member that ran a stream is gone; the queue group (and its other calls) may live on
      this.#streams!.forget(routed);
      this.#settle(id)?.reject(
        new TransportError(
          "closed",
          `The node running stream ${routed} of ${this.#shown} went away (NATS: no responders)`,
          this.#shown,
        ),
      );
      return;
    }
    if (!this.#pending.has(id)) return;
    const reached = this.#reached;
    this.#reached = false;
    const error = new TransportError(
      reached ? "closed" : "unreachable",
      `No node answers at ${this.#shown} (NATS: no responders on ${this.#target.subject}): ` +
        (reached ? "the node went away" : "the node is not running, or not connected to this NATS cluster"),
      this.#shown,
    );
    this.#fail(error, reached);
  }

  /** Rejects every waiting request with `error`; `dropped` tells the close listeners. */
  #fail(error: TransportError, dropped: boolean): void {
    const all = [...this.#pending.keys()];
    for (const id of all) this.#settle(id)?.reject(error);
    this.#stopAudit();
    if (dropped) this.#listeners.emit(error);
  }

  #stopAudit(): void {
    if (this.#audit !== undefined) clearInterval(this.#audit);
    this.#audit = undefined;
  }

  /** Asks the node which of the requests waiting longest it still works on; the others were lost. */
  #runAudit(): void {
    if (this.#auditing || this.#closed) return;
    const before = performance.now() - AUDIT_EVERY_MS;
    const ids: number[] = [];
    for (const [id, p] of this.#pending) {
      if (!p.audit && p.sentAt <= before) ids.push(id);
      if (ids.length >= AUDIT_BATCH) break;
    }
    if (ids.length === 0) return;
    this.#auditing = true;
    const hdrs = natsHeaders();
    hdrs.set(H_AUDIT, "1");
    if (this.#token !== undefined) hdrs.set(H_TOKEN, this.#token);
    const replies = ids.map((id) => `${this.#inbox}.${id}`);
    const asked = this.#target.broadcast === undefined
      ? this.#send(encode(replies), hdrs, { timeoutMs: 10 * AUDIT_EVERY_MS }, true).then((reply) => {
        const working = decode(reply);
        return Array.isArray(working) ? working : [];
      })
      : this.#auditAll(encode(replies), hdrs, ids.length);
    asked.then((working) => {
      const lost = new TransportError(
        "io",
        `A request to ${this.#shown} was lost in NATS: the node never got it, or its reply never came back ` +
          "(a NATS server between them went down)",
        this.#shown,
      );
      ids.forEach((id, i) => {
        const p = this.#pending.get(id);
        if (p === undefined) return;
        if (working[i] === true) p.misses = 0;
        else if (++p.misses >= 2) this.#settle(id)?.reject(lost);
      });
    }, () => {}).finally(() => (this.#auditing = false));
  }

  /**
   * An audit of calls sent to a queue group: every member is asked (the one that took a call is not
   * known), and a call is being worked on if any member says so. The audit ends as soon as every
   * call was claimed, else after {@linkcode AUDIT_COLLECT_MS} (a member that answers later counts as
   * not working on it this round; a call is given up only after two rounds).
   */
  #auditAll(body: Uint8Array, hdrs: MsgHdrs, n: number): Promise<boolean[]> {
    const working: boolean[] = new Array(n).fill(false);
    let unclaimed = n;
    let finish!: () => void;
    const done = new Promise<boolean[]>((resolve) => (finish = () => resolve(working)));
    const inbox = createInbox();
    const sub = this.#nc.subscribe(inbox, {
      callback: (_err, msg) => {
        try {
          const answer = decode(plainBytes(msg.data));
          if (!Array.isArray(answer)) return;
          for (let i = 0; i < n && i < answer.length; i++) {
            if (answer[i] === true && !working[i]) {
              working[i] = true;
              unclaimed--;
            }
          }
          if (unclaimed === 0) finish();
        } catch {
          // a malformed answer says nothing
        }
      },
    });
    try {
      this.#nc.publish(this.#target.broadcast!, body, { reply: inbox, headers: hdrs });
    } catch {
      sub.unsubscribe();
      return Promise.reject(new Error("audit not sent"));
    }
    const timer = setTimeout(finish, AUDIT_COLLECT_MS);
    return done.finally(() => {
      clearTimeout(timer);
      sub.unsubscribe();
    });
  }

  notify(frame: Uint8Array): void {
    if (this.#closed) return;
    frame = inlineFrame(frame);
    if (this.#streams !== undefined && this.#streams.size > 0) {
      const cancelled = cancelCid(frame);
      if (cancelled !== undefined) this.#streams.forget(cancelled);
    }
    if (frame.byteLength > this.#maxFrameBytes || this.#overPayload(frame.byteLength)) return;
    const hdrs = natsHeaders();
    hdrs.set(H_NOTIFY, this.#inbox);
    if (this.#token !== undefined) hdrs.set(H_TOKEN, this.#token);
    try {
      // to a queue group: every member hears it (a cancel is for the one that took the call)
      this.#nc.publish(this.#target.broadcast ?? this.#target.subject, frame, { headers: hdrs });
    } catch {
      // one-way: dropped when it cannot go
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (!this.#nc.isClosed()) {
      // the node ends what it still runs for this connection (its calls, cancelled)
      const hdrs = natsHeaders();
      hdrs.set(H_BYE, this.#inbox);
      if (this.#token !== undefined) hdrs.set(H_TOKEN, this.#token);
      try {
        this.#nc.publish(this.#target.broadcast ?? this.#target.subject, new Uint8Array(0), { headers: hdrs });
      } catch {
        // closing anyway
      }
    }
    this.#fail(closedError(this.#shown), true);
    this.#replies.unsubscribe();
    const direct = this.#directConn;
    this.#directConn = undefined;
    const directs = [...this.#directs.values()];
    this.#directs.clear();
    await direct?.then((c) => c?.close(), () => {});
    await Promise.all(directs.map((d) => d.then((c) => c.close(), () => {})));
    await this.#lease.release();
  }

  onClose(listener: (reason: TransportError) => void): () => void {
    return this.#listeners.add(listener);
  }
}

/**
 * The NATS transport (`nats://host:4222/<node>`): connecting takes a share of this process's NATS
 * client for those servers (one per set of servers, reconnecting by itself) and subscribes an
 * inbox for the replies.
 *
 * @example An unreachable NATS server is a TransportError naming the endpoint
 * ```ts
 * import { natsTransport } from "./transport.ts";
 * import { TransportError } from "../../core/errors.ts";
 * import { rejects } from "node:assert/strict";
 * await rejects(natsTransport.connect("nats://127.0.0.1:9/n1", { connectTimeoutMs: 2000 }), (e) =>
 *   e instanceof TransportError && e.reason === "unreachable" && e.message.includes("nats://127.0.0.1:9/n1"));
 * ```
 */
export const natsTransport: Transport = {
  name: "nats",
  async connect(endpoint: string, options: ConnectOptions = {}): Promise<TransportConnection> {
    const target = parseNatsEndpoint(endpoint);
    resolveMaxFrameBytes(options.maxFrameBytes);
    const lease = await acquireNats(target.servers, {
      connectTimeoutMs: options.connectTimeoutMs,
      purpose: endpoint,
    });
    try {
      return new NatsTransportConnection(endpoint, target, lease, options);
    } catch (e) {
      await lease.release();
      throw e;
    }
  },
};

/** How many queue-group members' direct links one connection keeps (see `#directOf`). */
const MAX_MEMBER_DIRECTS = 64;

/** A reply naming a member that no node can be named (a peer's, not a node's). */
function badMember(member: string, shown: string): ProtocolError {
  return new ProtocolError(
    `A reply from ${shown} names the node "${member.slice(0, 80)}", which no node can be named ` +
      "(letters, digits, _ and - only): refused",
  );
}
