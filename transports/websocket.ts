/**
 * The WebSocket transport: one persistent, multiplexed connection per peer.
 *
 * Wire format: every WebSocket binary message is one frame with a 5-byte header,
 * `[kind: u8][id: u32 little-endian][body]`. Kinds: 0 request, 1 reply, 2 notify (one-way, id 0),
 * 3 error (body is a CBOR `{ tag, message, data }`; id 0 means the whole connection is in error and
 * is about to close). Replies may come in any order; the server starts handlers in arrival order.
 *
 * Auth: the client offers the subprotocols `thinkagain.v1` and, with a token,
 * `thinkagain.token.<base64url(token)>` (the only header a Web-standard WebSocket can set); the
 * server also accepts `Authorization: Bearer`. The server always selects `thinkagain.v1`, so the
 * token is never echoed. A refused upgrade (401) is reported to the caller as `AuthError`.
 *
 * @module
 */
import { TransportError } from "../core/errors.ts";
import { claimHeadroom, FRAME_HEADROOM } from "../core/codec.ts";
import {
  armRequest,
  authRefused,
  closedError,
  CloseListeners,
  decodeError,
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

/** Bytes of the frame header (kind + request id). */
export const FRAME_HEADER_BYTES = 5;
/** Frame kind: a request expecting a reply with the same id. */
export const KIND_REQUEST = 0;
/** Frame kind: the reply to the request with the same id. */
export const KIND_REPLY = 1;
/** Frame kind: a one-way frame. */
export const KIND_NOTIFY = 2;
/** Frame kind: an error reply (CBOR wire error) to the request with the same id; id 0: connection error. */
export const KIND_ERROR = 3;
/**
 * Message kind: several frames in one WebSocket message, each as `[u32 LE length][frame]` (a frame
 * being header + body). Frames written in the same turn travel together: one send, one syscall.
 */
export const KIND_BATCH = 4;

/** Message kind: a piece of a longer message; more pieces follow. */
export const KIND_PART = 5;
/** Message kind: the last piece; the pieces' bodies joined are one message (a frame or a batch). */
export const KIND_PART_END = 6;
/** Message kind: the server got a piece; sent at once so the client's next piece may leave. */
export const KIND_PART_ACK = 7;

/**
 * Client messages between these sizes go out in pieces of at most `PART_BYTES`, each answered by a
 * `KIND_PART_ACK`, and client batches stay below `SPLIT_ABOVE`. Deno's WebSocket client writes a
 * message of more than ~1 KB as two writes (header, then payload) on a socket with Nagle's
 * algorithm on: the payload waited for the ACK of the header, which the server's kernel delays by
 * ~40 ms because the server cannot answer half a message. Measured on Deno 2.9: requests of
 * 1.5-64 KB took 44 ms each, 1 KB and 70 KB ones 30-170 µs. A piece that fits one write is sent at
 * once, and the piece ack (or a reply) carries the ACK that releases the next one.
 */
const SPLIT_ABOVE = 1000;
const SPLIT_BELOW = 65536;
const PART_BYTES = 960;

/** Frames above this size are sent on their own, never copied into a batch. */
const BATCH_FRAME_LIMIT = 64 * 1024;
/** A batch is sent once it holds this many bytes, without waiting for the end of the turn. */
const BATCH_BYTES = 1024 * 1024;

/**
 * Collects the frames written during one turn of the event loop and sends them as one message
 * (a {@linkcode KIND_BATCH} message when there are several).
 */
export class Outbox {
  #queue: Uint8Array<ArrayBuffer>[] = [];
  #bytes = 0;
  readonly #send: (message: Uint8Array<ArrayBuffer>) => void;
  readonly #flushBound = () => this.flush();
  readonly #batchBytes: number;

  /**
   * @param send Sends one WebSocket message.
   * @param options `client`: the client side, whose batches stay small and whose mid-sized
   * messages go in pieces (see `KIND_PART`).
   */
  constructor(send: (message: Uint8Array<ArrayBuffer>) => void, options: { client?: boolean } = {}) {
    this.#send = options.client ? (m) => sendInPieces(m, send) : send;
    this.#batchBytes = options.client ? SPLIT_ABOVE - FRAME_HEADER_BYTES : BATCH_BYTES;
  }

  /** Queues a framed message (header + body). */
  push(message: Uint8Array<ArrayBuffer>): void {
    if (message.byteLength > BATCH_FRAME_LIMIT) {
      this.flush(); // keep the order
      this.#send(message);
      return;
    }
    if (this.#bytes + message.byteLength + 4 > this.#batchBytes) this.flush();
    if (this.#queue.push(message) === 1) queueMicrotask(this.#flushBound);
    this.#bytes += message.byteLength + 4;
  }

  /** Sends what is queued now. */
  flush(): void {
    const q = this.#queue;
    if (q.length === 0) return;
    this.#queue = [];
    const bytes = this.#bytes;
    this.#bytes = 0;
    if (q.length === 1) return this.#send(q[0]);
    const out = new Uint8Array(FRAME_HEADER_BYTES + bytes);
    out[0] = KIND_BATCH;
    let at = FRAME_HEADER_BYTES;
    for (const m of q) {
      const n = m.byteLength;
      out[at] = n & 0xff;
      out[at + 1] = (n >>> 8) & 0xff;
      out[at + 2] = (n >>> 16) & 0xff;
      out[at + 3] = (n >>> 24) & 0xff;
      out.set(m, at + 4);
      at += 4 + n;
    }
    this.#send(out);
  }

  /** Drops what is queued (the connection is gone). */
  clear(): void {
    this.#queue = [];
    this.#bytes = 0;
  }
}

function sendInPieces(m: Uint8Array<ArrayBuffer>, send: (message: Uint8Array<ArrayBuffer>) => void): void {
  if (m.byteLength <= SPLIT_ABOVE || m.byteLength >= SPLIT_BELOW) return send(m);
  for (let at = 0; at < m.byteLength; at += PART_BYTES) {
    const end = Math.min(at + PART_BYTES, m.byteLength);
    const part = new Uint8Array(FRAME_HEADER_BYTES + end - at);
    part[0] = end === m.byteLength ? KIND_PART_END : KIND_PART;
    part.set(m.subarray(at, end), FRAME_HEADER_BYTES);
    send(part);
  }
}

/**
 * Joins {@linkcode KIND_PART} pieces back into the message they were cut from, refusing to hold
 * more than `limit` bytes.
 */
export class PartAssembler {
  #parts: Uint8Array[] = [];
  #bytes = 0;
  #head: Uint8Array | undefined;
  #overflow = false;
  readonly #limit: number;

  /** @param limit Largest message to reassemble, in bytes. */
  constructor(limit: number) {
    this.#limit = limit;
  }

  /**
   * Takes one piece (a whole `KIND_PART`/`KIND_PART_END` message). Returns the joined message after
   * the last piece, `undefined` while more are expected, or, for a message that grew past the
   * limit, `{ tooLarge, head }` after its last piece: its size and its first bytes (the frame
   * header, to answer the request). Pieces past the limit are counted, never kept.
   */
  add(piece: Uint8Array): Uint8Array | undefined | { tooLarge: number; head: Uint8Array } {
    const body = piece.subarray(FRAME_HEADER_BYTES);
    if (this.#head === undefined) this.#head = body.slice(0, FRAME_HEADER_BYTES);
    this.#bytes += body.byteLength;
    if (!this.#overflow && this.#bytes > this.#limit) {
      this.#overflow = true;
      this.#parts = [];
    }
    if (!this.#overflow) this.#parts.push(body);
    if (piece[0] !== KIND_PART_END) return undefined;
    if (this.#overflow) {
      const result = { tooLarge: this.#bytes, head: this.#head };
      this.#reset();
      return result;
    }
    const out = new Uint8Array(this.#bytes);
    let at = 0;
    for (const p of this.#parts) {
      out.set(p, at);
      at += p.byteLength;
    }
    this.#reset();
    return out;
  }

  #reset(): void {
    this.#parts = [];
    this.#bytes = 0;
    this.#head = undefined;
    this.#overflow = false;
  }
}

/**
 * Calls `each` for every framed message inside a {@linkcode KIND_BATCH} message, in order.
 *
 * @returns `false` when the batch is malformed (a length runs past the end).
 */
export function forEachInBatch(batch: Uint8Array, each: (message: Uint8Array) => void): boolean {
  let at = FRAME_HEADER_BYTES;
  while (at < batch.byteLength) {
    if (at + 4 > batch.byteLength) return false;
    const n = (batch[at] | (batch[at + 1] << 8) | (batch[at + 2] << 16) | (batch[at + 3] << 24)) >>> 0;
    at += 4;
    if (n < FRAME_HEADER_BYTES || at + n > batch.byteLength) return false;
    each(batch.subarray(at, at + n));
    at += n;
  }
  return true;
}

/**
 * Writes a frame header into the first {@linkcode FRAME_HEADER_BYTES} bytes of `out`.
 *
 * @param out The buffer holding header and body.
 * @param kind One of the `KIND_*` constants.
 * @param id The request id (u32).
 *
 * @example
 * ```ts
 * import { KIND_REPLY, writeHeader } from "./websocket.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const out = new Uint8Array(5);
 * writeHeader(out, KIND_REPLY, 258);
 * deepStrictEqual(out, new Uint8Array([1, 2, 1, 0, 0]));
 * ```
 */
export function writeHeader(out: Uint8Array, kind: number, id: number): void {
  out[0] = kind;
  out[1] = id & 0xff;
  out[2] = (id >>> 8) & 0xff;
  out[3] = (id >>> 16) & 0xff;
  out[4] = (id >>> 24) & 0xff;
}

if (FRAME_HEADROOM !== FRAME_HEADER_BYTES) throw new Error("the codec's headroom must fit the frame header");

/**
 * The message for one frame: header + body. A large body that the codec left room in front of
 * (`encodeFrame`) gets its header written there, in place; any other is copied behind a new header.
 *
 * @param kind One of the `KIND_*` constants.
 * @param id The request id (u32).
 * @param body The frame body.
 * @returns Header and body as one message.
 *
 * @example
 * ```ts
 * import { framed, KIND_REQUEST } from "./websocket.ts";
 * const m = framed(KIND_REQUEST, 7, new Uint8Array([0xf6]));
 * if (m.byteLength !== 6 || m[0] !== KIND_REQUEST || m[1] !== 7) throw new Error("unexpected");
 * ```
 */
export function framed(kind: number, id: number, body: Uint8Array): Uint8Array<ArrayBuffer> {
  const inPlace = claimHeadroom(body);
  if (inPlace !== undefined) {
    writeHeader(inPlace, kind, id);
    return inPlace;
  }
  const out = new Uint8Array(FRAME_HEADER_BYTES + body.byteLength);
  writeHeader(out, kind, id);
  out.set(body, FRAME_HEADER_BYTES);
  return out;
}

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

class WebSocketConnection implements TransportConnection {
  readonly endpoint: string;
  #url: string;
  #token: string | undefined;
  #maxFrameBytes: number;
  #connectTimeoutMs: number;
  #ws: WebSocket | undefined;
  #outbox: Outbox | undefined;
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
      const timer = setTimeout(() => {
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
        clearTimeout(timer);
        ws.onopen = ws.onerror = ws.onclose = null;
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
    try {
      const res = await fetch(httpUrlOf(this.#url), { headers, signal: AbortSignal.timeout(this.#connectTimeoutMs) });
      await res.body?.cancel();
      if (res.status === 401) return authRefused(this.endpoint, this.#token !== undefined);
      return new TransportError(
        "refused",
        `Cannot connect to ${this.endpoint}: the WebSocket upgrade was refused (HTTP ${res.status})`,
        this.endpoint,
      );
    } catch {
      return new TransportError("unreachable", `Cannot connect to ${this.endpoint}: connection failed`, this.endpoint);
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
    ws.onmessage = (evt: MessageEvent) => this.#onMessage(evt.data);
    ws.onclose = (evt: CloseEvent) => {
      const why = evt.code === 1000 || evt.code === 1005
        ? ""
        : ` (code ${evt.code}${evt.reason ? `: ${evt.reason}` : ""})`;
      this.#lost(
        ws,
        new TransportError("closed", `Connection to ${this.endpoint} closed by the peer${why}`, this.endpoint),
      );
    };
    ws.onerror = null;
  }

  #onMessage(data: unknown): void {
    if (!(data instanceof ArrayBuffer)) return; // our server sends binary only
    const bytes = new Uint8Array(data);
    if (bytes.byteLength < FRAME_HEADER_BYTES) return;
    if (bytes[0] === KIND_PART_ACK) return; // it carried the TCP ACK; nothing else to do
    if (bytes[0] === KIND_BATCH) {
      forEachInBatch(bytes, (m) => this.#onFrame(m));
      return;
    }
    this.#onFrame(bytes);
  }

  #onFrame(bytes: Uint8Array): void {
    const kind = bytes[0];
    const id = (bytes[1] | (bytes[2] << 8) | (bytes[3] << 16) | (bytes[4] << 24)) >>> 0;
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
    const body = bytes.subarray(FRAME_HEADER_BYTES);
    if (kind === KIND_REPLY) {
      if (body.byteLength > this.#maxFrameBytes) {
        pending.reject(
          new TransportError(
            "too-large",
            `Reply of ${body.byteLength} bytes from ${this.endpoint} is over the limit of ${this.#maxFrameBytes} bytes`,
            this.endpoint,
          ),
        );
      } else pending.resolve(body);
    } else if (kind === KIND_ERROR) pending.reject(decodeError(body));
    else {pending.reject(
        new TransportError("bad-frame", `Unexpected frame kind ${kind} from ${this.endpoint}`, this.endpoint),
      );}
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
    ws.onmessage = ws.onclose = ws.onerror = null;
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
    let id = this.#nextId;
    this.#nextId = id === 0xffffffff ? 1 : id + 1;
    while (this.#pending.has(id)) id = this.#nextId++; // only after 4 billion requests with one stuck
    const out = framed(KIND_REQUEST, id, frame);
    return new Promise<Uint8Array>((resolve, reject) => {
      const pending: Pending = { resolve, reject, cleanup: undefined };
      this.#pending.set(id, pending);
      if (options) pending.cleanup = armRequest(pending, options, this.endpoint, () => this.#pending.delete(id));
      if (this.#ws === ws && this.#outbox !== undefined) this.#outbox.push(out);
      else ws.send(out);
    });
  }

  notify(frame: Uint8Array): void {
    if (this.#closed || frame.byteLength > this.#maxFrameBytes) return;
    const out = framed(KIND_NOTIFY, 0, frame);
    const ws = this.#ws;
    if (ws !== undefined && ws.readyState === 1 && this.#outbox !== undefined) this.#outbox.push(out);
    else this.open().then((ws) => ws.send(out), () => {});
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
