/**
 * The calls a node runs, as its book keeps them (`node_server.ts` runs them): each by connection
 * and call id, since a call id names a call only on the connection that sent it (over HTTP, among
 * the requests that name the same caller key), so one client can never cancel (or shadow) another's
 * call that uses the same id; counted against the node's bounds
 * (calls in flight per connection, in all, and their frames' bytes), where a call past one is
 * answered with a reply saying so, made without an error object or a rejected promise; what each
 * WebSocket connection leaves on the node (its calls running, the results kept or published for it,
 * the fields its `session` message declared), stopped and dropped when it closes; and the cancels
 * that arrived before their call (over HTTP a cancel can overtake it).
 *
 * @module
 */
import type { WireError } from "../core/codec.ts";
import { CancelledError, ProtocolError } from "../core/errors.ts";
import type { ObjectRef } from "../core/object_ref.ts";
import { type CallMessage, encodeMessage, type SessionMessage } from "./protocol.ts";
import type { PeerInfo } from "./transport.ts";
import type { NodeLimits } from "./node_options.ts";

/** Cancels that arrived before their call (HTTP), remembered so the call is refused. */
const EARLY_CANCELS_REMEMBERED = 1024;

/**
 * Which calls a call id is unique among: those of one connection. HTTP has no connection that
 * outlives a request (a cancel arrives on a request of its own), so there it is those of one caller
 * key (`x-thinkagain-caller`, 128 random bits each HTTP client connection draws, `http.ts`): nobody
 * who does not hold a client's key can cancel or name its calls. A request that names no caller is
 * a scope of its own (nothing another request sends reaches its call); a frame with no connection
 * at all (in-process) is in one scope, `"http"`.
 *
 * @param peer The connection a frame came on.
 * @returns The scope's name.
 *
 * @example
 * ```ts
 * import { callScope } from "./node_calls.ts";
 * import { notStrictEqual, strictEqual } from "node:assert/strict";
 * strictEqual(callScope({ transport: "websocket", connectionId: 3, oneWay: false }), "websocket:3");
 * // two requests of one HTTP client share its scope; another client's key is another scope
 * const caller = "3f2a9c0e41d7b8a65c1e0f9d2b7a4c38";
 * strictEqual(
 *   callScope({ transport: "http", connectionId: 4, oneWay: false, caller }),
 *   callScope({ transport: "http", connectionId: 5, oneWay: false, caller }),
 * );
 * notStrictEqual(
 *   callScope({ transport: "http", connectionId: 4, oneWay: false, caller }),
 *   callScope({ transport: "http", connectionId: 6, oneWay: false, caller: "0".repeat(32) }),
 * );
 * ```
 */
export function callScope(peer: PeerInfo | undefined): string {
  if (peer === undefined) return "http";
  // (a request's peer serves one frame: nothing to make once for it)
  if (peer.transport === "http") return peer.caller !== undefined ? `http ${peer.caller}` : `http:${peer.connectionId}`;
  // made once per PeerInfo (transports pass the same one for every frame of a connection): one
  // string less to build and hash per call, which shows in a NATS service call's node time
  let scope = scopes.get(peer);
  if (scope === undefined) {
    scope = `${peer.transport}:${peer.connectionId}`;
    scopes.set(peer, scope);
  }
  return scope;
}

const scopes = new WeakMap<PeerInfo, string>();

/**
 * A call's key on a node: its call id within its scope ({@linkcode callScope}).
 *
 * @param peer The connection its frame came on.
 * @param cid Its call id.
 * @returns The key.
 */
export function callKey(peer: PeerInfo | undefined, cid: string): string {
  return keyInScope(callScope(peer), cid);
}

/**
 * A call's key from its scope, where the scope is known already ({@linkcode callKey} from its
 * connection).
 *
 * @param scope Its scope ({@linkcode callScope}).
 * @param cid Its call id.
 * @returns The key.
 *
 * @example
 * ```ts
 * import { callKey, keyInScope } from "./node_calls.ts";
 * import { strictEqual } from "node:assert/strict";
 * const peer = { transport: "websocket" as const, connectionId: 3, oneWay: false };
 * strictEqual(keyInScope("websocket:3", "c1"), callKey(peer, "c1"));
 * ```
 */
export function keyInScope(scope: string, cid: string): string {
  return `${scope} ${cid}`;
}

/**
 * The scope a call with no connection record is counted in against `maxCallsPerConnection`: every
 * HTTP call in one, whatever caller key it names (a client that draws new keys gets no more room),
 * any other in its own.
 */
