// The node's HTTP/WebSocket front (transports/server.ts, adapters/*/serve.ts) under attack, against
// real `thinkagain serve` processes on this runtime (the suite runs on Bun and on Deno).
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { fileURLToPath } from "node:url";
import process from "node:process";
import { startNodeProcess, thisRuntime } from "../adapters/_test_nodes.ts";
import { eventually } from "../core/_test_utils.ts";
import { decode } from "../core/codec.ts";
import { encodeMessage } from "./protocol.ts";
import { webSocketTransport } from "./websocket.ts";

const APP = fileURLToPath(new URL("../examples/distributed_app.ts", import.meta.url));
const T = { timeout: 120_000 };

/** Opens a raw TCP socket to the node. */
function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, "127.0.0.1", () => resolve(s));
    s.once("error", reject);
  });
}

/**
 * Sends a raw HTTP/1.1 request (headers exactly as given, so `Host` and `Origin` can be anything a
 * browser would send) and resolves with the status code of the response.
 */
async function rawStatus(port: number, head: string[], body: Uint8Array = new Uint8Array(0)): Promise<number> {
  const s = await open(port);
  try {
    return await new Promise<number>((resolve, reject) => {
      let got = "";
      s.on("data", (d: Uint8Array) => {
        got += new TextDecoder().decode(d);
        const m = /^HTTP\/1\.1 (\d{3})/.exec(got);
        if (m) resolve(Number(m[1]));
      });
      s.once("error", reject);
      s.once("close", () => reject(new Error(`connection closed before a status line; got ${JSON.stringify(got)}`)));
      const lines = body.byteLength > 0 ? [...head, `content-length: ${body.byteLength}`] : head;
      s.write(lines.join("\r\n") + "\r\n\r\n");
      if (body.byteLength > 0) s.write(body);
    });
  } finally {
    s.destroy();
  }
}

const upgrade = (port: number, extra: string[]) => [
  "GET /ws HTTP/1.1",
  `Host: 127.0.0.1:${port}`,
  "Upgrade: websocket",
  "Connection: Upgrade",
  "Sec-WebSocket-Version: 13",
  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
  "Sec-WebSocket-Protocol: thinkagain.v1",
  ...extra,
];

const rpc = (host: string, extra: string[] = []) => [
  "POST /rpc HTTP/1.1",
  `Host: ${host}`,
  "Content-Type: application/cbor",
  "Connection: close",
  ...extra,
];

test("createNodeApp refuses browser origins and foreign Host names on a node started without a token", T, async () => {
  const n = await startNodeProcess(APP, ["--port", "0", "--name", "n1"]);
  try {
    const ping = encodeMessage({ t: "ping" });
    // programs send no Origin: served as before
    assert.equal(await rawStatus(n.port, upgrade(n.port, [])), 101);
    assert.equal(await rawStatus(n.port, rpc(`127.0.0.1:${n.port}`), ping), 200);
    assert.equal(await rawStatus(n.port, rpc(`localhost:${n.port}`), ping), 200);
    // a page on another site, opening a WebSocket or posting to the node
    assert.equal(await rawStatus(n.port, upgrade(n.port, ["Origin: https://evil.example"])), 403);
    assert.equal(await rawStatus(n.port, rpc(`127.0.0.1:${n.port}`, ["Origin: https://evil.example"]), ping), 403);
    // DNS rebinding: the page's own name, resolved to 127.0.0.1
    assert.equal(await rawStatus(n.port, rpc(`evil.example:${n.port}`), ping), 403);
    assert.equal(
      await rawStatus(n.port, [
        ...upgrade(n.port, []).slice(0, 1),
        "Host: evil.example",
        ...upgrade(n.port, []).slice(2),
      ]),
      403,
    );
    // the warning says the node has no token, on loopback too
    assert.match(n.output(), /listening on 127\.0\.0\.1 without a token/);
  } finally {
    n.kill();
    await n.exited;
  }
});

test("thinkagain serve --allow-origin and --allow-host let a configured page and name through", T, async () => {
  const n = await startNodeProcess(APP, [
    "--port",
    "0",
    "--name",
    "n1",
    "--allow-origin",
    "https://app.example",
    "--allow-host",
    "nodes.example",
  ]);
  try {
    const ping = encodeMessage({ t: "ping" });
    assert.equal(await rawStatus(n.port, upgrade(n.port, ["Origin: https://app.example"])), 101);
    assert.equal(await rawStatus(n.port, rpc(`127.0.0.1:${n.port}`, ["Origin: https://app.example"]), ping), 200);
    assert.equal(await rawStatus(n.port, upgrade(n.port, ["Origin: https://evil.example"])), 403);
    assert.equal(await rawStatus(n.port, rpc(`nodes.example:${n.port}`), ping), 200);
    assert.equal(await rawStatus(n.port, rpc(`evil.example:${n.port}`), ping), 403);
    // the allowed page's browser asks before posting CBOR (CORS preflight) and is told yes
    const preflight = await rawStatus(n.port, [
      "OPTIONS /rpc HTTP/1.1",
      `Host: 127.0.0.1:${n.port}`,
      "Origin: https://app.example",
      "Access-Control-Request-Method: POST",
      "Access-Control-Request-Headers: content-type",
      "Connection: close",
    ]);
    assert.equal(preflight, 204);
  } finally {
    n.kill();
    await n.exited;
  }
});

