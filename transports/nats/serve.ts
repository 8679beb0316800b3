/**
 * The node side of the NATS transport: serves a frame handler on the subject
 * `thinkagain.node.<name>` (see `transport.ts` for the headers), and, for ops registered on several
 * nodes, on a subject per op shared through a NATS queue group, so that NATS hands each call to one
 * of them.
 *
 * @module
 */
import {
  headers as natsHeaders,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  type Subscription,
} from "@nats-io/nats-core";
import { decode, encode, inlineFrame } from "../../core/codec.ts";
import { TransportError } from "../../core/errors.ts";
import { type TimeoutSignal, timeoutSignal } from "../../core/long_timer.ts";
import { encodeError, newConnectionId, replyTooLarge, tokenMatches } from "../_common.ts";
import { type FrameHandler, type PeerInfo, resolveMaxFrameBytes, type ServeFramesOptions } from "../transport.ts";
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
import { creditCid, opensStream } from "./_stream_routes.ts";
import type { ReplyParking } from "./parking.ts";
import { isNatsNodeName, natsEndpoint, nodeSubject, parseNatsServers, SUBJECT_PREFIX } from "./endpoint.ts";
import { acquireNats, type NatsLease, redactUrl } from "./pool.ts";
import { overMaxPayload, plainBytes } from "./transport.ts";

/** Options of {@linkcode serveNats}. */
export interface ServeNatsOptions extends ServeFramesOptions {
  /** The NATS server(s): `nats://host:4222` (seeds separated by commas). */
  nats: string;
  /** The node's name: its subject is `thinkagain.node.<name>`. */
  name: string;
  /** How long connecting to NATS may take, ms (default 10 s). */
  connectTimeoutMs?: number;
  /**
   * The node's direct endpoint (`http://host:port`, serving `parking.wrap(handler)`): frames too
   * large for NATS go there instead, and replies too large for NATS are parked for the caller to
   * fetch there.
   */
  direct?: string;
  /** Where replies too large for NATS wait for their caller (with `direct`). */
  parking?: ReplyParking;
}

/** A node served over NATS. */
export interface NatsServer {
  /** Its endpoint, `nats://…/<name>`. */
  readonly endpoint: string;
  /** The node's name. */
  readonly name: string;
  /** Its direct endpoint as others reach it (see {@linkcode reachableDirect}), if it has one. */
  readonly direct: string | undefined;
  /** The shared NATS client it uses (for announcements). */
  readonly lease: NatsLease;
  /**
   * Serves `subject` too, in a NATS queue group of the same name (each message to one member), and
   * hears `broadcast` (every member: cancels and audits), for names more than one node serves
   * (ops). Returns the function that stops both.
   */
  serveQueue(subject: string, broadcast: string): () => void;
  /** Stops serving: calls still running get a `TransportError("closed")` reply, later ones no responders. */
  close(): Promise<void>;
}

/**
 * The direct endpoint as others can reach it: a node listening on every address (`0.0.0.0`, `::`)
 * is reached at the address its NATS server sees it come from.
 *
 * @param direct The node's own URL (`http://0.0.0.0:7070`).
 * @param seenAs The node's address as its NATS server sees it (`client_ip`).
 * @returns The URL to announce.
 *
 * @example
 * ```ts
 * import { reachableDirect } from "./serve.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(reachableDirect("http://0.0.0.0:7070", "10.0.0.5"), "http://10.0.0.5:7070");
 * strictEqual(reachableDirect("http://[::]:7070", "fd00::5"), "http://[fd00::5]:7070");
 * strictEqual(reachableDirect("http://10.0.0.7:7070", "10.0.0.5"), "http://10.0.0.7:7070");
 * ```
 */
export function reachableDirect(direct: string, seenAs: string | undefined): string {
  let url: URL;
  try {
    url = new URL(direct);
  } catch {
    return direct;
  }
  if ((url.hostname !== "0.0.0.0" && url.hostname !== "[::]") || !seenAs) return direct;
  url.hostname = seenAs.includes(":") ? `[${seenAs}]` : seenAs;
  return url.toString().replace(/\/$/, "");
}

