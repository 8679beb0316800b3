import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import { test } from "node:test";
import { decode } from "../core/codec.ts";
import { TransportError } from "../core/errors.ts";
import { runTransportConformance, type TestServer } from "./_conformance.ts";
import { startRealServer } from "./_test_servers.ts";
import { webSocketTransport, webSocketUrl } from "./websocket.ts";
import { FRAME_HEADER_BYTES, KIND_BATCH, KIND_ERROR } from "./ws_framing.ts";

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

test("webSocketUrl maps http endpoints to /ws and keeps explicit paths", () => {
  strictEqual(webSocketUrl("http://h:1"), "ws://h:1/ws");
  strictEqual(webSocketUrl("ws://h:1/custom"), "ws://h:1/custom");
  ok(webSocketUrl("https://h").startsWith("wss://"));
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
