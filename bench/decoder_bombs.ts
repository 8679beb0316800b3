/**
 * Decoder bombs: frames built to cost a decoder far more than their size (huge bigints, shared
 * references, cbor-x records, tag 27 objects, deep nesting, indefinite lengths), and the largest
 * values decode does accept (many 64-byte bigints, nesting at the bound). Each is decoded N times
 * beside two plain frames of the same size, calls whose argument is a string (the cheapest bytes to
 * decode) or an array of small integers (the most items per byte), and the table gives the time per
 * frame and its ratios to theirs: a bomb must cost about what a plain frame of its size costs, never
 * a multiple that grows with the frame.
 *
 *   npx bun bench/decoder_bombs.ts
 *   npx deno run -A bench/decoder_bombs.ts
 *
 * Each cell is the median of RUNS runs (env BENCH_RUNS, default 7). Timing claims live here, never
 * in tests (core/codec_test.ts checks that each bomb is refused, and why).
 *
 * @module
 */
import process from "node:process";
import { decode, encode } from "../core/codec.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 7);

/** The head of a CBOR item: major type 0–7 and its argument, in the fewest bytes. */
function head(major: number, n: number): number[] {
  const m = major << 5;
  if (n < 24) return [m | n];
  if (n < 0x100) return [m | 24, n];
  if (n < 0x10000) return [m | 25, n >> 8, n & 0xff];
  return [m | 26, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
}

function text(s: string): number[] {
  const bytes = new TextEncoder().encode(s);
  return [...head(3, bytes.length), ...bytes];
}

/** A call envelope around `value` (raw CBOR), as a node receives it. */
function call(value: number[]): Uint8Array {
  return new Uint8Array([
    ...head(5, 4),
    ...text("t"),
    ...text("call"),
    ...text("cid"),
    ...text("c1"),
    ...text("op"),
    ...text("f"),
    ...text("args"),
    ...head(4, 1),
    ...value,
  ]);
}

/** A plain call of `size` bytes: its argument a string. */
function plainOfSize(size: number): Uint8Array {
  let n = size;
  for (;;) {
    const frame = encode({ t: "call", cid: "c1", op: "f", args: ["x".repeat(n)] });
    if (frame.byteLength <= size) return frame;
    n -= frame.byteLength - size;
  }
}

/** A plain call of `size` bytes: its argument an array of small integers (one byte each). */
function itemsOfSize(size: number): Uint8Array {
  let n = size;
  for (;;) {
    const frame = encode({ t: "call", cid: "c1", op: "f", args: [new Array(Math.max(0, n)).fill(0)] });
    if (frame.byteLength <= size) return frame;
    n -= frame.byteLength - size;
  }
}

function bigintBomb(bytes: number): number[] {
  return [...head(6, 2), ...head(2, bytes), ...new Array(bytes).fill(0xff)];
}

function billionLaughs(): number[] {
  const out = [...head(4, 10), ...head(6, 28), ...head(4, 10)];
  for (let i = 0; i < 10; i++) out.push(...text("lol"));
  for (let level = 1; level < 10; level++) {
    out.push(...head(6, 28), ...head(4, 10));
    for (let i = 0; i < 10; i++) out.push(...head(6, 29), ...head(0, level - 1));
  }
  return out;
}

function records(count: number): number[] {
  // cbor-x record definitions (tag 0xdffe … ) and uses, each with a fresh id
  const out = [...head(4, count)];
  for (let i = 0; i < count; i++) {
    out.push(...head(6, 57343), ...head(4, 3), ...head(0, i), ...head(4, 1), ...text("a"));
  }
  return out;
}

function nested(depth: number, open: number[], leaf: number[] = [0x00]): number[] {
  return [...new Array(depth).fill(open).flat(), ...leaf];
}

function manyBigints(count: number): number[] {
  const out = [...head(4, count)];
  for (let i = 0; i < count; i++) out.push(...bigintBomb(64));
  return out;
}

const bombs: [name: string, frame: Uint8Array, accepted: boolean][] = [
  ["bigint of 128 KiB (tag 2)", call(bigintBomb(128 * 1024)), false],
  ["bigint of 512 KiB (tag 3)", call([0xc3, ...bigintBomb(512 * 1024).slice(1)]), false],
  ["2,000 bigints of 64 bytes (accepted)", call(manyBigints(2000)), true],
  ["billion laughs (tags 28/29)", call(billionLaughs()), false],
  ["10,000 cbor-x records (tag 57343)", call(records(10_000)), false],
  ["tag 27 RegExp (a+)+$", call([...head(6, 27), ...head(4, 2), ...text("RegExp"), ...text("(a+)+$")]), false],
  ["arrays 100,000 deep", call(nested(100_000, [0x81])), false],
  ["maps 100,000 deep", call(nested(100_000, [0xa1, 0x60])), false],
  ["padding tags 100,000 deep (tag 55799)", call(nested(100_000, [0xd9, 0xd9, 0xf7])), false],
  ["arrays 253 deep (accepted: the bound, in a call)", call(nested(253, [0x81])), true],
  ["indefinite-length arrays 100,000 deep", call(nested(100_000, [0x9f])), false],
];

const gc = (globalThis as { gc?: () => void }).gc;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function format(us: number): string {
  return us >= 100 ? us.toFixed(0) : us >= 10 ? us.toFixed(1) : us.toFixed(2);
}

/** µs per decode of `frame`, `n` times; checks the outcome is as expected. */
function time(frame: Uint8Array, n: number, accepted: boolean): number {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    let ok = true;
    try {
      decode(frame);
    } catch {
      ok = false;
    }
    if (ok !== accepted) throw new Error(`a frame was ${ok ? "accepted" : "refused"}, expected the opposite`);
  }
  return ((performance.now() - t0) * 1000) / n;
}

const runtime = "Bun" in globalThis
  ? `Bun ${(globalThis as unknown as { Bun: { version: string } }).Bun.version}`
  : "Deno" in globalThis
  ? `Deno ${(globalThis as unknown as { Deno: { version: { deno: string } } }).Deno.version.deno}`
  : `Node ${process.version}`;
console.log(
  `# Decoder bombs (${runtime}): µs per decode, median of ${RUNS} runs, beside plain calls of the same size\n`,
);
console.log("| frame | bytes | outcome | bomb µs | string µs | ratio | items µs | ratio |");
console.log("|---|---:|---|---:|---:|---:|---:|---:|");
for (const [name, frame, accepted] of bombs) {
  const plain = plainOfSize(frame.byteLength);
  const items = itemsOfSize(frame.byteLength);
  // about 20 MB decoded per run, at least 20 decodes
  const n = Math.max(20, Math.floor(20e6 / frame.byteLength));
  time(frame, Math.ceil(n / 10), accepted);
  time(plain, Math.ceil(n / 10), true);
  time(items, Math.ceil(n / 10), true);
  const bomb: number[] = [];
  const strings: number[] = [];
  const arrays: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    gc?.();
    bomb.push(time(frame, n, accepted));
    gc?.();
    strings.push(time(plain, n, true));
    gc?.();
    arrays.push(time(items, n, true));
  }
  const [b, p, a] = [median(bomb), median(strings), median(arrays)];
  const outcome = accepted ? "accepted" : "refused";
  console.log(
    `| ${name} | ${frame.byteLength} | ${outcome} | ${format(b)} | ${format(p)} | ${(b / p).toFixed(2)} | ${
      format(a)
    } | ${(b / a).toFixed(2)} |`,
  );
}
