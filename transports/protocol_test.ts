// Replies are validated like requests: a node → driver message is checked field by field, and a
// driver facing a broken or hostile node (garbage, mutated and wrongly shaped replies, decoder
// bombs; over real WebSocket and HTTP sockets) fails those calls with ProtocolError, never hangs
// or crashes, and works again once the node answers properly.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../mod.ts";
import { encode } from "../core/codec.ts";
import { Solo } from "../examples/distributed_app.ts";
import { startRealServer } from "./_test_servers.ts";
import {
  type CallMessage,
  decodeDriverMessage,
  decodeNodeMessage,
  decodeReply,
  encodeMessage,
  PROTOCOL_VERSION,
  type ResultMessage,
  type WelcomeMessage,
} from "./protocol.ts";

const T = { timeout: 120_000 };

const WELCOME = {
  t: "welcome",
  v: PROTOCOL_VERSION,
  node: "fake",
  session: "s1",
  gpus: 0,
  cpus: null,
  services: ["Solo"],
  ops: [],
  leaseMs: 0,
};

test("decodeNodeMessage accepts every reply a node sends and refuses malformed ones with ProtocolError", () => {
  const good = [
    WELCOME,
    { ...WELCOME, cpus: 8, gpus: 2, leaseMs: undefined },
    { t: "created", id: "i1", session: "s1", leaseMs: 30_000 },
    { t: "result", ok: true, value: { any: ["thing"] } },
    { t: "result", ok: true },
    { t: "result", ok: false, error: { tag: "ProtocolError", message: "no", data: {} } },
    { t: "destroyed" },
    { t: "pong", node: "n1", activeCalls: 0, instances: 2, expiredInstances: 0, leaseMs: 100 },
    { t: "pong" },
    { t: "chunk", items: [1, "two", new Uint8Array([3])], done: false },
    { t: "chunk", items: [], done: true },
    { t: "chunk", items: [1], done: true, error: { tag: "OpExecutionError", message: "boom", data: {} } },
  ];
  for (const m of good) assert.equal(decodeNodeMessage(encodeMessage(m)).t, m.t, JSON.stringify(m));
  // a node's store bound comes through (the driver has dropped refs collected within it)
  const bounded = decodeNodeMessage(encodeMessage({ ...WELCOME, objectStoreBytes: 1024 })) as WelcomeMessage;
  assert.equal(bounded.objectStoreBytes, 1024);
  // only the protocol's fields come through
  const extra = decodeNodeMessage(encodeMessage({ ...WELCOME, injected: "x" })) as unknown as Record<string, unknown>;
  assert.equal(extra.injected, undefined);
  const bad: unknown[] = [
    null,
    [1, 2],
    "welcome",
    {},
    { t: "welcomed" },
    { t: "hello", v: PROTOCOL_VERSION },
    { ...WELCOME, v: 1 }, // before streams
    { ...WELCOME, v: 2 }, // before the data plane
    { ...WELCOME, v: 3 }, // before hand-offs (a call's publish)
    { ...WELCOME, v: PROTOCOL_VERSION + 1 },
    { ...WELCOME, node: 5 },
    { ...WELCOME, node: "" },
    { ...WELCOME, session: undefined },
    { ...WELCOME, gpus: -1 },
    { ...WELCOME, gpus: 1.5 },
    { ...WELCOME, cpus: "8" },
    { ...WELCOME, services: "Solo" },
    { ...WELCOME, services: [1] },
    { ...WELCOME, ops: [""] },
    { ...WELCOME, ops: ["x".repeat(513)] },
    { ...WELCOME, leaseMs: -5 },
    { ...WELCOME, leaseMs: "30" },
    { ...WELCOME, objectStoreBytes: -1 },
    { ...WELCOME, objectStoreBytes: "1024" },
    { t: "created" },
    { t: "created", id: 7, session: "s" },
    { t: "created", id: "i", session: "s", leaseMs: NaN },
    { t: "result" },
    { t: "result", ok: "yes", value: 1 },
    { t: "result", ok: false },
    { t: "result", ok: false, error: "boom" },
    { t: "result", ok: false, error: { message: "no tag" } },
    { t: "pong", activeCalls: -1 },
    { t: "pong", node: 3 },
    { t: "chunk", done: true },
    { t: "chunk", items: "abc", done: false },
    { t: "chunk", items: [], done: "no" },
    { t: "chunk", items: [], done: true, error: "boom" },
  ];
  for (const m of bad) {
    assert.throws(() => decodeNodeMessage(encodeMessage(m)), ta.ProtocolError, JSON.stringify(m));
  }
  assert.throws(
    () => decodeReply<ResultMessage>(encodeMessage({ t: "destroyed" }), "result"),
    /Expected a "result" reply, got "destroyed"/,
  );
});

