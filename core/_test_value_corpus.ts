// Private test helpers: the corpus of values the codec either carries exactly or refuses (codec_test.ts
// runs it through encode/decode, transports/values_test.ts through real nodes), and the check that a
// value came back exactly.
import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";

/** One value of the corpus: it survives a round trip exactly, or encode refuses it (`refused`). */
export interface CorpusEntry {
  readonly name: string;
  readonly value: unknown;
  /** Matches the reason encode gives; absent for a value that survives. */
  readonly refused?: RegExp;
  /** Where in the value the refused part is (findRefusal's path); "" for the value itself. */
  readonly path?: string;
}

const Float16 = (globalThis as { Float16Array?: new (values: number[]) => ArrayBufferView }).Float16Array;

class Point {
  constructor(readonly x = 1, readonly y = 2) {}
}
class HttpError extends Error {
  status = 404;
}
class Bytes extends Uint8Array {}
class Vector extends Float32Array {}
class Registry extends Map<string, number> {}
class Tags extends Set<string> {}
class Stamp extends Date {}
class List extends Array<number> {}

function nested(depth: number): unknown {
  let v: unknown = "leaf";
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}

function cycle(): unknown {
  const node: Record<string, unknown> = { name: "a", children: [] };
  (node.children as unknown[]).push({ parent: node });
  return node;
}

const survives: [string, unknown][] = [
  ["0", 0],
  ["-0", -0],
  ["1", 1],
  ["-1", -1],
  ["23 (the largest one-byte integer)", 23],
  ["24", 24],
  ["65536", 65_536],
  ["2^32", 2 ** 32],
  ["2^53 - 1", Number.MAX_SAFE_INTEGER],
  ["-(2^53 - 1)", Number.MIN_SAFE_INTEGER],
  ["2^53 (a float)", 2 ** 53],
  ["0.1", 0.1],
  ["-1.5e300", -1.5e300],
  ["5e-324 (the smallest subnormal)", 5e-324],
  ["Number.MAX_VALUE", Number.MAX_VALUE],
  ["NaN", NaN],
  ["Infinity", Infinity],
  ["-Infinity", -Infinity],
  ["true", true],
  ["false", false],
  ["null", null],
  ["undefined", undefined],
  ["an empty string", ""],
  ["ASCII text", "hello, mesh"],
  ["text in many scripts", "é ✓ 中文 😀"],
  ["a string of 100,000 characters", "x".repeat(100_000)],
  ["NUL and U+FFFF", "\u0000\uffff"],
  ["a surrogate pair", "\ud83d\ude00"],
  ["0n", 0n],
  ["-1n", -1n],
  ["2n ** 64n", 2n ** 64n],
  ["-(2n ** 64n)", -(2n ** 64n)],
  ["2n ** 512n - 1n (the largest bigint that travels)", 2n ** 512n - 1n],
  ["-(2n ** 512n) (the smallest)", -(2n ** 512n)],
  ["an empty array", []],
  ["a mixed array", [1, "two", null, true]],
  ["an array holding undefined (not a hole)", [undefined, 1]],
  ["an empty object", {}],
  ["nested objects and arrays", { a: 1, b: { c: [2, { d: "e" }] } }],
  ["an own __proto__ key (from JSON.parse)", JSON.parse('{"__proto__": {"x": 1}, "y": 2}')],
  ["an own __proto__ key holding a number", JSON.parse('{"__proto__": 1}')],
  ["keys named like Object.prototype's", { constructor: "c", toString: 1, hasOwnProperty: 2 }],
  ["odd keys: empty, spaced, numeric", { "": 1, "a b": 2, "10": 3, "-1": 4 }],
  ["keys in insertion order", { b: 1, a: 2, c: 3 }],
  ["an object with a getter (arrives as its value)", {
    get g() {
      return 7;
    },
  }],
  [
    "an object with a non-enumerable property (never part of its value)",
    Object.defineProperty({ a: 1 }, "h", { value: 2 }),
  ],
  ["Uint8Array", new Uint8Array([0, 1, 255])],
  ["Uint8ClampedArray", new Uint8ClampedArray([0, 128, 255])],
  ["Int8Array", new Int8Array([-128, 0, 127])],
  ["Uint16Array", new Uint16Array([0, 65535])],
  ["Int16Array", new Int16Array([-32768, 32767])],
  ["Uint32Array of odd length", new Uint32Array([1, 2 ** 32 - 1, 3])],
  ["Int32Array", new Int32Array([-(2 ** 31), 2 ** 31 - 1])],
  ["BigUint64Array", new BigUint64Array([0n, 2n ** 64n - 1n])],
  ["BigInt64Array", new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n])],
  ["Float32Array with -0 and NaN", new Float32Array([-0, NaN, 1.5])],
  ["Float64Array", new Float64Array([Math.PI, -0, Infinity])],
  ["an empty Float32Array", new Float32Array(0)],
  ["a Float64Array view at an odd offset", new Float64Array(new ArrayBuffer(80), 8, 3).fill(2.5)],
  ["a large Float32Array (aligned in frames)", new Float32Array(5000).map((_, i) => i / 3)],
  ["a Map", new Map<unknown, unknown>([["a", 1], [2, { b: [3] }]])],
  ["a Map with object keys", new Map<unknown, unknown>([[{ k: 1 }, "v"], [[1, 2], -0]])],
  ["an empty Map", new Map()],
  ["a Set", new Set([1, "a", { b: 2 }])],
  ["an empty Set", new Set()],
  ["the epoch", new Date(0)],
  ["a date before the epoch", new Date(-1)],
  ["the latest date", new Date(8.64e15)],
  ["the earliest date", new Date(-8.64e15)],
  ["a date in year 142,000 (ms / 1000 does not round trip by multiplication)", new Date(4433022537231445)],
  ["an invalid date", new Date(NaN)],
  ["arrays 200 deep", nested(200)],
  ["everything together", {
    id: 7,
    tags: new Set(["x"]),
    at: new Date(1),
    embedding: new Float32Array([0.5]),
    meta: new Map([["n", 1n]]),
    rows: [[1, -0], [{ z: null }]],
  }],
];
if (Float16 !== undefined) survives.push(["Float16Array", new Float16([1.5, -2, 65504])]);