/** Opens `count` raw TCP connections that send nothing (or drip a header) and counts those closed. */
async function idleSockets(port: number, count: number): Promise<{ sockets: Socket[]; closed(): number }> {
  let closed = 0;
  const sockets = await Promise.all(Array.from({ length: count }, () =>
    new Promise<Socket>((resolve) => {
      const s = connect(port, "127.0.0.1", () => resolve(s));
      s.on("error", () => {});
      s.on("close", () => {
        closed++;
        resolve(s);
      });
    })));
  return { sockets, closed: () => closed };
}

test(
  "a node closes idle and slow-header connections, holds --max-connections, and keeps serving a well-behaved client",
  T,
  async () => {
    const n = await startNodeProcess(APP, [
      "--port",
      "0",
      "--name",
      "n1",
      "--max-connections",
      "50",
      "--headers-timeout-ms",
      "500",
      "--idle-timeout-ms",
      "1000",
    ]);
    const drips: ReturnType<typeof setInterval>[] = [];
    try {
      const idle = await idleSockets(n.port, 300);
      // a few that drip their headers, a byte at a time, never finishing them
      const slow = await idleSockets(n.port, 5);
      for (const s of slow.sockets) {
        s.write("GET /rpc HTTP/1.1\r\n");
        drips.push(setInterval(() => !s.destroyed && s.write("x"), 50));
      }
      // a keep-alive connection that made one request and then says nothing
      const kept = await open(n.port);
      let keptClosed = false;
      kept.on("close", () => (keptClosed = true));
      kept.on("error", () => {});
      const answered = new Promise<string>((resolve) => kept.once("data", (d: Uint8Array) => resolve(String(d))));
      const ping = encodeMessage({ t: "ping" });
      kept.write(
        [`POST /rpc HTTP/1.1`, `Host: 127.0.0.1:${n.port}`, "Content-Type: application/cbor"].join("\r\n") +
          `\r\ncontent-length: ${ping.byteLength}\r\n\r\n`,
      );
      kept.write(ping);
      assert.match(await answered, /^HTTP\/1\.1 200/);
      // meanwhile, a well-behaved client is served
      const conn = await webSocketTransport.connect(n.url);
      try {
        assert.equal((decode(await conn.request(ping)) as { t: string }).t, "pong");
      } finally {
        await conn.close();
      }
      // and none of the idle ones is held for ever
      assert.ok(await eventually(() => idle.closed() === 300, 60_000), `${idle.closed()} of 300 idle sockets closed`);
      assert.ok(await eventually(() => slow.closed() === 5, 60_000), `${slow.closed()} of 5 dripping sockets closed`);
      assert.ok(await eventually(() => keptClosed, 60_000), "the idle keep-alive connection was closed");
      assert.equal(await rawStatus(n.port, rpc(`127.0.0.1:${n.port}`), ping), 200, "still serving");
    } finally {
      for (const d of drips) clearInterval(d);
      n.kill();
      await n.exited;
    }
  },
);

test(
  "a node out of file descriptors keeps running: failed accepts are reported and it serves again once idle sockets are closed",
  { ...T, skip: process.platform === "win32" },
  async () => {
    const n = await startNodeProcess(APP, ["--port", "0", "--name", "n1", "--headers-timeout-ms", "500"], {
      maxOpenFiles: 200,
    });
    try {
      const idle = await idleSockets(n.port, 300);
      assert.ok(await eventually(() => idle.closed() === 300, 90_000), `${idle.closed()} of 300 idle sockets closed`);
      const ping = encodeMessage({ t: "ping" });
      assert.ok(
        await eventually(
          async () => (await rawStatus(n.port, rpc(`127.0.0.1:${n.port}`), ping).catch(() => 0)) === 200,
          30_000,
        ),
        "serving again",
      );
      assert.equal(n.proc.exitCode, null, `the node is alive; it printed:\n${n.output()}`);
      // Deno's accepts fail past the limit (and are reported); Bun's server sheds them itself
      if (thisRuntime() === "deno") assert.match(n.output(), /accepting a connection failed: .*still accepting/);
    } finally {
      n.kill();
      await n.exited;
    }
  },
);
