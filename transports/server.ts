/**
 * The node's server side: one hono app serving `POST /rpc` (HTTP transport) and `GET /ws`
 * (WebSocket transport) on one port, in front of one {@linkcode FrameHandler}. It is a Web-standard
 * `fetch` app; the per-runtime `serve` in `adapters/` puts it on a socket. A `/ws` connection's
 * events (its frames in and replies out, served in slices, paused while its replies back up) are
 * `ws_connection.ts`'.
 *
 * @module
 */
import { Hono } from "hono";
import { cors } from "hono/cors";
import type { UpgradeWebSocket } from "hono/ws";
import { TransportError } from "../core/errors.ts";
import { ProtocolError } from "../core/errors.ts";
import { AuthError } from "../core/errors.ts";
import {
  encodeError,
  fromBase64Url,
  newConnectionId,
  readAtMost,
  replyTooLarge,
  tokenMatches,
  tooLarge,
  WS_PROTOCOL,
  WS_TOKEN_PREFIX,
} from "./_common.ts";
import { type FrameHandler, type PeerInfo, resolveMaxFrameBytes, type ServeFramesOptions } from "./transport.ts";
import { LateSignals } from "./_late_signal.ts";
import { inlineFrame } from "../core/codec.ts";
import { wsEvents } from "./ws_connection.ts";
import { RPC_REQUEST_HEADERS } from "./http.ts";
import { checkOptionType } from "../core/options.ts";
import { checkToken } from "../core/token.ts";

export type { WsAppEvents } from "./ws_connection.ts";

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
  checkOptionType("createNodeApp", "token", token, "string");
  // one a client can present over every transport (a token fetch cannot put in a header would let
  // WebSocket clients in and fail every HTTP one)
  checkToken("createNodeApp", token);
  // every frame let in came with the token: a handler may ask whether it is one it knows (PeerInfo)
  const holdsToken = token === undefined ? undefined : (t: string) => tokenMatches(t, token);
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
    const origin = (o: string) => (origins.has("*") || origins.has(o) ? o : null);
    // an allowed page may POST /rpc as well as open /ws: its browser asks first (CORS preflight),
    // for every header the HTTP transport sends (one left out here fails every call from a page)
    app.use(
      "/rpc",
      cors({
        origin,
        allowMethods: ["POST"],
        allowHeaders: [...RPC_REQUEST_HEADERS],
        exposeHeaders: ["x-thinkagain-error"],
      }),
    );
    // A page's WebSocket is told nothing of why its upgrade failed, so the client asks GET /ws once
    // with its token (websocket.ts): the page may send that, and read the answer (401: a wrong
    // token, an AuthError). The upgrade itself needs no CORS, and its 101 is left as the runtime
    // made it (a Response cannot be rebuilt with status 101).
    const probe = cors({ origin, allowMethods: ["GET"], allowHeaders: ["authorization"] });
    app.use("/ws", (c, next) => c.req.header("upgrade")?.toLowerCase() === "websocket" ? next() : probe(c, next));
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
      ? { transport: "http", connectionId: newConnectionId(), oneWay, caller, address, holdsToken }
      : {
        transport: "http",
        connectionId: newConnectionId(),
        oneWay,
        signal: gone.signal,
        caller,
        address,
        holdsToken,
      };
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
    if (whole.byteLength > maxFrameBytes) return errorResponse(500, replyTooLarge(whole.byteLength, maxFrameBytes));
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
    return await upgrade(() => wsEvents(handler, maxFrameBytes, maxSendQueueBytes, holdsToken))(c, next);
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

/** Reads a request body, failing as soon as it passes `limit` bytes (never buffering more). */
function readLimited(req: Request, limit: number): Promise<Uint8Array> {
  if (!req.body) return Promise.resolve(new Uint8Array(0));
  return readAtMost(req.body, limit, (total) => tooLarge(total, limit));
}
