/**
 * Codec benchmark: encode + decode round trips of a small call envelope and of a 1 MiB
 * Float32Array, through `encode` and through `encodeFrame` (what the transports send).
 *
 *   npx bun bench/codec.ts [OTHER_CODEC_TS]
 *   npx deno run -A bench/codec.ts [OTHER_CODEC_TS]
 *
 * With the path of another `core/codec.ts` (e.g. in a git worktree of an older commit), both are
 * measured in the same run, interleaved, so the two columns share the machine's state. Each cell is
 * the median of RUNS runs (env BENCH_RUNS, default 7) with the slowest and fastest run beside it.
 * Timing claims live here, never in tests.
 *
 * @module
 */
import process from "node:process";
import { pathToFileURL } from "node:url";
import * as current from "../core/codec.ts";

interface Codec {
  encode(value: unknown): Uint8Array;
  encodeFrame(value: unknown): Uint8Array;
  decode(bytes: Uint8Array): unknown;
}

const RUNS = Number(process.env.BENCH_RUNS ?? 7);
const otherPath = process.argv[2];
const codecs: [string, Codec][] = [["this codec", current]];
if (otherPath) codecs.push([otherPath, await import(pathToFileURL(otherPath).href) as Codec]);

const envelope = { t: "call", id: 12, m: "generate", a: ["hello", 3] };
const big = { t: "result", cid: "c1", value: new Float32Array(262_144).map((_, i) => i * 0.5) }; // 1 MiB

interface Case {
  name: string;
  iterations: number;
  run(codec: Codec, n: number): void;
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`round trip lost ${what}`);
}

const cases: Case[] = [
  {
    name: "small envelope, encode + decode",
    iterations: 200_000,
    run(codec, n) {
      for (let i = 0; i < n; i++) codec.decode(codec.encode(envelope));
      check((codec.decode(codec.encode(envelope)) as typeof envelope).m === "generate", "the envelope");
    },
  },
  {
    name: "small envelope, encodeFrame + decode",
    iterations: 200_000,
    run(codec, n) {
      for (let i = 0; i < n; i++) codec.decode(codec.encodeFrame(envelope));
    },
  },
  {
    name: "1 MiB Float32Array, encode + decode",
    iterations: 200,
    run(codec, n) {
      for (let i = 0; i < n; i++) {
        const back = codec.decode(codec.encode(big)) as typeof big;
        check(back.value.length === 262_144, "the array");
      }
    },
  },
  {
    name: "1 MiB Float32Array, encodeFrame + decode",
    iterations: 200,
    run(codec, n) {
      for (let i = 0; i < n; i++) {
        const back = codec.decode(codec.encodeFrame(big)) as typeof big;
        check(back.value[3] === 1.5, "the array");
      }
    },
  },
];

const gc = (globalThis as { gc?: () => void }).gc;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function format(us: number): string {
  return us >= 100 ? us.toFixed(0) : us >= 10 ? us.toFixed(1) : us.toFixed(2);
}

const runtime = "Bun" in globalThis
  ? `Bun ${(globalThis as unknown as { Bun: { version: string } }).Bun.version}`
  : "Deno" in globalThis
  ? `Deno ${(globalThis as unknown as { Deno: { version: { deno: string } } }).Deno.version.deno}`
  : `Node ${process.version}`;
console.log(`# Codec round trips (${runtime}), µs per round trip: median of ${RUNS} runs [fastest–slowest]\n`);
console.log(`| case | ${codecs.map(([name]) => name).join(" | ")} |`);
console.log(`|---|${codecs.map(() => "---:").join("|")}|`);
for (const c of cases) {
  const samples = codecs.map((): number[] => []);
  for (const [, codec] of codecs) c.run(codec, Math.ceil(c.iterations / 10)); // warm up
  for (let r = 0; r < RUNS; r++) {
    codecs.forEach(([, codec], k) => {
      gc?.();
      const t0 = performance.now();
      c.run(codec, c.iterations);
      samples[k].push(((performance.now() - t0) * 1000) / c.iterations);
    });
  }
  const cells = samples.map((s) => `${format(median(s))} [${format(Math.min(...s))}–${format(Math.max(...s))}]`);
  console.log(`| ${c.name} | ${cells.join(" | ")} |`);
}
