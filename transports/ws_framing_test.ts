import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { test } from "node:test";
import {
  forEachInBatch,
  FRAME_HEADER_BYTES,
  KIND_BATCH,
  KIND_PART,
  KIND_PART_END,
  KIND_REQUEST,
  Outbox,
  PartAssembler,
  takeRequestId,
  writeHeader,
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
