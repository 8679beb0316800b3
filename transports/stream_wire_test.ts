import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import * as ta from "../mod.ts";
import { type NodeProcess, type Runtime, startNodeProcess } from "../adapters/_test_nodes.ts";
import { eventually, rejection } from "../core/_test_utils.ts";
import {
  streamArrays,
  streamBadItem,
  streamCount,
  streamCountSync,
  streamFailing,
  streamFailingSync,
  streamGated,
  StreamGen,
  streamOpen,
  streamSeen,
  StreamStuck,
  streamSum,
} from "./_test_stream_app.ts";
import { NodeServer } from "./node_server.ts";
import { serveInMemory } from "./in_memory.ts";
import { Stream } from "../core/stream.ts";
import { claimHeadroom, decode, FRAME_HEADROOM } from "../core/codec.ts";
import { decodeReply, encodeMessage, PROTOCOL_VERSION } from "./protocol.ts";
import { ProtocolError } from "../core/errors.ts";
import { smallCopiesAreCheap } from "../core/_runtime.ts";
import { decodeChunk, DEFAULT_STREAM_WINDOW, RemoteChunks, StreamOutlets } from "./stream_wire.ts";
import { CHUNK_ITEMS } from "./stream_chunk.ts";
import type { ChunkMessage } from "./protocol.ts";

const APP = fileURLToPath(new URL("./_test_stream_app.ts", import.meta.url));
const T = { timeout: 180_000 };

async function withNode(
  runtime: Runtime,
  body: (mesh: ta.Mesh, node: NodeProcess) => Promise<void>,
  options: ta.MeshOptions = {},
): Promise<void> {
  const node = await startNodeProcess(APP, ["--port", "0", "--name", "n1"], { runtime });
  const mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: `ws://127.0.0.1:${node.port}` })], options);
  try {
    await mesh.run(() => body(mesh, node));
  } finally {
    await mesh.close();
    node.kill("SIGKILL");
    await node.exited;
  }
}

async function collect<T>(ref: PromiseLike<AsyncIterable<T>>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of await ref) out.push(x);
  return out;
}