test("decodeDriverMessage reads credit and a call's window, and refuses malformed ones with ProtocolError", () => {
  assert.deepEqual(decodeDriverMessage(encodeMessage({ t: "credit", cid: "c1", items: 8, bytes: 1024 })), {
    t: "credit",
    cid: "c1",
    items: 8,
    bytes: 1024,
  });
  const call = decodeDriverMessage(
    encodeMessage({ t: "call", cid: "c1", op: "gen", args: [], creditItems: 16, creditBytes: 4096 }),
  );
  assert.equal(call.t === "call" && call.creditItems, 16);
  assert.equal(call.t === "call" && call.creditBytes, 4096);
  for (
    const m of [
      { t: "credit", items: 1, bytes: 0 },
      { t: "credit", cid: "c", items: -1, bytes: 0 },
      { t: "credit", cid: "c", items: 1.5, bytes: 0 },
      { t: "credit", cid: "c", items: 1, bytes: "9" },
      { t: "call", cid: "c", op: "gen", args: [], creditItems: -4 },
      { t: "call", cid: "c", op: "gen", args: [], creditBytes: 2 ** 60 },
    ]
  ) {
    assert.throws(() => decodeDriverMessage(encodeMessage(m)), /credit|items|bytes|cid/, JSON.stringify(m));
  }
  assert.throws(
    () => decodeDriverMessage(encodeMessage({ t: "hello", v: 1 })),
    new RegExp(`Protocol version 1 is not supported; this node speaks ${PROTOCOL_VERSION}`),
  );
});

test("protocol 6: a driver of protocol 5 (which sends large arrays in the frame) is refused at its hello, saying both versions", () => {
  assert.equal(PROTOCOL_VERSION, 6);
  for (const v of [4, 5]) {
    assert.throws(
      () => decodeDriverMessage(encodeMessage({ t: "hello", v })),
      new RegExp(`Protocol version ${v} is not supported; this node speaks 6`),
    );
    assert.throws(
      () => decodeNodeMessage(encodeMessage({ ...WELCOME, v })),
      new RegExp(`The node speaks protocol version ${v}; this driver speaks 6`),
    );
  }
  // a store names an id starting with "s:" and carries a value
  const store = { t: "store", oid: "s:x", value: new Float32Array(2), owner: "o" };
  assert.deepEqual(decodeDriverMessage(encodeMessage(store)), store);
  for (const bad of [{ ...store, oid: "x" }, { ...store, oid: "" }, { t: "store", oid: "s:x" }]) {
    assert.throws(() => decodeDriverMessage(encodeMessage(bad)), /"store"/, JSON.stringify(bad));
  }
  // a call's publish is an id starting with "p:"
  const call = { t: "call", cid: "c", op: "f", args: [1] };
  assert.equal((decodeDriverMessage(encodeMessage({ ...call, publish: "p:x" })) as CallMessage).publish, "p:x");
  for (const publish of ["x", "", 5, "p:" + "x".repeat(600)]) {
    assert.throws(() => decodeDriverMessage(encodeMessage({ ...call, publish })), /publish/, String(publish));
  }
  // a free may say its objects' refs were found dropped by the driver's collector (a boolean)
  const free = { t: "free", oids: ["o1"], cids: [] };
  assert.deepEqual(decodeDriverMessage(encodeMessage(free)), free);
  assert.deepEqual(decodeDriverMessage(encodeMessage({ ...free, collected: true })), { ...free, collected: true });
  for (const collected of ["yes", 1, null]) {
    assert.throws(
      () => decodeDriverMessage(encodeMessage({ ...free, collected })),
      (e: unknown) => e instanceof ta.ProtocolError && /"free" collected must be a boolean/.test(e.message),
      String(collected),
    );
  }
});

