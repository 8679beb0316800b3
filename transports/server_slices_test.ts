// A WebSocket client that sends many frames at once does not hold another client's frame until the
// whole burst is served (issue 11's soak: one client's 2,000 calls held everybody else's for
// hundreds of ms). Ordered by events, not by time: the other client sends once the burst's first
// reply is back, and its frame must reach the handler before the burst's last one.
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { startRealServer, upgradeRaw, wsRequest } from "./_test_servers.ts";
import { webSocketTransport } from "./websocket.ts";

const BURST = 300;

test("createNodeApp serves a burst of frames in slices: another client's frame is served before the burst ends", {
  timeout: 120_000,
}, async () => {
  const seen: string[] = [];
  const server = await startRealServer((frame) => {
    seen.push(frame[0] === 0xb0 ? "other" : "burst");
    // some work per frame, so that the burst outlasts a slice
    const until = performance.now() + 1;
    while (performance.now() < until) { /* busy */ }
    return frame;
  });
  const port = Number(new URL(server.endpoint).port);
  const other = await webSocketTransport.connect(server.endpoint);
  const raw = net.connect(port, "127.0.0.1");
  try {
    await upgradeRaw(raw, port);
    const firstReply = new Promise<void>((resolve) => raw.once("data", () => resolve()));
    // the whole burst in one write: the node reads it at once
    const burst: Uint8Array[] = [];
    for (let i = 1; i <= BURST; i++) burst.push(wsRequest(i, new Uint8Array([0xa0])));
    raw.write(Buffer.concat(burst));
    await firstReply;
    await other.request(new Uint8Array([0xb0]));
    const at = seen.indexOf("other");
    assert.ok(at >= 0 && at < BURST, `the other client's frame was served after ${at} of the burst's ${BURST}`);
  } finally {
    raw.destroy();
    await other.close();
    await server.close();
  }
});

// While another client sends too, the turns are shorter (ws_connection.ts, CONTENDED_SLICE_MS): the
// burst is still served whole and in order, and the other client's calls, made one after another
// while it lasts, are each answered between its slices.
test(
  "createNodeApp serves a burst while another client calls: the burst in order, the other's calls between its slices",
  {
    timeout: 120_000,
  },
  async () => {
    const seen: number[] = []; // the burst's frame ids, and -1 for each of the other client's
    let burstDone!: () => void;
    const burstOver = new Promise<void>((resolve) => (burstDone = resolve));
    const server = await startRealServer((frame) => {
      if (frame[0] === 0xb0) {
        seen.push(-1);
        return frame;
      }
      seen.push(frame[1] | (frame[2] << 8));
      // some work per frame, so that the burst outlasts many slices
      const until = performance.now() + 1;
      while (performance.now() < until) { /* busy */ }
      if (seen.filter((x) => x >= 0).length === BURST) burstDone();
      return frame;
    });
    const port = Number(new URL(server.endpoint).port);
    const other = await webSocketTransport.connect(server.endpoint);
    const raw = net.connect(port, "127.0.0.1");
    try {
      await upgradeRaw(raw, port);
      const firstReply = new Promise<void>((resolve) => raw.once("data", () => resolve()));
      raw.on("data", () => {}); // reads its replies
      // the other client calls first, so the node has seen two connections send when the burst comes
      assert.deepEqual(await other.request(new Uint8Array([0xb0, 0])), new Uint8Array([0xb0, 0]));
      const burst: Uint8Array[] = [];
      for (let i = 1; i <= BURST; i++) burst.push(wsRequest(i, new Uint8Array([0xa0, i & 0xff, i >> 8])));
      raw.write(Buffer.concat(burst));
      await firstReply;
      let over = false;
      void burstOver.then(() => (over = true));
      let calls = 0;
      while (!over) {
        const n = ++calls & 0xff;
        assert.deepEqual(await other.request(new Uint8Array([0xb0, n])), new Uint8Array([0xb0, n]));
      }
      const ids = seen.filter((x) => x >= 0);
      assert.deepEqual(ids, Array.from({ length: BURST }, (_, i) => i + 1));
      const lastOfBurst = seen.lastIndexOf(BURST);
      const between = seen.slice(seen.indexOf(1), lastOfBurst).filter((x) => x === -1).length;
      assert.ok(between > 0, `none of the other client's ${calls} calls was served while the burst lasted`);
    } finally {
      raw.destroy();
      await other.close();
      await server.close();
    }
  },
);