for (const runtime of ["bun", "deno"] as const) {
  test(
    `streams over WebSocket to a ${runtime} node: order kept over 100k items, typed arrays, an error after its items`,
    T,
    async () => {
      await withNode(runtime, async () => {
        const items = await collect(streamCount.go(100_000));
        assert.equal(items.length, 100_000);
        assert.ok(items.every((x, i) => x === i), "every item in order");
        const arrays = await collect(streamArrays.go(300));
        assert.equal(arrays.length, 300);
        assert.ok(arrays.every((a, i) => a instanceof Float64Array && a.length === 4 && a[3] === i));
        const got: number[] = [];
        const err = await rejection((async () => {
          for await (const x of await streamFailing.go(5)) got.push(x);
        })());
        assert.deepEqual(got, [0, 1, 2, 3, 4]);
        assert.ok(err instanceof ta.OpExecutionError, String(err));
        assert.match((err as Error).message, /boom after 5/);
        // an item that cannot travel: the items before it, then the error naming the call and the item
        const before: unknown[] = [];
        const badItem = await rejection((async () => {
          for await (const x of await streamBadItem.go()) before.push(x);
        })());
        assert.deepEqual(before, [1, 2]);
        assert.ok(badItem instanceof ta.OpExecutionError, String(badItem));
        assert.match(
          (badItem as Error).message,
          /^Op "streamBadItem" failed: TypeError: item 2 of the stream cannot be sent/,
        );
        // a stream's ref passed on to another call on the node that makes it: that call fails, naming
        // the argument, and no item is lost to it (they all reach this process, which made the call)
        for (const n of [3, 100]) {
          const made = streamCount.go(n);
          const passed = await rejection(streamSum.go(made));
          assert.ok(passed instanceof ta.OpExecutionError, String(passed));
          assert.ok((passed as Error).cause instanceof TypeError, String((passed as Error).cause));
          assert.match((passed as Error).message, /argument 0 is the stream "streamCount" returns/);
          assert.deepEqual(await collect(made), Array.from({ length: n }, (_, i) => i));
        }
      });
    },
  );

  test(
    `streams over WebSocket to a ${runtime} node from a generator (function*): order kept over 100k items, an error after its items, at most the window ahead, finally run on break`,
    T,
    async () => {
      const window = 64;
      await withNode(runtime, async () => {
        // typed as the async generator it is at run time
        const stream: AsyncGenerator<number, undefined, undefined> = await streamCountSync.go(100_000);
        const items: number[] = [];
        for await (const x of stream) items.push(x);
        assert.equal(items.length, 100_000);
        assert.ok(items.every((x, i) => x === i), "every item in order");
        const got: number[] = [];
        const err = await rejection((async () => {
          for await (const x of await streamFailingSync.go(5)) got.push(x);
        })());
        assert.deepEqual(got, [0, 1, 2, 3, 4]);
        assert.ok(err instanceof ta.OpExecutionError, String(err));
        assert.match((err as Error).message, /sync boom after 5/);
        // a producer that never waits still runs only as far as its consumer's credit
        const gen = StreamGen.init();
        await gen.reset.go();
        const it = (await gen.countSync.go(1_000_000))[Symbol.asyncIterator]();
        let consumed = 0;
        for (; consumed < 200; consumed++) await it.next();
        const { produced } = await streamSeen.go();
        assert.ok(produced >= consumed && produced <= consumed + window, `produced ${produced}, consumed ${consumed}`);
        await it.return!(undefined);
        assert.ok(await eventually(async () => (await streamSeen.go()).finallyRan === 1, 30_000), "finally ran");
        // the instance's slot was given back on the node
        assert.deepEqual(await collect(gen.countSync.go(3)), [0, 1, 2]);
      }, { streamWindow: { items: window } });
    },
  );

  test(
    `streams over WebSocket to a ${runtime} node: a consumer's break and ref.cancel() run the generator's finally on the node`,
    T,
    async () => {
      await withNode(runtime, async () => {
        const gen = StreamGen.init();
        await gen.reset.go();
        for await (const x of await gen.count.go(1_000_000)) if (x === 10) break;
        assert.ok(await eventually(async () => (await streamSeen.go()).finallyRan === 1, 30_000), "finally ran");
        const ref = gen.count.go(1_000_000);
        const it = (await ref)[Symbol.asyncIterator]();
        await it.next();
        assert.equal(ref.cancel(), true);
        assert.ok(await eventually(async () => (await streamSeen.go()).finallyRan === 2, 30_000), "finally ran");
        const cancelled = await rejection(it.next());
        assert.ok(cancelled instanceof ta.CancelledError, String(cancelled));
        assert.match((cancelled as Error).message, /^Call "StreamGen\.count" was cancelled/);
        // the instance's slot was given back on the node
        assert.deepEqual(await collect(gen.count.go(3)), [0, 1, 2]);
      });
    },
  );

  test(
    `streams over WebSocket to a ${runtime} node: two streams on one maxConcurrency: 1 instance do not interleave`,
    T,
    async () => {
      await withNode(runtime, async () => {
        const gen = StreamGen.init();
        await gen.reset.go();
        const drain = async (ref: PromiseLike<AsyncIterable<string>>) => {
          const out: string[] = [];
          for await (const x of await ref) out.push(x);
          return out;
        };
        const [a, b] = await Promise.all([drain(gen.tagged.go("a", 5)), drain(gen.tagged.go("b", 5))]);
        assert.deepEqual([a, b], [["a0", "a1", "a2", "a3", "a4"], ["b0", "b1", "b2", "b3", "b4"]]);
        // on the node, the second generator ran only once the first had ended (the consumer may take
        // their items in any order: each stream's items arrive ahead of it, within its window)
        const order = (await streamSeen.go()).log;
        assert.deepEqual(order, ["a0", "a1", "a2", "a3", "a4", "b0", "b1", "b2", "b3", "b4"]);
      });
    },
  );

  test(
    `streams over WebSocket to a ${runtime} node: a producer of 1M items to a slow consumer runs at most the window ahead`,
    T,
    async () => {
      const window = 64;
      await withNode(runtime, async () => {
        const gen = StreamGen.init();
        await gen.reset.go();
        const it = (await gen.count.go(1_000_000))[Symbol.asyncIterator]();
        let consumed = 0;
        for (let i = 0; i < 300; i++) {
          await it.next();
          consumed++;
          if (i % 50 === 0) {
            // the consumer is slow: it stops reading, and the producer must stop too
            const { produced } = await streamSeen.go();
            assert.ok(produced <= consumed + window, `produced ${produced} with ${consumed} consumed`);
          }
        }
        const { produced } = await streamSeen.go();
        assert.ok(produced >= consumed && produced <= consumed + window, `produced ${produced}, consumed ${consumed}`);
        await it.return!(undefined);
      }, { streamWindow: { items: window } });
    },
  );

  test(
    `streams over WebSocket to a ${runtime} node: a node killed mid-stream fails the consumer with NodeLostError`,
    T,
    async () => {
      await withNode(runtime, async (_mesh, node) => {
        const gen = StreamGen.init();
        const it = (await gen.count.go(1_000_000))[Symbol.asyncIterator]();
        await it.next();
        node.kill("SIGKILL");
        let err: unknown;
        try {
          for (;;) if ((await it.next()).done) break;
        } catch (e) {
          err = e;
        }
        assert.ok(err instanceof ta.NodeLostError, String(err));
      }, { streamWindow: { items: 16 } });
    },
  );
  test(
    `streams over WebSocket to a ${runtime} node: mesh.close() stops them, the generator's finally runs on the node, and their consumers get CancelledError mesh-closed`,
    T,
    async () => {
      const node = await startNodeProcess(APP, ["--port", "0", "--name", "n1"], { runtime });
      const endpoint = `ws://127.0.0.1:${node.port}`;
      const check = new ta.Mesh([new ta.MeshNode("n1", { endpoint })]);
      try {
        const mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint })], { streamWindow: { items: 4 } });
        const [method, op] = await mesh.run(async () => {
          const gen = StreamGen.init();
          await gen.reset.go();
          return [await gen.count.go(1_000_000), await streamCount.go(1_000_000)];
        });
        const m = method[Symbol.asyncIterator](), o = op[Symbol.asyncIterator]();
        assert.deepEqual(await m.next(), { done: false, value: 0 });
        assert.deepEqual(await o.next(), { done: false, value: 0 });
        await mesh.close();
        for (const [it, kind] of [[m, "method"], [o, "op"]] as const) {
          const err = await rejection(it.next());
          assert.ok(err instanceof ta.CancelledError, String(err));
          assert.equal((err as ta.CancelledError).reason, "mesh-closed");
          assert.equal((err as ta.CancelledError).kind, kind);
        }
        assert.ok(
          await check.run(() => eventually(async () => (await streamSeen.go()).finallyRan === 1, 30_000)),
          "the generator's finally ran on the node",
        );
      } finally {
        await check.close();
        node.kill("SIGKILL");
        await node.exited;
      }
    },
  );

  test(
    `streams over WebSocket to a ${runtime} node: past the call's deadline the consumer gets TimeoutError and the generator's finally runs on the node`,
    T,
    async () => {
      await withNode(runtime, async () => {
        await StreamGen.init().reset.go();
        const it = (await StreamStuck.init().endless.go())[Symbol.asyncIterator]();
        assert.deepEqual(await it.next(), { done: false, value: 0 });
        // the consumer stops reading: the producer waits at a yield for credit, until the deadline
        assert.ok(await eventually(async () => (await streamSeen.go()).finallyRan === 1, 30_000), "finally ran");
        const err = await rejection(it.next());
        assert.ok(err instanceof ta.TimeoutError, String(err));
        // a method's stream: its deadline's error names a call, as a method's errors do
        assert.equal((err as ta.TimeoutError).kind, "method");
        assert.match((err as Error).message, /^Call "StreamStuck\.endless" did not finish within/);
      }, { streamWindow: { items: 4 } });
    },
  );

  test(
    `streams over WebSocket to a ${runtime} node: an item made while the producer then waits is sent when asked for, not held until the next`,
    T,
    async () => {
      await withNode(runtime, async () => {
        const it = (await streamGated.go())[Symbol.asyncIterator]();
        // item 1 is made before the consumer asks for more; then the producer waits for gate 1,
        // which opens only once item 1 has arrived here
        await streamOpen.go(0);
        assert.deepEqual(await it.next(), { done: false, value: 0 });
        assert.deepEqual(await it.next(), { done: false, value: 1 });
        await streamOpen.go(1);
        assert.deepEqual(await it.next(), { done: false, value: 2 });
        assert.equal((await it.next()).done, true);
      });
    },
  );
}

