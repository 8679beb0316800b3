/**
 * The wire codec: CBOR for every frame, and errors as data rebuilt from an allow-list.
 *
 * CBOR comes from the npm package `cborg` (it has no dependencies), and the `codec_*.ts` files
 * this one gathers are its only importers. The package was chosen for resolvability: a Deno user importing thinkagain from JSR has
 * only a deno.json, and Deno resolves the whole npm graph before running anything. `cbor-x` fails
 * there (its optional dependency `cbor-extract@2.2.3` names platform packages at 2.2.3 that were
 * never published), while `cborg` resolves anywhere.
 *
 * What travels: plain objects as CBOR maps (keys in insertion order), arrays, strings, numbers,
 * booleans, `null` and `undefined` as themselves, `Uint8Array` as a byte string, the other typed
 * arrays (`Float16Array` too, where the runtime has it) under their RFC 8746 little-endian tags,
 * `Date` as tag 1, `bigint` as tag 2/3 (always, so a small bigint stays a bigint), `Set` as tag 258,
 * `Map` as tag 259, and a service handle's reference ({@linkcode WireHandle}) as tag
 * {@linkcode TAG_HANDLE}. Anything else is refused by encode with a TypeError that says where and
 * why (see {@linkcode findRefusal}): a value arrives exactly as it was sent, or not at all.
 *
 * A frame from {@linkcode encodeFrame} leaves the bytes of typed arrays and byte strings of at least
 * 64 KiB out, as segments a transport sends beside it ({@linkcode segmentsOf}): the frame names each
 * under tag {@linkcode TAG_SEGMENT}.
 *
 * Decoding is strict, because frames come from peers: it accepts those tags and tag 55799 (the
 * padding {@linkcode encodeFrame} aligns typed arrays with), tag {@linkcode TAG_SEGMENT} only in a
 * frame that came with its segments (each named exactly once), and refuses every other tag (shared
 * references 28/29, tag 27 objects, cbor-x records, …), bigints longer than 64 bytes (512 bits; the
 * encoder refuses them too), arrays, maps and tags nested more than 256 deep (so does the encoder),
 * indefinite-length items (the encoder never writes them) and integers beyond 2^53 outside tags
 * 2/3. Each is refused as soon as it is read, before any work that grows faster than the frame.
 *
 * This file is the codec's entry: every importer takes the codec from here, and the parts live one
 * to a file beside it:
 *
 * - `codec_encode.ts`: {@linkcode encode}, its fast path and its `cborg` path, and
 *   {@linkcode EncodedValue} (values encoded once), which that recursion holds; also
 *   {@linkcode findRefusal}
 * - `codec_refusal.ts`: what travels and what is refused, and why ({@linkcode valueRefusalError},
 *   {@linkcode isValueRefusal})
 * - `codec_frame.ts`: {@linkcode encodeFrame} and the header room in front of a frame
 *   ({@linkcode claimHeadroom}, {@linkcode claimLatestHeadroom}, {@linkcode offerHeadroom}),
 *   {@linkcode inlineFrame}
 * - `codec_segments.ts`: a frame's segments ({@linkcode segmentsOf}, {@linkcode attachSegments},
 *   {@linkcode frameBytes})
 * - `codec_decode.ts`: the strict decoder ({@linkcode decode}, {@linkcode decodeFull}), with its
 *   fast path in `codec_fast_decode.ts`
 * - `codec_handle.ts`: a service handle's reference, {@linkcode WireHandle} under
 *   {@linkcode TAG_HANDLE}
 * - `codec_wire_error.ts`: errors as data ({@linkcode errorToWire}, {@linkcode errorFromWire})
 * - `codec_format.ts`: the bounds and shared tags the encoder and the decoder both hold to
 *
 * @module
 */
export { decode, decodeFull } from "./codec_decode.ts";
export { encode, EncodedValue, findRefusal } from "./codec_encode.ts";
export { attachSegments, frameBytes, SEGMENT_MIN_BYTES, segmentsOf, TAG_SEGMENT } from "./codec_segments.ts";
export {
  claimHeadroom,
  claimLatestHeadroom,
  encodeFrame,
  FRAME_HEADROOM,
  inlineFrame,
  offerHeadroom,
} from "./codec_frame.ts";
export { TAG_HANDLE, WireHandle, type WireHandleReplica } from "./codec_handle.ts";
export { isValueRefusal, type ValueRefusal, valueRefusalError } from "./codec_refusal.ts";
export { errorFromWire, errorToWire, type WireError } from "./codec_wire_error.ts";
