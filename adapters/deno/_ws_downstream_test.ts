// The server's side of a relayed WebSocket (the Deno guard's Downstream), alone: its pings go only
// between the server's frames, one after each 256 KiB relayed, carrying the bytes before them; the
// client's pong acknowledges them (bounding what is unread, then doubling the window, and saying how
// much of the server's data the client has read); a pong and a one-way frame of the client's are
// answered with an empty pong, never inside one of the server's frames. Written through a socket
// that takes at most part of each write, as a real one may.
import { test } from "node:test";
import assert from "node:assert/strict";
import { concatBytes } from "../../core/_test_utils.ts";
import { Downstream, type DownstreamSocket } from "./_ws_downstream.ts";

const UPGRADE = new TextEncoder().encode("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n");
const PING_EVERY = 256 * 1024;
const FIRST_WINDOW = 512 * 1024;

/** A server's binary frame (unmasked, FIN) of `n` bytes, each `fill`. */
function binaryFrame(n: number, fill: number): Uint8Array {
  const head = n < 126 ? [0x82, n] : n < 0x10000 ? [0x82, 126, n >> 8, n & 0xff] : [
    0x82,
    127,
    0,
    0,
    0,
    0,
    n >>> 24,
    (n >> 16) & 0xff,
    (n >> 8) & 0xff,
    n & 0xff,
  ];
  return concatBytes([new Uint8Array(head), new Uint8Array(n).fill(fill)]);
}

/** A socket that keeps what is written, taking at most `most` bytes a write. */
class Socket implements DownstreamSocket {
  readonly writes: Uint8Array[] = [];
  constructor(readonly most = 70_000) {}
  write(chunk: Uint8Array): Promise<number> {
    const n = Math.min(chunk.byteLength, this.most);
    this.writes.push(chunk.slice(0, n));
    return Promise.resolve(n);
  }
  get bytes(): Uint8Array {
    return concatBytes(this.writes);
  }
}

interface Frame {
  opcode: number;
  payload: Uint8Array;
  /** Bytes of the stream before the frame. */
  at: number;
}

/** The frames after the upgrade's head in what the client got. */
function framesOf(stream: Uint8Array): Frame[] {
  let at = UPGRADE.byteLength;
  assert.deepEqual(stream.subarray(0, at), UPGRADE);
  const frames: Frame[] = [];
  while (at < stream.byteLength) {
    const start = at;
    const opcode = stream[at] & 0x0f;
    let n = stream[at + 1] & 0x7f;
    at += 2;
    if (n === 126) {
      n = (stream[at] << 8) | stream[at + 1];
      at += 2;
    } else if (n === 127) {
      n = new DataView(stream.buffer, stream.byteOffset + at).getUint32(4);
      at += 8;
    }
    frames.push({ opcode, payload: stream.subarray(at, at + n), at: start });
    at += n;
  }
  assert.equal(at, stream.byteLength, "the stream ends inside a frame");
  return frames;
}

/** Relays `stream` through `down` in chunks of `size` bytes (cut anywhere in the frames). */
async function relayAll(down: Downstream, stream: Uint8Array, to: Socket, size: number): Promise<void> {
  for (let at = 0; at < stream.byteLength; at += size) await down.relay(stream.subarray(at, at + size), to);
}

test("Downstream pings between frames after each 256 KiB relayed, each ping carrying the bytes before it", async () => {
  for (const size of [1, 4093, 65_536, 1 << 20]) {
    const frames = Array.from({ length: 10 }, (_, i) => binaryFrame(100_000, i));
    const stream = concatBytes([UPGRADE, ...frames]);
    const to = new Socket();
    const down = new Downstream({});
    await relayAll(down, stream, to, size);
    const got = framesOf(to.bytes);
    // the server's frames all arrived, whole and in order, with pings between them
    const data = got.filter((f) => f.opcode === 2);
    assert.deepEqual(data.map((f) => f.payload[0]), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], `chunks of ${size}`);
    assert.ok(data.every((f) => f.payload.byteLength === 100_000 && f.payload.every((b) => b === f.payload[0])));
    // where they should be: after the first frame that ends PING_EVERY past the last ping
    const expected: number[] = [];
    let relayed = UPGRADE.byteLength, pinged = 0;
    for (const frame of frames) {
      relayed += frame.byteLength;
      if (relayed - pinged >= PING_EVERY) expected.push(pinged = relayed);
    }
    const pings = got.filter((f) => f.opcode === 9);
    assert.deepEqual(pings.map((p) => new DataView(p.payload.buffer, p.payload.byteOffset).getFloat64(0)), expected);
    assert.ok(pings.every((p) => p.payload.byteLength === 8));
  }
});

