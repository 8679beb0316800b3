// Bounds on what one authenticated client can make a node hold, and call ids that belong to the
// connection that sent them: against real `thinkagain serve` processes on this runtime (the suite
// runs on Bun and on Deno).
import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import * as ta from "../mod.ts";
import { startNodeProcess } from "../adapters/_test_nodes.ts";
import { eventually, rejection, settlesWithin } from "../core/_test_utils.ts";
import { decode, errorFromWire } from "../core/codec.ts";
import { decodeReply, encodeMessage, type ResultMessage } from "./protocol.ts";
import type { TransportConnection } from "./transport.ts";
import { webSocketTransport } from "./websocket.ts";
import {
  FRAME_HEADER_BYTES,
  KIND_ERROR,
  KIND_PART,
  KIND_PART_END,
  KIND_REQUEST,
  readFrameId,
  writeHeader,
} from "./ws_framing.ts";

const APP = fileURLToPath(new URL("../examples/distributed_app.ts", import.meta.url));
const T = { timeout: 120_000 };

async function pong(url: string): Promise<{ activeCalls: number; instances: number }> {
  const conn = await webSocketTransport.connect(url);
  try {
    return decode(await conn.request(encodeMessage({ t: "ping" }))) as { activeCalls: number; instances: number };
  } finally {
    await conn.close();
  }
}

async function createSolo(conn: TransportConnection, owner?: string): Promise<string> {
  const m = { t: "create", service: "Solo", args: [], gpus: [], replica: 0, ...(owner ? { owner } : {}) };
  return decodeReply<{ t: "created"; id: string }>(await conn.request(encodeMessage(m)), "created").id;
}

const work = (id: string, cid: string, ms: number) =>
  encodeMessage({ t: "call", cid, id, method: "work", args: [ms, 1] });

test("NodeServer cancels the calls of a WebSocket connection when it closes", T, async () => {
  // a lease far longer than the wait, so that it is the closed connection that stops the call
  const n = await startNodeProcess(APP, ["--port", "0", "--name", "n1", "--lease-ms", "600000"]);
  try {
    const conn = await webSocketTransport.connect(n.url);
    const id = await createSolo(conn, "driver-a");
    const never = conn.request(work(id, "c1", 600_000)).catch(() => {});
    assert.ok(await eventually(async () => (await pong(n.url)).activeCalls === 1), "the call runs");
    await conn.close();
    await never;
    assert.ok(
      await eventually(async () => (await pong(n.url)).activeCalls === 0, 30_000),
      "and stops with its connection",
    );
  } finally {
    n.kill();
    await n.exited;
  }
});

test("NodeServer runs nothing sent one-way but cancel: a one-way HTTP call is refused", T, async () => {
  const n = await startNodeProcess(APP, ["--port", "0", "--name", "n1"]);
  try {
    const conn = await webSocketTransport.connect(n.url);
    const id = await createSolo(conn, "driver-a");
    const res = await fetch(`${n.url}/rpc`, {
      method: "POST",
      headers: { "content-type": "application/cbor", "x-thinkagain-notify": "1" },
      body: work(id, "oneway", 600_000) as Uint8Array<ArrayBuffer>,
    });
    assert.equal(res.status, 202);
    await res.arrayBuffer();
    // the one-way frame was handled before the ping that follows it is answered
    assert.equal((await pong(n.url)).activeCalls, 0, "no call runs for a one-way frame");
    await conn.close();
  } finally {
    n.kill();
    await n.exited;
  }
});

test("NodeServer gives an instance created without an owner a lease of its own", T, async () => {
  const n = await startNodeProcess(APP, ["--port", "0", "--name", "n1", "--lease-ms", "300"]);
  try {
    const conn = await webSocketTransport.connect(n.url);
    await createSolo(conn);
    assert.equal((await pong(n.url)).instances, 1);
    assert.ok(await eventually(async () => (await pong(n.url)).instances === 0, 30_000), "it expires unused");
    await conn.close();
  } finally {
    n.kill();
    await n.exited;
  }
});

