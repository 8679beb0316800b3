// A node answers the client's pong to its ping with an empty pong of its own (ws_connection.ts,
// ANSWER_PONG): the TCP segment that carries it acknowledges the client's pong at once, so a client
// whose socket holds small writes until the earlier ones are acknowledged (Deno's WebSocket client
// leaves Nagle's algorithm on) does not hold its next call for the node's delayed ACK after each
// reply of more than a ping's worth. The runtime's own keep-alive pongs (no payload) get no answer.
import { test } from "node:test";
import assert from "node:assert/strict";
import { WSContext } from "hono/ws";
import { eventually } from "../core/_test_utils.ts";
import { framed, KIND_NOTIFY, KIND_REQUEST } from "./ws_framing.ts";
import { wsEvents } from "./ws_connection.ts";

/**
 * Bun's server socket as far as the node uses it (send, ping and pong return the bytes taken), under
 * hono's WSContext; `out` lists what went out: `message <bytes>`, `ping <count it carries>`, `pong <bytes>`.
 */
function bunSocket(): { out: string[]; ws: WSContext } {
  const out: string[] = [];
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
  return { out, ws };
}

test("a node answers the client's pong to its ping with an empty pong, and a keep-alive pong with nothing", async () => {
  const { out, ws } = bunSocket();
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

test("a node answers a one-way frame of the client's with an empty pong, and a request with its reply only", async () => {
  const { out, ws } = bunSocket();
  const seen: number[] = [];
  const events = wsEvents((frame) => (seen.push(frame[0]), new Uint8Array([1])), 64 << 20, 16 << 20);
  events.deliversPongs = true;
  events.onMessage!({ data: framed(KIND_REQUEST, 1, new Uint8Array([7])) } as MessageEvent, ws);
  assert.ok(await eventually(() => out.some((s) => s.startsWith("message"))), "the request's reply was not sent");
  assert.ok(!out.includes("pong 0"), `a request was answered with a pong: ${out}`);
  events.onMessage!({ data: framed(KIND_NOTIFY, 0, new Uint8Array([9])) } as MessageEvent, ws);
  assert.deepEqual(out.filter((s) => s.startsWith("pong")), ["pong 0"]);
  assert.ok(await eventually(() => seen.length === 2), "the one-way frame did not reach the handler");
  events.onClose?.(new CloseEvent("close"), ws);
});
