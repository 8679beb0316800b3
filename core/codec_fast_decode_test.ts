// The fast decode path against the full decoder: for every frame, the fast path gives the same value
// as cborg, or hands the frame over (NOT_FAST); it never accepts what the full decoder refuses.
import { deepStrictEqual, ok, strictEqual, throws } from "node:assert/strict";
import { describe, it } from "node:test";
import { decode, decodeFull, encode, encodeFrame, WireHandle } from "./codec.ts";
import { fastDecode, NOT_FAST, type TagTable } from "./codec_fast_decode.ts";
import { ProtocolError } from "./errors.ts";
import { VALUE_CORPUS } from "./_test_value_corpus.ts";

/** A small deterministic PRNG (mulberry32), so a failure names a seed that reproduces it. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomValue(next: () => number, depth: number): unknown {
  const pick = Math.floor(next() * (depth > 4 ? 9 : 13));
  switch (pick) {
    case 0:
      return Math.floor(next() * 2 ** (Math.floor(next() * 53))) * (next() < 0.3 ? -1 : 1);
    case 1:
      return (next() - 0.5) * 10 ** Math.floor(next() * 40 - 20);
    case 2:
      return ["", "a", "héllo", "日本語", "x".repeat(40), "emoji 🎉", "__proto__"][Math.floor(next() * 7)];
    case 3:
      return next() < 0.5;
    case 4:
      return next() < 0.5 ? null : undefined;
    case 5:
      return new Uint8Array(Math.floor(next() * 40)).map(() => Math.floor(next() * 256));
    case 6:
      return new Float32Array(Math.floor(next() * 8)).map(() => next());
    case 7:
      return BigInt(Math.floor(next() * 1e9)) * (next() < 0.5 ? -(2n ** 70n) : 1n);
    case 8:
      return [NaN, Infinity, -Infinity, -0, 0.5, 65504, 1e-7][Math.floor(next() * 7)];
    case 9: {
      const n = Math.floor(next() * 5);
      return Array.from({ length: n }, () => randomValue(next, depth + 1));
    }
    case 10: {
      const object: Record<string, unknown> = {};
      const n = Math.floor(next() * 5);
      for (let i = 0; i < n; i++) {
        const key = ["t", "id", "args", "v", "__proto__", "k" + i][Math.floor(next() * 6)];
        // an own "__proto__" key, as JSON.parse makes one (an assignment would set the prototype)
        const value = randomValue(next, depth + 1);
        Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
      }
      return object;
    }
    case 11:
      return new Map<unknown, unknown>([[1, randomValue(next, depth + 1)], ["s", randomValue(next, depth + 1)]]);
    default:
      return next() < 0.5 ? new Set([1, "a"]) : new Date(Math.floor(next() * 1e12));
  }
}

const TAGS_VIA_DECODE = (bytes: Uint8Array): unknown => decode(bytes);

/** Same outcome both ways: equal values, or the fast path hands over and the full decoder decides. */
function assertAgrees(frame: Uint8Array, what: string): void {
  let full: { value: unknown } | { error: unknown };
  try {
    full = { value: decodeFull(frame) };
  } catch (error) {
    full = { error };
  }
  let viaDecode: { value: unknown } | { error: unknown };
  try {
    viaDecode = { value: TAGS_VIA_DECODE(frame) };
  } catch (error) {
    viaDecode = { error };
  }
  if ("error" in full) {
    ok("error" in viaDecode, `${what}: the full decoder refuses it but decode accepted it`);
    ok(viaDecode.error instanceof ProtocolError, `${what}: decode threw a non-ProtocolError`);
    strictEqual((viaDecode.error as Error).message, (full.error as Error).message, what);
  } else {
    ok("value" in viaDecode, `${what}: decode refused what the full decoder accepts`);
    deepStrictEqual(viaDecode.value, full.value, what);
  }
}

