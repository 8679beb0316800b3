/**
 * The node's server side: one hono app serving `POST /rpc` (HTTP transport) and `GET /ws`
 * (WebSocket transport) on one port, in front of one {@linkcode FrameHandler}. It is a Web-standard
 * `fetch` app; the per-runtime `serve` in `adapters/` puts it on a socket.
 *
 * @module
 */
import { Hono } from "hono";
import { cors } from "hono/cors";
import type { UpgradeWebSocket, WSContext, WSEvents } from "hono/ws";
import { TransportError } from "../core/errors.ts";
import { ProtocolError } from "../core/errors.ts";
import { AuthError } from "../core/errors.ts";
import {
  encodeError,
  fromBase64Url,
  newConnectionId,
  readAtMost,
  tokenMatches,
  WS_PROTOCOL,
  WS_TOKEN_PREFIX,
} from "./_common.ts";
import { type FrameHandler, type PeerInfo, resolveMaxFrameBytes, type ServeFramesOptions } from "./transport.ts";
import {
  forEachInBatch,
  FRAME_HEADER_BYTES,
  framed,
  KIND_BATCH,
  KIND_ERROR,
  KIND_NOTIFY,
  KIND_PART,
  KIND_PART_END,
  KIND_REPLY,
  KIND_REQUEST,
  KIND_SEGMENTED,
  MAX_PIECED_MESSAGE_BYTES,
  Outbox,
  PART_ACK,
  PartAssembler,
  readFrameId,
  segmentedMessages,
  SegmentReader,
} from "./ws_framing.ts";
import { SendQueue, SLOW_READER_CLOSE_CODE } from "./ws_send_queue.ts";
import { nextTurn } from "../core/_runtime.ts";
import { LateSignals } from "./_late_signal.ts";
import { frameBytes, inlineFrame, offerHeadroom } from "../core/codec.ts";

/** Options of {@linkcode createNodeApp}. */
export interface NodeAppOptions extends ServeFramesOptions {
  /**
   * The runtime's hono `upgradeWebSocket` (from `adapters/<runtime>/`). Without it the app serves
   * HTTP only and `/ws` answers 426.
   */
  // deno-lint-ignore no-explicit-any
  upgradeWebSocket?: UpgradeWebSocket<any, any>;
  /**
   * The address (IP) a request came from, as the runtime tells it (from `adapters/<runtime>/`;
   * `env` is what the adapter passed to `app.fetch`). An HTTP request that does not name its caller
   * (`x-thinkagain-caller`) then waits at resident instances in the queue of its address, not in
   * one queue shared by every unnamed caller.
   */
  peerAddress?: (request: Request, env: unknown) => string | undefined;
  /**
   * Browser origins (`https://app.example`, as a page's `Origin` header says it) allowed to reach
   * this node; `"*"` allows every page. Default none: a request or WebSocket upgrade that carries an
   * `Origin` header is a browser page's, and is refused 403, so a page the user happens to visit
   * cannot drive a node on their machine. Programs (drivers, other nodes) send no `Origin`.
   */
  allowOrigins?: readonly string[];
  /**
   * Host names this node answers to, besides IP addresses, `localhost` and `listenHost`; `"*"`
   * answers to any. A request whose `Host` header names another host is refused 403: that is how a
   * page reaches a loopback node by DNS rebinding (its own name, re-pointed at 127.0.0.1).
   */
  allowHosts?: readonly string[];
  /** The host name or address the node listens on (answered to, like `localhost`). */
  listenHost?: string;
  /**
   * Most bytes of replies that may wait for one WebSocket client that reads slowly (default: twice
   * `maxFrameBytes`, at least 16 MiB); past it the connection is closed (code 1013) and the
   * client's calls on it fail with a transport error. Replies are never dropped. A client with more
   * than 1 MiB of replies unsent has no more of its requests served until they drain below 256 KiB
   * (its requests wait, in order); at most this many bytes of them, and 10,000 messages, wait: past
   * that the connection is closed the same way (code 1013, "client reads too slowly").
   */
  maxSendQueueBytes?: number;
  /**
   * What `GET /healthz` and `GET /livez` answer (a `NodeServer`'s `health()`), as JSON. `/healthz`
   * is the readiness probe: 200 while the status is `"ready"`, 503 while the node loads its
   * resident services or drains, so an orchestrator sends work only to a node that takes it.
   * `/livez` is the liveness probe: 200 whenever the node answers at all (a node loading a model or
   * draining its calls is alive, and must not be restarted for it). Neither needs the token: they
   * show only the status, the node's name and the protocol version. Without this option neither is
   * served (404).
   */
  health?: () => NodeHealth;
}

