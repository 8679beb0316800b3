// Types for the vendored cbor-x decoder (the subset thinkagain uses).
/** Options of the cbor-x decoder/encoder. */
export interface Options {
  useRecords?: boolean;
  mapsAsObjects?: boolean;
  useTag259ForMaps?: boolean;
  structuredClone?: boolean;
  copyBuffers?: boolean;
  tagUint8Array?: boolean;
  largeBigIntToFloat?: boolean;
  int64AsNumber?: boolean;
  encodeUndefinedAsNil?: boolean;
  useFloat32?: number;
  pack?: boolean;
  sequential?: boolean;
  variableMapSize?: boolean;
  bundleStrings?: boolean;
}
/** A CBOR decoder. */
export class Decoder {
  constructor(options?: Options);
  decode(bytes: Uint8Array): unknown;
}
/** A CBOR tag that has no registered extension. */
export class Tag {
  constructor(value: unknown, tag: number);
  value: unknown;
  tag: number;
}
