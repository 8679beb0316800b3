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

/** Asserts `fn` throws a `type` error whose message matches `message`. */
function refuses(fn: () => unknown, message: RegExp, type: typeof TypeError | typeof RangeError = TypeError): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof type, `expected a ${type.name}, got ${e}`);
    assert.match((e as Error).message, message);
    return true;
  });
}

test("CpuDevice and GpuDevice options reject unknown keys and what is not an options object", () => {
  typo(() => new ta.CpuDevice(0, { cors: 4 } as never), "cors", "cores");
  typo(() => new ta.GpuDevice(0, { nmae: "H100" } as never), "nmae", "name");
  refuses(() => new ta.GpuDevice(0, null as never), /GpuDevice: options must be an object, got null/);
  refuses(() => new ta.CpuDevice(0, [] as never), /CpuDevice: options must be an object, got an object \(Array\)/);
});

test("Mesh options: what is not an options object, a remote that is no layer, a name or token that is no string", () => {
  const nodes = () => [new ta.MeshNode("a")];
  refuses(() => new ta.Mesh(nodes(), null as never), /Mesh: options must be an object, got null/);
  refuses(() => new ta.Mesh(nodes(), 5 as never), /Mesh: options must be an object, got number 5/);
  refuses(() => new ta.Mesh(nodes(), [] as never), /Mesh: options must be an object, got an object \(Array\)/);
  refuses(
    () => new ta.Mesh(nodes(), { remote: 5 } as never),
    /Mesh: remote must be a Layer providing the remote executor \(such as layerRemote\), got number 5/,
  );
  refuses(() => new ta.Mesh(nodes(), { name: 5 } as never), /Mesh: name must be a non-empty string, got number 5/);
  refuses(() => new ta.Mesh(nodes(), { name: "" }), /Mesh: name must be a non-empty string, got the string ""/);
  refuses(() => new ta.Mesh(nodes(), { token: 5 } as never), /Mesh: token must be a string, got number 5/);
  refuses(
    () => new ta.Mesh(nodes(), { transport: "htp" } as never),
    /Mesh: transport must be "http", "websocket", "nats" or "in_memory", got the string "htp"/,
  );
});

test("op() refuses an array for options and a remote that is not a boolean", () => {
  refuses(
    () => ta.op([] as never, () => 1),
    /op\(\) expects a function, or a name or options object and a function; got an object \(Array\)/,
  );
  refuses(
    () => ta.op({ remote: "yes" } as never, () => 1),
    /op "anonymous\d+": remote must be a boolean, got the string "yes"/,
  );
  refuses(
    () => ta.op({ description: 5 } as never, function described() {}),
    /op "described": description must be a string/,
  );
});

test("goEffect refuses at once what is not an op or a service method", () => {
  refuses(
    () => ta.goEffect((() => 1) as never, 1 as never),
    /goEffect expects an op or a service method \(something with \.go\(\)\), got function \(anonymous\)/,
  );
  refuses(() => ta.goEffect(null as never), /goEffect expects an op or a service method .*got null/);
});

test("a missing value is named as undefined, once (describe() said 'undefined undefined')", () => {
  for (const make of [() => new ta.GpuDevice(undefined as unknown as number), () => ta.goEffect(undefined as never)]) {
    assert.throws(make, (e: Error) => {
      assert.ok(e instanceof TypeError, String(e));
      assert.match(e.message, /got undefined\b/);
      assert.doesNotMatch(e.message, /undefined undefined/);
      return true;
    });
  }
});
