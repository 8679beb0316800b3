import { test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../mod.ts";
import { collectUntil, eventually, gate, gcFunction, rejection, settlesWithin, sleep } from "./_test_utils.ts";

test("op runs the README example and returns 18", async () => {
  const addOne = ta.op(async function addOne(x: number) {
    return x + 1;
  });
  const multiply = ta.op("multiply", async (x: number, factor: number) => x * factor);
  async function pipeline(x: number): Promise<number> {
    const xRef = addOne.go(x);
    const resultRef = multiply.go(xRef, 3);
    return await resultRef;
  }
  assert.equal(await pipeline(5), 18);
  assert.equal(await addOne(1), 2, "ops are callable directly");
  assert.equal(addOne.opName, "addOne");
  assert.equal(multiply.opName, "multiply");
});

test("op.go resolves refs nested in arrays and plain objects", async () => {
  const value = ta.op(async function value(x: number) {
    return x;
  });
  const merge = ta.op(async function merge(xs: number[]) {
    return xs.reduce((a, b) => a + b, 0);
  });
  const docs = ta.op(async function docs(input: { docs: string[]; meta: { k: number } }) {
    return `${input.docs.join(",")}:${input.meta.k}`;
  });
  const strings = ta.op(async function strings(s: string) {
    return [s, s];
  });
  assert.equal(await merge.go([value.go(1), value.go(2), 3]), 6);
  assert.equal(await docs.go({ docs: strings.go("a"), meta: { k: value.go(7) } }), "a,a:7");
  const arr = [value.go(4)];
  await merge.go(arr);
  assert.ok(arr[0] instanceof ta.ObjectRef, "the caller's array is not mutated");
});

test("a shared ancestor runs once for all its dependents", async () => {
  let calls = 0;
  const source = ta.op(async function source() {
    calls++;
    return 10;
  });
  const plus = ta.op(async function plus(x: number, y: number) {
    return x + y;
  });
  const s = source.go();
  const results = await Promise.all([plus.go(s, 1), plus.go(s, 2), plus.go(s, 3)]);
  assert.deepEqual(results, [11, 12, 13]);
  assert.equal(calls, 1);
});

test("independent ops run concurrently: the second starts before the first finishes", async () => {
  const events: string[] = [];
  const release = gate();
  const slow = ta.op(async function slow(name: string) {
    events.push(`start ${name}`);
    await release.promise;
    events.push(`end ${name}`);
    return name;
  });
  const refs = [slow.go("a"), slow.go("b")];
  // both bodies are inside at once (neither can end before the gate opens)
  assert.ok(await eventually(() => events.length === 2), `only ${events.join(", ")} before the gate`);
  release.open();
  assert.deepEqual(await Promise.all(refs), ["a", "b"]);
  assert.deepEqual(events.slice(0, 2), ["start a", "start b"]);
});

test("a dependent op does not start before its input completes", async () => {
  const g = gate<number>();
  let started = false;
  const first = ta.op(async function first() {
    return await g.promise;
  });
  const second = ta.op(async function second(x: number) {
    started = true;
    return x * 2;
  });
  const ref = second.go(first.go());
  await sleep(10);
  assert.equal(started, false);
  assert.equal(ref.status, "pending");
  g.open(21);
  assert.equal(await ref, 42);
});

test("ObjectRef rejects with OpExecutionError naming the op and keeping the cause", async () => {
  const bad = ta.op(async function parse(_s: string) {
    throw new TypeError("bad input");
  });
  const err = await rejection(bad.go("x"));
  assert.ok(err instanceof ta.OpExecutionError);
  assert.equal(err.op, "parse");
  assert.ok(err.cause instanceof TypeError);
  assert.equal((err.cause as Error).message, "bad input");
  assert.match(err.message, /parse.*bad input/);
  const direct = await rejection(bad("y"));
  assert.ok(direct instanceof ta.OpExecutionError, "direct calls wrap errors the same way");
});

test("sync ops, non-promise results and non-Error throws all settle", async () => {
  const sync = ta.op(function sync(x: number) {
    return x * 3;
  });
  const throwsString = ta.op(function throwsString() {
    throw "plain string";
  });
  const rejectsNumber = ta.op(async function rejectsNumber() {
    throw 42;
  });
  const returnsUndefined = ta.op(function returnsUndefined() {});
  assert.equal(await sync.go(sync.go(2)), 18);
  const e1 = await rejection(throwsString.go());
  assert.ok(e1 instanceof ta.OpExecutionError);
  assert.equal(e1.cause, "plain string");
  const e2 = await rejection(rejectsNumber.go());
  assert.ok(e2 instanceof ta.OpExecutionError);
  assert.equal(e2.cause, 42);
  assert.equal(await returnsUndefined.go(), undefined);
});

test("dependents of a failed ref reject with the same error without running", async () => {
  let ran = 0;
  const fail = ta.op(async function fail() {
    throw new Error("root cause");
  });
  const after = ta.op(async function after(x: number) {
    ran++;
    return x;
  });
  const sum = ta.op(async function sum(xs: number[]) {
    ran++;
    return xs.length;
  });
  const root = fail.go();
  const a = after.go(root);
  const b = after.go(a);
  const c = sum.go([b]);
  const errors = await Promise.all([root, a, b, c].map((r) => rejection(r)));
  for (const e of errors) assert.equal(e, errors[0]);
  assert.ok(errors[0] instanceof ta.OpExecutionError);
  assert.equal(ran, 0);
  assert.equal(c.status, "failed");
  const late = after.go(root);
  assert.equal(await rejection(late), errors[0], "a dependent submitted after the failure rejects too");
  assert.equal(ran, 0);
});

test("ObjectRef.status moves pending → running → completed", async () => {
  const g = gate();
  const wait = ta.op(async function wait() {
    await g.promise;
    return 1;
  });
  const ref = wait.go();
  assert.equal(ref.status, "pending");
  await sleep(1);
  assert.equal(ref.status, "running");
  g.open();
  await ref;
  assert.equal(ref.status, "completed");
  assert.match(ref.id, /^wait#\d+$/);
});

test("ObjectRef works with Promise.all, Promise.race and .effect", async () => {
  const { Effect } = await import("effect");
  const delay = ta.op(async function delay(ms: number, v: string) {
    await sleep(ms);
    return v;
  });
  assert.equal(await Promise.race([delay.go(40, "slow"), delay.go(1, "fast")]), "fast");
  assert.deepEqual(await Promise.all([delay.go(1, "a"), delay.go(2, "b")]), ["a", "b"]);
  assert.equal(await Effect.runPromise(delay.go(1, "e").effect), "e");
  const boom = ta.op(async function boom() {
    throw new Error("x");
  });
  const ref = boom.go();
  const viaEffect = await Effect.runPromise(Effect.flip(ref.effect));
  assert.equal(viaEffect, await rejection(ref), "effect fails with the same instance await rejects with");
});

test("cancel of a pending ref rejects it and its dependents with CancelledError; the op never runs", async () => {
  const g = gate<number>();
  let ran = 0;
  const first = ta.op(async function first() {
    return await g.promise;
  });
  const second = ta.op(async function second(x: number) {
    ran++;
    return x;
  });
  const a = first.go();
  const b = second.go(a);
  const c = second.go(b);
  assert.equal(b.cancel(), true);
  assert.equal(b.status, "cancelled");
  const eb = await rejection(b);
  const ec = await rejection(c);
  assert.ok(eb instanceof ta.CancelledError);
  assert.equal(ec, eb);
  g.open(1);
  assert.equal(await a, 1);
  await sleep(5);
  assert.equal(ran, 0);
  assert.equal(a.cancel(), false, "cancelling a completed ref does nothing");
});

test("cancel of a running ref rejects it and its dependents at once", async () => {
  const g = gate();
  const started = gate();
  const long = ta.op(async function long() {
    started.open();
    await g.promise;
    return "late";
  });
  const next = ta.op(async function next(x: string) {
    return x;
  });
  const a = long.go();
  const b = next.go(a);
  await started.promise;
  assert.equal(a.status, "running");
  a.cancel();
  assert.ok((await rejection(a)) instanceof ta.CancelledError);
  assert.ok((await rejection(b)) instanceof ta.CancelledError);
  g.open();
  await sleep(1);
  assert.equal(a.status, "cancelled", "a result arriving after cancel is ignored");
});

test("cancel of a running op with a deadline policy (an Effect fiber) rejects with CancelledError, not TimeoutError", async () => {
  const started = gate();
  const late = gate();
  const slow = ta.op({ name: "slowPolicy", timeoutMs: 30 }, async () => {
    started.open();
    await late.promise;
    return "late";
  });
  const ref = slow.go();
  await started.promise;
  assert.equal(ref.status, "running");
  ref.cancel();
  assert.ok((await rejection(ref)) instanceof ta.CancelledError);
  // the deadline's timer was set before this one, so it has fired when this ends; then the late result
  await sleep(60);
  late.open();
  await sleep(1);
  assert.equal(ref.status, "cancelled", "neither the deadline nor the late result overrides the cancel");
  assert.ok(ref.error instanceof ta.CancelledError);
});

test("a 100,000-long dependent chain completes", async () => {
  const inc = ta.op(async function inc(x: number) {
    return x + 1;
  });
  let ref: ta.ObjectRef<number> = inc.go(0);
  for (let i = 1; i < 100_000; i++) ref = inc.go(ref);
  assert.equal(await ref, 100_000);
  const syncInc = ta.op(function syncInc(x: number) {
    return x + 1;
  });
  let r2: ta.ObjectRef<number> = syncInc.go(0);
  for (let i = 1; i < 100_000; i++) r2 = syncInc.go(r2);
  assert.equal(await r2, 100_000);
});

test("a failure at the root of a 100,000-long chain rejects the tail without overflowing", async () => {
  const fail = ta.op(async function failRoot(): Promise<number> {
    throw new Error("root");
  });
  const inc = ta.op(async function incAfter(x: number) {
    return x + 1;
  });
  let ref = inc.go(fail.go());
  for (let i = 1; i < 100_000; i++) ref = inc.go(ref);
  const e = await rejection(ref);
  assert.ok(e instanceof ta.OpExecutionError);
  assert.equal(e.op, "failRoot");
});

test("retries re-run a failing op; timeoutMs fails a slow one with TimeoutError", async () => {
  let attempts = 0;
  const flaky = ta.op({ name: "flaky", retries: 3 }, async () => {
    if (++attempts < 3) throw new Error("transient");
    return "ok";
  });
  assert.equal(await flaky.go(), "ok");
  assert.equal(attempts, 3);
  const always = ta.op({ name: "always", retries: 2 }, async () => {
    throw new Error("permanent");
  });
  const e = await rejection(always.go());
  assert.ok(e instanceof ta.OpExecutionError);
  const never = gate();
  const slow = ta.op({ name: "slow", timeoutMs: 20 }, async () => {
    await never.promise; // ends only after the deadline answered
  });
  const t = await rejection(slow.go());
  never.open();
  assert.ok(t instanceof ta.TimeoutError);
  assert.equal(t.timeoutMs, 20);
  assert.equal(t.op, "slow");
});

test("op concurrency limits how many calls run at once", async () => {
  let running = 0, peak = 0;
  const limited = ta.op({ name: "limited", maxConcurrency: 2 }, async (x: number) => {
    running++;
    peak = Math.max(peak, running);
    await sleep(2);
    running--;
    return x;
  });
  const out = await Promise.all(Array.from({ length: 10 }, (_, i) => limited.go(i)));
  assert.deepEqual(out, Array.from({ length: 10 }, (_, i) => i));
  assert.equal(peak, 2);
});

test("op() rejects bad arguments with a TypeError that says what it got", () => {
  assert.throws(
    () => ta.op(42 as never),
    (e: unknown) => e instanceof TypeError && /expects a function.*number 42/.test(e.message),
  );
  assert.throws(
    () => ta.op("name", "nope" as never),
    (e: unknown) => e instanceof TypeError && /function to wrap/.test(e.message),
  );
  assert.throws(() => ta.op({ name: "" }, async () => 1), TypeError);
  assert.throws(() => ta.op({ retries: -1 }, async () => 1), RangeError);
  assert.throws(() => ta.op({ maxConcurrency: 0 }, async () => 1), RangeError);
  assert.throws(() => ta.op({ timeoutMs: -5 }, async () => 1), RangeError);
});

test(
  "results are released once their refs are dropped",
  { skip: gcFunction() ? false : "no GC hook on this runtime" },
  async () => {
    const gc = gcFunction()!;
    let collected = 0;
    const registry = new FinalizationRegistry(() => collected++);
    const make = ta.op(async function make(i: number) {
      const big = { payload: new Array(100).fill(i) };
      registry.register(big, i);
      return big;
    });
    const n = 2_000;
    await (async () => {
      const refs = Array.from({ length: n }, (_, i) => make.go(i));
      await Promise.all(refs);
    })();
    await collectUntil(gc, () => collected, n * 0.9);
    assert.ok(collected >= n * 0.9, `only ${collected} of ${n} results were collected`);
  },
);

test("ta.all waits for refs and values like Promise.all and rejects with the failed ref's own error", async () => {
  const id = ta.op(async function idAll(x: number) {
    await sleep(1);
    return x;
  });
  const boom = ta.op(async function boomAll(): Promise<number> {
    throw new Error("no");
  });
  assert.deepEqual(await ta.all([id.go(1), 2, Promise.resolve(3), id.go(4)]), [1, 2, 3, 4]);
  assert.deepEqual(await ta.all([]), []);
  const failing = boom.go();
  assert.equal(await rejection(ta.all([id.go(1), failing])), await rejection(failing));
  await assert.rejects(ta.all("nope" as never), TypeError);
});

test("an op that awaits its own ref fails at once with an error naming the cycle, instead of hanging", async () => {
  const started = gate();
  const awaitsItself = ta.op(async function awaitsItself(): Promise<unknown> {
    await started.promise;
    return await self;
  });
  const self = awaitsItself.go();
  const outside = self.then(() => "resolved", (e) => e); // awaited from outside first: that is fine
  started.open();
  assert.ok(await settlesWithin(self, 4_000), "the ref settles");
  const e = await outside;
  assert.ok(e instanceof ta.OpExecutionError, String(e));
  assert.ok(e.cause instanceof TypeError);
  assert.match(e.cause.message, new RegExp(`${self.id} awaited its own result`));
});

test("ta.all, ta.wait, ta.asCompleted and ref.effect of an op's own ref inside its body fail at once, naming the cycle", async () => {
  const { Effect } = await import("effect");
  const other = ta.op(function otherOfCycle() {
    return 5;
  });
  const ways: Record<string, (self: ta.ObjectRef<unknown>) => Promise<unknown>> = {
    all: (self) => ta.all([other.go(), self]),
    wait: (self) => ta.wait([self]),
    waitTwo: (self) => ta.wait([other.go(), self], { count: 2 }),
    asCompleted: async (self) => {
      for await (const { ref } of ta.asCompleted([self])) await ref;
    },
    effect: (self) => Effect.runPromise(self.effect),
  };
  for (const [way, waitFor] of Object.entries(ways)) {
    const started = gate();
    const waitsForItself = ta.op(async function waitsForItself(): Promise<unknown> {
      await started.promise;
      return await waitFor(self);
    });
    const self: ta.ObjectRef<unknown> = waitsForItself.go();
    started.open();
    assert.ok(await settlesWithin(self, 4_000), `${way}: the ref settles`);
    const e = await rejection(self);
    assert.ok(e instanceof ta.OpExecutionError, `${way}: ${e}`);
    assert.ok(e.cause instanceof TypeError, `${way}: ${e.cause}`);
    assert.match(e.cause.message, new RegExp(`${self.id} awaited its own result`), way);
  }
  // a wait that other refs can end, or one with a timeout, is not refused
  const gateTwo = gate();
  const waitsForAnother = ta.op(async function waitsForAnother(): Promise<number> {
    await gateTwo.promise;
    const { ready } = await ta.wait([other.go(), me], { count: 1 });
    const late = await ta.wait([me], { timeoutMs: 1 });
    return ready.length + late.pending.length;
  });
  const me = waitsForAnother.go();
  gateTwo.open();
  assert.equal(await me, 2);
});

test("an op that awaits a call it made on its own ref fails at once, naming the cycle; one that does not await it is fine", async () => {
  const inc = ta.op(function cycleInc(x: number) {
    return x + 1;
  });
  const started = gate();
  const awaitsDependent = ta.op(async function awaitsDependent(): Promise<number> {
    await started.promise;
    const after = inc.go(inc.go(self)); // waits for this call's own result, through another
    return await after;
  });
  const self = awaitsDependent.go();
  started.open();
  assert.ok(await settlesWithin(self, 4_000), "the ref settles");
  const e = await rejection(self);
  assert.ok(e instanceof ta.OpExecutionError && e.cause instanceof TypeError, String(e));
  assert.match(e.cause.message, new RegExp(`${self.id} awaited cycleInc#\\d+, which waits for ${self.id} itself`));
  // a follow-up made on its own ref and not awaited runs once the call is done
  let later!: ta.ObjectRef<number>;
  const schedules = ta.op(async function schedulesFollowUp() {
    await Promise.resolve();
    later = ta.detach(inc.go(me));
    return 1;
  });
  const me = schedules.go();
  assert.equal(await me, 1);
  assert.equal(await later, 2);
});
