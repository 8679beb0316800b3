import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import * as ta from "../mod.ts";
import { runArgs, thisRuntime } from "../adapters/_test_nodes.ts";
import { collectUntil, eventually, gate, gcFunction, rejection, settlesWithin, sleep } from "./_test_utils.ts";
import { collectNow } from "./_runtime.ts";

test("service state persists across calls; direct calls and .go() both work", async () => {
  const Store = ta.service(
    class SvcStore {
      private items: string[] = [];
      constructor(readonly prefix: string) {}
      async add(item: string) {
        this.items.push(`${this.prefix}${item}`);
        return this.items.length;
      }
      list() {
        return [...this.items];
      }
    },
  );
  const store = Store.init("x-");
  assert.equal(await store.add("a"), 1);
  assert.equal(await store.add.go("b"), 2);
  assert.deepEqual(await store.list.go(), ["x-a", "x-b"]);
  assert.equal(Store.serviceName, "SvcStore");
});

test("a counter service hit by 100 concurrent read-await-write increments ends at 100", async () => {
  const Counter = ta.service(
    class Counter {
      n = 0;
      async increment() {
        const v = this.n;
        await sleep(0);
        this.n = v + 1;
        return this.n;
      }
    },
  );
  const c = Counter.init();
  const results = await Promise.all(Array.from({ length: 100 }, () => c.increment.go()));
  assert.equal(await c.increment(), 101);
  assert.deepEqual(results, Array.from({ length: 100 }, (_, i) => i + 1), "calls ran in submission order");
});

test("calls to one instance start in submission order even when an earlier one waits for an input", async () => {
  const g = gate<string>();
  const input = ta.op(async function input() {
    return await g.promise;
  });
  const Log = ta.service(
    class Log {
      seen: string[] = [];
      record(x: string) {
        this.seen.push(x);
        return [...this.seen];
      }
    },
  );
  const log = Log.init();
  const first = log.record.go(input.go());
  const second = log.record.go("second");
  await sleep(5);
  assert.equal(second.status, "pending", "the second call waits behind the first");
  g.open("first");
  assert.deepEqual(await second, ["first", "second"]);
  assert.deepEqual(await first, ["first"]);
});

test("maxConcurrency lets one instance run several calls at once", async () => {
  let running = 0, peak = 0;
  const release = gate();
  const Pool = ta.service(
    { maxConcurrency: 3 },
    class Pool {
      async work() {
        running++;
        peak = Math.max(peak, running);
        await release.promise;
        running--;
      }
    },
  );
  const p = Pool.init();
  const refs = Array.from({ length: 9 }, () => p.work.go());
  assert.ok(await eventually(() => running === 3), `${running} calls running at once, not 3`);
  release.open();
  await Promise.all(refs);
  assert.equal(peak, 3);
});

test("replicas: calls are spread by fewest outstanding calls", async () => {
  const Worker = ta.service(
    { replicas: 3 },
    class SvcWorker {
      async which() {
        await sleep(2);
        return (ta.currentInstance() as ta.InstanceInfo).replica;
      }
    },
  );
  await using mesh = new ta.Mesh([new ta.MeshNode("n", { cpus: 8 })]);
  const counts = await mesh.run(async () => {
    const w = Worker.init();
    const ids = await Promise.all(Array.from({ length: 30 }, () => w.which.go()));
    return ids.reduce((m, id) => m.set(id, (m.get(id) ?? 0) + 1), new Map<number, number>());
  });
  assert.deepEqual([...counts.keys()].sort(), [0, 1, 2]);
  for (const n of counts.values()) assert.equal(n, 10);
  assert.equal(mesh.stats().instances.length, 3);
});

test("a handle can be passed to ops and other services", async () => {
  const Retriever = ta.service(
    class SvcRetriever {
      async retrieve(q: string) {
        return [`${q}:1`, `${q}:2`];
      }
    },
  );
  const Agent = ta.service(
    class Agent {
      async ask(r: ta.ServiceHandle<{ retrieve(q: string): Promise<string[]> }>, q: string) {
        return (await r.retrieve.go(q)).length;
      }
    },
  );
  const viaOp = ta.op(async function viaOp(r: typeof retriever, q: string) {
    return await r.retrieve.go(q);
  });
  const retriever = Retriever.init();
  assert.deepEqual(await viaOp.go(retriever, "q"), ["q:1", "q:2"]);
  assert.equal(await Agent.init().ask.go(retriever, "z"), 2);
});

test("a method that does not exist is a TypeError listing the methods", () => {
  const S = ta.service(
    class S {
      a() {}
      b() {}
    },
  );
  const s = S.init() as unknown as Record<string, unknown>;
  assert.throws(() => s.nope, (e: unknown) => e instanceof TypeError && /no method "nope".*a, b/.test(e.message));
  assert.equal(s.then, undefined, "a handle is not mistaken for a thenable");
});

