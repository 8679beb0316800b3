// A WebSocket connection says its data-plane fields (keepAbove, owner) once, in a one-way
// `session` frame, instead of with every call: the node applies them to the calls on that
// connection only, a call's own fields win, HTTP refuses it, and a closed connection forgets it.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../mod.ts";
import { serveFrames } from "../adapters/serve.ts";
import { ProtocolError } from "../core/errors.ts";
import { eventually } from "../core/_test_utils.ts";
import { NodeServer } from "./node_server.ts";
import type { NodeCalls } from "./node_calls.ts";
import { decodeDriverMessage, decodeReply, encodeMessage, type ResultMessage } from "./protocol.ts";
import type { PeerInfo } from "./transport.ts";

const T = { timeout: 120_000 };

const sessionBig = ta.op({ name: "sessionBig", remote: true }, (n: number) => new Float32Array(n).fill(2));
const SessionEcho = ta.service(
  { name: "SessionEcho" },
  class SessionEcho {
    echo(x: number): number {
      return x;
    }
  },
);

/** A WebSocket-like connection: one peer for requests, one for one-way frames, the same id. */
function connection(id: number): { call: PeerInfo; oneWay: PeerInfo; close(): void } {
  const closed = new AbortController();
  const base = { transport: "websocket" as const, connectionId: id, signal: closed.signal };
  return { call: { ...base, oneWay: false }, oneWay: { ...base, oneWay: true }, close: () => closed.abort() };
}

async function result(node: NodeServer, peer: PeerInfo, message: Record<string, unknown>): Promise<ResultMessage> {
  return decodeReply<ResultMessage>((await node.handler(encodeMessage(message), peer))!, "result");
}

test(
  "a session's keepAbove and owner apply to the calls on its connection only, and a call's own fields win",
  T,
  async () => {
    const node = new NodeServer({ name: "s1" });
    try {
      const a = connection(101), b = connection(102);
      const none = await node.handler(encodeMessage({ t: "session", keepAbove: 0, owner: "drv-a" }), a.oneWay);
      assert.equal(none, undefined, "a one-way session gets no reply");
      // on a: kept (keepAbove 0), for owner drv-a
      const kept = await result(node, a.call, { t: "call", cid: "c1", op: "sessionBig", args: [4] });
      assert.ok(kept.ok && kept.object !== undefined, "the result on the session's connection was not kept");
      assert.equal(node.objectStats().objects, 1);
      // on b (no session): the value comes back
      const inline = await result(node, b.call, { t: "call", cid: "c1", op: "sessionBig", args: [4] });
      assert.ok(inline.ok && inline.object === undefined, "a connection without a session had its result kept");
      assert.deepEqual([...(inline.value as Float32Array)], [2, 2, 2, 2]);
      // the call's own keepAbove wins over its session's
      const own = await result(node, a.call, { t: "call", cid: "c2", op: "sessionBig", args: [4], keepAbove: 1 << 20 });
      assert.ok(own.ok && own.object === undefined, "the call's own keepAbove did not win");
      // closed: the connection's session is forgotten (nothing held per connection outlives it)
      const held = () => (node as unknown as { book: NodeCalls }).book.sessionCount;
      assert.equal(held(), 1);
      a.close();
      assert.equal(held(), 0, "a closed connection's session is still held");
    } finally {
      await node.drain();
    }
  },
);

test("a session over HTTP, or with bad fields, is refused with a ProtocolError saying why", T, async () => {
  const node = new NodeServer({ name: "s2" });
  try {
    const http: PeerInfo = { transport: "http", connectionId: 7, oneWay: false };
    await assert.rejects(
      Promise.resolve(node.handler(encodeMessage({ t: "session", keepAbove: 0 }), http)),
      (e: unknown) => e instanceof ProtocolError && /connection that lasts/.test(e.message),
    );
    const ws = connection(8);
    for (const bad of [{ keepAbove: -1 }, { keepAbove: "big" }, { owner: 5 }, { owner: "" }]) {
      await assert.rejects(
        Promise.resolve(node.handler(encodeMessage({ t: "session", ...bad }), ws.oneWay)),
        (e: unknown) => e instanceof ProtocolError && /"session"/.test(e.message),
        JSON.stringify(bad),
      );
    }
  } finally {
    await node.drain();
  }
});

