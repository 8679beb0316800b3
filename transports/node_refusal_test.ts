// A node answers a call its op's or instance's full queue refuses without making the call (no task,
// no ref, one error per method instead of one per call): refusing a burst must cost it less than
// serving it. These tests check that the reply is the one the call itself would have been refused
// with (the same reply as while task events are on, when every call is made), that each refusal
// gets a reply of its own, and that the calls taken complete.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../mod.ts";
import { decode, errorFromWire } from "../core/codec.ts";
import { onTaskEvent } from "../core/events.ts";
import { MailboxReplica } from "../core/mailbox.ts";
import { registeredOps } from "../core/op.ts";
import { gate } from "../core/_test_utils.ts";
import { NodeServer } from "./node_server.ts";
import { encodeMessage } from "./protocol.ts";

let held = gate();

const RefusalQueue = ta.service(
  { name: "RefusalQueue", maxQueued: 2 },
  class RefusalQueue {
    async hold(i: number): Promise<number> {
      await held.promise;
      return i;
    }
  },
);

const refusalLimited = ta.op(
  { name: "refusalLimited", remote: true, maxConcurrency: 1, maxWaiting: 1 },
  async (i: number): Promise<number> => {
    await held.promise;
    return i;
  },
);

const refusalHeld = ta.op({ name: "refusalHeld", remote: true }, async (i: unknown): Promise<unknown> => {
  await held.promise;
  return i;
});

const refusalEcho = ta.op({ name: "refusalEcho", remote: true }, (x: unknown): unknown => x);

const peer = { transport: "websocket", connectionId: 7, oneWay: false, signal: new AbortController().signal } as const;

interface Reply {
  t: string;
  ok: boolean;
  value?: unknown;
  error?: { tag: string; message: string; data: unknown };
}

/** Each reply is one of its own: what is written into one (as a transport may) changes no other. */
function ownReplies(frames: Uint8Array[], expected: Reply): void {
  frames[0].fill(0);
  for (const f of frames.slice(1)) assert.deepStrictEqual(decode(f), expected);
}

/** A turn of the event loop: what a call started in its turn has done by then (reached its slot). */
const turn = () => new Promise((r) => setTimeout(r, 0));

/**
 * Fills what `call(i)` calls wait in (those made first, each in a turn of its own, so that the
 * first has started before the next arrives), then makes `burst` more: gives the decoded replies of
 * the burst, and the promise of the replies of those that fill it.
 */
async function overfill(
  node: NodeServer,
  call: (i: number) => Uint8Array,
  fill: number,
  burst: number,
): Promise<{ refused: Reply[]; frames: Uint8Array[]; filled: Promise<Reply[]> }> {
  const filling: (Uint8Array | undefined | Promise<Uint8Array | undefined>)[] = [];
  for (let i = 0; i < fill; i++) {
    filling.push(node.handler(call(i), peer));
    await turn();
  }
  const filled = Promise.all(filling).then((rs) => rs.map((r) => decode(r!) as Reply));
  const frames = (await Promise.all(Array.from({ length: burst }, (_, i) => node.handler(call(fill + i), peer))))
    .map((r) => r!);
  return { refused: frames.map((f) => decode(f) as Reply), frames, filled };
}

/**
 * Fills what `call(i)` calls wait in with `fill` calls, then checks that a burst beyond it is
 * refused with `message`, as the calls themselves are refused while task events are on (each then
 * made), each refusal with a reply of its own; gives the replies of the calls that filled it (in an
 * object: a promise returned as it is would be awaited, and they wait for the gate).
 */