test("NodeServer refuses calls past --max-calls-per-connection with OverloadedError", T, async () => {
  const n = await startNodeProcess(APP, ["--port", "0", "--name", "n1", "--max-calls-per-connection", "3"]);
  try {
    const conn = await webSocketTransport.connect(n.url);
    const id = await createSolo(conn, "driver-a");
    const running = [1, 2, 3].map((i) => conn.request(work(id, `c${i}`, 600_000)).catch(() => {}));
    assert.ok(await eventually(async () => (await pong(n.url)).activeCalls === 3));
    // refused with a reply saying so (not an error frame), which the driver rebuilds as the error
    const refused = decodeReply<ResultMessage>(await conn.request(work(id, "c4", 1)), "result");
    assert.ok(!refused.ok);
    const e = errorFromWire(refused.error);
    assert.ok(e instanceof ta.OverloadedError, `expected OverloadedError, got ${e}`);
    assert.match(e.message, /3 calls are in flight on this connection.*maxCallsPerConnection 3/);
    // another connection has its own bound
    const other = await webSocketTransport.connect(n.url);
    const r = decodeReply<ResultMessage>(await other.request(work(id, "c1", 1)), "result");
    assert.ok(r.ok);
    await other.close();
    await conn.close();
    await Promise.all(running);
  } finally {
    n.kill();
    await n.exited;
  }
});

test(
  "NodeServer call ids belong to their connection: another client's cancel of the same id changes nothing",
  T,
  async () => {
    const n = await startNodeProcess(APP, ["--port", "0", "--name", "n1"]);
    try {
      const a = await webSocketTransport.connect(n.url);
      const b = await webSocketTransport.connect(n.url);
      const id = await createSolo(a, "driver-a");
      // B cancels ids A uses: one A's call runs under, one A has not sent yet
      b.notify(encodeMessage({ t: "cancel", cid: "later" }));
      const running = a.request(work(id, "shared", 600_000));
      assert.ok(await eventually(async () => (await pong(n.url)).activeCalls === 1));
      b.notify(encodeMessage({ t: "cancel", cid: "shared" }));
      await b.request(encodeMessage({ t: "ping" })); // B's cancel was handled
      assert.equal((await pong(n.url)).activeCalls, 1, "A's call still runs");
      const later = decodeReply<ResultMessage>(await a.request(work(id, "later", 1)), "result");
      assert.ok(later.ok, "A's call was not cancelled in advance by B");
      // A's own cancel still works
      a.notify(encodeMessage({ t: "cancel", cid: "shared" }));
      const out = decodeReply<ResultMessage>(await running, "result");
      assert.ok(!out.ok && out.error.tag === "CancelledError");
      await a.close();
      await b.close();
    } finally {
      n.kill();
      await n.exited;
    }
  },
);

/** A raw WebSocket to the node, with the frames and the close it gets. */
async function rawSocket(url: string): Promise<{ ws: WebSocket; messages: Uint8Array[]; closed: Promise<void> }> {
  const ws = new WebSocket(url.replace(/^http/, "ws") + "/ws", "thinkagain.v1");
  ws.binaryType = "arraybuffer";
  const messages: Uint8Array[] = [];
  ws.onmessage = (e) => messages.push(new Uint8Array(e.data as ArrayBuffer));
  const closed = new Promise<void>((resolve) => ws.addEventListener("close", () => resolve()));
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  return { ws, messages, closed };
}

test("a node holds at most a mid-sized message in pieces per connection", T, async () => {
  const n = await startNodeProcess(APP, ["--port", "0", "--name", "n1"]);
  try {
    const { ws, messages } = await rawSocket(n.url);
    // 100 pieces of 960 bytes: the first starts a request frame (id 7); far past what a client cuts
    for (let i = 0; i < 100; i++) {
      const piece = new Uint8Array(FRAME_HEADER_BYTES + 960);
      writeHeader(piece, i === 99 ? KIND_PART_END : KIND_PART, 0);
      if (i === 0) writeHeader(piece.subarray(FRAME_HEADER_BYTES), KIND_REQUEST, 7);
      ws.send(piece);
    }
    const isError = (m: Uint8Array) => m[0] === KIND_ERROR && readFrameId(m) === 7;
    assert.ok(await eventually(() => messages.some(isError), 30_000), "the request is answered");
    const err = decode(messages.find(isError)!.subarray(FRAME_HEADER_BYTES)) as { tag: string; message: string };
    assert.equal(err.tag, "TransportError");
    assert.match(err.message, /sent in pieces.*at most 65535 bytes/);
    ws.close();
  } finally {
    n.kill();
    await n.exited;
  }
});

