// ref.explain() and ta.explain(): why a ref is not done yet.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../mod.ts";
import { gate } from "./_test_utils.ts";

/** Lets queued microtasks run (the ready queue drains in one), so started bodies are running. */
async function turns(n = 5): Promise<void> {
  for (let i = 0; i < n; i++) await Promise.resolve();
}

test("ObjectRef.explain names the stuck op deep inside a DAG, its node and how long, through the inputs waiting for it", async () => {
  const g = gate();
  const stuck = ta.op(async function explainTestStuck() {
    await g.promise;
    return 1;
  });
  const inc = ta.op(async function explainTestInc(x: number) {
    return x + 1;
  });
  const merge = ta.op(async function explainTestMerge(xs: number[]) {
    return xs.length;
  });
  await using mesh = new ta.Mesh([new ta.MeshNode("n1", { cpus: 2 })]);
  const { top, deep } = await mesh.run(() => {
    const deep = stuck.go();
    const top = merge.go([inc.go(inc.go(deep)), 5]);
    return { top: { ref: top }, deep: { ref: deep } };
  });
  await turns();
  const why = top.ref.explain();
  assert.equal(why.waitingFor, "inputs");
  let e = why;
  const path = [e.name];
  while (e.inputs.length > 0) {
    e = e.inputs[0];
    path.push(e.name);
  }
  assert.deepEqual(path, ["explainTestMerge", "explainTestInc", "explainTestInc", "explainTestStuck"]);
  assert.equal(e.id, deep.ref.id);
  assert.equal(e.waitingFor, "running");
  assert.ok(e.forMs >= 0);
  // asked again, it has been seen for as long as since the first time
  const text = ta.explain(top.ref);
  assert.match(text, new RegExp(`${deep.ref.id.replace("#", "#")}: running (at least )?\\d+`));
  g.open();
  assert.equal(await top.ref, 2);
  assert.equal(top.ref.explain().waitingFor, "settled");
});

