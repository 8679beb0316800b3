import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import { test } from "node:test";
import { decode } from "../core/codec.ts";
import { TransportError } from "../core/errors.ts";
import { runTransportConformance, type TestServer } from "./_conformance.ts";
import { startRealServer } from "./_test_servers.ts";
import {
  forEachInBatch,
  FRAME_HEADER_BYTES,
  KIND_BATCH,
  KIND_ERROR,
  KIND_PART,
  KIND_PART_END,
  KIND_REQUEST,
  Outbox,
  PartAssembler,
  webSocketTransport,
  webSocketUrl,
  writeHeader,
} from "./websocket.ts";

/** Opens a raw WebSocket, sends `data`, and resolves with the messages and the close code. */
function rawExchange(
  server: TestServer,
  data: string | Uint8Array<ArrayBuffer>,
): Promise<{ messages: Uint8Array[]; code: number }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(webSocketUrl(server.endpoint), ["thinkagain.v1"]);
    ws.binaryType = "arraybuffer";
    const messages: Uint8Array[] = [];
    const timer = setTimeout(() => reject(new Error("raw socket: no close within 5 s")), 5000);
    ws.onopen = () => ws.send(data);
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
    for (const garbage of ["not a frame", new Uint8Array([0]), new Uint8Array([9, 1, 0, 0, 0, 1]), badBatch]) {
      const { messages, code } = await rawExchange(server, garbage);
      strictEqual(code, 1002, `close code after ${String(garbage)}`);
      strictEqual(messages.length, 1);
      strictEqual(messages[0][0], KIND_ERROR);
      deepStrictEqual([...messages[0].subarray(1, FRAME_HEADER_BYTES)], [0, 0, 0, 0]);
      strictEqual((decode(messages[0].subarray(FRAME_HEADER_BYTES)) as { tag: string }).tag, "ProtocolError");
    }
  },
});

test("writeHeader puts kind then little-endian id", () => {
  const out = new Uint8Array(5);
  writeHeader(out, 2, 0x01020304);
  deepStrictEqual([...out], [2, 4, 3, 2, 1]);
});

test("webSocketUrl maps http endpoints to /ws and keeps explicit paths", () => {
  strictEqual(webSocketUrl("http://h:1"), "ws://h:1/ws");
  strictEqual(webSocketUrl("ws://h:1/custom"), "ws://h:1/custom");
  ok(webSocketUrl("https://h").startsWith("wss://"));
});

test("Outbox sends the frames of one turn as one batch message, and forEachInBatch splits it back in order", async () => {
  const sent: Uint8Array[] = [];
  const box = new Outbox((m) => sent.push(m));
  const frames = [1, 2, 3].map((k) => {
    const f = new Uint8Array(FRAME_HEADER_BYTES + k);
    writeHeader(f, KIND_REQUEST, k);
    f.fill(k, FRAME_HEADER_BYTES);
    return f;
  });
  for (const f of frames) box.push(f);
  strictEqual(sent.length, 0, "nothing leaves before the end of the turn");
  await Promise.resolve();
  strictEqual(sent.length, 1);
  strictEqual(sent[0][0], KIND_BATCH);
  const back: Uint8Array[] = [];
  strictEqual(forEachInBatch(sent[0], (m) => back.push(m.slice())), true);
  deepStrictEqual(back, frames);
  box.push(frames[0]);
  await Promise.resolve();
  deepStrictEqual(sent[1], frames[0], "a lone frame is sent as it is");
  strictEqual(forEachInBatch(new Uint8Array([KIND_BATCH, 0, 0, 0, 0, 2, 0, 0, 0]), () => {}), false);
});

test("a client Outbox sends mid-sized messages in pieces of one write each, and PartAssembler joins them", async () => {
  const sent: Uint8Array[] = [];
  const box = new Outbox((m) => sent.push(m), { client: true });
  const big = new Uint8Array(FRAME_HEADER_BYTES + 5000);
  writeHeader(big, KIND_REQUEST, 9);
  for (let i = FRAME_HEADER_BYTES; i < big.length; i++) big[i] = i & 0xff;
  box.push(big);
  await Promise.resolve();
  ok(sent.length > 5, "cut into pieces");
  ok(sent.every((m) => m.byteLength <= 1000), "each piece fits one small write");
  ok(sent.slice(0, -1).every((m) => m[0] === KIND_PART) && sent.at(-1)![0] === KIND_PART_END);
  const join = new PartAssembler(1 << 20);
  let whole: ReturnType<PartAssembler["add"]>;
  for (const m of sent) whole = join.add(m);
  deepStrictEqual(whole, big);
  const tiny = new PartAssembler(100);
  let refused: unknown;
  for (const m of sent) refused = tiny.add(m);
  deepStrictEqual(
    refused,
    { tooLarge: 5000 + FRAME_HEADER_BYTES, head: big.slice(0, FRAME_HEADER_BYTES) },
    "over the limit: size and header, nothing kept",
  );
  // many small frames in one turn: client batches stay under one small write too
  sent.length = 0;
  for (let i = 0; i < 100; i++) {
    const f = new Uint8Array(FRAME_HEADER_BYTES + 60);
    writeHeader(f, KIND_REQUEST, i + 1);
    box.push(f);
  }
  await Promise.resolve();
  ok(sent.length > 1 && sent.every((m) => m.byteLength <= 1000 && m[0] === KIND_BATCH));
  let frames = 0;
  for (const m of sent) forEachInBatch(m, () => frames++);
  strictEqual(frames, 100);
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
