/**
 * What the node's WebSocket server does when a client reads more slowly than replies are written:
 * no message is ever dropped. Bun's server socket stops taking messages once its buffer passes its
 * `backpressureLimit` (`send` returns -1, and 0 for a message it dropped); the messages after that
 * wait here and go out when the runtime says the socket drained. Deno's and `ws`' sockets buffer
 * without a limit, so their `bufferedAmount` is watched instead. Past `maxQueuedBytes` waiting, the
 * connection is closed (code 1013): the client's calls on it fail with a transport error instead
 * of waiting for replies that were never sent, and the node's memory stays bounded. On Deno the
 * closed socket's TCP connection stays open (unread) while its writes are pending, which a client
 * that never reads keeps them: the node stops reading it and spends no more on it, but the
 * descriptor goes only when the client does (Deno has no way to abort a server WebSocket's socket).
 *
 * A large array sent beside its frame ({@linkcode SendQueue.sendNextTurn}) leaves in the next turn
 * on Bun: Bun writes a message of 16 KiB or more from where it lies (one `writev`) only while
 * nothing waits in its cork buffer, and the frame's head sent just before it is there.
 *
 * @module
 */
import { nextTurn } from "../core/_runtime.ts";

/** The runtime's own socket under hono's `WSContext` (`ws.raw`): what it says about its buffer. */
interface RawSocket {
  /** Bun: 1 or more sent, -1 queued over the backpressure limit, 0 dropped. */
  send?(message: Uint8Array): unknown;
  /** Bun: bytes waiting in the socket's buffer. */
  getBufferedAmount?(): number;
  /** Web-standard sockets (Deno) and `ws` (Node): bytes waiting in the socket's buffer. */
  bufferedAmount?: number;
}

/** The part of hono's `WSContext` a {@linkcode SendQueue} writes to. */
export interface QueueSocket {
  send(message: Uint8Array<ArrayBuffer>): void;
  close(code?: number, reason?: string): void;
  readonly raw?: unknown;
}

/** The longest wait between two looks at a socket's buffer while nothing leaves it, ms. */
const MAX_POLL_MS = 32;

/** The close code of a connection whose client read too slowly (1013: try again later). */
export const SLOW_READER_CLOSE_CODE = 1013;

/**
 * Writes one server-side WebSocket's messages in order, never dropping one: while the runtime's
 * socket reports backpressure they wait (at most `maxQueuedBytes`), and `drain()` (the runtime's
 * drain event) sends them on. Past the bound the connection is closed with
 * {@linkcode SLOW_READER_CLOSE_CODE}.
 *
 * @example A Bun-like socket that pushes back: the rest waits for the drain, in order
 * ```ts
 * import { SendQueue } from "./ws_send_queue.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const sent: number[] = [];
 * let room = 1;
 * const raw = { send: (m: Uint8Array) => (sent.push(m[0]), --room >= 0 ? 1 : -1), getBufferedAmount: () => 0 };
 * const q = new SendQueue({ raw, send() {}, close() {} }, 1024);
 * for (const b of [1, 2, 3]) q.send(new Uint8Array([b]));
 * deepStrictEqual(sent, [1, 2]); // 2 was taken over the limit (-1): 3 waits
 * room = 10;
 * q.drain();
 * deepStrictEqual(sent, [1, 2, 3]);
 * ```
 *
 * @example Past the bound the connection is closed, never a message dropped
 * ```ts
 * import { SendQueue, SLOW_READER_CLOSE_CODE } from "./ws_send_queue.ts";
 * import { strictEqual } from "node:assert/strict";
 * let closed = 0;
 * const raw = { send: () => -1, getBufferedAmount: () => 0 };
 * const q = new SendQueue({ raw, send() {}, close: (code) => void (closed = code ?? 0) }, 4);
 * q.send(new Uint8Array(8)); // taken, over the socket's limit
 * q.send(new Uint8Array(8)); // waits: 8 bytes > 4
 * strictEqual(closed, SLOW_READER_CLOSE_CODE);
 * ```
 */
