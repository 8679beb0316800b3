// The Node adapter holds the limits the Bun and Deno nodes hold (issue 11): a WebSocket message
// over maxMessageBytes is refused unread (1009); past maxConnections a new connection takes the
// place of the oldest one with no request in progress; a connection that sends no complete head
// within headersTimeoutMs is closed. Each runs against the adapter in this process (Bun's or Deno's
// Node compatibility) and against a node on Node itself (the adapter bundled by `bun build`).
import { test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createNodeApp } from "../../transports/server.ts";
import { WS_PROTOCOL } from "../../transports/_common.ts";
import { FRAME_HEADER_BYTES, KIND_REQUEST, writeHeader } from "../../transports/ws_framing.ts";
import { serve, upgradeWebSocket } from "./serve.ts";
import { heartbeat } from "./_connection_guard.ts";
import { WebSocketServer } from "ws";
import type { ServeOptions } from "../types.ts";

// the cap's test waits on no timeout: its connections would otherwise be closed for saying nothing
const CAP: ServeOptions = { maxConnections: 2, headersTimeoutMs: 600_000, idleTimeoutMs: 600_000 };
const TIMEOUTS: ServeOptions = { headersTimeoutMs: 100, idleTimeoutMs: 100 };
const T = { timeout: 60_000 };

/** A node under test: its port, and how to stop it. */
interface Target {
  readonly port: number;
  stop(): Promise<void>;
}

async function inProcess(options: ServeOptions): Promise<Target> {
  const app = createNodeApp((frame) => frame, { upgradeWebSocket, maxFrameBytes: 1 << 20 });
  const server = await serve(app, { port: 0, ...options });
  return { port: server.port, stop: () => server.close() };
}

function nodeBinary(): string | undefined {
  try {
    const v = execFileSync("node", ["--version"], { encoding: "utf8" }).trim();
    return Number(/^v(\d+)/.exec(v)?.[1]) >= 18 ? "node" : undefined;
  } catch {
    return undefined;
  }
}
const NODE = nodeBinary();

/** The adapter on Node itself: bundled (Node 20 cannot load .ts), started in a process of its own. */
async function onNode(options: ServeOptions): Promise<Target> {
  const dir = mkdtempSync(join(tmpdir(), "thinkagain-node-adapter-"));
  const out = join(dir, "entry.mjs");
  const bun = fileURLToPath(new URL("../../node_modules/.bin/bun", import.meta.url));
  const entry = fileURLToPath(new URL("./_test_node_entry.ts", import.meta.url));
  execFileSync(bun, ["build", entry, "--target=node", "--outfile", out], { stdio: "pipe" });
  const proc: ChildProcess = spawn(NODE!, [out, JSON.stringify(options)], { stdio: ["ignore", "pipe", "pipe"] });
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  let printed = "";
  const port = await new Promise<number>((resolve, reject) => {
    proc.stdout!.on("data", (d: Buffer) => {
      printed += d.toString();
      const m = /listening (\d+)/.exec(printed);
      if (m) resolve(Number(m[1]));
    });
    proc.stderr!.on("data", (d: Buffer) => (printed += d.toString()));
    void exited.then(() => reject(new Error(`the Node node exited before listening:\n${printed}`)));
  });
  return {
    port,
    stop: async () => {
      proc.kill("SIGTERM");
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
}

function closed(s: net.Socket): Promise<void> {
  return s.destroyed ? Promise.resolve() : new Promise((resolve) => s.once("close", () => resolve()));
}

/** Opens a WebSocket; resolves with the close code it ends with, after sending `message`. */
function closeCodeAfter(port: number, message: Uint8Array): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, [WS_PROTOCOL]);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => ws.send(message as Uint8Array<ArrayBuffer>);
    ws.onclose = (e) => resolve(e.code);
    ws.onerror = () => {};
    ws.onmessage = () => reject(new Error("the node answered a message over maxMessageBytes"));
  });
}

function request(bodyBytes: number): Uint8Array {
  const m = new Uint8Array(FRAME_HEADER_BYTES + bodyBytes);
  writeHeader(m, KIND_REQUEST, 1);
  return m;
}

async function healthStatus(port: number): Promise<number> {
  return (await fetch(`http://127.0.0.1:${port}/healthz`)).status;
}

const targets: [string, (options: ServeOptions) => Promise<Target>, string | false][] = [
  ["in this runtime's Node compatibility", inProcess, false],
  ["on Node", onNode, NODE === undefined && "no node (>= 18) on PATH"],
];

for (const [where, start, skip] of targets) {
  test(`Node adapter ${where}: a WebSocket message over maxMessageBytes closes the connection unread (1009)`, {
    ...T,
    skip,
  }, async () => {
    const t = await start({ maxMessageBytes: 2048 });
    try {
      assert.equal(await closeCodeAfter(t.port, request(4096)), 1009);
    } finally {
      await t.stop();
    }
  });

  test(`Node adapter ${where}: past maxConnections a new connection takes the place of the oldest idle one`, {
    ...T,
    skip,
  }, async () => {
    const t = await start(CAP);
    const idle: net.Socket[] = [];
    try {
      idle.push(await connect(t.port), await connect(t.port));
      // each sends part of a head: Bun's node:http tells of a connection only once it sends something
      for (const s of idle) s.on("error", () => {}).write("GET /healthz HTTP/1.1\r\n");
      // a program's request gets through, though two connections that never finish a head fill the cap
      assert.equal(await healthStatus(t.port), 404);
      await closed(idle[0]);
    } finally {
      for (const s of idle) s.destroy();
      await t.stop();
    }
  });

  test(`Node adapter ${where}: a connection that sends no complete head within headersTimeoutMs is closed`, {
    ...T,
    skip,
  }, async () => {
    const t = await start(TIMEOUTS);
    const silent = await connect(t.port);
    const dripping = await connect(t.port);
    try {
      for (const s of [silent, dripping]) s.on("error", () => {});
      dripping.write("GET /healthz HTTP/1.1\r\n");
      // generous against a 100 ms limit, short of Bun's own 10 s head timeout and Node's 30 s check
      const bound = new Promise<string>((resolve) => setTimeout(() => resolve("still open after 8 s"), 8_000));
      assert.equal(await Promise.race([closed(silent).then(() => "closed"), bound]), "closed", "silent");
      assert.equal(await Promise.race([closed(dripping).then(() => "closed"), bound]), "closed", "dripping");
    } finally {
      silent.destroy();
      dripping.destroy();
      await t.stop();
    }
  });
}

test("Node adapter's heartbeat ends a WebSocket whose peer answers no ping, and keeps one that does", T, async () => {
  const wss = new WebSocketServer({ port: 0, host: "127.0.0.1" });
  await new Promise((resolve) => wss.once("listening", resolve));
  const stop = heartbeat(wss as unknown as Parameters<typeof heartbeat>[0], 50);
  const port = (wss.address() as { port: number }).port;
  const connected = new Promise<void>((resolve) => wss.on("connection", () => wss.clients.size === 2 && resolve()));
  // a peer that vanished: it upgraded, then answers nothing
  const silent = await connect(port);
  silent.on("error", () => {}).on("data", () => {});
  silent.write(
    "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
  );
  const alive = new WebSocket(`ws://127.0.0.1:${port}`); // a runtime's client answers pings itself
  try {
    await connected;
    await closed(silent);
    // the live one saw the same pings and is still open
    assert.equal(alive.readyState, WebSocket.OPEN);
    assert.equal(wss.clients.size, 1);
  } finally {
    stop();
    silent.destroy();
    alive.close();
    await new Promise((resolve) => wss.close(resolve));
  }
});
