import { test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../mod.ts";
import { eventually, gate, rejection, sleep } from "./_test_utils.ts";

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
    class ProfRetriever {
      async retrieve(q: string) {
        return [q];
      }
    },
  );
  const Generator = ta.service(
    class ProfGenerator {
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
  assert.equal(s.ops["ProfRetriever.retrieve"].count, 6);
  assert.equal(s.ops["ProfRetriever.retrieve"].kind, "method");
  assert.equal(s.ops["ProfGenerator.generate"].count, 2);
  const edge = s.graph.find((e) => e.caller === "answer" && e.callee === "ProfRetriever.retrieve");
  assert.ok(edge, "answer → ProfRetriever.retrieve edge exists");
  assert.equal(edge.calls, 6);
  assert.deepEqual(edge.fanout, { mean: 3, max: 3 });
  const main = s.graph.find((e) => e.caller === "(main)" && e.callee === "answer");
  assert.equal(main?.calls, 2);
  const rec = p.tasks().find((t) => t.name === "ProfGenerator.generate")!;
  assert.equal(rec.dependencies.length, 3, "dependency ids are recorded");
  assert.ok(rec.node === "n1" || rec.node === "n2");
  assert.match(p.format(), /ProfRetriever\.retrieve/);
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

test("Profiler.toChromeTrace lays 300 overlapping calls on at most 256 lanes that never overlap, and says how many it left out", async () => {
  const g = gate();
  const held = ta.op(async function traceHeld(i: number) {
    await g.promise;
    return i;
  });
  const after = ta.op(async function traceAfter(i: number) {
    return i;
  });
  using p = ta.profile();
  const refs = Array.from({ length: 300 }, (_, i) => held.go(i));
  await eventually(() => refs.every((r) => r.status === "running"), 30_000);
  g.open();
  await ta.all(refs);
  for (let i = 0; i < 5; i++) await after.go(i); // one after another: one lane
  p.stop();
  const trace = p.toChromeTrace();
  const complete = trace.traceEvents.filter((e) => e.ph === "X");
  const threads = trace.traceEvents.filter((e) => e.ph === "M" && e.name === "thread_name");
  const lanesOf = (name: string) => new Set(complete.filter((e) => e.name === name).map((e) => e.tid));
  assert.equal(complete.filter((e) => e.name === "traceHeld").length, 256);
  assert.equal(lanesOf("traceHeld").size, 256);
  assert.equal(lanesOf("traceAfter").size, 1, "calls that do not overlap share a lane");
  assert.deepEqual(
    threads.map((e) => e.args?.name).filter((n) => String(n).includes("not drawn")),
    ["ops: 44 task(s) not drawn (past 256 running at once)"],
  );
  assert.equal(new Set(threads.map((e) => `${e.pid}/${e.tid}`)).size, threads.length, "one name per track");
  const byTrack = new Map<number, ta.ChromeTraceEvent[]>();
  for (const e of complete) byTrack.set(e.tid, [...(byTrack.get(e.tid) ?? []), e]);
  for (const list of byTrack.values()) {
    list.sort((a, b) => a.ts - b.ts);
    for (let i = 1; i < list.length; i++) assert.ok(list[i].ts >= list[i - 1].ts + list[i - 1].dur! - 1e-6);
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

/** The row of `name` in `format()`'s table, by column header. */
function formatRow(text: string, name: string): Record<string, string> {
  const lines = text.split("\n");
  const head = lines[1].trim().split(/ +/);
  const row = lines.find((l) => l.startsWith(`${name} `))!.trim().split(/ +/);
  return Object.fromEntries(head.map((h, i) => [h, row[i]]));
}

test("Profiler.summary and format count cancelled calls apart from failed ones, and show attempts and retries", async () => {
  let n = 0;
  const flaky = ta.op({ name: "fmtFlaky", retries: 4 }, async () => {
    if (++n < 5) throw new Error(`attempt ${n}`);
    return n;
  });
  const doomed = ta.op({ name: "fmtDoomed", retries: 2 }, async () => {
    throw new Error("never");
  });
  const held = gate<number>();
  const source = ta.op(async function fmtSource() {
    return await held.promise;
  });
  const waiting = ta.op(async function fmtWaiting(x: number) {
    return x;
  });
  using p = ta.profile();
  assert.equal(await flaky.go(), 5, "the fifth attempt succeeds");
  await rejection(doomed.go());
  const input = source.go();
  const dependent = waiting.go(input);
  dependent.cancel(); // while it waits for its input
  held.open(1);
  await input;
  assert.ok((await rejection(dependent)) instanceof ta.CancelledError);
  const s = p.summary();
  const counts = (o: ta.OpStats) => [o.count, o.failed, o.cancelled, o.attempts, o.retries];
  assert.deepEqual(counts(s.ops.fmtFlaky), [1, 0, 0, 5, 4], "one call, five attempts, four retries");
  assert.deepEqual(counts(s.ops.fmtDoomed), [1, 1, 0, 3, 2], "one failed call after three attempts");
  assert.deepEqual(counts(s.ops.fmtWaiting), [1, 0, 1, 0, 0], "cancelled, not failed; it never started");
  const text = p.format();
  const columns = (name: string) => {
    const row = formatRow(text, name);
    return [row.calls, row.failed, row.cancelled, row.attempts, row.retries];
  };
  assert.deepEqual(columns("fmtFlaky"), ["1", "0", "0", "5", "4"]);
  assert.deepEqual(columns("fmtDoomed"), ["1", "1", "0", "3", "2"]);
  assert.deepEqual(columns("fmtWaiting"), ["1", "0", "1", "0", "0"]);
  assert.match(text, /legend: .*cancelled/);
  assert.match(text, /wait:inputs = mean time from\n? *.*submission until its last input resolved/);
  assert.match(text, /wait:slot = mean time from then until the body started/);
});

test("Profiler.summary and format count the calls still running when the profile stops, as unsettled", async () => {
  const g = gate();
  const late = ta.op(async function profLate(i: number) {
    await g.promise;
    return i;
  });
  const early = ta.op(async function profEarly(i: number) {
    return i;
  });
  using p = ta.profile(); // stopped below; disposed even when an assertion fails first
  assert.equal(await early.go(1), 1);
  const refs = [1, 2, 3].map((i) => late.go(i));
  await eventually(() => refs.every((r) => r.status === "running"), 30_000);
  const live = p.summary().ops.profLate;
  assert.deepEqual([live.count, live.unsettled], [3, 3], "counted while it records");
  p.stop();
  g.open();
  assert.deepEqual(await ta.all(refs), [1, 2, 3]);
  const s = p.summary();
  assert.deepEqual(
    Object.fromEntries(
      Object.entries(s.ops).map(([name, o]) => [name, [o.kind, o.count, o.unsettled, o.attempts, o.retries]]),
    ),
    { profEarly: ["op", 1, 0, 1, 0], profLate: ["op", 3, 3, 3, 0] },
    "a call that started and had not settled made one attempt so far",
  );
  assert.equal(s.ops.profLate.p50, 0, "no duration: none settled while it recorded");
  const edge = s.graph.find((e) => e.callee === "profLate")!;
  assert.equal(edge.calls, s.ops.profLate.count, "the summary and the call graph agree");
  const text = p.format();
  const row = formatRow(text, "profLate");
  assert.deepEqual([row.calls, row.unsettled, row.failed], ["3", "3", "0"]);
  assert.match(text, /\(main\) -> profLate: 3 calls/);
  assert.deepEqual(p.tasks().map((t) => t.name), ["profEarly"], "tasks() lists the settled ones");
});

test("Profiler tells waiting for inputs apart from waiting for a slot", async () => {
  const input = gate<number>();
  const source = ta.op(async function waitSource() {
    return await input.promise;
  });
  const use = ta.op(async function waitUse(x: number) {
    return x + 1;
  });
  const first = gate();
  const single = ta.op({ name: "waitSingle", maxConcurrency: 1 }, async (i: number) => {
    if (i === 0) await first.promise;
    return i;
  });
  using p = ta.profile();
  const used = use.go(source.go());
  const a = single.go(0);
  const b = single.go(1); // ready at once, waits for the slot a holds
  assert.ok(await eventually(() => a.status === "running" && b.status === "pending"));
  input.open(1);
  first.open();
  assert.deepEqual(await Promise.all([used, a, b]), [2, 0, 1]);
  const rec = (name: string, i = 0) => p.tasks().filter((t) => t.name === name)[i];
  const src = rec("waitSource"), u = rec("waitUse");
  assert.equal(u.readyAt, src.settledAt, "ready when its input settled");
  assert.ok(u.readyAt >= u.submittedAt && u.startedAt >= u.readyAt);
  const [sa, sb] = p.tasks().filter((t) => t.name === "waitSingle").sort((x, y) => x.submittedAt - y.submittedAt);
  assert.equal(sb.readyAt, sb.submittedAt, "no inputs: ready at submission");
  assert.ok(sb.startedAt >= sa.settledAt, "it started once the slot was free");
  const s = p.summary();
  assert.equal(s.ops.waitUse.meanInputWait, u.readyAt - u.submittedAt);
  assert.equal(s.ops.waitUse.meanSlotWait, u.startedAt - u.readyAt);
  assert.equal(s.ops.waitSingle.meanInputWait, 0);
  const slot = ((sa.startedAt - sa.readyAt) + (sb.startedAt - sb.readyAt)) / 2;
  assert.ok(Math.abs(s.ops.waitSingle.meanSlotWait - slot) < 1e-9);
  assert.ok(Math.abs(s.ops.waitSingle.meanQueueWait - (s.ops.waitSingle.meanInputWait + slot)) < 1e-9);
});

test("Profiler.summary handles an edge with 200k distinct callers (no spread of an unbounded array)", async () => {
  const { emit } = await import("./events.ts");
  using p = ta.profile();
  for (let i = 0; i < 200_000; i++) {
    const task = { id: `wideCallee#${i}`, name: "wideCallee", parent: { id: `wideCaller#${i}`, name: "wideCaller" } };
    emit("submitted", task as unknown as ta.TaskInfo, 0);
  }
  const edge = p.summary().graph.find((e) => e.callee === "wideCallee");
  assert.deepEqual(edge, { caller: "wideCaller", callee: "wideCallee", calls: 200_000, fanout: { mean: 1, max: 1 } });
});

test("getProfiler returns the outer profiler again when a nested one stops, whatever the order", () => {
  const outer = ta.profile();
  const inner = ta.profile();
  try {
    assert.equal(ta.getProfiler(), inner);
    inner.stop();
    assert.equal(ta.getProfiler(), outer, "the outer one still records");
    const again = ta.profile();
    outer.stop(); // stopped out of order
    assert.equal(ta.getProfiler(), again);
    again.stop();
    assert.equal(ta.getProfiler(), undefined);
  } finally {
    inner.stop();
    outer.stop();
  }
});

test("Profiler.criticalPath does not chain a task to an earlier one its caller had not awaited", async () => {
  const early = ta.op(async function cpEarly() {
    return 1;
  });
  const later = ta.op(async function cpLater() {
    return 2;
  });
  using p = ta.profile();
  const a = early.go();
  // main waits on a timer (reading status does not await the ref); a settles meanwhile
  assert.ok(await eventually(() => a.status === "completed"));
  assert.equal(await later.go(), 2);
  assert.equal(await a, 1); // awaited only after cpLater was submitted
  assert.deepEqual(p.criticalPath().map((t) => t.name), ["cpLater"], "cpEarly did not hold cpLater back");

  // a child its parent never awaited did not hold the parent's end
  const background = ta.op(async function cpBackground() {
    return 3;
  });
  const release = gate();
  const parent = ta.op(async function cpParent() {
    background.go(); // fire and forget
    await release.promise;
    return 4;
  });
  using q = ta.profile();
  const done = parent.go();
  assert.ok(await eventually(() => q.tasks().some((t) => t.name === "cpBackground")));
  release.open();
  assert.equal(await done, 4);
  assert.deepEqual(q.criticalPath().map((t) => t.name), ["cpParent"]);
});

test("Profiler.toChromeTrace puts an op sent to a node on that node's track; run here, it is local", async () => {
  const { NodeServer } = await import("../transports/node_server.ts");
  const { serveInMemory } = await import("../transports/in_memory.ts");
  const sent = ta.op({ name: "profileSentOp", remote: true }, async (x: number) => x * 2);
  const node = new NodeServer({ name: "n1" });
  const server = serveInMemory("profile-sent-op", node.handler);
  const mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: "mem://profile-sent-op" })]);
  try {
    using p = ta.profile();
    const called: string[] = [];
    assert.equal(await mesh.run(() => sent.go(21)), 42);
    assert.equal(await sent.go(1), 2, "no mesh: it runs here");
    await using local = new ta.Mesh([new ta.MeshNode("here")]);
    assert.equal(await local.run(() => sent.go(2)), 4, "a mesh of local nodes: it runs here");
    p.stop();
    const records = p.tasks().filter((t) => t.name === "profileSentOp");
    for (const r of records) called.push(`${r.executor}@${r.node ?? "local"}`);
    // the driver's call went to n1; the node's own run of it (this process here) and the two calls
    // that ran here are local
    assert.deepEqual(called.filter((c) => c.startsWith("remote")), ["remote@n1"]);
    assert.equal(called.filter((c) => c.startsWith("local")).length, 3, called.join(", "));
    const trace = p.toChromeTrace();
    const driverCall = records.find((r) => r.executor === "remote")!;
    const event = trace.traceEvents.find((e) => e.ph === "X" && e.args?.id === driverCall.id)!;
    const processName = trace.traceEvents.find((e) => e.ph === "M" && e.name === "process_name" && e.pid === event.pid);
    assert.equal(processName?.args?.name, "node n1");
  } finally {
    await mesh.close();
    await server.close();
    await node.drain({ graceMs: 50 });
  }
});

test("an op marked remote that runs here is reported as local in task events", async () => {
  const capable = ta.op({ name: "localCapableOp", remote: true }, async (x: number) => x + 1);
  const { onTaskEvent } = await import("./events.ts");
  const seen: string[] = [];
  const off = onTaskEvent((e) => {
    if (e.task.name === "localCapableOp" && e.kind === "started") seen.push(e.task.executor);
  });
  try {
    assert.equal(await capable.go(1), 2);
    await using mesh = new ta.Mesh([new ta.MeshNode("a"), new ta.MeshNode("b")]);
    assert.equal(await mesh.run(() => capable.go(2)), 3);
  } finally {
    off();
  }
  assert.deepEqual(seen, ["local", "local"]);
});

test("Profiler counts a pipelined call's wait for its input as input wait: its ready and start times are no earlier than the input's end", async () => {
  const { NodeServer } = await import("../transports/node_server.ts");
  const { serveInMemory } = await import("../transports/in_memory.ts");
  const g = gate();
  const Src = ta.service(
    class PipeProfileSrc {
      async make() {
        await g.promise;
        return 1;
      }
    },
  );
  const inc = ta.op({ name: "pipeProfileInc", remote: true }, async (x: number) => x + 1);
  const node = new NodeServer({ name: "n1" });
  const server = serveInMemory("profile-pipelined", node.handler);
  const mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: "mem://profile-pipelined" })]);
  try {
    await mesh.run(async () => {
      const src = Src.init();
      assert.equal(await inc.go(0), 1); // the node is known to register the op: the next call goes there
      using p = ta.profile();
      const a = src.make.go();
      const b = inc.go(a);
      // sent to the node before its input is done: pipelined
      assert.equal(await eventually(() => a.status === "running" && b.status === "running"), true);
      g.open();
      assert.equal(await b, 2);
      const ra = p.tasks().find((t) => t.id === a.id)!, rb = p.tasks().find((t) => t.id === b.id)!;
      assert.equal(rb.executor, "remote");
      assert.ok(rb.readyAt >= ra.settledAt, `ready ${rb.readyAt - ra.settledAt} ms after its input settled`);
      assert.ok(rb.startedAt >= ra.settledAt, `started ${rb.startedAt - ra.settledAt} ms after its input settled`);
    });
  } finally {
    g.open();
    await mesh.close();
    await server.close();
    await node.drain({ graceMs: 50 });
  }
});

