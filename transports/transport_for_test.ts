import { strictEqual, throws } from "node:assert/strict";
import { test } from "node:test";
import { transportFor } from "./transport_for.ts";

test("transportFor picks the transport from the endpoint scheme", () => {
  strictEqual(transportFor("ws://h:1").name, "websocket");
  strictEqual(transportFor("wss://h").name, "websocket");
  strictEqual(transportFor("http://h:1").name, "http");
  strictEqual(transportFor("HTTPS://h").name, "http");
  strictEqual(transportFor("mem://n1").name, "in_memory");
});

test("transportFor lets an explicit override win over the scheme", () => {
  strictEqual(transportFor("ws://h:1", "http").name, "http");
  strictEqual(transportFor("http://h:1", "websocket").name, "websocket");
});

test("transportFor rejects unknown schemes and overrides with TypeError", () => {
  throws(() => transportFor("ftp://h"), TypeError);
  throws(() => transportFor("h:1:2"), TypeError);
  throws(() => transportFor("ws://h", "carrier-pigeon" as "http"), TypeError);
  throws(() => transportFor("mem://n1", "http"), TypeError);
});

test("THINKAGAIN_TRANSPORT takes the names the mesh's transport option takes, nats too; a bad one lists them all", async () => {
  const { envTransport } = await import("./_env.ts");
  const { default: process } = await import("node:process");
  const before = process.env.THINKAGAIN_TRANSPORT;
  try {
    for (const name of ["websocket", "http", "nats", "in_memory"]) {
      process.env.THINKAGAIN_TRANSPORT = name;
      strictEqual(envTransport(), name);
    }
    process.env.THINKAGAIN_TRANSPORT = "tcp";
    throws(
      () => envTransport(),
      (e) =>
        e instanceof TypeError &&
        e.message === 'THINKAGAIN_TRANSPORT must be "websocket", "http", "nats" or "in_memory", got "tcp"',
    );
  } finally {
    if (before === undefined) delete process.env.THINKAGAIN_TRANSPORT;
    else process.env.THINKAGAIN_TRANSPORT = before;
  }
  // the nats transport reaches nats:// endpoints, whichever way it was chosen
  strictEqual(transportFor("nats://h:4222/n1", "nats").name, "nats");
  throws(() => transportFor("ws://h:1", "nats"), /the NATS transport needs a nats:\/\/host:4222\/<node> endpoint/);
});

test("transportFor: an unknown transport option lists every transport, nats included", () => {
  throws(
    () => transportFor("ws://h:1", "tcp" as "http"),
    (e) =>
      e instanceof TypeError &&
      e.message === 'Unknown transport "tcp": expected "websocket", "http", "nats" or "in_memory"',
  );
  throws(() => transportFor("ws://h:1", "toString" as "http"), /Unknown transport "toString"/);
});

test('a Mesh with a ws:// node on a runtime with no global WebSocket (Node 20) is a TypeError when it is built, saying what to do; http:// and transport: "http" are not', async () => {
  const ta = await import("../mod.ts");
  const saved = globalThis.WebSocket;
  delete (globalThis as { WebSocket?: unknown }).WebSocket;
  try {
    throws(
      () => new ta.Mesh([new ta.MeshNode("n1", { endpoint: "ws://127.0.0.1:9" })]),
      (e) =>
        e instanceof TypeError &&
        /node "n1" cannot be reached: .*has no global WebSocket, which a ws:\/\/ endpoint needs/.test(e.message) &&
        /reach the node over HTTP \(an http:\/\/ endpoint/.test(e.message),
    );
    throws(() => transportFor("http://h:1", "websocket"), /has no global WebSocket/);
    await new ta.Mesh([new ta.MeshNode("n1", { endpoint: "http://127.0.0.1:9" })]).close();
    await new ta.Mesh([new ta.MeshNode("n1", { endpoint: "ws://127.0.0.1:9" })], { transport: "http" }).close();
  } finally {
    globalThis.WebSocket = saved;
  }
});
