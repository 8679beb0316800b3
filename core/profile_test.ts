import { test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../mod.ts";
import { rejection, sleep } from "./_test_utils.ts";

test("profile records plain ops outside a mesh with counts and percentiles", async () => {
  const square = ta.op(async function square(x: number) {
    await sleep(1);
    return x * x;
  });
  const fails = ta.op(async function fails() {
    throw new Error("x");
  });
  using p = ta.profile();
  await Promise.all(Array.from({ length: 20 }, (_, i) => square.go(i)));
  await rejection(fails.go());
  await square(3); // direct calls are recorded while profiling
  const s = p.summary();
  assert.equal(s.ops.square.count, 21);
  assert.equal(s.ops.square.kind, "op");
  assert.ok(s.ops.square.p50 >= 0.5, "durations are real (each call sleeps 1 ms)");
  assert.ok(s.ops.square.p50 <= s.ops.square.p95 && s.ops.square.p95 <= s.ops.square.p99);
  assert.equal(s.ops.fails.failed, 1);
  assert.ok(s.elapsedMs > 0);
});

test("profile records service methods inside a mesh and the caller→callee graph with fan-out", async () => {
  const Retriever = ta.service(
    class Retriever {
      async retrieve(q: string) {
        return [q];
      }
    },
  );
  const Generator = ta.service(
    class Generator {
      async generate(_q: string, docs: string[][]) {
        return docs.length;
      }
    },
  );
  const r = Retriever.init();
  const g = Generator.init();
  const answer = ta.op(async function answer(q: string) {
    const docs = [1, 2, 3].map((i) => r.retrieve.go(`${q}${i}`));
    return await g.generate.go(q, docs);
  });
  await using mesh = new ta.Mesh([new ta.MeshNode("n1"), new ta.MeshNode("n2")]);
  using p = ta.profile();
  const out = await mesh.run(() => Promise.all([answer.go("a"), answer.go("b")]));
  assert.deepEqual(out, [3, 3]);
  const s = p.summary();
  assert.equal(s.ops["Retriever.retrieve"].count, 6);
  assert.equal(s.ops["Retriever.retrieve"].kind, "method");
  assert.equal(s.ops["Generator.generate"].count, 2);
  const edge = s.graph.find((e) => e.caller === "answer" && e.callee === "Retriever.retrieve");
  assert.ok(edge, "answer → Retriever.retrieve edge exists");
  assert.equal(edge.calls, 6);
  assert.deepEqual(edge.fanout, { mean: 3, max: 3 });
  const main = s.graph.find((e) => e.caller === "(main)" && e.callee === "answer");
  assert.equal(main?.calls, 2);
  const rec = p.tasks().find((t) => t.name === "Generator.generate")!;
  assert.equal(rec.dependencies.length, 3, "dependency ids are recorded");
  assert.ok(rec.node === "n1" || rec.node === "n2");
  assert.match(p.format(), /Retriever\.retrieve/);
});

test("getProfiler returns the active profiler until it stops; a stopped profiler records nothing more", async () => {
  const id = ta.op(async function id(x: number) {
    return x;
  });
  const p = ta.profile();
  assert.equal(ta.getProfiler(), p);
  await id.go(1);
  p.stop();
  assert.equal(ta.getProfiler(), undefined);
  await id.go(2);
  assert.equal(p.summary().ops.id.count, 1);
});

test("Profiler.toChromeTrace has one complete event per task with its duration, node tracks and dependency flows", async () => {
  const Retriever = ta.service(
    { replicas: 2 },
    class TraceRetriever {
      async retrieve(q: string) {
        await sleep(2);
        return [q];
      }
    },
  );
  const merge = ta.op(async function traceMerge(docs: string[][]) {
    return docs.flat().length;
  });
  const r = Retriever.init();
  await using mesh = new ta.Mesh([new ta.MeshNode("n1"), new ta.MeshNode("n2")]);
  using p = ta.profile();
  const n = await mesh.run(() => merge.go([1, 2, 3, 4].map((i) => r.retrieve.go(`q${i}`))));
  assert.equal(n, 4);
  p.stop();
  const trace = JSON.parse(JSON.stringify(p.toChromeTrace())) as ta.ChromeTrace;
  const tasks = p.tasks();
  const complete = trace.traceEvents.filter((e) => e.ph === "X");
  assert.equal(complete.length, tasks.length, "one event per task");
  for (const t of tasks) {
    const e = complete.find((x) => x.args?.id === t.id)!;
    assert.ok(Math.abs(e.dur! - (t.settledAt - t.startedAt) * 1000) < 1e-6, `${t.id} lasts as long as it ran`);
    assert.ok(Math.abs(e.ts - (t.startedAt - p.startedAt) * 1000) < 1e-6);
    assert.equal(e.name, t.name);
  }
  // nodes are processes; a process and thread name for each track
  const processes = trace.traceEvents.filter((e) => e.ph === "M" && e.name === "process_name").map((e) => e.args?.name);
  const nodes = new Set(tasks.map((t) => `node ${t.node ?? "local"}`));
  assert.deepEqual(new Set(processes), nodes);
  assert.ok(nodes.has("node n1") && nodes.has("node n2"), "replicas are spread over both nodes");
  // slices on one thread never overlap partially
  const byTrack = new Map<string, ta.ChromeTraceEvent[]>();
  for (const e of complete) {
    const k = `${e.pid}/${e.tid}`;
    byTrack.set(k, [...(byTrack.get(k) ?? []), e]);
  }
  for (const list of byTrack.values()) {
    list.sort((a, b) => a.ts - b.ts);
    for (let i = 1; i < list.length; i++) assert.ok(list[i].ts >= list[i - 1].ts + list[i - 1].dur! - 1e-6);
  }
  // one flow arrow per dependency edge: from each retrieve's slice to merge's start
  const starts = trace.traceEvents.filter((e) => e.ph === "s");
  const finishes = trace.traceEvents.filter((e) => e.ph === "f");
  assert.equal(starts.length, 4);
  assert.deepEqual(starts.map((e) => e.id).sort(), finishes.map((e) => e.id).sort());
  const mergeEvent = complete.find((e) => e.name === "traceMerge")!;
  for (const f of finishes) {
    assert.equal(f.ts, mergeEvent.ts);
    assert.equal(f.tid, mergeEvent.tid);
    assert.equal(f.bp, "e");
  }
  for (const s of starts) {
    const from = complete.find((e) => e.pid === s.pid && e.tid === s.tid && e.ts <= s.ts && s.ts <= e.ts + e.dur!);
    assert.equal(from?.name, "TraceRetriever.retrieve", "each arrow starts inside a retrieve slice");
  }
});

test("Profiler.criticalPath follows the slow branch through inputs, awaited children and sequential awaits", async () => {
  const fast = ta.op(async function cpFast(x: number) {
    return x;
  });
  const slow = ta.op(async function cpSlow(x: number) {
    await sleep(15);
    return x;
  });
  const add = ta.op(async function cpAdd(a: number, b: number) {
    return a + b;
  });
  const step = ta.op(async function cpStep(x: number) {
    await sleep(2);
    return x + 1;
  });
  const pipeline = ta.op(async function cpPipeline() {
    const sum = await add.go(fast.go(1), slow.go(2)); // the slow input holds add back
    return sum;
  });
  using p = ta.profile();
  const first = await step.go(0); // main awaits step first, then submits the pipeline
  assert.equal(first, 1);
  assert.equal(await pipeline.go(), 3);
  const names = p.criticalPath().map((t) => t.name);
  assert.deepEqual(names, ["cpStep", "cpSlow", "cpAdd", "cpPipeline"]);
  using empty = ta.profile(); // disposed at the end of the test: a profiler left recording makes tracing record every task
  assert.deepEqual(empty.criticalPath(), [], "empty profile, empty path");
});

test("a task-event listener that unsubscribes during an event does not make the next listener miss it", async () => {
  const { onTaskEvent } = await import("./events.ts");
  const seen: string[] = [];
  let offFirst = () => {};
  offFirst = onTaskEvent(() => offFirst());
  const offSecond = onTaskEvent((e) => seen.push(e.kind));
  try {
    await ta.op(async function listenedTo() {}).go();
    assert.deepEqual(seen, ["submitted", "started", "finished"]);
  } finally {
    offFirst();
    offSecond();
  }
});
