// Types for the vendored cbor-x encoder (the subset thinkagain uses).
import { Decoder } from "./decode.js";
import type { Options } from "./decode.js";
export type { Options };
/** A CBOR encoder (also decodes, with the same options). */
export class Encoder extends Decoder {
  constructor(options?: Options);
  encode(value: unknown): Uint8Array;
}
