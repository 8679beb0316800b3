import { test } from "node:test";
import assert from "node:assert/strict";
import { trace } from "@opentelemetry/api";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import * as ta from "../mod.ts";
import { disableTracing, setTracingAutoDetect } from "./tracing/mod.ts";
import { Stream } from "./stream.ts";
import { currentContext, type RunContext } from "./context.ts";
import { eventually, gate, rejection } from "./_test_utils.ts";

test("Stream: an op that is an async generator streams its items in order; its ref resolves before they are all made", async () => {
  const release = gate();
  const tokens = ta.op(async function* streamTestTokens(n: number) {
    for (let i = 0; i < n; i++) {
      if (i === 2) await release.promise;
      yield `t${i}`;
    }
  });
  const stream = await tokens.go(4);
  assert.ok(stream instanceof Stream);
  const it = stream[Symbol.asyncIterator]();
  assert.deepEqual(await it.next(), { done: false, value: "t0" });
  assert.deepEqual(await it.next(), { done: false, value: "t1" });
  release.open();
  const rest: string[] = [];
  for await (const t of { [Symbol.asyncIterator]: () => it }) rest.push(t);
  assert.deepEqual(rest, ["t2", "t3"]);
});

test("Stream: two streams on one maxConcurrency: 1 instance do not interleave (the call holds its slot until its stream ends)", async () => {
  const log: string[] = [];
  const Gen = ta.service(
    { name: "StreamTestNoInterleave", maxConcurrency: 1 },
    class {
      async *count(tag: string, n: number) {
        for (let i = 0; i < n; i++) {
          log.push(`${tag}${i}`);
          yield `${tag}${i}`;
        }
      }
    },
  );
  const g = Gen.init();
  const a = g.count.go("a", 3);
  const b = g.count.go("b", 3);
  const drain = async (ref: PromiseLike<AsyncIterable<string>>) => {
    const out: string[] = [];
    for await (const x of await ref) out.push(x);
    return out;
  };
  const [ra, rb] = await Promise.all([drain(a), drain(b)]);
  assert.deepEqual(ra, ["a0", "a1", "a2"]);
  assert.deepEqual(rb, ["b0", "b1", "b2"]);
  assert.deepEqual(log, ["a0", "a1", "a2", "b0", "b1", "b2"]);
});

test("Stream: an error mid-stream rejects the consumer with OpExecutionError after the items before it", async () => {
  const failing = ta.op(async function* streamTestFailing() {
    yield 1;
    yield 2;
    throw new Error("boom at 3");
  });
  const got: number[] = [];
  const err = await rejection((async () => {
    for await (const x of await failing.go()) got.push(x);
  })());
  assert.deepEqual(got, [1, 2]);
  assert.ok(err instanceof ta.OpExecutionError, String(err));
  assert.match(String((err as Error).message), /boom at 3/);
});

test("Stream: a consumer that breaks runs the generator's finally and gives the slot back", async () => {
  let finallyRan = false;
  const Gen = ta.service(
    { name: "StreamTestBreak", maxConcurrency: 1 },
    class {
      async *forever() {
        try {
          for (let i = 0;; i++) yield i;
        } finally {
          finallyRan = true;
        }
      }
      ping() {
        return "pong";
      }
    },
  );
  const g = Gen.init();
  for await (const x of await g.forever.go()) if (x === 5) break;
  assert.equal(finallyRan, true);
  assert.equal(await g.ping.go(), "pong");
});

test("Stream: ref.cancel() mid-stream runs the generator's finally; the consumer's next() rejects with CancelledError", async () => {
  let finallyRan = false;
  const forever = ta.op(async function* streamTestCancel() {
    try {
      for (let i = 0;; i++) yield i;
    } finally {
      finallyRan = true;
    }
  });
  const ref = forever.go();
  const it = (await ref)[Symbol.asyncIterator]();
  assert.deepEqual(await it.next(), { done: false, value: 0 });
  assert.equal(ref.cancel(), true);
  assert.ok(await eventually(() => finallyRan));
  assert.ok((await rejection(it.next())) instanceof ta.CancelledError);
  assert.equal(ref.cancel(), false); // ended already
});