test(
  "a mesh's WebSocket link says keepAbove and owner once per connection, and its calls leave them out",
  T,
  async () => {
    const node = new NodeServer({ name: "s3" });
    const frames: Record<string, unknown>[] = [];
    const served = await serveFrames((frame, peer) => {
      frames.push(decodeDriverMessage(frame) as unknown as Record<string, unknown>);
      return node.handler(frame, peer);
    }, { port: 0 });
    try {
      await using mesh = new ta.Mesh([new ta.MeshNode("s3", { endpoint: `http://127.0.0.1:${served.port}` })], {
        transport: "websocket",
      });
      let opened = 0;
      const out = await mesh.run(async () => {
        const e = SessionEcho.init();
        await e.echo.go(0); // (calls sent before the connection opened carry the fields themselves)
        opened = frames.length;
        // (ta.all and a ref left to settle: nothing awaits these calls as they leave, so they carry
        // nothing of their own; an awaited call says its result comes back whatever its size)
        const xs = await ta.all([1, 2, 3].map((x) => e.echo.go(x)));
        const bigRef = sessionBig.go(100_000); // 400 kB: kept on the node, fetched when awaited
        await eventually(() => bigRef.status === "completed", 10_000);
        const big = await bigRef;
        return { xs, big: big.length };
      });
      assert.deepEqual(out, { xs: [1, 2, 3], big: 100_000 });
      const sessions = frames.filter((f) => f.t === "session");
      assert.equal(sessions.length, 1, `sessions sent: ${sessions.length}`);
      assert.equal(frames[0].t, "session", "the session is not the connection's first frame");
      assert.equal(sessions[0].keepAbove, 64 * 1024);
      assert.equal(typeof sessions[0].owner, "string");
      const calls = frames.slice(opened).filter((f) => f.t === "call");
      assert.ok(calls.length >= 4, `calls seen after the connection opened: ${calls.length}`);
      for (const c of calls) assert.ok(c.keepAbove === undefined && c.owner === undefined, JSON.stringify(c));
      assert.ok(frames.some((f) => f.t === "fetch"), "the 400 kB result was not kept on the node and fetched");
    } finally {
      await served.close();
      await node.drain();
    }
  },
);

test(
  "over a WebSocket, a large method result its caller awaits comes back in the reply (no fetch), one not awaited stays",
  T,
  async () => {
    const node = new NodeServer({ name: "s4" });
    const frames: string[] = [];
    const served = await serveFrames((frame, peer) => {
      frames.push(decodeDriverMessage(frame).t);
      return node.handler(frame, peer);
    }, { port: 0 });
    try {
      await using mesh = new ta.Mesh([new ta.MeshNode("s4", { endpoint: `http://127.0.0.1:${served.port}` })], {
        transport: "websocket",
      });
      await mesh.run(async () => {
        const e = SessionEcho.init();
        const big = new Float32Array(100_000).fill(3); // 400 kB each way
        const back = await e.echo.go(big as unknown as number) as unknown as Float32Array;
        assert.equal(back.length, 100_000);
        const both = await Promise.all([e.echo.go(big as unknown as number), e.echo.go(big as unknown as number)]);
        assert.equal(both.length, 2);
        assert.equal(frames.filter((t) => t === "fetch").length, 0, "an awaited result was kept and fetched");
        assert.equal(node.objectStats().objects, 0);
        const later = e.echo.go(big as unknown as number);
        assert.ok(await eventually(() => later.status === "completed", 10_000));
        assert.equal(node.objectStats().objects, 1, "a result nobody awaited yet stays on its node");
        assert.equal((await later as unknown as Float32Array).length, 100_000);
        assert.equal(frames.filter((t) => t === "fetch").length, 1);
      });
    } finally {
      await served.close();
      await node.drain();
    }
  },
);

const sessionGate: { open?: () => void } = {};
// registered by name: the test calls it with raw frames
const _sessionWait = ta.op(
  { name: "sessionWait", remote: true },
  () => new Promise<number>((resolve) => (sessionGate.open = () => resolve(1))),
);

test(
  "a closed WebSocket connection stops its running calls and drops its kept results; a free drops one",
  T,
  async () => {
    const node = new NodeServer({ name: "s4" });
    try {
      const a = connection(201), b = connection(202);
      // a kept result (pipelining) on each connection, then one freed by its caller
      for (const [peer, cid] of [[a.call, "k1"], [a.call, "k2"], [b.call, "k1"]] as const) {
        const r = await result(node, peer, { t: "call", cid, op: "sessionBig", args: [1], keep: true });
        assert.ok(r.ok);
      }
      assert.equal(node.objectStats().keptResults, 3);
      assert.equal(await node.handler(encodeMessage({ t: "free", oids: [], cids: ["k2"] }), a.oneWay), undefined);
      assert.equal(node.objectStats().keptResults, 2);
      // a call still running on a when it closes is cancelled; b's kept result stays
      const running = result(node, a.call, { t: "call", cid: "w1", op: "sessionWait", args: [] });
      assert.ok(await eventually(() => sessionGate.open !== undefined, 10_000));
      a.close();
      const stopped = await running;
      assert.ok(!stopped.ok && stopped.error.tag === "CancelledError", JSON.stringify(stopped));
      assert.equal(node.objectStats().keptResults, 1, "the closed connection's kept result is still there");
      assert.equal((node as unknown as { book: NodeCalls }).book.connectionCount, 1);
      b.close();
      assert.equal(node.objectStats().keptResults, 0);
      assert.equal((node as unknown as { book: NodeCalls }).book.connectionCount, 0);
    } finally {
      sessionGate.open?.();
      await node.drain();
    }
  },
);
