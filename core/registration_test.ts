// One name, one class or function: a second, different one never silently replaces the first.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../mod.ts";
import { registeredServices } from "./service_def.ts";
import { registeredOps } from "./op.ts";
import { NodeServer } from "../transports/node_server.ts";
import { serveInMemory } from "../transports/in_memory.ts";
import { rejection } from "./_test_utils.ts";

test("two different classes under one service name make the name ambiguous: finding it throws, naming both", () => {
  const First = ta.service(
    { name: "RegDupService" },
    class First {
      who() {
        return "first";
      }
    },
  );
  // the same class again is the same service
  ta.service({ name: "RegDupService" }, First.cls);
  assert.equal(registeredServices().get("RegDupService")?.cls, First.cls);
  ta.service(
    { name: "RegDupService" },
    class Second {
      who() {
        return "second";
      }
    },
  );
  assert.throws(() => registeredServices().get("RegDupService"), (e: unknown) => {
    assert.ok(e instanceof TypeError);
    assert.match(
      e.message,
      /service name "RegDupService" is ambiguous in this process: it was registered to class First \(at registration_test\.ts:\d+:\d+\) and to another class Second \(at registration_test\.ts:\d+:\d+\)/,
    );
    return true;
  });
  // each handle still runs its own class in this process
  assert.equal(registeredServices().has("RegDupService"), true);
});

test("two different functions under one remote op name make it ambiguous; the same function again does not", () => {
  const f = (x: number) => x;
  ta.op({ name: "regDupOp", remote: true }, f);
  ta.op({ name: "regDupOp", remote: true }, f);
  assert.equal(registeredOps().get("regDupOp")?.fn, f);
  ta.op({ name: "regDupOp", remote: true }, (x: number) => -x);
  assert.throws(() => registeredOps().get("regDupOp"), /op name "regDupOp" is ambiguous/);
});

test("a node asked to create an ambiguous service refuses, naming both, instead of making either", async () => {
  ta.service(
    { name: "RegDupNode" },
    class NodeFirst {
      who() {
        return "first";
      }
    },
  );
  ta.service(
    { name: "RegDupNode" },
    class NodeSecond {
      who() {
        return "second";
      }
    },
  );
  const node = new NodeServer({ name: "n1" });
  const server = serveInMemory("registration-test-node", node.handler);
  try {
    await using mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: "mem://registration-test-node" })]);
    const e = await rejection(mesh.run(async () => {
      const h = ta.service(
        { name: "RegDupNode" },
        class NodeFirst {
          who() {
            return "first";
          }
        },
      ).init();
      return await h.who();
    }));
    assert.match(String(e), /"RegDupNode" is ambiguous in this process: it was registered to class NodeFirst/);
  } finally {
    await node.drain();
    await server.close();
  }
});