function countedIn(scope: string): string {
  return scope.startsWith("http") ? "http" : scope;
}

/** The scope of an HTTP request that named no caller ({@linkcode callScope}): its key starts so. */
const UNNAMED_HTTP = "http:";

/**
 * Whose queue a call to a resident instance waits in: its connection's, or for HTTP (no connection
 * outlives a request) the caller's as the client names itself, else its address's (where the
 * runtime's adapter tells it), else all unnamed HTTP callers' one.
 *
 * @param peer The connection its frame came on.
 * @param scope Its scope ({@linkcode callScope}).
 * @returns The queue's name.
 */
export function fairCaller(peer: PeerInfo | undefined, scope: string): string {
  if (peer?.caller !== undefined) return `http ${peer.caller}`;
  return peer?.address === undefined ? scope : `address ${peer.address}`;
}

/** What a WebSocket connection leaves on the node: its calls running, its kept and published results. */
export interface ConnectionRecord {
  readonly calls: Set<ObjectRef<unknown>>;
  readonly kept: Set<string>;
  published?: Set<string>;
  /** Its calls in flight (`maxCallsPerConnection` bounds them, node_options.ts): counted here, not by scope. */
  running: number;
}

/** What a connection's `session` message declared once for all its calls (protocol.ts, SessionMessage). */
export interface CallSession {
  readonly keepAbove?: number;
  readonly owner?: string;
}

/** What a node's book of calls asks of the node. */
export interface CallBookHost {
  /** The node's name (in a refusal's message). */
  readonly name: string;
  /** A published result whose connection closed is forgotten (nobody will free it). */
  forgetPublished(id: string): void;
}

/**
 * A node's calls in flight and what its connections left on it (see the module's text). A call is
 * admitted ({@linkcode NodeCalls.admit}), entered once its ref exists ({@linkcode NodeCalls.enter})
 * and left when it is answered ({@linkcode NodeCalls.leave}), each a few map operations: the call
 * path keeps its locals, and this book makes no closure per call over a WebSocket.
 *
 * @example Two connections using the same call id, one closing
 * ```ts
 * import { callKey, callScope, NodeCalls } from "./node_calls.ts";
 * import type { ObjectRef } from "../core/object_ref.ts";
 * import { strictEqual } from "node:assert/strict";
 * const book = new NodeCalls({ name: "n1", forgetPublished() {} }, {
 *   leaseMs: 0, maxCallsPerConnection: 1, maxInFlight: 10, maxInFlightBytes: 1 << 20,
 * });
 * let cancelled = 0;
 * const running = { cancel: () => void cancelled++ } as unknown as ObjectRef<unknown>;
 * const closing = new AbortController();
 * const a = { transport: "websocket" as const, connectionId: 1, oneWay: false, signal: closing.signal };
 * const b = { transport: "websocket" as const, connectionId: 2, oneWay: false, signal: new AbortController().signal };
 * const msg = { t: "call" as const, cid: "c1", id: "i1", method: "run", args: [] };
 * for (const peer of [a, b]) {
 *   const conn = book.connection(peer);
 *   strictEqual(book.admit(msg, callKey(peer, "c1"), callScope(peer), conn, 10), undefined);
 *   book.enter(callKey(peer, "c1"), running, false, peer.signal, conn, callScope(peer), 10);
 * }
 * strictEqual(book.inFlight, 2);
 * // one call in flight on a is its limit: the next is refused, with a reply saying why
 * const next = { ...msg, cid: "c2" };
 * strictEqual(book.admit(next, callKey(a, "c2"), callScope(a), book.connection(a), 10) instanceof Uint8Array, true);
 * closing.abort(); // a closed: its record goes, its call is cancelled
 * strictEqual(book.connectionCount, 1);
 * strictEqual(cancelled, 1);
 * ```
 */
