// Bun's adapter hands an app that takes views (`WsAppEvents.takesViews`, as the node's connections
// do) each binary message as a plain Uint8Array of its own memory, with no ArrayBuffer made for it,
// and any other app an ArrayBuffer, as hono/bun does; messages kept across turns keep their bytes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Hono } from "hono";
import { thisRuntime } from "../_test_nodes.ts";
import { eventually } from "../../core/_test_utils.ts";

const skip = thisRuntime() !== "bun" && "the Bun adapter runs on Bun only";

test("Bun adapter: binary messages as plain Uint8Arrays to an app that takes views, ArrayBuffers to others", {
  timeout: 30_000,
  skip,
}, async () => {
  const { serve, upgradeWebSocket } = await import("./serve.ts");
  const got: Record<string, unknown[]> = { views: [], plain: [] };
  const app = new Hono();
  for (const route of ["views", "plain"] as const) {
    app.get(
      `/${route}`,
      upgradeWebSocket(() => ({
        ...(route === "views" ? { takesViews: true } : {}),
        onMessage(evt: MessageEvent) {
          got[route].push(evt.data);
        },
      })),
    );
  }
  const server = await serve(app, { port: 0 });
  const sockets: WebSocket[] = [];
  try {
    for (const route of ["views", "plain"]) {
      const ws = new WebSocket(`ws://127.0.0.1:${new URL(server.url).port}/${route}`);
      sockets.push(ws);
      await new Promise((resolve, reject) => {
        ws.onopen = resolve;
        ws.onerror = reject;
      });
      // many messages over several reads: the ones taken first must keep their own bytes
      for (let i = 0; i < 300; i++) ws.send(new Uint8Array(100).fill(i & 0xff));
      ws.send("text");
    }
    assert.ok(await eventually(() => got.views.length === 301 && got.plain.length === 301, 20_000), "all came");
    for (let i = 0; i < 300; i++) {
      const v = got.views[i] as Uint8Array;
      assert.equal(v.constructor, Uint8Array, `message ${i} as a plain Uint8Array`);
      assert.equal(v.byteLength, 100);
      assert.ok(v.every((b) => b === (i & 0xff)), `message ${i} kept its bytes`);
      const p = got.plain[i];
      assert.ok(p instanceof ArrayBuffer, `message ${i} as an ArrayBuffer`);
      assert.ok(new Uint8Array(p).every((b) => b === (i & 0xff)));
    }
    assert.equal(got.views[300], "text");
    assert.equal(got.plain[300], "text");
  } finally {
    for (const ws of sockets) ws.close();
    await server.close();
  }
});
