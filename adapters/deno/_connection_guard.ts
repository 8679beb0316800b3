// Private: the front of a Deno node. Deno.serve (Deno 2.9) has no idle or header timeout, no
// connection cap, and its accept loop ends for good on the first accept error ("Too many open
// files"), so idle TCP connections alone could take a node down. Here the node's port is a
// `Deno.listen` listener with its own accept loop (it backs off and goes on after an accept error),
// a bound on open connections, and header and idle timeouts; each connection's bytes are relayed to
// the Deno.serve behind it (over a private Unix socket). A relay costs one more hop on loopback; the
// alternatives measured (Deno's node:http server, a relay made of stream pipes) cost more.
//
// Once a connection is a WebSocket, the relay also bounds what it hands the client unread: Deno's
// server sockets report no pongs, and the kernel takes several MiB from a client that never reads
// before Deno's own buffer (which the node watches) fills. So the relay puts its own pings between
// the server's frames, each carrying the count of bytes relayed before it, and reads the client's
// pongs (which come only once the client has read everything before them): past `window` bytes
// pinged and not acknowledged it stops reading from the server behind, whose buffer then fills
// and makes the node wait (transports/server.ts: a connection's messages wait once 1 MiB of its
// replies are unsent). Each pong doubles the window, so a client that reads has what its link needs.
//
// A node that closes such a connection (1013, "client reads too slowly") must still get its close
// frame out, and that frame waits in Deno's buffer behind what the relay does not read. So the relay
// names each connection to the server behind: it adds a header with a random token to the first
// request's head, and `upgradeWebSocket` (./serve.ts) lifts that connection's bound
// (`unboundRelay`) as the node closes its WebSocket. By the same token the node learns from the relay
// how much of its replies the client has read (`watchRelayReads`: the payloads of the server's data
// frames before each pong's ping), so that it stops making replies for a client that does not read
// once a window of them is unread, as on Bun, where the node pings by itself: without it, the node
// made replies until Deno's own buffer backed up, behind the relay's window and the Unix socket's
// buffers. And while the node serves none of a connection's messages (paused: its client does not
// read), it has the relay keep what the client sends (`holdRelayInput`, pongs still read), so that
// Deno makes no event of each message meanwhile, nor of any when the client leaves first.

import { CR, LF, WsLengths } from "./_ws_frames.ts";
import { Downstream, writeAll } from "./_ws_downstream.ts";

/** What the guard needs of a Deno connection (typed here: the project's tsc has no Deno types). */
export interface DenoConn {
  read(buffer: Uint8Array): Promise<number | null>;
  write(data: Uint8Array): Promise<number>;
  closeWrite(): Promise<void>;
  close(): void;
  setNoDelay?(noDelay?: boolean): void;
}

/** What the guard needs of a Deno listener. */
export interface DenoListener {
  accept(): Promise<DenoConn>;
  close(): void;
}

/** Options of {@linkcode guardConnections}. */
export interface GuardOptions {
  /** Most connections open at once. */
  readonly maxConnections: number;
  /** How long a request's headers may take, in ms (counted from the connection, or the request's first byte). */
  readonly headersTimeoutMs: number;
  /** How long a connection may stay open with no request in progress, in ms. */
  readonly idleTimeoutMs: number;
  /**
   * Largest WebSocket message a client may send, in bytes: Deno's own WebSocket takes up to 64 MiB
   * whatever the node's frame limit, so a longer message closes the connection here.
   */
  readonly maxMessageBytes: number;
  /** Opens a connection to the server behind. */
  readonly connectUpstream: () => Promise<DenoConn>;
  /** Told when accepting failed (the loop goes on after a back-off). */
  readonly onAcceptError?: (error: unknown) => void;
}

/** A running guard. */
export interface Guard {
  /** Connections open now. */
  readonly connections: number;
  /** Stops accepting (the listener is closed); open connections stay. */
  stopAccepting(): void;
  /**
   * Ends every connection: idle ones at once; the others are told the server is done (the server
   * behind sees the end of its input) so that what it still sends reaches the client, and are
   * closed when that is through, or after `graceMs`.
   */
  closeAll(graceMs: number): Promise<void>;
}

