import { test } from "node:test";
import assert from "node:assert/strict";
import type { TaskRecord } from "../../core/profile.ts";
import { layoutDag } from "./dag.ts";

function rec(id: string, fields: Partial<TaskRecord> = {}): TaskRecord {
  return {
    id,
    name: id.split("#")[0],
    kind: "op",
    node: undefined,
    executor: "local",
    parent: undefined,
    dependencies: [],
    submittedAt: 0,
    readyAt: 0,
    startedAt: 1,
    settledAt: 2,
    attempts: 1,
    status: "completed",
    ...fields,
  };
}

test("layoutDag puts a task one layer past its deepest input and its caller, rows by submission", () => {
  const a = rec("a#1", { submittedAt: 1 });
  const b = rec("b#2", { submittedAt: 2, dependencies: ["a#1"] });
  const c = rec("c#3", { submittedAt: 3, dependencies: ["a#1"] });
  const d = rec("d#4", { submittedAt: 4, dependencies: ["b#2", "c#3"] });
  // submitted by d's body: one past its caller
  const e = rec("e#5", { submittedAt: 5, parent: "d#4" });
  const dag = layoutDag([e, d, c, b, a], [a, b, d]);
  const at = Object.fromEntries(dag.tasks.map((t) => [t.id, [t.layer, t.row]]));
  assert.deepEqual(at, { "a#1": [0, 0], "b#2": [1, 0], "c#3": [1, 1], "d#4": [2, 0], "e#5": [3, 0] });
  assert.equal(dag.layers, 4);
  assert.deepEqual(dag.critical, ["a#1", "b#2", "d#4"]);
  assert.deepEqual(dag.tasks.filter((t) => t.critical).map((t) => t.id), ["a#1", "b#2", "d#4"]);
  assert.equal(dag.tasks.find((t) => t.id === "e#5")!.parent, "d#4");
  assert.equal(dag.omitted, 0);
});

test("layoutDag past maxTasks keeps the critical path, then the earliest submitted, and says how many it left out", () => {
  const records = Array.from({ length: 50 }, (_, i) => rec(`t#${i}`, { submittedAt: i }));
  const late = rec("late#99", { submittedAt: 1000, dependencies: ["t#49", "t#20"] });
  const dag = layoutDag([...records, late], [records[49], late], { maxTasks: 10 });
  assert.equal(dag.tasks.length, 10);
  assert.equal(dag.omitted, 41);
  const ids = dag.tasks.map((t) => t.id);
  assert.ok(ids.includes("late#99") && ids.includes("t#49"), "the critical path is drawn");
  assert.deepEqual(ids.slice(0, 8), ["t#0", "t#1", "t#2", "t#3", "t#4", "t#5", "t#6", "t#7"]);
  // an input that is not drawn is no arrow
  assert.deepEqual(dag.tasks.find((t) => t.id === "late#99")!.deps, ["t#49"]);
  assert.throws(() => layoutDag([], [], { maxTasks: 0 }), /maxTasks must be an integer ≥ 1, got 0/);
});
