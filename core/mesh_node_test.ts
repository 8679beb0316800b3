import { test } from "node:test";
import assert from "node:assert/strict";
import { MeshNode } from "./mesh_node.ts";

test("MeshNode refuses an endpoint that is not a URL or names no host, naming it and why", () => {
  const cases: [string, string][] = [
    ["ws://::1:7070", "it is not a URL (an IPv6 address goes in brackets: ws://[::1]:7070)"],
    ["http://fe80::1:7070", "it is not a URL (an IPv6 address goes in brackets: http://[::1]:7070)"],
    ["ws://a b:1", "it is not a URL"],
    ["ws://300.1.1.1:7070", "it is not a URL"], // what new URL() refuses, refused here
    ["wss://h:99999", "it is not a URL"],
    ["ws://", "it names no host"],
    ["http://:7070", "it names no host"],
    ["ws://user@/", "it names no host"],
    ["nats://", "it names no host"],
    ["nats:///gpu1", "it names no host"],
    ["nats://h1:4222,,h2:4222/gpu1", "it names no host"],
    ["nats://a b:4222/gpu1", "it is not a URL"],
    ["nats://::1:4222/gpu1", "it is not a URL (an IPv6 address goes in brackets: nats://[::1]:4222)"],
    ["mem://", "it names no node (mem://name)"],
  ];
  for (const [endpoint, why] of cases) {
    assert.throws(
      () => new MeshNode("n", { endpoint }),
      (e) =>
        e instanceof TypeError &&
        e.message === `MeshNode "n": endpoint ${JSON.stringify(endpoint)} cannot name a node: ${why}`,
      endpoint,
    );
  }
});

test("MeshNode accepts every endpoint form a transport serves", () => {
  for (
    const endpoint of [
      "ws://127.0.0.1:7070",
      "wss://nodes.example",
      "http://10.0.0.2:7070",
      "https://nodes.example:8443/",
      "WS://H:1",
      "ws://[::1]:7070",
      "http://[fe80::1]:7070",
      "ws://localhost:7070/ws",
      "mem://cli-test-0",
      "mem://any name at all",
      "nats://127.0.0.1:4222/gpu1",
      "nats://h1:4222,h2:4222/gpu1",
      "nats://h1:4222,nats://h2:4222/gpu1",
      "nats://user:pass@h:4222/gpu1",
      "nats://[::1]:4222/op:embed",
    ]
  ) {
    assert.equal(new MeshNode("n", { endpoint }).endpoint, endpoint);
  }
});