test("a stream over HTTP fails with an error saying streams need the WebSocket transport", T, async () => {
  const node = await startNodeProcess(APP, ["--port", "0", "--name", "n1"]);
  const mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: `http://127.0.0.1:${node.port}` })], {
    transport: "http",
  });
  try {
    const err = await mesh.run(() => rejection(streamCount.go(3)));
    assert.ok(err instanceof ta.OpExecutionError, String(err));
    assert.match((err as Error).message, /streams need the WebSocket transport/);
  } finally {
    await mesh.close();
    node.kill("SIGKILL");
    await node.exited;
  }
});

test(
  "a stream over an in-memory node: a mesh's window travels with the call, and a closed connection stops the producer",
  T,
  async () => {
    const node = new NodeServer({ name: "n1" });
    const server = serveInMemory("stream-wire-test", node.handler);
    const mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: "mem://stream-wire-test" })], {
      streamWindow: { items: 8, bytes: 1024 },
    });
    try {
      const items = await mesh.run(() => collect(streamCount.go(1000)));
      assert.equal(items.length, 1000);
      assert.ok(items.every((x, i) => x === i));
    } finally {
      await mesh.close();
      await node.drain();
      await server.close();
    }
  },
);

for (const how of ["its cancel", "its connection closing", "the node draining"] as const) {
  test(
    `a node's stream whose producer waits for its first item is stopped by ${how}: the call is answered, the producer's finally runs`,
    T,
    async () => {
      // until its first chunk leaves, a stream is its call's, and reached through the call's ref
      const node = new NodeServer({ name: "n1" });
      const closed = new AbortController();
      const peer = { transport: "websocket" as const, connectionId: 7, oneWay: false, signal: closed.signal };
      const gateK = how === "its cancel" ? 10 : how === "its connection closing" ? 11 : 12;
      let drained: Promise<void> | undefined;
      try {
        await node.handler(encodeMessage({ t: "hello", v: PROTOCOL_VERSION }), peer);
        const before = await streamSeen.go();
        let answer: Uint8Array | undefined;
        void Promise.resolve(
          node.handler(encodeMessage({ t: "call", cid: "c1", op: "streamLate", args: [gateK] }), peer),
        ).then((frame) => (answer = frame));
        assert.ok(await eventually(async () => (await streamSeen.go()).waiting === before.waiting + 1, 30_000));
        if (how === "its cancel") {
          await node.handler(encodeMessage({ t: "cancel", cid: "c1" }), { ...peer, oneWay: true });
        } else if (how === "its connection closing") closed.abort();
        // (a grace longer than the wait below: the stream is stopped at once, not once it is over)
        else drained = node.drain({ graceMs: 120_000 });
        // answered while the producer still waits at its gate: no item was made
        assert.ok(await eventually(() => answer !== undefined, 30_000), "the call was answered");
        const chunk = decodeReply<ChunkMessage>(answer!, "chunk");
        assert.deepEqual([chunk.items, chunk.done], [[], true]);
        assert.equal((await streamSeen.go()).produced, before.produced);
        // the gate opens: the producer goes on only to its first yield, where its finally runs
        await streamOpen.go(gateK);
        assert.ok(
          await eventually(async () => (await streamSeen.go()).finallyRan === before.finallyRan + 1, 30_000),
          "finally ran",
        );
        assert.equal((await streamSeen.go()).produced, before.produced + 1);
      } finally {
        await (drained ?? node.drain());
      }
    },
  );
}

