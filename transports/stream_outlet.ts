/**
 * A stream's node end (see `stream_wire.ts`): the streams a node sends, one {@linkcode StreamOutlets}
 * per node. Each takes its producer's items while its consumer holds credit, into chunks
 * (`stream_chunk.ts`), and answers the chunks asked for: a chunk goes once it is full, or as soon as
 * the producer has to wait, and the first item at once. A full chunk that nobody asked for yet waits,
 * sealed, for its request, and the next items go into a new one: no chunk grows past its bound,
 * whatever the consumer's pace, so none goes over the connection's frame limit.
 *
 * @module
 */
import { encode, errorToWire, frameBytes } from "../core/codec.ts";
import { nextTurn } from "../core/_runtime.ts";
import { type CallName, OpExecutionError, ProtocolError, TimeoutError } from "../core/errors.ts";
import type { Stream, StreamTaker } from "../core/stream.ts";
import { type ChunkMessage, encodeMessage } from "./protocol.ts";
import { DEFAULT_MAX_FRAME_BYTES, type PeerInfo } from "./transport.ts";
import {
  CHUNK_ITEMS,
  CHUNK_ROOM,
  type ChunkWriter,
  decodeChunk,
  EMPTY_OUT,
  takeWritten,
  writeItem,
  writtenFrame,
} from "./stream_chunk.ts";
import { DEFAULT_STREAM_WINDOW, itemBytes } from "./stream_window.ts";

/** Most items in a stream's first chunk (the answer to its call). */
const FIRST_CHUNK_ITEMS = 16;
/** Microtask turns a watch waits to learn whether the producer waits (see StreamOutlets.#watch). */
const WATCH_TURNS = 8;
/**
 * A chunk is full once it holds about this many bytes, or a quarter of the connection's frame limit
 * if that is less: a chunk is at most that and one item, and is cut where it still comes out over
 * the limit (see Outlet.sendItems).
 */
const CHUNK_BYTES = 64 * 1024;

/** An outlet's buffer while it holds no item that is not written as it comes. */
const NO_ITEMS: unknown[] = [];
/** An outlet's sealed chunks while none waits for its request (shared, never written to). */
const NO_FRAMES: Uint8Array[] = [];

/** What an outlet asks of the {@linkcode StreamOutlets} it belongs to. */
interface OutletHome {
  /** Its first chunk leaves and more are to come: it joins the open streams (see `open`). */
  join(outlet: Outlet): void;
  /** It ended: it leaves them. */
  leave(outlet: Outlet): void;
}

/**
 * One stream a node sends: it takes the producer's items as its drain's taker (`take`, `drained`,
 * `failed`: no closure or promise per drain) into chunks, and answers the chunks asked for.
 */
class Outlet implements StreamTaker<unknown>, ChunkWriter {
  /** Credit left: items, and bytes (as {@linkcode itemBytes} estimates them). */
  items: number;
  bytes: number;
  /**
   * The chunk being made: its items written as they come into `out` (see {@linkcode writeItem}),
   * from `at` on; or, once an item came that is not written so (an object, a large array), all its
   * items in `buffer` (NO_ITEMS until then: most chunks never need it), encoded together when it is
   * sent.
   */
  out: Uint8Array = EMPTY_OUT;
  at: number = CHUNK_ROOM;
  written = 0;
  buffer: unknown[] = NO_ITEMS;
  /** The chunk's items, and their bytes (an object's as {@linkcode Outlet.objectBytes} says). */
  held = 0;
  bufferBytes = 0;
  /**
   * Chunks full before they were asked for, oldest first, sealed (each the frame it is sent as):
   * the producer goes on into a new one while its consumer holds credit (NO_FRAMES while none waits).
   */
  sealed: Uint8Array[] = NO_FRAMES;
  /** The stream's last chunk was made (sent, or among the sealed, last): nothing is made after it. */
  lastMade = false;
  /** The node's frame limit on the connection the stream goes to. */
  readonly frameLimit: number;
  /** The bytes at which a chunk is full: {@linkcode CHUNK_BYTES}, or a quarter of the frame limit. */
  readonly chunkBytes: number;
  /**
   * What an object item counts for in a chunk's bytes, which only its encoding tells: what the items
   * of the last chunk that was encoded whole came to, each (the window's estimate, 16, at first).
   */
  objectBytes = 16;
  /** Chunks asked for and not yet answered, oldest first. */
  readonly pulls: ((frame: Uint8Array) => void)[] = [];
  pumping = false;
  ended = false;
  error: unknown = undefined;
  sentFirst = false;
  /** Items made so far, and chunks sent: a watch compares them to learn whether the producer waits. */
  made = 0;
  sent = 0;
  /** A watch is on: a chunk is asked for and items are buffered (see watch). */
  watching = false;
  /** The watch's macrotask, once the producer proved busy. */
  tick: ReturnType<typeof setTimeout> | undefined = undefined;
  /** The call's deadline. */
  timer: ReturnType<typeof setTimeout> | undefined = undefined;
  /** `pump`, bound once: the drain goes on with it in the event loop's next turn (see drained). */
  pumpBound: (() => void) | undefined = undefined;
  /**
   * Whether it is among the open streams (by key, and its connection's), which it joins only when
   * its first chunk leaves and more are to come: until then its call is in flight on the node, and
   * the call's cancel, deadline and connection reach its stream through the call's ref (a stream
   * done within its first chunk, a one-token answer, never joins).
   */
  joined = false;
  /** The open streams of the connection it came on, once joined (it leaves them when it ends). */
  peers: Set<Outlet> | undefined = undefined;