async function refusesAsMade(
  node: NodeServer,
  call: (i: number) => Uint8Array,
  fill: number,
  message: string,
): Promise<{ filled: Promise<Reply[]> }> {
  const quiet = await overfill(node, call, fill, 20);
  const off = onTaskEvent(() => {});
  let watched: Reply[];
  try {
    watched = (await overfill(node, call, 0, 5)).refused;
  } finally {
    off();
  }
  const expected = { t: "result", ok: false, error: { tag: "OverloadedError", message, data: {} } };
  for (const r of [...quiet.refused, ...watched]) assert.deepStrictEqual(r, expected);
  ownReplies(quiet.frames, expected);
  return { filled: quiet.filled };
}

test("a node refuses calls beyond an instance's maxQueued as the mailbox would, each with a reply of its own, making the refusal once", async () => {
  held = gate();
  const node = new NodeServer({ name: "refusing" });
  const made = MailboxReplica.prototype.refusal;
  let refusals = 0;
  MailboxReplica.prototype.refusal = function (this: MailboxReplica, method: string) {
    refusals++;
    return made.call(this, method);
  };
  try {
    const created = await node.handler(
      encodeMessage({ t: "create", service: RefusalQueue.serviceName, args: [], gpus: [], replica: 0, owner: "t" }),
      peer,
    );
    const id = (decode(created!) as { id: string }).id;
    let cid = 0;
    const call = (i: number) => encodeMessage({ t: "call", cid: `c${cid++}`, id, method: "hold", args: [i] });
    // one runs, two wait: the rest are refused (with task events on, by the mailbox itself)
    const { filled } = await refusesAsMade(
      node,
      call,
      3,
      `Service "RefusalQueue" refused a call to RefusalQueue.hold: its instance 0 on node "refusing" ` +
        `has 2 calls queued (maxQueued 2; raise it, or pass "unbounded")`,
    );
    assert.strictEqual(refusals, 1, "the refusal is made once, not once per call");
    held.open();
    assert.deepStrictEqual((await filled).map((r) => r.value), [0, 1, 2]);
  } finally {
    MailboxReplica.prototype.refusal = made;
    held.open();
    await node.drain();
  }
});

test("a node refuses calls beyond an op's maxWaiting as the op would, each with a reply of its own, making the refusal once", async () => {
  held = gate();
  void refusalLimited;
  const node = new NodeServer({ name: "refusing-op" });
  const def = registeredOps().get("refusalLimited")!;
  const made = def.refusal;
  let refusals = 0;
  (def as { refusal: () => ta.OverloadedError }).refusal = () => {
    refusals++;
    return made();
  };
  try {
    let cid = 0;
    const call = (i: number) => encodeMessage({ t: "call", cid: `o${cid++}`, op: "refusalLimited", args: [i] });
    // one runs, one waits: the rest are refused (with task events on, by the op itself)
    const { filled } = await refusesAsMade(
      node,
      call,
      2,
      `op "refusalLimited" refused a call: 1 calls already wait for one of its 1 slots ` +
        `(maxWaiting 1; raise it, or pass "unbounded")`,
    );
    // (the slow path makes its own error, through the op's target, not through the definition)
    assert.strictEqual(refusals, 1, "the refusal is made once, not once per call");
    held.open();
    assert.deepStrictEqual((await filled).map((r) => r.value), [0, 1]);
  } finally {
    (def as { refusal: () => ta.OverloadedError }).refusal = made;
    held.open();
    await node.drain();
  }
});

