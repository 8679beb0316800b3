// ta.put: one value passed to many calls by reference.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../mod.ts";

test("put passes the same object to 1,000 calls, never a copy", async () => {
  const index = { embeddings: new Float32Array(1024).fill(1) };
  const ref = ta.put(index);
  assert.equal(ref.status, "completed");
  const seen = new Set<unknown>();
  const use = ta.op(async function putTestUse(ix: typeof index, i: number) {
    seen.add(ix);
    return ix.embeddings[i % 1024] + i;
  });
  await using mesh = new ta.Mesh([new ta.MeshNode("n1", { cpus: 2 })]);
  const out = await mesh.run(() => ta.all(Array.from({ length: 1000 }, (_, i) => use.go(ref, i))));
  assert.equal(out.length, 1000);
  assert.equal(out[999], 1000);
  assert.equal(seen.size, 1);
  assert.equal([...seen][0], index);
  assert.equal(await ref, index);
});

test("put rejects a ref or a thenable with what it got", () => {
  const inc = ta.op(async function putTestInc(x: number) {
    return x + 1;
  });
  const r = inc.go(1);
  assert.throws(() => ta.put(r), /put\(\) takes a value, got the ref putTestInc#\d+: pass that ref/);
  assert.throws(() => ta.put(Promise.resolve(1)), /put\(\) takes a value, got a thenable/);
  return r.then(() => {});
});
