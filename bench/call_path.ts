/**
 * The CPU a sequential service call costs each end, in one process and without a socket:
 *
 * - node: a `NodeServer`'s frame handler answering call frames one after another (decode, the
 *   node's bookkeeping, the instance's mailbox, the method, encode), each frame awaited;
 * - driver: `await handle.echo.go(x)` through a mesh whose connection answers every call at once
 *   with a reply encoded beforehand (`.go()`, the scheduler, the mailbox, the remote body, the link,
 *   encode and decode), so only the driver's own work is timed.
 *
 * µs per call, the median of 7 rounds of 50,000 calls (min–max). What `bench/transport.ts` adds
 * over a raw echo on the wire is about these two together plus the transports' framing, each run
 * with cold caches: between two calls on the wire the kernel's network stack and the other process
 * run. `BENCH_EVICT_KIB=2048` writes that many KiB of other memory between calls (untimed; this
 * VM's L2 is 2 MiB a core) and times each call alone, so that each starts as cold as on the wire.
 *
 *   npx bun bench/call_path.ts
 *   npx deno run -A bench/call_path.ts
 *   BENCH_EVICT_KIB=2048 taskset -c 1 npx bun bench/call_path.ts
 *
 * @module
 */
import process from "node:process";
import * as ta from "../mod.ts";
import { decode } from "../core/codec.ts";
import { NodeServer } from "../server.ts";
import { serveInMemory } from "../transports/in_memory.ts";
import { encodeMessage } from "../transports/protocol.ts";
import { recordInMemoryConnections } from "./_instant_replies.ts";

const CALLS = Number(process.env.BENCH_CALLS ?? 50_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const ARG = "What is ML?";
/** Memory written between two calls (`BENCH_EVICT_KIB`), to start each with caches as cold as on the wire. */
const EVICT = new Uint8Array(Number(process.env.BENCH_EVICT_KIB ?? 0) * 1024);

const PathEcho = ta.service(
  { name: "CallPathEcho", maxConcurrency: 1024 },
  class CallPathEcho {
    echo<T>(x: T): T {
      return x;
    }
  },
);

function summary(us: number[]): string {
  const s = [...us].sort((a, b) => a - b);
  return `${s[s.length >> 1].toFixed(2)} (${s[0].toFixed(2)}–${s[s.length - 1].toFixed(2)})`;
}

/** Times `call(i)` awaited `CALLS` times per round, after `prepare` (untimed) made what round `r` needs. */
async function rounds(
  call: (i: number) => PromiseLike<unknown>,
  prepare: (round: number) => void = () => {},
): Promise<number[]> {
  prepare(-1);
  for (let i = 0; i < CALLS; i++) await call(i); // warm up
  const us: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    prepare(r);
    if (EVICT.length > 0) {
      let total = 0;
      for (let i = 0; i < CALLS; i++) {
        for (let k = 0; k < EVICT.length; k += 64) EVICT[k]++;
        const t0 = performance.now();
        await call(i);
        total += performance.now() - t0;
      }
      us.push(total * 1000 / CALLS);
      continue;
    }
    const t0 = performance.now();
    for (let i = 0; i < CALLS; i++) await call(i);
    us.push((performance.now() - t0) * 1000 / CALLS);
  }
  return us;
}

/** The node alone: its frame handler, fed call frames made beforehand. */
async function nodeSide(): Promise<number[]> {
  const node = new NodeServer({ name: "call-path" });
  try {
    const peer = {
      transport: "websocket",
      connectionId: 1,
      oneWay: false,
      signal: new AbortController().signal,
    } as const;
    const created = await node.handler(
      encodeMessage({ t: "create", service: PathEcho.serviceName, args: [], gpus: [], replica: 0, owner: "bench" }),
      peer,
    );
    const id = (decode(created!) as { id: string }).id;
    // every call its own call id, as a driver sends them (made before each round, untimed)
    let frames: Uint8Array[] = [];
    const prepare = (r: number) => {
      frames = Array.from(
        { length: CALLS },
        (_, i) => encodeMessage({ id, method: "echo", args: [ARG], t: "call", cid: `bench-${r + 1}-${i}` }),
      );
    };
    return await rounds((i) => node.handler(frames[i], peer) as Promise<unknown>, prepare);
  } finally {
    await node.drain();
  }
}

/** The driver alone: its connection answers each call at once (the instance was made by a real node). */
async function driverSide(): Promise<number[]> {
  const node = new NodeServer({ name: "call-path-driver" });
  const server = serveInMemory("call-path-driver", node.handler);
  const recorded = recordInMemoryConnections();
  const reply = encodeMessage({ t: "result", ok: true, value: ARG });
  const mesh = new ta.Mesh([new ta.MeshNode("call-path", { endpoint: server.endpoint })], { transport: "in_memory" });
  try {
    return await mesh.run(async () => {
      const e = PathEcho.init();
      await e.echo.go(ARG); // the instance exists on the node
      recorded.answerAll(reply);
      return await rounds(() => e.echo.go(ARG));
    });
  } finally {
    recorded.restore();
    await mesh.close();
    await server.close();
    await node.drain();
  }
}

const g = globalThis as { Bun?: { version: string }; Deno?: { version: { deno: string } } };
const runtime = g.Bun ? `bun ${g.Bun.version}` : g.Deno ? `deno ${g.Deno.version.deno}` : `node ${process.version}`;
const node = await nodeSide();
const driver = await driverSide();
const evicted = EVICT.length > 0 ? `, ${EVICT.length / 1024} KiB written between calls` : "";
console.log(
  `\nthinkagain call path, in process — ${runtime}, µs per sequential call, median (min–max) of ${ROUNDS}${evicted}\n`,
);
console.log("| end | µs per call |");
console.log("|---|---:|");
console.log(`| node: frame in → reply frame | ${summary(node)} |`);
console.log(`| driver: \`await .go()\` with an instant reply | ${summary(driver)} |`);
process.exit(0);