  /**
   * @param home The node's open streams.
   * @param key The call's key.
   * @param name The call's name as errors name it (a deadline's): a method's is a `Call`.
   * @param stream The call's result.
   * @param items Items granted with the call.
   * @param bytes Bytes granted with the call.
   * @param signal The signal of the connection it came on (aborted when it closes).
   * @param frameLimit The node's frame limit on that connection.
   */
  constructor(
    readonly home: OutletHome,
    readonly key: string,
    readonly name: CallName,
    readonly stream: Stream<unknown>,
    items: number,
    bytes: number,
    readonly signal: AbortSignal | undefined,
    frameLimit: number,
  ) {
    this.items = items;
    this.bytes = bytes;
    this.frameLimit = frameLimit;
    this.chunkBytes = Math.min(CHUNK_BYTES, Math.floor(frameLimit / 4));
  }

  /** The call's deadline, `ms` from now: past it the stream is stopped with a `TimeoutError`. */
  startDeadline(ms: number): void {
    // (not in open(): a function that makes a closure makes a scope for it on every call, on Bun
    // whether or not the closure is made)
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.stream.cancel(new TimeoutError(this.name, ms));
    }, ms);
  }

  /** A chunk is asked for: answered once there is one (or the end). */
  pull(): Promise<Uint8Array> {
    const p = new Promise<Uint8Array>((resolve) => this.pulls.push(resolve));
    // a chunk sealed before it was asked for goes at once
    if (this.sealed.length > 0) this.flush();
    else if (this.pumping) {
      // while the producer runs, it sends when a chunk is full or it has to wait: answering at once
      // with what is buffered would send a few items per chunk
      if (this.held > 0 && !this.watching) this.watch();
      return p;
    } else if (this.held > 0 || this.ended) this.flush();
    // the producer goes on while credit is left (it stopped when its credit ran out, or sealed a chunk)
    this.pump();
    return p;
  }

  /**
   * A chunk is asked for while the producer runs and items are buffered: what is buffered goes as
   * soon as the producer has to wait (a model's next token). A producer that makes nothing within a
   * few microtask turns waits, and the items go now; one that made more is busy, and they go when
   * its chunk is full or at the next macrotask (which runs only once the microtasks ran out, that is
   * when the producer waits or has no credit left). One watch per chunk, not a check per item.
   */
  watch(): void {
    this.watching = true;
    const made = this.made, sent = this.sent;
    let turns = WATCH_TURNS;
    // one microtask per turn, and none once a flush sent the chunk (which ends this watch): a short
    // stream, whose chunk goes when its producer ends a turn or two later, does not wait behind 8
    const turn = (): void => {
      if (this.sent !== sent || this.ended) return; // sent meanwhile: that flush ended this watch
      if (--turns > 0) return queueMicrotask(turn);
      if (this.made === made) return this.flush();
      this.tick = setTimeout(() => {
        this.tick = undefined;
        if (this.sent === sent) this.flush();
      }, 0);
    };
    queueMicrotask(turn);
  }

  /**
   * Takes one item of the producer's: buffers it, and a full chunk leaves (or is sealed, to leave
   * when asked for); `false` once credit is spent, or a chunk was full.
   */
  take(item: unknown): boolean {
    if (this.ended) return false; // cancelled meanwhile
    let size = this.buffer.length === 0 ? writeItem(this, item) : -1;
    let counted = size;
    if (size < 0) {
      if (this.written > 0) this.buffer = takeWritten(this);
      else if (this.buffer === NO_ITEMS) this.buffer = [];
      size = itemBytes(item);
      // an object's bytes are known once it is encoded: it counts as the last chunk's items did
      counted = size === 16 ? this.objectBytes : size;
      this.buffer.push(item);
    }
    this.held++;
    this.bufferBytes += counted;
    this.items--;
    this.bytes -= size;
    this.made++;
    // the first chunk is small, so the first item is not held back while many more are made
    const full = this.sentFirst ? CHUNK_ITEMS : FIRST_CHUNK_ITEMS;
    if (this.held >= full || this.bufferBytes >= this.chunkBytes) {
      this.seal(false);
      // a chunk left (or waits, sealed): the producer stops until the event loop's next turn (see
      // drained), so that the chunk is sent, and the node serves its other work, before it makes more
      // (a generator hands its items over with no wait: it would make the whole window first, and
      // hold the node meanwhile)
      return false;
    }
    if (this.pulls.length > 0 && !this.watching) this.watch();
    return !this.ended && this.items > 0 && this.bytes > 0;
  }

  /** The drain stopped: the stream ended (`true`), or credit ran out or a chunk left (`false`). */
  drained(ended: boolean): void {
    this.pumping = false;
    if (ended) this.ended = true;
    this.flush();
    // stopped with credit left: only take's stop after a chunk left does that; it goes on next turn
    if (!this.ended && this.items > 0 && this.bytes > 0) nextTurn(this.pumpBound ??= () => this.pump());
  }

  /** The producer threw, or the stream was stopped (its deadline, the call's cancel). */
  failed(error: unknown): void {
    this.pumping = false;
    if (!this.ended) {
      this.ended = true;
      this.error = error;
    }
    this.flush();
  }

  /** Takes the producer's items while the consumer holds credit (then, or at the end, flushes). */
  pump(): void {
    if (this.pumping) return;
    if (this.ended || this.items <= 0 || this.bytes <= 0) return this.flush();
    this.pumping = true;
    // (its end may come at once, within this call: a stream that ended or was stopped meanwhile)
    this.stream.drainTo(this);
  }

  /**
   * Answers the chunks asked for, oldest first: those sealed, then what is buffered (and the end,
   * if it came).
   */
  flush(): void {
    const sealed = this.sealed;
    while (sealed.length > 0 && this.pulls.length > 0) {
      const frame = sealed.shift()!;
      this.answer(frame, sealed.length === 0 && this.lastMade);
    }
    if (this.pulls.length === 0 || sealed.length > 0 || this.lastMade || (this.held === 0 && !this.ended)) return;
    this.seal(this.ended);
  }

  /** Answers the oldest chunk asked for with `frame` (`last`: the stream's end). */
  answer(frame: Uint8Array, last: boolean): void {
    const answer = this.pulls.shift()!;
    this.sent++;
    this.watching = false;
    if (this.tick !== undefined) clearTimeout(this.tick);
    this.tick = undefined;
    if (last) this.end();
    else if (!this.joined) this.home.join(this);
    answer(frame);
  }

  /** `frame` is made: it answers the oldest chunk asked for, else waits for its request, sealed. */
  deliver(frame: Uint8Array, last: boolean): void {
    if (last) this.lastMade = true;
    if (this.pulls.length > 0) return this.answer(frame, last);
    if (this.sealed === NO_FRAMES) this.sealed = [];
    this.sealed.push(frame);
  }

  /** The chunk being made is done (`last`: the stream's end, with its error if any): its frame goes. */
  seal(last: boolean): void {
    this.held = 0;
    this.bufferBytes = 0;
    this.sentFirst = true;
    if (this.written > 0 && this.error === undefined) {
      // its items are written already: the frame is what is around them
      const frame = writtenFrame(this, last);
      if (frame.byteLength <= this.frameLimit) return this.deliver(frame, last);
      // over a frame limit of a few KiB (items written as they come are up to 4 KiB each): cut
      return this.sendItems(decodeChunk(frame).items as unknown[], last, 0);
    }
    const items = this.written > 0 ? takeWritten(this) : this.buffer;
    this.buffer = NO_ITEMS;
    this.sendItems(items, last, 0);
  }

  /**
   * Encodes `items` as one chunk, the stream's last (with its error) when `last`, and delivers it.
   * A chunk over the frame limit (its objects were larger than the last chunk's) is cut in two; an
   * item alone over it ends the stream with an error that names it, after the items before it.
   * `after`: the items taken after these (those of the other part of a chunk cut in two).
   */
  sendItems(items: unknown[], last: boolean, after: number): void {
    let frame: Uint8Array;
    try {
      frame = last
        ? encodeMessage(
          this.error === undefined
            ? { t: "chunk", items, done: true }
            : { t: "chunk", items, done: true, error: errorToWire(this.error) },
        )
        : encodeMessage({ t: "chunk", items, done: false });
    } catch (e) {
      // an item that cannot travel ends the stream, with the reason, after the items before it
      return this.refuseItem(items, e, after);
    }
    const bytes = frameBytes(frame);
    if (bytes > this.frameLimit) {
      if (items.length === 1) return this.refuse(this.tooLargeItem(bytes, after));
      const half = items.length >> 1;
      this.sendItems(items.slice(0, half), false, after + items.length - half);
      if (!this.lastMade) this.sendItems(items.slice(half), last, after);
      return;
    }
    if (items.length > 0) this.objectBytes = Math.max(16, Math.ceil(bytes / items.length));
    this.deliver(frame, last);
  }

  /** Ends the stream with `frame`, its last chunk (an item that cannot be sent): the producer stops. */
  refuse(frame: Uint8Array): void {
    // ended first: the drain's failure that the stream's cancel tells at once finds it over
    this.ended = true;
    this.deliver(frame, true);
    this.stream.cancel();
  }

  /**
   * The last chunk of a stream one of whose items is over the frame limit alone (`bytes` in a chunk
   * of its own; `after` items were taken after it): the call's error names it, and the limit.
   */
  tooLargeItem(bytes: number, after: number): Uint8Array {
    const at = this.stream.items - after - 1;
    const error = new OpExecutionError(
      this.name,
      new RangeError(
        `item ${at} of the stream cannot be sent: it takes ${bytes} bytes on the wire, over the node's frame ` +
          `limit of ${this.frameLimit} bytes (--max-frame-bytes, maxFrameBytes); raise the limit, or yield ` +
          "the item in smaller parts",
      ),
    );
    return encodeMessage({ t: "chunk", items: [], done: true, error: errorToWire(error) });
  }

  /**
   * Ends a stream one of whose `items` cannot travel (`e`, the chunk's encoding failure; `after`
   * items were taken after them): the items before it, then the call's error naming the item by its
   * place in the stream, in its last chunk (or in chunks of their own first, if they are over the
   * frame limit together).
   */
  refuseItem(items: unknown[], e: unknown, after: number): void {
    let bad = 0;
    for (; bad < items.length - 1; bad++) {
      try {
        encode(items[bad]);
      } catch {
        break;
      }
    }
    let reason = e;
    try {
      encode(items[bad]);
    } catch (itemError) {
      reason = itemError; // (its path from the item itself, not from the chunk's array)
    }
    // (every item taken is in this chunk, sent or sealed before it, or among the `after`)
    const at = this.stream.items - after - items.length + bad;
    const error = errorToWire(
      new OpExecutionError(
        this.name,
        new TypeError(`item ${at} of the stream cannot be sent: ${(reason as Error).message}`),
      ),
    );
    const before = items.slice(0, bad);
    let frame = encodeMessage({ t: "chunk", items: before, done: true, error });
    if (bad > 0 && frameBytes(frame) > this.frameLimit) {
      this.sendItems(before, false, after + items.length - bad);
      if (this.lastMade) return;
      frame = encodeMessage({ t: "chunk", items: [], done: true, error });
    }
    this.refuse(frame);
  }

  /** Stops it (its consumer cancelled it, or went away): the producer's `finally` runs. */
  stop(): void {
    // ended first: the drain's failure that the stream's cancel tells at once finds it over
    this.end();
    this.stream.cancel();
  }

  /** It is over: its timers stop, it leaves the open streams, and chunks still asked for learn so. */
  end(): void {
    this.ended = true;
    this.lastMade = true;
    this.sealed = NO_FRAMES;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.tick !== undefined) clearTimeout(this.tick);
    this.tick = undefined;
    if (this.joined) this.home.leave(this);
    if (this.pulls.length === 0) return;
    for (const answer of this.pulls.splice(0)) answer(encodeMessage({ t: "chunk", items: [], done: true }));
  }
}

