/**
 * The WebSocket transport's client: one persistent, multiplexed connection per peer. The frames it
 * exchanges (header, batches, pieces) are laid out by `ws_framing.ts`, shared with the node's
 * server; replies may come in any order, and the server starts handlers in arrival order.
 *
 * Auth: the client offers the subprotocols `thinkagain.v1` and, with a token,
 * `thinkagain.token.<base64url(token)>` (the only header a Web-standard WebSocket can set); the
 * server also accepts `Authorization: Bearer`. The server always selects `thinkagain.v1`, so the
 * token is never echoed. A refused upgrade (401) is reported to the caller as `AuthError`.
 *
 * @module
 */
import { frameBytes } from "../core/codec.ts";
import { TransportError } from "../core/errors.ts";
import { setLongTimeout, timeoutSignal } from "../core/long_timer.ts";
import { runtimeName } from "../core/_runtime.ts";
import {
  armRequest,
  authRefused,
  closedError,
  CloseListeners,
  decodeError,
  describeFailure,
  endpointUrl,
  type Pending,
  toBase64Url,
  WS_PROTOCOL,
  WS_TOKEN_PREFIX,
} from "./_common.ts";
import {
  checkFrameSize,
  type ConnectOptions,
  type RequestOptions,
  resolveMaxFrameBytes,
  type Transport,
  type TransportConnection,
} from "./transport.ts";
import {
  forEachInBatch,
  FRAME_HEADER_BYTES,
  framed,
  KIND_BATCH,
  KIND_ERROR,
  KIND_NOTIFY,
  KIND_PART_ACK,
  KIND_REPLY,
  KIND_REQUEST,
  KIND_SEGMENTED,
  Outbox,
  readFrameId,
  requestIdAfter,
  segmentedMessages,
  SegmentReader,
  takeRequestId,
} from "./ws_framing.ts";

/**
 * Maps a node endpoint to its WebSocket URL: `http://h:p` and `ws://h:p` become `ws://h:p/ws`
 * (`https:`/`wss:` likewise).
 *
 * @param endpoint A node endpoint.
 * @returns The URL to open.
 *
 * @example
 * ```ts
 * import { webSocketUrl } from "./websocket.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(webSocketUrl("http://127.0.0.1:7070"), "ws://127.0.0.1:7070/ws");
 * ```
 */
export function webSocketUrl(endpoint: string): string {
  const url = endpointUrl(endpoint, "WebSocket");
  if (url.pathname === "/" || url.pathname === "") url.pathname = "/ws";
  return url.toString();
}

function httpUrlOf(wsUrl: string): string {
  const url = new URL(wsUrl);
  url.protocol = url.protocol === "wss:" ? "https:" : "http:";
  return url.toString();
}

/**
 * Throws unless this runtime has a global `WebSocket`, which the WebSocket transport dials with.
 * Node before 22 has none: a `ws://` endpoint there is a setup to change, not a node that cannot be
 * reached (it may well be up), so the error is a `TypeError` that names the runtime and says what
 * to do, not a `TransportError` "unreachable". A mesh checks its nodes' endpoints when it is built
 * (`transportFor`), and each dial checks again (one assigned to `globalThis` later serves too).
 *
 * @param endpoint The endpoint to reach, for the message.
 * @throws {TypeError} When there is no global `WebSocket`.
 *
 * @example
 * ```ts
 * import { checkWebSocketRuntime } from "./websocket.ts";
 * import { throws } from "node:assert/strict";
 * checkWebSocketRuntime("ws://127.0.0.1:7070"); // Bun, Deno, Node 22 and browsers have one
 * const saved = globalThis.WebSocket;
 * delete (globalThis as { WebSocket?: unknown }).WebSocket; // as on Node 20
 * try {
 *   throws(() => checkWebSocketRuntime("ws://127.0.0.1:7070"), /has no global WebSocket.*http:\/\//);
 * } finally {
 *   globalThis.WebSocket = saved;
 * }
 * ```
 */
export function checkWebSocketRuntime(endpoint: string): void {
  if (typeof WebSocket === "function") return;
  throw new TypeError(
    // (template literals: tools/check_imports.ts reads no runtime use in their text)
    `Cannot connect to ${endpoint}: this runtime (${runtimeName()}) has no global WebSocket, which a ws:// ` +
      `endpoint needs. Use Node 22 or later (or Bun, Deno), assign one before building the mesh ` +
      `(globalThis.WebSocket = (await import("ws")).WebSocket), or reach the node over HTTP ` +
      `(an http:// endpoint on the same port, or the Mesh option transport: "http")`,
  );
}