test("Downstream is full past its window of unacknowledged bytes; a pong frees it, doubles it, says what was read", async () => {
  const read: number[] = [];
  const down = new Downstream({ onRead: (n) => read.push(n) });
  const to = new Socket();
  // 3 frames of 100,000: the first ping after the third (its data 300,000 bytes)
  await relayAll(down, concatBytes([UPGRADE, ...Array.from({ length: 3 }, () => binaryFrame(100_000, 1))]), to, 65_536);
  assert.equal(down.full, false, "full at one ping's worth");
  const firstPing = UPGRADE.byteLength + 3 * 100_010;
  await relayAll(down, concatBytes(Array.from({ length: 3 }, () => binaryFrame(100_000, 2))), to, 65_536);
  // two pings unacknowledged: 600,030 bytes pinged against a window of 512 KiB
  assert.ok(firstPing + 3 * 100_010 - 0 >= FIRST_WINDOW);
  assert.equal(down.full, true);
  let roomy = false;
  const room = down.room().then(() => (roomy = true));
  // a pong for more than was pinged, or for nothing new, is no acknowledgement
  down.acknowledged(firstPing + 3 * 100_010 + 1);
  down.acknowledged(0);
  await Promise.resolve();
  assert.equal(roomy, false);
  assert.deepEqual(read, []);
  const before = to.writes.length;
  down.acknowledged(firstPing);
  await room;
  assert.deepEqual(read, [300_000], "the data read is the payloads before the acknowledged ping");
  assert.equal(down.full, false);
  // answered with an empty pong (its segment acknowledges the client's pong at once)
  await Promise.resolve();
  assert.deepEqual(concatBytes(to.writes.slice(before)), Uint8Array.of(0x8a, 0x00));
  // the window doubled: 1 MiB unacknowledged before full again
  await relayAll(down, concatBytes(Array.from({ length: 5 }, () => binaryFrame(100_000, 3))), to, 65_536);
  assert.equal(down.full, false, "full before the doubled window");
  // (600,060 bytes pinged past the pong now: full with the first window, not with this one)
  await relayAll(down, concatBytes(Array.from({ length: 4 }, () => binaryFrame(100_000, 4))), to, 65_536);
  assert.equal(down.full, true);
  // no pongs will come: no bound
  let woke = false;
  const wake = down.room().then(() => (woke = true));
  down.unbound();
  await wake;
  assert.equal(woke, true);
  assert.equal(down.full, false);
});

test("Downstream answers a one-way frame at once, or at the end of the server's frame it is in", async () => {
  const down = new Downstream({});
  const to = new Socket();
  const frame = binaryFrame(1000, 7);
  await down.relay(concatBytes([UPGRADE, frame]), to);
  down.oneWay();
  await Promise.resolve();
  await Promise.resolve();
  const whole = framesOf(to.bytes);
  assert.deepEqual(whole.map((f) => f.opcode), [2, 10], "answered at a frame's end");
  assert.equal(whole[1].payload.byteLength, 0);
  // mid-frame: held until the frame's end, then sent before anything more of the server's
  const next = binaryFrame(1000, 8);
  await down.relay(next.subarray(0, 500), to);
  down.oneWay();
  await Promise.resolve();
  await down.relay(next.subarray(500), to);
  await down.relay(binaryFrame(10, 9), to);
  assert.deepEqual(framesOf(to.bytes).map((f) => f.opcode), [2, 10, 2, 10, 2]);
  assert.deepEqual(framesOf(to.bytes).filter((f) => f.opcode === 2).map((f) => f.payload[0]), [7, 8, 9]);
});
