// Types for the vendored cbor-x encoder (the subset thinkagain uses).
import { Decoder } from "./decode.js";
import type { Options } from "./decode.js";
export type { Options };
/** A CBOR encoder (also decodes, with the same options). */
export class Encoder extends Decoder {
  constructor(options?: Options & { headroom?: number });
  encode(value: unknown, mode?: number): Uint8Array;
}
/**
 * thinkagain patch: an `encode` mode that leaves `headroom` bytes free before the item (included at
 * the front of the result) and aligns the data of typed arrays of 4 KiB or more to 8 bytes from it.
 */
export const HEADROOM_MODE: number;