/** How many ended streams a node remembers (a consumer's late asks for them end quietly). */
const ENDED_KEPT = 4096;

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
  readonly #home: OutletHome = {
    join: (outlet) => this.#join(outlet),
    leave: (outlet) => {
      outlet.peers?.delete(outlet);
      if (this.#open.get(outlet.key) === outlet) this.#open.delete(outlet.key);
      // remembered a while: its consumer may still ask for a chunk it asked ahead for
      const ended = this.#ended;
      ended.delete(outlet.key);
      ended.add(outlet.key);
      if (ended.size > ENDED_KEPT) ended.delete(ended.values().next().value!);
    },
  };
  /** The last ENDED_KEPT streams that ended here, oldest first (see `credit`). */
  readonly #ended = new Set<string>();

  /** Streams open now, past their first chunk (see `open`). */
  get size(): number {
    return this.#open.size;
  }

  /**
   * Starts sending `stream`, the result of call `key`: resolves with its first chunk. Over HTTP,
   * where no connection tells the node that its consumer went away, the stream is stopped and the
   * call answered with an `OpExecutionError` saying that streams need the WebSocket transport.
   *
   * Until the first chunk leaves, the stream is the call's: the node stops it through the call's
   * ref (a `cancel`, its connection closing, the node draining; the deadline is the stream's own).
   * It joins the open streams, which `credit`, `cancel`, `cancelAll` and a closing connection find,
   * only if more is to come.
   *
   * @param key The call's key (connection and call id).
   * @param stream The call's result.
   * @param call The call (its window, deadline and op), and its name.
   * @param peer Who called: the transport, and the connection's signal (aborted when it closes).
   * @param name The call's name (default `call.name`, else its op's).
   * @returns The first chunk's frame (or the refusal's).
   */
  open(
    key: string,
    stream: Stream<unknown>,
    call: {
      creditItems?: number;
      creditBytes?: number;
      timeoutMs?: number;
      name?: string;
      op?: string;
      method?: string;
    },
    peer: PeerInfo | undefined,
    name: string = call.name ?? call.op ?? "stream",
  ): Promise<Uint8Array> {
    // (a method's call is a `Call` in errors, an op's an `Op`)
    const named: CallName = call.op === undefined && call.method !== undefined ? { name, kind: "method" } : name;
    if (peer?.transport === "http") {
      stream.cancel();
      const error = new OpExecutionError(
        named,
        new TypeError(
          `its result is a stream, and streams need the WebSocket transport (ws://): over HTTP each request ` +
            "stands alone, so the node could not tell when the consumer went away",
        ),
      );
      return Promise.resolve(encodeMessage({ t: "result", ok: false, error: errorToWire(error) }));
    }
    const old = this.#open.get(key);
    if (old !== undefined) old.end(); // a call id reused: the old stream is over
    const signal = peer?.signal;
    const outlet = new Outlet(
      this.#home,
      key,
      named,
      stream,
      call.creditItems ?? DEFAULT_STREAM_WINDOW.items,
      call.creditBytes ?? DEFAULT_STREAM_WINDOW.bytes,
      signal,
      peer?.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
    );
    const ms = call.timeoutMs;
    if (ms !== undefined && ms < 2 ** 31) outlet.startDeadline(ms);
    const first = outlet.pull();
    if (signal?.aborted) outlet.stop();
    return first;
  }

  /** The outlet's first chunk leaves and more are to come: it joins the open streams (see `open`). */
  #join(outlet: Outlet): void {
    outlet.joined = true;
    this.#open.set(outlet.key, outlet);
    const signal = outlet.signal;
    if (signal === undefined) return;
    // its connection closed while the call was in flight: nobody is left to read it
    if (signal.aborted) return outlet.stop();
    (outlet.peers = this.#connection(signal)).add(outlet);
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
      // ended and said so already: the consumer asked once more than needed
      if (this.#ended.has(key)) {
        return Promise.resolve(encodeMessage({ t: "chunk", items: [], done: true } satisfies ChunkMessage));
      }
      // never here (this process did not start it: the node restarted, or another node was asked):
      // an error, never a stream that seems to have ended
      const error = new ProtocolError(
        `No stream of call "${key.slice(key.lastIndexOf(" ") + 1)}" here: the node that runs it restarted, ` +
          "or another node was asked for its items",
      );
      return Promise.resolve(
        encodeMessage({ t: "chunk", items: [], done: true, error: errorToWire(error) } satisfies ChunkMessage),
      );
    }
    outlet.items += items;
    outlet.bytes += bytes;
    return outlet.pull();
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
    outlet.stop();
    return true;
  }

  /** Stops every stream (the node drains). */
  cancelAll(): void {
    for (const key of [...this.#open.keys()]) this.cancel(key);
  }
}