test("a stream passed to an op on another node is refused with a TypeError naming the argument", T, async () => {
  const node = new NodeServer({ name: "n1" });
  const server = serveInMemory("stream-wire-arg-test", node.handler);
  const mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: "mem://stream-wire-arg-test" })]);
  try {
    const err = await mesh.run(async () => {
      const local = ta.op(async function* streamWireLocalItems() {
        yield 1;
        yield 2;
      });
      return await rejection(streamSum.go(local.go()));
    });
    assert.ok(err instanceof TypeError, String(err));
    assert.match(
      (err as Error).message,
      /^Cannot call op "streamSum" on node "n1": argument 0: a stream \(Stream\) cannot travel to another process/,
    );
    // a generator object passed as it is streams too, so it is refused the same way
    const genErr = await mesh.run(() =>
      rejection(streamSum.go((function* () {
        yield 1;
      })() as unknown as AsyncIterable<number>))
    );
    assert.ok(genErr instanceof TypeError, String(genErr));
    assert.match(
      (genErr as Error).message,
      /^Cannot call op "streamSum" on node "n1": argument 0: a stream \(.*\) cannot travel to another process/,
    );
    // its ref, sent before the stream was made: the node refuses it, and the items all come here
    const { made, passed } = await mesh.run(async () => {
      const made = streamCount.go(5);
      return { made, passed: await rejection(streamSum.go(made)) };
    });
    assert.ok(passed instanceof ta.OpExecutionError && passed.cause instanceof TypeError, String(passed));
    assert.match((passed as Error).message, /argument 0 is the stream "streamCount" returns/);
    assert.deepEqual(await collect(made), [0, 1, 2, 3, 4]);
  } finally {
    await mesh.close();
    await node.drain();
    await server.close();
  }
});

