// SendQueue.sendNextTurn: a large array sent beside its frame leaves in the next turn on Bun (where
// Bun writes it from where it lies), in order with what comes before and after, and the bound on
// waiting replies still closes a connection whose client does not read.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SendQueue, SLOW_READER_CLOSE_CODE } from "./ws_send_queue.ts";

const nextTurn = () => new Promise((r) => setTimeout(r, 0));

/** A Bun-like socket: `send` says whether it took the message (1), took it over its limit (-1). */
function bunLike(room = Infinity) {
  const sent: number[] = [];
  let closed = 0;
  let left = room;
  const raw = {
    readyState: 1,
    send: (m: Uint8Array) => (sent.push(m.byteLength), --left >= 0 ? 1 : -1),
    getBufferedAmount: () => 0,
  };
  const ws = { raw, send() {}, close: (code?: number) => void (closed = code ?? 0) };
  return { sent, raw, ws, closed: () => closed, room: (n: number) => void (left = n) };
}

test("SendQueue.sendNextTurn on Bun writes the message in the next turn, after those before it and before those after", async () => {
  const s = bunLike();
  const q = new SendQueue(s.ws, 1 << 20);
  q.send(new Uint8Array(40));
  q.sendNextTurn(new Uint8Array(70_000));
  q.sendNextTurn(new Uint8Array(80_000));
  q.send(new Uint8Array(10));
  assert.deepEqual(s.sent, [40]);
  // not counted as waiting for a slow client (the socket takes it, a turn later), but queued here
  assert.equal(q.unsentBytes, 10);
  assert.equal(q.queuedBytes, 150_010);
  await nextTurn();
  assert.deepEqual(s.sent, [40, 70_000, 80_000, 10]);
  assert.equal(q.unsentBytes, 0);
  q.send(new Uint8Array(5));
  assert.deepEqual(s.sent, [40, 70_000, 80_000, 10, 5]);
});

test("SendQueue.sendNextTurn on a socket that reports no backpressure (Deno, ws) sends at once", () => {
  const sent: number[] = [];
  const q = new SendQueue({ raw: { bufferedAmount: 0 }, send: (m) => void sent.push(m.byteLength), close() {} }, 1024);
  q.sendNextTurn(new Uint8Array(4096));
  assert.deepEqual(sent, [4096]);
});

test("SendQueue.sendNextTurn: what Bun's socket does not take in the next turn waits for its drain and counts against the bound", async () => {
  const s = bunLike(0);
  const q = new SendQueue(s.ws, 100_000);
  q.sendNextTurn(new Uint8Array(70_000)); // taken over the limit: the rest waits
  q.sendNextTurn(new Uint8Array(70_000));
  assert.equal(s.closed(), 0);
  await nextTurn();
  assert.deepEqual(s.sent, [70_000]);
  assert.equal(q.unsentBytes, 70_000);
  assert.equal(s.closed(), 0);
  q.send(new Uint8Array(40_000)); // 110,000 bytes wait: past the bound
  assert.equal(s.closed(), SLOW_READER_CLOSE_CODE);
});

test("SendQueue.sendNextTurn: the messages waiting go out at the drain, in order", async () => {
  const s = bunLike(0);
  const q = new SendQueue(s.ws, 1 << 20);
  q.sendNextTurn(new Uint8Array(70_000));
  q.sendNextTurn(new Uint8Array(80_000));
  q.send(new Uint8Array(7));
  await nextTurn();
  assert.deepEqual(s.sent, [70_000]);
  s.room(10);
  q.drain();
  assert.deepEqual(s.sent, [70_000, 80_000, 7]);
  assert.equal(q.unsentBytes, 0);
});

test("SendQueue.sendNextTurn drops what waits when the socket closed before the next turn", async () => {
  const s = bunLike();
  const q = new SendQueue(s.ws, 1 << 20);
  q.sendNextTurn(new Uint8Array(70_000));
  s.raw.readyState = 3;
  await nextTurn();
  assert.deepEqual(s.sent, []);
  assert.equal(q.unsentBytes, 0);
});