test("a node at its own bounds answers each call past them with a reply saying which bound (OverloadedError on the driver), not a rejection, and the calls in flight complete", async () => {
  held = gate();
  void refusalHeld;
  const node = new NodeServer({ name: "bounded", maxInFlight: 2, maxCallsPerConnection: 1, maxInFlightBytes: 4096 });
  const from = (connectionId: number) => ({ ...peer, connectionId, signal: new AbortController().signal });
  const [a, b, c] = [from(1), from(2), from(3)];
  let cid = 0;
  const call = (arg: unknown = 0) => encodeMessage({ t: "call", cid: `n${cid++}`, op: "refusalHeld", args: [arg] });
  /** The replies to a burst of `n` calls from `who`: every one a reply (a rejection would throw here). */
  const burst = async (who: typeof a, n: number, arg?: unknown) =>
    (await Promise.all(Array.from({ length: n }, () => node.handler(call(arg), who)))).map((r) => decode(r!) as Reply);
  const refusal = (message: string): Reply => ({
    t: "result",
    ok: false,
    error: { tag: "OverloadedError", message, data: {} },
  });
  try {
    const first = node.handler(call(1), a);
    await turn();
    for (const r of await burst(a, 5)) {
      assert.deepStrictEqual(
        r,
        refusal(
          `Node "bounded" refused a call to refusalHeld: 1 calls are in flight on this connection, its limit ` +
            `(maxCallsPerConnection 1)`,
        ),
      );
    }
    const second = node.handler(call(2), b);
    await turn();
    const refused = await burst(c, 5);
    for (const r of refused) {
      assert.deepStrictEqual(
        r,
        refusal(
          `Node "bounded" refused a call to refusalHeld: 2 calls are in flight on this node, its limit ` +
            `(maxInFlight 2, --max-in-flight)`,
        ),
      );
    }
    // what the driver makes of it: the error a retry policy retries
    const err = errorFromWire(refused[0].error);
    assert.ok(err instanceof ta.OverloadedError, String(err));
    held.open();
    assert.deepStrictEqual([decode((await first)!), decode((await second)!)], [
      { t: "result", ok: true, value: 1 },
      { t: "result", ok: true, value: 2 },
    ]);
    // a frame larger than the bytes left for calls in flight
    const [big] = await burst(c, 1, "x".repeat(5000));
    assert.deepStrictEqual(big.error?.tag, "OverloadedError");
    assert.match(big.error!.message, /refused a call to refusalHeld of \d+ bytes: .*maxInFlightBytes 4096/);
    // and once the calls in flight are done, a call is served
    assert.deepStrictEqual((await burst(c, 1, 3))[0], { t: "result", ok: true, value: 3 });
  } finally {
    held.open();
    await node.drain();
  }
});

test("HTTP calls that wait for a piped value count against the bounds while they wait, and stop counting when they end", async () => {
  held = gate();
  void refusalHeld, refusalEcho;
  const node = new NodeServer({ name: "http-bound", maxCallsPerConnection: 1 });
  const http = (connectionId: number) => ({ transport: "http", connectionId, oneWay: false }) as const;
  const held1 = (cid: string) => encodeMessage({ t: "call", cid, op: "refusalHeld", args: [cid] });
  try {
    // x names a put value not stored yet (HTTP has no order between requests): it waits for it, and
    // holds its place meanwhile (a call parked on its arguments holds its frame here as well)
    const x = node.handler(
      encodeMessage({ t: "call", cid: "x", op: "refusalEcho", args: [null], pipe: [{ i: 0, oid: "s:later" }] }),
      http(1),
    );
    await turn();
    const y = decode((await node.handler(held1("y"), http(2)))!) as Reply;
    assert.equal(y.error?.tag, "OverloadedError", JSON.stringify(y));
    assert.match(y.error!.message, /1 calls are in flight on HTTP \(all HTTP clients together\)/);
    // the value arrives: x runs and ends
    await node.handler(encodeMessage({ t: "store", oid: "s:later", value: 5 }), http(3));
    assert.deepStrictEqual(decode((await x)!), { t: "result", ok: true, value: 5 });
    // none runs now: one call is let in, and the next is refused by the bound (a count left wrong
    // by x would let both in, or neither)
    const z = node.handler(held1("z"), http(4));
    await turn();
    const w = decode((await node.handler(held1("w"), http(5)))!) as Reply;
    assert.equal(w.error?.tag, "OverloadedError", JSON.stringify(w));
    held.open();
    assert.deepStrictEqual(decode((await z)!), { t: "result", ok: true, value: "z" });
  } finally {
    held.open();
    await node.drain();
  }
});