test("a method that throws rejects with OpExecutionError naming Service.method", async () => {
  const S = ta.service(
    class Thrower {
      async fail() {
        throw new RangeError("nope");
      }
      ok() {
        return "still serving";
      }
    },
  );
  const s = S.init();
  const e = await rejection(s.fail.go());
  assert.ok(e instanceof ta.OpExecutionError);
  assert.equal(e.op, "Thrower.fail");
  assert.ok(e.cause instanceof RangeError);
  assert.equal(await s.ok(), "still serving");
});

test("a constructor that throws fails the calls with OpExecutionError naming the constructor", async () => {
  const Broken = ta.service(
    class Broken {
      constructor() {
        throw new Error("no model");
      }
      run() {
        return 1;
      }
    },
  );
  const b = Broken.init();
  const e = await rejection(b.run.go());
  assert.ok(e instanceof ta.OpExecutionError);
  assert.equal(e.op, "Broken.constructor");
});

test("service() rejects bad arguments with a helpful TypeError", () => {
  assert.throws(
    () => ta.service(42 as never),
    (e: unknown) => e instanceof TypeError && /expects a class/.test(e.message),
  );
  assert.throws(
    () => ta.service({}, "x" as never),
    (e: unknown) => e instanceof TypeError && /class to wrap/.test(e.message),
  );
  assert.throws(() => ta.service((async () => 1) as never), TypeError);
  assert.throws(() => ta.service(class Empty {}), /no public methods/);
  assert.throws(() =>
    ta.service(
      { gpus: -1 },
      class G {
        f() {}
      },
    ), RangeError);
  assert.throws(() =>
    ta.service(
      { replicas: 0 },
      class R {
        f() {}
      },
    ), RangeError);
});

test("service calls honour retries and timeoutMs", async () => {
  let n = 0;
  const S = ta.service(
    { retries: 2, timeoutMs: 50 },
    class Flaky {
      async get() {
        if (++n < 3) throw new Error("again");
        return n;
      }
      async hang() {
        await sleep(1_000);
      }
    },
  );
  const s = S.init();
  assert.equal(await s.get.go(), 3);
  assert.ok((await rejection(s.hang.go())) instanceof ta.TimeoutError);
});

test("outside a mesh, a service instance lives as long as its handle: dropped handles are collected", {
  skip: gcFunction() ? false : "no GC hook on this runtime",
}, async () => {
  const gc = gcFunction()!;
  let collected = 0;
  const registry = new FinalizationRegistry(() => collected++);
  const Tmp = ta.service(
    class Tmp {
      constructor() {
        registry.register(this, 0);
      }
      ping() {
        return 1;
      }
    },
  );
  const n = 500;
  await (async () => {
    for (let i = 0; i < n; i++) await Tmp.init().ping.go();
  })();
  await collectUntil(gc, () => collected, n * 0.9);
  assert.ok(collected >= n * 0.9, `only ${collected} of ${n} instances were collected`);
});

/** Collects the heap, turn after turn, until `done()` (at most 100 times). */
async function collectTill(done: () => boolean): Promise<void> {
  const turn = () => new Promise((r) => setTimeout(r, 0));
  for (let i = 0; i < 100 && !done(); i++) {
    collectNow();
    await turn(); // (FinalizationRegistry callbacks come in a later turn)
  }
}

test("outside any mesh, an instance is disposed once its handle is gone", async () => {
  let disposed = 0;
  const Res = ta.service(
    class SvcOutsideRes {
      get(): number {
        return 1;
      }
      [Symbol.dispose](): void {
        disposed++;
      }
    },
  );
  await (async () => {
    const handle = Res.init();
    assert.equal(await handle.get.go(), 1);
  })();
  await collectTill(() => disposed > 0);
  assert.equal(disposed, 1, "the instance's [Symbol.dispose]() never ran");
});

test("outside any mesh, an instance whose handle is gone runs the calls made before, then is disposed", async () => {
  const open = gate();
  let disposed = 0, handleGone = false;
  const gone = new FinalizationRegistry(() => (handleGone = true));
  const Slow = ta.service(
    { maxConcurrency: 1 },
    class SvcOutsideSlow {
      n = 0;
      async add(k: number): Promise<number> {
        await open.promise;
        return this.n += k;
      }
      [Symbol.asyncDispose](): Promise<void> {
        disposed++;
        return Promise.resolve();
      }
    },
  );
  // one call running, one queued behind it; the handle is dropped
  const refs = (() => {
    const s = Slow.init();
    gone.register(s, 0);
    return [s.add.go(1), s.add.go(2)];
  })();
  await collectTill(() => handleGone);
  assert.ok(handleGone, "the handle was collected");
  await sleep(0);
  assert.equal(disposed, 0, "not while its calls are outstanding");
  open.open();
  assert.deepEqual(await ta.all(refs), [1, 3], "the calls made before ran, the queued one too");
  assert.ok(await eventually(() => disposed === 1), "disposed once they were through");
});

