// Errors name the real cause: what a user sees when an argument cannot travel, a method fails on a
// node, the transport is misconfigured, a node cannot be reached or is killed (real processes on
// real sockets), and what mesh.stats() says of a node and of an instance its node could not create.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import process from "node:process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as ta from "../mod.ts";
import { runArgs, startNodeProcess, thisRuntime } from "../adapters/_test_nodes.ts";
import { eventually, rejection } from "../core/_test_utils.ts";
import { NodeServer } from "./node_server.ts";
import { serveInMemory } from "./in_memory.ts";
import { Bulk } from "./_test_faults_app.ts";

const FAULTS_APP = fileURLToPath(new URL("./_test_faults_app.ts", import.meta.url));
const PROBE = fileURLToPath(new URL("./_test_env_transport_probe.ts", import.meta.url));
const T = { timeout: 120_000 };

const Echo = ta.service(
  { name: "ErrCausesEcho" },
  class {
    echo(x: unknown): unknown {
      return x;
    }
    boom(): never {
      throw new Error("boom");
    }
  },
);
const Broken = ta.service(
  { name: "ErrCausesBroken" },
  class {
    constructor() {
      throw new Error("no model file");
    }
    hi(): number {
      return 1;
    }
  },
);

async function withNode<T>(name: string, body: (mesh: ta.Mesh) => Promise<T>): Promise<T> {
  const server = serveInMemory(name, new NodeServer({ name: `${name}-own` }).handler);
  const mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: server.endpoint })]);
  try {
    return await body(mesh);
  } finally {
    await mesh.close();
    await server.close();
  }
}

test("a cyclic argument is a TypeError naming the argument and where it leads back to, no stack overflow", async () => {
  await withNode("err-causes-cycle", async (mesh) => {
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    const deep: Record<string, unknown> = { list: [{}] };
    (deep.list as Record<string, unknown>[])[0].back = deep.list;
    const [top, inner, fn] = await mesh.run(() => {
      const e = Echo.init();
      return Promise.all([rejection(e.echo.go(cyclic)), rejection(e.echo.go(deep)), rejection(e.echo.go(() => 1))]);
    });
    assert.ok(top instanceof TypeError, String(top));
    assert.equal(
      top.message,
      'Cannot call method "echo" on node "n1": argument 0, at [0].self: it holds a cycle: it is argument 0 again',
    );
    assert.ok(inner instanceof TypeError, String(inner));
    assert.equal(
      inner.message,
      'Cannot call method "echo" on node "n1": argument 0, at [0].list[0].back: it holds a cycle: it is [0].list again',
    );
    assert.ok(fn instanceof TypeError, String(fn));
    assert.match(fn.message, /^Cannot call method "echo" on node "n1": argument 0: a function cannot travel/);
  });
});

test("a method that fails on a node is a Call that failed, and says so across the wire", async () => {
  await withNode("err-causes-call", async (mesh) => {
    const err = await mesh.run(() => rejection(Echo.init().boom.go()));
    assert.ok(err instanceof ta.OpExecutionError, String(err));
    assert.equal(err.message, 'Call "ErrCausesEcho.boom" failed: Error: boom');
    assert.equal(err.kind, "method");
  });
});

test("the in_memory transport with a ws:// node is a TypeError at new Mesh, from the option or the environment", () => {
  assert.throws(
    () => new ta.Mesh([new ta.MeshNode("n1", { endpoint: "ws://127.0.0.1:7070" })], { transport: "in_memory" }),
    (e: unknown) =>
      e instanceof TypeError &&
      e.message ===
        'Mesh "mesh": node "n1" cannot be reached (the mesh\'s transport option): Cannot use the in_memory ' +
          "transport for ws://127.0.0.1:7070: it reaches only nodes in this process (mem://name)",
  );
  // THINKAGAIN_TRANSPORT is read by the process: a child process with it set
  const [bin, argv] = runArgs(thisRuntime(), PROBE, []);
  const r = spawnSync(bin, argv, { encoding: "utf8", env: { ...process.env, THINKAGAIN_TRANSPORT: "in_memory" } });
  assert.equal(
    r.stdout.trim(),
    'TypeError: Mesh "mesh": node "n1" cannot be reached (THINKAGAIN_TRANSPORT=in_memory): Cannot use the ' +
      "in_memory transport for ws://127.0.0.1:7070: it reaches only nodes in this process (mem://name)",
    r.stderr,
  );
});

