import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import { test } from "node:test";
import { attachSegments, decode, encodeFrame, SEGMENT_MIN_BYTES, segmentsOf } from "../core/codec.ts";
import { ProtocolError, TransportError } from "../core/errors.ts";
import { runTransportConformance, type TestServer } from "./_conformance.ts";
import { startRealServer } from "./_test_servers.ts";
import { gate } from "../core/_test_utils.ts";
import { webSocketTransport, webSocketUrl } from "./websocket.ts";
import {
  FRAME_HEADER_BYTES,
  framed,
  KIND_BATCH,
  KIND_ERROR,
  KIND_REQUEST,
  KIND_SEGMENTED,
  writeHeader,
  writeU32,
} from "./ws_framing.ts";

/** Opens a raw WebSocket, sends `data` (a message, or several in order), and resolves with the messages and the close code. */
function rawExchange(
  server: TestServer,
  data: string | Uint8Array<ArrayBuffer> | (string | Uint8Array<ArrayBuffer>)[],
): Promise<{ messages: Uint8Array[]; code: number }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(webSocketUrl(server.endpoint), ["thinkagain.v1"]);
    ws.binaryType = "arraybuffer";
    const messages: Uint8Array[] = [];
    const timer = setTimeout(() => reject(new Error("raw socket: no close within 5 s")), 5000);
    ws.onopen = () => {
      for (const m of Array.isArray(data) ? data : [data]) ws.send(m);
    };
    ws.onmessage = (e) => messages.push(new Uint8Array(e.data as ArrayBuffer));
    ws.onclose = (e) => {
      clearTimeout(timer);
      resolve({ messages, code: e.code });
    };
  });
}

runTransportConformance("websocket", {
  transport: webSocketTransport,
  ordered: true,
  unreachable: "ws://127.0.0.1:9",
  start: (handler, options) => startRealServer(handler, options, "ws"),
  async sendRawGarbage(server) {
    const badBatch = new Uint8Array([KIND_BATCH, 0, 0, 0, 0, 9, 0, 0, 0, 1]); // a length past the end
    // a frame announcing its segments (see KIND_SEGMENTED), then not the bytes it announced
    const announce = (lengths: number[]) => {
      const m = new Uint8Array(((FRAME_HEADER_BYTES + 4 * lengths.length + 7) & ~7) + 6);
      writeHeader(m, KIND_SEGMENTED, lengths.length);
      lengths.forEach((n, i) => writeU32(m, FRAME_HEADER_BYTES + 4 * i, n));
      m.set([KIND_REQUEST, 1, 0, 0, 0, 0xf6], m.length - 6);
      return m;
    };
    const lying = [
      [announce([SEGMENT_MIN_BYTES]), new Uint8Array(SEGMENT_MIN_BYTES - 1)], // less
      [announce([SEGMENT_MIN_BYTES]), new Uint8Array(SEGMENT_MIN_BYTES + 1)], // more
      [
        announce([SEGMENT_MIN_BYTES, SEGMENT_MIN_BYTES]),
        new Uint8Array(SEGMENT_MIN_BYTES),
        framed(KIND_REQUEST, 2, new Uint8Array([0xf6])),
      ], // another frame instead
      [announce([100])], // below the minimum
      [announce([])],
    ];
    for (
      const garbage of ["not a frame", new Uint8Array([0]), new Uint8Array([9, 1, 0, 0, 0, 1]), badBatch, ...lying]
    ) {
      const { messages, code } = await rawExchange(server, garbage);
      strictEqual(code, 1002, `close code after ${String(garbage)}`);
      strictEqual(messages.length, 1);
      strictEqual(messages[0][0], KIND_ERROR);
      deepStrictEqual([...messages[0].subarray(1, FRAME_HEADER_BYTES)], [0, 0, 0, 0]);
      strictEqual((decode(messages[0].subarray(FRAME_HEADER_BYTES)) as { tag: string }).tag, "ProtocolError");
    }
  },
});