test("Stream: the call's deadline covers the whole stream: past it the generator's finally runs and the consumer gets TimeoutError", async () => {
  let finallyRan = false;
  const never = gate();
  const slow = ta.op({ name: "streamTestDeadline", timeoutMs: 50 }, async function* () {
    try {
      yield 1;
      await never.promise;
      yield 2;
    } finally {
      finallyRan = true;
    }
  });
  const it = (await slow.go())[Symbol.asyncIterator]();
  assert.deepEqual(await it.next(), { done: false, value: 1 });
  const err = await rejection(it.next().finally(() => never.open()));
  assert.ok(err instanceof ta.TimeoutError, String(err));
  assert.ok(await eventually(() => finallyRan));
});

test("Stream: a method's stream stopped by its deadline or a cancel names a call (kind method), as a method's errors do", async () => {
  const never = gate();
  const Gen = ta.service(
    { name: "StreamTestMethodKind", timeoutMs: 50 },
    class StreamTestMethodKind {
      async *stuck() {
        yield 1;
        await never.promise;
      }
      async *forever() {
        for (let i = 0;; i++) yield i;
      }
    },
  );
  const g = Gen.init();
  const it = (await g.stuck.go())[Symbol.asyncIterator]();
  await it.next();
  const late = await rejection(it.next().finally(() => never.open()));
  assert.ok(late instanceof ta.TimeoutError, String(late));
  assert.equal(late.kind, "method");
  assert.match(late.message, /^Call "StreamTestMethodKind\.stuck" did not finish within 50 ms/);
  const ref = g.forever.go();
  const items = (await ref)[Symbol.asyncIterator]();
  await items.next();
  ref.cancel();
  const cancelled = await rejection(items.next());
  assert.ok(cancelled instanceof ta.CancelledError, String(cancelled));
  assert.equal(cancelled.kind, "method");
  assert.match(cancelled.message, /^Call "StreamTestMethodKind\.forever" was cancelled mid-stream/);
});

test("Stream: a downstream op takes the stream ref as an argument and consumes the items as they arrive", async () => {
  const words = ta.op(async function* streamTestWords() {
    yield "stream";
    yield "ing";
  });
  const join = ta.op(async function streamTestJoin(parts: AsyncIterable<string>) {
    let s = "";
    for await (const p of parts) s += p;
    return s;
  });
  assert.equal(await join.go(words.go()), "streaming");
});

test("Stream: a stream is consumed once; iterating it again is a TypeError", async () => {
  const one = ta.op(async function* streamTestOnce() {
    yield 1;
  });
  const s = await one.go();
  for await (const _ of s) { /* drain */ }
  assert.throws(() => s[Symbol.asyncIterator](), /consumed once/);
});

test("Stream: the call's span ends when its stream ends, with the item count", async () => {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  trace.setGlobalTracerProvider(provider);
  setTracingAutoDetect(true);
  try {
    const release = gate();
    const gen = ta.op(async function* streamTestSpan() {
      yield 1;
      await release.promise;
      yield 2;
      yield 3;
    });
    const it = (await gen.go())[Symbol.asyncIterator]();
    await it.next();
    const named = () => exporter.getFinishedSpans().filter((s) => s.name.includes("streamTestSpan"));
    assert.equal(named().length, 0, "the span is still open mid-stream");
    release.open();
    while (!(await it.next()).done) { /* drain */ }
    assert.ok(await eventually(() => named().length === 1));
    assert.equal(named()[0].attributes["thinkagain.stream.items"], 3);
  } finally {
    disableTracing();
    await provider.shutdown();
    trace.disable();
  }
});