/** All chunks of `items` streamed by a StreamOutlets (no socket), credit granted per chunk as taken. */
async function outletFrames(items: unknown[], window = 4096): Promise<Uint8Array[]> {
  const outlets = new StreamOutlets();
  const stream = new Stream<unknown>((async function* () {
    yield* items;
  })());
  const frames: Uint8Array[] = [];
  let f = await outlets.open("k", stream, { name: "t", creditItems: window }, undefined);
  for (;;) {
    frames.push(f.slice());
    const m = decode(f) as { items: unknown[]; done: boolean };
    if (m.done) return frames;
    f = await outlets.credit("k", m.items.length, 1024);
  }
}

test("a node's chunk of small items written as they come is the frame encodeMessage makes of them", async () => {
  const bytes = (n: number, v: number) => new Uint8Array(n).fill(v);
  const items: unknown[] = [
    bytes(16, 1),
    "tok",
    bytes(0, 0),
    bytes(23, 2),
    bytes(24, 3),
    bytes(300, 4),
    bytes(4096, 5),
  ];
  items.push(7, -1.5);
  items.push(true, undefined, "x".repeat(300));
  const frames = await outletFrames(items);
  const got = frames.flatMap((f) => (decode(f) as { items: unknown[] }).items);
  assert.deepEqual(got, items);
  // each chunk byte for byte as encodeMessage writes it
  let at = 0;
  for (const f of frames) {
    const m = decode(f) as { items: unknown[]; done: boolean };
    const expected = encodeMessage({ t: "chunk", items: items.slice(at, at + m.items.length), done: m.done });
    assert.deepEqual(f, expected.slice());
    at += m.items.length;
  }
  // more than a chunk of 16-byte items: a first chunk of 16, then full ones, in order
  const many = Array.from({ length: CHUNK_ITEMS + 100 }, (_, i) => bytes(16, i & 0xff));
  const chunks = await outletFrames(many, DEFAULT_STREAM_WINDOW.items);
  const lengths = chunks.map((f) => (decode(f) as { items: unknown[] }).items.length);
  assert.deepEqual(lengths.slice(0, 2), [16, CHUNK_ITEMS]);
  assert.deepEqual(chunks.flatMap((f) => (decode(f) as { items: unknown[] }).items), many);
});

test("a node's chunk of 1 KiB or more leaves in the buffer it was written in, with room for the transport's header in front; later chunks are written elsewhere", async () => {
  const outlets = new StreamOutlets();
  const many = Array.from({ length: 3 * CHUNK_ITEMS }, (_, i) => new Uint8Array(16).fill(i & 0xff));
  const stream = new Stream<unknown>((async function* () {
    yield* many;
  })());
  // kept as they came (not copied): a chunk written later must not change an earlier one
  const frames: Uint8Array[] = [];
  let f = await outlets.open("k", stream, { name: "t" }, undefined);
  for (;;) {
    frames.push(f);
    const m = decode(f) as { items: unknown[]; done: boolean };
    if (m.done) break;
    f = await outlets.credit("k", m.items.length, 1024);
  }
  assert.deepEqual(frames.flatMap((x) => (decode(x) as { items: unknown[] }).items), many);
  // the first chunk (16 items, about 300 bytes) is copied out of the outlet's buffer: no room on offer
  assert.equal(claimHeadroom(frames[0]), undefined);
  // a full one (about 18 bytes an item) is framed where it lies: its header goes in the 5 bytes before it
  const full = frames[1];
  assert.ok(full.byteLength > 8000);
  const message = claimHeadroom(full);
  assert.ok(message !== undefined, "a full chunk offers the room in front of it");
  assert.equal(message.buffer, full.buffer);
  assert.equal(message.byteOffset + FRAME_HEADROOM, full.byteOffset);
  assert.equal(message.byteLength, full.byteLength + FRAME_HEADROOM);
  // each full chunk has a buffer of its own
  assert.equal(new Set(frames.slice(1).map((x) => x.buffer)).size, frames.length - 1);
});