/**
 * Whether a node takes work: `"ready"`; `"loading"` while it constructs its resident services
 * (`thinkagain serve --start`); `"draining"` once it shuts down (it takes no new calls).
 */
export type NodeStatus = "ready" | "loading" | "draining";

/**
 * What a node's `GET /healthz` says. Only what a probe needs and anyone who can reach the port may
 * see: never the token, its instances, its callers or its session.
 */
export interface NodeHealth {
  /** `"ready"`: answered 200; anything else 503. */
  readonly status: NodeStatus;
  /** The node's name. */
  readonly name: string;
  /** The protocol version it speaks. */
  readonly protocol: number;
}

const CBOR = "application/cbor";
/** How long an HTTP call runs at most before its client leaving stops it (see `_late_signal.ts`). */
const LINK_CLIENT_SIGNAL_MS = 100;
/** What an `x-thinkagain-caller` header may hold (see `PeerInfo.caller`). */
const CALLER_NAME = /^[\w.:-]{1,64}$/;

/**
 * Builds the node's hono app: `POST /rpc` takes one CBOR frame and answers one, `GET /ws` upgrades
 * to the multiplexed WebSocket framing of `transports/ws_framing.ts`. With a token, a request or
 * upgrade without `Authorization: Bearer <token>` (or, for WebSocket, the token subprotocol) is
 * answered 401 before the handler sees anything.
 *
 * @param handler Gets every frame from every transport.
 * @param options Token, frame size limit, and the runtime's `upgradeWebSocket`.
 * @returns The hono app (use `app.fetch`, or an adapter's `serve`).
 *
 * @example Calling the app's fetch directly
 * ```ts
 * import { createNodeApp } from "./server.ts";
 * import { strictEqual } from "node:assert/strict";
 * const app = createNodeApp((frame) => frame, { token: "t" });
 * const body = new Uint8Array([0xa0]);
 * const refused = await app.fetch(new Request("http://n/rpc", { method: "POST", body }));
 * strictEqual(refused.status, 401);
 * const ok = await app.fetch(new Request("http://n/rpc", {
 *   method: "POST", body, headers: { authorization: "Bearer t", "content-type": "application/cbor" },
 * }));
 * strictEqual(ok.status, 200);
 * ```
 */
