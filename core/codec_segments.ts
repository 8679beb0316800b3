/**
 * A frame's segments: the bytes of its large typed arrays and byte strings, which `encodeFrame`
 * leaves where they are, beside the frame, instead of copying them into it. The frame names each
 * under tag {@linkcode TAG_SEGMENT}; {@linkcode segmentTable} keeps each frame's list, which a
 * transport reads with {@linkcode segmentsOf} (to send them) and {@linkcode frameBytes} (to count
 * them), and a receiver gives back with {@linkcode attachSegments} before it decodes the frame.
 *
 * @module
 */

/**
 * Typed arrays and byte strings this large or larger leave a frame from {@linkcode encodeFrame} as
 * segments (see {@linkcode segmentsOf}); smaller ones are written into it.
 */
export const SEGMENT_MIN_BYTES = 64 * 1024;
/**
 * The CBOR tag of a segment's place in a frame: 1953000290 (the bytes of "thkb"), next to
 * {@linkcode TAG_HANDLE}, from the first-come-first-served range of the IANA registry. It holds the
 * segment's index; under a typed array's RFC 8746 tag it stands for that array's bytes. Only
 * {@linkcode encodeFrame} writes it, only for the bytes it sends beside the frame, and decode
 * accepts it only in a frame that came with its segments, each used exactly once.
 */
export const TAG_SEGMENT: number = 0x74686b62;
/** The segments of frames from `encodeFrame` or received with theirs ({@linkcode attachSegments}). */
export const segmentTable: WeakMap<Uint8Array, readonly Uint8Array[]> = new WeakMap();

/**
 * The segments of a frame: the bytes of its large typed arrays and byte strings (at least
 * {@linkcode SEGMENT_MIN_BYTES} each), which {@linkcode encodeFrame} leaves where they are instead
 * of copying them into it. The frame names each by its index under {@linkcode TAG_SEGMENT}; a
 * transport sends them beside it (the WebSocket transport as messages of their own) or writes the
 * frame whole with {@linkcode inlineFrame}. They are the sender's own bytes, not copies: send them
 * before anything can change them.
 *
 * @param frame A frame from {@linkcode encodeFrame}, or one received with its segments.
 * @returns Its segments in order, or `undefined` when it has none.
 *
 * @example A 1 MiB array stays out of the frame
 * ```ts
 * import { decode, encodeFrame, segmentsOf } from "./codec.ts";
 * import { strictEqual } from "node:assert/strict";
 * const x = new Float32Array(262144);
 * const frame = encodeFrame({ x });
 * strictEqual(segmentsOf(frame)?.[0].buffer, x.buffer);
 * strictEqual(frame.byteLength < 64, true);
 * strictEqual((decode(frame) as { x: Float32Array }).x.length, 262144);
 * ```
 */
export function segmentsOf(frame: Uint8Array): readonly Uint8Array[] | undefined {
  return segmentTable.get(frame);
}

/**
 * Gives a received frame the segments that came beside it, so that {@linkcode decode} reads them
 * where they are (a typed array's view, when aligned for it).
 *
 * @param frame The frame, exactly the view that will be decoded.
 * @param segments Its segments, in order.
 *
 * @example
 * ```ts
 * import { attachSegments, decode, encodeFrame, segmentsOf } from "./codec.ts";
 * import { strictEqual } from "node:assert/strict";
 * const sent = encodeFrame({ b: new Uint8Array(70_000).fill(3) });
 * const arrived = sent.slice(); // a copy, as a transport would give it
 * attachSegments(arrived, segmentsOf(sent)!.map((s) => s.slice()));
 * strictEqual((decode(arrived) as { b: Uint8Array }).b[69_999], 3);
 * ```
 */
export function attachSegments(frame: Uint8Array, segments: readonly Uint8Array[]): void {
  if (segments.length > 0) segmentTable.set(frame, segments);
}

/**
 * The bytes a frame carries, its segments included: what limits on a frame's size count.
 *
 * @param frame A frame.
 * @returns Its length plus its segments' lengths.
 *
 * @example
 * ```ts
 * import { encodeFrame, frameBytes } from "./codec.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(frameBytes(encodeFrame({ x: new Float64Array(10_000) })) > 80_000, true);
 * ```
 */
export function frameBytes(frame: Uint8Array): number {
  const segments = segmentTable.get(frame);
  if (segments === undefined) return frame.byteLength;
  let n = frame.byteLength;
  for (const s of segments) n += s.byteLength;
  return n;
}