test("a node's chunk that mixes written items with objects and large arrays keeps them all, in order", async () => {
  const items: unknown[] = [
    new Uint8Array([1, 2]),
    "naïve ✓", // not ASCII: the codec's UTF-8
    { a: 1, b: [new Uint8Array([3])] },
    new Uint8Array([4]),
    new Float64Array([1.5, 2.5]),
    new Uint8Array(5000).fill(9), // above what is written as it comes
    "after",
    42,
  ];
  const frames = await outletFrames(items, 3);
  assert.ok(frames.length > 1); // a window of 3: several chunks, some mixed
  assert.deepEqual(frames.flatMap((f) => (decode(f) as { items: unknown[] }).items), items);
});

test("a node's outlet over a generator (function*) answers each chunk as it fills, the producer stopping a turn, not once the window is made", async () => {
  let made = 0;
  const outlets = new StreamOutlets();
  const stream = new Stream<unknown>((function* () {
    for (let i = 0; i < 10_000; i++) {
      made++;
      yield new Uint8Array(16).fill(i & 0xff);
    }
  })());
  const first = await outlets.open("k", stream, { name: "t", creditItems: 5_000 }, undefined);
  assert.equal((decode(first) as { items: unknown[] }).items.length, 16);
  assert.equal(made, 16, "the first chunk left before more were made");
  // the next chunk, asked for with credit: a full one, and the producer stopped after it again
  const second = await outlets.credit("k", 16, 16 * 24);
  assert.equal((decode(second) as { items: unknown[] }).items.length, CHUNK_ITEMS);
  assert.ok(made <= 16 + 2 * CHUNK_ITEMS, `made ${made}`);
  outlets.cancel("k");
});

test("a node's stream whose item cannot travel ends with an error chunk, after the items before it, naming the item", async () => {
  for (const window of [4096, 2]) {
    const frames = await outletFrames([new Uint8Array([1]), "ok", 3, { f: () => 1 }, "never"], window);
    const chunks = frames.map((f) => decode(f) as { items: unknown[]; done: boolean; error?: { message: string } });
    assert.deepEqual(chunks.flatMap((c) => c.items), [new Uint8Array([1]), "ok", 3], `window ${window}`);
    const last = chunks.at(-1)!;
    assert.equal(last.done, true);
    assert.match(
      String(last.error?.message),
      /^Op "t" failed: TypeError: item 3 of the stream cannot be sent: .*\.f\b/,
    );
  }
});

/** The default window, a quarter of it (a grant), and a full chunk, as the consumer tests below use them. */
const W = DEFAULT_STREAM_WINDOW.items, Q = W / 4, C = CHUNK_ITEMS;

test("a consumer keeps several chunks asked for, asked together, and grants credit a quarter window at a time, never more than it took", async () => {
  const asked: { items: number; bytes: number }[] = [];
  const answers: ((chunk: ChunkMessage) => void)[] = [];
  const source = {
    credit: (items: number, bytes: number) => {
      asked.push({ items, bytes });
      return new Promise<ChunkMessage>((resolve) => answers.push(resolve));
    },
    cancel() {},
  };
  const run = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
  const it = new RemoteChunks(source, { t: "chunk", items: run(0, 16), done: false }, { items: W, bytes: 1 << 22 });
  const got: unknown[] = [];
  for (let i = 0; i < 16; i++) got.push((await it.next()).value);
  // took all it held: the grant and three more requests, in the same turn (one message on a socket)
  assert.deepEqual(asked, [{ items: 16, bytes: 256 }, { items: 0, bytes: 0 }, { items: 0, bytes: 0 }, {
    items: 0,
    bytes: 0,
  }]);
  // the node answers each as its chunk fills; chunks that come while items are held queue behind them
  for (let c = 0; c < 4; c++) answers[c]({ t: "chunk", items: run(16 + C * c, C), done: c === 3 });
  for (let i = 0; i < Q - 1; i++) got.push((await it.next()).value);
  assert.equal(asked.length, 4, "no request before a quarter window was taken");
  got.push((await it.next()).value);
  assert.deepEqual(asked.slice(4), [], "the stream said it is done: nothing more is asked");
  for (let r = await it.next(); !r.done; r = await it.next()) got.push(r.value);
  assert.deepEqual(got, run(0, 16 + 4 * C), "every item, in order");
  const granted = asked.reduce((a, x) => a + x.items, 0);
  assert.ok(granted <= got.length, `granted ${granted} for ${got.length} taken`);
});

