// The WebSocket frame readers of the Deno guard's relay, fed raw bytes cut at every position: where
// a server's frames end, how long a client's messages grow, a pong's payload unmasked, and the
// one-way frames of the node's framing told by their (masked) kind byte, whatever the length's width.
import { test } from "node:test";
import assert from "node:assert/strict";
import { KIND_NOTIFY, KIND_REQUEST } from "../../transports/ws_framing.ts";
import { concatBytes } from "../../core/_test_utils.ts";
import { FrameEnds, headerBytes, payloadLength, PING_PAYLOAD_BYTES, WsLengths } from "./_ws_frames.ts";

const UPGRADE = new TextEncoder().encode("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n");

/** A payload length in the fewest bytes: 7 bits, or 126 and 16 bits, or 127 and 64 bits. */
function lengthBytes(n: number): number[] {
  if (n < 126) return [n];
  if (n < 0x10000) return [126, n >> 8, n & 0xff];
  return [127, 0, 0, 0, 0, n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
}

/** A server's frame (unmasked): FIN set unless `fin` is false, `opcode`, the payload. */
function serverFrame(opcode: number, payload: Uint8Array, fin = true): Uint8Array {
  return concat(new Uint8Array([(fin ? 0x80 : 0) | opcode, ...lengthBytes(payload.byteLength)]), payload);
}

/** A client's frame: as {@linkcode serverFrame}, masked with `key` (bit 7 of byte 1, the key, the payload XORed). */
function clientFrame(opcode: number, payload: Uint8Array, key: number[], fin = true): Uint8Array {
  const [len7, ...extended] = lengthBytes(payload.byteLength);
  const masked = payload.map((b, i) => b ^ key[i & 3]);
  return concat(new Uint8Array([(fin ? 0x80 : 0) | opcode, 0x80 | len7, ...extended, ...key]), masked);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  return concatBytes(parts);
}

/** `bytes` cut in two at `at`. */
function cut(bytes: Uint8Array, at: number): Uint8Array[] {
  return [bytes.subarray(0, at), bytes.subarray(at)];
}

/** Where a FrameEnds fed `chunks` found frames to end (offsets in the whole stream). */
function frameEnds(chunks: Uint8Array[]): number[] {
  const ends = new FrameEnds();
  const found: number[] = [];
  let base = 0;
  for (const chunk of chunks) {
    let at = 0;
    while (at < chunk.byteLength) {
      at = ends.next(chunk, at);
      if (ends.atEnd) found.push(base + at);
    }
    base += chunk.byteLength;
  }
  return found;
}

test("headerBytes and payloadLength read the 7-, 16- and 64-bit lengths, masked or not", () => {
  const short = serverFrame(2, new Uint8Array(5));
  assert.equal(headerBytes(short), 2);
  assert.equal(payloadLength(short), 5);
  const mid = clientFrame(2, new Uint8Array(300), [1, 2, 3, 4]);
  assert.equal(headerBytes(mid), 2 + 2 + 4);
  assert.equal(payloadLength(mid), 300);
  const long = serverFrame(2, new Uint8Array(70_000));
  assert.equal(headerBytes(long), 2 + 8);
  assert.equal(payloadLength(long), 70_000);
  // a 64-bit length past 4 GiB cannot be followed: it reads as Infinity
  assert.equal(payloadLength(new Uint8Array([0x82, 127, 0, 0, 0, 1, 0, 0, 0, 0])), Infinity);
});

test("FrameEnds finds each server frame's end past the upgrade's head, wherever the reads cut the stream", () => {
  const frames = [
    serverFrame(2, new Uint8Array(3).fill(7)),
    serverFrame(9, new Uint8Array(0)), // a ping with no payload ends at its header
    serverFrame(2, new Uint8Array(200).fill(1)),
    serverFrame(1, new TextEncoder().encode("hi")),
  ];
  const stream = concat(UPGRADE, ...frames);
  const expected: number[] = [];
  let end = UPGRADE.byteLength;
  for (const f of frames) expected.push(end += f.byteLength);
  assert.deepEqual(frameEnds([stream]), expected);
  for (let at = 1; at < stream.byteLength; at++) assert.deepEqual(frameEnds(cut(stream, at)), expected, `cut at ${at}`);
  // one byte at a time
  assert.deepEqual(frameEnds([...stream].map((b) => new Uint8Array([b]))), expected);
});

test("FrameEnds counts the data frames' payload bytes, not control frames', and knows a boundary", () => {
  const ends = new FrameEnds();
  const stream = concat(UPGRADE, serverFrame(2, new Uint8Array(10)), serverFrame(9, new Uint8Array(4)));
  assert.equal(ends.atBoundary, false); // still in the head
  let at = 0;
  while (at < stream.byteLength) at = ends.next(stream, at);
  assert.equal(ends.data, 10);
  assert.equal(ends.atBoundary, true);
  const half = serverFrame(2, new Uint8Array(6));
  ends.next(half.subarray(0, 4), 0);
  assert.equal(ends.atBoundary, false); // inside a frame
  assert.equal(ends.data, 12);
});

test("WsLengths counts the client's messages, continuations joined, and refuses one past its limit", () => {
  const key = [9, 8, 7, 6];
  const lengths = new WsLengths(100);
  assert.equal(lengths.feed(clientFrame(2, new Uint8Array(60), key)), true);
  // a message of 60 + 40 in two frames is at the limit; the next one starts from nothing
  assert.equal(lengths.feed(clientFrame(2, new Uint8Array(60), key, false)), true);
  assert.equal(lengths.feed(clientFrame(0, new Uint8Array(40), key)), true);
  assert.equal(lengths.feed(clientFrame(9, new Uint8Array(4), key)), true); // a ping counts for nothing
  assert.equal(lengths.messages, 2);
  const over = new WsLengths(100);
  assert.equal(over.feed(clientFrame(2, new Uint8Array(60), key, false)), true);
  assert.equal(over.feed(clientFrame(0, new Uint8Array(41), key)), false);
  // told by the header alone: a 64-bit length past the limit, with no payload yet
  assert.equal(new WsLengths(1 << 20).feed(new Uint8Array([0x82, 0xff, 0, 0, 0, 0, 0x10, 0, 0, 0, 1, 2, 3, 4])), false);
});

test("WsLengths unmasks the payload of an 8-byte pong, wherever the reads cut it", () => {
  const read = 1_234_567.890_123;
  const payload = new Uint8Array(PING_PAYLOAD_BYTES);
  new DataView(payload.buffer).setFloat64(0, read);
  assert.notEqual(payload[PING_PAYLOAD_BYTES - 1], 0); // (every byte of it counts)
  const stream = concat(
    clientFrame(2, new Uint8Array(30), [1, 2, 3, 4]),
    clientFrame(10, payload, [0xde, 0xad, 0xbe, 0xef]),
    clientFrame(10, new Uint8Array(3), [5, 6, 7, 8]), // not the size of ours: not a read count
  );
  for (let at = 1; at < stream.byteLength; at++) {
    const pongs: number[] = [];
    const lengths = new WsLengths(1 << 20, (r) => pongs.push(r));
    for (const part of cut(stream, at)) assert.equal(lengths.feed(part), true);
    assert.deepEqual(pongs, [read], `cut at ${at}`);
  }
});

test("WsLengths tells a one-way frame by its kind byte, under a 7- or 16-bit length, and nothing else", () => {
  const key = [0x11, 0x22, 0x33, 0x44];
  const notify = (n: number) => {
    const p = new Uint8Array(n);
    p[0] = KIND_NOTIFY;
    return p;
  };
  const request = new Uint8Array(20);
  request[0] = KIND_REQUEST;
  const unfinished = notify(10);
  const stream = concat(
    clientFrame(2, notify(20), key), // a short one-way frame
    clientFrame(2, request, key), // a request: answered by its reply
    clientFrame(2, notify(200), key), // a one-way frame with a 16-bit length (its key at bytes 4-7)
    clientFrame(2, unfinished, key, false), // a message in several frames: not a whole one-way frame
    clientFrame(0, new Uint8Array(5), key),
    clientFrame(10, notify(20), key), // a pong whose first byte happens to be the kind
  );
  for (let at = 1; at < stream.byteLength; at++) {
    let oneWay = 0;
    const lengths = new WsLengths(1 << 20, undefined, () => oneWay++);
    for (const part of cut(stream, at)) lengths.feed(part);
    assert.equal(oneWay, 2, `cut at ${at}`);
  }
});
