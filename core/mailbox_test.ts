import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import * as ta from "../mod.ts";
import { type Runtime, startNodeProcess } from "../adapters/_test_nodes.ts";
import { rejection, settlesWithin } from "./_test_utils.ts";
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