/**
 * Where a connection is in its HTTP/1.1 exchange, as far as its bytes tell: sending a request's
 * head (timed by `headersTimeoutMs`), a request in progress (its body, or waiting for the answer:
 * not timed here), idle after an answer (timed by `idleTimeoutMs`), or upgraded to a WebSocket
 * (whose pings decide when its peer is gone).
 */
type Phase = "head" | "busy" | "idle" | "upgraded";

interface Relay {
  readonly client: DenoConn;
  upstream: DenoConn | undefined;
  phase: Phase;
  /** When the phase began (head) or the last byte moved (idle). */
  since: number;
  /** How many bytes of the blank line that ends a head were seen (head). */
  matched: number;
  /** Bytes the client sent after its request's head, before the server's answer (busy). */
  early: number;
  closed: boolean;
  /** The client's WebSocket frames, followed once upgraded. */
  ws: WsLengths | undefined;
  /** The server's side once upgraded: its frames, the relay's pings and the client's pongs. */
  down: Downstream | undefined;
  /** The token the relay named this connection with to the server behind (see {@linkcode RELAY_TOKEN_HEADER}). */
  token: string | undefined;
  /** The server closes this connection: nothing it sends is held back any more. */
  closing: boolean;
  /** Told how much of the server's data frames' payloads the client has read (see {@linkcode watchRelayReads}). */
  onRead: ((read: number) => void) | undefined;
  /**
   * Set once the server behind took no more of the client's bytes: the relay then reads and drops
   * what the client sends until it closes, or this timer ({@linkcode LINGER_MS}) drops it.
   */
  serverGone: ReturnType<typeof setTimeout> | undefined;
  /** The server behind asked for no more of the client's messages for now (see {@linkcode holdRelayInput}). */
  holding: boolean;
  /** What the client sent while held, in order, not yet written to the server. */
  held: Uint8Array[];
  heldBytes: number;
  /** The messages in `held` (data messages begun in it). */
  heldMessages: number;
  /** Told how many messages (and bytes) the relay holds, as that changes (see {@linkcode holdRelayInput}). */
  onHeld: ((messages: number, bytes: number) => void) | undefined;
  /** The client's pump is writing to the server (nothing else may then). */
  writing: boolean;
  /** A write of the held bytes begun by {@linkcode holdRelayInput}, until it ends. */
  flushing: Promise<void> | undefined;
  /** The server behind took no more of the client's bytes (sets `serverGone`, unless the connection is closed). */
  serverLost(): void;
}

/**
 * How long a connection whose server is gone may go on sending (read and dropped) before it is
 * closed: time for the client to read what the server said last (a close frame behind replies).
 */
const LINGER_MS = 10_000;

/**
 * The header the relay adds to a connection's first request head, naming the connection to the
 * server behind with a random token (never shown to the client): {@linkcode unboundRelay} takes it.
 */
export const RELAY_TOKEN_HEADER = "x-thinkagain-relay";
/**
 * The most bytes a held connection's client may send before they go to the server behind all the
 * same (see {@linkcode holdRelayInput}); the server then holds them itself, to its own limits.
 */
const HOLD_BYTES = 1024 * 1024;

/** The relays by their tokens, for {@linkcode unboundRelay}. */
const relaysByToken = new Map<string, Relay>();

/**
 * Lifts the bound on what the relay named `token` hands its client unread: the server behind is
 * closing that connection, and its close frame (behind everything it still sends) must get out.
 *
 * @param token The value of the {@linkcode RELAY_TOKEN_HEADER} header of the connection's request.
 * @returns Whether a relay had that token.
 *
 * @example An unknown token lifts nothing
 * ```ts
 * import { unboundRelay } from "./_connection_guard.ts";
 * if (unboundRelay("no such token")) throw new Error("unexpected");
 * ```
 */
export function unboundRelay(token: string): boolean {
  const r = relaysByToken.get(token);
  if (r === undefined) return false;
  r.closing = true;
  r.down?.unbound();
  // (the client's answer to the close frame may be among what it held)
  release(r);
  return true;
}