/**
 * What a socket no longer followed does with an error event (closing one still connecting makes
 * one): nothing, but a listener all the same, as the `ws` package's WebSocket (a Node 20 driver's)
 * throws an error event that nobody listens to, ending the process.
 */
function ignoreError(): void {}

/**
 * How a connection ended, in words: a clean close names only its reason; a close with no close frame
 * (1006, or 0 on Deno) says the peer's process ended or the network failed, with what the error
 * event said.
 */
function closeWords(evt: CloseEvent, failure: string): string {
  const reason = evt.reason ? `: ${evt.reason}` : "";
  if (evt.code === 1000 || evt.code === 1005) return `closed by the peer${reason}`;
  if (evt.code === 1006 || evt.code === 0) {
    const seen = failure === "" ? "" : `, ${failure}`;
    return `dropped without a close frame (code 1006${seen}): the node's process ended or the network failed`;
  }
  return `closed by the peer (code ${evt.code}${reason})`;
}

class WebSocketConnection implements TransportConnection {
  readonly endpoint: string;
  #url: string;
  #token: string | undefined;
  #maxFrameBytes: number;
  #connectTimeoutMs: number;
  #ws: WebSocket | undefined;
  #outbox: Outbox | undefined;
  /** The segments of a reply still arriving (see `KIND_SEGMENTED`). */
  #segments: SegmentReader | undefined;
  #opening: Promise<WebSocket> | undefined;
  #pending = new Map<number, Pending>();
  #nextId = 1;
  #listeners = new CloseListeners();
  #closed = false;

  constructor(endpoint: string, options: ConnectOptions) {
    this.endpoint = endpoint;
    this.#url = webSocketUrl(endpoint);
    this.#token = options.token;
    this.#maxFrameBytes = resolveMaxFrameBytes(options.maxFrameBytes);
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The open socket, opening one when there is none (first use, or after the peer went away). */
  open(): Promise<WebSocket> {
    if (this.#closed) return Promise.reject(closedError(this.endpoint));
    return this.#opening ??= this.#dial().finally(() => {
      this.#opening = undefined;
    });
  }

