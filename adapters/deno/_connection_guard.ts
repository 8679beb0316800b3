// Private: the front of a Deno node. Deno.serve (Deno 2.9) has no idle or header timeout, no
// connection cap, and its accept loop ends for good on the first accept error ("Too many open
// files"), so idle TCP connections alone could take a node down. Here the node's port is a
// `Deno.listen` listener with its own accept loop (it backs off and goes on after an accept error),
// a bound on open connections, and header and idle timeouts; each connection's bytes are relayed to
// the Deno.serve behind it (over a private Unix socket). A relay costs one more hop on loopback; the
// alternatives measured (Deno's node:http server, a relay made of stream pipes) cost more.

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
  closed: boolean;
  /** The client's WebSocket frames, followed once upgraded. */
  ws: WsLengths | undefined;
}

const CR = 13;
const LF = 10;
/** `HTTP/1.1 101`: the answer that upgrades a connection. */
const SWITCHING = new TextEncoder().encode("HTTP/1.1 101");
const FIRST_READ_BYTES = 4096;
const RELAY_BUFFER_BYTES = 128 * 1024;
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
    relays.delete(r);
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
    try {
      conn.setNoDelay?.(true);
    } catch {
      // not TCP
    }
    const r: Relay = {
      client: conn,
      upstream: undefined,
      phase: "head",
      since: performance.now(),
      matched: 0,
      closed: false,
      ws: undefined,
    };
    relays.add(r);
    void relay(r);
  };

  const fromClient = (r: Relay, chunk: Uint8Array): void => {
    if (r.phase === "upgraded") {
      if (!(r.ws ??= new WsLengths(options.maxMessageBytes)).feed(chunk)) drop(r);
      return;
    }
    if (r.phase === "busy") return;
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
          return;
        }
      } else m = b === CR ? 1 : 0;
    }
    r.matched = m;
  };

  const fromServer = (r: Relay, chunk: Uint8Array): void => {
    if (r.phase === "upgraded") return;
    if (r.phase === "busy" && startsWith(chunk, SWITCHING)) {
      r.phase = "upgraded";
      return;
    }
    r.phase = "idle";
    r.since = performance.now();
  };

  const pump = async (r: Relay, from: DenoConn, to: DenoConn, client: boolean): Promise<void> => {
    const buffer = new Uint8Array(RELAY_BUFFER_BYTES);
    try {
      for (;;) {
        const n = await from.read(buffer);
        if (n === null) break;
        const chunk = buffer.subarray(0, n);
        if (client) fromClient(r, chunk);
        else fromServer(r, chunk);
        await writeAll(to, chunk);
      }
      await to.closeWrite();
    } catch {
      drop(r);
    }
  };

  const relay = async (r: Relay): Promise<void> => {
    // the server behind is reached only once the client says something: a connection that never
    // does holds one descriptor, not three
    const first = new Uint8Array(FIRST_READ_BYTES);
    try {
      const n = await r.client.read(first);
      if (n === null || r.closed) return drop(r);
      r.upstream = await options.connectUpstream();
      if (r.closed) return drop(r);
      const chunk = first.subarray(0, n);
      fromClient(r, chunk);
      await writeAll(r.upstream, chunk);
    } catch {
      return drop(r);
    }
    await Promise.all([pump(r, r.client, r.upstream, true), pump(r, r.upstream, r.client, false)]);
    drop(r);
  };

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
        await new Promise((r) => setTimeout(r, backoff));
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

/**
 * Follows the lengths of a client's WebSocket frames (RFC 6455 §5.2) across chunks, without
 * keeping any payload, and says when a message (its data frames, continuations included) grows past
 * the limit.
 */
class WsLengths {
  #header = new Uint8Array(14);
  #have = 0;
  #payloadLeft = 0;
  #message = 0;
  readonly #limit: number;

  constructor(limit: number) {
    this.#limit = limit;
  }

  /** Takes the next bytes from the client; false once a message is over the limit. */
  feed(chunk: Uint8Array): boolean {
    let at = 0;
    while (at < chunk.byteLength) {
      if (this.#payloadLeft > 0) {
        const skip = Math.min(this.#payloadLeft, chunk.byteLength - at);
        this.#payloadLeft -= skip;
        at += skip;
        continue;
      }
      this.#header[this.#have++] = chunk[at++];
      if (this.#have < 2) continue;
      const len7 = this.#header[1] & 0x7f;
      const need = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (this.#header[1] & 0x80 ? 4 : 0);
      if (this.#have < need) continue;
      const h = this.#header;
      let length = len7;
      if (len7 === 126) length = (h[2] << 8) | h[3];
      else if (len7 === 127) {
        const high = ((h[2] << 24) | (h[3] << 16) | (h[4] << 8) | h[5]) >>> 0;
        length = high > 0 ? Infinity : ((h[6] << 24) | (h[7] << 16) | (h[8] << 8) | h[9]) >>> 0;
      }
      const opcode = h[0] & 0x0f;
      const fin = (h[0] & 0x80) !== 0;
      this.#have = 0;
      if (opcode < 8) {
        // a data frame: a new message, or a continuation (opcode 0) of the current one
        this.#message = opcode === 0 ? this.#message + length : length;
        if (this.#message > this.#limit) return false;
        if (fin) this.#message = 0;
      }
      this.#payloadLeft = length;
    }
    return true;
  }
}

async function writeAll(to: DenoConn, chunk: Uint8Array): Promise<void> {
  let off = 0;
  while (off < chunk.byteLength) off += await to.write(chunk.subarray(off));
}

function startsWith(chunk: Uint8Array, prefix: Uint8Array): boolean {
  if (chunk.byteLength < prefix.byteLength) return false;
  for (let i = 0; i < prefix.byteLength; i++) if (chunk[i] !== prefix[i]) return false;
  return true;
}
