// Text on the wire is UTF-8 or refused (issue 11): a frame whose text fields hold invalid UTF-8 is
// a ProtocolError that says so, never a value silently changed to U+FFFD; against a real node.
import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import * as ta from "../mod.ts";
import { startNodeProcess } from "../adapters/_test_nodes.ts";
import { decode } from "../core/codec.ts";
import { encodeMessage } from "./protocol.ts";
import { webSocketTransport } from "./websocket.ts";

const APP = fileURLToPath(new URL("./_backpressure_app.ts", import.meta.url));

/** `{ t: "ping", owner: <2 bytes> }` with the owner's bytes as given. */
function pingWithOwner(b0: number, b1: number): Uint8Array {
  return new Uint8Array([
    0xa2,
    0x61,
    0x74,
    0x64,
    0x70,
    0x69,
    0x6e,
    0x67, // { "t": "ping",
    0x65,
    0x6f,
    0x77,
    0x6e,
    0x65,
    0x72,
    0x62,
    b0,
    b1, //   "owner": text(2) }
  ]);
}

test("decode refuses a text string (a value or a map key) that is not valid UTF-8, naming where", () => {
  assert.deepEqual(decode(pingWithOwner(0xc3, 0xa9)), { t: "ping", owner: "é" });
  assert.throws(
    () => decode(pingWithOwner(0xc3, 0x28)),
    (e: unknown) =>
      e instanceof ta.ProtocolError && /text string of 2 bytes at byte 14 is not valid UTF-8/.test(e.message),
  );
  // a key: { <ff fe>: 1 }
  assert.throws(() => decode(new Uint8Array([0xa1, 0x62, 0xff, 0xfe, 0x01])), /not valid UTF-8/);
  // inside an array, past the fast path's short strings
  const long = new Uint8Array([0x81, 0x78, 40, ...new Array(39).fill(0x61), 0x80]);
  assert.throws(() => decode(long), /text string of 40 bytes at byte 1 is not valid UTF-8/);
});

test(
  "a node refuses a frame with invalid UTF-8 in a text field, and the connection serves on",
  { timeout: 60_000 },
  async () => {
    const n = await startNodeProcess(APP, ["--port", "0", "--name", "n1"]);
    try {
      const conn = await webSocketTransport.connect(n.url);
      await assert.rejects(
        conn.request(pingWithOwner(0xc3, 0x28)),
        (e: unknown) => e instanceof ta.ProtocolError && /not valid UTF-8/.test(e.message),
      );
      const pong = decode(await conn.request(encodeMessage({ t: "ping" }))) as { t: string };
      assert.equal(pong.t, "pong");
      await conn.close();
    } finally {
      n.kill();
      await n.exited;
    }
  },
);
