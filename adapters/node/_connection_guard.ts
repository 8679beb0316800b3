// Private: the connection limits of a node served on Node's HTTP server, held by the adapter
// itself. Node's own headersTimeout is checked only every connectionsCheckingInterval (30 s), and a
// connection that sends nothing at all stayed open past 40 s against a 1 s limit on Node 20; under
// Bun's and Deno's Node compatibility the node:http timeouts are not kept at all (measured: Deno
// kept a silent connection open past 40 s). Node's maxConnections refuses the newest connection,
// so that idle connections alone could keep every program out. Here, as in the Deno adapter's
// guard: a connection past the cap takes the place of the oldest one with no request in progress
// (sending its head, or idle), and is closed when all are busy; a connection that sends no complete
// head within headersTimeoutMs, or stays idle idleTimeoutMs after an answer, is closed.
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Socket } from "node:net";

/** Options of {@linkcode guardNodeServer}. */
export interface NodeGuardOptions {
  /** Most connections open at once. */
  readonly maxConnections: number;
  /** How long a connection may take to send its first request's headers, in ms. */
  readonly headersTimeoutMs: number;
  /** How long a connection may stay open after an answer with no request in progress, in ms. */
  readonly idleTimeoutMs: number;
}

/** A running guard. */
export interface NodeGuard {
  /** Connections open now. */
  readonly connections: number;
  /** Marks a connection as upgraded to a WebSocket: no longer timed or replaced. */
  upgraded(socket: Socket): void;
  /** Stops the sweeps (the server is closing). */
  stop(): void;
}

/**
 * Where a connection is: sending a request's head (timed by headersTimeoutMs), a request in
 * progress, idle after an answer (timed by idleTimeoutMs), or a WebSocket (its pings decide).
 */
type Phase = "head" | "busy" | "idle" | "upgraded";

interface Tracked {
  phase: Phase;
  /** When the phase began. */
  since: number;
}

/**
 * Holds `server`'s connections to the limits (see the file's header). Call it before the server
 * listens; Node's own maxConnections must stay unset, or the newest connection is refused before
 * the guard sees it.
 */
export function guardNodeServer(server: Server, options: NodeGuardOptions): NodeGuard {
  // a Map keeps insertion order: the first replaceable entry is the oldest
  const open = new Map<Socket, Tracked>();
  const sweepEvery = Math.max(
    25,
    Math.min(1000, Math.floor(Math.min(options.headersTimeoutMs, options.idleTimeoutMs) / 4)),
  );
  const sweeper = setInterval(() => {
    const now = performance.now();
    for (const [socket, t] of open) {
      if (
        (t.phase === "head" && now - t.since > options.headersTimeoutMs) ||
        (t.phase === "idle" && now - t.since > options.idleTimeoutMs)
      ) drop(socket);
    }
  }, sweepEvery);
  (sweeper as { unref?: () => void }).unref?.();

  const drop = (socket: Socket): void => {
    open.delete(socket);
    socket.destroy();
  };

  server.on("connection", (socket: Socket) => {
    if (open.size >= options.maxConnections) {
      let victim: Socket | undefined;
      for (const [s, t] of open) {
        if (t.phase === "head" || t.phase === "idle") {
          victim = s;
          break;
        }
      }
      if (victim === undefined) {
        socket.destroy();
        return;
      }
      drop(victim);
    }
    open.set(socket, { phase: "head", since: performance.now() });
    socket.once("close", () => open.delete(socket));
  });

  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    const t = open.get(req.socket as Socket);
    if (t === undefined) return;
    t.phase = "busy";
    res.once("close", () => {
      if (t.phase !== "busy") return;
      t.phase = "idle";
      t.since = performance.now();
    });
  });

  return {
    get connections() {
      return open.size;
    },
    upgraded(socket) {
      const t = open.get(socket);
      if (t !== undefined) t.phase = "upgraded";
    },
    stop() {
      clearInterval(sweeper);
    },
  };
}

/** What the heartbeat needs of a `ws` server socket. */
interface PingedSocket {
  ping(): void;
  terminate(): void;
  on(event: "pong", listener: () => void): unknown;
}

/**
 * Pings every WebSocket of `clients` each `everyMs` and ends one that has not answered the previous
 * ping: a peer that vanished (its machine off, its network cut) otherwise holds its connection
 * forever on Node, where Bun and Deno ping on their own.
 *
 * @returns Stops the pings.
 */
export function heartbeat(clients: { readonly clients: Iterable<PingedSocket> }, everyMs: number): () => void {
  const answered = new WeakSet<PingedSocket>();
  const seen = new WeakSet<PingedSocket>();
  const timer = setInterval(() => {
    for (const ws of clients.clients) {
      if (!seen.has(ws)) {
        seen.add(ws);
        ws.on("pong", () => answered.add(ws));
      } else if (!answered.has(ws)) {
        ws.terminate();
        continue;
      }
      answered.delete(ws);
      try {
        ws.ping();
      } catch {
        // closing already
      }
    }
  }, everyMs);
  (timer as { unref?: () => void }).unref?.();
  return () => clearInterval(timer);
}