export function createNodeApp(handler: FrameHandler, options: NodeAppOptions = {}): Hono {
  if (typeof handler !== "function") throw new TypeError("createNodeApp needs a frame handler function");
  const token = options.token;
  const maxFrameBytes = resolveMaxFrameBytes(options.maxFrameBytes);
  const maxSendQueueBytes = options.maxSendQueueBytes ?? Math.max(2 * maxFrameBytes, 16 * 1024 * 1024);
  if (!(Number.isSafeInteger(maxSendQueueBytes) && maxSendQueueBytes > 0)) {
    throw new RangeError(`maxSendQueueBytes must be a positive integer, found ${options.maxSendQueueBytes}`);
  }
  const app = new Hono();
  const clientGone = new LateSignals(LINK_CLIENT_SIGNAL_MS);
  const peerAddress = options.peerAddress;
  const peerAddressOf = (request: Request, env: unknown): string | undefined => {
    if (peerAddress === undefined) return undefined;
    try {
      const a = peerAddress(request, env);
      return typeof a === "string" && a.length > 0 && a.length <= 64 ? a : undefined;
    } catch {
      return undefined; // (a request the runtime has no address for)
    }
  };
  const origins = new Set(options.allowOrigins ?? []);
  const hosts = new Set(
    [...(options.allowHosts ?? []), ...(options.listenHost ? [options.listenHost] : [])].map(hostName),
  );

  // Browser pages first: neither a page's origin nor a rebound host name gets further than this.
  app.use("*", async (c, next) => {
    const origin = c.req.header("origin");
    if (origin !== undefined && !origins.has("*") && !origins.has(origin)) {
      return forbidden(
        `Requests from the browser origin ${JSON.stringify(origin.slice(0, 200))} are refused: allow that page ` +
          "with allowOrigins (thinkagain serve --allow-origin <origin>)",
      );
    }
    const host = c.req.header("host");
    if (host !== undefined && !hosts.has("*") && !hostAllowed(hostName(host), hosts)) {
      return forbidden(
        `Requests for the host ${JSON.stringify(host.slice(0, 200))} are refused: this node answers to IP ` +
          "addresses, localhost and the host it listens on; allow that name with allowHosts " +
          "(thinkagain serve --allow-host <name>)",
      );
    }
    await next();
  });
  if (origins.size > 0) {
    // an allowed page may POST /rpc as well as open /ws: its browser asks first (CORS preflight)
    app.use(
      "/rpc",
      cors({
        origin: (o) => (origins.has("*") || origins.has(o) ? o : null),
        allowMethods: ["POST"],
        allowHeaders: ["authorization", "content-type", "x-thinkagain-notify"],
        exposeHeaders: ["x-thinkagain-error"],
      }),
    );
  }

  const health = options.health;
  if (health !== undefined) {
    // no token: a kubelet probe carries none, and the answer holds nothing a caller could use
    const answer = (h: NodeHealth, ok: boolean) =>
      new Response(JSON.stringify(h), {
        status: ok ? 200 : 503,
        headers: { "content-type": "application/json", "cache-control": "no-store" },
      });
    app.get("/healthz", () => {
      const h = health();
      return answer(h, h.status === "ready");
    });
    app.get("/livez", () => answer(health(), true));
  }

  app.post("/rpc", async (c) => {
    if (!tokenMatches(bearer(c.req.header("authorization")), token)) return unauthorized();
    const type = c.req.header("content-type");
    if (type !== CBOR) {
      return errorResponse(415, new ProtocolError(`POST /rpc needs content-type ${CBOR}, found ${type ?? "none"}`));
    }
    const declared = c.req.header("content-length");
    if (declared !== undefined && Number(declared) > maxFrameBytes) {
      return errorResponse(413, tooLarge(Number(declared), maxFrameBytes));
    }
    let frame: Uint8Array;
    try {
      // With a declared length within the limit the runtime's own arrayBuffer() is the fast path;
      // without one (chunked), read the stream and stop at the limit.
      frame = declared !== undefined
        ? new Uint8Array(await c.req.raw.arrayBuffer())
        : await readLimited(c.req.raw, maxFrameBytes);
      if (frame.byteLength > maxFrameBytes) throw tooLarge(frame.byteLength, maxFrameBytes);
    } catch (err) {
      return errorResponse(err instanceof TransportError && err.reason === "too-large" ? 413 : 400, err);
    }
    const oneWay = c.req.header("x-thinkagain-notify") === "1";
    // who sends it, as the client names itself (residents serve callers in turn); anything but a
    // short plain name counts as no name
    const named = c.req.header("x-thinkagain-caller");
    const caller = named !== undefined && CALLER_NAME.test(named) ? named : undefined;
    // one that names none takes turns by the address it came from, where the adapter tells it
    const address = caller === undefined ? peerAddressOf(c.req.raw, c.env) : undefined;
    // a reply nobody waits for any more (the client went away) stops its call: the request's signal,
    // linked only once the call has run a while (_late_signal.ts)
    const gone = oneWay ? undefined : clientGone.open(c.req.raw);
    const peer: PeerInfo = gone === undefined
      ? { transport: "http", connectionId: newConnectionId(), oneWay, caller, address }
      : { transport: "http", connectionId: newConnectionId(), oneWay, signal: gone.signal, caller, address };
    if (oneWay) {
      // Run it, but do not hold the response on it: one-way means the sender does not wait.
      Promise.resolve().then(() => handler(frame, peer)).catch(() => {});
      return new Response(null, { status: 202 });
    }
    let reply: Uint8Array | undefined;
    try {
      reply = await handler(frame, peer);
    } catch (err) {
      // a frame the protocol rejects is the client's fault (400); anything else is the node's (500)
      return errorResponse(err instanceof ProtocolError ? 400 : 500, err);
    } finally {
      clientGone.answered(gone!);
    }
    if (!(reply instanceof Uint8Array)) {
      return errorResponse(
        500,
        new TypeError(`The node's frame handler returned ${typeof reply}, expected a Uint8Array`),
      );
    }
    // one body per reply: large arrays are written into it (a WebSocket sends them beside it)
    const whole = inlineFrame(reply);
    if (whole.byteLength > maxFrameBytes) return errorResponse(500, tooLarge(whole.byteLength, maxFrameBytes));
    return new Response(whole as Uint8Array<ArrayBuffer>, { status: 200, headers: { "content-type": CBOR } });
  });

  const upgrade = options.upgradeWebSocket;
  app.get("/ws", async (c, next) => {
    const offered = c.req.header("sec-websocket-protocol");
    const presented = bearer(c.req.header("authorization")) ?? tokenFromProtocols(offered);
    if (!tokenMatches(presented, token)) return unauthorized();
    if (!upgrade) return c.text("this node serves no WebSocket", 426);
    if (c.req.header("upgrade")?.toLowerCase() !== "websocket") return c.text("expected a WebSocket upgrade", 426);
    if (!offered?.split(",").some((p) => p.trim() === WS_PROTOCOL)) {
      return c.text(`expected the ${WS_PROTOCOL} subprotocol`, 400);
    }
    return await upgrade(() => wsEvents(handler, maxFrameBytes, maxSendQueueBytes))(c, next);
  });
  return app;
}

