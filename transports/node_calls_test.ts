// A node's book of calls in flight (node_calls.ts), alone: its counts per connection and per HTTP
// scope stay true however calls enter and leave, a closed connection takes what it left with it,
// and a call past a bound, cancelled before it came, or reusing a call id is refused saying why.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../mod.ts";
import { decode, errorFromWire } from "../core/codec.ts";
import { CancelledError, OverloadedError, ProtocolError } from "../core/errors.ts";
import type { ObjectRef } from "../core/object_ref.ts";
import { eventually, gate } from "../core/_test_utils.ts";
import { callKey, callScope, NodeCalls } from "./node_calls.ts";
import { NodeServer } from "./node_server.ts";
import { startRealServer } from "./_test_servers.ts";
import { type CallMessage, decodeReply, encodeMessage, type ResultMessage } from "./protocol.ts";
import type { PeerInfo } from "./transport.ts";

/** A ref that counts its cancels. */
function ref(): ObjectRef<unknown> & { cancels: number } {
  const r = { cancels: 0, cancel: () => void r.cancels++ };
  return r as unknown as ObjectRef<unknown> & { cancels: number };
}

function call(cid: string, extra: Partial<CallMessage> = {}): CallMessage {
  return { t: "call", cid, id: "i1", method: "run", args: [], ...extra };
}

function book(limits: { calls?: number; inFlight?: number; bytes?: number } = {}) {
  const forgotten: string[] = [];
  const b = new NodeCalls({ name: "n1", forgetPublished: (id) => void forgotten.push(id) }, {
    leaseMs: 0,
    maxCallsPerConnection: limits.calls ?? 1000,
    maxInFlight: limits.inFlight ?? 1000,
    maxInFlightBytes: limits.bytes ?? 1 << 30,
  });
  return { b, forgotten };
}

/** The error a refusal's reply carries. */
function refusal(reply: Uint8Array | undefined): Error {
  assert.ok(reply instanceof Uint8Array, "the call was not refused");
  const r = decodeReply<ResultMessage>(reply, "result");
  assert.ok(!r.ok);
  return errorFromWire(r.error);
}

/** Admits and enters a call; returns what leave needs. */
function run(b: NodeCalls, peer: PeerInfo | undefined, cid: string, bytes = 10, keep = false) {
  const key = callKey(peer, cid), scope = callScope(peer), conn = b.connection(peer), r = ref();
  assert.equal(b.admit(call(cid), key, scope, conn, bytes), undefined, `call ${cid} was refused`);
  const onGone = b.enter(key, r, keep, peer?.signal, conn, scope, bytes);
  return { r, leave: () => b.leave(key, r, peer?.signal, conn, scope, bytes, onGone) };
}

const http = (id: number, signal?: AbortSignal): PeerInfo => ({
  transport: "http",
  connectionId: id,
  oneWay: false,
  signal,
});
/** An HTTP request's peer, as the node's server makes one, naming `caller` (none: undefined). */
const fromCaller = (id: number, caller: string | undefined, oneWay = false): PeerInfo => ({
  transport: "http",
  connectionId: id,
  oneWay,
  caller,
  signal: new AbortController().signal,
});
const ws = (id: number, signal: AbortSignal): PeerInfo => ({
  transport: "websocket",
  connectionId: id,
  oneWay: false,
  signal,
});

test("HTTP calls share one count however they enter and leave, and it returns to none", () => {
  const { b } = book({ calls: 2 });
  // entered in one order, left in another, from requests of their own
  const first = run(b, http(1), "a"), second = run(b, http(2), "b");
  const third = refusal(b.admit(call("c"), callKey(http(3), "c"), "http", undefined, 10));
  assert.ok(third instanceof OverloadedError && /2 calls are in flight on HTTP/.test(third.message), third.message);
  first.leave();
  const again = run(b, http(3), "c");
  second.leave();
  again.leave();
  assert.equal(b.inFlight, 0);
  assert.equal(b.inFlightBytes, 0);
  // back to none: the bound holds as before (a count left at NaN would let every call through)
  run(b, http(4), "d");
  run(b, http(5), "e");
  assert.ok(refusal(b.admit(call("f"), callKey(http(6), "f"), "http", undefined, 10)) instanceof OverloadedError);
});

test("an HTTP call whose request is gone is cancelled, and its listener goes when it leaves", () => {
  const { b } = book();
  const gone = new AbortController();
  const c = run(b, http(1, gone.signal), "a");
  gone.abort();
  assert.equal(c.r.cancels, 1);
  const later = new AbortController();
  const d = run(b, http(2, later.signal), "b");
  d.leave();
  later.abort();
  assert.equal(d.r.cancels, 0, "a call that left was cancelled by its request's end");
  c.leave();
  assert.equal(b.inFlight, 0);
});

