import { test } from "node:test";
import assert from "node:assert/strict";
import type { TaskEvent, TaskInfo } from "../../core/events.ts";
import { OTHER, TaskAggregator } from "./aggregate.ts";

/** Tasks "made" so far: the task counter every aggregator here reads. */
let made = 0;
const taskCount = () => made;

/** A fake task: what the aggregator reads of one (made now). */
function task(name: string, fields: Partial<Record<keyof TaskInfo, unknown>> = {}): TaskInfo & Record<string, unknown> {
  return {
    name,
    seq: ++made,
    kind: "op",
    parent: undefined,
    attempt: 0,
    submittedAt: 0,
    startedAt: 0,
    settledAt: 0,
    ...fields,
  } as unknown as TaskInfo & Record<string, unknown>;
}

/** Runs one call through the aggregator: submitted at `at`, ran `ms`, ended as `end`. */
function call(
  agg: TaskAggregator,
  name: string,
  at: number,
  ms: number,
  end: TaskEvent["kind"] = "finished",
): void {
  const t = task(name, { submittedAt: at, startedAt: at, settledAt: at + ms });
  agg.record({ kind: "submitted", task: t, at });
  agg.record({ kind: "started", task: t, at });
  agg.record({ kind: end, task: t, at: at + ms });
}

test("TaskAggregator counts calls per name, how they ended, and those in flight and running", () => {
  const now = 1_000;
  const agg = new TaskAggregator({ now: () => now, taskCount });
  call(agg, "embed", now, 2);
  call(agg, "embed", now, 3, "failed");
  call(agg, "Gen.generate", now, 1, "cancelled");
  const waiting = task("embed", { submittedAt: now });
  agg.record({ kind: "submitted", task: waiting, at: now });
  const running = task("embed", { submittedAt: now, startedAt: now });
  agg.record({ kind: "submitted", task: running, at: now });
  agg.record({ kind: "started", task: running, at: now });
  // a retry starts again: still one call running
  (running as Record<string, unknown>).attempt = 1;
  agg.record({ kind: "started", task: running, at: now });

  const s = agg.snapshot();
  assert.deepEqual(s.names.map((n) => n.name), ["Gen.generate", "embed"]);
  const embed = s.names[1];
  assert.equal(embed.calls, 4);
  assert.equal(embed.completed, 1);
  assert.equal(embed.failed, 1);
  assert.equal(embed.inFlight, 2);
  assert.equal(embed.running, 1);
  assert.equal(s.names[0].cancelled, 1);
  assert.equal(s.names[0].inFlight, 0);

  // a cancelled call that never started leaves "running" alone
  agg.record({ kind: "cancelled", task: waiting, at: now });
  agg.record({ kind: "finished", task: { ...running, settledAt: now + 1 } as TaskInfo, at: now + 1 });
  const after = agg.snapshot().names[1];
  assert.equal(after.inFlight, 0);
  assert.equal(after.running, 0);
  assert.equal(after.cancelled, 1);
});

test("TaskAggregator counts a task submitted before it started only when it settles, never as in flight", () => {
  const now = 5_000;
  const agg = new TaskAggregator({ now: () => now, taskCount });
  const old = task("embed", { submittedAt: 4_000, startedAt: 4_500, settledAt: 5_000 });
  agg.record({ kind: "finished", task: old, at: 5_000 });
  const s = agg.snapshot().names[0];
  assert.equal(s.completed, 1);
  assert.equal(s.calls, 0);
  assert.equal(s.inFlight, 0);
  assert.equal(s.running, 0);
  assert.equal(s.window.settled, 1);
});

test("TaskAggregator percentiles: p50 and p95 within the histogram's ±9 %, a single duration exactly", () => {
  const now = 100_000;
  const agg = new TaskAggregator({ now: () => now, taskCount });
  // 1..100 ms, in shuffled order
  const ds = Array.from({ length: 100 }, (_, i) => i + 1).sort((a, b) => ((a * 37) % 101) - ((b * 37) % 101));
  for (const d of ds) call(agg, "work", now - 200, d);
  const w = agg.snapshot().names[0].window;
  assert.ok(Math.abs(w.p50 - 50) <= 50 * 0.09, `p50 ${w.p50}`);
  assert.ok(Math.abs(w.p95 - 95) <= 95 * 0.09, `p95 ${w.p95}`);
  assert.equal(w.max, 100);
  assert.equal(w.settled, 100);

  const one = new TaskAggregator({ now: () => now, taskCount });
  call(one, "once", now - 100, 7.25);
  const o = one.snapshot().names[0].window;
  assert.equal(o.p50, 7.25);
  assert.equal(o.p95, 7.25);

  const micro = new TaskAggregator({ now: () => now, taskCount });
  for (let i = 0; i < 10; i++) call(micro, "tiny", now - 100, 0.0004);
  const p95 = micro.snapshot().names[0].window.p95;
  assert.ok(Math.abs(p95 - 0.0004) < 1e-9, `below a microsecond: ${p95}`);
});