export class NodeCalls {
  /** Calls running, by call key ({@linkcode callKey}). */
  readonly calls: Map<string, ObjectRef<unknown>> = new Map();
  /** Results of calls sent with `keep` (pipelined calls name them by call key), until freed. */
  readonly kept: Map<string, ObjectRef<unknown>> = new Map();
  /** Calls running now, and the bytes of their frames. */
  inFlight = 0;
  inFlightBytes = 0;
  readonly #host: CallBookHost;
  readonly #maxCallsPerConnection: number;
  readonly #maxInFlight: number;
  readonly #maxInFlightBytes: number;
  /**
   * Per WebSocket connection (by its signal): its calls running and its kept results, stopped and
   * dropped when it closes, through one abort listener per connection.
   */
  readonly #connections = new Map<AbortSignal, ConnectionRecord>();
  /** Calls in flight per scope, for calls with no connection record (HTTP). */
  readonly #perScope = new Map<string, number>();
  /** What each WebSocket connection declared once for its calls, by connection id. */
  readonly #sessions = new Map<number, CallSession>();
  readonly #earlyCancels = new Set<string>();
  /** What {@linkcode NodeCalls.whenIdle} gave out while calls ran, and its resolve: one for all who wait. */
  #idle: { promise: Promise<void>; resolve: () => void } | undefined;

  /**
   * @param host The node: its name, and its published results.
   * @param limits Its bounds on calls in flight.
   */
  constructor(host: CallBookHost, limits: NodeLimits) {
    this.#host = host;
    this.#maxCallsPerConnection = limits.maxCallsPerConnection;
    this.#maxInFlight = limits.maxInFlight;
    this.#maxInFlightBytes = limits.maxInFlightBytes;
  }

  /** WebSocket connections with a record here (calls run or results kept on them). */
  get connectionCount(): number {
    return this.#connections.size;
  }

  /** Connections whose `session` message is held. */
  get sessionCount(): number {
    return this.#sessions.size;
  }