test(
  "a node's runtime reads no WebSocket message far past --max-frame-bytes: it closes the connection",
  T,
  async () => {
    const n = await startNodeProcess(APP, ["--port", "0", "--name", "n1", "--max-frame-bytes", "65536"]);
    try {
      const { ws, messages, closed } = await rawSocket(n.url);
      const big = new Uint8Array(FRAME_HEADER_BYTES + 4 * 1024 * 1024);
      writeHeader(big, KIND_REQUEST, 9);
      ws.send(big);
      // the runtime closed the connection rather than take 4 MiB in
      assert.ok(await settlesWithin(closed, 30_000), "the connection was closed");
      assert.equal(messages.length, 0, "nothing was read, so nothing was answered");
      assert.equal((await pong(n.url)).activeCalls, 0, "the node still serves");
    } finally {
      n.kill();
      await n.exited;
    }
  },
);

const NODE_APP = fileURLToPath(new URL("./_test_node_app.ts", import.meta.url));

test("a node gives its own GPUs and never over-commits them, whatever ids a create asks for", T, async () => {
  const n = await startNodeProcess(NODE_APP, ["--port", "0", "--name", "n1", "--gpus", "2"]);
  try {
    const conn = await webSocketTransport.connect(n.url);
    let cid = 0;
    const create = async (service: string, gpus: number[]) =>
      decodeReply<{ t: "created"; id: string }>(
        await conn.request(encodeMessage({ t: "create", service, args: [], gpus, replica: 0, owner: "driver-a" })),
        "created",
      ).id;
    const gpusOf = async (id: string) => {
      const r = decodeReply<ResultMessage>(
        await conn.request(encodeMessage({ t: "call", cid: `g${++cid}`, id, method: "gpus", args: [] })),
        "result",
      );
      assert.ok(r.ok);
      return r.value as number[];
    };
    // two 2-GPU services on a 2-GPU node: [0,0] gets both GPUs, [1,1] is refused
    const pair = await create("GpuPair", [0, 0]);
    assert.deepEqual(await gpusOf(pair), [0, 1]);
    const refused = await rejection(create("GpuPair", [1, 1]));
    assert.ok(refused instanceof ta.PlacementError, `expected PlacementError, got ${refused}`);
    assert.match(refused.message, /needs 2 GPUs/);
    await conn.request(encodeMessage({ t: "destroy", id: pair }));
    // half a GPU asked of GPU 7, which does not exist, lands on a GPU that does
    const halves = [await create("GpuHalf", [7])];
    assert.deepEqual(await gpusOf(halves[0]), [0]);
    // three more halves asked of GPU 0: GPU 0 holds two, the others go to GPU 1; a fifth fits nowhere
    for (let i = 0; i < 3; i++) halves.push(await create("GpuHalf", [0]));
    assert.deepEqual(await Promise.all(halves.map(gpusOf)), [[0], [0], [1], [1]]);
    const full = await rejection(create("GpuHalf", [0]));
    assert.ok(full instanceof ta.PlacementError, `expected PlacementError, got ${full}`);
    await conn.close();
  } finally {
    n.kill();
    await n.exited;
  }
});

test("a node's callable surface has no lifecycle methods, and a create's replica must be an index", T, async () => {
  const n = await startNodeProcess(NODE_APP, ["--port", "0", "--name", "n1"]);
  try {
    const conn = await webSocketTransport.connect(n.url);
    const create = (replica: unknown) =>
      conn.request(encodeMessage({ t: "create", service: "Closable", args: [], gpus: [], replica, owner: "driver-a" }));
    const id = decodeReply<{ t: "created"; id: string }>(await create(0), "created").id;
    const call = (method: string) => conn.request(encodeMessage({ t: "call", cid: method, id, method, args: [] }));
    for (const method of ["close", "dispose", "constructor"]) {
      const e = await rejection(call(method));
      assert.ok(e instanceof ta.ProtocolError, `${method}: expected ProtocolError, got ${e}`);
      assert.match(e.message, new RegExp(`has no method "${method}"`));
    }
    const r = decodeReply<ResultMessage>(await call("ping"), "result");
    assert.ok(r.ok && r.value === "open", "the instance was not disposed by a caller");
    for (const replica of [-5, 1e308, 1.5, "0"]) {
      const e = await rejection(create(replica));
      assert.ok(e instanceof ta.ProtocolError, `replica ${replica}: expected ProtocolError, got ${e}`);
      assert.match(e.message, /replica must be a replica index, an integer from 0 to 999999/);
    }
    await conn.close();
  } finally {
    n.kill();
    await n.exited;
  }
});
