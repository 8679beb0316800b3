// ref.explain() for a call on a node process: which node, and whether it answered its last keepalive.
import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import * as ta from "../mod.ts";
import { eventually } from "../core/_test_utils.ts";
import { type NodeProcess, type Runtime, startNodeProcess } from "../adapters/_test_nodes.ts";
import { Hang } from "../core/_test_wedge_app.ts";

const APP = fileURLToPath(new URL("../core/_test_wedge_app.ts", import.meta.url));
const RUNTIMES: Runtime[] = ["bun", "deno"];

/** Sends `sig` to the node's process by its pid (Deno's ChildProcess.kill does not pass SIGCONT on). */
function signal(node: NodeProcess, sig: "SIGSTOP" | "SIGCONT"): void {
  process.kill(node.proc.pid!, sig);
}

for (const runtime of RUNTIMES) {
  test(
    `ObjectRef.explain says whether a ${runtime} node answered its last keepalive`,
    { timeout: 120_000 },
    async () => {
      const node = await startNodeProcess(APP, ["--port", "0", "--name", "n1"], { runtime });
      let stopped = false;
      try {
        await using mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: `ws://127.0.0.1:${node.port}` })], {
          keepaliveMs: 50,
          lostAfterMs: 600_000,
        });
        const { ref } = await mesh.run(() => ({ ref: Hang.init().hang.go() }));
        const health = () => ref.explain().nodeHealth;
        assert.equal(
          await eventually(() => ref.status === "running" && health()?.lastPongAgoMs !== undefined, 30_000),
          true,
          "the call runs and a keepalive was answered",
        );
        const running = ref.explain();
        assert.equal(running.waitingFor, "running");
        assert.equal(running.node, "n1");
        assert.equal(running.nodeHealth?.lost, false);
        // a node that is stopped cannot answer: the ping sent meanwhile stays unanswered (a running
        // node answers within a few ms: one unanswered for half a second is the stopped node's)
        signal(node, "SIGSTOP");
        stopped = true;
        const unanswered = () => {
          const h = health();
          return h?.answeredLastKeepalive === false && h.lastPingAgoMs! > 500;
        };
        assert.equal(await eventually(unanswered, 30_000), true);
        assert.match(
          ta.explain(ref),
          /WedgeHang\.hang#\d+: running .* on node n1; node n1 has not answered its last keepalive .*\(running there, or waiting there for a slot\)$/,
        );
        signal(node, "SIGCONT");
        stopped = false;
        assert.equal(await eventually(() => health()?.answeredLastKeepalive === true, 30_000), true);
        assert.match(ta.explain(ref), /node n1 answered its last keepalive/);
        ref.cancel();
      } finally {
        if (stopped) signal(node, "SIGCONT");
        node.kill("SIGKILL");
        await node.exited;
      }
    },
  );
}