test("Stream: a cancelled producer stuck in an await gives its instance's slot back after a grace period", async () => {
  const never = gate();
  const Stuck = ta.service(
    { name: "StreamTestStuck", maxConcurrency: 1 },
    class {
      async *stuck() {
        yield 1;
        await never.promise; // JavaScript cannot interrupt this: its finally waits for it
        yield 2;
      }
      ping() {
        return "pong";
      }
    },
  );
  const s = Stuck.init();
  const ref = s.stuck.go();
  const it = (await ref)[Symbol.asyncIterator]();
  await it.next();
  const pending = it.next(); // the producer is now inside the await
  ref.cancel();
  assert.ok((await rejection(pending)) instanceof ta.CancelledError);
  assert.equal(await s.ping.go(), "pong"); // waits for the grace period, not for ever
  never.open();
});

test("Stream.drain: hands the items to take until it says stop, then on; resolves true at the end with the item count told", async () => {
  let told = -1;
  const s = new Stream(
    (async function* () {
      for (let i = 0; i < 5; i++) yield i;
    })(),
    { onEnd: (n) => (told = n) },
  );
  const got: number[] = [];
  assert.equal(await s.drain((x) => got.push(x) < 3), false);
  assert.deepEqual(got, [0, 1, 2]);
  assert.equal(s.ended, false);
  assert.equal(await s.drain((x) => got.push(x) > 0), true);
  assert.deepEqual(got, [0, 1, 2, 3, 4]);
  assert.equal(told, 5);
  assert.equal(await s.drain(() => true), true); // ended: nothing more
});

test("Stream.drain: a cancel while the producer waits rejects at once with the reason, and the producer's finally runs", async () => {
  const release = gate();
  let finallyRan = false;
  const s = new Stream((async function* () {
    try {
      yield 1;
      await release.promise;
      yield 2;
    } finally {
      finallyRan = true;
    }
  })());
  const got: number[] = [];
  const drained = s.drain((x) => (got.push(x), true));
  assert.ok(await eventually(() => got.length === 1));
  const reason = new Error("stop now");
  assert.equal(s.cancel(reason), true);
  assert.equal(await rejection(drained), reason);
  release.open();
  assert.ok(await eventually(() => finallyRan));
  assert.deepEqual(got, [1]);
});

test("Stream.drain: an error of the producer rejects, mapped by fail, after the items before it", async () => {
  const s = new Stream(
    (async function* () {
      yield "a";
      throw new Error("boom");
    })(),
    { fail: (e) => new RangeError(`mapped: ${(e as Error).message}`) },
  );
  const got: string[] = [];
  const e = await rejection(s.drain((x) => (got.push(x), true)));
  assert.ok(e instanceof RangeError && e.message === "mapped: boom");
  assert.deepEqual(got, ["a"]);
  assert.equal(s.ended, true);
});

test("Stream.drain: the producer runs in the call's context, across its awaits", async () => {
  const ctx: RunContext = { mesh: undefined, task: "the call" };
  const seen: unknown[] = [];
  const s = new Stream(
    (async function* () {
      for (let i = 0; i < 3; i++) {
        await Promise.resolve();
        seen.push(currentContext()?.task);
        yield i;
      }
    })(),
    { ctx },
  );
  assert.equal(await s.drain(() => true), true);
  assert.deepEqual(seen, ["the call", "the call", "the call"]);
});

test("Stream.drain: refused while a next() is pending (a stream has one reader)", async () => {
  const release = gate();
  const s = new Stream((async function* () {
    await release.promise;
    yield 1;
  })());
  const pending = s.next();
  const e = await rejection(s.drain(() => true));
  assert.ok(e instanceof TypeError);
  release.open();
  assert.deepEqual(await pending, { done: false, value: 1 });
});