test("a closed connection cancels its calls, drops its kept results and session, forgets what it published", () => {
  const { b, forgotten } = book();
  const closing = new AbortController(), staying = new AbortController();
  const a = ws(1, closing.signal), other = ws(2, staying.signal);
  b.declareSession(a, { t: "session", keepAbove: 0, owner: "drv" });
  assert.deepEqual(b.sessionOf(a), { keepAbove: 0, owner: "drv" });
  const kept = run(b, a, "k", 10, true);
  kept.leave(); // answered, its result kept for pipelined calls
  const running = run(b, a, "r");
  const theirs = run(b, other, "k", 10, true);
  b.notePublished(a, "pub-1");
  assert.deepEqual([...b.publishedOn(a)!], ["pub-1"]);
  assert.equal(b.kept.size, 2);
  assert.equal(b.connectionCount, 2);
  closing.abort();
  assert.equal(running.r.cancels, 1);
  assert.equal(theirs.r.cancels, 0, "another connection's call was cancelled");
  assert.deepEqual([...b.kept.keys()], [callKey(other, "k")]);
  assert.deepEqual(forgotten, ["pub-1"]);
  assert.equal(b.sessionOf(a), undefined);
  assert.equal(b.sessionCount, 0);
  assert.equal(b.connectionCount, 1);
  // a frame that comes after its connection closed gets no record
  assert.equal(b.connection(a), undefined);
  running.leave();
  theirs.leave();
  assert.equal(b.inFlight, 0);
});

test("free drops the kept results it names on its own connection only", () => {
  const { b } = book();
  const a = ws(1, new AbortController().signal), other = ws(2, new AbortController().signal);
  run(b, a, "x", 10, true).leave();
  run(b, other, "x", 10, true).leave();
  b.freeKept(a, ["x", "never-kept"]);
  assert.deepEqual([...b.kept.keys()], [callKey(other, "x")]);
});

test("a call id in use on its connection, or one whose cancel came first, is refused saying why", () => {
  const { b } = book();
  const a = ws(1, new AbortController().signal), other = ws(2, new AbortController().signal);
  const held = run(b, a, "same");
  assert.throws(
    () => b.admit(call("same"), callKey(a, "same"), callScope(a), b.connection(a), 10),
    (e: unknown) => e instanceof ProtocolError && /"same" is already in use/.test(e.message),
  );
  // the same id on another connection is another call
  run(b, other, "same");
  // a cancel for a call running cancels it; one that came first refuses the call once
  b.cancel(callKey(a, "same"));
  assert.equal(held.r.cancels, 1);
  // (over HTTP, by a client that names its caller: its calls and cancels come on requests of their own)
  b.cancel(callKey(fromCaller(1, "d1"), "early"));
  assert.throws(
    () => b.admit(call("early"), callKey(fromCaller(2, "d1"), "early"), "http d1", undefined, 10),
    (e: unknown) => e instanceof CancelledError && /before it reached the node/.test(e.message),
  );
  assert.equal(b.admit(call("early"), callKey(fromCaller(3, "d1"), "early"), "http d1", undefined, 10), undefined);
});

test("the node's bounds in all and in bytes refuse with their counts, and free up as calls leave; whenIdle tells every waiter", async () => {
  const { b } = book({ inFlight: 2, bytes: 100 });
  const a = ws(1, new AbortController().signal);
  const one = run(b, a, "1", 60);
  const bytes = refusal(b.admit(call("2"), callKey(a, "2"), callScope(a), b.connection(a), 50));
  assert.ok(
    bytes instanceof OverloadedError &&
      /of 50 bytes: the calls in flight on this node hold 60 bytes/.test(bytes.message),
  );
  const two = run(b, a, "2", 40);
  const all = refusal(b.admit(call("3"), callKey(a, "3"), callScope(a), b.connection(a), 1));
  assert.ok(all instanceof OverloadedError && /2 calls are in flight on this node/.test(all.message), all.message);
  // every waiter is told (a node drained twice at once waits in both)
  const idle = b.whenIdle(), again = b.whenIdle();
  let done = 0;
  void idle.then(() => done++);
  void again.then(() => done++);
  one.leave();
  await Promise.resolve();
  assert.equal(done, 0, "idle with a call still in flight");
  two.leave();
  await Promise.all([idle, again]);
  assert.equal(done, 2);
  assert.equal(b.inFlightBytes, 0);
  await b.whenIdle(); // at once when nothing runs
});

const httpScopeEcho = ta.op({ name: "httpScopeEcho", remote: true }, (x: unknown) => x);
let scopeHeld = gate();
const httpScopeHeld = ta.op({ name: "httpScopeHeld", remote: true }, async (x: unknown) => {
  await scopeHeld.promise;
  return x;
});
void httpScopeEcho;

