/**
 * Streams over the wire, both ends. A call whose result is a stream is answered with a `chunk` (its
 * first items); the consumer asks for each next chunk with a `credit` request, which also grants
 * the producer more items and bytes. The node calls the producer's `next()` only while it holds
 * credit, so a producer never runs further ahead of its consumer than the window (in items, and
 * about that many bytes). Small items travel many to a chunk: the node sends what it has as soon as
 * the producer has to wait (or a chunk is full), and the first item at once.
 *
 * Why requests and replies (a pull) rather than frames pushed by the node: every transport already
 * carries requests and replies, in order, failing them all when the connection drops, so a node
 * that dies mid-stream fails the consumer's pending request (`NodeLostError`) with no new path.
 * Streams need a connection that tells the node when its consumer went away (WebSocket, in-memory):
 * over HTTP each request stands alone, so a consumer that vanished would leave its producer parked
 * for ever. There a streaming call fails with an error saying so.
 *
 * @module
 */
import { errorFromWire, errorToWire } from "../core/codec.ts";
import { OpExecutionError, TimeoutError } from "../core/errors.ts";
import type { Stream } from "../core/stream.ts";
import { type ChunkMessage, encodeMessage } from "./protocol.ts";
import type { PeerInfo } from "./transport.ts";

/** A consumer's credit window: items (and about how many bytes of them) a producer may run ahead. */
export interface StreamWindow {
  /** Items (default {@linkcode DEFAULT_STREAM_WINDOW}'s 4096). */
  items?: number;
  /** Bytes, as {@linkcode itemBytes} estimates them (default 4 MiB). */
  bytes?: number;
}

/**
 * The default credit window of a stream over the wire: 4096 items and 4 MiB (a mesh's
 * `streamWindow` sets another).
 *
 * @example
 * ```ts
 * import { DEFAULT_STREAM_WINDOW, resolveStreamWindow } from "./stream_wire.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * deepStrictEqual(resolveStreamWindow(undefined), { ...DEFAULT_STREAM_WINDOW });
 * ```
 */
export const DEFAULT_STREAM_WINDOW: Readonly<Required<StreamWindow>> = Object.freeze({
  items: 4096,
  bytes: 4 * 1024 * 1024,
});

const DEFAULT_WINDOW: Required<StreamWindow> = DEFAULT_STREAM_WINDOW;

/** Most items in one chunk. */
const CHUNK_ITEMS = 512;
/** Most items in a stream's first chunk (the answer to its call). */
const FIRST_CHUNK_ITEMS = 16;
/** Microtask turns a watch waits to learn whether the producer waits (see StreamOutlets.#watch). */
const WATCH_TURNS = 8;
/** A chunk is sent once it holds about this many bytes. */
const CHUNK_BYTES = 64 * 1024;

/**
 * About how many bytes an item takes on the wire (counted against a window's bytes): a byte string
 * or typed array its length, a string its length, anything else 16. An estimate, cheap per item.
 *
 * @param item A stream item.
 * @returns Its estimated size.
 *
 * @example
 * ```ts
 * import { itemBytes } from "./stream_wire.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(itemBytes(new Float32Array(4)), 24);
 * strictEqual(itemBytes("abc"), 11);
 * ```
 */
export function itemBytes(item: unknown): number {
  if (typeof item === "string") return 8 + item.length;
  if (ArrayBuffer.isView(item)) return 8 + item.byteLength;
  return 16;
}

/**
 * Checks a window given by a user (a mesh's `streamWindow`): positive integers.
 *
 * @param window The window, or `undefined` for the default.
 * @returns The window with defaults filled in.
 * @throws {RangeError} For counts that are not positive integers.
 *
 * @example
 * ```ts
 * import { resolveStreamWindow } from "./stream_wire.ts";
 * import { deepStrictEqual, throws } from "node:assert/strict";
 * deepStrictEqual(resolveStreamWindow({ items: 8 }), { items: 8, bytes: 4 * 1024 * 1024 });
 * throws(() => resolveStreamWindow({ items: 0 }), RangeError);
 * ```
 */