function bearer(header: string | undefined): string | undefined {
  if (!header || !header.startsWith("Bearer ")) return undefined;
  return header.slice(7);
}

function tokenFromProtocols(header: string | undefined): string | undefined {
  if (!header) return undefined;
  for (const raw of header.split(",")) {
    const p = raw.trim();
    if (p.startsWith(WS_TOKEN_PREFIX)) return fromBase64Url(p.slice(WS_TOKEN_PREFIX.length));
  }
  return undefined;
}

/** The host name of a `Host` header (or a configured name): lower case, no port, no trailing dot. */
function hostName(host: string): string {
  let h = host.trim().toLowerCase();
  if (h.startsWith("[")) return h.slice(0, h.indexOf("]") + 1 || undefined);
  const colon = h.indexOf(":");
  if (colon >= 0 && colon === h.lastIndexOf(":")) h = h.slice(0, colon);
  return h.endsWith(".") ? h.slice(0, -1) : h;
}

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/**
 * Whether this node answers to `name`: an IP address always (DNS rebinding needs a name: a page
 * whose address is the node's own is the node's own page), `localhost`, and the configured names.
 */
function hostAllowed(name: string, allowed: ReadonlySet<string>): boolean {
  return IPV4.test(name) || name.startsWith("[") || name.includes(":") || name === "localhost" || allowed.has(name);
}

function forbidden(message: string): Response {
  return errorResponse(403, new AuthError(message));
}

function unauthorized(): Response {
  // Says nothing about the expected token, and never echoes the presented one.
  return errorResponse(401, new AuthError("This node requires a valid bearer token"));
}

function errorResponse(status: number, err: unknown): Response {
  return new Response(encodeError(err) as Uint8Array<ArrayBuffer>, {
    status,
    headers: { "content-type": CBOR, "x-thinkagain-error": "1" },
  });
}

function tooLarge(bytes: number, limit: number): TransportError {
  return new TransportError("too-large", `Node refused a frame of ${bytes} bytes: its limit is ${limit} bytes`);
}

/** Reads a request body, failing as soon as it passes `limit` bytes (never buffering more). */
function readLimited(req: Request, limit: number): Promise<Uint8Array> {
  if (!req.body) return Promise.resolve(new Uint8Array(0));
  return readAtMost(req.body, limit, (total) => tooLarge(total, limit));
}

/** A binary WebSocket message as bytes (runtimes hand over ArrayBuffer, a view, or a Buffer). */
function toBytes(data: unknown): Uint8Array | undefined {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return undefined;
}

/** How long one connection's messages may be served in one turn before others get theirs, ms. */
const SLICE_MS = 2;
/**
 * A connection with more bytes of replies unsent than this (in the runtime's socket buffer and its
 * send queue) has no more of its messages served until it drains to {@linkcode RESUME_BYTES}. 1 MiB
 * is one full batch of replies (the Outbox's) and ~8 ms of a 1 Gbit/s link: a client that reads
 * still finds the kernel's buffers full while the node waits, and a flood that never reads costs the
 * node 1 MiB of replies, not the 32 MiB of 2,000 calls of 16 KiB.
 */
const PAUSE_BYTES = 1024 * 1024;
/** Unsent bytes below which a paused connection's messages are served again. */
const RESUME_BYTES = 256 * 1024;
/**
 * Most messages of a paused connection that wait (besides `maxSendQueueBytes` of them): as many
 * as the calls a connection may have in flight by default (`--max-calls-per-connection`), so a
 * client within that bound that reads slowly is never closed for it.
 */
const MAX_HELD_MESSAGES = 10_000;
/**
 * Where the runtime reports WebSocket pongs (Bun, `adapters/bun/serve.ts`), the node pings a
 * connection each time it has handed the runtime this part of the connection's unread window in
 * replies (256 KiB at first, 16 MiB once the window is at its most), the ping carrying that count;
 * the pong, which comes only once the client has read everything before the ping, says how much of
 * it the client has read. A client that has shown it reads is asked less often as its window grows
 * (a ping per 256 KiB would add a message each way to every 1 MiB reply).
 */
