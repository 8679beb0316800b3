// The stuck-work watchdog: MeshOptions.stuckAfterMs reports each stuck task once, with its explanation.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../mod.ts";
import { eventually, gate } from "./_test_utils.ts";

test("Mesh stuckAfterMs reports a stuck task once with its explanation, and a finished one never", async () => {
  const g = gate();
  const stuck = ta.op(async function watchdogTestStuck() {
    await g.promise;
    return 1;
  });
  const quick = ta.op(async function watchdogTestQuick(x: number) {
    return x;
  });
  const inc = ta.op(async function watchdogTestInc(x: number) {
    return x + 1;
  });
  const reports: ta.Explanation[] = [];
  await using mesh = new ta.Mesh([new ta.MeshNode("n1", { cpus: 2 })], {
    stuckAfterMs: 20,
    onStuck: (e) => reports.push(e),
  });
  const first = await mesh.run(async () => {
    assert.equal(await quick.go(1), 1);
    return { ref: inc.go(stuck.go()) };
  });
  assert.equal(await eventually(() => reports.length >= 2, 30_000), true, "both stuck tasks reported");
  const byName = new Map(reports.map((e) => [e.name, e]));
  assert.equal(byName.get("watchdogTestStuck")?.waitingFor, "running");
  const dependent = byName.get("watchdogTestInc")!;
  assert.equal(dependent.id, first.ref.id);
  assert.equal(dependent.waitingFor, "inputs");
  assert.equal(dependent.inputs[0].name, "watchdogTestStuck");
  // a task stuck later is reported after the watchdog has looked at the first ones many times more
  const later = await mesh.run(() => ({ ref: stuck.go() }));
  assert.equal(await eventually(() => reports.some((e) => e.id === later.ref.id), 30_000), true);
  const ids = reports.map((e) => e.id);
  assert.equal(new Set(ids).size, ids.length, `each stuck task is reported once: ${ids.join(", ")}`);
  assert.ok(!reports.some((e) => e.name === "watchdogTestQuick"), "a finished task is never reported");
  g.open();
  assert.equal(await first.ref, 2);
});

test("Mesh rejects a bad stuckAfterMs or onStuck with what it got", () => {
  assert.throws(
    () => new ta.Mesh([new ta.MeshNode("n1")], { stuckAfterMs: -1 }),
    /stuckAfterMs must be a positive number of ms, got number -1/,
  );
  assert.throws(
    () => new ta.Mesh([new ta.MeshNode("n1")], { stuckAfterMs: 10, onStuck: 3 as unknown as () => void }),
    /onStuck must be a function, got number 3/,
  );
});

test("Mesh.fromConfig takes stuckAfterMs and starts the watchdog with it", async () => {
  const g = gate();
  const stuck = ta.op(async function watchdogTestConfigStuck() {
    await g.promise;
    return 1;
  });
  await using mesh = await ta.Mesh.fromConfig({ nodes: [{ name: "n1" }], stuckAfterMs: 20 });
  assert.equal(mesh.options.stuckAfterMs, 20);
  const warned: string[] = [];
  const warn = console.warn;
  console.warn = (...args: unknown[]) => void warned.push(args.map(String).join(" "));
  try {
    const { ref } = await mesh.run(() => ({ ref: stuck.go() }));
    assert.equal(await eventually(() => warned.some((w) => w.includes(ref.id)), 30_000), true, "the default warning");
    assert.match(warned.find((w) => w.includes(ref.id))!, /is stuck:\n.*running/s);
    g.open();
    assert.equal(await ref, 1);
  } finally {
    console.warn = warn;
  }
});

test("Mesh.fromConfig rejects a bad stuckAfterMs, naming the field and what it got", async () => {
  for (const bad of [0, -5, "60000", null, Number.POSITIVE_INFINITY]) {
    await assert.rejects(
      ta.Mesh.fromConfig({ nodes: [{ name: "n1" }], stuckAfterMs: bad as number }),
      (e: unknown) =>
        e instanceof TypeError &&
        /^Mesh\.fromConfig: stuckAfterMs must be a positive number of ms \(e\.g\. 60000\), got /.test(e.message),
    );
  }
  await assert.rejects(
    ta.Mesh.fromConfig({ nodes: [{ name: "n1" }], stuckAfterMS: 10 } as never),
    /did you mean "stuckAfterMs"/,
  );
});