export function resolveStreamWindow(window: StreamWindow | undefined): Required<StreamWindow> {
  if (window === undefined) return DEFAULT_WINDOW; // every call without a window of its mesh's
  const items = window?.items ?? DEFAULT_STREAM_WINDOW.items;
  const bytes = window?.bytes ?? DEFAULT_STREAM_WINDOW.bytes;
  for (const [k, v] of [["items", items], ["bytes", bytes]] as const) {
    if (!(Number.isSafeInteger(v) && v > 0)) {
      throw new RangeError(`A stream window's ${k} must be a positive integer, got ${String(v)}`);
    }
  }
  return { items, bytes };
}

// ---- the node's end ------------------------------------------------------------------------------

interface Outlet {
  readonly stream: Stream<unknown>;
  items: number;
  bytes: number;
  buffer: unknown[];
  bufferBytes: number;
  /** Chunks asked for and not yet answered, oldest first. */
  readonly pulls: ((frame: Uint8Array) => void)[];
  pumping: boolean;
  ended: boolean;
  error: unknown;
  sentFirst: boolean;
  /** Items made so far, and chunks sent: a watch compares them to learn whether the producer waits. */
  made: number;
  sent: number;
  /** A watch is on: a chunk is asked for and items are buffered (see #watch). */
  watching: boolean;
  /** The watch's macrotask, once the producer proved busy. */
  tick: ReturnType<typeof setTimeout> | undefined;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** Takes the producer's items (Stream.drain), one function for the outlet's life. */
  take: (item: unknown) => boolean;
  /** The call's key. */
  readonly key: string;
  /** The open streams of the connection it came on (it leaves them when it ends). */
  readonly peers: Set<Outlet> | undefined;
}

/**
 * The node's open streams, by call: each produces while its consumer holds credit and answers
 * `credit` requests with chunks. A stream ends (its generator's `finally` runs, everything freed)
 * when it is done, when its consumer cancels it, when its deadline passes, or when the connection
 * it came on closes.
 *
 * @example Over an in-memory node, a stream of 5 items with a window of 2
 * ```ts
 * import * as ta from "../mod.ts";
 * import { NodeServer } from "./node_server.ts";
 * import { serveInMemory } from "./in_memory.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const count = ta.op({ name: "docStreamOutletsCount", remote: true }, async function* (n: number) {
 *   for (let i = 0; i < n; i++) yield i;
 * });
 * const node = new NodeServer({ name: "n1" });
 * const server = serveInMemory("doc-stream-outlets", node.handler);
 * await using mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: "mem://doc-stream-outlets" })], {
 *   streamWindow: { items: 2 },
 * });
 * const got = await mesh.run(async () => {
 *   const out: number[] = [];
 *   for await (const x of await count.go(5)) out.push(x);
 *   return out;
 * });
 * deepStrictEqual(got, [0, 1, 2, 3, 4]);
 * await node.drain();
 * await server.close();
 * ```
 */
export class StreamOutlets {
  readonly #open = new Map<string, Outlet>();
  readonly #connections = new Map<AbortSignal, Set<Outlet>>();

  /** Streams open now. */
  get size(): number {
    return this.#open.size;
  }

