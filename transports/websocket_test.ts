import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { test } from "node:test";
import { decode } from "../core/codec.ts";
import { runTransportConformance, type TestServer } from "./_conformance.ts";
import { startRealServer } from "./_test_servers.ts";
import { FRAME_HEADER_BYTES, KIND_ERROR, webSocketTransport, webSocketUrl, writeHeader } from "./websocket.ts";

/** Opens a raw WebSocket, sends `data`, and resolves with the messages and the close code. */
function rawExchange(server: TestServer, data: string | Uint8Array<ArrayBuffer>): Promise<{ messages: Uint8Array[]; code: number }> {
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
    for (const garbage of ["not a frame", new Uint8Array([0]), new Uint8Array([9, 1, 0, 0, 0, 1])]) {
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
