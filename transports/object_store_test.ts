import { test } from "node:test";
import assert from "node:assert/strict";
import { OverloadedError } from "../core/errors.ts";
import { deviceBytes, holdsDeviceValues, ObjectStore, readBack } from "./object_store.ts";

test("ObjectStore refuses a result larger than the whole store saying only a larger store or a smaller result helps", () => {
  const store = new ObjectStore({ maxBytes: 1000, node: "n1" });
  let err: unknown;
  try {
    store.put(undefined, 1200, { madeBy: 'method "Worker.make"' });
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof OverloadedError, String(err));
  assert.match(
    err.message,
    /^Node "n1" cannot keep the 1200-byte result of method "Worker.make": it is larger than its whole object store \(1000 bytes, --object-store-bytes\)/,
  );
  assert.match(err.message, /only a larger --object-store-bytes \(at least 1200\) or a smaller result/);
  assert.doesNotMatch(err.message, /release|using/, "releasing refs cannot make room for it");
  // one that would fit an emptier store still gets the advice to free what is held
  store.put(undefined, 600, { madeBy: "embed" });
  assert.throws(() => store.put(undefined, 600, { madeBy: "embed" }), /holds 600 of 1000 bytes .* release refs/);
});

test("ObjectStore counts bytes held outside it (published results) against its bound, and says so when full", () => {
  const store = new ObjectStore({ maxBytes: 1000, node: "n1" });
  store.countOutside(700, 'result of method "make" published for calls on other nodes');
  assert.equal(store.bytes, 0, "they are not objects");
  assert.throws(
    () => store.put(undefined, 400, { madeBy: "embed" }),
    (e: unknown) =>
      e instanceof OverloadedError && /and 700 bytes of results published for other nodes/.test(e.message),
  );
  assert.throws(() => store.countOutside(400, "published result"), OverloadedError);
  store.uncountOutside(700);
  assert.equal(store.outsideBytes, 0);
  store.put(undefined, 400, { madeBy: "embed" });
  assert.equal(store.bytes, 400);
});

/** A stand-in for a GpuArray: read back as a typed array (counted), freed with `Symbol.dispose` (counted). */
function onDevice(values: number[]): { length: number; reads: number; disposed: number } {
  const d = {
    length: values.length,
    reads: 0,
    disposed: 0,
    [Symbol.for("thinkagain.readback")]() {
      d.reads++;
      return Promise.resolve(new Float32Array(values));
    },
    [Symbol.dispose]() {
      d.disposed++;
    },
  };
  return d;
}

test("holdsDeviceValues and deviceBytes find device values at any depth, in Maps and Sets, and in cycles, each once", () => {
  const g = onDevice([1, 2, 3]);
  for (
    const [i, v] of [
      g,
      { g },
      [g],
      { x: { g } },
      [[g]],
      new Map([["g", g]]),
      new Map([[g, 1]]),
      new Set([g]),
      Object.assign(Object.create(null), { a: [{ b: new Set([g]) }] }),
    ].entries()
  ) {
    assert.equal(holdsDeviceValues(v), true, `not found in shape ${i}`);
    assert.equal(deviceBytes(v), 12);
  }
  // 100,000 levels deep: no recursion to overflow
  let deep: unknown = g;
  for (let i = 0; i < 100_000; i++) deep = i % 2 === 0 ? [deep] : { d: deep };
  assert.equal(holdsDeviceValues(deep), true);
  assert.equal(deviceBytes(deep), 12);
  // counted once however many times it is held
  const loop: unknown[] = [g, { again: g }];
  loop.push(loop);
  assert.equal(holdsDeviceValues(loop), true);
  assert.equal(deviceBytes(loop), 12);
  // none: a typed array, a class instance (not looked into), plain values
  assert.equal(holdsDeviceValues([new Float32Array(2), { a: [1, "x", null] }, new Map([[1, 2]])]), false);
  assert.equal(
    holdsDeviceValues(
      new (class Box {
        g = g;
      })(),
    ),
    false,
  );
  assert.equal(deviceBytes({ a: [1] }), 0);
});

test("readBack reads each device value once at any depth and copies only the containers that hold one", async () => {
  const g = onDevice([1, 2, 3]);
  const kept = { note: "no device values" };
  const value = { emb: { docs: g, again: [g] }, byName: new Map([["g", g]]), set: new Set([g]), kept, n: 1 };
  const out = await readBack(value) as typeof value;
  const a = new Float32Array([1, 2, 3]);
  assert.deepEqual(out, { emb: { docs: a, again: [a] }, byName: new Map([["g", a]]), set: new Set([a]), kept, n: 1 });
  assert.equal(g.reads, 1);
  assert.equal(out.kept, kept, "a container without device values was copied");
  assert.equal(value.emb.docs, g, "the value itself was changed");
  // deep and cyclic
  let deep: unknown = g;
  for (let i = 0; i < 100_000; i++) deep = [deep];
  let back = await readBack(deep);
  for (let i = 0; i < 100_000; i++) back = (back as unknown[])[0];
  assert.deepEqual(back, a);
  const loop: unknown[] = [g];
  loop.push(loop);
  const loopBack = await readBack(loop) as unknown[];
  assert.deepEqual(loopBack[0], a);
  assert.equal(loopBack[1], loopBack, "the copy of a cycle holds itself");
});

test("ObjectStore frees the device values of an object it frees, once no other object it holds has them", () => {
  const store = new ObjectStore({ node: "n1" });
  const g = onDevice([1]), h = onDevice([2]);
  const one = store.put({ out: [g] }, 4, { owner: "lease-1", madeBy: "embed" });
  const two = store.put(new Map([["g", g], ["h", h]]), 8, { owner: "lease-2", madeBy: "pass" });
  store.free(one);
  assert.deepEqual([g.disposed, h.disposed], [0, 0], "freed while another object holds it");
  store.freeOwner("lease-2");
  assert.equal(store.has(two), false);
  assert.deepEqual([g.disposed, h.disposed], [1, 1]);
  // a put value's frame holds no device values; the node drains: what it still holds is freed
  const k = onDevice([3]);
  store.put(k, 4, { madeBy: "embed" });
  store.put(undefined, 4, { madeBy: "a ta.put() value", frame: new Uint8Array(4), oid: "s:x" });
  store.clear();
  assert.equal(k.disposed, 1);
});