  /**
   * Starts sending `stream`, the result of call `key`: resolves with its first chunk. Over HTTP,
   * where no connection tells the node that its consumer went away, the stream is stopped and the
   * call answered with an `OpExecutionError` saying that streams need the WebSocket transport.
   *
   * @param key The call's key (connection and call id).
   * @param stream The call's result.
   * @param call The call (its window and deadline) and its name.
   * @param peer Who called: the transport, and the connection's signal (aborted when it closes).
   * @returns The first chunk's frame (or the refusal's).
   */
  open(
    key: string,
    stream: Stream<unknown>,
    call: { creditItems?: number; creditBytes?: number; timeoutMs?: number; name: string; op?: string },
    peer: PeerInfo | undefined,
  ): Promise<Uint8Array> {
    if (peer?.transport === "http") {
      stream.cancel();
      const error = new OpExecutionError(
        call.op ?? call.name,
        new TypeError(
          `its result is a stream, and streams need the WebSocket transport (ws://): over HTTP each request ` +
            "stands alone, so the node could not tell when the consumer went away",
        ),
      );
      return Promise.resolve(encodeMessage({ t: "result", ok: false, error: errorToWire(error) }));
    }
    const old = this.#open.get(key);
    if (old !== undefined) this.#end(key, old, undefined); // a call id reused: the old stream is over
    const signal = peer?.signal;
    const outlet: Outlet = {
      stream,
      items: call.creditItems ?? DEFAULT_STREAM_WINDOW.items,
      bytes: call.creditBytes ?? DEFAULT_STREAM_WINDOW.bytes,
      buffer: [],
      bufferBytes: 0,
      pulls: [],
      pumping: false,
      ended: false,
      error: undefined,
      sentFirst: false,
      made: 0,
      sent: 0,
      watching: false,
      tick: undefined,
      timer: undefined,
      take: (item) => this.#take(key, outlet, item),
      key,
      peers: signal === undefined || signal.aborted ? undefined : this.#connection(signal),
    };
    this.#open.set(key, outlet);
    outlet.peers?.add(outlet);
    const ms = call.timeoutMs;
    if (ms !== undefined && ms < 2 ** 31) {
      outlet.timer = setTimeout(() => {
        outlet.timer = undefined;
        stream.cancel(new TimeoutError(call.name, ms));
      }, ms);
    }
    const first = this.#pull(key, outlet);
    if (signal?.aborted) this.cancel(key);
    return first;
  }

