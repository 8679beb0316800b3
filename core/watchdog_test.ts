// The stuck-work watchdog: MeshOptions.stuckAfterMs reports each stuck task once, with its explanation.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../mod.ts";
import { eventually, gate } from "./_test_utils.ts";
import { onTaskEvent, type TaskEvent, type TaskInfo } from "./events.ts";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { spanTaskEvent } from "./tracing/spans.ts";
import { tracingState } from "./tracing/state.ts";

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

test("Mesh stuckAfterMs with no events on reports how long a task waited from the watchdog's first look", async () => {
  const g = gate();
  const hang = ta.op(async function watchdogTestSince() {
    await g.promise;
    return 1;
  });
  const reports: ta.Explanation[] = [];
  await using mesh = new ta.Mesh([new ta.MeshNode("n1")], { stuckAfterMs: 50, onStuck: (e) => reports.push(e) });
  const { ref } = await mesh.run(() => ({ ref: hang.go() }));
  assert.equal(await eventually(() => reports.length >= 1, 30_000), true, "the stuck task reported");
  const [r] = reports;
  assert.deepEqual([r.id, r.waitingFor, r.sinceFirstSeen], [ref.id, "running", true]);
  // it was seen running when first looked at, and reported once unsettled 50 ms since that look
  assert.ok(r.forMs >= 50, `waited ${r.forMs} ms by the watchdog's clock`);
  assert.match(ta.formatExplanation(r), /running at least (\d+ ms|[\d.]+ s)/);
  assert.ok(ref.explain().forMs >= r.forMs, "explain() counts from the same first look");
  g.open();
  assert.equal(await ref, 1);
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

test("Mesh stuckAfterMs sends each stuck task once on the event stream and in the warning, a finished one never", async () => {
  const g = gate();
  const stuck = ta.op(async function watchdogTestEventStuck() {
    await g.promise;
    return 1;
  });
  const quick = ta.op(async function watchdogTestEventQuick(x: number) {
    return x;
  });
  const events: TaskEvent[] = [];
  const off = onTaskEvent((e) => {
    if (e.kind === "stuck") events.push(e);
  });
  const warned: string[] = [];
  const warn = console.warn;
  console.warn = (...args: unknown[]) => void warned.push(args.map(String).join(" "));
  try {
    await using mesh = new ta.Mesh([new ta.MeshNode("n1")], { stuckAfterMs: 20 });
    const { a, b } = await mesh.run(async () => {
      assert.equal(await quick.go(1), 1);
      return { a: stuck.go(), b: stuck.go() };
    });
    assert.equal(await eventually(() => events.length >= 2 && warned.length >= 2, 30_000), true);
    // a third stuck task, reported after the watchdog has looked at the first two many times more
    const { c } = await mesh.run(() => ({ c: stuck.go() }));
    assert.equal(await eventually(() => events.some((e) => e.task.id === c.id), 30_000), true);
    assert.equal(await eventually(() => warned.some((w) => w.includes(c.id)), 30_000), true);
    assert.deepEqual(events.map((e) => e.task.id).sort(), [a.id, b.id, c.id].sort(), "each stuck task once");
    for (const e of events) {
      assert.equal(e.task.name, "watchdogTestEventStuck");
      assert.equal(e.explanation?.id, e.task.id);
      assert.equal(e.explanation?.waitingFor, "running");
      assert.ok(e.explanation!.forMs >= 0);
    }
    const stuckWarnings = warned.filter((w) => w.includes("is stuck"));
    assert.equal(stuckWarnings.length, 3, stuckWarnings.join("\n"));
    for (const id of [a.id, b.id, c.id]) {
      assert.equal(stuckWarnings.filter((w) => w.startsWith(`thinkagain: ${id} is stuck:`)).length, 1, id);
    }
    assert.ok(!warned.some((w) => w.includes("watchdogTestEventQuick")), "a finished task is never reported");
    g.open();
    assert.deepEqual(await Promise.all([a, b, c]), [1, 1, 1]);
  } finally {
    console.warn = warn;
    off();
  }
});

test("a stuck event leaves the task's span open: tracing ends it when the task settles", () => {
  const exporter = new InMemorySpanExporter();
  const before = tracingState.tracer;
  tracingState.tracer = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
    .getTracer("watchdog-test");
  try {
    const task = {
      id: "stuckSpan#1",
      seq: 1,
      kind: "op",
      name: "stuckSpan",
      node: undefined,
      parent: undefined,
      dependencies: [],
      submittedAt: 1,
      readyAt: 1,
      startedAt: 2,
      settledAt: 0,
      attempt: 0,
      executor: "local",
      error: undefined,
    } satisfies TaskInfo;
    spanTaskEvent({ kind: "submitted", task, at: 1 });
    spanTaskEvent({ kind: "started", task, at: 2 });
    spanTaskEvent({
      kind: "stuck",
      task,
      at: 50,
      explanation: {
        id: task.id,
        name: task.name,
        status: "running",
        waitingFor: "running",
        node: undefined,
        forMs: 48,
        sinceFirstSeen: false,
        unsettledInputs: 0,
        inputs: [],
      },
    });
    assert.deepEqual(exporter.getFinishedSpans().map((s) => s.name), [], "still running: no span ended");
    spanTaskEvent({ kind: "finished", task: { ...task, settledAt: 60 }, at: 60 });
    assert.deepEqual(exporter.getFinishedSpans().map((s) => s.name), ["op stuckSpan"]);
  } finally {
    tracingState.tracer = before;
  }
});

/** Calls of a service (one running, one queued behind it) and an op, held until `g` opens, in a mesh of `nodes`. */
async function stuckServiceCalls(nodes: ta.MeshNode[], name: string): Promise<void> {
  const g = gate();
  const Svc = ta.service(
    { name },
    class {
      async wait() {
        await g.promise;
        return 1;
      }
    },
  );
  const sentinel = ta.op(async function stuckWatchSentinel() {
    await g.promise;
    return 2;
  });
  const reported: string[] = [];
  const mesh = new ta.Mesh(nodes, { stuckAfterMs: 20, onStuck: (e) => reported.push(e.id) });
  try {
    const refs = await mesh.run(async () => {
      const s = Svc.init();
      return [s.wait.go(), s.wait.go(), sentinel.go()];
    });
    const sentinelId = refs[2].id;
    assert.equal(await eventually(() => reported.includes(sentinelId), 30_000), true, "the op is reported");
    // the calls were submitted with it, in the same turn: the look that found it stuck found them too
    assert.deepEqual(new Set(reported), new Set(refs.map((r) => r.id)), `reported: ${reported}`);
    g.open();
    assert.deepEqual(await Promise.all(refs), [1, 1, 2]);
  } finally {
    g.open();
    await mesh.close();
  }
}

test("Mesh stuckAfterMs reports service calls, running or queued, not only ops", async () => {
  await stuckServiceCalls([new ta.MeshNode("n", { cpus: 2 })], "StuckWatchSvc");
});

test("Mesh stuckAfterMs reports service calls on a node", async () => {
  const { NodeServer } = await import("../transports/node_server.ts");
  const { serveInMemory } = await import("../transports/in_memory.ts");
  const node = new NodeServer({ name: "remote" });
  const server = serveInMemory("stuck-watch-remote", node.handler);
  try {
    await stuckServiceCalls([new ta.MeshNode("remote", { endpoint: server.endpoint })], "StuckWatchRemoteSvc");
  } finally {
    await server.close();
    await node.drain({ graceMs: 50 });
  }
});
