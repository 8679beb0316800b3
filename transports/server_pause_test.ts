// A WebSocket client whose replies back up (it does not read them) has no more of its requests
// served until it reads: its requests wait, bounded, and are served in order once it reads; other
// clients are answered meanwhile (issue 11's soak: a client that never reads made the node produce
// and queue 32 MiB of replies per 2,000 calls). On this runtime's adapter (Bun's, or Deno's behind its
// connection guard) and on the Node adapter (`ws`). Ordered by events, never by time: the first
// request's large reply is in the node's socket buffer once its first bytes reach the client.
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { gate } from "../core/_test_utils.ts";
import { serve as nodeServe, upgradeWebSocket as nodeUpgradeWebSocket } from "../adapters/node/serve.ts";
import { createNodeApp } from "./server.ts";
import { startRealServer, wsRequest, wsUpgradeHead } from "./_test_servers.ts";
import type { FrameHandler } from "./transport.ts";
import { webSocketTransport } from "./websocket.ts";
import { forEachInBatch, FRAME_HEADER_BYTES, KIND_BATCH, readFrameId } from "./ws_framing.ts";
import { SLOW_READER_CLOSE_CODE } from "./ws_send_queue.ts";

const T = { timeout: 120_000 };
/** The first request's reply: far more than the sockets' buffers take from a client that reads nothing. */
const BIG = 40 * 1024 * 1024;
const SMALL = 4 * 1024;
const BIG_REQUEST = 0x01;
const SMALL_REQUEST = 0x02;
const OTHER = 0xb0;

/** A node serving `handler`: this runtime's adapter, or the Node adapter's. */
type Start = (handler: FrameHandler) => Promise<{ port: number; close(): Promise<void> }>;
const SERVERS: [string, Start][] = [
  ["this runtime's adapter", async (handler) => {
    const s = await startRealServer(handler);
    return { port: Number(new URL(s.endpoint).port), close: () => s.close() };
  }],
  ["the Node adapter", async (handler) => {
    const s = await nodeServe(createNodeApp(handler, { upgradeWebSocket: nodeUpgradeWebSocket }), { port: 0 });
    return { port: s.port, close: () => s.close() };
  }],
];

/**
 * The node's side: how many small requests it served, and a gate opened when the raw client's
 * connection closes (the first request's call is told through its signal).
 */
function counting(all = Infinity) {
  const served = { small: 0 };
  const closed = gate();
  /** Opened once `all` small requests were served. */
  const allServed = gate();
  const handler: FrameHandler = (frame, peer) => {
    if (frame[0] === BIG_REQUEST) {
      peer.signal?.addEventListener("abort", () => closed.open(), { once: true });
      return new Uint8Array(BIG);
    }
    if (frame[0] === SMALL_REQUEST) {
      if (++served.small === all) allServed.open();
      return new Uint8Array(SMALL).fill(frame[1]);
    }
    return frame; // the other client's
  };
  return { served, closed, allServed, handler };
}

/** A raw WebSocket client: the upgrade, then messages parsed from what it reads (while it reads). */
class RawClient {
  readonly socket: net.Socket;
  #buf: Buffer = Buffer.alloc(0);
  #pieces: Buffer[] = [];
  #pieceBytes = 0;
  #message: Buffer[] = [];
  #wake: (() => void) | undefined;
  /** Binary messages whole, in order. */
  readonly messages: Uint8Array[] = [];
  closeCode: number | undefined;
  closeReason = "";

  private constructor(socket: net.Socket) {
    this.socket = socket;
  }