test(
  "a node never reached is a TransportError that says why it could not connect, over WebSocket and HTTP",
  T,
  async () => {
    // a port that was just free: nothing listens there
    const node = await startNodeProcess(FAULTS_APP, ["--port", "0", "--name", "gone"]);
    node.kill("SIGKILL");
    await node.exited;
    for (const scheme of ["ws", "http"]) {
      const endpoint = node.url.replace("http", scheme);
      await using mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint })]);
      const err = await mesh.run(() => rejection(Bulk.init().echo.go(1)));
      assert.ok(err instanceof ta.TransportError, `${scheme}: ${err}`);
      assert.equal(err.reason, "unreachable");
      // the runtime's own reason, not just "fetch failed" or "connection failed"
      const reason = /^Cannot (?:connect to|reach) \S+: (.*)$/.exec(err.message)?.[1];
      assert.ok(reason !== undefined, err.message);
      assert.ok(!/^(fetch failed|connection failed)$/.test(reason), err.message);
      assert.match(reason, /refused|ECONNREFUSED|connect/i, err.message);
    }
  },
);

test(
  "a node killed under a call is a NodeLostError that names the real cause, over WebSocket and HTTP",
  T,
  async () => {
    for (const scheme of ["ws", "http"]) {
      const node = await startNodeProcess(FAULTS_APP, ["--port", "0", "--name", "victim"]);
      const dir = mkdtempSync(join(tmpdir(), "ta-causes-"));
      try {
        await using mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: node.url.replace("http", scheme) })]);
        const err = await mesh.run(async () => {
          const bulk = Bulk.init();
          const ref = bulk.waitFor.go(join(dir, "never"), join(dir, "started"));
          assert.ok(await eventually(() => existsSync(join(dir, "started")), 60_000), "the call started");
          node.kill("SIGKILL");
          return await rejection(ref);
        });
        assert.ok(err instanceof ta.NodeLostError, `${scheme}: ${err}`);
        assert.ok(err.cause instanceof ta.TransportError, `${scheme}: its cause is the transport's error`);
        if (scheme === "ws") {
          assert.match(
            err.message,
            /^Node "n1" was lost: Connection to ws:\S+ dropped without a close frame \(code 1006[^)]*\): the node's process ended or the network failed$/,
          );
        } else {
          const reason = /^Node "n1" was lost: Cannot reach \S+: (.*)$/.exec(err.message)?.[1];
          assert.ok(reason !== undefined && reason !== "fetch failed", err.message);
          assert.match(reason, /reset|closed|ECONNRESET|refused/i, err.message);
        }
      } finally {
        node.kill("SIGKILL");
        await node.exited;
        rmSync(dir, { recursive: true, force: true });
      }
    }
  },
);

test("mesh.stats() names a node both ways and shows an instance its node could not create as failed", async () => {
  await withNode("err-causes-stats", async (mesh) => {
    const before = mesh.stats().nodes[0];
    assert.equal(before.name, "n1");
    assert.equal(before.servedAs, undefined, "not known before the node answered");
    const err = await mesh.run(() => rejection(Broken.init().hi.go()));
    assert.match(String((err as Error).message), /no model file/);
    const stats = mesh.stats();
    assert.equal(stats.nodes[0].servedAs, "err-causes-stats-own", "the name the node gave itself");
    const inst = stats.instances.find((i) => i.service === "ErrCausesBroken")!;
    assert.equal(inst.state, "failed");
    assert.equal(inst.error, 'Call "ErrCausesBroken.constructor" failed: Error: no model file');
    const ok = await mesh.run(async () => {
      const e = Echo.init();
      await e.echo.go(1);
      return mesh.stats().instances.find((i) => i.service === "ErrCausesEcho")!;
    });
    assert.equal(ok.state, "ready");
    assert.equal(ok.error, undefined);
  });
});