  /**
   * The open streams of the connection whose frames carry `signal`: made, with one listener that
   * stops them all when the connection closes, on its first stream (a listener per stream would
   * cost an add and a remove each, and adding one scans the others).
   */
  #connection(signal: AbortSignal): Set<Outlet> {
    let outlets = this.#connections.get(signal);
    if (outlets === undefined) {
      const made = outlets = new Set();
      this.#connections.set(signal, made);
      signal.addEventListener("abort", () => {
        this.#connections.delete(signal);
        for (const outlet of [...made]) this.cancel(outlet.key);
      }, { once: true });
    }
    return outlets;
  }

  /**
   * The consumer of call `key`'s stream grants more credit and asks for the next chunk.
   *
   * @param key The call's key.
   * @param items Items granted.
   * @param bytes Bytes granted.
   * @returns The next chunk's frame, once there is one; an ended stream's last word if it is over.
   */
  credit(key: string, items: number, bytes: number): Promise<Uint8Array> {
    const outlet = this.#open.get(key);
    if (outlet === undefined) {
      // ended and said so already (or never was): the consumer asked once more than needed
      return Promise.resolve(encodeMessage({ t: "chunk", items: [], done: true } satisfies ChunkMessage));
    }
    outlet.items += items;
    outlet.bytes += bytes;
    return this.#pull(key, outlet);
  }

  /**
   * Stops call `key`'s stream (its consumer cancelled it, or went away): the producer's `finally`
   * runs. Returns `false` when no such stream is open.
   *
   * @param key The call's key.
   * @returns Whether a stream was stopped.
   */
  cancel(key: string): boolean {
    const outlet = this.#open.get(key);
    if (outlet === undefined) return false;
    outlet.stream.cancel();
    this.#end(key, outlet, undefined);
    return true;
  }

  /** Stops every stream (the node drains). */
  cancelAll(): void {
    for (const key of [...this.#open.keys()]) this.cancel(key);
  }

  #pull(key: string, outlet: Outlet): Promise<Uint8Array> {
    const p = new Promise<Uint8Array>((resolve) => outlet.pulls.push(resolve));
    // while the producer runs, it sends when a chunk is full or it has to wait: answering at once
    // with what is buffered would send a few items per chunk
    if (outlet.pumping) {
      if (outlet.buffer.length > 0 && !outlet.watching) this.#watch(key, outlet);
      return p;
    }
    if (outlet.buffer.length > 0 || outlet.ended) this.#flush(key, outlet);
    else void this.#pump(key, outlet);
    return p;
  }

  /**
   * A chunk is asked for while the producer runs and items are buffered: what is buffered goes as
   * soon as the producer has to wait (a model's next token). A producer that makes nothing within a
   * few microtask turns waits, and the items go now; one that made more is busy, and they go when
   * its chunk is full or at the next macrotask (which runs only once the microtasks ran out, that is
   * when the producer waits or has no credit left). One watch per chunk, not a check per item.
   */
  #watch(key: string, outlet: Outlet): void {
    outlet.watching = true;
    const made = outlet.made, sent = outlet.sent;
    let turns = WATCH_TURNS;
    // one microtask per turn, and none once a flush sent the chunk (which ends this watch): a short
    // stream, whose chunk goes when its producer ends a turn or two later, does not wait behind 8
    const turn = (): void => {
      if (outlet.sent !== sent || outlet.ended) return; // sent meanwhile: that flush ended this watch
      if (--turns > 0) return queueMicrotask(turn);
      if (outlet.made === made) return this.#flush(key, outlet);
      outlet.tick = setTimeout(() => {
        outlet.tick = undefined;
        if (outlet.sent === sent) this.#flush(key, outlet);
      }, 0);
    };
    queueMicrotask(turn);
  }

  /** Takes one item of the producer's: buffers it, sends a full chunk; `false` once credit is spent. */
  #take(key: string, outlet: Outlet, item: unknown): boolean {
    if (outlet.ended) return false; // cancelled meanwhile
    const size = itemBytes(item);
    outlet.buffer.push(item);
    outlet.bufferBytes += size;
    outlet.items--;
    outlet.bytes -= size;
    outlet.made++;
    // the first chunk is small, so the first item is not held back while many more are made
    const full = outlet.sentFirst ? CHUNK_ITEMS : FIRST_CHUNK_ITEMS;
    if (outlet.buffer.length >= full || outlet.bufferBytes >= CHUNK_BYTES) this.#flush(key, outlet);
    else if (outlet.pulls.length > 0 && !outlet.watching) this.#watch(key, outlet);
    return !outlet.ended && outlet.items > 0 && outlet.bytes > 0;
  }

  /** Takes the producer's items while the consumer holds credit. */
  async #pump(key: string, outlet: Outlet): Promise<void> {
    if (outlet.pumping) return;
    outlet.pumping = true;
    try {
      if (!outlet.ended && outlet.items > 0 && outlet.bytes > 0 && await outlet.stream.drain(outlet.take)) {
        outlet.ended = true;
      }
    } catch (e) {
      if (!outlet.ended) {
        outlet.ended = true;
        outlet.error = e;
      }
    } finally {
      outlet.pumping = false;
    }
    this.#flush(key, outlet);
  }

  /** Answers the oldest chunk asked for with what is buffered (and the end, if it came). */
  #flush(key: string, outlet: Outlet): void {
    if (outlet.pulls.length === 0 || (outlet.buffer.length === 0 && !outlet.ended)) return;
    const answer = outlet.pulls.shift()!;
    outlet.sent++;
    outlet.watching = false;
    if (outlet.tick !== undefined) clearTimeout(outlet.tick);
    outlet.tick = undefined;
    const items = outlet.buffer;
    outlet.buffer = [];
    outlet.bufferBytes = 0;
    outlet.sentFirst = true;
    const last = outlet.ended;
    let frame: Uint8Array;
    try {
      frame = last
        ? encodeMessage(
          outlet.error === undefined
            ? { t: "chunk", items, done: true }
            : { t: "chunk", items, done: true, error: errorToWire(outlet.error) },
        )
        : encodeMessage({ t: "chunk", items, done: false });
    } catch (e) {
      // an item that cannot travel ends the stream, with the reason
      outlet.stream.cancel();
      const error = new OpExecutionError(
        "stream",
        new TypeError(`a stream item cannot be sent: ${(e as Error).message}`),
      );
      frame = encodeMessage({ t: "chunk", items: [], done: true, error: errorToWire(error) });
      this.#end(key, outlet, undefined);
      answer(frame);
      return;
    }
    if (last) this.#end(key, outlet, undefined);
    answer(frame);
  }

  #end(key: string, outlet: Outlet, _error: unknown): void {
    outlet.ended = true;
    if (outlet.timer !== undefined) clearTimeout(outlet.timer);
    outlet.timer = undefined;
    if (outlet.tick !== undefined) clearTimeout(outlet.tick);
    outlet.tick = undefined;
    outlet.peers?.delete(outlet);
    if (this.#open.get(key) === outlet) this.#open.delete(key);
    // pulls still waiting learn that it is over
    if (outlet.pulls.length === 0) return;
    for (const answer of outlet.pulls.splice(0)) answer(encodeMessage({ t: "chunk", items: [], done: true }));
  }
}

