/**
 * Frames for a transport: {@linkcode encodeFrame} encodes a value with room in front of it for the
 * transport's header and its large typed arrays aligned and left out as segments, so that it is
 * sent without another copy. The header room is on offer once ({@linkcode claimHeadroom},
 * {@linkcode claimLatestHeadroom}; {@linkcode offerHeadroom} offers a received frame's), and
 * {@linkcode inlineFrame} writes a frame's segments into it for a transport that sends one message
 * per frame.
 *
 * @module
 */
import { decode } from "./codec_decode.ts";
import { encodeFast, encodeSegmented, encodeWhole } from "./codec_encode.ts";
import { segmentTable } from "./codec_segments.ts";

/** Bytes free in front of a frame from {@linkcode encodeFrame}: room for a transport's frame header. */
export const FRAME_HEADROOM = 5;
/** Frames this large or larger have their headroom on offer; smaller ones are batched (copied) anyway. */
const HEADROOM_MIN_BYTES = 64 * 1024;
/** Frames whose headroom is on offer (see {@linkcode claimHeadroom}). */
const headroom = new WeakSet<Uint8Array>();

/**
 * Encodes a value as one frame that a transport can send without copying it again: the
 * {@linkcode FRAME_HEADROOM} bytes in front of it are free for the transport's header (taken once
 * through {@linkcode claimHeadroom}), and the data of large typed arrays is aligned so that, once
 * the frame arrives behind that header at the start of a message, {@linkcode decode} views it where
 * it is instead of copying it. Typed arrays and byte strings of {@linkcode SEGMENT_MIN_BYTES} or more
 * are not copied into it at all: they stay where they are as its segments ({@linkcode segmentsOf}),
 * which a transport sends beside it or writes in with {@linkcode inlineFrame}. Decodes like any
 * {@linkcode encode} output (with its segments, in this process or attached where it arrives).
 *
 * @param value The value to encode.
 * @returns The CBOR bytes.
 * @throws {TypeError} When the value cannot be encoded.
 *
 * @example A large frame's typed arrays (below the segments' 64 KiB), framed in place and viewed where they arrive
 * ```ts
 * import { claimHeadroom, decode, encodeFrame, FRAME_HEADROOM } from "./codec.ts";
 * const frame = encodeFrame({ x: new Float32Array(16_000), y: new Float32Array(16_000) });
 * const message = claimHeadroom(frame)!; // header + frame, no copy
 * message.fill(7, 0, FRAME_HEADROOM);
 * const arrived = new Uint8Array(message); // a fresh buffer, as a receiver gets it
 * const { x } = decode(arrived.subarray(FRAME_HEADROOM)) as { x: Float32Array };
 * if (x.buffer !== arrived.buffer || x.length !== 16_000) throw new Error("expected a view");
 * ```
 */
export function encodeFrame(value: unknown): Uint8Array {
  // (the fast path's frame comes without its room: one view less per frame)
  let frame = encodeFast(value, FRAME_HEADROOM);
  let segments: Uint8Array[] | undefined;
  if (frame === undefined) {
    segments = [];
    frame = encodeSegmented(value, FRAME_HEADROOM, segments).subarray(FRAME_HEADROOM);
  }
  const segmented = segments !== undefined && segments.length > 0;
  if (segmented) segmentTable.set(frame, segments!);
  if (frame.byteLength >= HEADROOM_MIN_BYTES) headroom.add(frame);
  else if (!segmented) latestFrame = frame;
  return frame;
}

/**
 * The last small frame {@linkcode encodeFrame} made (no segments): its room is on offer to
 * {@linkcode claimLatestHeadroom} until that takes it or the next frame is made.
 */
let latestFrame: Uint8Array | undefined;

/**
 * The headroom of the small frame {@linkcode encodeFrame} made last, taken once, or `undefined` for
 * any other frame. A transport that sends a small frame as a message of its own right after it was
 * encoded (a sequential call, its reply) writes the header in front of it instead of copying it
 * behind a new one: a new small buffer costs more than the rest of the framing, on Deno most of all
 * (BENCHMARKS.md, Transports, thirteenth session, h1). Only the latest frame, by identity, so that
 * nothing else (an older frame, a frame sent twice, a frame received) has its bytes in front
 * written; for large frames see {@linkcode claimHeadroom}.
 *
 * @param frame A frame about to get a header.
 * @returns The header room and the frame as one view, or `undefined`.
 *
 * @example
 * ```ts
 * import { claimLatestHeadroom, encodeFrame } from "./codec.ts";
 * const older = encodeFrame({ t: "a" });
 * const frame = encodeFrame({ t: "b" });
 * if (claimLatestHeadroom(older) !== undefined) throw new Error("only the latest");
 * if (claimLatestHeadroom(frame)?.byteLength !== frame.byteLength + 5) throw new Error("expected room");
 * if (claimLatestHeadroom(frame) !== undefined) throw new Error("taken once");
 * ```
 */
