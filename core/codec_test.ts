import { deepStrictEqual, ok, strictEqual, throws } from "node:assert/strict";
import { test } from "node:test";
import { Decoder } from "./_cbor_x/decode.js";
import {
  claimHeadroom,
  decode,
  encode,
  encodeFrame,
  errorFromWire,
  errorToWire,
  FRAME_HEADROOM,
  offerHeadroom,
} from "./codec.ts";
import {
  AuthError,
  CancelledError,
  NodeLostError,
  OpExecutionError,
  PlacementError,
  ProtocolError,
  RemoteError,
  TimeoutError,
  TransportError,
} from "./errors.ts";

test("codec round-trips typed arrays, Map, Set, Date, bigint and nested values", () => {
  const value = {
    f32: new Float32Array([1.5, -2, 3e-8]),
    f64: new Float64Array([Math.PI, -0]),
    i8: new Int8Array([-128, 127]),
    u8: new Uint8Array([0, 255]),
    u8c: new Uint8ClampedArray([1, 2]),
    i16: new Int16Array([-3, 3]),
    u16: new Uint16Array([65535]),
    i32: new Int32Array([-1, 2 ** 31 - 1]),
    u32: new Uint32Array([2 ** 32 - 1]),
    i64: new BigInt64Array([-(2n ** 63n)]),
    u64: new BigUint64Array([2n ** 64n - 1n]),
    map: new Map<unknown, unknown>([["a", 1], [2, new Date(0)]]),
    set: new Set(["x", "y"]),
    date: new Date("2024-05-06T07:08:09.010Z"),
    small: 5n,
    big: 2n ** 100n,
    negBig: -(2n ** 100n),
    bigNumber: 2 ** 53 - 1,
    float: 0.1,
    nested: [{ deep: [null, undefined, true, "é✓"] }],
  };
  deepStrictEqual(decode(encode(value)), value);
});

test("codec decodes a typed array at an odd offset in the frame", () => {
  const frame = encode(["x", new Float32Array([1, 2, 3])]);
  const shifted = new Uint8Array(frame.byteLength + 1);
  shifted.set(frame, 1);
  deepStrictEqual(decode(shifted.subarray(1)), ["x", new Float32Array([1, 2, 3])]);
});

test("codec frames are self-contained (no record state shared between frames)", () => {
  const frames = [encode({ op: "call", id: 1 }), encode({ op: "call", id: 2 })];
  // A fresh decoder with default options reads the second frame alone.
  deepStrictEqual(new Decoder({ mapsAsObjects: true }).decode(frames[1]), { op: "call", id: 2 });
  strictEqual(frames[0][0] >> 5, 5, "a plain object is a CBOR map (major type 5), not a record tag");
});

test("codec encode returns bytes that later encodes do not overwrite", () => {
  const a = encode({ v: "first" });
  const copy = a.slice();
  for (let i = 0; i < 1000; i++) encode({ v: `other ${i}`, pad: new Uint8Array(100) });
  deepStrictEqual(a, copy);
});

test("decode throws ProtocolError for malformed, truncated and trailing input", () => {
  throws(() => decode(new Uint8Array(0)), ProtocolError);
  throws(() => decode(new Uint8Array([0xff])), ProtocolError);
  throws(() => decode(new Uint8Array([0x1c])), ProtocolError); // reserved additional info
  const frame = encode({ key: "value", arr: [1, 2, 3] });
  for (let cut = 1; cut < frame.byteLength; cut++) throws(() => decode(frame.subarray(0, cut)), ProtocolError);
  throws(() => decode(new Uint8Array([...frame, 0x00])), ProtocolError);
  throws(() => decode("not bytes" as unknown as Uint8Array), ProtocolError);
});

test("decode throws only ProtocolError on 5,000 random and mutated frames", () => {
  let seed = 12345;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const base = encode({ op: "call", args: [1, "two", new Float32Array(4), new Map([["k", 3n]])] });
  let decoded = 0;
  for (let i = 0; i < 5000; i++) {
    let bytes: Uint8Array;
    if (i % 2 === 0) {
      bytes = new Uint8Array(1 + Math.floor(rand() * 64)).map(() => Math.floor(rand() * 256));
    } else {
      bytes = base.slice();
      for (let k = 0; k < 3; k++) bytes[Math.floor(rand() * bytes.length)] = Math.floor(rand() * 256);
    }
    try {
      decode(bytes);
      decoded++;
    } catch (err) {
      ok(err instanceof ProtocolError, `frame ${i} threw ${String(err)}`);
    }
  }
  ok(decoded < 5000);
});

test("encode throws TypeError for values CBOR cannot carry", () => {
  throws(() => encode({ f: Symbol("s") }), TypeError);
});

test("errorToWire keeps the name and message of built-in errors, never the stack", () => {
  for (const err of [new Error("e"), new TypeError("t"), new RangeError("r"), new SyntaxError("s")]) {
    const wire = errorToWire(err);
    deepStrictEqual(wire, { tag: "Error", message: err.message, data: { name: err.name } });
    const bytes = new TextDecoder().decode(encode(wire));
    ok(!bytes.includes("codec_test") && !bytes.includes("at "), "no stack or path on the wire");
    const back = errorFromWire(decode(encode(wire)));
    strictEqual(back.constructor, err.constructor);
    strictEqual(back.message, err.message);
  }
});

