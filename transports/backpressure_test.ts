// Backpressure against real `thinkagain serve` processes on this runtime (the suite runs on Bun and
// on Deno): bounded mailboxes and op waiting lists on the node, its in-flight limits, and a client
// that never reads its replies.
import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import * as ta from "../mod.ts";
import net from "node:net";
import { rssOf, startNodeProcess } from "../adapters/_test_nodes.ts";
import { eventually } from "../core/_test_utils.ts";
import { decode, errorFromWire } from "../core/codec.ts";
import { decodeReply, encodeMessage, type ResultMessage } from "./protocol.ts";
import { wsUpgradeHead } from "./_test_servers.ts";
import type { TransportConnection } from "./transport.ts";
import { webSocketTransport } from "./websocket.ts";
import { FRAME_HEADER_BYTES, KIND_REQUEST, writeHeader } from "./ws_framing.ts";

import { BpRetry } from "./_backpressure_app.ts";

const APP = fileURLToPath(new URL("./_backpressure_app.ts", import.meta.url));
const T = { timeout: 180_000 };

async function pong(url: string): Promise<{ activeCalls: number }> {
  const conn = await webSocketTransport.connect(url);
  try {
    return decode(await conn.request(encodeMessage({ t: "ping" }))) as { activeCalls: number };
  } finally {
    await conn.close();
  }
}

async function create(conn: TransportConnection, service: string): Promise<string> {
  const m = { t: "create", service, args: [], gpus: [], replica: 0, owner: "driver-a" };
  return decodeReply<{ t: "created"; id: string }>(await conn.request(encodeMessage(m)), "created").id;
}

/** The call's value (as a result message), or the error it failed with or its frame was refused with. */
async function outcome(p: Promise<Uint8Array>): Promise<ResultMessage | Error> {
  try {
    const r = decodeReply<ResultMessage>(await p, "result");
    return r.ok ? r : errorFromWire(r.error);
  } catch (e) {
    return e as Error;
  }
}

function overloadedOf(r: ResultMessage | Error): ta.OverloadedError | undefined {
  if (r instanceof ta.OverloadedError) return r;
  return undefined;
}

test("a node's mailbox refuses a burst beyond maxQueued with OverloadedError; the rest completes", T, async () => {
  const n = await startNodeProcess(APP, ["--port", "0", "--name", "n1"]);
  try {
    const conn = await webSocketTransport.connect(n.url);
    const id = await create(conn, "BpQueue");
    const call = (cid: string, ms: number, i: number) =>
      outcome(conn.request(encodeMessage({ t: "call", cid, id, method: "hold", args: [ms, i] })));
    // one call runs (slowly) and holds the instance while the burst arrives behind it
    const first = call("c0", 3_000, 0);
    assert.ok(await eventually(async () => (await pong(n.url)).activeCalls === 1, 30_000));
    const burst = await Promise.all(Array.from({ length: 20 }, (_, i) => call(`b${i}`, 0, i + 1)));
    const refused = burst.filter((r) => overloadedOf(r) !== undefined);
    const done = burst.filter((r) => !(r instanceof Error) && r.ok);
    assert.equal(
      refused.length,
      15,
      `refused: ${refused.length}, others: ${burst.filter((r) => !refused.includes(r))}`,
    );
    assert.match((refused[0] as Error).message, /Service "BpQueue".*on node "n1".*maxQueued 5/);
    assert.equal(done.length, 5);
    assert.ok(!((await first) instanceof Error));
    await conn.close();
  } finally {
    n.kill();
    await n.exited;
  }
});

test("a node refuses op calls beyond the op's maxWaiting with OverloadedError; the rest complete", T, async () => {
  const n = await startNodeProcess(APP, ["--port", "0", "--name", "n1"]);
  try {
    const conn = await webSocketTransport.connect(n.url);
    const call = (cid: string, ms: number, i: number) =>
      outcome(conn.request(encodeMessage({ t: "call", cid, op: "bpLimited", args: [ms, i] })));
    const first = call("c0", 3_000, 0);
    assert.ok(await eventually(async () => (await pong(n.url)).activeCalls === 1, 30_000));
    const burst = await Promise.all(Array.from({ length: 10 }, (_, i) => call(`b${i}`, 0, i + 1)));
    const refused = burst.filter((r) => overloadedOf(r) !== undefined);
    assert.equal(refused.length, 8);
    assert.match((refused[0] as Error).message, /op "bpLimited".*maxWaiting 2/);
    assert.equal(burst.filter((r) => !(r instanceof Error) && r.ok).length, 2);
    assert.ok(!((await first) instanceof Error));
    await conn.close();
  } finally {
    n.kill();
    await n.exited;
  }
});