export function claimLatestHeadroom(frame: Uint8Array): Uint8Array<ArrayBuffer> | undefined {
  if (frame !== latestFrame) return undefined;
  latestFrame = undefined;
  return new Uint8Array(
    frame.buffer as ArrayBuffer,
    frame.byteOffset - FRAME_HEADROOM,
    frame.byteLength + FRAME_HEADROOM,
  );
}

/**
 * The frame with its segments written into it, for a transport that sends one message per frame
 * (HTTP, NATS, in memory): the frame itself when it has none, else a new frame, as
 * {@linkcode encodeFrame} wrote frames before segments (one copy of their bytes, as then).
 *
 * @param frame A frame.
 * @returns A frame without segments that decodes to the same value.
 *
 * @example
 * ```ts
 * import { decode, encodeFrame, inlineFrame, segmentsOf } from "./codec.ts";
 * import { deepStrictEqual, strictEqual } from "node:assert/strict";
 * const value = { x: new Int32Array(20_000).fill(-2) };
 * const whole = inlineFrame(encodeFrame(value));
 * strictEqual(segmentsOf(whole), undefined);
 * deepStrictEqual(decode(whole), value);
 * ```
 */
export function inlineFrame(frame: Uint8Array): Uint8Array {
  if (!segmentTable.has(frame)) return frame;
  const value = decode(frame);
  const message = encodeWhole(value, FRAME_HEADROOM);
  const inline = message.subarray(FRAME_HEADROOM);
  if (inline.byteLength >= HEADROOM_MIN_BYTES) headroom.add(inline);
  return inline;
}

/**
 * Takes the free bytes in front of `frame` (see {@linkcode encodeFrame}; also offered for a large
 * received frame whose header was already read): returns the frame with
 * {@linkcode FRAME_HEADROOM} writable bytes before it, or `undefined` when it has none on offer. Each
 * frame's room can be taken once, so a frame sent twice is copied the second time.
 *
 * @param frame A frame about to get a header.
 * @returns The header room and the frame as one view, or `undefined`.
 *
 * @example
 * ```ts
 * import { claimHeadroom, encodeFrame } from "./codec.ts";
 * const frame = encodeFrame({ big: [new Uint8Array(40_000), new Uint8Array(40_000)] });
 * if (claimHeadroom(frame)?.byteLength !== frame.byteLength + 5) throw new Error("expected room");
 * if (claimHeadroom(frame) !== undefined) throw new Error("taken once");
 * ```
 */
export function claimHeadroom(frame: Uint8Array): Uint8Array<ArrayBuffer> | undefined {
  if (!headroom.delete(frame)) return undefined;
  return new Uint8Array(
    frame.buffer as ArrayBuffer,
    frame.byteOffset - FRAME_HEADROOM,
    frame.byteLength + FRAME_HEADROOM,
  );
}

/**
 * Offers the {@linkcode FRAME_HEADROOM} bytes in front of `frame` for reuse (a received message's
 * own header, once read): a handler that answers with this same frame is then framed in place.
 * Only a frame of `minBytes` or more is taken (by default 64 KiB: a smaller one goes out batched
 * with others, copied anyway); a sender that writes a frame of its own with room in front of it,
 * and gives its buffer away with it, offers a smaller one (a stream's chunk, `stream_wire.ts`).
 *
 * @param frame A frame at least {@linkcode FRAME_HEADROOM} bytes into its buffer.
 * @param minBytes The least size of a frame whose room is taken.
 *
 * @example
 * ```ts
 * import { claimHeadroom, offerHeadroom } from "./codec.ts";
 * const message = new Uint8Array(5 + 70_000); // header + frame, as received
 * const frame = message.subarray(5);
 * offerHeadroom(frame);
 * if (claimHeadroom(frame)?.buffer !== message.buffer) throw new Error("expected the same bytes");
 * const small = new Uint8Array(5 + 100).subarray(5);
 * offerHeadroom(small);
 * if (claimHeadroom(small) !== undefined) throw new Error("too small by default");
 * offerHeadroom(small, 0);
 * if (claimHeadroom(small)?.byteLength !== 105) throw new Error("expected room");
 * ```
 */
export function offerHeadroom(frame: Uint8Array, minBytes: number = HEADROOM_MIN_BYTES): void {
  if (frame.byteLength >= minBytes && frame.byteOffset >= FRAME_HEADROOM) headroom.add(frame);
}
