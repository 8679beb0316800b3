/**
 * A stream's consumer end (see `stream_wire.ts`): {@linkcode RemoteChunks}, the async iterator a
 * driver's stream call reads, which holds the chunks that arrived, grants the node more credit as
 * their items are taken, and keeps chunks asked for while the producer may send more.
 *
 * @module
 */
import { errorFromWire } from "../core/codec.ts";
import type { ChunkMessage } from "./protocol.ts";
import { CHUNK_ITEMS } from "./stream_chunk.ts";
import { itemBytes, type StreamWindow } from "./stream_window.ts";

/** A consumer grants credit each time it took this part of its window. */
const GRANT_PARTS = 4;
/** Most chunks a consumer keeps asked for at once. */
const PULLS_AHEAD = 4;

/** How a consumer's chunks are asked for: a `credit` request on its link, and a `cancel`. */
export interface ChunkSource {
  /** Sends `credit` and resolves with the next chunk. */
  credit(items: number, bytes: number): Promise<ChunkMessage>;
  /** Tells the node to stop the stream (one-way). */
  cancel(): void;
  /** Turns an item that arrived into the value the consumer gets (handles in it). */
  revive?(item: unknown): unknown;
  /** Called once, when the stream ended (all taken, failed, or left early). */
  ended?(): void;
}