/** How long a node that starts waits for another of its name to answer, ms (none answers: free). */
export const NAME_CHECK_MS: number = 2_000;

/**
 * Refuses to serve a name another node serves on the cluster already: two nodes on one subject
 * would both take calls, and a service's state would be split between them. The name's subject is
 * asked (a direct-link request every node answers): an answer means the name is taken, NATS' "no
 * responders" (or no answer in time) that it is free.
 */
async function refuseTakenName(nc: NatsConnection, name: string, endpoint: string): Promise<void> {
  const hdrs = natsHeaders();
  hdrs.set(H_DIRECT, "1");
  let answered = false;
  try {
    await nc.request(nodeSubject(name), new Uint8Array(0), { timeout: NAME_CHECK_MS, headers: hdrs });
    answered = true;
  } catch {
    // no responders, or no answer in time: nobody serves the name
  }
  if (answered) {
    throw new TransportError(
      "refused",
      `Cannot serve node "${name}" over NATS: a node named ${name} already serves on this NATS cluster ` +
        `(${endpoint}); give this one another --name`,
      endpoint,
    );
  }
}

/** The most client connections (inboxes) a node remembers; past it the oldest is forgotten. */
const MAX_PEERS = 10_000;

interface Peer {
  readonly id: number;
  readonly abort: AbortController;
  /** The PeerInfo of its requests and of its one-way frames. */
  readonly request: PeerInfo;
  readonly oneWay: PeerInfo;
}

/**
 * Serves `handler` over NATS as the node `options.name`.
 *
 * @param handler Gets every frame, returns the reply.
 * @param options NATS servers, node name, token, frame limit.
 * @returns The served node.
 * @throws {TypeError} For a bad URL or a name NATS cannot carry; {@linkcode TransportError} when NATS is unreachable.
 *
 * @example A node with no NATS server to reach
 * ```ts
 * import { serveNats } from "./serve.ts";
 * import { rejects } from "node:assert/strict";
 * await rejects(serveNats((f) => f, { nats: "nats://127.0.0.1:9", name: "n1", connectTimeoutMs: 2000 }), (e: Error) =>
 *   e.name === "TransportError" && e.message.includes("nats://127.0.0.1:9"));
 * ```
 */