  /**
   * The record of the connection a frame came on, made (with its one abort listener) on first use;
   * `undefined` for HTTP, a frame with no connection, or one whose connection closed already.
   *
   * @param peer The connection.
   * @returns Its record.
   */
  connection(peer: PeerInfo | undefined): ConnectionRecord | undefined {
    const signal = peer?.signal;
    if (signal === undefined || signal.aborted || peer!.transport === "http") return undefined;
    let conn = this.#connections.get(signal);
    if (conn === undefined) {
      const made: ConnectionRecord = { calls: new Set<ObjectRef<unknown>>(), kept: new Set<string>(), running: 0 };
      this.#connections.set(signal, made);
      signal.addEventListener("abort", () => {
        this.#connections.delete(signal);
        for (const key of made.kept) this.kept.delete(key);
        if (made.published !== undefined) { for (const id of made.published) this.#host.forgetPublished(id); }
        for (const ref of made.calls) ref.cancel();
      }, { once: true });
      conn = made;
    }
    return conn;
  }

  /**
   * Whether a call may run: `undefined` if so, else the reply refusing it, for a node at one of its
   * bounds (the driver rebuilds it as `OverloadedError`). Refusing costs the node less than serving.
   *
   * @param msg The call.
   * @param key Its key ({@linkcode callKey}).
   * @param scope Its scope ({@linkcode callScope}).
   * @param conn Its connection's record ({@linkcode NodeCalls.connection}).
   * @param bytes Its frame's bytes.
   * @returns The refusal's reply, or `undefined`.
   * @throws {CancelledError} When its cancel came first; {@link ProtocolError} when its call id is
   * in use by a call in flight on the same connection.
   */
  admit(
    msg: CallMessage,
    key: string,
    scope: string,
    conn: ConnectionRecord | undefined,
    bytes: number,
  ): Uint8Array | undefined {
    if (this.#earlyCancels.size !== 0 && this.#earlyCancels.delete(key)) {
      throw new CancelledError(
        msg.op ?? { name: msg.method ?? "call", kind: "method" },
        "cancelled before it reached the node",
      );
    }
    if (this.calls.has(key)) {
      throw new ProtocolError(`Call id "${msg.cid}" is already in use by a call in flight on this connection`);
    }
    const counted = conn !== undefined ? undefined : countedIn(scope);
    const running = conn !== undefined ? conn.running : this.#perScope.get(counted!) ?? 0;
    if (running >= this.#maxCallsPerConnection) {
      return overloadedReply(
        `Node "${this.#host.name}" refused a call to ${msg.op ?? `${msg.method}`}: ${running} calls are in flight on ` +
          `${counted === "http" ? "HTTP (all HTTP clients together)" : "this connection"}, its limit ` +
          `(maxCallsPerConnection ${this.#maxCallsPerConnection})`,
      );
    }
    if (this.inFlight >= this.#maxInFlight) {
      return overloadedReply(
        `Node "${this.#host.name}" refused a call to ${msg.op ?? `${msg.method}`}: ${this.inFlight} calls are in ` +
          `flight on this node, its limit (maxInFlight ${this.#maxInFlight}, --max-in-flight)`,
      );
    }
    if (this.inFlightBytes + bytes > this.#maxInFlightBytes) {
      return overloadedReply(
        `Node "${this.#host.name}" refused a call to ${msg.op ?? `${msg.method}`} of ${bytes} bytes: the calls in ` +
          `flight on this node hold ${this.inFlightBytes} bytes, its limit (maxInFlightBytes ` +
          `${this.#maxInFlightBytes}, --max-in-flight-bytes)`,
      );
    }
    return undefined;
  }

  /**
   * A call admitted is running as `ref`: counted, kept (with `keep`, until freed or its connection
   * closes), and cancelled when its connection closes.
   *
   * @param key Its key.
   * @param ref Its ref.
   * @param keep Whether its result is kept for pipelined calls.
   * @param signal Its connection's (or HTTP request's) signal.
   * @param conn Its connection's record.
   * @param scope Its scope.
   * @param bytes Its frame's bytes.
   * @returns The abort listener a call with a signal but no record got (pass it to leave).
   */
  enter(
    key: string,
    ref: ObjectRef<unknown>,
    keep: boolean,
    signal: AbortSignal | undefined,
    conn: ConnectionRecord | undefined,
    scope: string,
    bytes: number,
    counted = false,
  ): (() => void) | undefined {
    this.calls.set(key, ref);
    if (keep) {
      this.kept.set(key, ref);
      if (conn !== undefined) conn.kept.add(key);
      else signal?.addEventListener("abort", deleter(this.kept, key), { once: true });
    }
    if (!counted) this.count(conn, scope, bytes);
    let onGone: (() => void) | undefined;
    if (conn !== undefined) {
      conn.calls.add(ref);
    } else {
      // nobody can receive its result once its request is gone, so it stops
      if (signal !== undefined) signal.addEventListener("abort", onGone = canceller(ref), { once: true });
    }
    if (signal?.aborted) ref.cancel();
    return onGone;
  }

  /**
   * Counts a call admitted against the bounds: one more call and its bytes in flight, on its
   * connection (or scope). `enter` does it, unless the call was counted before it could run: one
   * that waits for the results it names ({@linkcode NodeCalls.uncount} if it never runs), so that
   * calls parked on their arguments hold the bounds as running ones do.
   *
   * @param conn Its connection's record.
   * @param scope Its scope.
   * @param bytes Its frame's bytes.
   */
  count(conn: ConnectionRecord | undefined, scope: string, bytes: number): void {
    this.inFlight++;
    this.inFlightBytes += bytes;
    if (conn !== undefined) conn.running++;
    else {
      const counted = countedIn(scope);
      this.#perScope.set(counted, (this.#perScope.get(counted) ?? 0) + 1);
    }
  }

  /**
   * A call counted (see {@linkcode NodeCalls.count}) is no longer: it ended (`leave`), or it was
   * counted before it could run and did not.
   *
   * @param conn Its connection's record.
   * @param scope Its scope.
   * @param bytes Its frame's bytes.
   */
  uncount(conn: ConnectionRecord | undefined, scope: string, bytes: number): void {
    if (conn !== undefined) conn.running--;
    else {
      const counted = countedIn(scope);
      const left = this.#perScope.get(counted)! - 1;
      if (left === 0) this.#perScope.delete(counted);
      else this.#perScope.set(counted, left);
    }
    this.inFlightBytes -= bytes;
    if (--this.inFlight === 0 && this.#idle !== undefined) {
      this.#idle.resolve();
      this.#idle = undefined;
    }
  }

  /**
   * A call entered is answered: no longer counted.
   *
   * @param key Its key.
   * @param ref Its ref.
   * @param signal Its signal.
   * @param conn Its connection's record.
   * @param scope Its scope.
   * @param bytes Its frame's bytes.
   * @param onGone What enter returned.
   */
  leave(
    key: string,
    ref: ObjectRef<unknown>,
    signal: AbortSignal | undefined,
    conn: ConnectionRecord | undefined,
    scope: string,
    bytes: number,
    onGone: (() => void) | undefined,
  ): void {
    this.calls.delete(key);
    if (conn !== undefined) conn.calls.delete(ref);
    else if (onGone !== undefined) signal!.removeEventListener("abort", onGone);
    this.uncount(conn, scope, bytes);
  }

  /**
   * A `cancel`: the call running under `key` is cancelled, or (over HTTP a cancel can overtake its
   * call) remembered, so that the call is refused when it arrives.
   *
   * @param key The call's key.
   * @throws {ProtocolError} For a cancel over HTTP that names no caller: it could reach no call.
   */
  cancel(key: string): void {
    const ref = this.calls.get(key);
    if (ref !== undefined) {
      ref.cancel();
      return;
    }
    if (key.startsWith(UNNAMED_HTTP)) {
      throw new ProtocolError(
        "A cancel over HTTP reaches only the calls made with the same x-thinkagain-caller key, and this request " +
          "sends none",
      );
    }
    this.#earlyCancels.add(key);
    if (this.#earlyCancels.size > EARLY_CANCELS_REMEMBERED) {
      this.#earlyCancels.delete(this.#earlyCancels.values().next().value!);
    }
  }

  /**
   * Whether a `cancel` for the call under `key` came while it was admitted but not yet running (it
   * waited for the results it pulls from other nodes): taken, so that its body never starts.
   *
   * @param key The call's key.
   * @returns True when it was cancelled meanwhile.
   */
  cancelledMeanwhile(key: string): boolean {
    return this.#earlyCancels.size !== 0 && this.#earlyCancels.delete(key);
  }

  /**
   * A `session` message: what every call on its connection would carry, held until the connection
   * closes.
   *
   * @param peer Its connection.
   * @param msg The message.
   * @throws {ProtocolError} Over HTTP, where no connection lasts.
   */
  declareSession(peer: PeerInfo | undefined, msg: SessionMessage): void {
    if (peer === undefined || peer.transport === "http") {
      throw new ProtocolError(
        'A "session" message needs a connection that lasts (WebSocket); over HTTP each call carries its fields',
      );
    }
    const id = peer.connectionId;
    if (!this.#sessions.has(id)) {
      peer.signal?.addEventListener("abort", () => this.#sessions.delete(id), { once: true });
    }
    this.#sessions.set(id, { keepAbove: msg.keepAbove, owner: msg.owner });
  }

  /**
   * What the connection a call came on declared, if anything.
   *
   * @param peer The connection.
   * @returns Its session's fields.
   */
  sessionOf(peer: PeerInfo | undefined): CallSession | undefined {
    return this.#sessions.size === 0 || peer === undefined ? undefined : this.#sessions.get(peer.connectionId);
  }

  /**
   * A result published by a call on `peer`'s connection: forgotten when it closes.
   *
   * @param peer The connection.
   * @param id The published result's id.
   */
  notePublished(peer: PeerInfo | undefined, id: string): void {
    const conn = this.connection(peer);
    if (conn !== undefined) (conn.published ??= new Set()).add(id);
  }

  /**
   * The results published on `peer`'s connection, if it has a record.
   *
   * @param peer The connection.
   * @returns Their ids.
   */
  publishedOn(peer: PeerInfo | undefined): Set<string> | undefined {
    return peer?.signal === undefined ? undefined : this.#connections.get(peer.signal)?.published;
  }

  /**
   * A `free`'s call ids: the results kept for them go.
   *
   * @param peer The connection it came on (call ids name calls within it).
   * @param cids The call ids.
   */
  freeKept(peer: PeerInfo | undefined, cids: readonly string[]): void {
    const conn = peer?.signal === undefined ? undefined : this.#connections.get(peer.signal);
    const scope = callScope(peer);
    for (const cid of cids) {
      const key = keyInScope(scope, cid);
      this.kept.delete(key);
      conn?.kept.delete(key);
    }
  }

  /**
   * Resolves once no call is in flight: every caller that waits (a node drained twice at once).
   *
   * @returns When the last call ends (at once if none runs).
   */
  whenIdle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    if (this.#idle === undefined) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.#idle = { promise, resolve };
    }
    return this.#idle.promise;
  }
}

/**
 * A call's reply saying the node refused it, which the driver rebuilds as `OverloadedError`: the
 * wire form `errorToWire` gives that error, made without the error itself.
 */
function overloadedReply(message: string): Uint8Array {
  const error: WireError = { tag: "OverloadedError", message, data: {} };
  return encodeMessage({ t: "result", ok: false, error });
}

/** A listener that deletes `key` from `map`. */
function deleter(map: Map<string, unknown>, key: string): () => void {
  return () => map.delete(key);
}

/** A listener that cancels `ref`. */
function canceller(ref: ObjectRef<unknown>): () => void {
  return () => ref.cancel();
}