/**
 * The consumer's end of a stream over the wire, an async iterator: it holds the items that arrived,
 * grants the producer more credit as they are taken (a quarter window at a time, or whenever it has
 * taken all it holds), and keeps a chunk asked for while the producer may send more.
 *
 * @example Two chunks, with credit granted between them
 * ```ts
 * import { RemoteChunks } from "./remote_chunks.ts";
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
  /** What taking a quarter window of items (bytes) is: a grant is due then (see #due). */
  readonly #stepItems: number;
  readonly #stepBytes: number;
  /** Chunks kept asked for while the producer holds credit for them (see #ask). */
  readonly #ahead: number;
  /** The chunk being taken, from #head on, and its items' bytes (as itemBytes estimates them). */
  #buffer: readonly unknown[];
  #bufferBytes: number;
  #head = 0;
  /** Whether some item of the chunk may hold handles (an object other than a typed array): revived as taken. */
  #revive: boolean;
  /** Chunks that came while one was being taken, oldest first (none copied into another). */
  #queue: Held[] = NO_HELD;
  /**
   * The index at which a taken item may make a grant due (the end of what is held, or where a quarter
   * window would be taken): the only per-item test; items taken are counted then, not one by one.
   */
  #checkAt = 0;
  /** Items before this index are counted in #takenItems and #takenBytes; their bytes. */
  #counted = 0;
  #countedBytes = 0;
  #done: boolean;
  #error: unknown;
  /** Items (bytes) the producer may still send without more credit, as far as this end knows. */
  #owedItems: number;
  #owedBytes: number;
  /** Items (bytes) taken since the last grant, up to #counted. */
  #takenItems = 0;
  #takenBytes = 0;
  #pulls = 0;
  /** The last chunk asked for (its reply taken in turn): none before the first `credit`. */
  #inOrder: Promise<void> | undefined;
  #waiter: { resolve: (r: IteratorResult<unknown>) => void; reject: (e: unknown) => void } | undefined;

  #ended = false;

  /**
   * @param source How to ask for chunks (and whom to tell when the stream ended).
   * @param first The call's answer: the first chunk.
   * @param window The window this consumer granted with the call.
   */
  constructor(source: ChunkSource, first: ChunkMessage, window: Required<StreamWindow>) {
    this.#source = source;
    this.#window = window;
    this.#stepItems = Math.ceil(window.items / GRANT_PARTS);
    this.#stepBytes = Math.ceil(window.bytes / GRANT_PARTS);
    this.#ahead = Math.max(1, Math.min(PULLS_AHEAD, Math.floor(window.items / (2 * CHUNK_ITEMS))));
    const items = first.items;
    const bytes = heldBytes(items), revive = bytes < 0;
    this.#buffer = items;
    this.#bufferBytes = revive ? -bytes : bytes;
    this.#revive = revive && source.revive !== undefined;
    this.#done = first.done;
    this.#error = first.error === undefined ? undefined : errorFromWire(first.error);
    this.#owedItems = window.items - items.length;
    this.#owedBytes = window.bytes - this.#bufferBytes;
    this.#setCheck();
  }

  /** The chunks themselves (a call's result: `stream_call.ts` wraps it in a `Stream`). */
  [Symbol.asyncIterator](): this {
    return this;
  }

  #endOnce(): void {
    if (this.#ended) return;
    this.#ended = true;
    const source = this.#source;
    if (source.ended !== undefined) source.ended();
  }

  /** The next item when one is here already (no wait), else `undefined`; `Stream` asks this first. */
  tryNext(): IteratorResult<unknown> | undefined {
    let h = this.#head;
    let buffer = this.#buffer;
    if (h >= buffer.length) {
      if (this.#queue.length === 0) return undefined;
      this.#nextChunk();
      h = 0;
      buffer = this.#buffer;
    }
    const raw = buffer[h];
    this.#head = h + 1;
    if (h + 1 === this.#checkAt) this.#check();
    return { done: false, value: this.#revive ? this.#source.revive!(raw) : raw };
  }

  next(): Promise<IteratorResult<unknown>> {
    const r = this.tryNext();
    if (r !== undefined) return Promise.resolve(r);
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
    this.tryReturn();
    return Promise.resolve({ done: true, value: undefined });
  }

  /** {@linkcode RemoteChunks.return} with no promise (`Stream` stops it so when no `next()` waits). */
  tryReturn(): void {
    if (!this.#done) {
      this.#done = true;
      this.#source.cancel();
    }
    this.#endOnce();
    this.#buffer = NO_HELD_ITEMS;
    this.#queue = NO_HELD;
    this.#head =
      this.#counted =
      this.#checkAt =
      this.#bufferBytes =
      this.#countedBytes =
        0;
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.resolve({ done: true, value: undefined });
  }

  /** The chunk taken is done with: the next one that came is taken from now on. */
  #nextChunk(): void {
    this.#count();
    const next = this.#queue.shift()!;
    this.#buffer = next.items;
    this.#bufferBytes = next.bytes;
    this.#revive = next.revive;
    this.#head = this.#counted = this.#countedBytes = 0;
    this.#setCheck();
  }

  /** Counts the items taken since the last count (the rest of a chunk by its bytes, with no walk). */
  #count(): void {
    const buffer = this.#buffer, to = this.#head, from = this.#counted;
    if (to === from) return;
    let b = 0;
    if (to === buffer.length) b = this.#bufferBytes - this.#countedBytes;
    else for (let i = from; i < to; i++) b += itemBytes(buffer[i]);
    this.#takenItems += to - from;
    this.#takenBytes += b;
    this.#countedBytes += b;
    this.#counted = to;
  }

  /**
   * Where the next check is: at the end of what is held, or at the item that makes a quarter window
   * taken (in items or in bytes), whichever comes first.
   */
  #setCheck(): void {
    const buffer = this.#buffer, from = this.#counted;
    let at = Math.min(buffer.length, from + Math.max(1, this.#stepItems - this.#takenItems));
    let bytes = this.#takenBytes;
    // the items' bytes are walked only when the rest of the chunk could reach the step
    if (bytes + this.#bufferBytes - this.#countedBytes >= this.#stepBytes) {
      for (let i = from; i < at; i++) {
        bytes += itemBytes(buffer[i]);
        if (bytes >= this.#stepBytes) {
          at = i + 1;
          break;
        }
      }
    }
    this.#checkAt = Math.max(at, this.#head + 1);
  }

  /** An item taken reached the check: grants credit if due, asks for a chunk if caught up. */
  #check(): void {
    this.#count();
    if (this.#due()) this.#ask();
    this.#setCheck();
  }

  /**
   * Whether {@linkcode RemoteChunks.#ask} may have something to do: only once this end has taken all
   * it holds, or a quarter window since the last grant.
   */
  #due(): boolean {
    return this.#caughtUp() || this.#stepDue();
  }

  /** Whether every item that came was taken. */
  #caughtUp(): boolean {
    return this.#head >= this.#buffer.length && this.#queue.length === 0;
  }

  #stepDue(): boolean {
    return this.#takenItems >= this.#stepItems || this.#takenBytes >= this.#stepBytes;
  }

  /**
   * Grants credit when due, and keeps chunks asked for while the producer may send more: a grant
   * goes once a quarter window was taken (or when this end took all it holds and nothing is asked
   * for), and with it as many requests as the producer holds credit for, up to #ahead, in one
   * message. So the node, with requests waiting, sends each chunk as soon as it is full, and the
   * consumer sends one message per quarter window rather than one per chunk.
   */
  #ask(): void {
    if (this.#done) return;
    this.#count();
    const caughtUp = this.#caughtUp();
    const grant = this.#takenItems > 0 && (this.#stepDue() || caughtUp && this.#pulls === 0);
    const mayComeUnasked = this.#owedItems > 0 && this.#owedBytes > 0;
    if (!grant && (this.#pulls > 0 || !mayComeUnasked || !caughtUp)) return;
    const items = grant ? this.#takenItems : 0, bytes = grant ? this.#takenBytes : 0;
    this.#takenItems = this.#takenBytes = 0;
    this.#owedItems += items;
    this.#owedBytes += bytes;
    this.#pull(items, bytes);
    // the requests go together (the transport batches what is sent in one turn)
    const ahead = Math.min(this.#ahead, Math.ceil(this.#owedItems / CHUNK_ITEMS));
    while (this.#pulls < ahead) this.#pull(0, 0);
  }

  #pull(items: number, bytes: number): void {
    this.#pulls++;
    const reply = this.#source.credit(items, bytes);
    // chunks are taken in the order they were asked for, whatever order their replies resolve in
    const before = this.#inOrder;
    this.#inOrder = (before === undefined ? reply : before.then(() => reply)).then(
      (chunk) => this.#onChunk(chunk),
      (e) => this.#fail(e),
    );
  }

  #onChunk(chunk: ChunkMessage): void {
    this.#pulls--;
    if (this.#done && this.#waiter === undefined) return; // returned meanwhile
    const held = hold(chunk.items, this.#source);
    this.#owedItems -= held.items.length;
    this.#owedBytes -= held.bytes;
    if (held.items.length > 0) {
      if (this.#caughtUp()) {
        this.#count();
        this.#buffer = held.items;
        this.#bufferBytes = held.bytes;
        this.#revive = held.revive;
        this.#head = this.#counted = this.#countedBytes = 0;
        this.#setCheck();
      } else if (this.#queue === NO_HELD) this.#queue = [held];
      else this.#queue.push(held);
    }
    if (chunk.done) {
      this.#done = true;
      if (chunk.error !== undefined) this.#error = errorFromWire(chunk.error);
    }
    const w = this.#waiter;
    if (w === undefined) return;
    const r = this.tryNext();
    if (r !== undefined) {
      this.#waiter = undefined;
      w.resolve(r);
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

/** No chunks queued, and a returned stream's items (shared, never written to). */
const NO_HELD: Held[] = [];
const NO_HELD_ITEMS: readonly unknown[] = [];

/**
 * A chunk's items' bytes as {@linkcode itemBytes} counts them, negated when some item may hold
 * handles to revive (an object other than a typed array): {@linkcode hold} without its record.
 */
function heldBytes(items: readonly unknown[]): number {
  let bytes = 0, revive = false;
  for (let i = 0; i < items.length; i++) {
    const x = items[i];
    if (typeof x === "object" && x !== null) {
      if (ArrayBuffer.isView(x)) bytes += 8 + x.byteLength;
      else {
        bytes += 16;
        revive = true;
      }
    } else bytes += typeof x === "string" ? 8 + x.length : 16;
  }
  return revive ? -bytes : bytes;
}

/** A chunk's items as a consumer holds them: with their bytes, and whether some may hold handles. */
interface Held {
  readonly items: readonly unknown[];
  readonly bytes: number;
  readonly revive: boolean;
}

/**
 * A chunk that arrived, to hold: its bytes as {@linkcode itemBytes} counts them, and whether some
 * item may hold handles to revive (an object other than a typed array), in one walk.
 */
function hold(items: readonly unknown[], source: ChunkSource): Held {
  const bytes = heldBytes(items);
  return bytes < 0 ? { items, bytes: -bytes, revive: source.revive !== undefined } : { items, bytes, revive: false };
}
