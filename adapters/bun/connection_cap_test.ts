// Bun's adapter holds --max-connections like Deno's (issue 11): past the cap a new connection is
// answered 503 naming the cap, and once one closes a new one is served; against a real Bun node.
import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { startNodeProcess, thisRuntime } from "../_test_nodes.ts";
import { eventually } from "../../core/_test_utils.ts";
import { encodeMessage } from "../../transports/protocol.ts";
import { webSocketTransport } from "../../transports/websocket.ts";

const APP = fileURLToPath(new URL("../../transports/_backpressure_app.ts", import.meta.url));

async function rpcPing(url: string): Promise<Response> {
  return await fetch(`${url}/rpc`, {
    method: "POST",
    headers: { "content-type": "application/cbor" },
    body: encodeMessage({ t: "ping" }) as Uint8Array<ArrayBuffer>,
  });
}

test(
  "Bun adapter: past --max-connections a connection gets 503 naming the cap; a closed one makes room",
  { timeout: 60_000, skip: thisRuntime() !== "bun" && "the Bun adapter runs on Bun only" },
  async () => {
    const n = await startNodeProcess(APP, ["--port", "0", "--name", "n1", "--max-connections", "3"], {
      runtime: "bun",
    });
    try {
      const open = [
        await webSocketTransport.connect(n.url),
        await webSocketTransport.connect(n.url),
        await webSocketTransport.connect(n.url),
      ];
      const refused = await rpcPing(n.url);
      assert.equal(refused.status, 503);
      assert.match(await refused.text(), /3 connections are in use.*maxConnections 3, --max-connections/);
      await assert.rejects(webSocketTransport.connect(n.url));
      await open.pop()!.close();
      assert.ok(await eventually(async () => (await rpcPing(n.url)).status === 200, 30_000), "room again");
      for (const c of open) await c.close();
    } finally {
      n.kill();
      await n.exited;
    }
  },
);
