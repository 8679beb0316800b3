import { test } from "node:test";
import assert from "node:assert/strict";
import { RecordingBudget } from "./budget.ts";

function fakeBudget(options: { maxOverhead?: number; costPerTaskMs?: number; tracing?: () => boolean } = {}) {
  let now = 0;
  const gate: boolean[] = [];
  const timers: (() => void)[] = [];
  const budget = new RecordingBudget({
    maxOverhead: options.maxOverhead ?? 0.04,
    costPerTaskMs: options.costPerTaskMs ?? 0.005,
    now: () => now,
    setGate: (open) => gate.push(open),
    mayUseGate: () => !(options.tracing?.() ?? false),
    schedule: (fn) => {
      timers.push(fn);
      return () => timers.splice(timers.indexOf(fn), 1);
    },
  });
  return { budget, gate, timers, advance: (ms: number) => (now += ms) };
}

test("RecordingBudget records a quiet pipeline whole and shuts the gate in a flood, at its share of the time", () => {
  const { budget, gate, advance } = fakeBudget();
  // a full budget: 4 % of 5 ms = 0.2 ms, 40 tasks at 5 µs
  for (let i = 0; i < 39; i++) budget.spend();
  assert.deepEqual(gate, [], "a burst within the saved-up credit is recorded whole");
  budget.spend();
  assert.deepEqual(gate, [false]);
  assert.equal(budget.gateShut, true);
  // 5 ms earn 0.2 ms: 40 tasks
  advance(5);
  budget.topUp();
  assert.deepEqual(gate, [false, true]);
  let recorded = 0;
  while (!budget.gateShut) {
    budget.spend();
    recorded++;
  }
  assert.equal(recorded, 40);
  // a long quiet spell saves up no more than the full budget
  advance(60_000);
  budget.topUp();
  recorded = 0;
  while (!budget.gateShut) {
    budget.spend();
    recorded++;
  }
  assert.equal(recorded, 40);
  // over a second of flood, what it records costs its share of the second
  recorded = 0;
  for (let t = 0; t < 1000; t += 5) {
    advance(5);
    budget.topUp();
    while (!budget.gateShut) {
      budget.spend();
      recorded++;
    }
  }
  // 4 % of 1,000 ms at 5 µs a task: 8,000 (give or take the one that overdraws)
  assert.ok(Math.abs(recorded - 8_000) <= 1, `${recorded} tasks recorded in 1 s`);
  assert.equal(budget.shutCount, 203);
  budget.release();
  assert.equal(gate.at(-1), true, "released, the gate is open");
});

test("RecordingBudget leaves the gate to tracing while tracing is on, and gives it back if it shut it", () => {
  let tracing = true;
  const { budget, gate, advance } = fakeBudget({ tracing: () => tracing });
  for (let i = 0; i < 10_000; i++) budget.spend();
  assert.deepEqual(gate, [], "tracing owns the gate");
  tracing = false;
  budget.spend();
  assert.deepEqual(gate, [false]);
  tracing = true;
  budget.topUp(); // no credit yet, but the gate is tracing's again
  assert.deepEqual(gate, [false, true]);
  advance(1);
  budget.release();
  assert.deepEqual(gate, [false, true], "released with the gate open: nothing to give back");
});

test("RecordingBudget refuses a share outside (0, 1) or a cost that is not positive, saying what it got", () => {
  assert.throws(() => new RecordingBudget({ maxOverhead: 0 }), /maxOverhead must be a number in \(0, 1\), got 0/);
  assert.throws(() => new RecordingBudget({ maxOverhead: 1.5 }), RangeError);
  assert.throws(() => new RecordingBudget({ costPerTaskMs: -1 }), /costPerTaskMs must be a positive number, got -1/);
});

test("RecordingBudget reopens a shut gate from its timer once time has earned credit, and ticks only while shut", () => {
  const { budget, gate, timers, advance } = fakeBudget();
  assert.equal(timers.length, 0, "nothing ticks while the gate is open");
  while (!budget.gateShut) budget.spend();
  assert.equal(timers.length, 1);
  timers.shift()!(); // no time has passed: still shut, the timer is armed again
  assert.equal(budget.gateShut, true);
  assert.equal(timers.length, 1);
  advance(10);
  timers.shift()!();
  assert.equal(budget.gateShut, false);
  assert.deepEqual(gate, [false, true]);
  assert.equal(timers.length, 0);
  while (!budget.gateShut) budget.spend();
  budget.release();
  assert.equal(timers.length, 0, "released: its timer is cancelled");
  assert.deepEqual(gate, [false, true, false, true]);
});
