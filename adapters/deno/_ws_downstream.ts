// Private: the server's side of a WebSocket connection that the Deno node's connection guard
// (./_connection_guard.ts) relays to its client, once upgraded. Deno's server sockets report no
// pongs, and the kernel takes several MiB from a client that never reads before Deno's own buffer
// fills; so the relay follows the server's frames and puts its own pings between them, each
// carrying the count of bytes relayed before it, and reads the client's pongs (which come only once
// the client has read everything before them): past a window of bytes pinged and not acknowledged
// the guard reads no more from the server, and each pong doubles the window. Each pong, and each of
// the client's one-way frames, is answered with an empty pong, for the TCP acknowledgement that
// the segment carrying it gives at once (see ANSWER_PONG).

import { FrameEnds, PING_PAYLOAD_BYTES } from "./_ws_frames.ts";

/** Where the relay writes: the client's socket (a Deno connection's `write`). */
export interface DownstreamSocket {
  write(chunk: Uint8Array): Promise<number>;
}

/**
 * The relay pings the client after each this many bytes the server sent it (at a frame's end).
 * (Pinging less often once a client has shown it reads, half its window, was tried and not kept:
 * it made a 1 MiB round trip through a Deno node slower; BENCHMARKS.md, Transports, fourteenth
 * session.)
 */
const PING_EVERY_BYTES = 256 * 1024;
/**
 * Bytes pinged and not acknowledged by the client's pong past which the relay reads no more from the
 * server, at first: what a client that never reads is handed (besides one ping's worth and one
 * frame), instead of the several MiB the kernel takes.
 */
const FIRST_WINDOW_BYTES = 512 * 1024;
/** The most the window grows to, doubling at each pong. */
const MAX_WINDOW_BYTES = 64 * 1024 * 1024;
/** A relay's ping: FIN + ping, 8 bytes of payload (the bytes relayed before it, a float64). */
const PING_HEAD = 0x89;
/**
 * What the relay sends back for the client's pong, and for a one-way frame of the client's (the node's
 * framing: a `cancel`, a `free`): an unsolicited pong with no payload (FIN + pong, length 0), which a
 * client ignores (RFC 6455 §5.5.3). It is there for the TCP segment that carries it: that segment
 * acknowledges what the client sent at once. A client whose socket delays small writes until its
 * earlier ones are acknowledged (Nagle's algorithm: Deno's `WebSocket` client leaves it on) would
 * otherwise hold its next message until the server's delayed acknowledgement, ~40 ms on Linux,
 * when the server has nothing else to send: after each reply of more than a ping's worth, and after
 * each one-way frame, which gets no reply (BENCHMARKS.md, Data plane, twenty-fourth session).
 */
const ANSWER_PONG = new Uint8Array([0x8a, 0x00]);

/**
 * The server's side of an upgraded connection: follows its frames (to put pings only between
 * them), pings the client after each {@linkcode PING_EVERY_BYTES}, and says when the client has
 * more unacknowledged than its window, until its pong comes.
 */
export class Downstream {
  #frames = new FrameEnds();
  /** Bytes of the server's relayed to the client. */
  #sent = 0;
  /** `#sent` at the last ping. */
  #pinged = 0;
  /** What the client's last pong acknowledged. */
  #acked = 0;
  #window = FIRST_WINDOW_BYTES;
  #unbounded = false;
  #wake: (() => void) | undefined;
  /** The pings not yet acknowledged, oldest first: `#sent` at each, and the data payloads before it. */
  #pings: { sent: number; data: number }[] = [];
  /** Its relay, whose `onRead` is told the data payloads the client has read (the guard's `watchRelayReads`). */
  readonly #relay: { readonly onRead?: ((read: number) => void) | undefined };
  /** The client's socket, once {@linkcode relay} wrote to it. */
  #to: DownstreamSocket | undefined;
  /** A write of {@linkcode relay}'s (or of an answer's) is in progress: nothing else may write meanwhile. */
  #writing: Promise<void> | undefined;
  /** The client's pong came while the relay was in a frame or writing: answered at the next frame end. */
  #answerDue = false;