export class SendQueue {
  readonly #ws: QueueSocket;
  readonly #raw: RawSocket | undefined;
  /** Bun's socket: its `send` says whether it took the message. */
  readonly #reports: boolean;
  readonly #max: number;
  #waiting: (Uint8Array<ArrayBuffer> | undefined)[] = [];
  #head = 0;
  #bytes = 0;
  #blocked = false;
  /** Messages wait for the next turn ({@linkcode sendNextTurn}). */
  #deferred = false;
  /**
   * The messages given to {@linkcode sendNextTurn} waiting for the next turn: not counted in
   * `#bytes` nor against the bound until then (they are taken as the socket takes any, a turn later).
   */
  readonly #nextTurn = new Set<Uint8Array>();
  #nextTurnBytes = 0;
  #closed = false;
  // whenBelow's watch
  #then: (() => void) | undefined;
  #below = 0;
  #pollMs = 1;
  #lastUnsent = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  /**
   * @param ws The connection (hono's `WSContext`).
   * @param maxQueuedBytes Most bytes that may wait for the client before the connection is closed.
   */
  constructor(ws: QueueSocket, maxQueuedBytes: number) {
    this.#ws = ws;
    const raw = typeof ws.raw === "object" && ws.raw !== null ? ws.raw as RawSocket : undefined;
    this.#raw = raw;
    this.#reports = typeof raw?.getBufferedAmount === "function" && typeof raw.send === "function";
    this.#max = maxQueuedBytes;
  }

  /** The connection it writes to. */
  get socket(): QueueSocket {
    return this.#ws;
  }

  /** Bytes waiting here: for the socket to drain, or for the next turn ({@linkcode sendNextTurn}). */
  get queuedBytes(): number {
    return this.#bytes + this.#nextTurnBytes;
  }

  /**
   * Bytes of replies not yet handed to the kernel: those waiting here and those in the runtime's
   * own socket buffer (Bun's `getBufferedAmount()`, Deno's and `ws`' `bufferedAmount`).
   */
  get unsentBytes(): number {
    const raw = this.#raw;
    if (raw === undefined) return this.#bytes;
    if (typeof raw.getBufferedAmount === "function") return this.#bytes + raw.getBufferedAmount();
    return this.#bytes + (typeof raw.bufferedAmount === "number" ? raw.bufferedAmount : 0);
  }

  /**
   * Calls `then` once at most `bytes` are unsent ({@linkcode unsentBytes}): at the runtime's drain
   * event (Bun), else when a poll sees it (1 ms, doubling to 32 ms while nothing leaves, back to
   * 1 ms when something did). Never once the connection is closing or closed. A second call
   * replaces the first's `then`.
   */
  whenBelow(bytes: number, then: () => void): void {
    this.#below = bytes;
    this.#then = then;
    this.#pollMs = 1;
    this.#lastUnsent = this.unsentBytes;
    if (this.#check()) return;
    this.#timer ??= setTimeout(this.#poll, this.#pollMs);
  }

  /** True once the queue closed the connection (its client read too slowly). */
  get closed(): boolean {
    return this.#closed;
  }

  /** Sends `message` after every message given before it; waits while the socket pushes back. */
  send(message: Uint8Array<ArrayBuffer>): void {
    if (this.#closed) return;
    if (this.#blocked || this.#deferred) return this.#wait(message);
    if (this.#reports) return this.#write(message);
    this.#ws.send(message);
    const buffered = this.#raw?.bufferedAmount;
    if (typeof buffered === "number" && buffered > this.#max) this.#overflow(`${buffered} bytes of replies buffered`);
  }

  /**
   * Sends `message` after every message given before it, and on Bun not before the next turn of
   * the event loop; messages given after it wait behind it. For a large array following its frame's
   * head (`segmentedMessages`): Bun corks a socket while its callbacks run, and copies a message of
   * 16 KiB or more that it takes while anything is in the cork buffer (the head) into a buffer of
   * its own (at 1 MiB, a copy on the hand-off's path that the sending process pays); in the next
   * turn the head has left, and Bun writes the array from where it lies. Elsewhere (Deno, `ws`) the
   * same as {@linkcode send}.
   *
   * @example Bun-like: the large message leaves in the next turn, and what follows stays behind it
   * ```ts
   * import { SendQueue } from "./ws_send_queue.ts";
   * import { deepStrictEqual } from "node:assert/strict";
   * const sent: number[] = [];
   * const raw = { send: (m: Uint8Array) => (sent.push(m.byteLength), 1), getBufferedAmount: () => 0 };
   * const q = new SendQueue({ raw, send() {}, close() {} }, 1 << 20);
   * q.send(new Uint8Array(40)); // a frame's head
   * q.sendNextTurn(new Uint8Array(65536)); // its array
   * q.send(new Uint8Array(10)); // the next reply
   * deepStrictEqual(sent, [40]);
   * await new Promise((r) => setTimeout(r, 10));
   * deepStrictEqual(sent, [40, 65536, 10]);
   * ```
   */
  sendNextTurn(message: Uint8Array<ArrayBuffer>): void {
    if (this.#closed) return;
    if (!this.#reports) return this.send(message);
    this.#waiting.push(message);
    this.#nextTurn.add(message);
    this.#nextTurnBytes += message.byteLength;
    if (this.#deferred) return;
    this.#deferred = true;
    nextTurn(this.#afterTurn);
  }

  readonly #afterTurn = (): void => {
    this.#deferred = false;
    const state = (this.#raw as { readyState?: unknown } | undefined)?.readyState;
    if (typeof state === "number" && state >= 2) { // CLOSING or CLOSED meanwhile: nobody reads them
      this.#waiting = [];
      this.#nextTurn.clear();
      this.#nextTurnBytes = 0;
      this.#head = 0;
      this.#bytes = 0;
    } else {
      if (!this.#blocked) this.#flush();
      // what the socket did not take now waits for its drain as any message does, and counts
      this.#bytes += this.#nextTurnBytes;
      this.#nextTurn.clear();
      this.#nextTurnBytes = 0;
      if (this.#bytes > this.#max) return this.#overflow(`${this.#bytes} bytes of replies waiting`);
    }
    this.#check();
  };

  #wait(message: Uint8Array<ArrayBuffer>): void {
    this.#waiting.push(message);
    this.#bytes += message.byteLength;
    if (this.#bytes > this.#max) this.#overflow(`${this.#bytes} bytes of replies waiting`);
  }

  /** The socket can take more (the runtime's drain event): what waits goes out, until it pushes back again. */
  drain(): void {
    this.#blocked = false;
    if (!this.#deferred) this.#flush();
    this.#check();
  }

  /** Writes what waits, in order, until the socket pushes back. */
  #flush(): void {
    while (!this.#closed && !this.#blocked && this.#head < this.#waiting.length) {
      const m = this.#waiting[this.#head]!;
      this.#waiting[this.#head++] = undefined; // let it go once written
      if (this.#nextTurn.delete(m)) this.#nextTurnBytes -= m.byteLength;
      else this.#bytes -= m.byteLength;
      this.#write(m);
    }
    if (this.#head === this.#waiting.length) {
      this.#waiting = [];
      this.#head = 0;
    }
  }

  /** Whether the watch is over: its `then` was called (or the connection is gone). */
  #check(): boolean {
    const then = this.#then;
    if (then === undefined) return true;
    const state = (this.#raw as { readyState?: unknown } | undefined)?.readyState;
    const gone = this.#closed || (typeof state === "number" && state >= 2); // CLOSING or CLOSED
    if (!gone && this.unsentBytes > this.#below) return false;
    this.#then = undefined;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (!gone) then();
    return true;
  }

  readonly #poll = (): void => {
    this.#timer = undefined;
    if (this.#check()) return;
    const unsent = this.unsentBytes;
    this.#pollMs = unsent < this.#lastUnsent ? 1 : Math.min(2 * this.#pollMs, MAX_POLL_MS);
    this.#lastUnsent = unsent;
    this.#timer = setTimeout(this.#poll, this.#pollMs);
  };

  #write(message: Uint8Array<ArrayBuffer>): void {
    const r = this.#raw!.send!(message);
    if (r === -1) this.#blocked = true; // taken, but over the limit: the rest waits for the drain
    else if (r === 0) this.#overflow("the socket dropped a reply"); // never expected once we wait for drains
  }

  #overflow(what: string): void {
    this.#closed = true;
    this.#waiting = [];
    this.#nextTurn.clear();
    this.#nextTurnBytes = 0;
    this.#head = 0;
    this.#bytes = 0;
    this.#check(); // a watch ends
    try {
      this.#ws.close(SLOW_READER_CLOSE_CODE, `client reads too slowly: ${what}`.slice(0, 120));
    } catch {
      // already closing
    }
  }
}