test("--max-in-flight bounds a node's calls from all connections together with OverloadedError", T, async () => {
  const n = await startNodeProcess(APP, ["--port", "0", "--name", "n1", "--max-in-flight", "3"]);
  try {
    const a = await webSocketTransport.connect(n.url);
    const b = await webSocketTransport.connect(n.url);
    const call = (c: TransportConnection, cid: string, ms: number) =>
      outcome(c.request(encodeMessage({ t: "call", cid, op: "bpLimited", args: [ms, 0] })));
    const running = [call(a, "a1", 3_000), call(a, "a2", 3_000), call(b, "b1", 3_000)];
    assert.ok(await eventually(async () => (await pong(n.url)).activeCalls === 3, 30_000));
    const e = await call(b, "b2", 0);
    assert.ok(e instanceof ta.OverloadedError, `expected OverloadedError, got ${e}`);
    assert.match(e.message, /Node "n1" refused a call to bpLimited: 3 calls are in flight on this node.*maxInFlight 3/);
    await Promise.all(running);
    assert.ok(await eventually(async () => (await pong(n.url)).activeCalls === 0, 30_000));
    const after = await call(b, "b3", 0);
    assert.ok(!(after instanceof Error) && after.ok, "room again once they finished");
    await a.close();
    await b.close();
  } finally {
    n.kill();
    await n.exited;
  }
});

test("--max-in-flight-bytes refuses a call whose frame does not fit beside those in flight", T, async () => {
  const n = await startNodeProcess(APP, ["--port", "0", "--name", "n1", "--max-in-flight-bytes", "4096"]);
  try {
    const conn = await webSocketTransport.connect(n.url);
    const pad = "x".repeat(3_000);
    const call = (cid: string, ms: number, extra?: string) =>
      outcome(
        conn.request(encodeMessage({ t: "call", cid, op: "bpLimited", args: [ms, 0, ...(extra ? [extra] : [])] })),
      );
    const big = call("c1", 3_000, pad); // holds ~3 KB while it runs
    assert.ok(await eventually(async () => (await pong(n.url)).activeCalls === 1, 30_000));
    const e = await call("c2", 0, pad);
    assert.ok(e instanceof ta.OverloadedError, `expected OverloadedError, got ${e}`);
    assert.match(e.message, /Node "n1" refused a call to bpLimited of \d+ bytes.*maxInFlightBytes 4096/);
    // a small call still fits beside it
    const small = await call("c3", 0);
    assert.ok(!(small instanceof Error) && small.ok);
    assert.ok(!((await big) instanceof Error));
    await conn.close();
  } finally {
    n.kill();
    await n.exited;
  }
});

test("a call refused by a full node (OverloadedError) is retried after a pause when it has retries", T, async () => {
  const n = await startNodeProcess(APP, ["--port", "0", "--name", "n1", "--max-in-flight", "1"]);
  try {
    await using mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: n.url })]);
    const out = await mesh.run(async () => {
      const svc = BpRetry.init();
      const first = svc.hold.go(200, 1); // holds the node's one slot for a while
      const second = svc.hold.go(0, 2); // behind it on the link: refused while it runs; retried after pauses
      return await Promise.all([first, second]);
    });
    assert.deepEqual(out, [1, 2]);
  } finally {
    n.kill();
    await n.exited;
  }
});