  #dial(): Promise<WebSocket> {
    // (looked up at each dial: one assigned to globalThis after this module loaded serves too)
    try {
      checkWebSocketRuntime(this.endpoint);
    } catch (err) {
      return Promise.reject(err);
    }
    const protocols = [WS_PROTOCOL];
    if (this.#token !== undefined) protocols.push(WS_TOKEN_PREFIX + toBase64Url(this.#token));
    return new Promise<WebSocket>((resolve, reject) => {
      let ws: WebSocket;
      try {
        ws = new WebSocket(this.#url, protocols);
      } catch (cause) {
        return reject(
          new TransportError("unreachable", `Cannot connect to ${this.endpoint}: ${String(cause)}`, this.endpoint),
        );
      }
      ws.binaryType = "arraybuffer";
      // a long timer: a connectTimeoutMs of 2^31 ms or more must not fire at once; Infinity: none
      const stopTimer = setLongTimeout(() => {
        done();
        try {
          ws.close();
        } catch { /* already failing */ }
        reject(
          new TransportError(
            "unreachable",
            `Cannot connect to ${this.endpoint}: no answer within ${this.#connectTimeoutMs} ms`,
            this.endpoint,
          ),
        );
      }, this.#connectTimeoutMs);
      const done = () => {
        stopTimer();
        ws.onopen = ws.onclose = null;
        ws.onerror = ignoreError;
      };
      ws.onopen = () => {
        done();
        if (this.#closed) {
          ws.close(1000);
          return reject(closedError(this.endpoint));
        }
        this.#attach(ws);
        resolve(ws);
      };
      ws.onerror = ws.onclose = () => {
        done();
        this.#explainRefusal().then(reject, reject);
      };
    });
  }

  /** The upgrade failed; the WebSocket API hides why, so ask the same URL over HTTP once. */
  async #explainRefusal(): Promise<Error> {
    const headers: Record<string, string> = {};
    if (this.#token !== undefined) headers.authorization = `Bearer ${this.#token}`;
    const timeout = timeoutSignal(this.#connectTimeoutMs);
    try {
      const res = await fetch(httpUrlOf(this.#url), { headers, signal: timeout.signal });
      await res.body?.cancel();
      if (res.status === 401) return authRefused(this.endpoint, this.#token !== undefined);
      return new TransportError(
        "refused",
        `Cannot connect to ${this.endpoint}: the WebSocket upgrade was refused (HTTP ${res.status})`,
        this.endpoint,
      );
    } catch (cause) {
      // what fetch saw (refused, reset, no route, a name that does not resolve) is the reason
      return new TransportError(
        "unreachable",
        `Cannot connect to ${this.endpoint}: ${describeFailure(cause)}`,
        this.endpoint,
        cause,
      );
    } finally {
      timeout.cancel();
    }
  }

  #attach(ws: WebSocket): void {
    // A previous socket still closing can no longer answer: fail its requests now, or they would
    // wait for a close event that #lost would ignore once the new socket is current.
    const previous = this.#ws;
    if (previous) {
      this.#lost(previous, new TransportError("closed", `Connection to ${this.endpoint} was replaced`, this.endpoint));
    }
    this.#ws = ws;
    this.#outbox = new Outbox((m) => ws.send(m), { client: true });
    this.#segments = undefined;
    ws.onmessage = (evt: MessageEvent) => this.#onMessage(ws, evt.data);
    // an error event comes before the close event of a connection that broke; what it says is kept
    let failure = "";
    ws.onclose = (evt: CloseEvent) => {
      this.#lost(
        ws,
        new TransportError("closed", `Connection to ${this.endpoint} ${closeWords(evt, failure)}`, this.endpoint),
      );
    };
    ws.onerror = (evt: Event) => {
      const message = (evt as ErrorEvent).message ?? "";
      if (message !== "") failure = message;
    };
  }

  #onMessage(ws: WebSocket, data: unknown): void {
    if (!(data instanceof ArrayBuffer)) return; // our server sends binary only
    const bytes = new Uint8Array(data);
    const segments = this.#segments;
    if (segments?.waiting || bytes[0] === KIND_SEGMENTED) {
      // a frame whose large arrays follow as messages of their own, viewed where they arrive
      try {
        if (!segments?.waiting) (this.#segments ??= new SegmentReader(this.#maxFrameBytes)).start(bytes);
        else {
          const whole = segments.add(bytes);
          if (whole?.tooLarge !== undefined) this.#tooLarge(readFrameId(whole.frame), whole.tooLarge);
          else if (whole !== undefined) this.#onFrame(whole.frame, whole.body);
        }
      } catch (err) {
        // the messages after it can no longer be told apart: this connection is done
        this.#failAll(err);
        this.#lost(
          ws,
          new TransportError("bad-frame", `${(err as Error).message} from ${this.endpoint}`, this.endpoint),
        );
        ws.close(1002, "bad frame");
      }
      return;
    }
    if (bytes.byteLength < FRAME_HEADER_BYTES) return;
    if (bytes[0] === KIND_PART_ACK) return; // it carried the TCP ACK; nothing else to do
    if (bytes[0] === KIND_BATCH) {
      forEachInBatch(bytes, (m) => this.#onFrame(m));
      return;
    }
    this.#onFrame(bytes);
  }

  #onFrame(bytes: Uint8Array, body = bytes.subarray(FRAME_HEADER_BYTES)): void {
    const kind = bytes[0];
    const id = readFrameId(bytes);
    if (id === 0 && kind === KIND_ERROR) {
      // The peer rejected the connection as a whole; it closes next, failing what is pending.
      const err = decodeError(bytes.subarray(FRAME_HEADER_BYTES));
      this.#failAll(err);
      return;
    }
    const pending = this.#pending.get(id);
    if (!pending) return; // aborted or timed out: drop the late reply
    this.#pending.delete(id);
    pending.cleanup?.();
    if (kind === KIND_REPLY) {
      if (body.byteLength > this.#maxFrameBytes) pending.reject(this.#tooLargeError(body.byteLength));
      else pending.resolve(body);
    } else if (kind === KIND_ERROR) pending.reject(decodeError(body));
    else {pending.reject(
        new TransportError("bad-frame", `Unexpected frame kind ${kind} from ${this.endpoint}`, this.endpoint),
      );}
  }

  /** A reply over the limit (its segments were read, not kept) fails its request. */
  #tooLarge(id: number, bytes: number): void {
    const pending = this.#pending.get(id);
    if (!pending) return;
    this.#pending.delete(id);
    pending.cleanup?.();
    pending.reject(this.#tooLargeError(bytes));
  }

  #tooLargeError(bytes: number): TransportError {
    return new TransportError(
      "too-large",
      `Reply of ${bytes} bytes from ${this.endpoint} is over the limit of ${this.#maxFrameBytes} bytes`,
      this.endpoint,
    );
  }

  #failAll(reason: unknown): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) {
      p.cleanup?.();
      p.reject(reason);
    }
  }

  #lost(ws: WebSocket, reason: TransportError): void {
    if (this.#ws !== ws) return;
    this.#ws = undefined;
    this.#outbox?.clear();
    this.#outbox = undefined;
    this.#segments?.clear(); // what a half-sent frame held goes
    ws.onmessage = ws.onclose = null;
    ws.onerror = ignoreError;
    this.#failAll(reason);
    this.#listeners.emit(reason);
  }

  request(frame: Uint8Array, options?: RequestOptions): Promise<Uint8Array> {
    if (this.#closed) return Promise.reject(closedError(this.endpoint));
    if (options?.signal?.aborted) return Promise.reject(options.signal.reason);
    const tooLarge = checkFrameSize(frame, this.#maxFrameBytes, this.endpoint);
    if (tooLarge) return Promise.reject(tooLarge);
    const ws = this.#ws;
    if (ws !== undefined && ws.readyState === 1) return this.#send(ws, frame, options);
    if (options === undefined || (options.signal === undefined && options.timeoutMs === undefined)) {
      return this.open().then((ws) => this.#send(ws, frame, options));
    }
    // the deadline and the signal also cover connecting
    const deadline = options.timeoutMs === undefined ? undefined : performance.now() + options.timeoutMs;
    return new Promise<Uint8Array>((resolve, reject) => {
      const waiting: Pending = { resolve, reject, cleanup: undefined };
      let gaveUp = false;
      const cleanup = armRequest(waiting, options, this.endpoint, () => (gaveUp = true));
      if (gaveUp) return;
      this.open().then((ws) => {
        cleanup?.();
        if (gaveUp) return;
        const left = deadline === undefined ? undefined : Math.max(0, deadline - performance.now());
        this.#send(ws, frame, { signal: options.signal, timeoutMs: left }).then(resolve, reject);
      }, (err) => {
        cleanup?.();
        reject(err);
      });
    });
  }

  #send(ws: WebSocket, frame: Uint8Array, options: RequestOptions | undefined): Promise<Uint8Array> {
    // (the id to try is free but after 4 billion requests: no closure and no object per request)
    let id = this.#nextId;
    if (this.#pending.has(id)) {
      const taken = takeRequestId(id, (i) => this.#pending.has(i));
      id = taken.id;
      this.#nextId = taken.next;
    } else this.#nextId = requestIdAfter(id);
    return new Promise<Uint8Array>((resolve, reject) => {
      const pending: Pending = { resolve, reject, cleanup: undefined };
      this.#pending.set(id, pending);
      if (options) pending.cleanup = armRequest(pending, options, this.endpoint, () => this.#pending.delete(id));
      this.#write(ws, KIND_REQUEST, id, frame);
    });
  }

  /** Sends a frame: batched with the turn's others, or, with segments, at once with them behind it. */
  #write(ws: WebSocket, kind: number, id: number, frame: Uint8Array): void {
    const outbox = this.#ws === ws ? this.#outbox : undefined;
    const messages = segmentedMessages(kind, id, frame);
    if (messages === undefined) {
      if (outbox !== undefined) outbox.pushFrame(kind, id, frame);
      else ws.send(framed(kind, id, frame));
      return;
    }
    outbox?.flush(); // keep the order
    for (const m of messages) ws.send(m);
  }

  notify(frame: Uint8Array): void {
    if (this.#closed || frameBytes(frame) > this.#maxFrameBytes) return;
    const ws = this.#ws;
    if (ws !== undefined && ws.readyState === 1 && this.#outbox !== undefined) this.#write(ws, KIND_NOTIFY, 0, frame);
    else this.open().then((ws) => this.#write(ws, KIND_NOTIFY, 0, frame), () => {});
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    const ws = this.#ws;
    const reason = closedError(this.endpoint);
    if (ws) {
      this.#lost(ws, reason);
      return new Promise<void>((resolve) => {
        // a peer that never acknowledges the close must not hang us
        const timer = setTimeout(resolve, 1000);
        ws.onclose = () => {
          clearTimeout(timer);
          resolve();
        };
        ws.close(1000);
      });
    }
    this.#failAll(reason);
    this.#listeners.emit(reason);
    return Promise.resolve();
  }

  onClose(listener: (reason: TransportError) => void): () => void {
    return this.#listeners.add(listener);
  }
}

/**
 * The WebSocket transport (`ws://host:port`, path `/ws` by default).
 *
 * @example An unreachable node is a TransportError naming it
 * ```ts
 * import { webSocketTransport } from "./websocket.ts";
 * import { TransportError } from "../core/errors.ts";
 * import { rejects } from "node:assert/strict";
 * await rejects(webSocketTransport.connect("ws://127.0.0.1:1"), (e) =>
 *   e instanceof TransportError && e.reason === "unreachable" && e.message.includes("ws://127.0.0.1:1"));
 * ```
 */
export const webSocketTransport: Transport = {
  name: "websocket",
  async connect(endpoint: string, options: ConnectOptions = {}): Promise<TransportConnection> {
    const conn = new WebSocketConnection(endpoint, options);
    await conn.open();
    return conn;
  },
};