/**
 * Holds, or stops holding, what the client of the relay named `token` sends: while held, the relay
 * reads the client's bytes (its pongs still count, see {@linkcode watchRelayReads}) and keeps them,
 * up to {@linkcode HOLD_BYTES}, instead of handing them to the server behind; let go, it hands them
 * on in order. A node holds the messages of a client that does not read its replies (it serves
 * none of them until the client reads): held here, they cost the node nothing until then, where
 * Deno's WebSocket would make an event of each, and nothing at all when the client goes away first
 * (issue 11's never-reading clients send thousands of calls and leave).
 *
 * @param token The value of the {@linkcode RELAY_TOKEN_HEADER} header of the connection's request.
 * @param hold Whether to hold.
 * @param onHeld Told how many messages (data messages begun) and bytes the relay holds, each time a
 * read adds to them, and 0, 0 as it hands them on (a node counts them with its own held ones).
 * @returns Whether a relay had that token.
 *
 * @example An unknown token holds nothing
 * ```ts
 * import { holdRelayInput } from "./_connection_guard.ts";
 * if (holdRelayInput("no such token", true)) throw new Error("unexpected");
 * ```
 */
export function holdRelayInput(
  token: string,
  hold: boolean,
  onHeld?: (messages: number, bytes: number) => void,
): boolean {
  const r = relaysByToken.get(token);
  if (r === undefined) return false;
  if (onHeld !== undefined) r.onHeld = onHeld;
  if (hold) r.holding = !r.closing;
  else release(r);
  return true;
}

/** Stops holding the relay's client and hands the server what it held (unless the client's pump is writing: it does so next). */
function release(r: Relay): void {
  r.holding = false;
  if (r.held.length === 0 || r.writing || r.flushing !== undefined || r.upstream === undefined) return;
  r.flushing = writeHeld(r, r.upstream).finally(() => {
    r.flushing = undefined;
    // (held and let go again while it wrote)
    if (!r.holding) release(r);
  });
}

/**
 * Writes what the relay held to the server behind, in order, while it is not held again (or
 * `evenIfHeld`: the hold is full, or the client's bytes end); a write that fails: the server is
 * gone, as in the relay's pump.
 */
async function writeHeld(r: Relay, to: DenoConn, evenIfHeld = false): Promise<void> {
  while ((evenIfHeld || !r.holding) && r.held.length > 0 && r.serverGone === undefined && !r.closed) {
    const held = r.held;
    const all = new Uint8Array(r.heldBytes);
    let at = 0;
    for (const chunk of held) {
      all.set(chunk, at);
      at += chunk.byteLength;
    }
    forgetHeld(r);
    r.onHeld?.(0, 0);
    try {
      await writeAll(to, all);
    } catch {
      r.serverLost();
    }
  }
  // (the server is gone, or the connection closed: what is held goes nowhere)
  if (r.serverGone !== undefined || r.closed) forgetHeld(r);
}

/** Empties what the relay holds (its bytes are written, or go nowhere). */
function forgetHeld(r: Relay): void {
  r.held = [];
  r.heldBytes = 0;
  r.heldMessages = 0;
}

/**
 * Has `onRead` told, each time the client of the relay named `token` shows (by a pong) how much it
 * read, the bytes of the server's WebSocket messages it has read: the payloads of the server's data
 * frames, counted from the upgrade (a node's replies, without the frames' headers or the relay's
 * pings).
 *
 * @param token The value of the {@linkcode RELAY_TOKEN_HEADER} header of the connection's request.
 * @param onRead Told the bytes read so far, each time that grows.
 * @returns Whether a relay had that token (else `onRead` is never told).
 *
 * @example An unknown token watches nothing
 * ```ts
 * import { watchRelayReads } from "./_connection_guard.ts";
 * if (watchRelayReads("no such token", () => {})) throw new Error("unexpected");
 * ```
 */
export function watchRelayReads(token: string, onRead: (read: number) => void): boolean {
  const r = relaysByToken.get(token);
  if (r === undefined) return false;
  r.onRead = onRead;
  return true;
}

/**
 * `chunk` (the start of a connection's first request) with the {@linkcode RELAY_TOKEN_HEADER}
 * header after its request line, or `undefined` when the request line does not end in it.
 */