test("TaskAggregator window: calls older than the last minute leave the rate, the chart and the percentiles", () => {
  let now = 1_000_000;
  const agg = new TaskAggregator({ now: () => now, taskCount });
  for (let i = 0; i < 10; i++) call(agg, "step", now, 100);
  now += 30_000;
  for (let i = 0; i < 5; i++) call(agg, "step", now, 1);
  now += 500;

  let s = agg.snapshot();
  let step = s.names[0];
  assert.equal(step.window.settled, 15);
  assert.equal(step.series.length, 60);
  assert.equal(step.series.reduce((a, b) => a + b, 0), 15);
  assert.equal(step.series[59], 5, "the current second holds the last 5");
  assert.equal(step.series[59 - 30], 10, "30 s earlier: the first 10");
  assert.equal(step.window.perSecond, 15 / 30.5, "rate over the part of the minute seen");
  assert.equal(step.window.p95, 100);
  assert.deepEqual(s.series, step.series);

  // 40 s on, the first 10 calls (at 0 s) are past the minute; the later 5 remain
  now += 40_000;
  s = agg.snapshot();
  step = s.names[0];
  assert.equal(step.window.settled, 5);
  assert.equal(step.window.p95, 1);
  assert.equal(step.window.max, 1);
  assert.equal(step.window.perSecond, 5 / 60);
  assert.equal(step.completed, 15, "totals since start keep every call");

  // a call in a slot that held a second one minute earlier: the slot is emptied first
  call(agg, "step", now, 2);
  s = agg.snapshot();
  assert.equal(s.names[0].window.settled, 6);
  assert.equal(s.names[0].series[59], 1);

  now += 120_000;
  s = agg.snapshot();
  assert.equal(s.names[0].window.settled, 0);
  assert.equal(s.names[0].window.p50, 0);
  assert.deepEqual(s.series, new Array(60).fill(0));
});

test("TaskAggregator keeps the root task seen last, for the trace id", () => {
  const agg = new TaskAggregator({ now: () => 0, taskCount });
  const root = task("a");
  const child = task("b", { parent: root });
  agg.record({ kind: "submitted", task: root, at: 0 });
  agg.record({ kind: "submitted", task: child, at: 0 });
  assert.equal(agg.snapshot().lastRoot, root);
});

test("TaskAggregator counts names past maxNames together as (other)", () => {
  const agg = new TaskAggregator({ now: () => 0, maxNames: 2, taskCount });
  for (const name of ["a", "b", "c", "d"]) call(agg, name, 0, 1);
  const s = agg.snapshot();
  assert.deepEqual(s.names.map((n) => n.name), [OTHER, "a", "b"]);
  assert.equal(s.names[0].completed, 2);
});

test("TaskAggregator refuses a bad window or name limit with a RangeError saying what it got", () => {
  assert.throws(
    () => new TaskAggregator({ windowSeconds: 0 }),
    /windowSeconds must be an integer in \[1, 3600\], got 0/,
  );
  assert.throws(() => new TaskAggregator({ windowSeconds: 1.5 }), RangeError);
  assert.throws(() => new TaskAggregator({ maxNames: 0 }), /maxNames must be an integer ≥ 1, got 0/);
});

test("TaskAggregator counts the tasks left out between recorded ones as calls of the op recorded before them", () => {
  let now = 50_000;
  const agg = new TaskAggregator({ now: () => now, taskCount });
  // second 50: 10 tasks made, all recorded
  for (let i = 0; i < 10; i++) call(agg, "step", now, 1);
  now += 1000;
  // second 51: 100 tasks made, 25 recorded (one in four), the last three left out after the last one
  for (let i = 0; i < 100; i++) {
    if (i % 4 === 0) call(agg, "step", now, 1);
    else made++; // made, not recorded
  }
  now += 1000;
  const s = agg.snapshot();
  const step = s.names[0];
  assert.equal(step.calls, 110);
  assert.equal(step.completed, 110);
  assert.equal(step.estimated, true);
  assert.equal(step.window.settled, 110);
  assert.deepEqual(step.series.slice(-3), [10, 100, 0]);
  assert.equal(step.inFlight, 0, "in flight: the recorded calls");
  assert.equal(s.recordedShare, 35 / 110);
  assert.equal(step.window.p50, 1, "percentiles: of the recorded calls");
});

