/**
 * The JS heap a sequential service call allocates on each end, in one process (the two ends of
 * `bench/call_path.ts`): bytes per call from the heap's growth over 4,000 calls after a GC, in a new
 * space large enough that no collection runs in between (five rounds), and with `PROFILE=1` V8's
 * sampling heap profiler's split by function (the line is where the function starts). Deno only.
 *
 *   npx deno run -A --v8-flags=--expose-gc,--min-semi-space-size=64,--max-semi-space-size=64 bench/call_alloc.ts
 *   PROFILE=1 npx deno run -A --v8-flags=--expose-gc,--min-semi-space-size=64,--max-semi-space-size=64 bench/call_alloc.ts
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
const N = 4000;
const ARG = "What is ML?";
const E = ta.service(
  { name: "AllocEcho", maxConcurrency: 1024 },
  class AllocEcho {
    echo<T>(x: T): T {
      return x;
    }
  },
);
const gc = (globalThis as { gc?: () => void }).gc!;
import { Session } from "node:inspector";
const sess = new Session();
sess.connect();
const post = (m: string, p: object = {}) =>
  new Promise<{ profile: { head: Node } }>((res, rej) =>
    sess.post(m, p, (e: unknown, r: unknown) => e ? rej(e) : res(r as { profile: { head: Node } }))
  );
type Node = {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: Node[];
};
async function profile(call: (i: number) => PromiseLike<unknown>, n: number): Promise<void> {
  await post("HeapProfiler.enable");
  await post("HeapProfiler.startSampling", {
    samplingInterval: 32,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  });
  for (let i = 0; i < n; i++) await call(i);
  const { profile } = await post("HeapProfiler.stopSampling");
  const by = new Map<string, number>();
  const walk = (x: Node) => {
    const k = `${x.callFrame.functionName || "(anon)"} ${x.callFrame.url.split("/").slice(-2).join("/")}:${
      x.callFrame.lineNumber + 1
    }`;
    by.set(k, (by.get(k) ?? 0) + x.selfSize);
    x.children.forEach(walk);
  };
  walk(profile.head);
  const tot = [...by.values()].reduce((a, b) => a + b, 0);
  console.log(`  sampled ${(tot / n).toFixed(0)} B/call`);
  for (const [k, v] of [...by].sort((a, b) => b[1] - a[1]).slice(0, 25)) {
    console.log(`  ${(v / n).toFixed(0).padStart(6)} ${k}`);
  }
}
async function alloc(call: (i: number) => PromiseLike<unknown>): Promise<string> {
  for (let i = 0; i < 20000; i++) await call(i);
  if (process.env.PROFILE) await profile(call, 20000);
  const out: number[] = [];
  for (let r = 0; r < 5; r++) {
    gc();
    const h0 = process.memoryUsage().heapUsed;
    for (let i = 0; i < N; i++) await call(i);
    const h1 = process.memoryUsage().heapUsed;
    out.push((h1 - h0) / N);
  }
  return out.map((x) => x.toFixed(0)).join(" ");
}
const node = new NodeServer({ name: "a" });
const peer = { transport: "websocket", connectionId: 1, oneWay: false, signal: new AbortController().signal } as const;
const created = await node.handler(
  encodeMessage({ t: "create", service: E.serviceName, args: [], gpus: [], replica: 0, owner: "bench" }),
  peer,
);
const id = (decode(created!) as { id: string }).id;
const frames = Array.from(
  { length: 30000 },
  (_, i) => encodeMessage({ id, method: "echo", args: [ARG], t: "call", cid: `b-${i}` }),
);
let k = 0;
console.log("node B/call:", await alloc(() => node.handler(frames[k++ % 30000], peer) as Promise<unknown>));
const node2 = new NodeServer({ name: "b" });
const server = serveInMemory("alloc-driver", node2.handler);
const recorded = recordInMemoryConnections();
const reply = encodeMessage({ t: "result", ok: true, value: ARG });
const mesh = new ta.Mesh([new ta.MeshNode("a", { endpoint: server.endpoint })], { transport: "in_memory" });
await mesh.run(async () => {
  const e = E.init();
  await e.echo.go(ARG);
  recorded.answerAll(reply);
  console.log("driver B/call:", await alloc(() => e.echo.go(ARG)));
});
process.exit(0);