describe("fast decode path", () => {
  it("decodes the value corpus the same as the full decoder", () => {
    let fast = 0;
    for (const entry of VALUE_CORPUS) {
      if (entry.refused) continue;
      const frame = encode(entry.value);
      assertAgrees(frame, entry.name);
      // the frame through encodeFrame (aligned typed arrays, padding tags) too
      assertAgrees(new Uint8Array(encodeFrame(entry.value)), `${entry.name} (encodeFrame)`);
      if (fastDecode(frame, {}, 256) !== NOT_FAST) fast++;
    }
    ok(fast > 10, `the fast path read only ${fast} corpus values without tags`);
  });

  it("agrees with the full decoder on 3,000 random values and on every one-byte corruption of 300", () => {
    const next = rng(0x7a11);
    for (let i = 0; i < 3000; i++) {
      const value = randomValue(next, 0);
      let frame: Uint8Array;
      try {
        frame = encode(value);
      } catch (e) {
        console.log(i, value);
        throw e;
      }
      assertAgrees(frame, `value ${i}`);
      if (i < 300) {
        for (let at = 0; at < frame.length; at++) {
          const bad = frame.slice();
          bad[at] = Math.floor(next() * 256);
          assertAgrees(bad, `value ${i} with byte ${at} changed to ${bad[at]}`);
          if (at > 0) assertAgrees(frame.subarray(0, at), `value ${i} cut at ${at}`);
        }
      }
    }
  });

  it("reads a protocol envelope without the full decoder", () => {
    const frame = encode({ t: "call", id: 42, method: "echo", args: [1, "two", { three: 3.5 }, null, undefined] });
    deepStrictEqual(fastDecode(frame, {}, 256), {
      t: "call",
      id: 42,
      method: "echo",
      args: [1, "two", { three: 3.5 }, null, undefined],
    });
  });

  it("hands over what it does not read: unknown tags, big integers, indefinite lengths, non-text keys, bad UTF-8, deep nesting, trailing bytes", () => {
    const cases: [string, number[]][] = [
      ["shared reference tag 28", [0xd8, 0x1c, 0x80]],
      ["integer 2^64-1", [0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]],
      ["negative integer past -2^53", [0x3b, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]],
      ["indefinite array", [0x9f, 0x01, 0xff]],
      ["map with an integer key", [0xa1, 0x01, 0x02]],
      ["invalid UTF-8 text", [0x62, 0xc3, 0x28]],
      ["trailing byte", [0x01, 0x02]],
      ["array claiming more items than bytes", [0x9a, 0xff, 0xff, 0xff, 0xff, 0x01]],
      ["simple value 16", [0xf0]],
    ];
    for (const [name, bytes] of cases) strictEqual(fastDecode(new Uint8Array(bytes), {}, 256), NOT_FAST, name);
    const deep = new Uint8Array(300).fill(0x81);
    strictEqual(fastDecode(new Uint8Array([...deep, 0x01]), {}, 256), NOT_FAST, "300 nested arrays");
    throws(() => decode(new Uint8Array([...deep, 0x01])), ProtocolError);
  });

  it("hands over a map that repeats a key (the full decoder refuses it), small, large or nested", () => {
    const text = (k: string) => [0x60 | k.length, ...new TextEncoder().encode(k)];
    // {"a": 1, "a": 2}
    strictEqual(fastDecode(new Uint8Array([0xa2, ...text("a"), 0x01, ...text("a"), 0x02]), {}, 256), NOT_FAST);
    // 30 keys, the last the same as the 20th
    const keys = Array.from({ length: 29 }, (_, i) => `k${i}`);
    const large = [0xb8, 30, ...[...keys, "k19"].flatMap((k, i) => [...text(k), i])];
    strictEqual(fastDecode(new Uint8Array(large), {}, 256), NOT_FAST, "30 keys");
    // {"x": {"b": 1, "b": 2}}
    const nested = [0xa1, ...text("x"), 0xa2, ...text("b"), 0x01, ...text("b"), 0x02];
    strictEqual(fastDecode(new Uint8Array(nested), {}, 256), NOT_FAST, "nested");
    throws(() => decode(new Uint8Array(nested)), ProtocolError);
    // the same keys in a map and the maps it holds are no repeat
    const frame = encode({
      a: { a: 1, b: { a: 2, b: 3 } },
      b: [{ a: 1 }, { a: 2 }],
      c: Object.fromEntries(keys.map((k) => [k, { k0: k }])),
    });
    deepStrictEqual(fastDecode(frame, {}, 256), decodeFull(frame));
  });

  it("keeps __proto__ an own property and leaves the prototype alone", () => {
    const frame = encode(JSON.parse('{"__proto__": {"polluted": true}, "a": 1}'));
    const value = fastDecode(frame, {}, 256) as Record<string, unknown>;
    strictEqual(Object.getPrototypeOf(value), Object.prototype);
    deepStrictEqual(Object.keys(value), ["__proto__", "a"]);
    strictEqual(({} as Record<string, unknown>).polluted, undefined);
  });

  it("gives typed arrays and handles through the tag table, byte strings as views into the frame", () => {
    const frame = new Uint8Array(encodeFrame({ v: new Float32Array([1, 2, 3]), b: new Uint8Array([9, 8]) }));
    const value = decode(frame) as { v: Float32Array; b: Uint8Array };
    deepStrictEqual(value.v, new Float32Array([1, 2, 3]));
    strictEqual(value.b.buffer, frame.buffer);
    const handle = new WireHandle("Counter", [{ node: "a", endpoint: "ws://127.0.0.1:1", id: "i-1" }]);
    const back = decode(encode({ h: handle })) as { h: WireHandle };
    ok(back.h instanceof WireHandle);
    deepStrictEqual(back.h, handle);
    // a table without the tag hands the frame over instead of guessing
    strictEqual(fastDecode(encode(new Date(5)), {} as TagTable, 256), NOT_FAST);
  });
});