test("Stream.drain: an async generator's next() is not called once take said stop; the parked drain goes on where it stopped, and a cancel then runs its finally", async () => {
  let made = 0;
  let finallyRan = false;
  const s = new Stream((async function* () {
    try {
      for (let i = 0;; i++) {
        made++;
        yield i;
      }
    } finally {
      finallyRan = true;
    }
  })());
  const got: number[] = [];
  assert.equal(await s.drain((x) => got.push(x) < 3), false);
  // wait a few turns: a producer called on would make more meanwhile
  for (let i = 0; i < 20; i++) await Promise.resolve();
  assert.equal(made, 3);
  assert.equal(finallyRan, false);
  const e = await rejection(s.next()); // one reader: the drain's, parked
  assert.ok(e instanceof TypeError, String(e));
  assert.equal(await s.drain((x) => got.push(x) < 5), false);
  assert.deepEqual(got, [0, 1, 2, 3, 4]);
  assert.equal(made, 5);
  assert.equal(s.cancel(), true);
  assert.ok(await eventually(() => finallyRan));
  assert.equal(made, 5);
  assert.ok((await rejection(s.drain(() => true))) instanceof ta.CancelledError);
});

test("Stream.drain: a source whose next() returns its results (no promise) is read without a microtask turn per item", async () => {
  let calls = 0;
  const source = {
    next(): IteratorResult<number> {
      return calls < 5 ? { done: false, value: calls++ } : { done: true, value: undefined };
    },
    [Symbol.asyncIterator]() {
      return this as unknown as AsyncIterator<number>;
    },
  };
  let told = -1;
  const s = new Stream(source as unknown as AsyncIterator<number>, { onEnd: (n) => (told = n) });
  let turned = false;
  queueMicrotask(() => (turned = true));
  const seen: boolean[] = [];
  assert.equal(await s.drain(() => (seen.push(turned), seen.length < 3)), false);
  assert.deepEqual(seen, [false, false, false]); // all three before the microtask queued first
  assert.equal(calls, 3); // not called on once take said stop
  assert.equal(await s.drain(() => (seen.push(turned), true)), true);
  assert.equal(seen.length, 5);
  assert.equal(told, 5);
});

test("Stream.drain: a sync-next source's error rejects, after the items before it", async () => {
  let i = 0;
  const source = {
    next(): IteratorResult<string> {
      if (i === 2) throw new Error("boom");
      return { done: false, value: `x${i++}` };
    },
  };
  const got: string[] = [];
  const e = await rejection(new Stream(source as unknown as AsyncIterator<string>).drain((x) => (got.push(x), true)));
  assert.match(String(e), /boom/);
  assert.deepEqual(got, ["x0", "x1"]);
});

test("Stream.return over a source with items at hand (a remote stream's chunks) ends it at once, once, even when the source's return() rejects", async () => {
  for (const failing of [false, true]) {
    let returned = 0;
    const told: number[] = [];
    const items = [1, 2, 3];
    const source = {
      tryNext: () => (items.length > 0 ? { done: false, value: items.shift()! } : undefined),
      next: () => Promise.resolve({ done: true as const, value: undefined }),
      return:
        () => (returned++,
          failing ? Promise.reject(new Error("gone")) : Promise.resolve({ done: true, value: undefined })),
    };
    const s = new Stream<number>(source as unknown as AsyncIterator<number>, { onEnd: (n) => told.push(n) });
    assert.deepEqual(await s.next(), { done: false, value: 1 });
    const r = s.return();
    assert.deepEqual(told, [1]); // told as return() comes back: the source has done its part
    assert.deepEqual(await r, { done: true, value: undefined });
    assert.deepEqual(await s.return(), { done: true, value: undefined });
    assert.equal(returned, 1);
    assert.deepEqual(told, [1]);
    assert.equal(s.ended, true);
  }
});

test("Stream: an op that is a generator (function*) streams its items in order, each made as it is asked for; its ref resolves before any is made", async () => {
  let made = 0;
  const tokens = ta.op(function* streamTestSyncTokens(n: number) {
    for (let i = 0; i < n; i++) {
      made++;
      yield `t${i}`;
    }
  });
  const stream = await tokens.go(4);
  assert.ok(stream instanceof Stream);
  assert.equal(made, 0);
  const it = stream[Symbol.asyncIterator]();
  assert.deepEqual(await it.next(), { done: false, value: "t0" });
  assert.equal(made, 1);
  const rest: string[] = [];
  for await (const t of { [Symbol.asyncIterator]: () => it }) rest.push(t);
  assert.deepEqual(rest, ["t1", "t2", "t3"]);
  // arrays, sets and other iterables stay values
  const values = ta.op(function streamTestIterables() {
    return [[1, 2], new Set([3])] as const;
  });
  assert.deepEqual(await values.go(), [[1, 2], new Set([3])]);
});