test("errorFromWire rebuilds every allow-listed thinkagain error with its data", () => {
  const errors = [
    new OpExecutionError("parse", new TypeError("bad")),
    new PlacementError("Generator", 'Cannot place service "Generator": needs 4 GPUs'),
    new TransportError("too-large", "frame too big", "ws://h:1"),
    new RemoteError("boom", "SqlError"),
    new TimeoutError("slow", 50),
    new CancelledError("op1"),
    new NodeLostError("n1", "connection closed"),
    new ProtocolError("Unknown service"),
    new AuthError("refused"),
  ];
  for (const err of errors) {
    const back = errorFromWire(decode(encode(errorToWire(err))));
    strictEqual(back.constructor, err.constructor, err._tag);
    strictEqual(back.message, err.message, err._tag);
    deepStrictEqual((back as typeof err).toData(), err.toData(), err._tag);
  }
  const op = errorFromWire(decode(encode(errorToWire(errors[0])))) as OpExecutionError;
  ok(op.cause instanceof TypeError);
  strictEqual((op.cause as TypeError).message, "bad");
});

test("errorToWire turns custom errors and thrown values into RemoteError data", () => {
  class SqlError extends Error {
    override name = "SqlError";
  }
  const custom = errorFromWire(errorToWire(new SqlError("no table")));
  ok(custom instanceof RemoteError);
  strictEqual(custom.remoteName, "SqlError");
  strictEqual(custom.message, "no table");
  const thrown = errorFromWire(errorToWire({ code: 7 }));
  ok(thrown instanceof RemoteError);
  ok(thrown.message.includes('"code":7'));
  ok(errorFromWire(errorToWire("plain string")).message.includes("plain string"));
});

test("errorFromWire never trusts the wire: unknown tags and malformed data become RemoteError", () => {
  for (
    const wire of [
      null,
      42,
      { tag: "constructor", message: "x", data: {} },
      { tag: "__proto__", message: "x", data: {} },
      { tag: "Error", message: "x", data: { name: "Function" } },
      { tag: "Error", message: "x", data: { name: "toString" } },
      { tag: "Evil", message: { not: "a string" }, data: null },
    ]
  ) {
    const err = errorFromWire(wire);
    ok(err instanceof RemoteError, `for ${JSON.stringify(wire)} got ${err.constructor.name}`);
  }
  const t = errorFromWire({ tag: "TransportError", message: "m", data: { reason: "made-up", endpoint: 5 } });
  ok(t instanceof TransportError);
  strictEqual(t.reason, "io");
  strictEqual(t.endpoint, undefined);
});

test("encodeFrame: large typed arrays arrive aligned and are viewed where they arrived, whatever comes before them", () => {
  const kinds = [Float32Array, Float64Array, Int16Array, Uint32Array, BigInt64Array] as const;
  for (const Kind of kinds) {
    for (let pad = 0; pad < 12; pad++) {
      const n = 8192 / Kind.BYTES_PER_ELEMENT + pad; // ≥ 4 KiB: aligned
      const data = Kind === BigInt64Array
        ? BigInt64Array.from({ length: n }, (_, i) => BigInt(i) - 5n)
        : new (Kind as Float64ArrayConstructor)(n).map((_, i) => i * 1.5 - 7);
      const value = { t: "result", ok: true, note: "x".repeat(pad), value: data, after: [1, "two"] };
      const frame = encodeFrame(value);
      deepStrictEqual(decode(frame), value, "decodes like encode's output, wherever it is");
      // on the wire: the frame behind a 5-byte header, at the start of a fresh message buffer
      const arrived = new Uint8Array(FRAME_HEADROOM + frame.byteLength);
      arrived.set(frame, FRAME_HEADROOM);
      const back = decode(arrived.subarray(FRAME_HEADROOM)) as typeof value;
      deepStrictEqual(back, value);
      strictEqual(back.value.buffer, arrived.buffer, `${Kind.name} after ${pad} bytes is a view, not a copy`);
    }
  }
  // small arrays are not padded (and are copied when misaligned, as before)
  const small = encodeFrame({ v: new Float32Array([1, 2, 3]) });
  strictEqual(small.byteLength, encode({ v: new Float32Array([1, 2, 3]) }).byteLength);
});

test("encodeFrame leaves room for a header in front of a large frame, taken once; small frames offer none", () => {
  const frame = encodeFrame({ big: new Uint8Array(70_000).fill(9) });
  const before = frame.slice();
  const message = claimHeadroom(frame);
  ok(message !== undefined);
  strictEqual(message.buffer, frame.buffer, "no copy");
  strictEqual(message.byteOffset + FRAME_HEADROOM, frame.byteOffset);
  message.set([1, 2, 3, 4, 5]);
  deepStrictEqual(frame, before, "writing the header leaves the frame as it was");
  strictEqual(claimHeadroom(frame), undefined, "the room is taken once: a second send copies");
  strictEqual(claimHeadroom(encodeFrame({ small: 1 })), undefined);
  // a received frame's own header can be offered back for its reply
  const received = new Uint8Array(FRAME_HEADROOM + 70_000).subarray(FRAME_HEADROOM);
  offerHeadroom(received);
  strictEqual(claimHeadroom(received)?.byteLength, FRAME_HEADROOM + 70_000);
  const alone = new Uint8Array(70_000);
  offerHeadroom(alone);
  strictEqual(claimHeadroom(alone), undefined, "nothing in front of it: not offered");
});
