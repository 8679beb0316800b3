// Structured cancellation: what a body submits is its child, cancelled with it.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../mod.ts";
import { eventually, gate, rejection, sleep } from "./_test_utils.ts";
import { LEAF_RUNS } from "./run_body.ts";
import { fileURLToPath } from "node:url";
import { type Runtime, startNodeProcess } from "../adapters/_test_nodes.ts";
import { webSocketTransport } from "../transports/websocket.ts";
import { encodeMessage } from "../transports/protocol.ts";
import { decode } from "./codec.ts";
import { Hang } from "./_test_wedge_app.ts";

const APP = fileURLToPath(new URL("./_test_wedge_app.ts", import.meta.url));
const RUNTIMES: Runtime[] = ["bun", "deno"];

/** Asks the node at `port` how many calls run on it now (its answer to a ping), over one connection. */
async function callCounter(port: number): Promise<{ active(): Promise<number>; close(): Promise<void> }> {
  const conn = await webSocketTransport.connect(`ws://127.0.0.1:${port}`);
  return {
    active: async () =>
      (decode(await conn.request(encodeMessage({ t: "ping" }))) as { activeCalls: number }).activeCalls,
    close: () => conn.close(),
  };
}

/** Awaits a ref and says how it ended: its value, or the class name of its error. */
async function outcome(ref: PromiseLike<unknown>): Promise<unknown> {
  try {
    return await ref;
  } catch (e) {
    return (e as Error).constructor.name;
  }
}