test("Stream: a generator method's error reaches the consumer after the items before it; a break runs its finally and gives the slot back", async () => {
  let finallyRan = 0;
  const child = ta.op(function streamTestSyncChild(x: number) {
    return x * 10;
  });
  const Gen = ta.service(
    { name: "StreamTestSyncGen", maxConcurrency: 1 },
    class {
      *failing(k: number) {
        for (let i = 0; i < k; i++) yield i;
        throw new Error(`sync boom after ${k}`);
      }
      *forever() {
        try {
          for (let i = 0;; i++) yield i;
        } finally {
          finallyRan++;
        }
      }
      *submits() {
        // a ref made by the body travels as an item
        yield child.go(2);
      }
      ping() {
        return "pong";
      }
    },
  );
  const g = Gen.init();
  const got: number[] = [];
  const err = await rejection((async () => {
    for await (const x of await g.failing.go(3)) got.push(x);
  })());
  assert.deepEqual(got, [0, 1, 2]);
  assert.ok(err instanceof ta.OpExecutionError, String(err));
  assert.match((err as Error).message, /sync boom after 3/);
  for await (const x of await g.forever.go()) if (x === 5) break;
  assert.equal(finallyRan, 1);
  assert.equal(await g.ping.go(), "pong");
  const out: unknown[] = [];
  for await (const x of await g.submits.go()) out.push(x);
  assert.equal(await (out[0] as PromiseLike<number>), 20);
});

test("Stream.drain: a generator's items are taken with no microtask turn each, in the call's context; a cancel after a stop runs its finally", async () => {
  const ctx: RunContext = { mesh: undefined, task: "the call" };
  const seen: unknown[] = [];
  let finallyRan = false;
  const s = new Stream(
    (function* () {
      try {
        for (let i = 0; i < 5; i++) {
          seen.push(currentContext()?.task);
          yield i;
        }
      } finally {
        finallyRan = true;
      }
    })(),
    { ctx },
  );
  const got: number[] = [];
  let turns = 0;
  let ticking = true;
  const tick = () => {
    if (!ticking) return;
    turns++;
    queueMicrotask(tick);
  };
  queueMicrotask(tick);
  // all five within the drain's first turn: a drain that awaited each item would let the ticker run
  const drained = s.drain((x) => got.push(x) < 3);
  assert.deepEqual(got, [0, 1, 2]);
  assert.equal(turns, 0);
  ticking = false;
  assert.equal(await drained, false);
  assert.deepEqual(seen, ["the call", "the call", "the call"]);
  assert.equal(s.cancel(), true);
  await eventually(() => finallyRan);
  assert.equal(finallyRan, true);
});

test("Mesh streamWindow: anything but an object of positive integer items and bytes is refused, naming the option", () => {
  const node = () => [new ta.MeshNode("streamTestWindow")];
  for (const bad of [null, 5, [], "big", true]) {
    assert.throws(
      () => new ta.Mesh(node(), { streamWindow: bad as never }),
      (e) =>
        e instanceof TypeError && /^Mesh streamWindow must be an object \{ items\?, bytes\? \}, got /.test(e.message),
      String(bad),
    );
  }
  assert.throws(
    () => new ta.Mesh(node(), { streamWindow: { item: 3 } as never }),
    /unknown option "item"; did you mean "items"/,
  );
  for (const items of [0, -1, 1.5, NaN, Infinity, "8"]) {
    assert.throws(
      () => new ta.Mesh(node(), { streamWindow: { items: items as never } }),
      /Mesh streamWindow\.items must be a positive integer/,
    );
  }
});