test("Profiler.summary counts the attempts of calls started and not settled, and none for calls not started", async () => {
  const g = gate();
  const hold = ta.op({ name: "attemptsHold", maxConcurrency: 1 }, async () => {
    await g.promise;
  });
  const quick = ta.op(async function attemptsQuick() {
    return 1;
  });
  using p = ta.profile();
  assert.equal(await quick.go(), 1);
  const running = hold.go();
  const waiting = hold.go(); // waits for the op's one slot
  assert.equal(await eventually(() => running.status === "running"), true);
  const s = p.summary().ops.attemptsHold;
  g.open();
  await running;
  await waiting;
  assert.deepEqual([s.count, s.unsettled, s.attempts, s.retries], [2, 2, 1, 0]);
});

test("profile() refuses an argument: it takes no options, and one given is not ignored", () => {
  const profile = ta.profile as (options?: unknown) => ta.Profiler;
  let made: ta.Profiler | undefined;
  try {
    assert.throws(
      () => (made = profile({ bogus: 1 })),
      (e: Error) => e instanceof TypeError && /profile\(\) takes no options, got/.test(e.message),
    );
    assert.equal(ta.getProfiler(), undefined, "nothing was started");
    profile(undefined).stop(); // nothing given: fine
  } finally {
    made?.stop();
  }
});
