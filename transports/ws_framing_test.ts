import { deepStrictEqual, ok, strictEqual, throws } from "node:assert/strict";
import { test } from "node:test";
import { decode, encodeFrame, SEGMENT_MIN_BYTES, segmentsOf } from "../core/codec.ts";
import { ProtocolError } from "../core/errors.ts";
import {
  forEachInBatch,
  FRAME_HEADER_BYTES,
  framed,
  KIND_BATCH,
  KIND_NOTIFY,
  KIND_PART,
  KIND_PART_END,
  KIND_REPLY,
  KIND_REQUEST,
  KIND_SEGMENTED,
  Outbox,
  PartAssembler,
  readFrameId,
  segmentedMessages,
  SegmentReader,
  takeRequestId,
  writeHeader,
  writeU32,
} from "./ws_framing.ts";

test("writeHeader puts kind then little-endian id", () => {
  const out = new Uint8Array(5);
  writeHeader(out, 2, 0x01020304);
  deepStrictEqual([...out], [2, 4, 3, 2, 1]);
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
  for (const f of frames) box.pushFrame(KIND_REQUEST, f[1], f.subarray(FRAME_HEADER_BYTES));
  strictEqual(sent.length, 0, "nothing leaves before the end of the turn");
  await Promise.resolve();
  strictEqual(sent.length, 1);
  strictEqual(sent[0][0], KIND_BATCH);
  const back: Uint8Array[] = [];
  strictEqual(forEachInBatch(sent[0], (m) => back.push(m.slice())), true);
  deepStrictEqual(back, frames);
  box.pushFrame(KIND_REQUEST, 1, frames[0].subarray(FRAME_HEADER_BYTES));
  await Promise.resolve();
  deepStrictEqual(sent[1], frames[0], "a lone frame is sent whole, as framed() makes it");
  strictEqual(forEachInBatch(new Uint8Array([KIND_BATCH, 0, 0, 0, 0, 2, 0, 0, 0]), () => {}), false);
});

test("Outbox.pushFrame writes each frame's header into the batch and leaves the bodies as they were", async () => {
  const sent: Uint8Array[] = [];
  const box = new Outbox((m) => sent.push(m));
  // bodies with bytes in front of them (as the codec's frames have), which a batch must not write
  const slab = new Uint8Array(64).fill(0xee);
  const bodies = [slab.subarray(10, 13).fill(1), slab.subarray(30, 31).fill(2), slab.subarray(40, 40)];
  const whole = framed(KIND_NOTIFY, 0, new Uint8Array([9, 9]));
  box.pushFrame(KIND_REPLY, 7, bodies[0]);
  box.pushFrame(KIND_NOTIFY, 0, new Uint8Array([9, 9]));
  box.pushFrame(KIND_REQUEST, 0xfffffffe, bodies[1]);
  box.pushFrame(KIND_REPLY, 8, bodies[2]); // an empty body
  strictEqual(sent.length, 0, "nothing leaves before the end of the turn");
  await Promise.resolve();
  strictEqual(sent.length, 1);
  const back: Uint8Array[] = [];
  strictEqual(forEachInBatch(sent[0], (m) => back.push(m.slice())), true);
  deepStrictEqual(back, [
    framed(KIND_REPLY, 7, new Uint8Array([1, 1, 1])),
    whole,
    framed(KIND_REQUEST, 0xfffffffe, new Uint8Array([2])),
    framed(KIND_REPLY, 8, new Uint8Array(0)),
  ]);
  deepStrictEqual([...slab.subarray(0, 10)], new Array(10).fill(0xee), "the bytes in front of a body are left alone");
  deepStrictEqual([...slab.subarray(25, 30)], new Array(5).fill(0xee));
  // a frame alone in its turn leaves as one message: header and body
  box.pushFrame(KIND_REPLY, 5, new Uint8Array([4, 5]));
  await Promise.resolve();
  deepStrictEqual(sent[1], framed(KIND_REPLY, 5, new Uint8Array([4, 5])));
  // one too large for a batch leaves at once, after what was queued before it
  box.pushFrame(KIND_REPLY, 1, new Uint8Array([1]));
  box.pushFrame(KIND_REPLY, 2, new Uint8Array(70_000));
  strictEqual(sent.length, 4);
  deepStrictEqual(sent[2], framed(KIND_REPLY, 1, new Uint8Array([1])));
  strictEqual(readFrameId(sent[3]), 2);
  strictEqual(sent[3].byteLength, FRAME_HEADER_BYTES + 70_000);
});

