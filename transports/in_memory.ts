/**
 * The in-memory transport: nodes inside this process, reached as `mem://<name>`. Frames are copied
 * both ways (no buffer is shared between client and server) and error replies go through the
 * codec, so tests catch what the wire would break.
 *
 * @module
 */
import { frameBytes, inlineFrame } from "../core/codec.ts";
import { describe } from "../core/describe.ts";
import { TransportError } from "../core/errors.ts";
import { checkKnownKeys, checkOptionType, type KnownKeys } from "../core/options.ts";
import {
  armRequest,
  authRefused,
  closedError,
  CloseListeners,
  decodeError,
  encodeError,
  newConnectionId,
  type Pending,
  replyTooLarge,
  tokenMatches,
} from "./_common.ts";
import {
  checkFrameSize,
  type ConnectOptions,
  type FrameHandler,
  type PeerInfo,
  type RequestOptions,
  resolveMaxFrameBytes,
  type ServeFramesOptions,
  type Transport,
  type TransportConnection,
} from "./transport.ts";

interface InMemoryServer {
  readonly handler: FrameHandler;
  readonly token: string | undefined;
  /** With a token: whether it is a given one (what {@linkcode PeerInfo.holdsToken} tells the handler). */
  readonly holdsToken: ((token: string) => boolean) | undefined;
  readonly maxFrameBytes: number;
  readonly connections: Set<InMemoryConnection>;
}

const servers = new Map<string, InMemoryServer>();

const SERVE_OPTION_KEYS: KnownKeys<ServeFramesOptions> = { token: true, maxFrameBytes: true };

/** A frame as another process would get it: a copy, its large arrays written in (one copy of them). */
function copyFrame(frame: Uint8Array): Uint8Array {
  const whole = inlineFrame(frame);
  return whole === frame ? frame.slice() : whole;
}
/** A running in-memory node; `close()` drops its connections and frees the name. */
export interface InMemoryServerHandle {
  /** `mem://<name>`. */
  readonly endpoint: string;
  /** Stops serving: pending requests of every client reject with `TransportError("closed")`. */
  close(): Promise<void>;
}

/**
 * Serves `handler` in this process under `mem://<name>`.
 *
 * @param name The node's name; must not be in use.
 * @param handler Gets each frame, returns the reply frame.
 * @param options Token and frame size limit.
 * @returns The handle with the endpoint and `close()`.
 * @throws {TypeError} For a bad name or handler, an unknown option (naming the closest one) or a
 * token that is not a string.
 * @throws {Error} When a server with that name is already running.
 *
 * @example Echo server
 * ```ts
 * import { inMemoryTransport, serveInMemory } from "./in_memory.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const server = serveInMemory("echo-doc", (frame) => frame);
 * const conn = await inMemoryTransport.connect(server.endpoint);
 * deepStrictEqual(await conn.request(new Uint8Array([1, 2])), new Uint8Array([1, 2]));
 * await conn.close();
 * await server.close();
 * ```
 */
export function serveInMemory(
  name: string,
  handler: FrameHandler,
  options: ServeFramesOptions = {},
): InMemoryServerHandle {
  if (typeof name !== "string" || name === "" || name.includes("/")) {
    throw new TypeError(`Cannot serve in memory: name must be a non-empty string without "/", found ${describe(name)}`);
  }
  const who = `serveInMemory ${JSON.stringify(name)}`;
  if (typeof handler !== "function") {
    throw new TypeError(`${who}: handler must be a function, got ${describe(handler)}`);
  }
  // a typo must not pass unnoticed: a "tokn" would serve with no token at all
  checkKnownKeys(who, options, SERVE_OPTION_KEYS);
  checkOptionType(who, "token", options.token, "string");
  const token = options.token;
  if (servers.has(name)) throw new Error(`Cannot serve in memory as "${name}": that name is already in use`);
  const server: InMemoryServer = {
    handler,
    token: options.token,
    holdsToken: token === undefined ? undefined : (t: string) => tokenMatches(t, token),
    maxFrameBytes: resolveMaxFrameBytes(options.maxFrameBytes),
    connections: new Set(),
  };
  servers.set(name, server);
  const endpoint = `mem://${name}`;
  return {
    endpoint,
    close(): Promise<void> {
      if (servers.get(name) === server) servers.delete(name);
      for (const conn of [...server.connections]) {
        conn.drop(new TransportError("closed", `Connection to ${endpoint} closed: the node stopped`, endpoint));
      }
      return Promise.resolve();
    },
  };
}

function nameOf(endpoint: string): string {
  if (!endpoint.startsWith("mem://")) {
    throw new TypeError(`Cannot connect in memory to ${endpoint}: expected an endpoint like mem://name`);
  }
  return endpoint.slice("mem://".length).replace(/\/+$/, "");
}

class InMemoryConnection implements TransportConnection {
  readonly endpoint: string;
  #name: string;
  #token: string | undefined;
  #maxFrameBytes: number;
  #server: InMemoryServer | undefined;
  #peer: PeerInfo;
  #notifyPeer: PeerInfo;
  #pending = new Set<Pending>();
  #listeners = new CloseListeners();
  #closed = false;