test("a consumer grants a quarter window, with the requests its credit allows, once it took that many", async () => {
  const asked: number[] = [];
  const answers: ((chunk: ChunkMessage) => void)[] = [];
  const source = {
    credit: (items: number) => {
      asked.push(items);
      return new Promise<ChunkMessage>((resolve) => answers.push(resolve));
    },
    cancel() {},
  };
  const run = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
  const it = new RemoteChunks(source, { t: "chunk", items: run(0, 16), done: false }, { items: W, bytes: 1 << 22 });
  for (let i = 0; i < 16; i++) await it.next();
  for (let c = 0; c < 4; c++) answers[c]({ t: "chunk", items: run(16 + C * c, C), done: false });
  for (let i = 0; i < Q - 1; i++) await it.next();
  assert.deepEqual(asked, [16, 0, 0, 0]);
  await it.next();
  // a quarter window taken since the first grant: granted, with three more requests (all four were answered)
  assert.deepEqual(asked, [16, 0, 0, 0, Q, 0, 0, 0]);
  await it.return();
});

test("decodeChunk reads a chunk of byte strings and small integers itself, the same items as the codec, on Bun each byte string of at most 64 bytes an array of its own; anything else through the codec", async () => {
  const bytes = (n: number, v: number) => new Uint8Array(n).fill(v);
  const own: unknown[] = [bytes(0, 0), bytes(16, 1), bytes(64, 2), bytes(65, 3), 0, 23, 24, 255, 256, 65535];
  for (const items of [own, [...own, "text"], [...own, -1], [...own, 65536], [...own, { a: 1 }], []]) {
    for (const done of [false, true]) {
      const frame = encodeMessage({ t: "chunk", items, done });
      const got = decodeChunk(frame);
      assert.deepEqual(got, { t: "chunk", items, done });
      assert.deepEqual(got, decodeReply(frame, "chunk"));
    }
  }
  const got = decodeChunk(encodeMessage({ t: "chunk", items: [bytes(16, 1), bytes(100, 2)], done: false }));
  const [small, large] = got.items as Uint8Array[];
  // on Bun a small byte string is copied (cheaper there than a view); on Deno viewed, as the codec does
  if (smallCopiesAreCheap) assert.equal(small.buffer.byteLength, 16, "a small byte string is an array of its own");
  else assert.ok(small.buffer.byteLength > 100, "a small byte string is a view of the frame");
  assert.ok(large.buffer.byteLength > 100, "a large one is a view of the frame");
  // an error chunk, and frames that are no chunk or cut short, are the codec's to judge
  const error = encodeMessage({ t: "chunk", items: [], done: true, error: { tag: "Error", message: "boom" } });
  assert.equal(decodeChunk(error).error?.message, "boom");
  const frame = encodeMessage({ t: "chunk", items: [bytes(16, 1), 7], done: false });
  for (let cut = 1; cut < frame.length; cut++) {
    assert.throws(() => decodeChunk(frame.subarray(0, cut)), ProtocolError);
  }
  assert.throws(() => decodeChunk(encodeMessage({ t: "result", ok: true, value: 1 })), ProtocolError);
});