test("a client Outbox sends mid-sized messages in pieces of one write each, and PartAssembler joins them", async () => {
  const sent: Uint8Array[] = [];
  const box = new Outbox((m) => sent.push(m), { client: true });
  const big = new Uint8Array(FRAME_HEADER_BYTES + 5000);
  writeHeader(big, KIND_REQUEST, 9);
  for (let i = FRAME_HEADER_BYTES; i < big.length; i++) big[i] = i & 0xff;
  box.pushFrame(KIND_REQUEST, 9, big.subarray(FRAME_HEADER_BYTES));
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
    box.pushFrame(KIND_REQUEST, i + 1, new Uint8Array(60));
  }
  await Promise.resolve();
  ok(sent.length > 1 && sent.every((m) => m.byteLength <= 1000 && m[0] === KIND_BATCH));
  let frames = 0;
  for (const m of sent) forEachInBatch(m, () => frames++);
  strictEqual(frames, 100);
});

test("framed writes the header in front of the small frame encodeFrame made last, once; any other small frame is copied", () => {
  const older = encodeFrame({ t: "result", ok: true, value: "older" });
  const frame = encodeFrame({ t: "result", ok: true, value: "What is ML?" });
  const before = frame.slice();
  const message = framed(KIND_REPLY, 7, frame);
  strictEqual(message.buffer, frame.buffer, "no copy");
  strictEqual(message.byteOffset + FRAME_HEADER_BYTES, frame.byteOffset);
  strictEqual(message[0], KIND_REPLY);
  strictEqual(readFrameId(message), 7);
  deepStrictEqual(frame, before, "the frame is as it was");
  deepStrictEqual(decode(message.subarray(FRAME_HEADER_BYTES)), { t: "result", ok: true, value: "What is ML?" });
  // sent again: its room is taken, so the second message is a copy and the first stays whole
  const again = framed(KIND_REPLY, 8, frame);
  ok(again.buffer !== frame.buffer);
  strictEqual(readFrameId(message), 7);
  strictEqual(readFrameId(again), 8);
  // an older frame, and a received one (the bytes in front are its own header), are copied
  ok(framed(KIND_REPLY, 9, older).buffer !== older.buffer);
  const received = framed(KIND_REQUEST, 3, encodeFrame({ t: "call" })).slice();
  const body = received.subarray(FRAME_HEADER_BYTES);
  ok(framed(KIND_REPLY, 4, body).buffer !== body.buffer);
  strictEqual(readFrameId(received), 3);
});

test("takeRequestId never gives 0, the id of no request, also when it wraps past held ids", () => {
  deepStrictEqual(takeRequestId(1, () => false), { id: 1, next: 2 });
  deepStrictEqual(takeRequestId(0xffffffff, () => false), { id: 0xffffffff, next: 1 });
  // the last id is held by a stuck request: the next free one is 1, not 2^32 (which frames as 0)
  deepStrictEqual(takeRequestId(0xffffffff, (id) => id === 0xffffffff), { id: 1, next: 2 });
  deepStrictEqual(takeRequestId(0xfffffffe, (id) => id >= 0xfffffffe || id === 1), { id: 2, next: 3 });
  for (const next of [0xfffffffd, 0xfffffffe, 0xffffffff]) {
    const { id } = takeRequestId(next, (i) => i >= 0xfffffffd);
    ok(id >= 1 && id <= 0xffffffff, `from ${next}: ${id}`);
  }
});