  constructor(endpoint: string, name: string, options: ConnectOptions) {
    this.endpoint = endpoint;
    this.#name = name;
    this.#token = options.token;
    this.#maxFrameBytes = resolveMaxFrameBytes(options.maxFrameBytes);
    const connectionId = newConnectionId();
    this.#peer = { transport: "in_memory", connectionId, oneWay: false };
    this.#notifyPeer = { transport: "in_memory", connectionId, oneWay: true };
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Attaches to the server now registered under the name (connect, or reconnect after a restart). */
  attach(): InMemoryServer {
    if (this.#server) return this.#server;
    const server = servers.get(this.#name);
    if (!server) {
      throw new TransportError(
        "unreachable",
        `Cannot connect to ${this.endpoint}: no node serves that name`,
        this.endpoint,
      );
    }
    if (!tokenMatches(this.#token, server.token)) throw authRefused(this.endpoint, this.#token !== undefined);
    if (this.#peer.holdsToken !== server.holdsToken || this.#peer.maxFrameBytes !== server.maxFrameBytes) {
      // let in for the token: the handler may ask which one it is (and the server's frame limit)
      const { holdsToken, maxFrameBytes } = server;
      this.#peer = { ...this.#peer, holdsToken, maxFrameBytes };
      this.#notifyPeer = { ...this.#notifyPeer, holdsToken, maxFrameBytes };
    }
    server.connections.add(this);
    this.#server = server;
    return server;
  }

  request(frame: Uint8Array, options?: RequestOptions): Promise<Uint8Array> {
    if (this.#closed) return Promise.reject(closedError(this.endpoint));
    if (options?.signal?.aborted) return Promise.reject(options.signal.reason);
    const tooLarge = checkFrameSize(frame, this.#maxFrameBytes, this.endpoint);
    if (tooLarge) return Promise.reject(tooLarge);
    let server: InMemoryServer;
    try {
      server = this.attach();
    } catch (err) {
      return Promise.reject(err);
    }
    const copy = copyFrame(frame);
    return new Promise<Uint8Array>((resolve, reject) => {
      const pending: Pending = { resolve, reject, cleanup: undefined };
      this.#pending.add(pending);
      pending.cleanup = armRequest(pending, options, this.endpoint, () => this.#pending.delete(pending));
      // A microtask, like a network hop: the handler never runs inside the caller's stack, and
      // handlers start in request order.
      queueMicrotask(() => this.#run(server, copy, pending));
    });
  }

  async #run(server: InMemoryServer, frame: Uint8Array, pending: Pending): Promise<void> {
    if (!this.#pending.has(pending)) return; // aborted or dropped before it started
    if (frame.byteLength > server.maxFrameBytes) {
      return this.#settle(
        pending,
        undefined,
        new TransportError(
          "too-large",
          `Node ${this.endpoint} refused a frame of ${frame.byteLength} bytes: its limit is ${server.maxFrameBytes} bytes`,
          this.endpoint,
        ),
      );
    }
    let reply: Uint8Array | undefined;
    try {
      reply = await server.handler(frame, this.#peer);
    } catch (err) {
      return this.#settle(pending, undefined, decodeError(encodeError(err)));
    }
    if (!(reply instanceof Uint8Array)) {
      return this.#settle(
        pending,
        undefined,
        decodeError(encodeError(
          new TypeError(`The node's frame handler returned ${typeof reply} for a request, expected a Uint8Array`),
        )),
      );
    }
    reply = copyFrame(reply);
    // the node's own limit on what it sends, as a node serving a socket holds it
    if (frameBytes(reply) > server.maxFrameBytes) {
      return this.#settle(pending, undefined, replyTooLarge(frameBytes(reply), server.maxFrameBytes));
    }
    if (reply.byteLength > this.#maxFrameBytes) {
      return this.#settle(
        pending,
        undefined,
        new TransportError(
          "too-large",
          `Reply of ${reply.byteLength} bytes from ${this.endpoint} is over the limit of ${this.#maxFrameBytes} bytes`,
          this.endpoint,
        ),
      );
    }
    this.#settle(pending, reply, undefined);
  }

  #settle(pending: Pending, value: Uint8Array | undefined, error: unknown): void {
    if (!this.#pending.delete(pending)) return;
    pending.cleanup?.();
    if (value) pending.resolve(value);
    else pending.reject(error);
  }

  notify(frame: Uint8Array): void {
    if (this.#closed || frameBytes(frame) > this.#maxFrameBytes) return;
    let server: InMemoryServer;
    try {
      server = this.attach();
    } catch {
      return;
    }
    const copy = copyFrame(frame);
    queueMicrotask(async () => {
      try {
        await server.handler(copy, this.#notifyPeer);
      } catch {
        // one-way: nobody to tell
      }
    });
  }

  /** The server went away: fail what is pending; the next request attaches again. */
  drop(reason: TransportError): void {
    this.#server?.connections.delete(this);
    this.#server = undefined;
    const pending = [...this.#pending];
    this.#pending.clear();
    for (const p of pending) {
      p.cleanup?.();
      p.reject(reason);
    }
    this.#listeners.emit(reason);
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    this.drop(closedError(this.endpoint));
    return Promise.resolve();
  }

  onClose(listener: (reason: TransportError) => void): () => void {
    return this.#listeners.add(listener);
  }
}

/**
 * The in-memory transport (`mem://<name>`).
 *
 * @example Unknown names are unreachable
 * ```ts
 * import { inMemoryTransport } from "./in_memory.ts";
 * import { TransportError } from "../core/errors.ts";
 * import { rejects } from "node:assert/strict";
 * await rejects(inMemoryTransport.connect("mem://nobody"), TransportError);
 * ```
 */
export const inMemoryTransport: Transport = {
  name: "in_memory",
  connect(endpoint: string, options: ConnectOptions = {}): Promise<TransportConnection> {
    try {
      const conn = new InMemoryConnection(endpoint, nameOf(endpoint), options);
      conn.attach();
      return Promise.resolve(conn);
    } catch (err) {
      return Promise.reject(err);
    }
  },
};
