/**
 * One WebSocket connection of the node's app (`server.ts`'s `GET /ws`): its events, as the runtime's
 * adapter gives it frames ({@linkcode wsEvents}). Frames in (whole, in segments, in parts, in
 * batches) go to the node's frame handler and replies go out in order through a bounded send queue;
 * messages read at once are served a slice of each turn at a time, from a budget every connection
 * shares; a connection whose replies back up (unsent, or, where the runtime reports pongs or the
 * adapter reports reads, sent and not shown to have been read: its unread window, checked by pings)
 * has no more of its messages served until they drain.
 *
 * @module
 */
import type { WSContext, WSEvents } from "hono/ws";
import { ProtocolError, TransportError } from "../core/errors.ts";
import { nextTurn } from "../core/_runtime.ts";
import { frameBytes, offerHeadroom } from "../core/codec.ts";
import { encodeError, newConnectionId, replyTooLarge, tooLarge } from "./_common.ts";
import type { FrameHandler, PeerInfo } from "./transport.ts";
import {
  forEachInBatch,
  FRAME_HEADER_BYTES,
  KIND_BATCH,
  KIND_ERROR,
  KIND_NOTIFY,
  KIND_PART,
  KIND_PART_END,
  KIND_REPLY,
  KIND_REQUEST,
  KIND_SEGMENTED,
  MAX_PIECED_MESSAGE_BYTES,
  Outbox,
  PART_ACK,
  PartAssembler,
  readFrameId,
  segmentedMessages,
  SegmentReader,
} from "./ws_framing.ts";
import { SendQueue, SLOW_READER_CLOSE_CODE } from "./ws_send_queue.ts";

/**
 * A binary WebSocket message as bytes (runtimes hand over ArrayBuffer, a view, or a Buffer): a plain
 * `Uint8Array` as it is (an adapter's, see `WsAppEvents.takesViews`), anything else as a plain view
 * of its bytes (a Buffer's `slice` would not copy).
 */