test("100,000 synchronous calls queued on one instance all run, in order, without growing the stack", async () => {
  const Tally = ta.service(
    class Tally {
      n = 0;
      add(k: number) {
        this.n += k;
        return this.n;
      }
    },
  );
  const t = Tally.init();
  const refs = Array.from({ length: 100_000 }, () => t.add.go(1));
  const out = await ta.all(refs);
  assert.equal(out[out.length - 1], 100_000);
  assert.equal(out[49_999], 50_000, "in submission order");
  assert.equal(await t.add.go(0), 100_000, "the instance still serves");
});

test("mesh.close rejects the queued calls of every instance before any of them starts", async () => {
  const started: string[] = [];
  const release: Record<string, ReturnType<typeof gate<void>>> = { a: gate(), b1: gate(), b2: gate() };
  const Slow = ta.service(
    class SlowA {
      async run(tag: string) {
        started.push(tag);
        await release[tag].promise;
        return tag;
      }
    },
  );
  const Other = ta.service(
    class SlowB {
      async run(tag: string) {
        started.push(tag);
        await release[tag].promise;
        return tag;
      }
    },
  );
  const mesh = new ta.Mesh([new ta.MeshNode("n")]);
  const [a, b1, b2] = await mesh.run(() => {
    const b = Other.init(), a = Slow.init(); // closed in reverse: SlowA's instance first
    return [a.run.go("a"), b.run.go("b1"), b.run.go("b2")];
  });
  assert.ok(await eventually(() => started.length === 2), `started: ${started}`);
  const closed = mesh.close();
  // SlowB's running call ends while SlowA's instance is still closing; b2 must not start then
  release.b1.open();
  assert.equal(await b1, "b1");
  release.b2.open();
  release.a.open();
  await closed;
  assert.equal(await a, "a");
  const e = await rejection(b2);
  assert.ok(e instanceof ta.CancelledError, `queued call rejected, got ${e}`);
  assert.deepEqual(
    started.sort(),
    ["a", "b1"],
    "b2 never started, though SlowA's instance closed after SlowB's call ended",
  );
});

test("a call that timed out or was cancelled keeps its slot while its body finishes (within a grace), and never wedges it", async () => {
  let inside = 0, most = 0;
  let release = gate();
  // 0: the body ends when the test releases it (a body of N ms against a deadline of M ms races)
  const body = async (ms: number) => {
    inside++;
    most = Math.max(most, inside);
    await (ms === 0 ? release.promise : sleep(ms));
    inside--;
    return ms;
  };
  const Timed = ta.service(
    { timeoutMs: 20 },
    class TimedWork {
      work(ms: number) {
        return body(ms);
      }
    },
  );
  const t = Timed.init();
  const late = t.work.go(0); // answered at 20 ms; its body returns then, within the grace of another 20
  const next = t.work.go(5);
  late.then(undefined, () => release.open());
  assert.ok((await rejection(late)) instanceof ta.TimeoutError, "the caller is answered at the deadline");
  assert.equal(await next, 5);
  assert.equal(most, 1, "one body at a time on the instance");
  // a body that never returns holds the slot for the grace only: the instance goes on serving
  const Stuck = ta.service(
    { timeoutMs: 20 },
    class StuckWork {
      hang() {
        return new Promise(() => {});
      }
      ok() {
        return "ok";
      }
    },
  );
  const st = Stuck.init();
  const hung = st.hang.go();
  assert.ok((await rejection(hung)) instanceof ta.TimeoutError);
  assert.equal(await st.ok.go(), "ok");
  const Retried = ta.service(
    { retries: 1 },
    class RetriedWork {
      work(ms: number) {
        return body(ms);
      }
    },
  );
  const r = Retried.init();
  most = 0;
  release = gate();
  const cancelled = r.work.go(0);
  const after = r.work.go(5);
  assert.ok(await eventually(() => inside === 1), "the first call's body started");
  assert.equal(cancelled.cancel(), true);
  release.open(); // the cancelled body returns after its cancel
  assert.equal(await after, 5);
  assert.equal(most, 1);
  const limited = ta.op({ name: "limitedTimed", maxConcurrency: 1, timeoutMs: 10 }, body);
  most = 0;
  release = gate();
  const [a, b] = [limited.go(0), limited.go(5)];
  a.then(undefined, () => release.open());
  assert.ok((await rejection(a)) instanceof ta.TimeoutError);
  assert.equal(await b, 5);
  assert.equal(most, 1, "an op's concurrency limit holds the same way");
});