export async function serveNats(handler: FrameHandler, options: ServeNatsOptions): Promise<NatsServer> {
  const servers = parseNatsServers(options.nats, `Cannot serve node "${options.name}" over NATS`);
  if (!isNatsNodeName(options.name)) {
    throw new TypeError(
      `Cannot serve node "${options.name}" over NATS: its name must be letters, digits, _ and - (at most 128), ` +
        "to be a subject token",
    );
  }
  const maxFrameBytes = resolveMaxFrameBytes(options.maxFrameBytes);
  // as it is shown and announced: no password
  const endpoint = redactUrl(natsEndpoint(options.nats, options.name));
  const lease = await acquireNats(servers, { connectTimeoutMs: options.connectTimeoutMs, purpose: endpoint });
  const nc = lease.nc;
  try {
    await refuseTakenName(nc, options.name, endpoint);
  } catch (e) {
    await lease.release();
    throw e;
  }
  const token = options.token;
  // every request let in came with the token: the handler may ask whether it is one it knows (PeerInfo)
  const holdsToken = token === undefined ? undefined : (t: string) => tokenMatches(t, token);
  const peers = new Map<string, Peer>();
  /** Reply subjects of the requests being worked on (what an audit asks about). */
  const working = new Set<string>();
  let closed = false;
  const errorHeaders = natsHeaders();
  errorHeaders.set(H_ERROR, "1");

  const peerOf = (inbox: string): Peer => {
    let peer = peers.get(inbox);
    if (peer === undefined) {
      if (peers.size >= MAX_PEERS) {
        const [oldest] = peers.keys();
        peers.delete(oldest);
        forgetLastPeer();
      }
      const id = newConnectionId(), abort = new AbortController();
      peer = {
        id,
        abort,
        request: { transport: "nats", connectionId: id, oneWay: false, signal: abort.signal, holdsToken },
        oneWay: { transport: "nats", connectionId: id, oneWay: true, signal: abort.signal, holdsToken },
      };
      peers.set(inbox, peer);
    }
    return peer;
  };

  // The peer of the last request, by its inbox: a caller's requests come in runs, and their reply
  // subjects (`<inbox>.<id>`) share the inbox, so most find their peer without a substring made and
  // hashed as a Map key per request.
  let lastInbox = "";
  let lastPeer: Peer | undefined;
  const forgetLastPeer = (): void => {
    lastInbox = "";
    lastPeer = undefined;
  };
  const peerOfReply = (replyTo: string): Peer => {
    const n = lastInbox.length;
    if (
      lastPeer !== undefined && replyTo.charCodeAt(n) === 46 /* "." */ && replyTo.startsWith(lastInbox) &&
      replyTo.indexOf(".", n + 1) === -1
    ) {
      return lastPeer;
    }
    const inbox = replyTo.slice(0, replyTo.lastIndexOf("."));
    const peer = peerOf(inbox);
    lastInbox = inbox;
    lastPeer = peer;
    return peer;
  };

  const direct = options.direct === undefined ? undefined : reachableDirect(options.direct, nc.info?.client_ip);
  const parking = options.parking;
  const ownSubject = nodeSubject(options.name);
  const reply = (msg: Msg, body: Uint8Array, hdrs?: MsgHdrs): void => {
    body = inlineFrame(body); // one NATS message per frame: its large arrays in it
    // a stream opened by a call to an op's queue group: its pulls must come here, not to the group
    const member = msg.subject !== ownSubject && hdrs === undefined && opensStream(body);
    const max = nc.info?.max_payload;
    if (
      max !== undefined && body.byteLength + 256 > max && body.byteLength <= maxFrameBytes &&
      direct !== undefined && parking !== undefined
    ) {
      // too large for NATS: the caller fetches it over the direct link
      const id = parking.park(body);
      if (id !== undefined) {
        const parked = natsHeaders();
        parked.set(H_PARKED, id);
        // the caller may reach several nodes through one subject (a queue group): it fetches here,
        // over the direct link it asks of this node's own subject (never one a reply names)
        parked.set(H_PARKED_AT, options.name);
        body = new Uint8Array(0);
        hdrs = parked;
      }
    }
    if (body.byteLength > maxFrameBytes || (max !== undefined && body.byteLength + 256 > max)) {
      const e = body.byteLength > maxFrameBytes
        ? replyTooLarge(body.byteLength, maxFrameBytes)
        : overMaxPayload(body.byteLength, max!, endpoint, "reply");
      body = encodeError(e);
      hdrs = errorHeaders;
    } else if (member) {
      hdrs ??= natsHeaders();
      hdrs.set(H_MEMBER, options.name);
    }
    try {
      msg.respond(body, hdrs === undefined ? undefined : { headers: hdrs });
    } catch {
      // the connection is closing: the caller's audit or close tells it
    }
  };

  const onMessage = (msg: Msg): void => {
    if (closed) return;
    const h = msg.headers;
    if (token !== undefined && !tokenMatches(h?.get(H_TOKEN) || undefined, token)) {
      if (msg.reply) {
        const auth = natsHeaders();
        auth.set(H_AUTH, "1");
        reply(msg, new Uint8Array(0), auth);
      }
      return;
    }
    if (h !== undefined) {
      const bye = h.get(H_BYE);
      if (bye) {
        peers.get(bye)?.abort.abort(new TransportError("closed", "The caller closed its connection", endpoint));
        peers.delete(bye);
        forgetLastPeer();
        return;
      }
      if (h.has(H_DIRECT) && msg.reply) {
        return reply(msg, new TextEncoder().encode(direct ?? ""));
      }
      if (h.has(H_AUDIT) && msg.reply) {
        let asked: unknown;
        try {
          asked = decode(plainBytes(msg.data));
        } catch (e) {
          return reply(msg, encodeError(e), errorHeaders);
        }
        const list = Array.isArray(asked) ? asked : [];
        return reply(msg, encode(list.map((s) => typeof s === "string" && working.has(s))));
      }
    }
    const frame = plainBytes(msg.data);
    const notifyFrom = h?.get(H_NOTIFY);
    if (notifyFrom || !msg.reply) {
      if (frame.byteLength > maxFrameBytes) return;
      const peer = peerOf(notifyFrom || "");
      Promise.resolve().then(() => handler(frame, peer.oneWay)).catch(() => {});
      return;
    }
    const replyTo = msg.reply;
    if (msg.subject !== ownSubject) {
      // a stream's pull sent to an op's queue group may land on a member without the stream:
      // an error its consumer sees, never the stream's silent end
      const cid = creditCid(frame);
      if (cid !== undefined) {
        return reply(
          msg,
          encodeError(
            new TransportError(
              "closed",
              `Cannot pull the next chunk of stream ${cid} through ${msg.subject}: the stream runs on one ` +
                `member of the op's queue group, and node "${options.name}" does not run it`,
              endpoint,
            ),
          ),
          errorHeaders,
        );
      }
    }
    if (frame.byteLength > maxFrameBytes) {
      return reply(
        msg,
        encodeError(
          new TransportError(
            "too-large",
            `Frame of ${frame.byteLength} bytes refused by ${endpoint}: the limit is ${maxFrameBytes} bytes`,
            endpoint,
          ),
        ),
        errorHeaders,
      );
    }
    const peer = peerOfReply(replyTo);
    let info = peer.request;
    let deadline: TimeoutSignal | undefined;
    const timeout = h?.get(H_TIMEOUT);
    if (timeout) {
      // the caller's deadline: work nobody waits for any more stops (any length: past 2^31 ms,
      // AbortSignal.timeout aborts at once on Deno)
      const ms = Number(timeout);
      if (Number.isFinite(ms) && ms > 0) {
        deadline = timeoutSignal(ms);
        info = { ...info, signal: AbortSignal.any([peer.abort.signal, deadline.signal]) };
      }
    }
    working.add(replyTo);
    let result: ReturnType<FrameHandler>;
    try {
      result = handler(frame, info);
    } catch (e) {
      deadline?.cancel();
      working.delete(replyTo);
      return reply(msg, encodeError(e), errorHeaders);
    }
    if (result instanceof Uint8Array || result === undefined) {
      deadline?.cancel();
      working.delete(replyTo);
      return reply(msg, result ?? new Uint8Array(0));
    }
    result.then((out) => {
      deadline?.cancel();
      if (!working.delete(replyTo)) return; // closed meanwhile: answered already
      reply(msg, out ?? new Uint8Array(0));
    }, (e) => {
      deadline?.cancel();
      if (!working.delete(replyTo)) return;
      reply(msg, encodeError(e), errorHeaders);
    });
  };

  const subs: Subscription[] = [];
  const subscribe = (subject: string, queue?: string): Subscription => {
    const sub = nc.subscribe(subject, { queue, callback: (_err, msg) => onMessage(msg) });
    subs.push(sub);
    return sub;
  };
  subscribe(ownSubject);
  // the subscription is known to the server before anyone is told the node is there
  await nc.flush();

  return {
    endpoint,
    name: options.name,
    direct,
    lease,
    serveQueue(subject: string, broadcast: string): () => void {
      for (const s of [subject, broadcast]) {
        if (!s.startsWith(`${SUBJECT_PREFIX}.`)) throw new TypeError(`Not a thinkagain subject: ${s}`);
      }
      const queue = subscribe(subject, subject);
      const all = subscribe(broadcast);
      return () => {
        queue.unsubscribe();
        all.unsubscribe();
      };
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      for (const s of subs) s.unsubscribe();
      // the calls still running: their callers hear now that the node went away
      const gone = encodeError(new TransportError("closed", `Node at ${endpoint} stopped serving`, endpoint));
      for (const replyTo of working) {
        try {
          nc.publish(replyTo, gone, { headers: errorHeaders });
        } catch {
          // closing anyway
        }
      }
      working.clear();
      for (const p of peers.values()) p.abort.abort(new TransportError("closed", "The node stopped serving", endpoint));
      peers.clear();
      forgetLastPeer();
      await nc.flush().catch(() => {});
      await lease.release();
    },
  };
}