function toBytes(data: unknown): Uint8Array | undefined {
  if (data instanceof Uint8Array && data.constructor === Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return undefined;
}

/**
 * How long messages may be served in one turn while one connection alone sends, ms: a pipelined
 * burst from a single client is served in few turns (each turn costs a timer and a poll).
 */
const SLICE_MS = 2;
/**
 * The same, once another connection has sent within {@linkcode CONTENDED_MS}: a message that comes
 * in meanwhile waits in the kernel until the turn ends, so a short turn is what keeps a well-behaved
 * client's tail near its idle latency while others flood the node (issue 11's soak; the figures
 * are in BENCHMARKS.md, Soak under attack, fifteenth session). Not for every turn: a single client's
 * pipelined calls paid for the extra turns there.
 */
const CONTENDED_SLICE_MS = 0.25;
/** How recently another connection must have sent for the turns to be short, ms. */
const CONTENDED_MS = 50;
/**
 * A connection with more bytes of replies unsent than this (in the runtime's socket buffer and its
 * send queue) has no more of its messages served until it drains to {@linkcode RESUME_BYTES}. 1 MiB
 * is one full batch of replies (the Outbox's) and ~8 ms of a 1 Gbit/s link: a client that reads
 * still finds the kernel's buffers full while the node waits, and a flood that never reads costs the
 * node 1 MiB of replies, not the 32 MiB of 2,000 calls of 16 KiB.
 */
const PAUSE_BYTES = 1024 * 1024;
/** Unsent bytes below which a paused connection's messages are served again. */
const RESUME_BYTES = 256 * 1024;
/**
 * Most messages of a paused connection that wait (besides `maxSendQueueBytes` of them): as many
 * as the calls a connection may have in flight by default (`--max-calls-per-connection`), so a
 * client within that bound that reads slowly is never closed for it. (Those an adapter holds for
 * the node count too, see `WsAppEvents.holdInput`.)
 */
const MAX_HELD_MESSAGES = 10_000;
/**
 * Where the runtime reports WebSocket pongs (Bun, `adapters/bun/serve.ts`), the node pings a
 * connection after each this many bytes of replies handed to the runtime, the ping carrying that
 * count; the pong, which comes only once the client has read everything before the ping, says how
 * much of it the client has read. (Pinging less often once a client has shown it reads, a quarter of
 * its window, was tried and not kept: BENCHMARKS.md, Transports, fourteenth session.)
 */
const PING_EVERY_BYTES = 256 * 1024;
/**
 * Bytes of replies a connection may have been sent and not shown to have read (by a pong), at
 * first: a connection whose client never reads gets this much, not the ~5 MiB that the kernel's
 * socket buffers take before any runtime buffer fills (issue 11's soak: each round's new
 * never-reading connections). Each pong doubles it, up to {@linkcode MAX_UNREAD_BYTES}, so a client
 * that reads soon has as much in flight as its link needs. One ping's worth ({@linkcode
 * PING_EVERY_BYTES}, so the ping that lifts it is always sent): a never-reading connection then
 * costs the node a quarter of the replies it cost at 1 MiB, and a client that reads has 1 MiB in
 * flight after two pongs. (It must not be less than PING_EVERY_BYTES: a connection paused before
 * its first ping would wait for a pong that never comes. The same holds for the pings of an adapter
 * that reports reads: Deno's connection guard pings as often.)
 */
const FIRST_UNREAD_BYTES = PING_EVERY_BYTES;
/** The most a connection's unread window grows to (see {@linkcode FIRST_UNREAD_BYTES}). */
const MAX_UNREAD_BYTES = 64 * 1024 * 1024;
const EMPTY = new Uint8Array(0);
let turn = 0;
let turnArmed = false;
const endTurn = (): void => {
  turnArmed = false;
  turn++;
};
/**
 * From now on the end of this turn is marked (a timer fires after its I/O), shared by every
 * connection so that a turn costs one timer, not one per connection. `turn` also moves on now: a
 * connection's next message counts as its first since the marking began.
 */
function markTurn(): void {
  turnArmed = true;
  turn++;
  nextTurn(endTurn);
}

// Every connection's waiting messages share one budget per turn (SLICE_MS, from the turn's first
// message served): with a budget per connection, a turn with several connections' bursts lasted
// several budgets, and the replies their calls made after them (issue 11's soak: long turns while
// new never-reading connections filled the kernel's buffers; BENCHMARKS.md, Soak under attack,
// ninth session). Connections whose messages wait take turns in order: one that used up the budget
// goes to the back.
// A turn's end is marked (a timer) only once its budget is half spent: until then every message is
// served whichever turn it came in (a budget with time left serves it in either case), so a
// sequential call, alone in its turn, costs no timer (a timer per message made every call of a
// frame echo dearer, on Deno most; BENCHMARKS.md, Transports, tenth session). A budget found
// spent with no mark may be an earlier turn's: a budget of its own starts then, and the turn is
// marked (in one turn, that serves at most one message more than a mark from the start would, after
// a message that alone ran past half the budget).
let budgetTurn = -1;
let budgetStart = 0;
/** Whether this turn's budget has time left (starting it, at the turn's first look). */
function budgetLeft(): boolean {
  const now = performance.now();
  if (turn !== budgetTurn) {
    // a marked turn ended since the budget began (or none began yet)
    budgetTurn = turn;
    budgetStart = now;
    return true;
  }
  const spent = now - budgetStart;
  const slice = now - othersSentAt < CONTENDED_MS ? CONTENDED_SLICE_MS : SLICE_MS;
  if (turnArmed) return spent <= slice;
  if (spent <= slice / 2) return true;
  markTurn();
  budgetTurn = turn;
  if (spent > slice) budgetStart = now;
  return true;
}
// The connection whose message came last, and when a message last came from another one than the
// connection before it: the turns are short while that is recent (see CONTENDED_SLICE_MS). One
// comparison per message; the clock is read only when the sender changes.
let lastSender = -1;
let othersSentAt = -Infinity;
function noteSender(connection: number): void {
  if (connection === lastSender) return;
  if (lastSender !== -1) othersSentAt = performance.now();
  lastSender = connection;
}
/** Connections with messages waiting (each's way to serve them), in the order they are served. */
let queued: (() => void)[] = [];
let queuedHead = 0;
let queueArmed = false;
/** Puts a connection at the back of the queue; its `serve` is called in a later turn. */
function enqueue(serve: () => void): void {
  queued.push(serve);
  armQueue();
}
function armQueue(): void {
  if (queueArmed) return;
  queueArmed = true;
  nextTurn(() => {
    queueArmed = false;
    serveNext();
  });
}
/** The next connection in the queue serves its messages, if the budget has time left (else next turn). */
function serveNext(): void {
  if (queuedHead >= queued.length) {
    queued = [];
    queuedHead = 0;
    return;
  }
  if (!budgetLeft()) return armQueue();
  const serve = queued[queuedHead]!;
  queued[queuedHead++] = noop;
  serve();
}
const noop = (): void => {};

/**
 * A connection's events as the node's app gives them to the runtime's adapter, besides hono's:
 * `onDrain` for a runtime whose socket pushes back (Bun's `drain`), `onPong` for one that reports
 * pongs, which it says by setting `deliversPongs` before the connection's first message
 * (`adapters/bun/serve.ts` does both); `onRead` for an adapter that learns by itself how much of
 * the replies the client has read, which it says by setting `reportsReads` (`adapters/deno/serve.ts`,
 * whose connection guard pings the client between the node's frames and reads its pongs).
 */
export interface WsAppEvents extends WSEvents {
  /** The socket can take more (Bun's `drain`). */
  onDrain(): void;
  /** A pong arrived, with its payload. */
  onPong(data: Uint8Array): void;
  /** Set by an adapter whose runtime calls `onPong` for every pong. */
  deliversPongs?: boolean;
  /** The client has read the first `read` bytes of the messages this connection sent it (their payloads). */
  onRead(read: number): void;
  /** Set by an adapter that calls `onRead` as the client reads (the node then sends no pings of its own). */
  reportsReads?: boolean;
  /**
   * Set by an adapter that can keep a connection's next messages from the node for a while: the node
   * asks it to (`true`) while it serves none of them (paused: the client does not read its replies),
   * and to let them come again (`false`). Messages on their way still come (the node holds them);
   * the adapter says with `onHeld` how many it holds.
   */
  holdInput?: (hold: boolean) => void;
  /** The adapter holds this many of the connection's messages, of these bytes (see `holdInput`). */
  onHeld(messages: number, bytes: number): void;
  /**
   * Whether the node has answered every request of this connection and the runtime's socket
   * handed the answers to the kernel (no reply being made, nothing in its send queue or for the
   * next turn, an empty socket buffer): an adapter that closes connections at shutdown waits for
   * this first (bounded by its grace: a call past a drain's grace holds it that long).
   */
  allSent?(): boolean;
  /**
   * Set by the app: a binary message may come as a `Uint8Array` (of its own memory) instead of
   * the `ArrayBuffer` hono gives, so an adapter whose runtime makes views (Bun) passes them on as
   * they are instead of making an `ArrayBuffer` for each (which is most of the cost of taking in a
   * small message there).
   */
  readonly takesViews?: boolean;
}

/** Bun's server socket's ping and pong: -1 queued over its limit, 0 dropped, else the bytes sent. */
interface PingingSocket {
  ping(data: Uint8Array): number;
  pong(data: Uint8Array): number;
}

/**
 * What the node sends back for the client's pong to its ping, and for a one-way frame of the
 * client's (a `cancel`, a `free`): an unsolicited pong with no payload, which a client ignores (RFC
 * 6455 §5.5.3). It is there for the TCP segment that carries it: that segment acknowledges what the
 * client sent at once. A client whose socket holds small writes until its earlier ones are
 * acknowledged (Nagle's algorithm: Deno's `WebSocket` client leaves it on) would otherwise hold its
 * next message for the node's delayed acknowledgement, ~40 ms on Linux, whenever the node has
 * nothing else to send: after each reply of more than a ping's worth, and after each one-way frame
 * (BENCHMARKS.md, Data plane, twenty-fourth session). Deno's connection guard does the same for a
 * Deno node (`adapters/deno/_connection_guard.ts`).
 */
const ANSWER_PONG = new Uint8Array(0);

/**
 * The events of one WebSocket connection: frames in, handler, replies out (see {@linkcode WsAppEvents}).
 *
 * @param handler Gets every frame of the connection.
 * @param maxFrameBytes The largest frame taken or answered (a larger one is answered `too-large`).
 * @param maxSendQueueBytes The most bytes of replies that may wait for the client (past it: closed, 1013).
 * @param holdsToken Where the server let the connection in for its token: whether that token is a
 * given one ({@linkcode PeerInfo.holdsToken}).
 * @returns The connection's events, for the runtime's `upgradeWebSocket`.
 *
 * @example A text message is no frame: the connection says why and closes
 * ```ts
 * import { wsEvents } from "./ws_connection.ts";
 * import type { WSContext } from "hono/ws";
 * import { strictEqual } from "node:assert/strict";
 * const sent: unknown[] = [];
 * let closedWith: number | undefined;
 * const ws = { send: (m: unknown) => sent.push(m), close: (code?: number) => (closedWith = code), readyState: 1 };
 * const events = wsEvents((frame) => frame, 1024, 1 << 20);
 * events.onMessage!(new MessageEvent("message", { data: "hello" }), ws as unknown as WSContext);
 * strictEqual(closedWith, 1002);
 * strictEqual(sent.length, 1); // the error frame
 * ```
 */
export function wsEvents(
  handler: FrameHandler,
  maxFrameBytes: number,
  maxSendQueueBytes: number,
  holdsToken?: (token: string) => boolean,
): WsAppEvents {
  const connectionId = newConnectionId();
  // aborted when the connection closes: its calls still running have nobody to answer any more
  const closed = new AbortController();
  const peer: PeerInfo = {
    transport: "websocket",
    connectionId,
    oneWay: false,
    signal: closed.signal,
    holdsToken,
    maxFrameBytes,
  };
  const notifyPeer: PeerInfo = {
    transport: "websocket",
    connectionId,
    oneWay: true,
    signal: closed.signal,
    holdsToken,
  };
  let open = true;
  // replies written in the same turn leave in one message
  let outbox: Outbox | undefined;
  // what leaves the socket, in order, never dropped (a slow client's replies wait, bounded)
  let out: SendQueue | undefined;
  const write = (ws: WSContext, m: Uint8Array<ArrayBuffer>): void => {
    if (!open) return;
    (out ??= new SendQueue(ws, maxSendQueueBytes)).send(m);
    if (out.closed) open = false;
    written += m.byteLength;
    if (written - pinged >= PING_EVERY_BYTES) ping();
  };
  // a large array beside its frame's head: written in the next turn (SendQueue.sendNextTurn), and
  // the ping behind it sent then (setImmediate runs in order: the queue's write comes first)
  const writeNextTurn = (ws: WSContext, m: Uint8Array<ArrayBuffer>): void => {
    if (!open) return;
    (out ??= new SendQueue(ws, maxSendQueueBytes)).sendNextTurn(m);
    if (out.closed) open = false;
    written += m.byteLength;
    if (written - pinged >= PING_EVERY_BYTES) nextTurn(ping);
  };
  // Replies the client has been sent but not shown to have read (where the runtime reports pongs):
  // bytes given to write(), those handed to the runtime at the last ping, those the client's last
  // pong acknowledged, and how many may be unread before its messages wait (as when backed up).
  let written = 0;
  let pinged = 0;
  let acked = 0;
  let window = FIRST_UNREAD_BYTES;
  const ping = (): void => {
    const raw = out?.socket.raw as Partial<PingingSocket> | undefined;
    if (!events.deliversPongs || typeof raw?.ping !== "function" || out === undefined) return;
    const handed = written - out.queuedBytes; // (what waits in the queue goes after the ping)
    if (handed <= pinged) return;
    const payload = new Uint8Array(8);
    new DataView(payload.buffer).setFloat64(0, handed);
    try {
      if (raw.ping(payload) === 0) return; // dropped: the next write or drain tries again
    } catch {
      return; // closing
    }
    pinged = handed;
  };
  // the client's pong to our ping, or a one-way frame of its, came: answered (see ANSWER_PONG)
  const answerPong = (socket: unknown = out?.socket.raw): void => {
    const raw = socket as Partial<PingingSocket> | undefined;
    if (typeof raw?.pong !== "function") return;
    try {
      raw.pong(ANSWER_PONG);
    } catch {
      // closing
    }
  };
  // (whether the client's reads are known: by the node's own pings, or from the adapter)
  const readsKnown = (): boolean => events.deliversPongs === true || events.reportsReads === true;
  const unreadBehind = (): boolean => readsKnown() && written - acked > window;
  // the client has read the first `read` bytes written: its window doubles, and a paused connection
  // may go on
  const readUpTo = (read: number): void => {
    if (!(read > acked && read <= written)) return;
    acked = read;
    window = Math.min(2 * window, MAX_UNREAD_BYTES);
    resumeWhenRead();
  };
  // a client may cut a message into pieces (see KIND_PART); they are joined here, bounded
  let parts: PartAssembler | undefined;
  // Many messages read at once (a flood, a pipelined burst) are served SLICE_MS at a time: past
  // that in one turn, the connection's next messages wait for the next turn, so the event loop reads
  // the other connections' frames in between instead of after the whole burst (issue 11's soak: one
  // client's 2,000 calls held everybody else's for hundreds of ms). At most maxSendQueueBytes wait;
  // past that they are served at once, in order, as without the slices.
  // A client whose replies back up (more than PAUSE_BYTES unsent) has no more of its messages
  // served until they drain to RESUME_BYTES: its messages wait here instead of making more replies
  // (a client that never reads made 32 MiB of replies per 2,000 calls). What waits then is bounded
  // (MAX_HELD_MESSAGES, maxSendQueueBytes); past that the connection is closed, 1013.
  let sliceTurn = -1;
  let later: Uint8Array[] = [];
  let laterHead = 0;
  let laterBytes = 0;
  let resumeArmed = false;
  let paused = false;
  const backedUp = (): boolean => out !== undefined && (out.unsentBytes > PAUSE_BYTES || unreadBehind());
  let pausedWs: WSContext | undefined;
  const pause = (ws: WSContext): void => {
    if (!paused) events.holdInput?.(true);
    paused = true;
    pausedWs = ws;
    resumeWhenRead();
  };
  // served again once the unsent replies drain below RESUME_BYTES and (with pongs) the client has
  // read all but half its window: the pong that says so calls this again
  const resumeWhenRead = (): void => {
    if (!paused || !open) return;
    if (out!.unsentBytes > RESUME_BYTES) return out!.whenBelow(RESUME_BYTES, resumeWhenRead);
    if (readsKnown() && written - acked > window / 2) return;
    paused = false;
    events.holdInput?.(false);
    armResume(pausedWs!);
  };
  // a frame whose segments are still arriving (see KIND_SEGMENTED)
  let segments: SegmentReader | undefined;
  /** The connection is done: its calls are told, and what waited has nobody to answer. */
  const shut = (): void => {
    open = false;
    closed.abort();
    segments?.clear();
    later = [];
    laterHead = laterBytes = 0;
  };
  // messages the adapter holds for this connection while it is paused (see WsAppEvents.holdInput)
  let heldElsewhere = 0;
  let heldElsewhereBytes = 0;
  // a paused connection holds too much (here and in the adapter): closed
  const overHeld = (ws: WSContext): void => {
    const held = later.length - laterHead + heldElsewhere;
    if (held <= MAX_HELD_MESSAGES && laterBytes + heldElsewhereBytes <= maxSendQueueBytes) return;
    shut(); // (the runtime's close event may come much later)
    ws.close(
      SLOW_READER_CLOSE_CODE,
      `client reads too slowly: ${held} messages held while ${out!.unsentBytes} bytes of replies wait`,
    );
  };
  const wait = (ws: WSContext, bytes: Uint8Array): void => {
    if (!open) return;
    later.push(bytes);
    laterBytes += bytes.byteLength;
    if (paused) return overHeld(ws);
    if (laterBytes <= maxSendQueueBytes) return armResume(ws);
    // too much waiting: everything now, in order
    while (laterHead < later.length) take(ws);
  };
  const armResume = (ws: WSContext): void => {
    if (resumeArmed) return;
    resumeArmed = true;
    enqueue(() => {
      resumeArmed = false;
      step(ws);
    });
  };
  // one message, then the next after the microtasks its handler queued so far (so that the clock
  // sees the work the messages make, not only their synchronous part)
  const step = (ws: WSContext): void => {
    if (paused) return serveNext();
    if (laterHead >= later.length) {
      later = [];
      laterHead = 0;
      laterBytes = 0;
      return serveNext(); // the next connection, in this turn if time is left
    }
    if (backedUp()) {
      pause(ws);
      return serveNext();
    }
    if (!budgetLeft()) return armResume(ws);
    take(ws);
    queueMicrotask(() => step(ws));
  };
  const take = (ws: WSContext): void => {
    const bytes = later[laterHead]!;
    later[laterHead++] = EMPTY;
    laterBytes -= bytes.byteLength;
    onWhole(ws, bytes);
  };

  const send = (ws: WSContext, kind: number, id: number, body: Uint8Array): void => {
    if (!open) return;
    const messages = segmentedMessages(kind, id, body);
    if (messages === undefined) return (outbox ??= new Outbox((m) => write(ws, m))).pushFrame(kind, id, body);
    // its large arrays follow it as messages of their own, sent from where they lie (on Bun in the
    // next turn: taken behind the head in this one, each would be copied, see SendQueue.sendNextTurn)
    outbox?.flush();
    write(ws, messages[0]);
    for (let i = 1; i < messages.length; i++) writeNextTurn(ws, messages[i]);
  };
  const fail = (ws: WSContext, id: number, err: unknown): void => send(ws, KIND_ERROR, id, encodeError(err));
  const badFrame = (ws: WSContext, message: string): void => {
    // The header is unusable, so no request can be answered: say why, then close cleanly.
    fail(ws, 0, new ProtocolError(message));
    outbox?.flush();
    open = false;
    closed.abort();
    ws.close(1002, "bad frame");
  };
  // requests whose reply is not written yet (a shutdown waits for them: see allSent)
  let answering = 0;
  const answer = async (ws: WSContext, id: number, frame: Uint8Array): Promise<void> => {
    let reply: Uint8Array | undefined;
    // (counted down before the answer is written: it is written in this turn, into what allSent reads)
    answering++;
    try {
      reply = await handler(frame, peer);
    } catch (err) {
      answering--;
      return fail(ws, id, err);
    }
    answering--;
    if (!(reply instanceof Uint8Array)) {
      return fail(ws, id, new TypeError(`The node's frame handler returned ${typeof reply}, expected a Uint8Array`));
    }
    const bytes = frameBytes(reply);
    if (bytes > maxFrameBytes) return fail(ws, id, replyTooLarge(bytes, maxFrameBytes));
    send(ws, KIND_REPLY, id, reply);
  };

  const events: WsAppEvents = {
    takesViews: true,
    onOpen(_evt, ws) {
      // A Web-standard server socket (Deno) may default to Blob messages, which cannot be read
      // synchronously; Bun's and ws's sockets have other binaryType values that hono relies on.
      const raw = ws.raw as { binaryType?: string } | undefined;
      if (raw?.binaryType === "blob") raw.binaryType = "arraybuffer";
    },
    onMessage(evt, ws) {
      const data = evt.data;
      if (typeof data === "string") return badFrame(ws, "Text messages are not frames; send binary");
      const bytes = toBytes(data);
      if (!bytes) return badFrame(ws, "Unsupported message type; send binary frames");
      if (bytes.byteLength < FRAME_HEADER_BYTES) {
        return badFrame(ws, `Frame of ${bytes.byteLength} bytes is shorter than the ${FRAME_HEADER_BYTES}-byte header`);
      }
      noteSender(connectionId);
      if (later.length > laterHead) return wait(ws, bytes);
      if (backedUp()) {
        pause(ws);
        return wait(ws, bytes);
      }
      // a connection's first message in a turn is served at once; the next ones while the turn's
      // budget lasts
      const first = turn !== sliceTurn;
      const left = budgetLeft(); // (starts it, at the turn's first message)
      sliceTurn = turn;
      if (!first && !left) return wait(ws, bytes);
      onWhole(ws, bytes);
    },
    onClose() {
      shut();
    },
    onError() {
      shut();
    },
    allSent() {
      if (!open) return true;
      // (unsentBytes leaves out what waits for the next turn, queuedBytes counts it)
      return answering === 0 && (out === undefined || out.closed || (out.queuedBytes === 0 && out.unsentBytes === 0));
    },
    onDrain() {
      out?.drain();
      if (written - pinged >= PING_EVERY_BYTES) ping();
    },
    onPong(data) {
      // ours carry 8 bytes (the runtime's own keep-alive pings carry none)
      if (data.byteLength !== 8) return;
      readUpTo(new DataView(data.buffer, data.byteOffset, 8).getFloat64(0));
      answerPong();
    },
    onHeld(messages, bytes) {
      heldElsewhere = messages;
      heldElsewhereBytes = bytes;
      if (paused && open) overHeld(pausedWs!);
    },
    onRead(read) {
      // (the adapter counts the payloads of the messages it saw go out, which all went through
      // write(); held to written all the same, so that a count off by a frame cannot stall it)
      readUpTo(Math.min(read, written));
    },
  };
  return events;

  function onWhole(ws: WSContext, bytes: Uint8Array): void {
    const kind = bytes[0];
    if (segments?.waiting || kind === KIND_SEGMENTED) {
      try {
        if (!segments?.waiting) (segments ??= new SegmentReader(maxFrameBytes)).start(bytes);
        else {
          const whole = segments.add(bytes);
          if (whole?.tooLarge !== undefined) {
            // read to its end, segments not kept: answered as a frame sent whole would be
            if (whole.frame[0] === KIND_REQUEST) {
              fail(ws, readFrameId(whole.frame), tooLarge(whole.tooLarge, maxFrameBytes));
            }
          } else if (whole !== undefined) onFrame(ws, whole.frame, whole.body);
        }
      } catch (err) {
        // the messages after it can no longer be told apart
        segments?.clear();
        badFrame(ws, (err as Error).message);
      }
      return;
    }
    if (kind === KIND_PART || kind === KIND_PART_END) {
      // only mid-sized messages travel in pieces, so a connection never parks more than that
      const limit = Math.min(maxFrameBytes + FRAME_HEADER_BYTES, MAX_PIECED_MESSAGE_BYTES);
      const joined = (parts ??= new PartAssembler(limit)).add(bytes);
      if (joined !== undefined && !(joined instanceof Uint8Array)) {
        // too large: answer the request it carried, as for a frame sent whole
        const h = joined.head;
        const id = h.byteLength >= FRAME_HEADER_BYTES ? readFrameId(h) : 0;
        const size = joined.tooLarge - FRAME_HEADER_BYTES;
        const err = size > maxFrameBytes ? tooLarge(size, maxFrameBytes) : new TransportError(
          "too-large",
          `Node refused a message of ${joined.tooLarge} bytes sent in pieces: pieces may make at most ` +
            `${MAX_PIECED_MESSAGE_BYTES} bytes; send larger messages whole`,
        );
        return h[0] === KIND_REQUEST ? fail(ws, id, err) : undefined;
      }
      if (joined === undefined) {
        // at once, not batched: this message's TCP ACK lets the client's next piece go
        write(ws, PART_ACK);
        return;
      }
      if (joined.byteLength < FRAME_HEADER_BYTES || joined[0] === KIND_PART || joined[0] === KIND_PART_END) {
        return badFrame(ws, "Malformed message in pieces");
      }
      return onWhole(ws, joined);
    }
    if (kind === KIND_BATCH) {
      if (!forEachInBatch(bytes, (m) => onFrame(ws, m))) {
        badFrame(ws, "Malformed batch: a frame length runs past the message");
      }
      return;
    }
    onFrame(ws, bytes);
  }

  function onFrame(ws: WSContext, bytes: Uint8Array, frame = bytes.subarray(FRAME_HEADER_BYTES)): void {
    if (!open) return;
    const kind = bytes[0];
    const id = readFrameId(bytes);
    // its header is read: a reply made of this same frame (an echo) can reuse those bytes
    offerHeadroom(frame);
    if (kind === KIND_REQUEST) {
      if (frame.byteLength > maxFrameBytes) return fail(ws, id, tooLarge(frame.byteLength, maxFrameBytes));
      void answer(ws, id, frame);
    } else if (kind === KIND_NOTIFY) {
      // no reply goes back for it: the pong's segment acknowledges it (see ANSWER_PONG)
      answerPong(ws.raw);
      if (frame.byteLength > maxFrameBytes) return;
      try {
        const r = handler(frame, notifyPeer);
        if (r instanceof Promise) r.catch(() => {});
      } catch {
        // one-way: nobody to tell
      }
    } else {
      badFrame(ws, `Unknown frame kind ${kind}`);
    }
  }
}
