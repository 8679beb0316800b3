// The DAG's edges for refs nested in arguments: at any depth, in shared and cyclic structures.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../mod.ts";
import { gate, settlesWithin } from "./_test_utils.ts";

/** `v` wrapped in `depth` arrays. */
function nest(v: unknown, depth: number): unknown {
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}

/** The innermost value of nested one-element arrays and one-key objects. */
function innermost(v: unknown): unknown {
  while (typeof v === "object" && v !== null && !(v instanceof ta.ObjectRef)) v = Object.values(v)[0];
  return v;
}

test("op.go awaits a ref nested 40 levels deep and passes its value, as for one nested 3 deep", async () => {
  const input = gate<number>();
  const deepInput = ta.op(async function deepInput() {
    return await input.promise;
  });
  const leaf = ta.op(function deepLeaf(x: unknown) {
    const v = innermost(x);
    return typeof v === "number" ? v : `not a value: ${String(v)}`;
  });
  const shallow = leaf.go(nest(deepInput.go(), 3));
  const deep = leaf.go(nest(deepInput.go(), 40));
  const deeper = leaf.go({ a: nest({ b: nest(deepInput.go(), 600) }, 600) });
  input.open(7);
  assert.equal(await shallow, 7);
  assert.equal(await deep, 7);
  assert.equal(await deeper, 7);
});

test("op.go replaces deep refs in copies and leaves the caller's structure and the containers without refs as they are", async () => {
  const value = ta.op(async function deepValue(x: number) {
    return x;
  });
  let got: { refs: unknown; plain: unknown; shared: unknown[] } | undefined;
  const take = ta.op(function deepTake(x: { refs: unknown; plain: unknown; shared: unknown[] }) {
    got = x;
    return innermost(x.refs);
  });
  const plain = nest("no refs here", 50);
  const deepRefs = nest(value.go(5), 45);
  const shared = [deepRefs, deepRefs];
  const arg = { refs: deepRefs, plain, shared };
  assert.equal(await take.go(arg), 5);
  assert.ok(innermost(arg.refs) instanceof ta.ObjectRef, "the caller's structure still holds the ref");
  assert.equal(got!.plain, plain, "a container without refs is passed as itself");
  assert.equal(got!.shared[0], got!.refs, "a container named twice is replaced by one copy");
  assert.equal(innermost(got!.shared[1]), 5);
});

test("op.go refuses a ref inside a cyclic array or object with a TypeError naming the argument", () => {
  const value = ta.op(async function cycleValue(x: number) {
    return x;
  });
  const take = ta.op(function cycleTake(_a: number, _b: unknown) {
    return 1;
  });
  const cyclic: unknown[] = [value.go(1)];
  cyclic.push(cyclic);
  assert.throws(
    () => take.go(1, cyclic),
    (e: Error) => e instanceof TypeError && /argument 1/.test(e.message) && /cycl/.test(e.message),
  );
  const loop: Record<string, unknown> = { ref: value.go(2) };
  loop.self = { back: loop };
  assert.throws(
    () => take.go(0, { deep: nest(loop, 40) }),
    (e: Error) => e instanceof TypeError && /argument 1/.test(e.message),
  );
});

test("op.go passes a cyclic structure without refs as itself, also one that branches (no walk of every path)", async () => {
  const value = ta.op(async function cycleFreeValue(x: number) {
    return x;
  });
  const take = ta.op(function cycleFreeTake(r: number, g: unknown[], h: unknown) {
    return [r, g, h] as const;
  });
  const graph: unknown[] = [];
  graph.push(graph, graph); // every path through it is 2^depth long: a walk of paths never ends
  const tree: Record<string, unknown> = { name: "root" };
  tree.children = [{ parent: tree }, { parent: tree, x: nest(1, 40) }];
  const out = take.go(value.go(3), graph, { tree, ref: value.go(4) });
  assert.ok(await settlesWithin(out, 10_000), "the call settles");
  const [r, g, h] = await out;
  assert.equal(r, 3);
  assert.equal(g, graph);
  assert.deepEqual(h, { tree, ref: 4 });
  assert.equal((h as { tree: unknown }).tree, tree);
});

test("a service call awaits a ref nested 40 levels deep", async () => {
  const input = gate<number>();
  const deepSvcInput = ta.op(async function deepSvcInput() {
    return await input.promise;
  });
  const Svc = ta.service(
    class DeepArgSvc {
      take(x: unknown) {
        const v = innermost(x);
        return typeof v === "number" ? v : `not a value: ${String(v)}`;
      }
    },
  );
  const mesh = new ta.Mesh([new ta.MeshNode("n")]);
  try {
    const [ref] = await mesh.run(() => [Svc.init().take.go(nest(deepSvcInput.go(), 40))]);
    input.open(9);
    assert.equal(await ref, 9);
  } finally {
    await mesh.close();
  }
});