test("Stream: a call's deadline of 2^31 ms or more does not stop its stream at once", async () => {
  for (const timeoutMs of [2 ** 31, 1e10]) {
    const g = gate();
    const slow = ta.op({ name: `streamTestLongDeadline${timeoutMs}`, timeoutMs }, async function* () {
      yield 1;
      await g.promise;
      yield 2;
    });
    const it = (await slow.go())[Symbol.asyncIterator]();
    assert.deepEqual(await it.next(), { done: false, value: 1 });
    const second = it.next();
    // a timer given 2^31 ms or more fires after 1 ms: a few such turns pass before the gate opens
    for (let i = 0; i < 3; i++) await new Promise((r) => setTimeout(r, 1));
    g.open();
    assert.deepEqual(await second, { done: false, value: 2 }, `timeoutMs ${timeoutMs}`);
    assert.deepEqual(await it.next(), { done: true, value: undefined });
  }
});

test("Stream: mesh.close() stops the streams still open (their finally runs before the instance's close), and their consumers get CancelledError mesh-closed", async () => {
  const log: string[] = [];
  const Gen = ta.service(
    { name: "StreamTestCloseGen" },
    class StreamTestCloseGen {
      async *forever() {
        try {
          for (let i = 0;; i++) yield i;
        } finally {
          log.push("finally");
        }
      }
      close() {
        log.push("disposed");
      }
    },
  );
  const opForever = ta.op({ name: "streamTestCloseOp" }, async function* () {
    try {
      for (let i = 0;; i++) yield i;
    } finally {
      log.push("op finally");
    }
  });
  const mesh = new ta.Mesh([new ta.MeshNode("streamTestClose")]);
  const [method, op] = await mesh.run(async () => [await Gen.init().forever.go(), await opForever.go()]);
  const m = method[Symbol.asyncIterator](), o = op[Symbol.asyncIterator]();
  assert.deepEqual(await m.next(), { done: false, value: 0 });
  assert.deepEqual(await o.next(), { done: false, value: 0 });
  await mesh.close();
  assert.deepEqual(log.filter((x) => x !== "op finally"), ["finally", "disposed"]);
  assert.ok(await eventually(() => log.includes("op finally")));
  for (const [it, kind] of [[m, "method"], [o, "op"]] as const) {
    const err = await rejection(it.next());
    assert.ok(err instanceof ta.CancelledError, String(err));
    assert.equal(err.reason, "mesh-closed");
    assert.equal(err.kind, kind);
  }
});

test("Stream: retries run a generator again when it fails before its first item is taken (async and not), in its consumer's for await and in a drain; not once an item was taken", async () => {
  let asyncAttempts = 0;
  const flakyAsync = ta.op({ name: "streamTestFlakyAsync", retries: 2 }, async function* () {
    if (++asyncAttempts < 3) throw new Error(`attempt ${asyncAttempts}`);
    yield "ok";
  });
  const got: string[] = [];
  for await (const x of await flakyAsync.go()) got.push(x);
  assert.deepEqual([got, asyncAttempts], [["ok"], 3]);

  let syncAttempts = 0;
  const flakySync = ta.op({ name: "streamTestFlakySync", retries: 1 }, function* () {
    if (++syncAttempts < 2) throw new Error(`attempt ${syncAttempts}`);
    yield 1;
    yield 2;
  });
  const drained: number[] = [];
  const syncStream = (await flakySync.go()) as unknown as Stream<number>;
  assert.equal(await syncStream.drain((x) => drained.push(x) > 0), true);
  assert.deepEqual([drained, syncAttempts], [[1, 2], 2]);

  // retries spent: the last failure is the consumer's
  let spent = 0;
  const failing = ta.op({ name: "streamTestFailing", retries: 2 }, async function* () {
    yield* [];
    throw new Error(`attempt ${++spent}`);
  });
  const e = await rejection((async () => {
    for await (const _ of await failing.go()) { /* none */ }
  })());
  assert.ok(e instanceof ta.OpExecutionError && /attempt 3/.test(String(e.cause)), String(e));
  assert.equal(spent, 3);

  // an item taken: the failure after it is the consumer's, the generator is not run again
  let runs = 0;
  const midway = ta.op({ name: "streamTestMidway", retries: 2 }, async function* () {
    runs++;
    yield "first";
    throw new Error("after an item");
  });
  const items: string[] = [];
  const late = await rejection((async () => {
    for await (const x of await midway.go()) items.push(x);
  })());
  assert.ok(late instanceof ta.OpExecutionError, String(late));
  assert.deepEqual([items, runs], [["first"], 1]);
});