const refused: [string, unknown, RegExp, string?][] = [
  ["a lone high surrogate", "a\ud800b", /lone surrogate \(\\uD800 at index 1\)/],
  ["a lone low surrogate", "\udc00", /lone surrogate \(\\uDC00 at index 0\)/],
  ["a lone surrogate in a key", { ["k\ud800"]: 1 }, /its key: a string with a lone surrogate/, '["k\\ud800"]'],
  ["a lone surrogate in a Map key", new Map([["\udfff", 1]]), /lone surrogate/, ".keys()[0]"],
  ["a DataView", new DataView(new ArrayBuffer(4)), /a DataView would arrive as a Uint8Array/],
  ["an ArrayBuffer", new ArrayBuffer(4), /an ArrayBuffer would arrive as a Uint8Array/],
  ["a SharedArrayBuffer", new SharedArrayBuffer(4), /SharedArrayBuffer would arrive as a Uint8Array/],
  ["an Error", new Error("x"), /an Error \(Error\) cannot travel as a value/],
  ["a TypeError", new TypeError("x"), /an Error \(TypeError\) cannot travel as a value/],
  ["an Error subclass", new HttpError("x"), /an Error \(HttpError\) cannot travel/],
  ["a class instance", new Point(), /an instance of Point would arrive as a plain object without its class/],
  ["a class instance inside an array", [1, { p: new Point() }], /an instance of Point/, "[1].p"],
  ["a boxed String", new String("s"), /a boxed String/],
  ["a boxed Number", new Number(1), /a boxed Number/],
  ["a boxed Boolean", new Boolean(false), /a boxed Boolean/],
  ["a boxed BigInt", Object(1n), /a boxed BigInt/],
  ["a boxed Symbol", Object(Symbol("s")), /a boxed Symbol/],
  ["a sparse array", [1, , 3], /a hole in a sparse array/, "[1]"],
  ["new Array(3) (all holes)", new Array(3), /a hole in a sparse array/, "[0]"],
  ["a symbol key", { a: 1, [Symbol("k")]: 2 }, /a symbol key \(Symbol\(k\)\)/],
  ["a symbol", Symbol("s"), /a symbol cannot travel/],
  ["a symbol in a Set", new Set([1, Symbol("s")]), /a symbol cannot travel/, ".values()[1]"],
  ["a symbol as a Map value", new Map([["k", Symbol("s")]]), /a symbol cannot travel/, '.get("k")'],
  ["a function", function score() {}, /a function \(score\) cannot travel: code never does/],
  ["an arrow function in an object", { f: () => 1 }, /a function \(f\) cannot travel/, ".f"],
  ["a class", Point, /a function \(Point\) cannot travel/],
  ["an object with a null prototype", Object.assign(Object.create(null), { a: 1 }), /a null prototype/],
  ["a Map subclass", new Registry(), /an instance of Registry \(a Map subclass\)/],
  ["a Set subclass", new Tags(), /an instance of Tags \(a Set subclass\)/],
  ["a Date subclass", new Stamp(0), /an instance of Stamp \(a Date subclass\)/],
  ["an Array subclass", List.from([1, 2]), /an instance of List \(an Array subclass\)/],
  ["a Float32Array subclass", new Vector(2), /an instance of Vector \(a Float32Array subclass\)/],
  ["a Uint8Array subclass (as Buffer is)", new Bytes(2), /an instance of Bytes \(a Uint8Array subclass\)/],
  ["a Promise", Promise.resolve(1), /a Promise cannot travel: await it first/],
  ["a thenable", { then() {} }, /a function \(then\) cannot travel/, ".then"],
  ["a RegExp", /a+/g, /a RegExp cannot travel/],
  ["a WeakMap", new WeakMap(), /a WeakMap cannot travel/],
  ["a URL", new URL("http://example.com"), /an instance of URL would arrive as a plain object/],
  ["a cycle", cycle(), /it holds a cycle: it is (the value itself|argument \d+|\S+) again/, ".children[0].parent"],
  ["a bigint longer than 64 bytes", 2n ** 512n, /a bigint needs at most 64 bytes, found one of 65/],
  ["arrays 300 deep", nested(300), /nested more than 256 levels deep/, "[0]".repeat(256)],
];