const PINGS_PER_WINDOW = 4;
/**
 * Bytes of replies a connection may have been sent and not shown to have read (by a pong), at
 * first: a connection whose client never reads gets this much, not the ~5 MiB that the kernel's
 * socket buffers take before any runtime buffer fills (issue 11's soak: each round's new
 * never-reading connections). Each pong doubles it, up to {@linkcode MAX_UNREAD_BYTES}, so a client
 * that reads soon has as much in flight as its link needs.
 */
const FIRST_UNREAD_BYTES = PAUSE_BYTES;
/** The most a connection's unread window grows to (see {@linkcode FIRST_UNREAD_BYTES}). */
const MAX_UNREAD_BYTES = 64 * 1024 * 1024;
const EMPTY = new Uint8Array(0);
let turn = 0;
let turnArmed = false;
const endTurn = (): void => {
  turnArmed = false;
  turn++;
};
/**
 * From now on the end of this turn is marked (a timer fires after its I/O), shared by every
 * connection so that a turn costs one timer, not one per connection. `turn` also moves on now: a
 * connection's next message counts as its first since the marking began.
 */
function markTurn(): void {
  turnArmed = true;
  turn++;
  nextTurn(endTurn);
}

// Every connection's waiting messages share one budget per turn (SLICE_MS, from the turn's first
// message served): with a budget per connection, a turn with several connections' bursts lasted
// several budgets, and the replies their calls made after them (issue 11's soak: turns of 10-20 ms
// while new never-reading connections filled the kernel's buffers). Connections whose messages
// wait take turns in order: one that used up the budget goes to the back.
// A turn's end is marked (a timer) only once its budget is half spent: until then every message is
// served whichever turn it came in (a budget with time left serves it in either case), so a
// sequential call, alone in its turn, costs no timer (a timer per message cost a frame echo ~0.3 µs
// per call on Bun, ~1 µs on Deno; BENCHMARKS.md, Transports, tenth session). A budget found
// spent with no mark may be an earlier turn's: a budget of its own starts then, and the turn is
// marked (in one turn, that serves at most one message more than a mark from the start would, after
// a message that alone ran past half the budget).
let budgetTurn = -1;
let budgetStart = 0;
/** Whether this turn's budget has time left (starting it, at the turn's first look). */
function budgetLeft(): boolean {
  const now = performance.now();
  if (turn !== budgetTurn) {
    // a marked turn ended since the budget began (or none began yet)
    budgetTurn = turn;
    budgetStart = now;
    return true;
  }
  const spent = now - budgetStart;
  if (turnArmed) return spent <= SLICE_MS;
  if (spent <= SLICE_MS / 2) return true;
  markTurn();
  budgetTurn = turn;
  if (spent > SLICE_MS) budgetStart = now;
  return true;
}
/** Connections with messages waiting (each's way to serve them), in the order they are served. */
let queued: (() => void)[] = [];
let queuedHead = 0;
let queueArmed = false;
/** Puts a connection at the back of the queue; its `serve` is called in a later turn. */
function enqueue(serve: () => void): void {
  queued.push(serve);
  armQueue();
}
function armQueue(): void {
  if (queueArmed) return;
  queueArmed = true;
  nextTurn(() => {
    queueArmed = false;
    serveNext();
  });
}
/** The next connection in the queue serves its messages, if the budget has time left (else next turn). */
function serveNext(): void {
  if (queuedHead >= queued.length) {
    queued = [];
    queuedHead = 0;
    return;
  }
  if (!budgetLeft()) return armQueue();
  const serve = queued[queuedHead]!;
  queued[queuedHead++] = noop;
  serve();
}
const noop = (): void => {};

/**
 * A connection's events as the node's app gives them to the runtime's adapter, besides hono's:
 * `onDrain` for a runtime whose socket pushes back (Bun's `drain`), `onPong` for one that reports
 * pongs, which it says by setting `deliversPongs` before the connection's first message
 * (`adapters/bun/serve.ts` does both).
 */
export interface WsAppEvents extends WSEvents {
  /** The socket can take more (Bun's `drain`). */
  onDrain(): void;
  /** A pong arrived, with its payload. */
  onPong(data: Uint8Array): void;
  /** Set by an adapter whose runtime calls `onPong` for every pong. */
  deliversPongs?: boolean;
}

/** Bun's server socket's ping: -1 queued over its limit, 0 dropped, else the bytes sent. */
interface PingingSocket {
  ping(data: Uint8Array): number;
}