  static async open(port: number): Promise<RawClient> {
    const socket = net.connect(port, "127.0.0.1");
    socket.on("error", () => {});
    await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
    const c = new RawClient(socket);
    let head = "";
    await new Promise<void>((resolve) => {
      socket.on("data", function onHead(d: Buffer) {
        head += d.toString("latin1");
        const end = head.indexOf("\r\n\r\n");
        if (end >= 0) {
          socket.off("data", onHead);
          const rest = d.subarray(d.byteLength - (head.length - end - 4));
          if (rest.byteLength > 0) c.#push(rest);
          resolve();
        }
      });
      socket.write(wsUpgradeHead(port));
    });
    assert.match(head, /^HTTP\/1\.1 101/);
    socket.on("data", (d: Buffer) => c.#push(d));
    return c;
  }

  /** Resolves when the first bytes after the upgrade arrived, then stops reading. */
  async firstBytesThenPause(): Promise<void> {
    await this.until(() => this.#pieceBytes > 0 || this.#buf.byteLength > 0 || this.messages.length > 0);
    this.socket.pause();
  }

  /** Waits until `done()` holds (checked as bytes arrive) or the connection ends. */
  until(done: () => boolean): Promise<boolean> {
    return new Promise((resolve) => {
      const check = () => {
        if (done()) return resolve(true);
        if (this.socket.destroyed || this.socket.readableEnded) return resolve(false);
        this.#wake = check;
      };
      this.socket.once("close", () => this.#wake?.());
      check();
    });
  }

  #push(d: Buffer): void {
    this.#pieces.push(d);
    this.#pieceBytes += d.byteLength;
    this.#parse();
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  #parse(): void {
    for (;;) {
      if (this.#buf.byteLength < 10 && this.#pieces.length > 0) this.#join();
      const b = this.#buf;
      if (b.byteLength < 2) return;
      let len = b[1] & 0x7f;
      let at = 2;
      if (len === 126) {
        if (b.byteLength < 4) return;
        len = b.readUInt16BE(2);
        at = 4;
      } else if (len === 127) {
        if (b.byteLength < 10) return;
        len = Number(b.readBigUInt64BE(2));
        at = 10;
      }
      if (b.byteLength < at + len) {
        if (this.#pieces.length === 0 || this.#buf.byteLength + this.#pieceBytes < at + len) return;
        this.#join();
        continue;
      }
      const payload = b.subarray(at, at + len);
      this.#buf = b.subarray(at + len);
      const opcode = b[0] & 0x0f;
      if (opcode === 0x8) {
        this.closeCode = payload.byteLength >= 2 ? payload.readUInt16BE(0) : 1005;
        this.closeReason = payload.subarray(2).toString("utf8");
      } else if (opcode === 0x2 || opcode === 0x0) {
        this.#message.push(payload);
        if (b[0] & 0x80) {
          this.messages.push(new Uint8Array(Buffer.concat(this.#message)));
          this.#message = [];
        }
      } else if (opcode === 0x9 && payload.byteLength <= 125) {
        // a ping is answered, as RFC 6455 asks of every client (the node's pongs say what was read)
        this.socket.write(Buffer.concat([Buffer.from([0x8a, 0x80 | payload.byteLength, 0, 0, 0, 0]), payload]));
      } // pongs: nothing to do
    }
  }

  #join(): void {
    this.#buf = Buffer.concat([this.#buf, ...this.#pieces]);
    this.#pieces = [];
    this.#pieceBytes = 0;
  }
}

/** The ids of the reply frames in `messages` (batches opened), in order. */
function replyIds(messages: Uint8Array[]): number[] {
  const ids: number[] = [];
  for (const m of messages) {
    if (m[0] === KIND_BATCH) forEachInBatch(m, (f) => ids.push(readFrameId(f)));
    else ids.push(readFrameId(m));
  }
  return ids;
}

for (const [where, start] of SERVERS) {
  test(`${where}: a connection whose replies back up has no more requests served (until it closes)`, T, async () => {
    // closed by the node, or (without the pause) a request served: whichever comes first
    const { served, closed, allServed, handler } = counting(1);
    const server = await start(handler);
    const raw = await RawClient.open(server.port);
    try {
      raw.socket.write(wsRequest(1, new Uint8Array([BIG_REQUEST])));
      await raw.firstBytesThenPause(); // its reply is made: most of it waits in the node's buffers
      const burst: Uint8Array[] = [];
      for (let i = 2; i <= 21; i++) burst.push(wsRequest(i, new Uint8Array([SMALL_REQUEST, i])));
      // then a text message, after these in order: a bad frame, for which the node closes the
      // connection (and stops the first request's call) as soon as it reads it
      burst.push(new Uint8Array([0x81, 0x80 | 1, 0, 0, 0, 0, 0x78]));
      raw.socket.write(Buffer.concat(burst));
      await Promise.race([closed.promise, allServed.promise]);
      assert.equal(served.small, 0, `${served.small} of the 20 requests were served while 40 MiB of replies waited`);
    } finally {
      raw.socket.destroy();
      await server.close();
    }
  });

  test(
    `${where}: its requests are served once it reads, all of them and in order; another client is answered meanwhile`,
    T,
    async () => {
      const { served, handler } = counting();
      const server = await start(handler);
      const raw = await RawClient.open(server.port);
      const other = await webSocketTransport.connect(`http://127.0.0.1:${server.port}`);
      try {
        raw.socket.write(wsRequest(1, new Uint8Array([BIG_REQUEST])));
        await raw.firstBytesThenPause();
        const N = 300; // 1.2 MiB of replies: more than a connection may have unsent
        const burst: Uint8Array[] = [];
        for (let i = 2; i <= N + 1; i++) burst.push(wsRequest(i, new Uint8Array([SMALL_REQUEST, i & 0xff])));
        raw.socket.write(Buffer.concat(burst));
        for (let i = 0; i < 20; i++) {
          assert.deepEqual(await other.request(new Uint8Array([OTHER, i])), new Uint8Array([OTHER, i]));
        }
        assert.equal(served.small, 0, `${served.small} requests were served while 40 MiB of replies waited`);
        raw.socket.resume();
        const all = await raw.until(() => raw.messages.length > 0 && replyIds(raw.messages).length === N + 1);
        assert.ok(all, `the connection ended after ${replyIds(raw.messages).length} of ${N + 1} replies`);
        assert.deepEqual(replyIds(raw.messages), Array.from({ length: N + 1 }, (_, i) => i + 1));
        assert.equal(served.small, N);
        assert.equal(raw.messages[0].byteLength, FRAME_HEADER_BYTES + BIG);
      } finally {
        raw.socket.destroy();
        await other.close();
        await server.close();
      }
    },
  );

  test(
    `${where}: past 10,000 requests waiting, the connection is closed (1013, "client reads too slowly")`,
    T,
    async () => {
      const N = 10_001;
      const { served, closed, allServed, handler } = counting(N);
      const server = await start(handler);
      const raw = await RawClient.open(server.port);
      try {
        raw.socket.write(wsRequest(1, new Uint8Array([BIG_REQUEST])));
        await raw.firstBytesThenPause();
        const burst: Uint8Array[] = [];
        for (let i = 2; i <= N + 1; i++) burst.push(wsRequest(i, new Uint8Array([SMALL_REQUEST, i & 0xff])));
        raw.socket.write(Buffer.concat(burst));
        // closed by the node, or (without a bound) every request served
        await Promise.race([closed.promise, allServed.promise]);
        assert.equal(served.small, 0, `${served.small} of ${N} requests were served while 40 MiB of replies waited`);
        // what it says, behind the replies that waited
        raw.socket.resume();
        await raw.until(() => raw.closeCode !== undefined);
        assert.equal(raw.closeCode, SLOW_READER_CLOSE_CODE);
        assert.match(raw.closeReason, /client reads too slowly: 10001 messages held/);
      } finally {
        raw.socket.destroy();
        await server.close();
      }
    },
  );
}

// A client's replies count as read only once its pong for a ping sent behind them comes back: a
// client that never reads gets at most ~256 KiB of replies made for it (the node's first unread
// window), not the several MiB that the kernel's socket buffers take first (issue 11's soak: each
// round's new never-reading connections). On Bun the node pings (its runtime reports pongs); on Deno,
// whose server sockets report none, the connection guard's relay pings and tells the node what its
// pongs say (before it did, a Deno node made ~2 MiB: replies until Deno's own buffer backed up behind
// the relay's window and the Unix socket's buffers).
test(
  "this runtime's adapter: a client that never reads gets at most about 256 KiB of replies made, then its requests wait until its pongs say it read",
  T,
  async () => {
    const REPLY = 16 * 1024;
    let served = 0;
    const server = await startRealServer((frame) => {
      if (frame[0] === SMALL_REQUEST) {
        served++;
        return new Uint8Array(REPLY).fill(frame[1]);
      }
      return frame; // the other client's
    });
    const port = Number(new URL(server.endpoint).port);
    const raw = await RawClient.open(port);
    const other = await webSocketTransport.connect(`http://127.0.0.1:${port}`);
    try {
      raw.socket.pause(); // reads nothing from here on
      const N = 1_000; // 16 MiB of replies
      const burst: Uint8Array[] = [];
      for (let i = 1; i <= N; i++) burst.push(wsRequest(i, new Uint8Array([SMALL_REQUEST, i & 0xff])));
      raw.socket.write(Buffer.concat(burst));
      // until the node serves none of them any more: each of the other client's round trips is a turn
      // of the node's event loop, in which a connection whose requests wait gets some served
      let last = -1;
      for (let still = 0; still < 100;) {
        assert.deepEqual(await other.request(new Uint8Array([OTHER, still])), new Uint8Array([OTHER, still]));
        still = served === last ? still + 1 : 0;
        last = served;
      }
      assert.ok(served > 0 && served < N, `${served} of ${N} requests served`);
      assert.ok(
        served * REPLY <= 512 * 1024,
        `${served} replies (${served * REPLY} bytes) were made for a client that read none of them`,
      );
      // it reads (and answers the node's pings): every reply comes, in order
      raw.socket.resume();
      const all = await raw.until(() => replyIds(raw.messages).length === N);
      assert.ok(all, `the connection ended after ${replyIds(raw.messages).length} of ${N} replies`);
      assert.deepEqual(replyIds(raw.messages), Array.from({ length: N }, (_, i) => i + 1));
    } finally {
      raw.socket.destroy();
      await other.close();
      await server.close();
    }
  },
);
