/**
 * The HTTP transport: each request is one `POST /rpc` whose body is one CBOR frame
 * (`content-type: application/cbor`); the reply is the response body. Error replies carry the
 * header `x-thinkagain-error: 1` and a CBOR `{ tag, message, data }` body. One-way frames carry
 * `x-thinkagain-notify: 1` and are answered 202 at once. The token travels as
 * `Authorization: Bearer`; a 401 is reported as `AuthError`. Every request of one client
 * connection carries `x-thinkagain-caller: <id>` (128 random bits, one per connection), by which a
 * node's resident instances serve HTTP drivers in turn, as they do WebSocket connections, and which
 * scopes its call ids there (only its own requests can cancel its calls). Connections are
 * reused by the runtime's `fetch` (HTTP keep-alive).
 *
 * @module
 */
import { frameBytes, inlineFrame } from "../core/codec.ts";
import { TransportError } from "../core/errors.ts";
import { timeoutSignal } from "../core/long_timer.ts";
import {
  authRefused,
  closedError,
  CloseListeners,
  decodeError,
  describeFailure,
  endpointUrl,
  readAtMost,
} from "./_common.ts";
import {
  checkFrameSize,
  type ConnectOptions,
  type RequestOptions,
  resolveMaxFrameBytes,
  type Transport,
  type TransportConnection,
} from "./transport.ts";

/**
 * Maps a node endpoint to its `/rpc` URL: `ws://h:p/ws` and `http://h:p` become `http://h:p/rpc`.
 *
 * @param endpoint A node endpoint.
 * @returns The URL to POST frames to.
 *
 * @example
 * ```ts
 * import { rpcUrl } from "./http.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(rpcUrl("ws://127.0.0.1:7070/ws"), "http://127.0.0.1:7070/rpc");
 * ```
 */
export function rpcUrl(endpoint: string): string {
  const url = endpointUrl(endpoint, "HTTP");
  url.pathname = "/rpc";
  return url.toString();
}

/**
 * The request headers the HTTP transport sends with `POST /rpc`, by what each carries. The client
 * names its headers only from here: a node that lets browser pages in (`allowOrigins`) allows
 * {@linkcode RPC_REQUEST_HEADERS} in its CORS preflight answer, and a header the client sends that
 * the answer leaves out fails every call from a page.
 */
const RPC_HEADER = {
  type: "content-type",
  caller: "x-thinkagain-caller",
  token: "authorization",
  notify: "x-thinkagain-notify",
} as const;

/**
 * Every request header the HTTP transport may send with `POST /rpc`: what a node's CORS preflight
 * answer allows a browser page to send.
 *
 * @example
 * ```ts
 * import { RPC_REQUEST_HEADERS } from "./http.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * deepStrictEqual(
 *   [...RPC_REQUEST_HEADERS].sort(),
 *   ["authorization", "content-type", "x-thinkagain-caller", "x-thinkagain-notify"],
 * );
 * ```
 */
export const RPC_REQUEST_HEADERS: readonly string[] = Object.values(RPC_HEADER);

/**
 * A client connection's name for itself (see `PeerInfo.caller`): 32 random hex digits. It is also
 * the key its call ids are scoped by on a node (`node_calls.ts`): 128 bits, so that no other client
 * can guess it and cancel its calls.
 */
function callerId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  let id = "";
  for (const b of bytes) id += b.toString(16).padStart(2, "0");
  return id;
}

/**
 * The most exchanges one connection has under way at once, each a socket of its own: past it a
 * request waits for one to end (Deno's fetch opens a socket per concurrent request, without bound,
 * until the process runs out of file descriptors; Bun's allows 256 at once, so this stays below and
 * leaves it room for urgent ones).
 *
 * @example
 * ```ts
 * import { MAX_EXCHANGES } from "./http.ts";
 * if (MAX_EXCHANGES >= 256) throw new Error("Bun's fetch would queue past its own bound first");
 * ```
 */
export const MAX_EXCHANGES = 192;

class HttpConnection implements TransportConnection {
  readonly endpoint: string;
  #url: string;
  #headers: Record<string, string>;
  #notifyHeaders: Record<string, string>;
  #hasToken: boolean;
  #maxFrameBytes: number;
  #abort = new AbortController();
  #listeners = new CloseListeners();
  #closed = false;