test("a local body past its deadline holds its slot for a grace of timeoutMs, then the next call starts", {
  timeout: 30_000, // longer than the bound below, so a slot never given back fails with its own message
}, async () => {
  const started: string[] = [];
  const Stuck = ta.service(
    { timeoutMs: 30 },
    class GraceWork {
      hang() {
        started.push("hang");
        return new Promise(() => {});
      }
      next() {
        started.push("next");
        return "next";
      }
    },
  );
  const stuckOp = ta.op({ name: "graceOp", maxConcurrency: 1, timeoutMs: 30 }, (tag: string) => {
    started.push(tag);
    return tag === "op hang" ? new Promise(() => {}) : tag;
  });
  const s = Stuck.init();
  const hung = s.hang.go();
  const next = s.next.go();
  assert.ok((await rejection(hung)) instanceof ta.TimeoutError);
  assert.deepEqual(started, ["hang"], "at the deadline the body still holds the instance's slot");
  assert.equal(next.status, "pending");
  assert.equal(await settlesWithin(next, 10_000), true, "the grace ends");
  assert.equal(await next, "next");
  // an op's concurrency slot the same way
  const opHung = stuckOp.go("op hang");
  const opNext = stuckOp.go("op next");
  assert.ok((await rejection(opHung)) instanceof ta.TimeoutError);
  assert.deepEqual(started, ["hang", "next", "op hang"], "at the deadline the body still holds the op's slot");
  assert.equal(opNext.status, "pending");
  assert.equal(await settlesWithin(opNext, 10_000), true, "the grace ends");
  assert.equal(await opNext, "op next");
});

test("the grace timer of a cancelled body that never returns does not keep the process alive", {
  timeout: 60_000,
}, async () => {
  const script = fileURLToPath(new URL("./_test_overrun_child.ts", import.meta.url));
  const [bin, argv] = runArgs(thisRuntime(), script, []);
  const child = spawn(bin, argv, { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout!.on("data", (d: Uint8Array) => (out += new TextDecoder().decode(d)));
  const exited = new Promise<number | string>((r) => child.on("exit", (code, sig) => r(code ?? sig ?? -1)));
  try {
    // the grace is ten minutes: an exit within this bound can only be the timer not holding the process
    assert.equal(await settlesWithin(exited, 30_000), true, `the process is still running; it printed: ${out}`);
    assert.equal(await exited, 0);
    assert.deepEqual(JSON.parse(out), { cancelled: true, next: "pending" }, "the slot was still held when it exited");
  } finally {
    child.kill("SIGKILL");
  }
});

test("a call awaited behind the grace of a body that never returns keeps the process alive until it runs", {
  timeout: 60_000,
}, async () => {
  const script = fileURLToPath(new URL("./_test_grace_waiter_child.ts", import.meta.url));
  const [bin, argv] = runArgs(thisRuntime(), script, []);
  const child = spawn(bin, argv, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (d: Uint8Array) => (out += new TextDecoder().decode(d)));
  child.stderr!.on("data", (d: Uint8Array) => (out += new TextDecoder().decode(d)));
  const exited = new Promise<number | string>((r) => child.on("exit", (code, sig) => r(code ?? sig ?? -1)));
  try {
    assert.equal(await settlesWithin(exited, 30_000), true, `the process is still running; it printed: ${out}`);
    assert.deepEqual(JSON.parse(out.trim() || "null"), { timedOut: true, next: "next" }, `it printed: ${out}`);
    assert.equal(await exited, 0);
  } finally {
    child.kill("SIGKILL");
  }
});

test("service refuses a method named then at once: its handle would be a thenable that await never settles", () => {
  // checked synchronously: were the method accepted, nothing here awaits the handle, so nothing hangs
  const refusesThen = (e: unknown) => {
    assert.ok(e instanceof TypeError, `expected a TypeError, got ${e}`);
    assert.match(e.message, /service "Chain": a method named "then" would make its handle a thenable/);
    assert.match(e.message, /rename it/);
    return true;
  };
  assert.throws(
    () =>
      ta.service(
        class Chain {
          then(step: string) {
            return step;
          }
        },
      ),
    refusesThen,
  );
  // inherited from a base class too
  class Base {
    then(step: string) {
      return step;
    }
  }
  assert.throws(() => ta.service({ name: "Chain" }, class extends Base {}), refusesThen);
  // an ordinary handle is no thenable: returned from an async function, it is the value
  const Plain = ta.service(
    class ThenlessPlain {
      step(s: string) {
        return s;
      }
    },
  );
  assert.equal((Plain.init() as unknown as { then?: unknown }).then, undefined);
});
