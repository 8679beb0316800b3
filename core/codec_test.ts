import { deepStrictEqual, ok, strictEqual, throws } from "node:assert/strict";
import { test } from "node:test";
import { decode as cborgDecode, encode as cborgEncode } from "cborg";
import {
  attachSegments,
  claimHeadroom,
  decode,
  encode,
  EncodedValue,
  encodeFrame,
  errorFromWire,
  errorToWire,
  findRefusal,
  FRAME_HEADROOM,
  frameBytes,
  inlineFrame,
  isValueRefusal,
  offerHeadroom,
  SEGMENT_MIN_BYTES,
  segmentsOf,
  TAG_SEGMENT,
} from "./codec.ts";
import { ARRAY_WITH_PROPERTIES, assertSameValue, VALUE_CORPUS } from "./_test_value_corpus.ts";
import {
  AuthError,
  CancelledError,
  NodeLostError,
  OpExecutionError,
  OverloadedError,
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
  // A generic CBOR decoder with default options reads the second frame alone.
  deepStrictEqual(cborgDecode(frames[1]), { op: "call", id: 2 });
  strictEqual(frames[0][0] >> 5, 5, "a plain object is a CBOR map (major type 5), not a record tag");
});

test("codec encode returns bytes that later encodes do not overwrite", () => {
  const a = encode({ v: "first" });
  const copy = a.slice();
  for (let i = 0; i < 1000; i++) encode({ v: `other ${i}`, pad: new Uint8Array(100) });
  deepStrictEqual(a, copy);
  // every way of encoding, kept side by side: plain values, values for cborg, values given up on
  // half-written, large ones, failures
  const values: unknown[] = [];
  for (let i = 0; i < 3000; i++) {
    values.push(
      { i, s: "x".repeat(i % 50) },
      [i, "half written", new Date(i)],
      { i, big: "y".repeat(i % 7 === 0 ? 20_000 : 10) },
    );
  }
  const frames = values.map((v, i) => {
    if (i % 100 === 0) throws(() => encode([i, Symbol("not encodable")]), TypeError);
    return i % 2 ? encodeFrame(v) : encode(v);
  });
  frames.forEach((frame, i) => deepStrictEqual(decode(frame), values[i]));
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

/** Whether fuzzed frame `i` decodes; a frame that does not must be refused with a ProtocolError. */
function decodesOrRefuses(bytes: Uint8Array, i: number): boolean {
  try {
    decode(bytes);
    return true;
  } catch (err) {
    ok(err instanceof ProtocolError, `frame ${i} threw ${String(err)}`);
    return false;
  }
}

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
    if (decodesOrRefuses(bytes, i)) decoded++;
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
    new OverloadedError("10000 calls in flight on this connection"),
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
  // (two arrays below the segments' 64 KiB: a frame that carries them in it)
  const frame = encodeFrame({ big: [new Uint8Array(40_000).fill(9), new Uint8Array(40_000).fill(8)] });
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

// Decoder bombs: small frames that would cost a naive decoder far more than their size. Each is
// built by hand, byte by byte, and must be refused with ProtocolError.

/** The head of a CBOR item: major type 0–7 and its argument, in the fewest bytes. */
function head(major: number, n: number): number[] {
  const m = major << 5;
  if (n < 24) return [m | n];
  if (n < 0x100) return [m | 24, n];
  if (n < 0x10000) return [m | 25, n >> 8, n & 0xff];
  return [m | 26, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
}

/** Asserts that decoding `bytes` throws a ProtocolError whose message matches `reason`. */
function refuses(bytes: Uint8Array, reason: RegExp): void {
  throws(() => decode(bytes), (err) => err instanceof ProtocolError && reason.test(err.message));
}

/** The bytes of a CBOR text string. */
function cborText(s: string): number[] {
  const bytes = new TextEncoder().encode(s);
  return [...head(3, bytes.length), ...bytes];
}

/** A CBOR map of `entries` ([key bytes, value bytes] each), written as given: repeats and all. */
function cborMap(entries: [number[], number[]][]): number[] {
  return [...head(5, entries.length), ...entries.flatMap(([k, v]) => [...k, ...v])];
}

test("decode refuses a map that repeats a key (the encoder writes none), small or large, nested, __proto__ too", () => {
  // {"a": 1, "a": 2}
  refuses(new Uint8Array([0xa2, 0x61, 0x61, 0x01, 0x61, 0x61, 0x02]), /repeat map key "a"/);
  // the call envelope a proxy would read one way and the node another: {"t": "call", "op": "x", "op": "y"}
  refuses(
    new Uint8Array(cborMap([[cborText("t"), cborText("call")], [cborText("op"), cborText("x")], [
      cborText("op"),
      cborText("y"),
    ]])),
    /repeat map key "op"/,
  );
  // past any small-map shortcut: 40 keys, the last the same as the first, and the same as the 30th
  const keys = Array.from({ length: 40 }, (_, i) => `key${i}`);
  for (const repeat of ["key0", "key29", "key38"]) {
    const many = [...keys.slice(0, 39), repeat].map((k, i): [number[], number[]] => [cborText(k), head(0, i)]);
    refuses(new Uint8Array(cborMap(many)), new RegExp(`repeat map key "${repeat}"`));
  }
  refuses(new Uint8Array(cborMap([[cborText("__proto__"), [0x01]], [cborText("__proto__"), [0x02]]])), /repeat/);
  // nested: in an array in a map
  refuses(
    new Uint8Array(cborMap([[cborText("args"), [0x81, ...cborMap([[cborText("b"), [1]], [cborText("b"), [2]]])]]])),
    /repeat map key "b"/,
  );
  // a Map (tag 259) that repeats a key, a Set (tag 258) that repeats an item
  refuses(new Uint8Array([...head(6, 259), ...head(5, 2), 0x01, 0x02, 0x01, 0x03]), /tag 259 \(a map\) repeats a key/);
  refuses(new Uint8Array([...head(6, 258), ...head(4, 2), 0x01, 0x01]), /tag 258 \(a set\) repeats an item/);
});

test("decode reads maps whose keys are the same as their parent's or siblings', and keys the prototype has", () => {
  const value: Record<string, unknown> = {
    a: { a: 1, b: { a: 2, b: 3 } },
    b: [{ a: 1 }, { a: 2, toString: 3 }],
    constructor: 4,
    hasOwnProperty: 5,
    many: Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${i}`, { k0: i, k1: [{ k0: 1 }] }])),
  };
  deepStrictEqual(decode(encode(value)), value);
  const map = new Map<unknown, unknown>([[1, "a"], ["1", "b"], [1n, "c"], [NaN, "d"]]);
  deepStrictEqual(decode(encode(map)), map);
  deepStrictEqual(decode(encode(new Set([1, "1", 1n, NaN]))), new Set([1, "1", 1n, NaN]));
  // keys and items that are objects alike are still two
  strictEqual((decode(encode(new Map([[{}, 1], [{}, 2]]))) as Map<unknown, unknown>).size, 2);
  strictEqual((decode(encode(new Set([[1], [1]]))) as Set<unknown>).size, 2);
});

test("decode refuses a 128 KiB bigint (tag 2) with ProtocolError", () => {
  const magnitude = new Uint8Array(128 * 1024).fill(0xff);
  const bomb = new Uint8Array([...head(6, 2), ...head(2, magnitude.length), ...magnitude]);
  refuses(bomb, /at most 64 bytes/);
  const negative = bomb.slice();
  negative[0] = 0xc3; // tag 3
  refuses(negative, /at most 64 bytes/);
});

test("decode reads bigints of up to 64 bytes and refuses 65; encode refuses them too", () => {
  const largest = 2n ** 512n - 1n;
  deepStrictEqual(decode(encode([largest, -largest - 1n, 0n, -1n, 5n])), [largest, -largest - 1n, 0n, -1n, 5n]);
  const tooLong = new Uint8Array([...head(6, 2), ...head(2, 65), 1, ...new Uint8Array(64)]);
  refuses(tooLong, /at most 64 bytes/);
  throws(() => encode(2n ** 512n), TypeError);
  throws(() => encode(-(2n ** 512n) - 1n), TypeError);
});

test("decode refuses shared references (tags 28/29), a billion laughs included, with ProtocolError", () => {
  // [28(["lol" × 10]), 28([29(0) × 10]), 28([29(1) × 10]), …]: with references resolved, 10^10 "lol"s
  const lol = [...head(3, 3), 0x6c, 0x6f, 0x6c];
  const bytes = [...head(4, 10), ...head(6, 28), ...head(4, 10)];
  for (let i = 0; i < 10; i++) bytes.push(...lol);
  for (let level = 1; level < 10; level++) {
    bytes.push(...head(6, 28), ...head(4, 10));
    for (let i = 0; i < 10; i++) bytes.push(...head(6, 29), ...head(0, level - 1));
  }
  refuses(new Uint8Array(bytes), /\b28\b/);
  refuses(new Uint8Array([...head(6, 29), 0]), /\b29\b/);
});

test("decode refuses tag 27 (objects built by class name: Error, RegExp) with ProtocolError", () => {
  const text = (s: string) => [...head(3, s.length), ...new TextEncoder().encode(s)];
  refuses(new Uint8Array([...head(6, 27), ...head(4, 2), ...text("Error"), ...text("x")]), /\b27\b/);
  refuses(
    new Uint8Array([...head(6, 27), ...head(4, 3), ...text("RegExp"), ...text("(a+)+$"), ...text("g")]),
    /\b27\b/,
  );
  // so encode refuses what decode would not rebuild
  throws(() => encode(new Error("x")), TypeError);
  throws(() => encode(/x/g), TypeError);
});

test("decode refuses nesting deeper than 256 and indefinite-length items with ProtocolError", () => {
  const nested = (depth: number, open: number[]) => new Uint8Array([...Array(depth).fill(open).flat(), 0x00]);
  deepStrictEqual(decode(nested(256, [0x81])), JSON.parse("[".repeat(256) + "0" + "]".repeat(256)));
  const tooDeep = /nesting deeper than 256/;
  refuses(nested(257, [0x81]), tooDeep);
  refuses(nested(100_000, [0x81]), tooDeep); // arrays of one item
  refuses(nested(100_000, [0xa1]), tooDeep); // maps of one key
  refuses(nested(100_000, [0xd9, 0xd9, 0xf7]), tooDeep); // tag 55799 (padding), which decode accepts
  refuses(nested(100_000, [0x9f]), /indefinite/); // indefinite-length arrays
  refuses(new Uint8Array([0x9f, 0x01, 0xff]), /indefinite/); // one indefinite-length array
  refuses(new Uint8Array([0xbf, 0x61, 0x61, 0x01, 0xff]), /indefinite/); // one indefinite-length map
  throws(() => decode(new Uint8Array([0x5f, 0x41, 0x01, 0xff])), ProtocolError); // indefinite-length bytes
});

test("decode accepts only the tags encode writes", () => {
  const refused = [
    [...head(6, 0), ...head(3, 1), 0x30], // date string
    [...head(6, 64), ...head(2, 1), 1], // Uint8Array tag (a Uint8Array travels as a plain byte string)
    [...head(6, 81), ...head(2, 4), 0, 0, 0x80, 0x3f], // big-endian Float32Array
    [...head(6, 21066), ...head(4, 1), ...head(3, 1), 0x78], // RegExp
    [...head(6, 258), ...head(3, 2), 0x61, 0x62], // a Set of something other than an array
    [...head(6, 85), ...head(2, 3), 1, 2, 3], // a Float32Array of 3 bytes
    [...head(6, 1), ...head(3, 1), 0x30], // a Date of a string
    [...head(6, 57344), ...head(4, 0)], // a cbor-x record
    [0x1b, 0x00, 0x20, 0, 0, 0, 0, 0, 0], // an integer beyond 2^53 outside tags 2/3
  ];
  for (const bytes of refused) throws(() => decode(new Uint8Array(bytes)), ProtocolError, JSON.stringify(bytes));
});

test("codec round-trips strings of every length class and script, through both encoders", () => {
  const texts = ["", "a", "é", "✓", "😀", "x".repeat(23), "x".repeat(24), "é".repeat(12), "é".repeat(128)];
  for (const n of [255, 256, 65_535, 65_536, 300_000]) texts.push("y".repeat(n), "ü".repeat(n >> 1) + "z");
  texts.push("mixed ascii, ünïcödé, 中文 and 😀 ".repeat(500));
  for (const text of texts) {
    strictEqual(decode(encode(text)), text);
    deepStrictEqual(decode(encodeFrame({ text })), { text });
    deepStrictEqual(decode(encode({ text, date: new Date(0) })), { text, date: new Date(0) }, "the cborg path");
  }
  deepStrictEqual(decode(encode(texts)), texts, "all in one frame, past the scratch buffer");
  strictEqual(decode(encode("short")), "short", "the scratch buffer is usable after growing");
});

test("codec round-trips JSON-like values and numbers of every width alike through both encoders", () => {
  const numbers = [0, 1, -1, 23, 24, 255, 256, 65_535, 65_536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, -(2 ** 53) + 1];
  numbers.push(0.5, 0.1, -1.5e300, 2 ** 53, Infinity, -Infinity, NaN, 3.4028234663852886e38);
  const value = { numbers, nested: [{ a: [null, undefined, true, false] }, []], empty: {}, big: numbers.map(String) };
  const fast = decode(encode(value));
  const viaCborg = decode(encode({ ...value, forceCborg: new Set() })) as Record<string, unknown>;
  delete viaCborg.forceCborg;
  deepStrictEqual(fast, value);
  deepStrictEqual(viaCborg, value);
  deepStrictEqual(Object.keys(fast as object), Object.keys(value), "keys keep their insertion order");
});

test("decode returns byte strings as views into the frame", () => {
  const frame = encode({ b: new Uint8Array([1, 2, 3]) });
  const { b } = decode(frame) as { b: Uint8Array };
  strictEqual(b.buffer, frame.buffer);
  deepStrictEqual(b, new Uint8Array([1, 2, 3]));
});

test("encode works from inside a getter of the value it is encoding", () => {
  const value = {
    get inner() {
      return encode({ y: 1 });
    },
  };
  deepStrictEqual(decode((decode(encode(value)) as { inner: Uint8Array }).inner), { y: 1 });
  deepStrictEqual(decode((decode(encodeFrame(value)) as { inner: Uint8Array }).inner), { y: 1 });
});

test("encode throws TypeError for a cycle, also one deeper than the fast path goes", () => {
  const cycle: Record<string, unknown> = {};
  cycle.self = cycle;
  throws(() => encode(cycle), TypeError);
  throws(() => encodeFrame([cycle]), TypeError);
});

test("encode aligns large typed arrays from the frame's first byte", () => {
  const frame = encode({ note: "odd", x: new Float64Array(1024).fill(1.25) });
  const arrived = new Uint8Array(frame); // at the start of a fresh buffer, as an HTTP body arrives
  const { x } = decode(arrived) as { x: Float64Array };
  strictEqual(x.buffer, arrived.buffer, "a view, not a copy");
  deepStrictEqual(x, new Float64Array(1024).fill(1.25));
});

const Float16 = (globalThis as unknown as { Float16Array?: Float32ArrayConstructor }).Float16Array;

test(
  "codec round-trips a Float16Array as a Float16Array (tag 84), aligned when large",
  { skip: Float16 === undefined && "this runtime has no Float16Array" },
  () => {
    const small = new Float16!([1.5, -2, 65504]);
    deepStrictEqual(decode(encode({ small })), { small });
    const large = new Float16!(4096).fill(0.25);
    const frame = encodeFrame({ note: "x", large });
    const arrived = new Uint8Array(FRAME_HEADROOM + frame.byteLength);
    arrived.set(frame, FRAME_HEADROOM);
    const back = decode(arrived.subarray(FRAME_HEADROOM)) as { large: Float32Array };
    strictEqual(back.large.constructor, Float16);
    strictEqual(back.large.buffer, arrived.buffer, "a view, not a copy");
    deepStrictEqual(back.large, large);
  },
);

test("codec: each value of the corpus arrives exactly, or encode refuses it with a TypeError saying where and why", () => {
  ok(VALUE_CORPUS.length >= 88, `${VALUE_CORPUS.length} values`);
  const at = (path: string) => (path === "" ? "" : `at ${path}: `);
  for (const { name, value, refused, path } of VALUE_CORPUS) {
    // as it is (the fast path where the value is JSON-like), and beside a Date (always through cborg)
    const beside = { v: value, d: new Date(0) };
    const ways: [string, () => Uint8Array, (back: unknown) => unknown, unknown][] = [
      ["encode", () => encode(value), (back) => back, value],
      ["encodeFrame", () => encodeFrame(value), (back) => back, value],
      ["cborg", () => encode(beside), (back) => (back as { v: unknown }).v, beside],
    ];
    for (const [way, run, unwrap, sent] of ways) {
      if (refused === undefined) {
        assertSameValue(unwrap(decode(run())), value, `${name} (${way})`);
        continue;
      }
      throws(run, (err) => {
        ok(err instanceof TypeError && isValueRefusal(err), `${name} (${way}): ${String(err)}`);
        ok(refused.test(err.message), `${name} (${way}): ${err.message}`);
        const where = at(findRefusal(sent)!.path);
        ok(err.message.startsWith(`Cannot encode value as CBOR: ${where}`), `${name} (${way}): ${err.message}`);
        return true;
      });
    }
    strictEqual(findRefusal(value)?.path, path, name);
  }
});

test("codec: an array travels as its elements; properties set on the array itself are not sent (documented)", () => {
  deepStrictEqual(decode(encode(ARRAY_WITH_PROPERTIES)), [1, 2]);
});

test("encode refuses nesting that decode would refuse, counting levels as decode does", () => {
  const arrays = (depth: number, leaf: unknown): unknown => depth === 0 ? leaf : [arrays(depth - 1, leaf)];
  deepStrictEqual(decode(encode(arrays(256, 1))), arrays(256, 1));
  throws(() => encode(arrays(257, 1)), /nested more than 256 levels deep/);
  // a tag (a date, a bigint, a typed array, a set) is a level, as decode counts it
  for (const leaf of [new Date(0), 5n, new Float32Array(1), new Set([1])]) {
    const fits = arrays(leaf instanceof Set ? 254 : 255, leaf);
    deepStrictEqual(decode(encode(fits)), fits);
    throws(() => encode([fits]), /nested more than 256 levels deep/, String(leaf));
  }
  // a large typed array near the bound is not aligned (its padding tags would nest past it)
  const large = arrays(250, new Float64Array(1024).fill(1));
  deepStrictEqual(decode(encodeFrame(large)), large);
});

test("codec round-trips bigints of every length up to 64 bytes, both signs", () => {
  let seed = 7;
  const byte = () => BigInt((seed = (seed * 1103515245 + 12345) >>> 0) >>> 24);
  for (let length = 1; length <= 64; length++) {
    let n = 0n;
    for (let i = 0; i < length; i++) n = (n << 8n) | byte();
    n |= 1n << BigInt(8 * length - 1); // exactly `length` bytes
    const values = [n, -n, n - 1n, -(n - 1n) - 1n];
    deepStrictEqual(decode(encode(values)), values, `${length} bytes`);
  }
});

test("strings of every length to 300, ASCII or not, encode to the bytes cborg writes and decode back", () => {
  for (let n = 0; n <= 300; n++) {
    for (
      const s of ["a".repeat(n), "é" + "b".repeat(Math.max(0, n - 1)), "x".repeat(Math.max(0, n - 1)) + "\u{1F600}"]
    ) {
      const bytes = encode({ s });
      deepStrictEqual(cborgDecode(bytes), { s }, `length ${s.length}`);
      deepStrictEqual([...bytes], [...cborgEncode({ s })], `length ${s.length}: the same bytes as cborg`);
      strictEqual((decode(bytes) as { s: string }).s, s);
    }
  }
});

test("byte strings of every length to 300 and around 4 KiB, alone, in arrays and beside a typed array, encode to the bytes cborg writes and decode back", () => {
  const lengths = [...Array.from({ length: 301 }, (_, n) => n), 4095, 4096, 4097, 65535, 65536];
  for (const n of lengths) {
    const bytes = Uint8Array.from({ length: n }, (_, i) => (i * 7 + n) & 0xff);
    // plain JSON-like values with bytes (the fast path up to 4 KiB), and one that cborg writes whole
    for (const value of [bytes, [bytes, n, bytes], { t: "chunk", items: [bytes, bytes], done: false }]) {
      const encoded = encode(value);
      deepStrictEqual(
        [...encoded],
        [...cborgEncode(value, { mapSorter: undefined })],
        `length ${n}: the same bytes as cborg`,
      );
      deepStrictEqual(decode(encoded), value, `length ${n}`);
      // (as one message carries it: from 64 KiB on, a frame leaves its bytes out, see segmentsOf)
      deepStrictEqual(decode(inlineFrame(encodeFrame(value)).slice()), value, `length ${n}, framed`);
    }
    const beside = { items: [bytes], f: new Float32Array([1.5]) };
    deepStrictEqual(decode(encode(beside)), beside, `length ${n} beside a Float32Array`);
  }
});

test("EncodedValue is written into frames as its bytes, decodes as its value, and keeps its typed arrays aligned", () => {
  const value = { docs: ["a", "ü", "x".repeat(300)], v: new Float32Array(20_000).fill(0.5), n: 2n ** 70n };
  const once = new EncodedValue(value);
  // both encoders (the fast path, and cborg for a frame holding a typed array elsewhere), at every offset mod 8
  for (const beside of ["s", new Float64Array(1000).fill(3)]) {
    for (let shift = 0; shift < 8; shift++) {
      const frame = encodeFrame({ t: "call", pad: "p".repeat(shift), args: [once, beside, once] });
      const arrived = new Uint8Array(claimHeadroom(frame)!); // header + frame, in a fresh buffer
      const back = decode(arrived.subarray(FRAME_HEADROOM)) as { args: [typeof value, unknown, typeof value] };
      assertSameValue(back.args, [value, beside, value], `shift ${shift}`);
      strictEqual(back.args[0].v.buffer, arrived.buffer, "viewed where it arrived, not copied");
      strictEqual(back.args[2].v.buffer, arrived.buffer, "viewed where it arrived, not copied");
    }
  }
  // written deeper than its room: encoded anew there, the same value
  let deep: unknown = once;
  let deepValue: unknown = value;
  for (let i = 0; i < 30; i++) [deep, deepValue] = [[deep], [deepValue]];
  assertSameValue(decode(encode(deep)), deepValue, "deep");
  assertSameValue(decode(encode([deep, new Uint8Array(3)])), [deepValue, new Uint8Array(3)], "deep, cborg");
  strictEqual(findRefusal([once, 1]), undefined);
});

test("EncodedValue refuses a value that cannot travel, or nests past its room, with a value refusal", () => {
  throws(
    () => new EncodedValue({ a: [Symbol("s")] }),
    (e) => isValueRefusal(e) && /at \.a\[0\]: a symbol cannot travel/.test((e as Error).message),
  );
  let deep: unknown = 1;
  for (let i = 0; i < 245; i++) deep = [deep];
  try {
    new EncodedValue(deep);
    throw new Error("expected a refusal");
  } catch (e) {
    ok(isValueRefusal(e), String(e));
    ok(/nests more than 240 levels deep/.test((e as Error).message), (e as Error).message);
  }
});

// Segments: the bytes of large typed arrays and byte strings leave a frame from encodeFrame, to be
// sent beside it, and are viewed where they arrive.

/** What a transport hands the receiver: a copy of the frame, and each segment in a buffer of its own. */
function arrive(frame: Uint8Array): Uint8Array {
  const arrived = frame.slice();
  const segments = segmentsOf(frame);
  if (segments !== undefined) attachSegments(arrived, segments.map((s) => s.slice()));
  return arrived;
}

test("encodeFrame leaves typed arrays and byte strings of 64 KiB or more out as segments, and decode views them where they arrive", () => {
  const big = new Float32Array(262144).map((_, i) => i);
  const shifted = new Float64Array(new ArrayBuffer(8 * 9000 + 8), 8, 9000).fill(-1.5); // not at its buffer's start
  const bytes = new Uint8Array(SEGMENT_MIN_BYTES + 3).map((_, i) => i & 0xff).subarray(3); // exactly the minimum
  const below = new Int16Array((SEGMENT_MIN_BYTES - 2) / 2).fill(7); // one element short of it: in the frame
  const many = Array.from({ length: 20 }, (_, k) => new Uint32Array(SEGMENT_MIN_BYTES / 4).fill(k));
  const value = {
    big,
    nested: [{ shifted }, bytes, new Map([["b", new BigInt64Array(8192).fill(-3n)]])],
    below,
    many,
    empty: [new Float32Array(0), new Uint8Array(0)],
    small: new Float32Array([1, 2]),
  };
  const frame = encodeFrame(value);
  const segments = segmentsOf(frame)!;
  strictEqual(segments.length, 4 + 20);
  strictEqual(segments[0].buffer, big.buffer, "the sender's own bytes, not a copy");
  strictEqual(segments[1].byteOffset, 8);
  ok(frame.byteLength < 2 * SEGMENT_MIN_BYTES, "only the small values are in the frame");
  strictEqual(frameBytes(frame), frame.byteLength + segments.reduce((n, s) => n + s.byteLength, 0));
  const back = decode(arrive(frame)) as typeof value;
  assertSameValue(back, value, "round trip");
  const { shifted: backShifted } = back.nested[0] as { shifted: Float64Array };
  for (const x of [back.big, backShifted, back.nested[1] as Uint8Array, ...back.many]) {
    strictEqual(x.byteOffset, 0, "viewed in place");
    strictEqual(x.buffer.byteLength, x.byteLength, "in the segment's own buffer");
  }
  // a segment that arrives misaligned for its array is copied, and the value is the same
  const arrived = frame.slice();
  attachSegments(
    arrived,
    segments.map((s) => new Uint8Array(s.byteLength + 1).fill(0).subarray(1).map((_, i) => s[i])),
  );
  const copied = decode(arrived) as typeof value;
  assertSameValue(copied, value, "misaligned");
  strictEqual(copied.big.byteOffset, 0, "a copy, aligned");
  // as one message carries it (HTTP, NATS, in memory): the bytes in the frame, as before segments
  const whole = inlineFrame(frame);
  strictEqual(segmentsOf(whole), undefined);
  ok(whole.byteLength > big.byteLength);
  assertSameValue(decode(whole.slice()), value, "inline");
  strictEqual(inlineFrame(encodeFrame({ small: 1 })).byteLength, encodeFrame({ small: 1 }).byteLength);
  // encode (a value's bytes kept, e.g. a put value) always writes them in
  strictEqual(segmentsOf(encode(value)), undefined);
  assertSameValue(decode(encode(value)), value, "encode");
});

/** A CBOR head: major type and argument, in the fewest bytes. */
function cborHead(major: number, n: number): number[] {
  const m = major << 5;
  if (n < 24) return [m | n];
  if (n < 0x100) return [m | 24, n];
  if (n < 0x10000) return [m | 25, n >> 8, n & 0xff];
  return [m | 26, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
}

test("a frame that names segments it did not come with, names one twice or out of range, or leaves one unnamed is a ProtocolError", () => {
  const seg = (i: number) => [...cborHead(6, TAG_SEGMENT), ...cborHead(0, i)];
  const f32 = (i: number) => [...cborHead(6, 85), ...seg(i)];
  const frame = (...items: number[][]) => new Uint8Array([...cborHead(4, items.length), ...items.flat()]);
  const segment = () => new Uint8Array(SEGMENT_MIN_BYTES);
  const withSegments = (f: Uint8Array, n: number) => {
    attachSegments(f, Array.from({ length: n }, segment));
    return f;
  };
  // the right way round: it decodes
  const good = decode(withSegments(frame(f32(0), seg(1)), 2)) as [Float32Array, Uint8Array];
  strictEqual(good[0].length, SEGMENT_MIN_BYTES / 4);
  strictEqual(good[1].byteLength, SEGMENT_MIN_BYTES);
  const cases: [string, Uint8Array, RegExp][] = [
    ["no segments came", frame(f32(0)), /came without segments/],
    ["out of range", withSegments(frame(f32(1)), 1), /segment index below 1/],
    ["named twice", withSegments(frame(f32(0), seg(0)), 1), /segment 0 twice/],
    ["one left unnamed", withSegments(frame(f32(0)), 2), /never names segment 1/],
    ["not an index", withSegments(new Uint8Array([...cborHead(6, TAG_SEGMENT), 0x61, 0x78]), 1), /segment index/],
    ["a negative index", withSegments(new Uint8Array([...cborHead(6, TAG_SEGMENT), 0x20]), 1), /segment index/],
  ];
  for (const [what, bytes, message] of cases) {
    throws(() => decode(bytes), (e) => e instanceof ProtocolError && message.test((e as Error).message), what);
  }
  // a segment of a partial element under a typed array's tag
  const odd = frame(f32(0));
  attachSegments(odd, [new Uint8Array(SEGMENT_MIN_BYTES + 1)]);
  throws(() => decode(odd), /not a whole number of 4-byte elements/);
  // user data never becomes a segment: a byte string holding the tag's bytes stays bytes
  const lookalike = new Uint8Array(seg(0));
  deepStrictEqual(decode(arrive(encodeFrame({ b: lookalike }))), { b: lookalike });
});

test("decode throws only ProtocolError on 5,000 mutated frames that came with segments", () => {
  let seed = 777;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const sent = encodeFrame({
    t: "call",
    args: [new Float32Array(SEGMENT_MIN_BYTES / 4), "x", new Uint8Array(SEGMENT_MIN_BYTES)],
  });
  const segments = segmentsOf(sent)!;
  let decoded = 0;
  for (let i = 0; i < 5000; i++) {
    const bytes = sent.slice();
    for (let k = 0; k < 2; k++) bytes[Math.floor(rand() * bytes.length)] = Math.floor(rand() * 256);
    const count = i % 7 === 0 ? Math.floor(rand() * 4) : 2;
    attachSegments(bytes, segments.slice(0, count).concat(count > 2 ? [new Uint8Array(5)] : []));
    if (decodesOrRefuses(bytes, i)) decoded++;
  }
  ok(decoded < 5000);
});

test('a value kept on a GPU (it answers Symbol.for("thinkagain.readback"), as a GpuArray does) is refused with advice to read it back', () => {
  class GpuArray {
    [Symbol.for("thinkagain.readback")]() {
      return Promise.resolve(new Float32Array(1));
    }
  }
  throws(
    () => encode({ x: new GpuArray() }),
    /a GpuArray lives on this process's GPU and cannot travel as it is: read it back first \(await array\.read\(\)\)/,
  );
});
