import { test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../mod.ts";
import { rejection, settlesWithin } from "./_test_utils.ts";

/** A thenable whose then() throws: what a broken promise library or a hand-written thenable returns. */
function throwingThenable(): PromiseLike<number> {
  return {
    then() {
      throw new Error("then() broke");
    },
  };
}

/** A thenable that answers twice: a second answer must not release a slot a second time. */
function doubleThenable(v: number): PromiseLike<number> {
  return {
    // deno-lint-ignore no-explicit-any
    then(ok: any) {
      ok(v);
      ok(v);
      return undefined as never;
    },
  };
}

test("a method returning a thenable whose then() throws fails with OpExecutionError, and the instance serves the next call", async () => {
  const Broken = ta.service(
    class BrokenThenable {
      broken() {
        return throwingThenable();
      }
      ok() {
        return "ok";
      }
    },
  );
  const b = Broken.init();
  const e = await rejection(b.broken.go());
  assert.ok(e instanceof ta.OpExecutionError, `expected OpExecutionError, got ${e}`);
  assert.equal((e as ta.OpExecutionError).op, "BrokenThenable.broken");
  assert.match(String(((e as ta.OpExecutionError).cause as Error).message), /then\(\) broke/);
  const next = b.ok.go();
  assert.equal(await settlesWithin(next, 10_000), true, "the slot was given back");
  assert.equal(await next, "ok");
});

test("an op with maxConcurrency 1 returning a thenable whose then() throws gives its slot back", async () => {
  const broken = ta.op(
    { name: "brokenThenableOp", maxConcurrency: 1 },
    (x: number) => x === 0 ? throwingThenable() : x,
  );
  const e = await rejection(broken.go(0));
  assert.ok(e instanceof ta.OpExecutionError, `expected OpExecutionError, got ${e}`);
  const next = broken.go(1);
  assert.equal(await settlesWithin(next, 10_000), true, "the slot was given back");
  assert.equal(await next, 1);
});

test("a body returning a thenable whose then() throws fails with OpExecutionError under a retry or deadline policy", async () => {
  const broken = ta.op(
    { name: "brokenThenablePolicy", timeoutMs: 60_000, maxConcurrency: 1 },
    () => throwingThenable(),
  );
  const e = await rejection(broken.go());
  assert.ok(e instanceof ta.OpExecutionError, `expected OpExecutionError, got ${e}`);
  const thenGetter = ta.op({ name: "thenGetterThrows", retries: 1 }, () => ({
    get then(): never {
      throw new Error("no then");
    },
  }));
  const e2 = await rejection(thenGetter.go());
  assert.ok(e2 instanceof ta.OpExecutionError, `expected OpExecutionError, got ${e2}`);
});

test("a thenable that answers twice releases its instance's slot once: maxConcurrency is kept", async () => {
  let inside = 0, most = 0;
  const Twice = ta.service(
    class TwiceThenable {
      twice() {
        return doubleThenable(1);
      }
      async work() {
        inside++;
        most = Math.max(most, inside);
        await new Promise((r) => setTimeout(r, 1));
        inside--;
        return 2;
      }
    },
  );
  const t = Twice.init();
  const refs = [t.twice.go(), t.work.go(), t.work.go(), t.work.go()];
  assert.deepEqual(await Promise.all(refs), [1, 2, 2, 2]);
  assert.equal(most, 1, "one call at a time on the instance");
});

test("a body marked CONTEXT_FREE and started with no context runs in the current one; an unmarked body gets none", async () => {
  const { callBody, CONTEXT_FREE } = await import("./invoke.ts");
  const { currentContext, runInContext } = await import("./context.ts");
  const here = { mesh: undefined, parent: undefined };
  const startedIn = (fn: (...a: unknown[]) => unknown) =>
    runInContext(here, () => callBody({} as never, fn, undefined, [], undefined, undefined));
  // (a task submitted outside any mesh and started from inside one must not take that one as its own)
  assert.notEqual(startedIn(() => currentContext()), here);
  // a remote call's body, which runs nothing of the caller's, is spared the switch
  assert.equal(startedIn(Object.assign(() => currentContext(), { [CONTEXT_FREE]: true })), here);
});