/** The events of one WebSocket connection: frames in, handler, replies out (see {@linkcode WsAppEvents}). */
function wsEvents(
  handler: FrameHandler,
  maxFrameBytes: number,
  maxSendQueueBytes: number,
): WsAppEvents {
  const connectionId = newConnectionId();
  // aborted when the connection closes: its calls still running have nobody to answer any more
  const closed = new AbortController();
  const peer: PeerInfo = { transport: "websocket", connectionId, oneWay: false, signal: closed.signal };
  const notifyPeer: PeerInfo = { transport: "websocket", connectionId, oneWay: true, signal: closed.signal };
  let open = true;
  // replies written in the same turn leave in one message
  let outbox: Outbox | undefined;
  // what leaves the socket, in order, never dropped (a slow client's replies wait, bounded)
  let out: SendQueue | undefined;
  const write = (ws: WSContext, m: Uint8Array<ArrayBuffer>): void => {
    if (!open) return;
    (out ??= new SendQueue(ws, maxSendQueueBytes)).send(m);
    if (out.closed) open = false;
    written += m.byteLength;
    if (written - pinged >= window / PINGS_PER_WINDOW) ping();
  };
  // a large array beside its frame's head: written in the next turn (SendQueue.sendNextTurn), and
  // the ping behind it sent then (setImmediate runs in order: the queue's write comes first)
  const writeNextTurn = (ws: WSContext, m: Uint8Array<ArrayBuffer>): void => {
    if (!open) return;
    (out ??= new SendQueue(ws, maxSendQueueBytes)).sendNextTurn(m);
    if (out.closed) open = false;
    written += m.byteLength;
    if (written - pinged >= window / PINGS_PER_WINDOW) nextTurn(ping);
  };
  // Replies the client has been sent but not shown to have read (where the runtime reports pongs):
  // bytes given to write(), those handed to the runtime at the last ping, those the client's last
  // pong acknowledged, and how many may be unread before its messages wait (as when backed up).
  let written = 0;
  let pinged = 0;
  let acked = 0;
  let window = FIRST_UNREAD_BYTES;
  const ping = (): void => {
    const raw = out?.socket.raw as Partial<PingingSocket> | undefined;
    if (!events.deliversPongs || typeof raw?.ping !== "function" || out === undefined) return;
    const handed = written - out.queuedBytes; // (what waits in the queue goes after the ping)
    if (handed <= pinged) return;
    const payload = new Uint8Array(8);
    new DataView(payload.buffer).setFloat64(0, handed);
    try {
      if (raw.ping(payload) === 0) return; // dropped: the next write or drain tries again
    } catch {
      return; // closing
    }
    pinged = handed;
  };
  const unreadBehind = (): boolean => events.deliversPongs === true && written - acked > window;
  // a client may cut a message into pieces (see KIND_PART); they are joined here, bounded
  let parts: PartAssembler | undefined;
  // Many messages read at once (a flood, a pipelined burst) are served SLICE_MS at a time: past
  // that in one turn, the connection's next messages wait for the next turn, so the event loop reads
  // the other connections' frames in between instead of after the whole burst (issue 11's soak: one
  // client's 2,000 calls held everybody else's for hundreds of ms). At most maxSendQueueBytes wait;
  // past that they are served at once, in order, as without the slices.
  // A client whose replies back up (more than PAUSE_BYTES unsent) has no more of its messages
  // served until they drain to RESUME_BYTES: its messages wait here instead of making more replies
  // (a client that never reads made 32 MiB of replies per 2,000 calls). What waits then is bounded
  // (MAX_HELD_MESSAGES, maxSendQueueBytes); past that the connection is closed, 1013.
  let sliceTurn = -1;
  let later: Uint8Array[] = [];
  let laterHead = 0;
  let laterBytes = 0;
  let resumeArmed = false;
  let paused = false;
  const backedUp = (): boolean => out !== undefined && (out.unsentBytes > PAUSE_BYTES || unreadBehind());
  let pausedWs: WSContext | undefined;
  const pause = (ws: WSContext): void => {
    paused = true;
    pausedWs = ws;
    resumeWhenRead();
  };
  // served again once the unsent replies drain below RESUME_BYTES and (with pongs) the client has
  // read all but half its window: the pong that says so calls this again
  const resumeWhenRead = (): void => {
    if (!paused || !open) return;
    if (out!.unsentBytes > RESUME_BYTES) return out!.whenBelow(RESUME_BYTES, resumeWhenRead);
    if (events.deliversPongs === true && written - acked > window / 2) return;
    paused = false;
    armResume(pausedWs!);
  };
  // a frame whose segments are still arriving (see KIND_SEGMENTED)
  let segments: SegmentReader | undefined;
  /** The connection is done: its calls are told, and what waited has nobody to answer. */
  const shut = (): void => {
    open = false;
    closed.abort();
    segments?.clear();
    later = [];
    laterHead = laterBytes = 0;
  };
  const wait = (ws: WSContext, bytes: Uint8Array): void => {
    if (!open) return;
    later.push(bytes);
    laterBytes += bytes.byteLength;
    if (paused) {
      const held = later.length - laterHead;
      if (held <= MAX_HELD_MESSAGES && laterBytes <= maxSendQueueBytes) return;
      shut(); // (the runtime's close event may come much later)
      return ws.close(
        SLOW_READER_CLOSE_CODE,
        `client reads too slowly: ${held} messages held while ${out!.unsentBytes} bytes of replies wait`,
      );
    }
    if (laterBytes <= maxSendQueueBytes) return armResume(ws);
    // too much waiting: everything now, in order
    while (laterHead < later.length) take(ws);
  };
  const armResume = (ws: WSContext): void => {
    if (resumeArmed) return;
    resumeArmed = true;
    enqueue(() => {
      resumeArmed = false;
      step(ws);
    });
  };
  // one message, then the next after the microtasks its handler queued so far (so that the clock
  // sees the work the messages make, not only their synchronous part)
  const step = (ws: WSContext): void => {
    if (paused) return serveNext();
    if (laterHead >= later.length) {
      later = [];
      laterHead = 0;
      laterBytes = 0;
      return serveNext(); // the next connection, in this turn if time is left
    }
    if (backedUp()) {
      pause(ws);
      return serveNext();
    }
    if (!budgetLeft()) return armResume(ws);
    take(ws);
    queueMicrotask(() => step(ws));
  };
  const take = (ws: WSContext): void => {
    const bytes = later[laterHead]!;
    later[laterHead++] = EMPTY;
    laterBytes -= bytes.byteLength;
    onWhole(ws, bytes);
  };

  const send = (ws: WSContext, kind: number, id: number, body: Uint8Array): void => {
    if (!open) return;
    const messages = segmentedMessages(kind, id, body);
    if (messages === undefined) return (outbox ??= new Outbox((m) => write(ws, m))).push(framed(kind, id, body));
    // its large arrays follow it as messages of their own, sent from where they lie (on Bun in the
    // next turn: taken behind the head in this one, each would be copied, see SendQueue.sendNextTurn)
    outbox?.flush();
    write(ws, messages[0]);
    for (let i = 1; i < messages.length; i++) writeNextTurn(ws, messages[i]);
  };
  const fail = (ws: WSContext, id: number, err: unknown): void => send(ws, KIND_ERROR, id, encodeError(err));
  const badFrame = (ws: WSContext, message: string): void => {
    // The header is unusable, so no request can be answered: say why, then close cleanly.
    fail(ws, 0, new ProtocolError(message));
    outbox?.flush();
    open = false;
    closed.abort();
    ws.close(1002, "bad frame");
  };
  const answer = async (ws: WSContext, id: number, frame: Uint8Array): Promise<void> => {
    let reply: Uint8Array | undefined;
    try {
      reply = await handler(frame, peer);
    } catch (err) {
      return fail(ws, id, err);
    }
    if (!(reply instanceof Uint8Array)) {
      return fail(ws, id, new TypeError(`The node's frame handler returned ${typeof reply}, expected a Uint8Array`));
    }
    const bytes = frameBytes(reply);
    if (bytes > maxFrameBytes) return fail(ws, id, tooLarge(bytes, maxFrameBytes));
    send(ws, KIND_REPLY, id, reply);
  };

  const events: WsAppEvents = {
    onOpen(_evt, ws) {
      // A Web-standard server socket (Deno) may default to Blob messages, which cannot be read
      // synchronously; Bun's and ws's sockets have other binaryType values that hono relies on.
      const raw = ws.raw as { binaryType?: string } | undefined;
      if (raw?.binaryType === "blob") raw.binaryType = "arraybuffer";
    },
    onMessage(evt, ws) {
      const data = evt.data;
      if (typeof data === "string") return badFrame(ws, "Text messages are not frames; send binary");
      const bytes = toBytes(data);
      if (!bytes) return badFrame(ws, "Unsupported message type; send binary frames");
      if (bytes.byteLength < FRAME_HEADER_BYTES) {
        return badFrame(ws, `Frame of ${bytes.byteLength} bytes is shorter than the ${FRAME_HEADER_BYTES}-byte header`);
      }
      if (later.length > laterHead) return wait(ws, bytes);
      if (backedUp()) {
        pause(ws);
        return wait(ws, bytes);
      }
      // a connection's first message in a turn is served at once; the next ones while the turn's
      // budget lasts
      const first = turn !== sliceTurn;
      const left = budgetLeft(); // (starts it, at the turn's first message)
      sliceTurn = turn;
      if (!first && !left) return wait(ws, bytes);
      onWhole(ws, bytes);
    },
    onClose() {
      shut();
    },
    onError() {
      shut();
    },
    onDrain() {
      out?.drain();
      if (written - pinged >= window / PINGS_PER_WINDOW) ping();
    },
    onPong(data) {
      // ours carry 8 bytes (the runtime's own keep-alive pings carry none)
      if (data.byteLength !== 8) return;
      const read = new DataView(data.buffer, data.byteOffset, 8).getFloat64(0);
      if (!(read > acked && read <= written)) return;
      acked = read;
      window = Math.min(2 * window, MAX_UNREAD_BYTES);
      resumeWhenRead();
    },
  };
  return events;

  function onWhole(ws: WSContext, bytes: Uint8Array): void {
    const kind = bytes[0];
    if (segments?.waiting || kind === KIND_SEGMENTED) {
      try {
        if (!segments?.waiting) (segments ??= new SegmentReader(maxFrameBytes)).start(bytes);
        else {
          const whole = segments.add(bytes);
          if (whole?.tooLarge !== undefined) {
            // read to its end, segments not kept: answered as a frame sent whole would be
            if (whole.frame[0] === KIND_REQUEST) {
              fail(ws, readFrameId(whole.frame), tooLarge(whole.tooLarge, maxFrameBytes));
            }
          } else if (whole !== undefined) onFrame(ws, whole.frame, whole.body);
        }
      } catch (err) {
        // the messages after it can no longer be told apart
        segments?.clear();
        badFrame(ws, (err as Error).message);
      }
      return;
    }
    if (kind === KIND_PART || kind === KIND_PART_END) {
      // only mid-sized messages travel in pieces, so a connection never parks more than that
      const limit = Math.min(maxFrameBytes + FRAME_HEADER_BYTES, MAX_PIECED_MESSAGE_BYTES);
      const joined = (parts ??= new PartAssembler(limit)).add(bytes);
      if (joined !== undefined && !(joined instanceof Uint8Array)) {
        // too large: answer the request it carried, as for a frame sent whole
        const h = joined.head;
        const id = h.byteLength >= FRAME_HEADER_BYTES ? readFrameId(h) : 0;
        const size = joined.tooLarge - FRAME_HEADER_BYTES;
        const err = size > maxFrameBytes ? tooLarge(size, maxFrameBytes) : new TransportError(
          "too-large",
          `Node refused a message of ${joined.tooLarge} bytes sent in pieces: pieces may make at most ` +
            `${MAX_PIECED_MESSAGE_BYTES} bytes; send larger messages whole`,
        );
        return h[0] === KIND_REQUEST ? fail(ws, id, err) : undefined;
      }
      if (joined === undefined) {
        // at once, not batched: this message's TCP ACK lets the client's next piece go
        write(ws, PART_ACK);
        return;
      }
      if (joined.byteLength < FRAME_HEADER_BYTES || joined[0] === KIND_PART || joined[0] === KIND_PART_END) {
        return badFrame(ws, "Malformed message in pieces");
      }
      return onWhole(ws, joined);
    }
    if (kind === KIND_BATCH) {
      if (!forEachInBatch(bytes, (m) => onFrame(ws, m))) {
        badFrame(ws, "Malformed batch: a frame length runs past the message");
      }
      return;
    }
    onFrame(ws, bytes);
  }

  function onFrame(ws: WSContext, bytes: Uint8Array, frame = bytes.subarray(FRAME_HEADER_BYTES)): void {
    if (!open) return;
    const kind = bytes[0];
    const id = readFrameId(bytes);
    // its header is read: a reply made of this same frame (an echo) can reuse those bytes
    offerHeadroom(frame);
    if (kind === KIND_REQUEST) {
      if (frame.byteLength > maxFrameBytes) return fail(ws, id, tooLarge(frame.byteLength, maxFrameBytes));
      void answer(ws, id, frame);
    } else if (kind === KIND_NOTIFY) {
      if (frame.byteLength > maxFrameBytes) return;
      try {
        const r = handler(frame, notifyPeer);
        if (r instanceof Promise) r.catch(() => {});
      } catch {
        // one-way: nobody to tell
      }
    } else {
      badFrame(ws, `Unknown frame kind ${kind}`);
    }
  }
}