function withToken(chunk: Uint8Array, token: string): Uint8Array | undefined {
  for (let i = 0; i + 1 < chunk.byteLength; i++) {
    if (chunk[i] !== CR || chunk[i + 1] !== LF) continue;
    const line = new TextEncoder().encode(`${RELAY_TOKEN_HEADER}: ${token}\r\n`);
    const out = new Uint8Array(chunk.byteLength + line.byteLength);
    out.set(chunk.subarray(0, i + 2));
    out.set(line, i + 2);
    out.set(chunk.subarray(i + 2), i + 2 + line.byteLength);
    return out;
  }
  return undefined;
}

/** `HTTP/1.1 101`: the answer that upgrades a connection. */
const SWITCHING = new TextEncoder().encode("HTTP/1.1 101");
const FIRST_READ_BYTES = 4096;
/** A relay's buffer for each direction at first: a read that fills it makes it {@linkcode RELAY_BUFFER_BYTES}. */
const FIRST_RELAY_BUFFER_BYTES = 16 * 1024;
const RELAY_BUFFER_BYTES = 128 * 1024;

/**
 * Buffers of one size kept for reuse, at most `keep` of them. A connection's first read needs a
 * buffer of its own while it waits, and a flood of connections that never send (issue 11's soak:
 * hundreds opened and closed each round) made one each: V8 allocates, zeroes and accounts every one,
 * in the same turn as the accepts.
 */
