import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import * as ta from "../mod.ts";
import { type Runtime, startNodeProcess } from "../adapters/_test_nodes.ts";
import { eventually, gate, rejection, settlesWithin } from "./_test_utils.ts";
import { SelfCaller, SelfScheduler, WideSelfCaller } from "./_test_wedge_app.ts";

const APP = fileURLToPath(new URL("./_test_wedge_app.ts", import.meta.url));
const RUNTIMES: Runtime[] = ["bun", "deno"];

async function selfCallFails(me: ReturnType<typeof SelfCaller.init>): Promise<void> {
  const outer = me.viaHandle.go(me);
  assert.equal(await settlesWithin(outer, 20_000), true, "the self-call did not deadlock");
  const e = await rejection(outer);
  assert.ok(e instanceof ta.OpExecutionError, `expected OpExecutionError, got ${e}`);
  assert.match(String(e), /called itself through its own handle \(WedgeSelfCaller\.inner\)/);
  // the instance is not wedged
  assert.equal(await settlesWithin(me.inner.go(), 20_000), true, "the instance serves its next call");
}

test("a service calling itself through its own handle fails the inner call with a clear error instead of deadlocking", {
  timeout: 60_000,
}, async () => {
  const me = SelfCaller.init();
  await selfCallFails(me);
  assert.equal(await me.inner(), 2, "the instance kept its state");
  // with a slot free, calling itself is an ordinary call
  const wide = WideSelfCaller.init();
  assert.equal(await wide.viaHandle(wide), "inner ran");
});

for (const runtime of RUNTIMES) {
  test(
    `a service on a ${runtime} node calling itself through its own handle fails the inner call instead of deadlocking`,
    {
      timeout: 120_000,
    },
    async () => {
      const node = await startNodeProcess(APP, ["--port", "0", "--name", "n1"], { runtime });
      try {
        await using mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: `ws://127.0.0.1:${node.port}` })]);
        await mesh.run(async () => {
          const me = SelfCaller.init();
          await selfCallFails(me);
          const wide = WideSelfCaller.init();
          assert.equal(await wide.viaHandle(wide), "inner ran");
          // a detached self-call on the node is queued there and runs after the call that made it
          const scheduler = SelfScheduler.init();
          assert.equal(await scheduler.schedule(scheduler), "scheduled");
          assert.ok(await eventually(async () => (await scheduler.count()) === 1, 20_000), "the detached call ran");
        });
      } finally {
        node.kill("SIGKILL");
        await node.exited;
      }
    },
  );
}

test("a self-call through an op the method waits for fails; one from an op that outlived its method waits its turn", {
  timeout: 60_000,
}, async () => {
  type Me = { inner: { go(): ta.ObjectRef<string> } };
  const go = gate();
  const calledBack = gate<{ ref: ta.ObjectRef<string> }>(); // wrapped: a ref is a thenable
  const callInner = ta.op(async function mbCallInner(me: Me) {
    return await me.inner.go();
  });
  const later = ta.op(async function mbLater(me: Me) {
    await go.promise;
    calledBack.open({ ref: me.inner.go() });
  });
  const Viaop = ta.service(
    class MbViaOp {
      async viaOp(me: Me) {
        return await callInner.go(me); // waits for an op that waits for this instance: a deadlock
      }
      spawn(me: Me) {
        later.go(me); // not waited for: it outlives this call
        return "spawned";
      }
      async busy() {
        go.open();
        await calledBack.promise;
        return "busy done";
      }
      inner() {
        return "inner ran";
      }
    },
  );
  const me = Viaop.init();
  const e = await rejection(me.viaOp.go(me));
  assert.ok(e instanceof ta.OpExecutionError, `expected OpExecutionError, got ${e}`);
  assert.match(String((e as ta.OpExecutionError).cause), /called itself through its own handle \(MbViaOp\.inner\)/);
  assert.equal(await me.spawn(me), "spawned");
  // busy() holds the only slot when the op calls back: that call waits for busy() to end, then runs
  const busy = me.busy.go();
  const inner = (await calledBack.promise).ref;
  assert.equal(await busy, "busy done");
  assert.equal(await inner, "inner ran");
});

test("a detached call a service makes to its own handle is queued and runs after the current call", async () => {
  type Me = { tick: { go(h: Me, again: boolean): ta.ObjectRef<number> } };
  const scheduled = gate<{ ref: ta.ObjectRef<number> }>(); // wrapped: a ref is a thenable
  const release = gate();
  const Loop = ta.service(
    class MbSelfLoop {
      log: string[] = [];
      async tick(me: Me, again: boolean) {
        this.log.push("start");
        if (again) {
          scheduled.open({ ref: ta.detach(me.tick.go(me, false)) }); // not waited for
          await release.promise;
        }
        this.log.push("end");
        return this.log.length;
      }
    },
  );
  const loop = Loop.init();
  const first = loop.tick.go(loop, true);
  const next = (await scheduled.promise).ref;
  assert.equal(next.status, "pending", "it waits for the call that made it");
  release.open();
  assert.equal(await first, 2);
  assert.equal(await next, 4, "it ran after the first call ended");
  // as Ray's actors schedule themselves: one that does so from each call, a few times over
  let ticks = 0;
  const last = gate<number>();
  const Again = ta.service(
    class MbSelfAgain {
      n = 0;
      tick(me: { tick: { go(me: unknown): ta.ObjectRef<number> } }) {
        if (++this.n < 5) ta.detach(me.tick.go(me));
        else last.open(this.n);
        ticks++;
        return this.n;
      }
    },
  );
  const again = Again.init();
  assert.equal(await again.tick.go(again), 1);
  assert.equal(await last.promise, 5);
  assert.equal(ticks, 5);
});

test("a self-call the method does not detach, or awaits at once though detached, fails instead of deadlocking", async () => {
  type Me = { inner: { go(): ta.ObjectRef<string> } };
  const release = gate();
  const Mixed = ta.service(
    class MbSelfMixed {
      async notDetached(me: Me) {
        const ref = me.inner.go(); // a child of this call, which a call's children count as waited for
        await release.promise;
        return { ref };
      }
      returnsIt(me: Me) {
        return { ref: me.inner.go() }; // this call ends at once: it waits for nothing
      }
      async awaitsDetached(me: Me) {
        return await ta.detach(me.inner.go());
      }
      inner() {
        return "inner ran";
      }
    },
  );
  const me = Mixed.init();
  const made = me.notDetached.go(me);
  release.open();
  const { ref } = await made;
  const e = await rejection(ref);
  assert.ok(e instanceof ta.OpExecutionError, `expected OpExecutionError, got ${e}`);
  assert.match(String((e as ta.OpExecutionError).cause), /called itself through its own handle \(MbSelfMixed\.inner\)/);
  assert.match(String((e as ta.OpExecutionError).cause), /ta\.detach\(\) it/);
  const awaited = me.awaitsDetached.go(me);
  assert.equal(await settlesWithin(awaited, 20_000), true, "awaiting a detached self-call did not deadlock");
  assert.match(String((await rejection(awaited) as ta.OpExecutionError).cause), /called itself through its own handle/);
  assert.equal(await me.inner(), "inner ran", "the instance serves its next call");
  assert.equal(await (await me.returnsIt(me)).ref, "inner ran", "made by a call that ended at once, it ran after it");
});