describe("fastDecode's short-text cache", () => {
  // the cache's slot for a short ASCII string (as codec_fast_decode.ts computes it)
  const slot = (key: string) => {
    let h = key.length;
    for (let i = 0; i < key.length; i++) h = (Math.imul(h, 31) + key.charCodeAt(i)) | 0;
    return h & 1023;
  };
  it("gives each key and value its own bytes' text, also for strings that share a slot, frame after frame", () => {
    // two different keys of the same length in the same slot, found by search
    const bySlot = new Map<string, string>();
    let pair: [string, string] | undefined;
    for (let i = 0; pair === undefined && i < 100_000; i++) {
      const k = "k" + i.toString(36);
      const key = `${k.length}:${slot(k)}`;
      const other = bySlot.get(key);
      if (other !== undefined) pair = [other, k];
      else bySlot.set(key, k);
    }
    ok(pair !== undefined);
    const [a, b] = pair;
    for (let round = 0; round < 3; round++) {
      for (
        const value of [
          { [a]: 1, [b]: 2 },
          { [b]: 3 },
          { [a]: 4 },
          { t: "call", cid: "c" + round, args: [a, b] },
          { id: a, owner: b, [a]: b, [b]: a },
          ["Aa", "BB", "Aa", { Aa: "BB", BB: "Aa" }], // same length, same slot
        ]
      ) {
        deepStrictEqual(decode(encode(value)), value);
        deepStrictEqual(decode(encode(value)), decodeFull(encode(value)));
      }
    }
    // strings past the cache's length and non-ASCII ones read as before
    const long = {
      ["x".repeat(40)]: "x".repeat(40),
      "ключ": "значение",
      ["y".repeat(31)]: "y".repeat(31),
      ["z".repeat(32)]: "z".repeat(32),
      a: "",
    };
    deepStrictEqual(decode(encode(long)), long);
  });
});
