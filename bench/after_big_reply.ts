/**
 * A small call right after a reply of more than a ping's worth (1 MiB), over one WebSocket from this
 * process (the client: this runtime's `webSocketTransport`) to a node of `--node bun|deno` (a
 * `thinkagain serve` process), beside a small call right after a small one. A node pings a client
 * after each 256 KiB of replies; the client's runtime answers with a pong; a client whose socket
 * holds a small write until its earlier ones are acknowledged (Nagle's algorithm: Deno's `WebSocket`
 * client leaves it on) then holds its next call until the node acknowledges that pong, which Linux
 * delays ~40 ms when the node has nothing to send. The node now answers each pong (BENCHMARKS.md,
 * Data plane, twenty-fourth session).
 *
 *   npx deno run -A bench/after_big_reply.ts --node bun
 *   npx deno run -A bench/after_big_reply.ts --node deno
 *   npx bun bench/after_big_reply.ts --node bun
 *
 * Also a small call right after a one-way frame (a `cancel`, which gets no reply). Prints the p50 of
 * each kind over `--rounds` (default 60) and how many took over 20 ms.
 *
 * @module
 */
import process from "node:process";
import { fileURLToPath } from "node:url";
import { type Runtime, startNodeProcess } from "../adapters/_test_nodes.ts";
import { encodeMessage } from "../transports/protocol.ts";
import { webSocketTransport } from "../transports/websocket.ts";

const args = process.argv.slice(2);
const flag = (name: string, dflt: string) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : dflt);
const NODE = flag("node", "bun") as Runtime;
const ROUNDS = Number(flag("rounds", "60"));
const CLIENT = (globalThis as { Bun?: unknown }).Bun ? "bun" : "deno";
const APP = fileURLToPath(new URL("../transports/_backpressure_app.ts", import.meta.url));

const node = await startNodeProcess(APP, ["--port", "0", "--name", "n1"], { runtime: NODE });
const conn = await webSocketTransport.connect(node.url);
try {
  let cid = 0;
  const call = (bytes: number) =>
    conn.request(encodeMessage({ t: "call", cid: `c${cid++}`, op: "bpBytes", args: [bytes] }));
  const afterBig: number[] = [], afterSmall: number[] = [], afterOneWay: number[] = [];
  // a one-way frame (a cancel of a call long done: nothing to do, no reply), then a small call
  const cancel = encodeMessage({ t: "cancel", cid: "none" });
  for (let i = 0; i < ROUNDS + 5; i++) {
    await call(1 << 20);
    let t0 = performance.now();
    await call(16);
    const big = performance.now() - t0;
    t0 = performance.now();
    await call(16);
    const small = performance.now() - t0;
    await new Promise((r) => setTimeout(r, 1)); // (the small call's segment acknowledged by now)
    conn.notify(cancel);
    await new Promise((r) => setTimeout(r, 0));
    t0 = performance.now();
    await call(16);
    const oneWay = performance.now() - t0;
    if (i >= 5) { // (five to warm up)
      afterBig.push(big);
      afterSmall.push(small);
      afterOneWay.push(oneWay);
    }
  }
  const p50 = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1].toFixed(2);
  const over = (xs: number[]) => xs.filter((x) => x > 20).length;
  console.log(`bench/after_big_reply.ts: a ${CLIENT} client, a ${NODE} node, ${ROUNDS} rounds`);
  console.log(`  small call right after a 1 MiB reply  p50 ${p50(afterBig)} ms, ${over(afterBig)} over 20 ms`);
  console.log(`  small call right after a small one    p50 ${p50(afterSmall)} ms, ${over(afterSmall)} over 20 ms`);
  console.log(`  small call right after a one-way frame p50 ${p50(afterOneWay)} ms, ${over(afterOneWay)} over 20 ms`);
} finally {
  await conn.close();
  node.kill();
  await node.exited;
}