test("webSocketUrl maps http endpoints to /ws and keeps explicit paths", () => {
  strictEqual(webSocketUrl("http://h:1"), "ws://h:1/ws");
  strictEqual(webSocketUrl("ws://h:1/custom"), "ws://h:1/custom");
  ok(webSocketUrl("https://h").startsWith("wss://"));
});

/** Runs `body` as on Node before 22: no global WebSocket. */
async function withoutWebSocket(body: () => Promise<void>): Promise<void> {
  const saved = globalThis.WebSocket;
  delete (globalThis as { WebSocket?: unknown }).WebSocket;
  try {
    await body();
  } finally {
    globalThis.WebSocket = saved;
  }
}

test("websocket: on a runtime with no global WebSocket (Node 20) a connect fails with a TypeError naming the runtime and what to do, not TransportError unreachable", async () => {
  const { runtimeName } = await import("../core/_runtime.ts");
  await withoutWebSocket(async () => {
    await rejects(webSocketTransport.connect("ws://127.0.0.1:9"), (e: unknown) => {
      ok(e instanceof TypeError && !(e instanceof TransportError), String(e));
      ok(e.message.includes(`this runtime (${runtimeName()}) has no global WebSocket`), e.message);
      ok(e.message.includes('globalThis.WebSocket = (await import("ws")).WebSocket'), e.message);
      ok(/Node 22 or later/.test(e.message) && /http:\/\//.test(e.message), e.message);
      return true;
    });
  });
});

test("websocket: a WebSocket class assigned to globalThis after the transport loaded is the one it dials (ws's on Node 20)", async () => {
  const dialed: string[] = [];
  class Recording {
    onopen: (() => void) | null = null;
    onerror: (() => void) | null = null;
    onclose: (() => void) | null = null;
    constructor(url: string) {
      dialed.push(url);
      queueMicrotask(() => this.onerror?.()); // refused; the probe over fetch finds nothing listening
    }
    close(): void {}
  }
  await withoutWebSocket(async () => {
    globalThis.WebSocket = Recording as unknown as typeof WebSocket;
    await rejects(webSocketTransport.connect("ws://127.0.0.1:9"), TransportError);
  });
  deepStrictEqual(dialed, ["ws://127.0.0.1:9/ws"]);
});

test("websocket: a connect that times out leaves the socket it closes with an error listener (the ws package, a Node 20 driver's WebSocket, throws an error event nobody hears)", async () => {
  const unheard: string[] = [];
  class WsLike {
    onopen: (() => void) | null = null;
    onerror: (() => void) | null = null;
    onclose: (() => void) | null = null;
    constructor(readonly url: string) {} // never answers
    close(): void {
      // as ws does when a socket still connecting is closed: an error event, then close
      if (this.onerror === null) unheard.push("error");
      else this.onerror();
    }
  }
  await withoutWebSocket(async () => {
    globalThis.WebSocket = WsLike as unknown as typeof WebSocket;
    await rejects(
      webSocketTransport.connect("ws://127.0.0.1:9", { connectTimeoutMs: 1 }),
      (e: unknown) => e instanceof TransportError && /no answer within 1 ms/.test(e.message),
    );
  });
  deepStrictEqual(unheard, []);
});

test('websocket: a node takes an upgrade whose subprotocols "," separates without a space (Node\'s ws client) and selects thinkagain.v1', async () => {
  const { connect } = await import("node:net");
  const server = await startRealServer((f) => f, { token: "t" }, "ws");
  const port = Number(new URL(server.endpoint).port);
  const raw = connect(port, "127.0.0.1");
  try {
    const head = await new Promise<string>((resolve, reject) => {
      let got = "";
      raw.on("data", (d: Uint8Array) => {
        got += new TextDecoder("latin1").decode(d);
        const end = got.indexOf("\r\n\r\n");
        if (end >= 0) resolve(got.slice(0, end));
      });
      raw.once("error", reject);
      raw.write(
        `GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
          `Sec-WebSocket-Protocol: thinkagain.v1,thinkagain.token.${btoa("t").replace(/=+$/, "")}\r\n\r\n`,
      );
    });
    ok(/^HTTP\/1\.1 101/.test(head), head);
    ok(/\r\nsec-websocket-protocol: thinkagain\.v1\r?$/im.test(head), head);
  } finally {
    raw.destroy();
    await server.close();
  }
});

test("websocket: after a drop, timeoutMs and an abort signal also cover reconnecting to a peer that never answers", async () => {
  const { serveFrames } = await import("../adapters/serve.ts");
  const { createServer } = await import("node:net");
  const served = await serveFrames((f) => f, { hostname: "127.0.0.1", port: 0 });
  const port = Number(new URL(served.url).port);
  const conn = await webSocketTransport.connect(`ws://127.0.0.1:${port}`, { connectTimeoutMs: 10_000 });
  const sockets: Array<{ destroy(): void }> = [];
  const blackHole = createServer((sock) => sockets.push(sock)); // accepts, then never answers
  try {
    deepStrictEqual(await conn.request(new Uint8Array([1])), new Uint8Array([1]));
    await served.close();
    await new Promise<void>((r) => blackHole.listen(port, "127.0.0.1", () => r()));
    const t0 = performance.now();
    await rejects(conn.request(new Uint8Array([2]), { timeoutMs: 100 }), (e: unknown) => e instanceof TransportError);
    ok(performance.now() - t0 < 5_000, "the request's deadline, not the 10 s connect timeout");
    const ac = new AbortController();
    const p = conn.request(new Uint8Array([3]), { signal: ac.signal });
    ac.abort(new Error("gave up"));
    await rejects(p, /gave up/);
  } finally {
    for (const sock of sockets) sock.destroy();
    await new Promise((r) => blackHole.close(r));
    await conn.close();
  }
});

test("websocket: large typed arrays and byte strings travel beside the frame and arrive viewed in place, both ways", async () => {
  const seen: number[] = [];
  const server = await startRealServer(
    (f) => {
      seen.push(segmentsOf(f)?.length ?? 0);
      return f; // an echo: the reply carries the same segments
    },
    {},
    "ws",
  );
  const conn = await webSocketTransport.connect(server.endpoint);
  try {
    const value = {
      big: new Float32Array(262144).map((_, i) => i),
      shifted: new Float64Array(new ArrayBuffer(8 * 9000 + 8), 8, 9000).fill(0.25),
      bytes: new Uint8Array(SEGMENT_MIN_BYTES + 1).fill(5).subarray(1),
      many: Array.from({ length: 12 }, (_, k) => new Uint16Array(SEGMENT_MIN_BYTES / 2).fill(k)),
      empty: [new Float32Array(0), new Uint8Array(0)],
      small: new Int8Array([-1, 2]),
    };
    const back = decode(await conn.request(encodeFrame(value))) as typeof value;
    deepStrictEqual(back, value);
    deepStrictEqual(seen, [15], "the node got the frame with its 15 segments");
    for (const x of [back.big, back.shifted, back.bytes, ...back.many]) {
      strictEqual(x.byteOffset, 0, "viewed where it arrived");
      strictEqual(x.buffer.byteLength, x.byteLength, "a message of its own");
    }
    // a frame of 1 to 64 KiB beside its segments (a client sends it whole, not in KIND_PART pieces)
    const wordy = { text: "w".repeat(5000), big: value.big };
    deepStrictEqual(decode(await conn.request(encodeFrame(wordy))), wordy);
    // frames with and without segments in one turn keep their order
    const replies = await Promise.all([1, value.big, 2, value.bytes, 3].map((v) => conn.request(encodeFrame({ v }))));
    deepStrictEqual(replies.map((r) => decode(r)), [1, value.big, 2, value.bytes, 3].map((v) => ({ v })));
  } finally {
    await conn.close();
    await server.close();
  }
});

test("websocket: segments count against the largest frame on both sides; a frame over it is refused and the connection stays usable", async () => {
  const limit = 3 * SEGMENT_MIN_BYTES;
  const big = { x: new Float32Array(SEGMENT_MIN_BYTES) }; // 4 segments' worth: over the limit
  // the node refuses what it receives over its limit (the client's own is larger)
  const server = await startRealServer((f) => f, { maxFrameBytes: limit }, "ws");
  const conn = await webSocketTransport.connect(server.endpoint, { maxFrameBytes: 64 * limit });
  // the client refuses a reply over its limit (the node's own is larger)
  const wide = await startRealServer((f) => decode(f) === 1 ? encodeFrame(big) : f, {}, "ws");
  const narrow = await webSocketTransport.connect(wide.endpoint, { maxFrameBytes: limit });
  try {
    await rejects(conn.request(encodeFrame(big)), (e) => e instanceof TransportError && e.reason === "too-large");
    deepStrictEqual(decode(await conn.request(encodeFrame("still here"))), "still here");
    await rejects(narrow.request(encodeFrame(1)), (e) => e instanceof TransportError && e.reason === "too-large");
    deepStrictEqual(decode(await narrow.request(encodeFrame("still here"))), "still here");
    // and the sender refuses before sending
    await rejects(narrow.request(encodeFrame(big)), (e) => e instanceof TransportError && /limit/.test(e.message));
  } finally {
    await Promise.all([conn.close(), narrow.close()]);
    await Promise.all([server.close(), wide.close()]);
  }
});

test("websocket: a node that announces segments it does not send as announced fails the client's requests with ProtocolError", async () => {
  // the node's reply claims a 5-byte segment, below the minimum a peer may announce
  const server = await startRealServer(
    (f) => {
      const reply = f.slice();
      attachSegments(reply, [new Uint8Array(5)]);
      return reply;
    },
    {},
    "ws",
  );
  const conn = await webSocketTransport.connect(server.endpoint);
  try {
    await rejects(
      conn.request(encodeFrame(1)),
      (e) => e instanceof ProtocolError && /below the 65536-byte minimum/.test(e.message),
    );
  } finally {
    await conn.close();
    await server.close();
  }
});

test("websocket: a connectTimeoutMs of Infinity or of 2^31 ms or more waits for the node's answer", async () => {
  const { createServer } = await import("node:net");
  let accepted = gate<{ end(s: string): void }>();
  // answers the WebSocket upgrade only when told, and the HTTP probe that follows a refusal at once
  const node = createServer((sock) => {
    sock.once("data", (head: Uint8Array) => {
      if (/^upgrade: *websocket/im.test(new TextDecoder().decode(head))) accepted.open(sock);
      else sock.end("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    });
  });
  await new Promise<void>((r) => node.listen(0, "127.0.0.1", () => r()));
  const port = (node.address() as { port: number }).port;
  try {
    for (const connectTimeoutMs of [Infinity, 2 ** 31, 1e10]) {
      accepted = gate();
      let settled = false;
      const opening = webSocketTransport.connect(`ws://127.0.0.1:${port}`, { connectTimeoutMs });
      const outcome = opening.then(() => (settled = true), () => (settled = true));
      await Promise.race([accepted.promise, outcome]);
      // setTimeout takes 2^31 ms or more for 1 ms: such a timer has fired by now
      for (let i = 0; i < 3; i++) await new Promise((r) => setTimeout(r, 1));
      strictEqual(settled, false, `connectTimeoutMs ${connectTimeoutMs}: gave up before the node answered`);
      // the node answers: it refuses the upgrade, and the connect says so (not "no answer")
      (await accepted.promise).end("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
      await rejects(
        opening,
        (e: unknown) => e instanceof TransportError && e.reason === "refused" && /HTTP 503/.test(e.message),
        `connectTimeoutMs ${connectTimeoutMs}`,
      );
    }
  } finally {
    await new Promise((r) => node.close(r));
  }
});