test("cancelling a running op cancels what its body submitted, before and after an await, and their children", async () => {
  const hold = gate();
  const started: string[] = [];
  const refs: Record<string, ta.ObjectRef<unknown>> = {};
  const leaf = ta.op(async function scLeaf(tag: string) {
    started.push(tag);
    await hold.promise;
    return tag;
  });
  const quick = ta.op(async function scQuick() {
    return 1;
  });
  const mid = ta.op(async function scMid() {
    await quick.go(); // its child comes after an await
    refs.grandchild = leaf.go("grandchild");
    return await refs.grandchild;
  });
  const root = ta.op(async function scRoot() {
    refs.before = leaf.go("before");
    await quick.go();
    refs.after = leaf.go("after");
    refs.mid = mid.go();
    refs.waiting = leaf.go(refs.after as ta.ObjectRef<string>); // waits for an input: never starts
    await Promise.all(Object.values(refs));
  });
  const r = root.go();
  assert.equal(await eventually(() => started.length === 3), true, `children started: ${started}`);
  assert.equal(r.cancel(), true);
  for (const [name, ref] of Object.entries(refs)) {
    const e = await rejection(ref);
    assert.ok(e instanceof ta.CancelledError, `${name}: expected CancelledError, got ${e}`);
  }
  const before = await rejection(refs.before) as ta.CancelledError;
  assert.match(String(before), /cancelled with its parent scRoot#\d+ \(cancelled\)/);
  assert.equal(before.reason, "parent");
  hold.open();
  await sleep(5);
  assert.deepEqual(started.sort(), ["after", "before", "grandchild"], "the waiting child never ran");
});

test("a call past its deadline cancels the calls its body submitted", async () => {
  const hold = gate();
  let child: ta.ObjectRef<string> | undefined;
  const forever = ta.op(async function scForever() {
    await hold.promise;
    return "late";
  });
  const timed = ta.op({ name: "scTimed", timeoutMs: 30 }, async () => {
    await sleep(0);
    child = forever.go();
    return await child;
  });
  const e = await rejection(timed.go());
  assert.ok(e instanceof ta.TimeoutError, `expected TimeoutError, got ${e}`);
  assert.ok(child !== undefined);
  const c = await rejection(child);
  assert.ok(c instanceof ta.CancelledError, `the child: expected CancelledError, got ${c}`);
  assert.match(String(c), /past its deadline/);
  hold.open();
});

test("cancelling a service call cancels the calls its method submitted, and the instance serves the next call", async () => {
  const hold = gate();
  const children: ta.ObjectRef<unknown>[] = [];
  const work = ta.op(async function scWork(n: number) {
    await hold.promise;
    return n;
  });
  const Planner = ta.service(
    class ScPlanner {
      async plan(n: number) {
        for (let i = 0; i < n; i++) {
          children.push(work.go(i));
          await sleep(0);
        }
        return await Promise.all(children);
      }
      ok() {
        return "ok";
      }
    },
  );
  const p = Planner.init();
  const call = p.plan.go(3);
  assert.equal(await eventually(() => children.length === 3), true);
  call.cancel();
  assert.deepEqual(await Promise.all(children.map(outcome)), Array(3).fill("CancelledError"));
  hold.open();
  assert.equal(await p.ok(), "ok");
});

test("a cancelled body that keeps running gets no new work: what it submits later is cancelled without running", async () => {
  const resume = gate();
  let late: ta.ObjectRef<string> | undefined;
  let ran = false;
  const after = ta.op(async function scAfter() {
    ran = true;
    return "ran";
  });
  const stubborn = ta.op(async function scStubborn() {
    await resume.promise; // a JavaScript body cannot be stopped: it goes on after its cancel
    late = after.go();
  });
  const r = stubborn.go();
  await sleep(0);
  r.cancel();
  resume.open();
  assert.equal(await eventually(() => late !== undefined), true);
  const e = await rejection(late!);
  assert.ok(e instanceof ta.CancelledError, `expected CancelledError, got ${e}`);
  assert.match(String(e), /not started: its parent scStubborn#\d+ was cancelled/);
  await sleep(5);
  assert.equal(ran, false);
});

test("ta.detach lets a call outlive a cancelled parent; a parent that completes leaves its children running", async () => {
  const hold = gate();
  const refs: ta.ObjectRef<string>[] = [];
  const bg = ta.op(async function scBackground(tag: string) {
    await hold.promise;
    return tag;
  });
  const parent = ta.op(async function scParent(wait: boolean) {
    refs.push(ta.detach(bg.go("detached")));
    const attached = bg.go("attached");
    refs.push(attached);
    if (wait) await attached;
    return "returned";
  });
  const r = parent.go(true);
  assert.equal(await eventually(() => refs.length === 2), true);
  r.cancel();
  const done = parent.go(false); // completes at once, leaving its child running
  assert.equal(await done, "returned");
  hold.open();
  assert.deepEqual(await Promise.all(refs.map(outcome)), ["detached", "CancelledError", "detached", "attached"]);
  assert.throws(() => ta.detach({} as ta.ObjectRef<unknown>), /detach\(\) expects a ref from \.go\(\)/);
});

test("a cancelled parent cancels a deep line of running descendants without deep recursion", async () => {
  const hold = gate();
  const DEPTH = 10_000;
  let reached = 0;
  let deepest: ta.ObjectRef<number> | undefined;
  const nest = ta.op(async function scNest(n: number): Promise<number> {
    reached = n;
    if (n === DEPTH) {
      await hold.promise;
      return n;
    }
    const child = nest.go(n + 1);
    if (n + 1 === DEPTH) deepest = child;
    return await child;
  });
  const r = nest.go(1);
  assert.equal(await eventually(() => reached === DEPTH, 60_000), true, `reached ${reached}`);
  r.cancel();
  const e = await rejection(deepest!);
  hold.open();
  assert.ok(e instanceof ta.CancelledError, `the deepest descendant: expected CancelledError, got ${e}`);
});

test("an op known to submit nothing runs in its caller's context, and still owns what it submits from then on", async () => {
  const hold = gate();
  const children: ta.ObjectRef<string>[] = [];
  let strayChild: ta.ObjectRef<string> | undefined;
  const leaf = ta.op(async function scLazyLeaf(tag: string) {
    await hold.promise;
    return tag;
  });
  const quick = ta.op(async function scLazyQuick() {
    return 1;
  });
  const flip = ta.op(async function scFlip(spawn: boolean) {
    if (!spawn) return "leaf";
    children.push(leaf.go("before"));
    await quick.go();
    children.push(leaf.go("after")); // found through the context the body entered on its first child
    return await Promise.all(children);
  });
  const other = ta.op(async function scOther(spawn: boolean) {
    if (!spawn) return "leaf";
    await sleep(1);
    strayChild = leaf.go("stray");
    return "other";
  });
  for (let i = 0; i < LEAF_RUNS; i++) await Promise.all([flip.go(false), other.go(false)]);
  // both now run in their caller's context; started in one turn, one after the other
  const f = flip.go(true);
  const o = other.go(true);
  assert.equal(await eventually(() => children.length === 2 && strayChild !== undefined), true);
  f.cancel();
  assert.deepEqual(await Promise.all(children.map(outcome)), ["CancelledError", "CancelledError"]);
  hold.open();
  assert.equal(await o, "other");
  assert.equal(await strayChild, "stray", "the other op's call is not taken for a child of the first");
});

for (const runtime of RUNTIMES) {
  test(`cancelling a parent cancels its children's calls on a ${runtime} node`, { timeout: 120_000 }, async () => {
    const node = await startNodeProcess(APP, ["--port", "0", "--name", "n1"], { runtime });
    const counter = await callCounter(node.port);
    try {
      await using mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: `ws://127.0.0.1:${node.port}` })]);
      await mesh.run(async () => {
        const h = Hang.init();
        const calls: ta.ObjectRef<unknown>[] = [];
        const parent = ta.op(async function scRemoteParent() {
          calls.push(h.hang.go());
          await sleep(0);
          calls.push(h.hang.go());
          await Promise.all(calls);
        });
        const r = parent.go();
        assert.equal(await eventually(async () => (await counter.active()) === 2, 30_000), true, "both calls run");
        r.cancel();
        assert.deepEqual(await Promise.all(calls.map(outcome)), ["CancelledError", "CancelledError"]);
        assert.equal(
          await eventually(async () => (await counter.active()) === 0, 30_000),
          true,
          "the node was told to cancel both calls",
        );
      });
    } finally {
      await counter.close();
      node.kill("SIGKILL");
      await node.exited;
    }
  });
}