test("TaskAggregator gives a flood's left-out tasks to the flooding op, not to the op recorded after it", () => {
  const agg = new TaskAggregator({ now: () => 0, taskCount });
  call(agg, "tiny", 0, 0.001);
  made += 9_999; // the rest of the flood, left out while the gate was shut
  call(agg, "slow", 0, 20); // recorded once the gate reopened
  const [slow, tiny] = agg.snapshot().names;
  assert.deepEqual([tiny.name, tiny.calls, tiny.completed, tiny.estimated], ["tiny", 10_000, 10_000, true]);
  assert.deepEqual([slow.name, slow.calls, slow.completed, slow.estimated], ["slow", 1, 1, false]);
});

test("TaskAggregator counts every recorded task toward the share, but only accepted ones per name", () => {
  const agg = new TaskAggregator({ now: () => 0, taskCount, accept: (t) => t.name !== "elsewhere" });
  for (const name of ["mine", "elsewhere", "elsewhere", "mine"]) call(agg, name, 0, 1);
  const s = agg.snapshot();
  assert.deepEqual(s.names.map((n) => [n.name, n.calls, n.estimated]), [["mine", 2, false]]);
  assert.equal(s.recordedShare, 1, "all four made were recorded");
});

test("TaskAggregator with accept counts the left-out tasks by scopeCount, never the process's other work", () => {
  const inM1 = new WeakSet<TaskInfo>();
  const mesh = (t: TaskInfo) => inM1.has(t);
  let inMesh = 0;
  const scoped = new TaskAggregator({ now: () => 0, taskCount, accept: mesh, scopeCount: () => inMesh });
  const blind = new TaskAggregator({ now: () => 0, taskCount, accept: mesh });
  const mine = () => {
    inMesh++;
    const t = task("mine");
    inM1.add(t);
    for (const agg of [scoped, blind]) {
      for (const kind of ["submitted", "started", "finished"] as const) agg.record({ kind, task: t, at: 0 });
    }
  };
  mine();
  made += 5_000; // other work of the process, outside the mesh, left out
  inMesh += 3; // three calls of the mesh left out
  made += 3;
  mine();
  made += 7_000; // more outside work after the last one recorded
  inMesh += 2;
  made += 2;
  const [m] = scoped.snapshot().names;
  assert.deepEqual([m.name, m.calls, m.completed, m.estimated], ["mine", 7, 7, true]);
  const [b] = blind.snapshot().names;
  assert.deepEqual([b.calls, b.estimated], [2, false], "without the mesh's count: the recorded ones, a lower bound");
});

test("TaskAggregator lists the tasks reported stuck with their explanation, once, until they settle", () => {
  let now = 50_000;
  const agg = new TaskAggregator({ now: () => now, taskCount });
  const t = task("slowOp", { id: "slowOp#1", submittedAt: now });
  const explanation = {
    id: "slowOp#1",
    name: "slowOp",
    status: "running",
    waitingFor: "running",
    node: "n2",
    forMs: 1500,
    sinceFirstSeen: false,
    unsettledInputs: 0,
    inputs: [],
  } as const;
  agg.record({ kind: "submitted", task: t, at: now });
  agg.record({ kind: "started", task: t, at: now });
  now += 1500;
  agg.record({ kind: "stuck", task: t, at: now, explanation });
  agg.record({ kind: "stuck", task: t, at: now, explanation }); // a second report of it changes nothing
  now += 500;
  let snap = agg.snapshot();
  assert.equal(snap.stuckReported, 1);
  assert.deepEqual(snap.stuck, [{
    id: "slowOp#1",
    name: "slowOp",
    node: "n2",
    waitingFor: "running",
    forMs: 1500,
    reportedAgoMs: 500,
    explanation: "slowOp#1: running 1.5 s on node n2",
  }]);
  // a report is not a call: the op's counts are those of its one call, still in flight
  const op = snap.names.find((n) => n.name === "slowOp")!;
  assert.deepEqual([op.calls, op.inFlight, op.running, op.completed], [1, 1, 1, 0]);
  agg.record({ kind: "finished", task: t, at: now });
  snap = agg.snapshot();
  assert.deepEqual(snap.stuck, [], "a settled task is no longer listed");
  assert.equal(snap.stuckReported, 1);
  // a task whose settling was not recorded (sampling) leaves the list by its status
  const unseen = task("slowOp", { id: "slowOp#2" });
  unseen.status = "running";
  agg.record({ kind: "stuck", task: unseen, at: now, explanation: { ...explanation, id: "slowOp#2" } });
  assert.deepEqual(agg.snapshot().stuck.map((s) => s.id), ["slowOp#2"]);
  unseen.status = "completed";
  assert.deepEqual(agg.snapshot().stuck, []);
  assert.equal(agg.snapshot().stuckReported, 2);
});