/** The head of a CBOR item: major type 0–7 and its argument, in the fewest bytes. */
function head(major: number, n: number): number[] {
  const m = major << 5;
  if (n < 24) return [m | n];
  if (n < 0x100) return [m | 24, n];
  if (n < 0x10000) return [m | 25, n >> 8, n & 0xff];
  return [m | 26, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
}

/** A result frame whose value is `bomb` (raw CBOR bytes), spliced in where a marker string was. */
function resultWith(bomb: number[]): Uint8Array {
  const template = encode({ t: "result", ok: true, value: "@@@@" });
  const at = template.findIndex((_, i) => template[i] === 0x64 && template[i + 1] === 0x40 && template[i + 4] === 0x40);
  return new Uint8Array([...template.subarray(0, at), ...bomb, ...template.subarray(at + 5)]);
}

const BOMBS: [string, number[], RegExp][] = (() => {
  const bigint = [...head(6, 2), ...head(2, 128 * 1024), ...new Uint8Array(128 * 1024).fill(0xff)];
  const lol = [...head(4, 10), ...head(6, 28), ...head(4, 10)];
  for (let i = 0; i < 10; i++) lol.push(...head(3, 3), 0x6c, 0x6f, 0x6c);
  for (let level = 1; level < 10; level++) {
    lol.push(...head(6, 28), ...head(4, 10));
    for (let i = 0; i < 10; i++) lol.push(...head(6, 29), ...head(0, level - 1));
  }
  const deep = [...new Array(100_000).fill(0x81), 0x00];
  const record = [...head(6, 57344), ...head(4, 0)];
  return [
    ["a 128 KiB bigint", bigint, /at most 64 bytes/],
    ["a billion laughs (shared references)", lol, /\b28\b/],
    ["arrays 100,000 deep", deep, /nesting deeper than 256/],
    ["a cbor-x record", record, /57344/],
  ];
})();

/** A fake node on a real socket: answers like a node in "honest" mode, else as `reply` says. */
async function fakeNode(scheme: "ws" | "http") {
  let reply: ((frame: Uint8Array, honest: () => Uint8Array | undefined) => Uint8Array | undefined) | undefined;
  let instances = 0;
  const honest = (frame: Uint8Array): Uint8Array | undefined => {
    const m = decodeDriverMessage(frame);
    switch (m.t) {
      case "hello":
        return encodeMessage(WELCOME);
      case "create":
        return encodeMessage({ t: "created", id: `i${++instances}`, session: "s1", leaseMs: 0 });
      case "call":
        return encodeMessage({ t: "result", ok: true, value: m.args[0] });
      case "destroy":
        return encodeMessage({ t: "destroyed" });
      case "ping":
        return encodeMessage({ t: "pong", node: "fake" });
      default:
        return undefined;
    }
  };
  const server = await startRealServer(
    (frame) => {
      if (reply === undefined) return honest(frame);
      return reply(frame, () => honest(frame));
    },
    {},
    scheme,
  );
  return {
    endpoint: server.endpoint,
    close: () => server.close(),
    answer(with_: typeof reply) {
      reply = with_;
    },
  };
}

for (const scheme of ["ws", "http"] as const) {
  test(
    `a driver facing garbage, wrongly shaped and mutated replies over ${scheme}: calls fail with ProtocolError, none hangs, the driver stays usable`,
    T,
    async () => {
      const node = await fakeNode(scheme);
      try {
        await using mesh = new ta.Mesh([new ta.MeshNode("fake", { endpoint: node.endpoint })]);
        let seed = 4242;
        const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
        const shapes: unknown[] = [
          null,
          [1, 2],
          "result",
          { t: "result" },
          { t: "result", ok: "yes" },
          { t: "result", ok: false, error: 5 },
          { t: "created", id: 5 },
          { ...WELCOME, services: 5 },
          { t: "welcome" },
          { t: "pong", activeCalls: "many" },
          { t: "nonsense" },
        ];
        // an instance made while the node is honest: each call below gets a reply of its own
        const solo = Solo.init();
        assert.equal(await mesh.run(() => solo.echo.go(0)), 0);
        // 1. garbage, wrong shapes and bombs: every call fails with ProtocolError, and so does making
        // an instance (tried again by its next call)
        let n = 0;
        node.answer(() => {
          const k = n++ % 3;
          if (k === 0) return Uint8Array.from({ length: 1 + Math.floor(rand() * 200) }, () => Math.floor(rand() * 256));
          if (k === 1) return encodeMessage(shapes[Math.floor(rand() * shapes.length)]);
          return resultWith(BOMBS[Math.floor(rand() * BOMBS.length)][1]);
        });
        const outcomes = await mesh.run(() =>
          Promise.allSettled([
            ...Array.from({ length: 200 }, (_, i) => solo.echo.go(i)),
            ...Array.from({ length: 50 }, (_, i) => Solo.init().echo.go(i)),
          ])
        );
        for (const [i, o] of outcomes.entries()) {
          assert.equal(o.status, "rejected", `call ${i} answered with garbage succeeded`);
          const reason = (o as PromiseRejectedResult).reason;
          assert.ok(reason instanceof ta.ProtocolError, `call ${i}: ${String(reason)}`);
        }
        // 2. honest replies mutated in a few bytes: each call settles (with some value or an error)
        node.answer((_, real) => {
          const frame = real();
          if (frame === undefined) return undefined;
          const bytes = frame.slice(0, Math.max(1, Math.floor(rand() * (frame.byteLength + 1))));
          for (let k = 0; k < 2; k++) bytes[Math.floor(rand() * bytes.length)] = Math.floor(rand() * 256);
          return bytes;
        });
        const mutated = await mesh.run(() =>
          Promise.allSettled(Array.from({ length: 300 }, (_, i) => solo.echo.go(i)))
        );
        let protocolErrors = 0;
        for (const o of mutated) {
          if (o.status === "rejected") {
            assert.ok(o.reason instanceof Error, `rejected with a non-error ${String(o.reason)}`);
            if (o.reason instanceof ta.ProtocolError) protocolErrors++;
          }
        }
        assert.ok(protocolErrors > 100, `${protocolErrors} of 300 mutated replies were refused as malformed`);
        // 3. the node answers properly again: so does the driver
        node.answer(undefined);
        assert.equal(await mesh.run(() => solo.echo.go("still usable")), "still usable");
        assert.deepEqual(await mesh.run(() => Solo.init().echo.go([1, 2])), [1, 2]);
      } finally {
        await node.close();
      }
    },
  );
}

test("a driver refuses decoder bombs in a node's reply with ProtocolError, and goes on", T, async () => {
  const node = await fakeNode("ws");
  try {
    await using mesh = new ta.Mesh([new ta.MeshNode("fake", { endpoint: node.endpoint })]);
    const solo = Solo.init();
    assert.equal(await mesh.run(() => solo.echo.go(1)), 1);
    for (const [name, bomb, reason] of BOMBS) {
      node.answer((frame, real) => (decodeDriverMessage(frame).t === "call" ? resultWith(bomb) : real()));
      const err = await mesh.run(() => solo.echo.go(2)).then(() => undefined, (e) => e);
      assert.ok(err instanceof ta.ProtocolError, `${name}: got ${String(err)}`);
      assert.match(err.message, reason, name);
      node.answer(undefined);
      assert.equal(await mesh.run(() => solo.echo.go(name)), name, `usable after ${name}`);
    }
  } finally {
    await node.close();
  }
});
