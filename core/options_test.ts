// Unknown keys in configs and option objects are errors naming the key and the closest valid one.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../mod.ts";

function typo(fn: () => unknown, key: string, meant: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof TypeError, `expected a TypeError, got ${e}`);
    assert.match(e.message, new RegExp(`unknown (option|field) "${key}"; did you mean "${meant}"\\?`));
    return true;
  });
}

test('Mesh.fromConfig: a typo in a node ("endpont") is an error naming the closest field, not a local node', async () => {
  await assert.rejects(
    ta.Mesh.fromConfig({ nodes: [{ name: "n1", endpont: "ws://127.0.0.1:7070" } as never] }),
    /Mesh\.fromConfig: nodes\[0\] \("n1"\): unknown field "endpont"; did you mean "endpoint"\?/,
  );
  await assert.rejects(
    ta.Mesh.fromConfig({ nodes: [{ name: "n1" }], tranport: "http" } as never),
    /unknown field "tranport"; did you mean "transport"\?/,
  );
});

test("option objects of Mesh, MeshNode, mesh.close, op and service reject unknown keys, naming the closest valid one", async () => {
  typo(() => new ta.Mesh([new ta.MeshNode("a")], { timeoutMS: 5 } as never), "timeoutMS", "timeoutMs");
  typo(() => new ta.MeshNode("a", { endpont: "ws://h:1" } as never), "endpont", "endpoint");
  typo(() => ta.op({ retry: 2 } as never, () => 1), "retry", "retries");
  typo(
    () =>
      ta.service(
        { replica: 2 } as never,
        class OptTypo {
          m() {}
        },
      ),
    "replica",
    "replicas",
  );
  const mesh = new ta.Mesh([new ta.MeshNode("a")]);
  await assert.rejects(mesh.close({ grace: 5 } as never), /unknown option "grace"; did you mean "graceMs"\?/);
  await mesh.close();
  // the renamed options keep their own message
  assert.throws(() => ta.op({ concurrency: 1 } as never, () => 1), /"concurrency" is now "maxConcurrency"/);
});

test("MeshNode accepts ws, wss, http, https and mem endpoints and refuses any other scheme at once", () => {
  for (const endpoint of ["ws://h:1", "wss://h:1", "http://h:1", "https://h:1", "mem://n", "WS://h:1"]) {
    assert.equal(new ta.MeshNode("a", { endpoint }).endpoint, endpoint);
  }
  assert.throws(
    () => new ta.MeshNode("a", { endpoint: "tcp://10.0.0.1:7070" }),
    /MeshNode "a": endpoint scheme "tcp" has no transport \(use ws, wss, http, https, nats or mem\)/,
  );
});
