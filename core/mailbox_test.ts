import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import * as ta from "../mod.ts";
import { type Runtime, startNodeProcess } from "../adapters/_test_nodes.ts";
import { gate, rejection, settlesWithin } from "./_test_utils.ts";
import { SelfCaller, WideSelfCaller } from "./_test_wedge_app.ts";

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