test("a frame with segments travels as a KIND_SEGMENTED message and its segments, and SegmentReader gives it back whole", () => {
  const value = {
    t: "result",
    a: new Float32Array(SEGMENT_MIN_BYTES / 4).fill(2),
    b: new Uint8Array(SEGMENT_MIN_BYTES * 3),
  };
  const body = encodeFrame(value);
  strictEqual(segmentedMessages(KIND_REPLY, 7, encodeFrame({ small: 1 })), undefined, "no segments: sent as before");
  const messages = segmentedMessages(KIND_REPLY, 7, body)!;
  strictEqual(messages.length, 3);
  strictEqual(messages[0][0], KIND_SEGMENTED);
  strictEqual(messages[1].buffer, value.a.buffer, "the array's own bytes, not a copy");
  strictEqual(messages[2].buffer, value.b.buffer);
  const reader = new SegmentReader(1 << 30);
  strictEqual(reader.waiting, false);
  reader.start(messages[0].slice());
  strictEqual(reader.waiting, true);
  strictEqual(reader.add(messages[1].slice()), undefined);
  const whole = reader.add(messages[2].slice())!;
  strictEqual(reader.waiting, false);
  strictEqual(whole.frame[0], KIND_REPLY);
  strictEqual(readFrameId(whole.frame), 7);
  strictEqual(whole.frame.byteOffset % 8, 0, "the frame starts on a multiple of 8");
  const back = decode(whole.body) as typeof value;
  deepStrictEqual(back, value);
  strictEqual(back.a.byteOffset, 0, "viewed where it arrived");
  // many segments, and a notify
  const many = Array.from({ length: 33 }, (_, k) => new Int32Array(SEGMENT_MIN_BYTES / 4).fill(k));
  const [head, ...rest] = segmentedMessages(KIND_NOTIFY, 0, encodeFrame(many))!;
  reader.start(head.slice());
  let got: ReturnType<SegmentReader["add"]>;
  for (const m of rest) got = reader.add(m.slice());
  deepStrictEqual(decode(got!.body), many);
  strictEqual(got!.frame[0], KIND_NOTIFY);
});

test("SegmentReader refuses a malformed announcement or a segment of another length with ProtocolError, and reads a frame over the limit to its end without keeping it", () => {
  const announce = (lengths: number[], frame = [KIND_REQUEST, 1, 0, 0, 0, 0xf6]) => {
    const prefix = (FRAME_HEADER_BYTES + 4 * lengths.length + 7) & ~7;
    const m = new Uint8Array(prefix + frame.length);
    writeHeader(m, KIND_SEGMENTED, lengths.length);
    lengths.forEach((n, i) => writeU32(m, FRAME_HEADER_BYTES + 4 * i, n));
    m.set(frame, prefix);
    return m;
  };
  const reader = new SegmentReader(4 * SEGMENT_MIN_BYTES);
  const refused = (f: () => unknown, message: RegExp, what: string) =>
    throws(f, (e) => e instanceof ProtocolError && message.test((e as Error).message), what);
  refused(() => reader.start(announce([])), /0 segments announced/, "none");
  refused(() => reader.start(announce([SEGMENT_MIN_BYTES - 1])), /below the 65536-byte minimum/, "too small");
  refused(() => reader.start(announce([SEGMENT_MIN_BYTES]).subarray(0, 12)), /segments announced/, "cut short");
  refused(() => reader.start(new Uint8Array([KIND_SEGMENTED, 1])), /no header/, "no header");
  // announced, then a message of another length (less, more, another frame): refused, and forgotten
  for (const length of [SEGMENT_MIN_BYTES - 1, SEGMENT_MIN_BYTES + 1, 6]) {
    reader.start(announce([SEGMENT_MIN_BYTES, SEGMENT_MIN_BYTES]));
    strictEqual(reader.add(new Uint8Array(SEGMENT_MIN_BYTES)), undefined);
    refused(
      () => reader.add(new Uint8Array(length)),
      /Segment 1 of 2 announced 65536 bytes, but a message of/,
      `${length}`,
    );
    strictEqual(reader.waiting, false, "what it held is gone");
  }
  // a peer that never sends them: the connection's end clears what was held
  reader.start(announce([SEGMENT_MIN_BYTES]));
  reader.clear();
  strictEqual(reader.waiting, false);
  // over the limit (segments included): read to its end, not kept, its size told
  reader.start(announce([SEGMENT_MIN_BYTES, 4 * SEGMENT_MIN_BYTES]));
  strictEqual(reader.add(new Uint8Array(SEGMENT_MIN_BYTES)), undefined);
  const over = reader.add(new Uint8Array(4 * SEGMENT_MIN_BYTES))!;
  strictEqual(over.tooLarge, 5 * SEGMENT_MIN_BYTES + 1);
  strictEqual(readFrameId(over.frame), 1);
  strictEqual(segmentsOf(over.body), undefined);
  ok(!reader.waiting);
});
