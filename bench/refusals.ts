/**
 * What a node spends on a call it refuses (issue 13's backpressure, issue 11's bursts): a node's
 * frame handler, in one process, fed bursts of call frames made beforehand, each burst answered
 * before the next; µs per call for calls it serves (an echo, the baseline, in the same run), calls
 * a full mailbox refuses (`maxQueued`) and calls an op's full waiting list refuses (`maxWaiting`).
 * A node sheds load only if refusing a call costs it less than serving one.
 *
 *   npx bun bench/refusals.ts
 *   npx deno run -A bench/refusals.ts
 *
 * Medians of `BENCH_ROUNDS` rounds (default 9) of `BENCH_BURST` calls (default 2,000) per kind,
 * the kinds interleaved, with the spread. Timing claims live here, never in tests.
 *
 * @module
 */
import process from "node:process";
import * as ta from "../mod.ts";
import { decode } from "../core/codec.ts";
import { NodeServer } from "../server.ts";
import { encodeMessage } from "../transports/protocol.ts";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 9);
const BURST = Number(process.env.BENCH_BURST ?? 2000);

let release!: () => void;
const held = new Promise<void>((r) => (release = r));

const RefusedEcho = ta.service(
  { name: "RefusedEcho", maxQueued: 1, maxConcurrency: 1 },
  class RefusedEcho {
    async hold(): Promise<void> {
      await held;
    }
    echo<T>(x: T): T {
      return x;
    }
  },
);
const ServedEcho = ta.service(
  { name: "ServedEcho", maxConcurrency: 1024 },
  class ServedEcho {
    echo<T>(x: T): T {
      return x;
    }
  },
);
const refusedOp = ta.op({ name: "refusedOp", remote: true, maxConcurrency: 1, maxWaiting: 1 }, async () => {
  await held;
});
void refusedOp;
const heldOp = ta.op({ name: "heldOp", remote: true }, async () => {
  await held;
});
void heldOp;

const node = new NodeServer({ name: "refusals" });
/** A WebSocket connection's peer, as a transport hands it to the node's handler. */
const peerOf = (connectionId: number) =>
  ({ transport: "websocket", connectionId, oneWay: false, signal: new AbortController().signal }) as const;
const peer = peerOf(1);
// a node at its own bounds: one call in flight on it (maxInFlight), one on the connection
// (maxCallsPerConnection: another peer of its own, so that each bound is the one reached)
const bounded = new NodeServer({ name: "refusals-bounded", maxInFlight: 2, maxCallsPerConnection: 1 });
const peer2 = peerOf(2);
const turn = () => new Promise((r) => setTimeout(r, 0));

async function create(service: string): Promise<string> {
  const created = await node.handler(
    encodeMessage({ t: "create", service, args: [], gpus: [], replica: 0, owner: "bench" }),
    peer,
  );
  return (decode(created!) as { id: string }).id;
}

let cid = 0;
const full = await create(RefusedEcho.serviceName);
const served = await create(ServedEcho.serviceName);
// the full ones: one call runs and one waits, for good
const fills = [
  { t: "call", id: full, method: "hold", args: [] },
  { t: "call", id: full, method: "hold", args: [] },
  { t: "call", op: "refusedOp", args: [] },
  { t: "call", op: "refusedOp", args: [] },
];
for (const frame of fills) {
  node.handler(encodeMessage({ ...frame, cid: `fill-${cid++}` }), peer);
  await turn();
}
// the bounded node's: one call in flight from each peer (two in all, its maxInFlight)
bounded.handler(encodeMessage({ t: "call", op: "heldOp", args: [], cid: `fill-${cid++}` }), peer);
bounded.handler(encodeMessage({ t: "call", op: "heldOp", args: [], cid: `fill-${cid++}` }), peer2);
await turn();
const boundedPeer = peerOf(3);

const kinds: Record<string, () => Record<string, unknown>> = {
  "served (echo)": () => ({ t: "call", id: served, method: "echo", args: ["What is ML?"] }),
  "refused: instance's mailbox full": () => ({ t: "call", id: full, method: "echo", args: ["What is ML?"] }),
  "refused: op's waiting list full": () => ({ t: "call", op: "refusedOp", args: ["What is ML?"] }),
  "refused: node's maxCallsPerConnection": () => ({ t: "call", op: "heldOp", args: ["What is ML?"] }),
  "refused: node's maxInFlight": () => ({ t: "call", op: "heldOp", args: ["What is ML?"] }),
};
/** Where each kind's burst goes: the bounded node's, from the peer at its bound or a fresh one. */
const target: Record<string, [NodeServer, typeof peer]> = {
  "refused: node's maxCallsPerConnection": [bounded, peer],
  "refused: node's maxInFlight": [bounded, boundedPeer],
};

/** A reply, or what its handler rejected with (a frame a transport would send as an error). */
function settled<T>(r: T | Promise<T>): T | Promise<T | unknown> {
  return r instanceof Promise ? r.catch((e: unknown) => e) : r;
}

/** µs per call of one burst of `kind` (its frames made beforehand, untimed); checks every reply. */
async function burst(kind: string): Promise<number> {
  const frames = Array.from({ length: BURST }, () => encodeMessage({ ...kinds[kind](), cid: `b-${cid++}` }));
  const t0 = performance.now();
  const [server, from] = target[kind] ?? [node, peer];
  const replies = await Promise.all(frames.map((f) => settled(server.handler(f, from))));
  const us = (performance.now() - t0) * 1000 / BURST;
  const ok = kind.startsWith("served");
  for (const r of replies) {
    // a refusal is a reply saying so, or (the node's own bounds, until now) the error the transport sends
    const refusal = r instanceof ta.OverloadedError ||
      (r instanceof Uint8Array && (decode(r) as { ok: boolean }).ok === false);
    if (ok === refusal) throw new Error(`${kind}: ${r instanceof Error ? r.message : "a reply"} where ok ${ok}`);
  }
  return us;
}

const results: Record<string, number[]> = {};
for (let r = -2; r < ROUNDS; r++) {
  for (const kind of Object.keys(kinds)) {
    const us = await burst(kind);
    if (r >= 0) (results[kind] ??= []).push(us); // (two rounds to warm up)
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const rt = (globalThis as { Bun?: { version: string } }).Bun
  ? `Bun ${(globalThis as unknown as { Bun: { version: string } }).Bun.version}`
  : `Deno ${(globalThis as unknown as { Deno: { version: { deno: string } } }).Deno.version.deno}`;
console.log(`bench/refusals.ts on ${rt}: µs per call, bursts of ${BURST}, median of ${ROUNDS} (min–max)`);
const base = median(results["served (echo)"]);
for (const [kind, xs] of Object.entries(results)) {
  const s = [...xs].sort((a, b) => a - b);
  console.log(
    `  ${kind.padEnd(36)} ${median(xs).toFixed(2)} (${s[0].toFixed(2)}–${s[s.length - 1].toFixed(2)})  ` +
      `÷ served ${(median(xs) / base).toFixed(2)}`,
  );
}
release();
await Promise.all([node.drain(), bounded.drain()]);