class BufferPool {
  readonly #free: Uint8Array[] = [];
  constructor(readonly bytes: number, readonly keep: number) {}
  /** A buffer (its bytes are whatever its last user left). */
  take(): Uint8Array {
    return this.#free.pop() ?? new Uint8Array(this.bytes);
  }
  /** Gives back a buffer taken here, once nothing reads into it or holds a view of it. */
  give(buffer: Uint8Array): void {
    if (this.#free.length < this.keep) this.#free.push(buffer);
  }
}
/** The first reads' buffers, kept for the connections to come (2 MiB at most). */
const firstReads = new BufferPool(FIRST_READ_BYTES, 512);
const MAX_ACCEPT_BACKOFF_MS = 1000;

/**
 * Accepts connections on `listener` and relays each to the server behind, holding every connection
 * to the limits. Over `maxConnections`, a new connection takes the place of the oldest one without a
 * request in progress (sending its head, or idle); when all are busy, it is closed.
 */
export function guardConnections(listener: DenoListener, options: GuardOptions): Guard {
  const relays = new Set<Relay>();
  let accepting = true;
  const sweepEvery = Math.max(
    25,
    Math.min(1000, Math.floor(Math.min(options.headersTimeoutMs, options.idleTimeoutMs) / 4)),
  );
  const sweeper = setInterval(() => {
    const now = performance.now();
    for (const r of relays) {
      if (
        (r.phase === "head" && now - r.since > options.headersTimeoutMs) ||
        (r.phase === "idle" && now - r.since > options.idleTimeoutMs)
      ) drop(r);
    }
  }, sweepEvery);

  let emptied: (() => void) | undefined;
  const drop = (r: Relay): void => {
    if (r.closed) return;
    r.closed = true;
    forgetHeld(r);
    relays.delete(r);
    if (r.token !== undefined) relaysByToken.delete(r.token);
    clearTimeout(r.serverGone);
    if (relays.size === 0) emptied?.();
    try {
      r.client.close();
    } catch {
      // already closed by the peer
    }
    try {
      r.upstream?.close();
    } catch {
      // already closed
    }
    r.down?.unbound();
  };

  const admit = (conn: DenoConn): void => {
    if (relays.size >= options.maxConnections) {
      let victim: Relay | undefined;
      for (const r of relays) {
        if (r.phase === "head" || r.phase === "idle") {
          victim = r;
          break;
        }
      }
      if (victim === undefined) {
        try {
          conn.close();
        } catch {
          // gone already
        }
        return;
      }
      drop(victim);
    }
    const r: Relay = {
      client: conn,
      upstream: undefined,
      phase: "head",
      since: performance.now(),
      matched: 0,
      early: 0,
      closed: false,
      ws: undefined,
      down: undefined,
      token: undefined,
      closing: false,
      onRead: undefined,
      serverGone: undefined,
      holding: false,
      held: [],
      heldBytes: 0,
      heldMessages: 0,
      onHeld: undefined,
      writing: false,
      flushing: undefined,
      // (not for a connection closed already: its pump ends after the close, and a timer set then
      // would hold the program open, and the relay, for LINGER_MS after the guard was closed)
      serverLost: () => {
        if (!r.closed) r.serverGone ??= setTimeout(() => drop(r), LINGER_MS);
      },
    };
    relays.add(r);
    void relay(r);
  };

  const fromClient = (r: Relay, chunk: Uint8Array): void => {
    if (r.phase === "upgraded") {
      const down = r.down;
      const ws = r.ws ??= new WsLengths(
        options.maxMessageBytes,
        down ? (read) => down.acknowledged(read) : undefined,
        down ? () => down.oneWay() : undefined,
      );
      if (!ws.feed(chunk)) drop(r);
      return;
    }
    if (r.phase === "busy") {
      r.early += chunk.length;
      return;
    }
    if (r.phase === "idle") {
      r.phase = "head";
      r.since = performance.now();
      r.matched = 0;
    }
    let m = r.matched;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i];
      if (b === (m % 2 === 0 ? CR : LF)) {
        if (++m === 4) {
          r.phase = "busy";
          r.early = chunk.length - i - 1;
          return;
        }
      } else m = b === CR ? 1 : 0;
    }
    r.matched = m;
  };

  const fromServer = (r: Relay, chunk: Uint8Array): void => {
    if (r.phase === "upgraded") return;
    if (r.phase === "busy" && startsWith(chunk, SWITCHING)) {
      // a WebSocket client waits for the server's answer before it sends anything more (RFC 6455
      // §4.1): bytes sent before it would be taken for frames from the middle of one here, and a
      // message past the limit could pass unseen
      if (r.early > 0) return drop(r);
      r.phase = "upgraded";
      r.down = new Downstream(r);
      if (r.closing) r.down.unbound();
      return;
    }
    r.phase = "idle";
    r.since = performance.now();
  };

  const pump = async (r: Relay, from: DenoConn, to: DenoConn, client: boolean): Promise<void> => {
    // (small at first: most connections move a few KiB; one whose read fills it gets the large one)
    let buffer = new Uint8Array(FIRST_RELAY_BUFFER_BYTES);
    try {
      for (let filled = false;;) {
        // (the last read's bytes are relayed by now: nothing holds a view of the small buffer)
        if (filled && buffer.byteLength < RELAY_BUFFER_BYTES) buffer = new Uint8Array(RELAY_BUFFER_BYTES);
        let n: number | null;
        try {
          n = await from.read(buffer);
        } catch (err) {
          // the server reset its side (it closed with bytes of the client's unread): what it sent
          // before was read and relayed, so the client gets it and then the end, as at its close
          if (client) throw err;
          n = null;
        }
        if (n === null) break;
        filled = n === buffer.byteLength;
        const chunk = buffer.subarray(0, n);
        if (client) {
          const before = r.ws?.messages ?? 0;
          fromClient(r, chunk);
          const messages = (r.ws?.messages ?? 0) - before;
          // the server is gone: what the client still sends goes nowhere, but it is read, so that
          // closing the client's socket sends what the server said last instead of a reset
          if (r.serverGone !== undefined) continue;
          // held (the server asked for no more for now): kept here until it asks again
          if (r.holding && r.heldBytes + n <= HOLD_BYTES) {
            r.held.push(chunk.slice());
            r.heldBytes += n;
            r.heldMessages += messages;
            r.onHeld?.(r.heldMessages, r.heldBytes);
            continue;
          }
          r.writing = true;
          try {
            if (r.flushing !== undefined) await r.flushing;
            // what was held goes first (the hold is over, or full)
            if (r.held.length > 0) await writeHeld(r, to, true);
            await writeAll(to, chunk);
            // let go while this wrote
            if (!r.holding && r.held.length > 0) await writeHeld(r, to);
          } catch {
            r.serverLost();
          } finally {
            r.writing = false;
          }
          continue;
        } else {
          if (r.down === undefined) fromServer(r, chunk);
          if (r.closed) return;
          const down = r.down;
          if (down !== undefined) {
            await down.relay(chunk, to);
            // nothing more from the server while the client has not shown it read enough
            while (down.full && !r.closed) await down.room();
            continue;
          }
        }
        await writeAll(to, chunk);
      }
      // the client sends no more (no more pongs either): what the server sends goes unbounded,
      // and what it held goes to the server before the end of the client's bytes
      if (client) {
        r.down?.unbound();
        if (r.flushing !== undefined) await r.flushing;
        await writeHeld(r, to, true);
      } // the server is done: what the client still sends is read and dropped, for a while
      else r.serverLost();
      await to.closeWrite();
    } catch {
      drop(r);
    }
  };

  const relay = async (r: Relay): Promise<void> => {
    // the server behind is reached only once the client says something: a connection that never
    // does holds one descriptor, not three
    const first = firstReads.take();
    try {
      const n = await r.client.read(first);
      if (n === null || r.closed) return drop(r);
      // (not before: a connection that never sends costs no call for it)
      try {
        r.client.setNoDelay?.(true);
      } catch {
        // not TCP
      }
      r.upstream = await options.connectUpstream();
      if (r.closed) return drop(r);
      const chunk = first.subarray(0, n);
      fromClient(r, chunk);
      // the first request is named (a request line longer than the first read is not: its
      // connection keeps its bound as the node closes it)
      const token = crypto.randomUUID();
      const named = withToken(chunk, token);
      if (named !== undefined) {
        r.token = token;
        relaysByToken.set(token, r);
      }
      await writeAll(r.upstream, named ?? chunk);
    } catch {
      return drop(r);
    } finally {
      // its read is over and its bytes are written (or never will be)
      firstReads.give(first);
    }
    await Promise.all([pump(r, r.client, r.upstream, true), pump(r, r.upstream, r.client, false)]);
    drop(r);
  };

  /** Ends the accept loop's pause after an accept error at once (the guard stops accepting). */
  let endPause: (() => void) | undefined;
  void (async () => {
    let backoff = 0;
    while (accepting) {
      let conn: DenoConn;
      try {
        conn = await listener.accept();
        backoff = 0;
      } catch (err) {
        if (!accepting) return;
        const name = (err as { name?: unknown } | null)?.name;
        if (name === "BadResource" || name === "Interrupted") return; // the listener was closed
        try {
          options.onAcceptError?.(err);
        } catch {
          // a logging hook must not stop the loop
        }
        // e.g. out of file descriptors: the timeouts free some; meanwhile do not spin
        backoff = Math.min(MAX_ACCEPT_BACKOFF_MS, backoff === 0 ? 5 : backoff * 2);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, backoff);
          endPause = () => (clearTimeout(timer), resolve());
        });
        endPause = undefined;
        continue;
      }
      if (!accepting) {
        conn.close();
        return;
      }
      admit(conn);
    }
  })();

  return {
    get connections() {
      return relays.size;
    },
    stopAccepting() {
      if (!accepting) return;
      accepting = false;
      // (a pause left to run would hold the program open for up to MAX_ACCEPT_BACKOFF_MS)
      endPause?.();
      try {
        listener.close();
      } catch {
        // closed already
      }
    },
    async closeAll(graceMs) {
      clearInterval(sweeper);
      for (const r of [...relays]) {
        if (r.phase === "head" || r.phase === "idle" || r.upstream === undefined) drop(r);
        else r.upstream.closeWrite().catch(() => drop(r));
      }
      if (relays.size > 0) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          new Promise<void>((resolve) => (emptied = resolve)),
          new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs))),
        ]);
        clearTimeout(timer);
      }
      for (const r of [...relays]) drop(r);
    },
  };
}

function startsWith(chunk: Uint8Array, prefix: Uint8Array): boolean {
  if (chunk.byteLength < prefix.byteLength) return false;
  for (let i = 0; i < prefix.byteLength; i++) if (chunk[i] !== prefix[i]) return false;
  return true;
}