// ---- the consumer's end --------------------------------------------------------------------------

/** How a consumer's chunks are asked for: a `credit` request on its link, and a `cancel`. */
export interface ChunkSource {
  /** Sends `credit` and resolves with the next chunk. */
  credit(items: number, bytes: number): Promise<ChunkMessage>;
  /** Tells the node to stop the stream (one-way). */
  cancel(): void;
  /** Turns an item that arrived into the value the consumer gets (handles in it). */
  revive?(item: unknown): unknown;
}

/**
 * The consumer's end of a stream over the wire, an async iterator: it holds the items that arrived,
 * grants the producer more credit as they are taken (half a window at a time, or whenever it has
 * taken all it holds), and keeps a chunk asked for while the producer may send more.
 *
 * @example Two chunks, with credit granted between them
 * ```ts
 * import { RemoteChunks } from "./stream_wire.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * let asked = 0;
 * const source = {
 *   credit: async () => (asked++, { t: "chunk" as const, items: asked === 1 ? [3] : [], done: true }),
 *   cancel() {},
 * };
 * const it = new RemoteChunks(source, { t: "chunk", items: [1, 2], done: false }, { items: 2, bytes: 1024 });
 * const got: unknown[] = [];
 * for (let r = await it.next(); !r.done; r = await it.next()) got.push(r.value);
 * deepStrictEqual(got, [1, 2, 3]);
 * ```
 */
export class RemoteChunks implements AsyncIterator<unknown> {
  readonly #source: ChunkSource;
  readonly #window: Required<StreamWindow>;
  #buffer: readonly unknown[];
  #head = 0;
  #done: boolean;
  #error: unknown;
  /** Items (bytes) the producer may still send without more credit, as far as this end knows. */
  #owedItems: number;
  #owedBytes: number;
  /** Items (bytes) taken since the last grant. */
  #takenItems = 0;
  #takenBytes = 0;
  #pulls = 0;
  #inOrder: Promise<void> = Promise.resolve();
  #waiter: { resolve: (r: IteratorResult<unknown>) => void; reject: (e: unknown) => void } | undefined;

  readonly #onEnd: (() => void) | undefined;
  #ended = false;

  /**
   * @param source How to ask for chunks.
   * @param first The call's answer: the first chunk.
   * @param window The window this consumer granted with the call.
   * @param onEnd Called once, when the stream ended (all taken, failed, or left early).
   */
  constructor(source: ChunkSource, first: ChunkMessage, window: Required<StreamWindow>, onEnd?: () => void) {
    this.#onEnd = onEnd;
    this.#source = source;
    this.#window = window;
    this.#buffer = first.items;
    this.#done = first.done;
    this.#error = first.error === undefined ? undefined : errorFromWire(first.error);
    this.#owedItems = window.items - first.items.length;
    let b = 0;
    for (const x of first.items) b += itemBytes(x);
    this.#owedBytes = window.bytes - b;
  }

  /** The chunks themselves (a call's result: `stream_call.ts` wraps it in a `Stream`). */
  [Symbol.asyncIterator](): this {
    return this;
  }

