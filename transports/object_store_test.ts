import { test } from "node:test";
import assert from "node:assert/strict";
import { OverloadedError } from "../core/errors.ts";
import { ObjectStore } from "./object_store.ts";

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
