/**
 * The wire format's bounds and shared tags, which its encoder (`codec_encode.ts`) and its strict
 * decoder (`codec_decode.ts`) both hold to: how long a bigint and how deep a value may be, which
 * typed arrays are aligned, the tag that pads them, and `Float16Array` where the runtime has it.
 *
 * @module
 */

/** The longest bigint magnitude, in bytes (512 bits), that encode writes and decode reads. */
export const MAX_BIGINT_BYTES: number = 64;
/** How deep arrays, maps and tags may nest in a frame that decode accepts. */
export const MAX_DEPTH: number = 256;
/** Typed arrays this large or larger are aligned (see `encodeFrame`); smaller ones are copied. */
export const ALIGN_MIN_BYTES: number = 4096;
/** Self-described CBOR (RFC 8949 §3.4.6): a tag that means nothing, so a run of them is padding. */
export const TAG_SELF_DESCRIBED: number = 55799;

/** A typed array's constructor, as the decoder calls it to view (or copy) a typed array's bytes. */
export interface TypedArrayConstructor {
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): ArrayBufferView;
  /** Bytes per element. */
  readonly BYTES_PER_ELEMENT: number;
}

/** `Float16Array`, where the runtime has it: cborg does not know it (it would encode one as a map). */
export const Float16: TypedArrayConstructor | undefined =
  (globalThis as { Float16Array?: TypedArrayConstructor }).Float16Array;
/** The RFC 8746 tag of a little-endian `Float16Array`. */
export const TAG_FLOAT16_ARRAY_LE: number = 84;
