// Remote ops' deadlines (remote_ops.ts): the driver holds a call of a remote op to its deadline
// (the op's own `timeoutMs`, else the mesh's) whatever its node does, tells the node to stop it,
// and a node's own stop at that deadline reaches the caller as the same TimeoutError.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../mod.ts";
import { errorToWire } from "../core/codec.ts";
import { gate, rejection } from "../core/_test_utils.ts";
import { NodeServer } from "./node_server.ts";
import { serveInMemory } from "./in_memory.ts";
import { type CallMessage, decodeDriverMessage, encodeMessage } from "./protocol.ts";
import type { PeerInfo } from "./transport.ts";

const silentDeadlineOp = ta.op({ name: "silentDeadlineOp", remote: true }, (x: number) => x);
const ownDeadlineOp = ta.op({ name: "ownDeadlineOp", remote: true, timeoutMs: 5_000 }, (x: number) => x);
const held = gate();
const heldDeadlineOp = ta.op({ name: "heldDeadlineOp", remote: true }, async () => {
  await held.promise;
  return "late";
});

let seq = 0;

/**
 * A node that answers everything as a real one does, except the calls of ops `answer` takes (it
 * returns the reply, or a promise that never settles for none); `seen` gets every frame it is sent.
 */
async function withFakeNode(
  answer: (call: CallMessage) => Uint8Array | Promise<Uint8Array>,
  fn: (endpoint: string, seen: (t: string) => Promise<CallMessage>) => Promise<void>,
): Promise<void> {
  const node = new NodeServer({ name: "n" });
  const waiting: { t: string; open: (m: CallMessage) => void }[] = [];
  const server = serveInMemory(`remote-ops-test-${++seq}`, (frame: Uint8Array, peer: PeerInfo) => {
    const msg = decodeDriverMessage(frame);
    for (const w of waiting.filter((w) => w.t === msg.t)) {
      waiting.splice(waiting.indexOf(w), 1);
      w.open(msg as CallMessage);
    }
    return msg.t === "call" ? answer(msg) : node.handler(frame, peer);
  });
  const seen = (t: string) => {
    const g = gate<CallMessage>();
    waiting.push({ t, open: g.open });
    return g.promise;
  };
  try {
    await fn(server.endpoint, seen);
  } finally {
    await server.close();
    await node.drain({ graceMs: 10 });
  }
}

test("a remote op under a mesh's timeoutMs fails with TimeoutError when its node never answers, and the node is told to cancel", async () => {
  await withFakeNode(() => new Promise<Uint8Array>(() => {}), async (endpoint, seen) => {
    await using mesh = new ta.Mesh([new ta.MeshNode("n", { endpoint })], { timeoutMs: 200 });
    const called = seen("call");
    const cancelled = seen("cancel");
    const e = await mesh.run(() => rejection(silentDeadlineOp.go(1)));
    assert.ok(e instanceof ta.TimeoutError, `expected TimeoutError, got ${e}`);
    assert.equal(e.op, "silentDeadlineOp");
    assert.equal(e.timeoutMs, 200);
    assert.equal((await cancelled).cid, (await called).cid, "the node was told to stop the call");
  });
});

test("a node's stop of a remote op at its deadline reaches the caller as TimeoutError, not CancelledError", async () => {
  // the node stops the call first (its reply may come before the driver's own timer fires)
  const stopped = (call: CallMessage) =>
    encodeMessage({
      t: "result",
      ok: false,
      error: errorToWire(
        new ta.CancelledError(call.op!, `past its deadline of ${call.timeoutMs} ms on node "n"`, "timeout"),
      ),
    });
  await withFakeNode(stopped, async (endpoint) => {
    await using mesh = new ta.Mesh([new ta.MeshNode("n", { endpoint })], { timeoutMs: 60_000 });
    const e = await mesh.run(() => rejection(silentDeadlineOp.go(1)));
    assert.ok(e instanceof ta.TimeoutError, `expected TimeoutError, got ${e}`);
    assert.equal(e.op, "silentDeadlineOp");
    assert.equal(e.timeoutMs, 60_000);
  });
});

test("a remote op past a mesh's timeoutMs on a real node fails with TimeoutError", async () => {
  const node = new NodeServer({ name: "real" });
  const server = serveInMemory(`remote-ops-test-${++seq}`, node.handler);
  try {
    await using mesh = new ta.Mesh([new ta.MeshNode("real", { endpoint: server.endpoint })], { timeoutMs: 100 });
    const e = await mesh.run(() => rejection(heldDeadlineOp.go()));
    assert.ok(e instanceof ta.TimeoutError, `expected TimeoutError, got ${e}`);
    assert.equal(e.timeoutMs, 100);
  } finally {
    held.open();
    await server.close();
    await node.drain({ graceMs: 10 });
  }
});

test("a remote op's own timeoutMs is the deadline its node is given, else the mesh's", async () => {
  const answered = (call: CallMessage) => encodeMessage({ t: "result", ok: true, value: call.timeoutMs });
  await withFakeNode(answered, async (endpoint) => {
    await using mesh = new ta.Mesh([new ta.MeshNode("n", { endpoint })], { timeoutMs: 60_000 });
    assert.equal(await mesh.run(() => ownDeadlineOp.go(1)), 5_000);
    assert.equal(await mesh.run(() => silentDeadlineOp.go(1)), 60_000);
  });
});