test("a node asked for a chunk of a stream it never ran answers with an error; of one that ended, with a quiet end", async () => {
  const outlets = new StreamOutlets();
  const never = decode(await outlets.credit("conn-1 c9", 16, 1024)) as ChunkMessage;
  assert.equal(never.done, true);
  assert.match(String(never.error?.message), /No stream of call "c9" here: the node that runs it restarted/);
  // a stream that ended: the consumer's asks made ahead of its end get an empty last chunk
  const stream = new Stream<unknown>((async function* () {
    yield* [1, 2, 3];
  })());
  let f = await outlets.open("conn-1 c1", stream, { name: "t", creditItems: 1 }, undefined);
  while (!(decode(f) as ChunkMessage).done) f = await outlets.credit("conn-1 c1", 1, 1024);
  const late = decode(await outlets.credit("conn-1 c1", 1, 1024)) as ChunkMessage;
  assert.deepEqual([late.done, late.items, late.error], [true, [], undefined]);
});

const frameRecords = ta.op({ name: "streamWireFrameRecords", remote: true }, async function* (n: number, size: number) {
  for (let i = 0; i < n; i++) yield { i, data: new Uint8Array(size) };
});
const frameArrays = ta.op({ name: "streamWireFrameArrays", remote: true }, async function* (n: number, size: number) {
  for (let i = 0; i < n; i++) yield new Uint8Array(size);
});

test(
  "a stream whose items each fit the node's frame limit is never sent in a chunk over it, however far its producer runs ahead; an item over it alone fails the stream naming the item and the limit",
  T,
  async () => {
    const node = new NodeServer({ name: "n1" });
    const server = serveInMemory("stream-wire-frame-limit", node.handler, { maxFrameBytes: 1024 * 1024 });
    const mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: server.endpoint })]);
    try {
      await mesh.run(async () => {
        let a = 0, r = 0;
        for await (const x of await frameArrays.go(20, 100_000)) a += x.length; // 100 KB each, counted as such
        for await (const x of await frameRecords.go(200, 10_000)) r += x.data.length; // 10 KB each, in an object
        assert.deepEqual([a, r], [20 * 100_000, 200 * 10_000]);
        // objects of 300 KB each: the first chunk's 16 (counted at 16 bytes each) are cut to fit
        let big = 0;
        for await (const x of await frameRecords.go(20, 300_000)) big += x.data.length;
        assert.equal(big, 20 * 300_000);
        const items: number[] = [];
        const e = await rejection((async () => {
          for await (const x of await frameArrays.go(3, 2_000_000)) items.push(x.length);
        })());
        assert.ok(e instanceof ta.OpExecutionError, String(e));
        assert.match(
          e.message,
          /item 0 of the stream cannot be sent: it takes 20000\d\d bytes on the wire, over the node's frame limit of 1048576 bytes \(--max-frame-bytes, maxFrameBytes\)/,
        );
        assert.deepEqual(items, []);
      });
    } finally {
      await mesh.close();
      await node.drain();
      await server.close();
    }
  },
);

test("a node's outlet whose consumer has not asked seals each chunk at its bound and goes on into a new one (all sent in turn when asked for), never one chunk of the whole window", async () => {
  const outlets = new StreamOutlets();
  let made = 0;
  const stream = new Stream<unknown>((async function* () {
    for (let i = 0; i < 3_000; i++) {
      made++;
      yield { i, data: new Uint8Array(1000) };
    }
  })());
  const peer = { transport: "websocket" as const, connectionId: 1, oneWay: false, maxFrameBytes: 256 * 1024 };
  const first = await outlets.open("k", stream, { name: "t" }, peer);
  assert.equal((decode(first) as { items: unknown[] }).items.length, 16);
  // nothing asked for meanwhile: the producer runs ahead within its credit (objects count 16 bytes)
  assert.ok(await eventually(() => made === 3_000));
  const frames = [first];
  for (let done = false; !done;) {
    const f = await outlets.credit("k", 0, 0);
    frames.push(f);
    done = (decode(f) as { done: boolean }).done;
  }
  const items = frames.flatMap((f) => (decode(f) as { items: { i: number }[] }).items);
  assert.deepEqual(items.map((x) => x.i), Array.from({ length: 3_000 }, (_, i) => i));
  // each chunk about 64 KiB (a quarter of this frame limit), far from the limit
  for (const f of frames) assert.ok(f.byteLength < 80 * 1024, `a chunk of ${f.byteLength} bytes`);
  assert.ok(frames.length > 40, `${frames.length} chunks`);
});
