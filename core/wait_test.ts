// ta.wait and ta.asCompleted: Ray's wait loops over many refs, failures and cancels included.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../mod.ts";
import { gate } from "./_test_utils.ts";

const N = 100_000;

/** N calls held at a gate: every 10th (i % 10 === 3) fails once opened, every 10th (i % 10 === 7) is cancelled. */
function manyRefs(name: string): { refs: ta.ObjectRef<number>[]; open: () => void } {
  const g = gate();
  const work = ta.op({ name }, async (i: number) => {
    await g.promise;
    if (i % 10 === 3) throw new Error(`boom ${i}`);
    return i;
  });
  const refs = Array.from({ length: N }, (_, i) => work.go(i));
  for (let i = 7; i < N; i += 10) refs[i].cancel();
  return { refs, open: () => g.open() };
}

function tally(refs: readonly ta.ObjectRef<number>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of refs) out[r.status] = (out[r.status] ?? 0) + 1;
  return out;
}

test("wait returns count settled refs over 100k with some failing and some cancelled, and leaves no waiter behind", async () => {
  const { refs, open } = manyRefs("waitTestMany");
  // the cancelled tenth has settled: exactly that many are ready, in input order
  const first = await ta.wait(refs, { count: N / 10 });
  assert.equal(first.ready.length, N / 10);
  assert.equal(first.pending.length, N - N / 10);
  assert.deepEqual(tally(first.ready), { cancelled: N / 10 });
  assert.equal(first.ready[0], refs[7]);
  // a timeout returns what has settled by then
  const timed = await ta.wait(first.pending, { count: first.pending.length, timeoutMs: 1 });
  assert.equal(timed.ready.length, 0);
  assert.equal(timed.pending.length, N - N / 10);
  // the waiters of the finished waits were taken off the pending refs
  assert.equal((first.pending[0] as unknown as { _waiters: unknown })._waiters, undefined);
  open();
  const all = await ta.wait(refs, { count: N });
  assert.equal(all.pending.length, 0);
  assert.deepEqual(tally(all.ready), { completed: N - N / 5, failed: N / 10, cancelled: N / 10 });
  await Promise.allSettled(refs);
});

test("wait rejects bad input at once with what it found", () => {
  assert.throws(
    () => ta.wait([1 as unknown as ta.ObjectRef<number>]),
    /wait\(\) expects an array of refs from \.go\(\), got .* at index 0/,
  );
  const inc = ta.op(async function waitTestInc(x: number) {
    return x + 1;
  });
  const r = inc.go(1);
  assert.throws(() => ta.wait([r], { count: 2 }), /count to be an integer from 0 to 1 \(the refs given\), got 2/);
  assert.throws(() => ta.wait([r], { timeoutMs: -1 }), RangeError);
  assert.throws(
    () => ta.wait([r], { timeoutMs: NaN }),
    /wait\(\) expects timeoutMs to be a number of ms ≥ 0 .*got number NaN/,
  );
  assert.throws(
    () => ta.wait([r], { timeoutMS: 5 } as unknown as ta.WaitOptions),
    (e: Error) =>
      e instanceof TypeError && /wait\(\): unknown option "timeoutMS"; did you mean "timeoutMs"\?/.test(e.message),
  );
  assert.throws(() => ta.wait([r], null as unknown as ta.WaitOptions), /wait\(\): options must be an object, got null/);
  return r.then(() => {});
});

/** A few turns of the timer queue: a timer set before this, for 1 ms, has fired once it resolves. */
async function timerTurns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setTimeout(r, 1));
}

test("wait with a timeoutMs of Infinity or of 2^31 ms or more waits until the refs settle", async () => {
  let g = gate();
  const held = ta.op(async function waitTestHeld(x: number) {
    await g.promise;
    return x;
  });
  for (const timeoutMs of [Infinity, 2 ** 31, 1e10]) {
    g = gate();
    const ref = held.go(1);
    let returned = false;
    const out = ta.wait([ref], { timeoutMs }).then((r) => {
      returned = true;
      return r;
    });
    // setTimeout takes 2^31 ms or more for 1 ms: such a timer has fired by now
    await timerTurns(3);
    assert.equal(returned, false, `timeoutMs ${timeoutMs}: returned before the ref settled`);
    g.open();
    const { ready, pending } = await out;
    assert.deepEqual([ready, pending], [[ref], []], `timeoutMs ${timeoutMs}`);
  }
});

test("asCompleted yields each of 100k refs once as it settles, with some failing and some cancelled", async () => {
  const { refs, open } = manyRefs("asCompletedTestMany");
  const seen = new Set<ta.ObjectRef<number>>();
  const order: string[] = [];
  let opened = false;
  for await (const { ref, index } of ta.asCompleted(refs)) {
    assert.equal(refs[index], ref);
    seen.add(ref);
    order.push(ref.status);
    // the cancelled ones come first (settled already); then the gate opens and the rest arrive
    if (!opened && seen.size === N / 10) {
      opened = true;
      open();
    }
  }
  assert.equal(seen.size, N);
  assert.deepEqual(tally([...seen]), { completed: N - N / 5, failed: N / 10, cancelled: N / 10 });
  assert.ok(order.slice(0, N / 10).every((s) => s === "cancelled"));
  await Promise.allSettled(refs);
});

test("asCompleted stops watching the rest when the loop breaks", async () => {
  const g = gate();
  const slow = ta.op(async function asCompletedTestSlow(x: number) {
    if (x > 0) await g.promise;
    return x;
  });
  const refs = [slow.go(0), slow.go(1), slow.go(2)];
  for await (const { ref } of ta.asCompleted(refs)) {
    assert.equal(await ref, 0);
    break;
  }
  assert.equal((refs[1] as unknown as { _waiters: unknown })._waiters, undefined);
  g.open();
  assert.deepEqual(await ta.all(refs), [0, 1, 2]);
});