/** The values (88 and more) that either travel exactly or are refused, with where and why. */
export const VALUE_CORPUS: readonly CorpusEntry[] = [
  ...survives.map(([name, value]) => ({ name, value })),
  ...refused.map(([name, value, reason, path]) => ({ name, value, refused: reason, path: path ?? "" })),
];

/**
 * A value that is part of no corpus entry because it is documented as not travelling in full: an
 * array travels as its elements, and properties set on the array object itself are not looked at
 * (checking every array for them costs more than encoding it).
 */
export const ARRAY_WITH_PROPERTIES: unknown[] = Object.assign([1, 2], { extra: "not sent" });

/**
 * Asserts that `actual` is `expected` exactly: deepStrictEqual, and at every level the same
 * prototype, the same typed-array class and bytes, and Object.is for numbers (-0 is not 0).
 */
export function assertSameValue(actual: unknown, expected: unknown, name: string): void {
  deepStrictEqual(actual, expected, name);
  const seen = new Set<unknown>();
  const walk = (a: unknown, e: unknown, at: string): void => {
    if (typeof e === "number") return ok(Object.is(a, e), `${name}: ${at} is ${String(a)}, sent ${String(e)}`);
    if (typeof e !== "object" || e === null || seen.has(e)) return strictEqual(typeof a, typeof e, `${name}: ${at}`);
    seen.add(e);
    strictEqual(Object.getPrototypeOf(a), Object.getPrototypeOf(e), `${name}: the prototype of ${at}`);
    if (ArrayBuffer.isView(e)) {
      const v = a as ArrayBufferView;
      deepStrictEqual(
        new Uint8Array(v.buffer, v.byteOffset, v.byteLength),
        new Uint8Array(e.buffer, e.byteOffset, e.byteLength),
        `${name}: the bytes of ${at}`,
      );
      return;
    }
    if (e instanceof Map) {
      const entries = [...(a as Map<unknown, unknown>)];
      [...e].forEach(([k, v], i) => {
        walk(entries[i][0], k, `${at}.keys()[${i}]`);
        walk(entries[i][1], v, `${at}.values()[${i}]`);
      });
      return;
    }
    if (e instanceof Set) {
      const items = [...(a as Set<unknown>)];
      [...e].forEach((v, i) => walk(items[i], v, `${at}.values()[${i}]`));
      return;
    }
    if (e instanceof Date) return ok(Object.is((a as Date).getTime(), e.getTime()), `${name}: ${at}`);
    deepStrictEqual(Object.keys(a as object), Object.keys(e), `${name}: the keys of ${at} and their order`);
    for (const key of Object.keys(e)) {
      walk((a as Record<string, unknown>)[key], (e as Record<string, unknown>)[key], `${at}[${JSON.stringify(key)}]`);
    }
  };
  walk(actual, expected, "the value");
}
