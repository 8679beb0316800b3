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