test("Stream: a stream read by a body is its child: cancelling the body, or its deadline, stops the stream (the producer's finally runs, its slot is free) and the body's next read rejects with CancelledError", async () => {
  for (const stopBy of ["cancel", "deadline"] as const) {
    let producerEnded = false;
    const Producer = ta.service(
      { name: `StreamTestReadProducer_${stopBy}`, maxConcurrency: 1 },
      class {
        async *tokens() {
          try {
            for (let i = 0;; i++) yield i;
          } finally {
            producerEnded = true;
          }
        }
        ping() {
          return "pong";
        }
      },
    );
    const firstItem = gate();
    const stopped = gate();
    const afterStop = gate<string>();
    const consume = ta.op(
      { name: `streamTestReader_${stopBy}`, ...(stopBy === "deadline" ? { timeoutMs: 50 } : {}) },
      async (s: AsyncIterable<number>) => {
        let n = 0;
        try {
          for await (const _ of s) {
            if (n++ > 0) return afterStop.open("got another item after the stop");
            firstItem.open();
            await stopped.promise; // a slow consumer: stopped while it works on its first item
          }
          afterStop.open("the stream ended quietly");
        } catch (e) {
          afterStop.open(e instanceof ta.CancelledError ? `CancelledError (${e.reason})` : String(e));
        }
      },
    );
    const producer = Producer.init();
    const ref = consume.go(producer.tokens.go());
    await firstItem.promise;
    if (stopBy === "cancel") {
      ref.cancel();
      assert.ok(await rejection(ref) instanceof ta.CancelledError);
    } else assert.ok(await rejection(ref) instanceof ta.TimeoutError);
    assert.equal(producerEnded, true, stopBy);
    assert.equal(await producer.ping.go(), "pong"); // its only slot was given back
    stopped.open();
    assert.equal(await afterStop.promise, "CancelledError (parent)", stopBy);
  }
});

test("Stream: a body cancelled already gets none of a stream it starts reading; a body that finished leaves a stream it did not read to the end open", async () => {
  let made = 0, ended = 0;
  const count = ta.op({ name: "streamTestCountForLateReader" }, async function* () {
    try {
      for (let i = 0;; i++) yield (made++, i);
    } finally {
      ended++;
    }
  });
  const started = gate();
  const go = gate();
  const read = gate<string>();
  const late = ta.op({ name: "streamTestLateReader" }, async (s: AsyncGenerator<number>) => {
    started.open();
    await go.promise;
    read.open(
      await s.next().then((r) => `item ${r.value}`, (e) => e instanceof ta.CancelledError ? e.reason : String(e)),
    );
  });
  const ref = late.go(count.go());
  await started.promise;
  ref.cancel();
  go.open();
  assert.equal(await read.promise, "parent");
  assert.equal(made, 0); // stopped before its generator made anything
  // finished normally: what it read of the stream is let go, not stopped (as its calls are)
  const first = ta.op({ name: "streamTestFirstItem" }, async (s: AsyncGenerator<number>) => (await s.next()).value);
  const stream = count.go();
  assert.equal(await first.go(stream), 0);
  assert.deepEqual(await (await stream).next(), { done: false, value: 1 });
  await (await stream).return(undefined as never);
  assert.deepEqual([made, ended], [2, 1]);
});