test("over HTTP an HTTP client's cancel never reaches another client's call, running or still to come", async () => {
  scopeHeld = gate();
  const node = new NodeServer({ name: "n" });
  const a = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", b = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
  try {
    // b cancels an id a has not used yet: a's call with it still runs
    await node.handler(encodeMessage({ t: "cancel", cid: "x-1" }), fromCaller(1, b, true));
    const reply = decode(
      (await node.handler(
        encodeMessage({ t: "call", cid: "x-1", op: "httpScopeEcho", args: [7] }),
        fromCaller(2, a),
      ))!,
    );
    assert.deepStrictEqual(reply, { t: "result", ok: true, value: 7 });
    // b cancels a's call in flight: it still runs to its end
    const running = node.handler(
      encodeMessage({ t: "call", cid: "x-2", op: "httpScopeHeld", args: [8] }),
      fromCaller(3, a),
    );
    assert.ok(await eventually(() => node.activeCalls === 1));
    await node.handler(encodeMessage({ t: "cancel", cid: "x-2" }), fromCaller(4, b, true));
    scopeHeld.open();
    assert.deepStrictEqual(decode((await running)!), { t: "result", ok: true, value: 8 });
    // a's own cancel, on a request of its own, reaches a's call
    scopeHeld = gate();
    const own = node.handler(
      encodeMessage({ t: "call", cid: "x-3", op: "httpScopeHeld", args: [9] }),
      fromCaller(5, a),
    );
    assert.ok(await eventually(() => node.activeCalls === 1));
    await node.handler(encodeMessage({ t: "cancel", cid: "x-3" }), fromCaller(6, a, true));
    const out = decode((await own)!) as ResultMessage;
    assert.ok(!out.ok && out.error.tag === "CancelledError", JSON.stringify(out));
  } finally {
    scopeHeld.open();
    await node.drain();
  }
});

test("over HTTP a request that names no caller is a scope of its own: a cancel without one is refused and reaches nothing", async () => {
  scopeHeld = gate();
  const node = new NodeServer({ name: "n" });
  try {
    const running = node.handler(
      encodeMessage({ t: "call", cid: "y-1", op: "httpScopeHeld", args: [1] }),
      fromCaller(1, undefined),
    );
    assert.ok(await eventually(() => node.activeCalls === 1));
    await assert.rejects(
      Promise.resolve(node.handler(encodeMessage({ t: "cancel", cid: "y-1" }), fromCaller(2, undefined))),
      (e: unknown) => e instanceof ProtocolError && /x-thinkagain-caller/.test(e.message),
    );
    // and a cancel that names a caller reaches only that caller's calls
    await node.handler(encodeMessage({ t: "cancel", cid: "y-1" }), fromCaller(3, "c".repeat(32), true));
    scopeHeld.open();
    assert.deepStrictEqual(decode((await running)!), { t: "result", ok: true, value: 1 });
  } finally {
    scopeHeld.open();
    await node.drain();
  }
});

test("HTTP call keys: one scope per caller, one per request without one; all HTTP calls still share one count", () => {
  const a = fromCaller(1, "a1"), alsoA = fromCaller(2, "a1"), b = fromCaller(3, "b1");
  assert.equal(callKey(a, "c"), callKey(alsoA, "c"), "a caller's requests share its scope");
  assert.notEqual(callKey(a, "c"), callKey(b, "c"));
  assert.notEqual(callKey(fromCaller(4, undefined), "c"), callKey(fromCaller(5, undefined), "c"));
  assert.notEqual(callKey(fromCaller(4, undefined), "c"), callKey(a, "c"));
  const { b: book2 } = book({ calls: 2 });
  run(book2, a, "1");
  run(book2, fromCaller(6, undefined), "2");
  const third = refusal(book2.admit(call("3"), callKey(b, "3"), callScope(b), undefined, 10));
  assert.ok(third instanceof OverloadedError && /2 calls are in flight on HTTP/.test(third.message), third.message);
});

test("the HTTP transport names each connection with a caller key of 128 random bits, and its cancel reaches its own call", async () => {
  scopeHeld = gate();
  const node = new NodeServer({ name: "n" });
  const callers = new Set<string | undefined>();
  const server = await startRealServer((frame, peer) => {
    callers.add(peer?.caller);
    return node.handler(frame, peer);
  });
  try {
    await using mesh = new ta.Mesh([new ta.MeshNode("n", { endpoint: server.endpoint })], { transport: "http" });
    const [ref] = await mesh.run(() => [httpScopeHeld.go(1)]);
    assert.ok(await eventually(() => node.activeCalls === 1), "the call runs on the node");
    ref.cancel();
    assert.ok(await eventually(() => node.activeCalls === 0), "the driver's cancel reached its call");
    assert.equal(callers.size, 1);
    assert.match([...callers][0] ?? "", /^[0-9a-f]{32}$/);
  } finally {
    scopeHeld.open();
    await server.close();
    await node.drain();
  }
});