test("ObjectRef.explain names the call it is queued behind in an instance's mailbox, and the calls ahead", async () => {
  const g = gate();
  const Model = ta.service(
    class ExplainTestModel {
      async run(x: number) {
        await g.promise;
        return x;
      }
    },
  );
  await using mesh = new ta.Mesh([new ta.MeshNode("gpu1", { cpus: 2 })]);
  const refs = await mesh.run(() => {
    const m = Model.init();
    return [m.run.go(1), m.run.go(2), m.run.go(3)].map((ref) => ({ ref }));
  });
  await turns();
  const why = refs[2].ref.explain();
  assert.equal(why.waitingFor, "slot");
  assert.equal(why.node, "gpu1");
  assert.equal(why.slot?.kind, "mailbox");
  assert.deepEqual(why.slot?.runningIds, [refs[0].ref.id]);
  assert.deepEqual(why.slot?.ahead, [refs[1].ref.id]);
  assert.equal(why.slot?.aheadCount, 1);
  assert.match(
    ta.explain(refs[2].ref),
    /mailbox on node gpu1 \(maxConcurrency 1; running: ExplainTestModel\.run#\d+\), 1 queued ahead/,
  );
  g.open();
  assert.deepEqual(await ta.all(refs.map((r) => r.ref)), [1, 2, 3]);
});

test("ObjectRef.explain names a slot of the op's maxConcurrency and of the mesh's maxConcurrentOps", async () => {
  const g = gate();
  const limited = ta.op({ name: "explainTestLimited", maxConcurrency: 1 }, async (x: number) => {
    await g.promise;
    return x;
  });
  const free = ta.op(async function explainTestFree(x: number) {
    await g.promise;
    return x;
  });
  await using mesh = new ta.Mesh([new ta.MeshNode("n1", { cpus: 2 })], { maxConcurrentOps: 2 });
  const refs = await mesh.run(() =>
    [limited.go(1), limited.go(2), limited.go(3), free.go(4), free.go(5)].map((ref) => ({ ref }))
  );
  await turns();
  // limited#1 and free#4 hold the mesh's two slots; limited#3 waits behind limited#2 for the op's slot
  const op = refs[2].ref.explain();
  assert.equal(op.waitingFor, "slot");
  assert.deepEqual({
    kind: op.slot?.kind,
    limit: op.slot?.limit,
    running: op.slot?.running,
    ahead: op.slot?.aheadCount,
  }, {
    kind: "op",
    limit: 1,
    running: 1,
    ahead: 1,
  });
  const meshWait = refs[4].ref.explain();
  assert.equal(meshWait.waitingFor, "slot");
  assert.equal(meshWait.slot?.kind, "mesh");
  assert.equal(meshWait.slot?.limit, 2);
  assert.equal(meshWait.slot?.running, 2);
  assert.match(ta.explain(refs[4].ref), /a slot of the mesh \(maxConcurrentOps 2, 2 running\)/);
  g.open();
  assert.deepEqual(await ta.all(refs.map((r) => r.ref)), [1, 2, 3, 4, 5]);
});

test("ObjectRef.explain counts every unsettled input when the tree stops early, and the text says how many are left out", async () => {
  const g = gate();
  const slow = ta.op(async function explainTestSlowLeaf(i: number) {
    await g.promise;
    return i;
  });
  const merge = ta.op(async function explainTestWideMerge(...xs: number[]) {
    return xs.length;
  });
  const inc = ta.op(async function explainTestChain(x: number) {
    return x + 1;
  });
  const wide = merge.go(...Array.from({ length: 1_000 }, (_, i) => slow.go(i)));
  let deep = inc.go(slow.go(-1));
  for (let i = 1; i < 100; i++) deep = inc.go(deep);
  await turns();
  const why = wide.explain();
  assert.equal(why.unsettledInputs, 1_000);
  assert.ok(why.inputs.length < 1_000, `the tree is bounded: ${why.inputs.length} explained`);
  const text = ta.explain(wide);
  assert.match(text.split("\n")[0], /waiting (at least )?\d+ ms for 1000 input\(s\)$/);
  assert.ok(text.endsWith(`\n  … and ${1_000 - why.inputs.length} more`), text.slice(-80));
  // a 100-deep chain is explained down to the running call that holds it, its middle summed up
  let e = deep.explain();
  let levels = 0, skipped = 0;
  for (; e.inputs.length > 0; e = e.inputs[0]) {
    levels++;
    skipped += e.skippedLinks ?? 0;
  }
  assert.deepEqual([e.name, e.waitingFor], ["explainTestSlowLeaf", "running"]);
  assert.equal(levels + skipped, 100, `${levels} levels shown, ${skipped} left out`);
  assert.ok(skipped > 0 && levels <= 66, `${levels} levels shown`);
  const lines = ta.explain(deep).split("\n");
  assert.match(lines.at(-1)!, /^ +explainTestSlowLeaf#\d+: running/);
  assert.match(lines.at(-2)!, /^ +explainTestChain#\d+: waiting (at least )?\d+ ms for 1 input\(s\)$/);
  assert.match(lines.at(-3)!, new RegExp(`^ +… ${skipped} waiting links …$`));
  assert.ok(!lines.some((l) => l.includes("more")), "nothing left out but the chain's middle");
  g.open();
  assert.equal(await wide, 1_000);
  assert.equal(await deep, 99);
});

test("ta.explain of a 100,000-deep chain names the running root, within the usual size", async () => {
  const g = gate<number>();
  const root = ta.op(async function explainChainRoot() {
    return await g.promise;
  });
  const inc = ta.op(function explainChainInc(x: number) {
    return x + 1;
  });
  const hold = ta.op(function explainDeepHolder(_x: unknown) {
    return 1;
  });
  let c: ta.ObjectRef<number> = root.go();
  let nested: unknown = c;
  for (let i = 0; i < 40; i++) nested = [nested];
  const holder = hold.go(nested);
  for (let i = 0; i < 100_000; i++) c = inc.go(c);
  await turns();
  // an input nested 40 levels deep is explained as any other
  assert.deepEqual(holder.explain().inputs.map((x) => x.name), ["explainChainRoot"]);
  const text = ta.explain(c);
  const lines = text.split("\n");
  assert.match(lines.at(-1)!, /^ +explainChainRoot#\d+: running/);
  assert.ok(lines.length <= 200, `${lines.length} lines`);
  assert.ok(lines.some((l) => /… \d+ waiting links …$/.test(l)), text.slice(-300));
  g.open(0);
  assert.equal(await c, 100_000);
  assert.equal(await holder, 1);
});

test("explain rejects what is not a ref", () => {
  assert.throws(
    () => ta.explain(42 as unknown as ta.ObjectRef<unknown>),
    /explain\(\) expects a ref from \.go\(\), got/,
  );
});
