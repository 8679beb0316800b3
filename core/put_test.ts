// ta.put: one value passed to many calls by reference.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../mod.ts";
import { rejection } from "./_test_utils.ts";
import { NodeServer } from "../transports/node_server.ts";
import { serveInMemory } from "../transports/in_memory.ts";

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

// Calls sent to a node (in this process, over the in-memory transport, which encodes every frame).
const putTestCount = ta.op(
  { name: "putTestCount", remote: true },
  (ix: { docs: string[]; v?: Float32Array }, q: string, extra?: Float64Array) =>
    ix.docs.filter((d) => d === q).length + (ix.v?.[0] ?? 0) + (extra?.[0] ?? 0),
);
const PutTestIndex = ta.service(
  { name: "PutTestIndex" },
  class PutTestIndex {
    count(ix: { docs: string[] }, q: string) {
      return ix.docs.filter((d) => d === q).length;
    }
  },
);

/** A value whose every encoding reads its `docs` getter once: the count of reads is the count of encodes. */
function countedIndex(
  docs: string[],
  v?: Float32Array,
): { value: { docs: string[]; v?: Float32Array }; reads(): number } {
  let reads = 0;
  const value = {
    get docs() {
      reads++;
      return docs;
    },
    ...(v === undefined ? {} : { v }),
  };
  return { value, reads: () => reads };
}

async function withInMemoryNode<T>(name: string, fn: (endpoint: string) => Promise<T>): Promise<T> {
  const node = new NodeServer({ name });
  const server = serveInMemory(name, node.handler);
  try {
    return await fn(server.endpoint);
  } finally {
    await node.drain();
    await server.close();
  }
}

const DOCS = Array.from({ length: 1000 }, (_, i) => `doc-${i % 10}`);

test("put: a value passed to 1,000 op calls on a node is encoded once, and every call gets it whole", async () => {
  await withInMemoryNode("put-ops", async (endpoint) => {
    const index = countedIndex(DOCS);
    const ref = ta.put(index.value);
    await using mesh = new ta.Mesh([new ta.MeshNode("put-ops", { endpoint })]);
    const out = await mesh.run(() =>
      ta.all(Array.from({ length: 1000 }, (_, i) => putTestCount.go(ref, `doc-${i % 20}`)))
    );
    assert.deepEqual(out, Array.from({ length: 1000 }, (_, i) => (i % 20 < 10 ? 100 : 0)));
    assert.equal(index.reads(), 1, "the value was encoded once");
  });
});

test("put: a value passed to 1,000 method calls on a remote instance is encoded once", async () => {
  await withInMemoryNode("put-methods", async (endpoint) => {
    const index = countedIndex(DOCS);
    const ref = ta.put(index.value);
    await using mesh = new ta.Mesh([new ta.MeshNode("put-methods", { endpoint })]);
    const out = await mesh.run(() => {
      const ix = PutTestIndex.init();
      return ta.all(Array.from({ length: 1000 }, (_, i) => ix.count.go(ref, `doc-${i % 20}`)));
    });
    assert.equal(out.filter((n) => n === 100).length, 500);
    assert.equal(index.reads(), 1, "the value was encoded once");
  });
});

test("put: a value with a large typed array, sent beside other typed arrays (cborg's frames), is encoded once and arrives whole", async () => {
  await withInMemoryNode("put-typed", async (endpoint) => {
    const index = countedIndex(DOCS, new Float32Array(100_000).fill(0.5));
    const ref = ta.put(index.value);
    await using mesh = new ta.Mesh([new ta.MeshNode("put-typed", { endpoint })]);
    const call = (i: number) => putTestCount.go(ref, "doc-1", new Float64Array(1000).fill(i));
    assert.equal(await mesh.run(() => call(0)), 100.5);
    // (one encode through cborg reads it twice: the fast path reads it first, and hands it over at the typed array)
    const once = index.reads();
    assert.ok(once >= 1 && once <= 2, `${once} reads for one encode`);
    const out = await mesh.run(() => ta.all(Array.from({ length: 199 }, (_, i) => call(i + 1))));
    assert.deepEqual(out, Array.from({ length: 199 }, (_, i) => 101.5 + i));
    assert.equal(index.reads(), once, "the value was encoded once");
  });
});

test("put: a value that cannot travel is refused per call with the argument's path, as any argument", async () => {
  await withInMemoryNode("put-refused", async (endpoint) => {
    const ref = ta.put({ docs: ["a"], f: () => 1 });
    await using mesh = new ta.Mesh([new ta.MeshNode("put-refused", { endpoint })]);
    for (let i = 0; i < 2; i++) {
      const err = await rejection(mesh.run(() => putTestCount.go(ref as never, "a")));
      assert.ok(err instanceof TypeError, String(err));
      assert.match(err.message, /argument 0, at \[0\]\.f: a function \(f\) cannot travel/);
    }
  });
});