  constructor(endpoint: string, options: ConnectOptions) {
    this.endpoint = endpoint;
    this.#url = rpcUrl(endpoint);
    // (only names from RPC_HEADER: a node's CORS preflight answer allows those)
    this.#headers = { [RPC_HEADER.type]: "application/cbor", [RPC_HEADER.caller]: callerId() };
    if (options.token !== undefined) this.#headers[RPC_HEADER.token] = `Bearer ${options.token}`;
    this.#notifyHeaders = { ...this.#headers, [RPC_HEADER.notify]: "1" };
    this.#hasToken = options.token !== undefined;
    this.#maxFrameBytes = resolveMaxFrameBytes(options.maxFrameBytes);
  }

  get closed(): boolean {
    return this.#closed;
  }

  async request(frame: Uint8Array, options?: RequestOptions): Promise<Uint8Array> {
    if (this.#closed) throw closedError(this.endpoint);
    const tooLarge = checkFrameSize(frame, this.#maxFrameBytes, this.endpoint);
    if (tooLarge) throw tooLarge;
    // any length (AbortSignal.timeout throws for Infinity and, on Deno, aborts at once past 2^31 ms)
    const timeout = options?.timeoutMs === undefined ? undefined : timeoutSignal(options.timeoutMs);
    try {
      // at most MAX_EXCHANGES at once (an urgent one, a keepalive, goes past them): each is a socket
      if (this.#active >= MAX_EXCHANGES && options?.urgent !== true) {
        await this.#turn(options, timeout?.signal);
      } else this.#active++;
      try {
        return await this.#exchange(frame, options, timeout?.signal);
      } finally {
        this.#release();
      }
    } finally {
      timeout?.cancel();
    }
  }

  /** Exchanges under way (requests and one-way frames): each holds a socket of its own until it ends. */
  #active = 0;
  /** What waits for one of them to end, oldest first: each takes the place it frees. */
  #waiting: (() => void)[] = [];

  /** One exchange ended: the oldest waiting takes its place (unless urgent ones went past the bound). */
  #release(): void {
    if (this.#active <= MAX_EXCHANGES) {
      const next = this.#waiting.shift();
      if (next !== undefined) return next();
    }
    this.#active--;
  }

  /**
   * Waits for an exchange to end and takes its place; rejects as the request would (its signal,
   * its deadline, the connection closed) if one comes first.
   */
  #turn(options: RequestOptions | undefined, timeout: AbortSignal | undefined): Promise<void> {
    const signals = [this.#abort.signal, options?.signal, timeout].filter((s) => s !== undefined);
    return new Promise<void>((resolve, reject) => {
      const stop = () => {
        const i = this.#waiting.indexOf(go);
        if (i >= 0) this.#waiting.splice(i, 1);
        for (const s of signals) s.removeEventListener("abort", stop);
        reject(this.#failure(signals.find((s) => s.aborted)?.reason, options));
      };
      const go = () => {
        for (const s of signals) s.removeEventListener("abort", stop);
        resolve();
      };
      for (const s of signals) {
        if (s.aborted) return stop();
        s.addEventListener("abort", stop, { once: true });
      }
      this.#waiting.push(go);
    });
  }

  /** POSTs `frame` and reads the reply, until a signal (the connection's, the caller's, the deadline's) aborts it. */
  async #exchange(
    frame: Uint8Array,
    options: RequestOptions | undefined,
    timeout: AbortSignal | undefined,
  ): Promise<Uint8Array> {
    const signals = [this.#abort.signal];
    if (options?.signal) signals.push(options.signal);
    if (timeout !== undefined) signals.push(timeout);
    const signal = signals.length === 1 ? signals[0] : AbortSignal.any(signals);
    let res: Response;
    try {
      res = await fetch(this.#url, {
        method: "POST",
        body: inlineFrame(frame) as Uint8Array<ArrayBuffer>, // one body: its large arrays in it
        headers: this.#headers,
        signal,
      });
    } catch (cause) {
      throw this.#failure(cause, options);
    }
    if (res.status === 401) {
      await res.body?.cancel().catch(() => {});
      throw authRefused(this.#url, this.#hasToken);
    }
    const type = res.headers.get("content-type");
    if (res.status === 200 && type !== "application/cbor") {
      // a node answers a frame with a frame: this server is something else
      await res.body?.cancel().catch(() => {});
      throw new TransportError(
        "refused",
        `${this.endpoint} is not a thinkagain node: POST ${this.#url} answered HTTP 200 with ` +
          `${type === null ? "no content-type" : `content-type ${type}`}, not a CBOR frame`,
        this.endpoint,
      );
    }
    const declared = Number(res.headers.get("content-length") ?? "0");
    if (declared > this.#maxFrameBytes) {
      await res.body?.cancel().catch(() => {});
      throw new TransportError(
        "too-large",
        `Reply of ${declared} bytes from ${this.#url} is over the limit of ${this.#maxFrameBytes} bytes`,
        this.endpoint,
      );
    }
    let body: Uint8Array;
    try {
      // a reply without a declared length (chunked) is counted as it arrives, against the same limit
      body = res.headers.get("content-length") !== null || res.body === null
        ? new Uint8Array(await res.arrayBuffer())
        : await readAtMost(res.body, this.#maxFrameBytes, (total) =>
          new TransportError(
            "too-large",
            `Reply from ${this.#url} is over the limit of ${this.#maxFrameBytes} bytes (${total} bytes so far)`,
            this.endpoint,
          ));
    } catch (cause) {
      if (cause instanceof TransportError && cause.reason === "too-large") throw cause;
      throw this.#failure(cause, options);
    }
    if (res.headers.get("x-thinkagain-error") === "1") throw decodeError(body);
    if (res.status === 503) {
      throw new TransportError("closed", `Node at ${this.#url} is shutting down (HTTP 503)`, this.endpoint);
    }
    if (res.status !== 200) {
      throw new TransportError("refused", `POST ${this.#url} answered HTTP ${res.status}`, this.endpoint);
    }
    return body;
  }

  #failure(cause: unknown, options: RequestOptions | undefined): unknown {
    if (this.#abort.signal.aborted) return closedError(this.endpoint);
    if (options?.signal?.aborted) return options.signal.reason;
    if (cause instanceof DOMException && cause.name === "TimeoutError") {
      return new TransportError("io", `No reply from ${this.#url} within ${options?.timeoutMs} ms`, this.endpoint);
    }
    return new TransportError(
      "unreachable",
      `Cannot reach ${this.#url}: ${describeFailure(cause)}`,
      this.endpoint,
      cause,
    );
  }

  notify(frame: Uint8Array): void {
    if (this.#closed || frameBytes(frame) > this.#maxFrameBytes) return;
    const send = () => {
      if (this.#closed) return this.#release();
      fetch(this.#url, {
        method: "POST",
        body: inlineFrame(frame) as Uint8Array<ArrayBuffer>, // one body: its large arrays in it
        headers: this.#notifyHeaders,
        signal: this.#abort.signal,
      }).then((res) => res.body?.cancel(), () => {}).finally(() => this.#release());
    };
    // a socket each too: it waits its turn, never the caller
    if (this.#active < MAX_EXCHANGES) {
      this.#active++;
      send();
    } else this.#waiting.push(send);
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    this.#abort.abort();
    this.#listeners.emit(closedError(this.endpoint));
    return Promise.resolve();
  }

  onClose(listener: (reason: TransportError) => void): () => void {
    return this.#listeners.add(listener);
  }
}

/**
 * The HTTP transport (`http://host:port`, frames to `/rpc`). Connecting opens nothing; each
 * request is one `fetch`, so an unreachable node shows on the first request.
 *
 * @example An unreachable node is a TransportError naming it
 * ```ts
 * import { httpTransport } from "./http.ts";
 * import { TransportError } from "../core/errors.ts";
 * import { rejects } from "node:assert/strict";
 * const conn = await httpTransport.connect("http://127.0.0.1:1");
 * await rejects(conn.request(new Uint8Array([0xa0])), (e) =>
 *   e instanceof TransportError && e.reason === "unreachable" && e.message.includes("http://127.0.0.1:1"));
 * ```
 */
export const httpTransport: Transport = {
  name: "http",
  connect(endpoint: string, options: ConnectOptions = {}): Promise<TransportConnection> {
    try {
      return Promise.resolve(new HttpConnection(endpoint, options));
    } catch (err) {
      return Promise.reject(err);
    }
  },
};
