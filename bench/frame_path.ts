/**
 * What a sequential call's frames cost their codec and framing alone, without a socket: encoding
 * the reply envelope (`{ t: "result", ok: true, value }`) and the call envelope with `encodeFrame`
 * and giving each its WebSocket header with `framed` (as the node and the driver do per call), and
 * decoding the call frame (the same one, and frames each with a call id of its own); and a node's replies at many calls in flight: 64 encoded one after
 * another, then each queued on an `Outbox` and sent as one batch (ns a reply; a tree whose `Outbox`
 * has no `pushFrame` gives each its header with `framed` first, as before). ns per operation: the
 * minimum and the median of 25 batches of 50,000 (of 782 for the batch of 64 replies).
 *
 *   npx bun bench/frame_path.ts
 *   npx deno run -A bench/frame_path.ts
 *
 * `BENCH_OTHER=<path of another checkout>` measures that checkout's codec and framing too, in the
 * same process, batch for batch in turn with this one's (an A/B that a loaded machine disturbs
 * less than separate runs); under Deno add `--config deno.json` when the other tree is outside
 * this one.
 *
 * @module
 */
import process from "node:process";
import * as codec from "../core/codec.ts";
import * as framing from "../transports/ws_framing.ts";

const BATCH = 50_000;
const BATCHES = 25;
const reply = { t: "result", ok: true, value: "What is ML?" };
const call = {
  id: "35e98119cea2e16e30eb016f",
  method: "echo",
  args: ["What is ML?"],
  keepAbove: 2 ** 40,
  t: "call",
  cid: "e9b3049a-1",
};
let sink = 0;

type Codec = Pick<typeof codec, "decode" | "encode" | "encodeFrame">;
type Framing = Pick<typeof framing, "framed" | "KIND_REPLY" | "KIND_REQUEST" | "Outbox">;
/** Distinct call frames the decode of new call ids cycles through. */
const CALL_IDS = 1024;
/** Replies made before a batch of them is sent (a node at many calls in flight). */
const REPLIES = 64;

/** The cases: name, one operation, and how many of the thing measured it does (default 1). */
function cases(c: Codec, f: Framing): [string, () => void, number?][] {
  const callFrame = c.encode(call);
  // (as a driver numbers its calls: every frame's call id is new to the decoder's cache of strings)
  const callFrames = Array.from({ length: CALL_IDS }, (_, i) => c.encode({ ...call, cid: `e9b3049a-${1000 + i}` }));
  let next = 0;
  const box = new f.Outbox((m) => void (sink += m.byteLength));
  const replies: Uint8Array[] = new Array(REPLIES);
  const batched = "pushFrame" in box
    ? (i: number) => box.pushFrame(f.KIND_REPLY, i, replies[i])
    : (i: number) => (box as { push(m: Uint8Array): void }).push(f.framed(f.KIND_REPLY, i, replies[i]));
  return [
    [
      "encodeFrame + framed, the reply",
      () => void (sink += f.framed(f.KIND_REPLY, 7, c.encodeFrame(reply)).byteLength),
    ],
    [
      "encodeFrame + framed, the call",
      () => void (sink += f.framed(f.KIND_REQUEST, 7, c.encodeFrame(call)).byteLength),
    ],
    ["decode, the call frame", () => void (sink += c.decode(callFrame) === undefined ? 0 : 1)],
    [
      "decode, call frames each with a call id of its own",
      () => void (sink += c.decode(callFrames[next++ & (CALL_IDS - 1)]) === undefined ? 0 : 1),
    ],
    [
      `${REPLIES} replies encoded, then batched by an Outbox (ns a reply)`,
      () => {
        for (let i = 0; i < REPLIES; i++) replies[i] = c.encodeFrame(reply);
        for (let i = 0; i < REPLIES; i++) batched(i);
        box.flush();
      },
      REPLIES,
    ],
  ];
}

function time(f: () => void, per = 1): number {
  const n = Math.ceil(BATCH / per);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) f();
  return (performance.now() - t0) * 1e6 / (n * per);
}

const trees: [string, [string, () => void, number?][]][] = [["this tree", cases(codec, framing)]];
const other = process.env.BENCH_OTHER;
if (other) {
  const c = await import(`${other}/core/codec.ts`) as Codec;
  const f = await import(`${other}/transports/ws_framing.ts`) as Framing;
  trees.unshift([other, cases(c, f)]);
}
console.log(`| operation | ${trees.map(([t]) => `${t}: ns, min | median`).join(" | ")} |`);
console.log(`|---|${trees.map(() => "---:|---:").join("|")}|`);
for (let k = 0; k < trees[0][1].length; k++) {
  const ns: number[][] = trees.map(() => []);
  for (let b = 0; b < BATCHES; b++) {
    for (let t = 0; t < trees.length; t++) ns[t].push(time(trees[t][1][k][1], trees[t][1][k][2]));
  }
  const cells = ns.map((s) => {
    s.sort((a, b) => a - b);
    return `${s[0].toFixed(0)} | ${s[BATCHES >> 1].toFixed(0)}`;
  });
  console.log(`| ${trees[0][1][k][0]} | ${cells.join(" | ")} |`);
}
if (sink === 0) throw new Error("nothing measured");