  constructor(relay: { readonly onRead?: ((read: number) => void) | undefined }) {
    this.#relay = relay;
  }

  /** The client has more bytes pinged and unacknowledged than its window. */
  get full(): boolean {
    return !this.#unbounded && this.#pinged - this.#acked >= this.#window;
  }

  /** Resolves once the client acknowledges more, or the connection ends. */
  room(): Promise<void> {
    return new Promise((resolve) => (this.#wake = resolve));
  }

  /** Writes `chunk` (the server's bytes) to `to`, with a ping after each frame that ends a ping's worth. */
  async relay(chunk: Uint8Array, to: DownstreamSocket): Promise<void> {
    this.#to = to;
    // an answer on its way (and the one it may start as it ends, see #answer)
    while (this.#writing !== undefined) await this.#writing;
    let done!: () => void;
    this.#writing = new Promise<void>((resolve) => (done = resolve));
    try {
      await this.#relayChunk(chunk, to);
      // a pong that came meanwhile, answered now that the client's stream is at a frame's end
      if (this.#answerDue && this.#frames.atBoundary) {
        this.#answerDue = false;
        await writeAll(to, ANSWER_PONG);
      }
    } finally {
      this.#writing = undefined;
      done();
    }
  }

  async #relayChunk(chunk: Uint8Array, to: DownstreamSocket): Promise<void> {
    let start = 0;
    let at = 0;
    while (at < chunk.byteLength) {
      at = this.#frames.next(chunk, at);
      if (!this.#frames.atEnd || this.#sent + (at - start) - this.#pinged < PING_EVERY_BYTES) continue;
      await writeAll(to, chunk.subarray(start, at));
      this.#sent += at - start;
      start = at;
      const ping = new Uint8Array(2 + PING_PAYLOAD_BYTES);
      ping[0] = PING_HEAD;
      ping[1] = PING_PAYLOAD_BYTES;
      new DataView(ping.buffer).setFloat64(2, this.#sent);
      await writeAll(to, ping);
      this.#pinged = this.#sent;
      this.#pings.push({ sent: this.#sent, data: this.#frames.data });
    }
    if (start < chunk.byteLength) await writeAll(to, chunk.subarray(start));
    this.#sent += chunk.byteLength - start;
  }

  /** The client sent a one-way frame, which no reply will acknowledge: answered (see {@linkcode ANSWER_PONG}). */
  oneWay(): void {
    this.#answer();
  }

  /** The client's pong for a ping of ours: it read `read` bytes. */
  acknowledged(read: number): void {
    if (!(read > this.#acked && read <= this.#pinged)) return;
    this.#acked = read;
    this.#window = Math.min(2 * this.#window, MAX_WINDOW_BYTES);
    this.#wakeUp();
    // the pings it acknowledges (a pong answers its ping: the last one at or before `read` counts)
    let data = -1;
    while (this.#pings.length > 0 && this.#pings[0].sent <= read) data = this.#pings.shift()!.data;
    if (data >= 0) this.#relay.onRead?.(data);
    this.#answer();
  }

  /** Answers the client's pong (see {@linkcode ANSWER_PONG}): now if nothing is being written, else after it. */
  #answer(): void {
    const to = this.#to;
    if (to === undefined) return;
    if (this.#writing !== undefined || !this.#frames.atBoundary) {
      this.#answerDue = true;
      return;
    }
    this.#answerDue = false;
    this.#writing = writeAll(to, ANSWER_PONG).catch(() => {
      // the connection is going: its pumps find out by themselves
    }).finally(() => {
      this.#writing = undefined;
      // something more of the client's came while this one went: it gets its own answer
      if (this.#answerDue) this.#answer();
    });
  }

  /** No more pongs will come (the client stopped sending, or the connection closed): no bound. */
  unbound(): void {
    this.#unbounded = true;
    this.#wakeUp();
  }

  #wakeUp(): void {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }
}

/** Writes all of `chunk` to `to`. */
export async function writeAll(to: DownstreamSocket, chunk: Uint8Array): Promise<void> {
  let off = 0;
  while (off < chunk.byteLength) off += await to.write(chunk.subarray(off));
}