  #endOnce(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#onEnd?.();
  }

  /** The next item when one is here already (no wait), else `undefined`; `Stream` asks this first. */
  tryNext(): IteratorResult<unknown> | undefined {
    if (this.#head >= this.#buffer.length) return undefined;
    const value = this.#take();
    if (this.#due()) this.#ask();
    return { done: false, value };
  }

  next(): Promise<IteratorResult<unknown>> {
    if (this.#head < this.#buffer.length) {
      const value = this.#take();
      if (this.#due()) this.#ask();
      return Promise.resolve({ done: false, value });
    }
    if (this.#done) {
      this.#endOnce();
      if (this.#error !== undefined) {
        const e = this.#error;
        this.#error = undefined;
        return Promise.reject(e);
      }
      return Promise.resolve({ done: true, value: undefined });
    }
    this.#ask();
    return new Promise((resolve, reject) => (this.#waiter = { resolve, reject }));
  }

  return(): Promise<IteratorResult<unknown>> {
    if (!this.#done) {
      this.#done = true;
      this.#source.cancel();
    }
    this.#endOnce();
    this.#buffer = [];
    this.#head = 0;
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.resolve({ done: true, value: undefined });
    return Promise.resolve({ done: true, value: undefined });
  }

  #take(): unknown {
    const raw = this.#buffer[this.#head++];
    this.#takenItems++;
    this.#takenBytes += itemBytes(raw);
    return this.#source.revive === undefined ? raw : this.#source.revive(raw);
  }

  /**
   * Whether {@linkcode RemoteChunks.#ask} may have something to do after an item was taken: only once
   * this end has taken all it holds, or half a window since the last grant (a cheap test per item).
   */
  #due(): boolean {
    return this.#head >= this.#buffer.length || this.#takenItems * 2 >= this.#window.items ||
      this.#takenBytes * 2 >= this.#window.bytes;
  }

  /** Grants credit when due, and keeps a chunk asked for while the producer may send more. */
  #ask(): void {
    if (this.#done) return;
    const caughtUp = this.#head >= this.#buffer.length;
    const grant = this.#takenItems > 0 && this.#due();
    const mayComeUnasked = this.#owedItems > 0 && this.#owedBytes > 0;
    if (!grant && (this.#pulls > 0 || !mayComeUnasked || !caughtUp)) return;
    const items = grant ? this.#takenItems : 0, bytes = grant ? this.#takenBytes : 0;
    this.#takenItems = this.#takenBytes = 0;
    this.#owedItems += items;
    this.#owedBytes += bytes;
    this.#pulls++;
    const reply = this.#source.credit(items, bytes);
    // chunks are taken in the order they were asked for, whatever order their replies resolve in
    this.#inOrder = this.#inOrder.then(() => reply).then((chunk) => this.#onChunk(chunk), (e) => this.#fail(e));
  }

  #onChunk(chunk: ChunkMessage): void {
    this.#pulls--;
    if (this.#done && this.#waiter === undefined) return; // returned meanwhile
    const rest = this.#buffer.length - this.#head;
    let b = 0;
    for (const x of chunk.items) b += itemBytes(x);
    this.#owedItems -= chunk.items.length;
    this.#owedBytes -= b;
    this.#buffer = rest === 0 ? chunk.items : [...this.#buffer.slice(this.#head), ...chunk.items];
    this.#head = 0;
    if (chunk.done) {
      this.#done = true;
      if (chunk.error !== undefined) this.#error = errorFromWire(chunk.error);
    }
    const w = this.#waiter;
    if (w === undefined) return;
    if (this.#head < this.#buffer.length) {
      this.#waiter = undefined;
      const value = this.#take();
      w.resolve({ done: false, value });
      this.#ask();
    } else if (this.#done) {
      this.#waiter = undefined;
      this.#endOnce();
      if (this.#error !== undefined) {
        const e = this.#error;
        this.#error = undefined;
        w.reject(e);
      } else w.resolve({ done: true, value: undefined });
    } else this.#ask();
  }

  #fail(e: unknown): void {
    this.#pulls--;
    if (this.#done) return;
    this.#done = true;
    const w = this.#waiter;
    this.#waiter = undefined;
    if (w !== undefined) {
      this.#endOnce();
      w.reject(e);
    } else this.#error = e;
  }
}
