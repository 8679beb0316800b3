// A node answers the client's pong to its ping with an empty pong of its own (ws_connection.ts,
// ANSWER_PONG): the TCP segment that carries it acknowledges the client's pong at once, so a client
// whose socket holds small writes until the earlier ones are acknowledged (Deno's WebSocket client
// leaves Nagle's algorithm on) does not hold its next call for the node's delayed ACK after each
// reply of more than a ping's worth. The runtime's own keep-alive pongs (no payload) get no answer.
import { test } from "node:test";
import assert from "node:assert/strict";
import { WSContext } from "hono/ws";
import { eventually } from "../core/_test_utils.ts";
import { framed, KIND_REQUEST } from "./ws_framing.ts";
import { wsEvents } from "./ws_connection.ts";

test("a node answers the client's pong to its ping with an empty pong, and a keep-alive pong with nothing", async () => {
  const out: string[] = [];
  // Bun's server socket, as far as the node uses it: send, ping and pong return the bytes taken
  const raw = {
    readyState: 1,
    send: (m: Uint8Array) => (out.push(`message ${m.byteLength}`), m.byteLength),
    ping: (
      d: Uint8Array,
    ) => (out.push(`ping ${new DataView(d.buffer, d.byteOffset, 8).getFloat64(0)}`), 2 + d.byteLength),
    pong: (d: Uint8Array) => (out.push(`pong ${d.byteLength}`), 2 + d.byteLength),
    getBufferedAmount: () => 0,
  };
  const ws = new WSContext({
    send: (m) => void raw.send(m as Uint8Array),
    raw,
    readyState: 1,
    url: null,
    protocol: null,
    close() {},
  });
  // a reply of more than a ping's worth (256 KiB), so that the node pings after it
  const events = wsEvents(() => new Uint8Array(300 * 1024), 64 << 20, 16 << 20);
  events.deliversPongs = true;
  events.onMessage!({ data: framed(KIND_REQUEST, 1, new Uint8Array([1])) } as MessageEvent, ws);
  assert.ok(await eventually(() => out.some((s) => s.startsWith("ping"))), `no ping after the reply: ${out}`);
  const pinged = Number(out.find((s) => s.startsWith("ping"))!.split(" ")[1]);
  assert.ok(pinged > 256 * 1024, `the ping says ${pinged} bytes`);
  const before = out.length;
  // the runtime's own keep-alive pong: no answer
  events.onPong(new Uint8Array(0));
  assert.deepEqual(out.slice(before), []);
  // the client's pong to the node's ping (its payload: the count the ping carried)
  const payload = new Uint8Array(8);
  new DataView(payload.buffer).setFloat64(0, pinged);
  events.onPong(payload);
  assert.deepEqual(out.slice(before), ["pong 0"]);
  events.onClose?.(new CloseEvent("close"), ws);
});