/** One masked binary WebSocket message (as a client must send it) carrying a request frame. */
function requestMessage(id: number, body: Uint8Array): Uint8Array {
  const payload = new Uint8Array(FRAME_HEADER_BYTES + body.byteLength);
  writeHeader(payload, KIND_REQUEST, id);
  payload.set(body, FRAME_HEADER_BYTES);
  const n = payload.byteLength;
  const head = n < 126 ? [0x82, 0x80 | n] : [0x82, 0x80 | 126, n >> 8, n & 0xff];
  if (n > 0xffff) throw new RangeError("frame too large for this helper");
  const out = new Uint8Array(head.length + 4 + n);
  out.set(head);
  // a zero mask: the payload goes as it is (any mask is valid)
  out.set(payload, head.length + 4);
  return out;
}

test(
  "a WebSocket client that never reads its replies while sending 100k calls: node RSS stays bounded, others are answered",
  T,
  async () => {
    const n = await startNodeProcess(APP, ["--port", "0", "--name", "n1"]);
    try {
      const pid = n.proc.pid!;
      const before = (await rssOf(pid))!;
      // a raw socket: the upgrade and then the calls, written without ever reading a byte back
      const sock = net.connect(n.port, "127.0.0.1");
      sock.pause();
      sock.on("error", () => {}); // the node may close it (a client that does not read)
      await new Promise<void>((r, j) => (sock.once("connect", r), sock.once("error", j)));
      sock.write(wsUpgradeHead(n.port));
      // the peak, sampled while the calls arrive and run (a bound on memory, not on time)
      let peak = before;
      const sampler = setInterval(() => {
        void rssOf(pid).then((r) => {
          if (r !== undefined && r > peak) peak = r;
        });
      }, 20);
      const CALLS = 100_000;
      const REPLY_BYTES = 16 * 1024; // 100k replies would be 1.6 GB if nothing bounded them
      // The calls go in from a writer beside the other client. Once the node closes this
      // connection it may also stop reading it without closing the socket (Deno keeps a closed
      // WebSocket's TCP connection while writes to it are pending, and a client that never reads
      // keeps them pending): then the writer waits for a drain that never comes, so it stops once
      // the other client is answered and the writer has written everything or been pushed back.
      let written = 0;
      let stop = false;
      let wake: (() => void) | undefined;
      let idle!: () => void;
      const writerIdle = new Promise<void>((r) => (idle = r));
      const writer = (async () => {
        for (let i = 1; i <= CALLS && !sock.destroyed && !stop; i++) {
          const body = encodeMessage({ t: "call", cid: `x${i}`, op: "bpBytes", args: [REPLY_BYTES] });
          if (!sock.write(requestMessage(i, body))) {
            // the kernel's buffer is full: wait for it to take more, for the node to close it, or
            // for the test to end
            await new Promise<void>((r) => {
              wake = r;
              sock.once("drain", r);
              sock.once("close", r);
              idle();
            });
          }
          written++;
        }
        idle();
      })();
      // meanwhile and after, another client is answered
      const other = await webSocketTransport.connect(n.url);
      for (let i = 0; i < 20; i++) {
        const r = await outcome(other.request(encodeMessage({ t: "call", cid: `o${i}`, op: "bpBytes", args: [8] })));
        assert.ok(!(r instanceof Error) && r.ok, `the other client's call ${i}: ${r}`);
      }
      // and after: once the flood is all in, or pushed back
      await writerIdle;
      for (let i = 20; i < 25; i++) {
        const r = await outcome(other.request(encodeMessage({ t: "call", cid: `o${i}`, op: "bpBytes", args: [8] })));
        assert.ok(!(r instanceof Error) && r.ok, `the other client's call ${i}: ${r}`);
      }
      await other.close();
      stop = true;
      wake?.();
      await writer;
      clearInterval(sampler);
      const grown = Math.max(peak, (await rssOf(pid))!) - before;
      assert.ok(
        grown < 400 * 1024 * 1024,
        `node RSS grew ${Math.round(grown / 2 ** 20)} MiB (from ${Math.round(before / 2 ** 20)} MiB) ` +
          `after ${written} calls whose ${
            Math.round((written * REPLY_BYTES) / 2 ** 20)
          } MiB of replies were never read`,
      );
      sock.destroy();
    } finally {
      n.kill();
      await n.exited;
    }
  },
);
