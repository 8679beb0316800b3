// ref.release() and `using`: the driver gives up a result at once instead of waiting for its
// garbage collector. Here in one process (values held here: releasing is harmless, using the ref
// afterwards fails typed); the freeing on nodes is in transports/data_plane_test.ts and
// transports/data_plane_nodes_test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Effect } from "effect";
import * as ta from "../mod.ts";
import { gate, rejection } from "./_test_utils.ts";

const relInc = ta.op(async function relInc(x: number) {
  return x + 1;
});

test("release() is idempotent; awaiting a released ref rejects with ReleasedError naming the ref and its op", async () => {
  const ref = relInc.go(1);
  assert.equal(await ref, 2);
  ref.release();
  ref.release();
  const e = await rejection(ref);
  assert.ok(e instanceof ta.ReleasedError, String(e));
  assert.equal(e.ref, ref.id);
  assert.equal(e.op, "relInc");
  assert.match(e.message, new RegExp(`Ref ${ref.id.replace("#", "\\#")} \\(the result of op "relInc"\\) was released`));
  // every way of reading it says the same
  assert.ok((await rejection(ref.promise())) instanceof ta.ReleasedError);
  assert.ok((await rejection(ta.all([1, ref]))) instanceof ta.ReleasedError);
  const viaEffect = await Effect.runPromise(Effect.flip(ref.effect));
  assert.ok(viaEffect instanceof ta.ReleasedError, String(viaEffect));
  assert.equal(viaEffect._tag, "ReleasedError");
});

test("passing a released ref to .go() fails that call with ReleasedError, also nested in an argument", async () => {
  const ref = relInc.go(1);
  await ref;
  ref.release();
  const e = await rejection(relInc.go(ref));
  assert.ok(e instanceof ta.ReleasedError, String(e));
  assert.equal(e.ref, ref.id);
  const sum = ta.op(async function relSum(o: { xs: number[] }) {
    return o.xs.reduce((a, b) => a + b, 0);
  });
  const nested = await rejection(sum.go({ xs: [1, ref as unknown as number] }));
  assert.ok(nested instanceof ta.ReleasedError, String(nested));
});

test("`using` releases a ref at the end of its block; a call it was passed to before still gets its value", async () => {
  let escaped: ta.ObjectRef<number> | undefined;
  let out: ta.ObjectRef<number> | undefined;
  {
    using r = relInc.go(1);
    escaped = r;
    out = relInc.go(r);
  }
  assert.equal(await out, 3);
  assert.ok((await rejection(escaped!)) instanceof ta.ReleasedError);
  assert.equal(typeof escaped![Symbol.dispose], "function");
});

test("releasing a pending ref is harmless: its call runs, its dependents get its value, it reads as released", async () => {
  const g = gate();
  const slow = ta.op(async function relSlow(x: number) {
    await g.promise;
    return x * 10;
  });
  const pending = slow.go(4);
  const dependent = relInc.go(pending);
  pending.release();
  assert.equal(pending.status === "pending" || pending.status === "running", true);
  g.open();
  assert.equal(await dependent, 41);
  assert.equal(pending.status, "completed");
  assert.ok((await rejection(pending)) instanceof ta.ReleasedError);
});
