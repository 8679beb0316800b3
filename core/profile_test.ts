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
  const Retriever = ta.service(class Retriever {
    async retrieve(q: string) {
      return [q];
    }
  });
  const Generator = ta.service(class Generator {
    async generate(_q: string, docs: string[][]) {
      return docs.length;
    }
  });
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
