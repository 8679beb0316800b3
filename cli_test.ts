// Real processes: `thinkagain serve` nodes on 127.0.0.1 driven over WebSocket and HTTP.
import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import process from "node:process";
import * as ta from "./mod.ts";
import { eventually, rejection, sleep } from "./core/_test_utils.ts";
import { MAX_EXCHANGES } from "./transports/http.ts";
import { rssOf, startNodeProcess, thisRuntime } from "./adapters/_test_nodes.ts";
import { NodeServer } from "./transports/node_server.ts";
import { serveInMemory } from "./transports/in_memory.ts";
import { webSocketTransport } from "./transports/websocket.ts";
import { encodeMessage, PROTOCOL_VERSION } from "./transports/protocol.ts";
import { decode } from "./core/codec.ts";
import { Generator, Retriever, Solo, tokenize, Worker } from "./examples/distributed_app.ts";

const APP = fileURLToPath(new URL("./examples/distributed_app.ts", import.meta.url));
const T = { timeout: 120_000 };

async function pong(
  url: string,
  token?: string,
): Promise<{ activeCalls: number; instances: number; expiredInstances: number; node: string }> {
  const conn = await webSocketTransport.connect(url, token ? { token } : {});
  try {
    return decode(await conn.request(encodeMessage({ t: "ping" }))) as {
      activeCalls: number;
      instances: number;
      expiredInstances: number;
      node: string;
    };
  } finally {
    await conn.close();
  }
}

async function ragPipeline(): Promise<string[]> {
  const retriever = Retriever.init();
  const generator = Generator.init();
  const queries = ["what is a mesh", "how are transports chosen"];
  const answers = queries.map((q) => generator.generate.go(q, retriever.retrieve.go(q, 2)));
  const nested = generator.generateWith.go(retriever, "which services run on a node");
  const tokens = tokenize.go("Hello, Mesh");
  return [...(await Promise.all(answers)), await nested, (await tokens).join("|")];
}

test("thinkagain serve: the same pipeline gives the same results over websocket, http and in-memory", T, async () => {
  const a = await startNodeProcess(APP, ["--port", "0", "--name", "n1", "--gpus", "1"]);
  const b = await startNodeProcess(APP, ["--port", "0", "--name", "n2", "--gpus", "1"]);
  try {
    assert.equal(a.output().match(/listening on http/g)?.length, 1, "exactly one ready line");
    const results: Record<string, string[]> = {};
    for (const transport of ["websocket", "http"] as const) {
      await using mesh = new ta.Mesh([
        new ta.MeshNode("n1", { endpoint: `ws://127.0.0.1:${a.port}`, gpus: 1 }),
        new ta.MeshNode("n2", { endpoint: `ws://127.0.0.1:${b.port}`, gpus: 1 }),
      ], { transport });
      results[transport] = await mesh.run(ragPipeline);
    }
    // in-memory: the same module served by nodes inside this process
    const servers = [new NodeServer({ name: "n1", gpus: 1 }), new NodeServer({ name: "n2", gpus: 1 })];
    const mem = servers.map((n, i) => serveInMemory(`cli-test-${i}`, n.handler));
    try {
      await using mesh = new ta.Mesh([
        new ta.MeshNode("n1", { endpoint: "mem://cli-test-0", gpus: 1 }),
        new ta.MeshNode("n2", { endpoint: "mem://cli-test-1", gpus: 1 }),
      ]);
      results.in_memory = await mesh.run(ragPipeline);
    } finally {
      for (const m of mem) await m.close();
    }
    assert.deepEqual(results.http, results.websocket);
    assert.deepEqual(results.in_memory, results.websocket);
    assert.match(results.websocket[0], /^\[n[12]\] what is a mesh -> 2 docs: /);
    assert.match(results.websocket[2], /which services run on a node -> 2 docs/);
    assert.equal(results.websocket[3], "hello|mesh");
  } finally {
    a.kill();
    b.kill();
    assert.equal(await a.cleanExit(), 0);
    assert.equal(await b.cleanExit(), 0);
  }
});

test(
  "remote failures: TypeError arrives as OpExecutionError without server paths; unreachable endpoints fail fast",
  T,
  async () => {
    const n = await startNodeProcess(APP, ["--port", "0", "--name", "n1", "--gpus", "1"]);
    try {
      await using mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: `ws://127.0.0.1:${n.port}`, gpus: 1 })]);
      const e = await mesh.run(() => rejection(Generator.init().fail.go("bad")));
      assert.ok(e instanceof ta.OpExecutionError);
      assert.equal(e.op, "Generator.fail");
      assert.ok(e.cause instanceof TypeError);
      assert.equal((e.cause as Error).message, "bad");
      assert.ok(
        !JSON.stringify({ m: e.message, s: String((e.cause as Error).stack) }).includes("distributed_app"),
        "no server file paths",
      );
    } finally {
      n.kill();
      await n.exited;
    }
    for (const endpoint of ["ws://127.0.0.1:1", "http://127.0.0.1:1"]) {
      await using mesh = new ta.Mesh([new ta.MeshNode("gone", { endpoint })]);
      const e = await mesh.run(() => rejection(Solo.init().echo.go(1)));
      assert.ok(e instanceof ta.TransportError, `${endpoint}: expected TransportError, got ${e}`);
      assert.equal(e.reason, "unreachable");
      assert.match(e.message, /127\.0\.0\.1:1/);
    }
  },
);

test(
  "--gpus auto where the runtime has no WebGPU says so (a node serving 0 GPUs it was asked to find)",
  T,
  async () => {
    const n = await startNodeProcess(APP, ["--port", "0", "--name", "auto", "--gpus", "auto"], { runtime: "bun" });
    try {
      // Bun has no navigator.gpu: the node serves, and says why it found none (on stderr, which may
      // come after the ready line on stdout)
      const said = /thinkagain node auto: --gpus auto found no GPU \(this runtime has no WebGPU/;
      assert.ok(await eventually(() => said.test(n.output())), n.output());
    } finally {
      n.kill();
      await n.exited;
    }
  },
);

test("auth: without the token or with a wrong one nothing runs; the token never shows in output", T, async () => {
  const n = await startNodeProcess(APP, ["--port", "0", "--name", "secure"], {
    env: { THINKAGAIN_TOKEN: "s3cret-token" },
  });
  try {
    for (const token of [undefined, "bad-guess-123"]) {
      await using mesh = new ta.Mesh(
        [new ta.MeshNode("secure", { endpoint: `ws://127.0.0.1:${n.port}` })],
        token ? { token } : {},
      );
      const e = await mesh.run(() => rejection(Solo.init().echo.go(1)));
      assert.ok(e instanceof ta.AuthError, `expected AuthError, got ${e}`);
      assert.ok(!e.message.includes("s3cret-token") && !(token && e.message.includes(token)));
    }
    assert.equal((await pong(n.url, "s3cret-token")).instances, 0, "no instance was created by refused connections");
    await using mesh = new ta.Mesh([new ta.MeshNode("secure", { endpoint: n.url })], { token: "s3cret-token" });
    assert.equal(await mesh.run(() => Solo.init().echo.go(7)), 7, "the right token works (over http)");
  } finally {
    n.kill();
    await n.exited;
  }
  assert.ok(!n.output().includes("s3cret-token"));
});

test(
  "deadlines: a late remote call fails with TimeoutError and the node is told to cancel; ref.cancel() reaches it",
  T,
  async () => {
    const n = await startNodeProcess(APP, ["--port", "0", "--name", "n1"]);
    try {
      await using mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: `ws://127.0.0.1:${n.port}` })], {
        timeoutMs: 100,
      });
      const e = await mesh.run(() => rejection(Solo.init().work.go(60_000, 1)));
      assert.ok(e instanceof ta.TimeoutError);
      assert.ok(await eventually(async () => (await pong(n.url)).activeCalls === 0), "the node cancelled its side");
      await using mesh2 = new ta.Mesh([new ta.MeshNode("n1", { endpoint: `ws://127.0.0.1:${n.port}` })]);
      const [ref] = await mesh2.run(async () => {
        const s = Solo.init();
        await s.echo.go(0);
        return [s.work.go(60_000, 2)];
      });
      assert.ok(await eventually(async () => (await pong(n.url)).activeCalls === 1), "the call runs on the node");
      ref.cancel();
      assert.ok((await rejection(ref)) instanceof ta.CancelledError);
      assert.ok(await eventually(async () => (await pong(n.url)).activeCalls === 0), "the cancel reached the node");
    } finally {
      n.kill();
      await n.exited;
    }
  },
);

test(
  "a node killed with SIGKILL under 1,000 in-flight calls: retried on the other replica, or NodeLostError; a restarted node serves again",
  T,
  async () => {
    const n1 = await startNodeProcess(APP, ["--port", "0", "--name", "n1"]);
    const n2 = await startNodeProcess(APP, ["--port", "0", "--name", "n2"]);
    let n1b: Awaited<ReturnType<typeof startNodeProcess>> | undefined;
    try {
      await using mesh = new ta.Mesh([
        new ta.MeshNode("n1", { endpoint: `ws://127.0.0.1:${n1.port}` }),
        new ta.MeshNode("n2", { endpoint: `ws://127.0.0.1:${n2.port}` }),
      ]);
      // retries allowed: every call completes
      const retried = await mesh.run(async () => {
        const w = Worker.init();
        await Promise.all([w.work.go(0, -1), w.work.go(0, -2)]);
        const refs = Array.from({ length: 1000 }, (_, i) => w.work.go(300, i));
        await sleep(100);
        n1.kill("SIGKILL");
        return await Promise.all(refs);
      });
      assert.deepEqual(retried, Array.from({ length: 1000 }, (_, i) => i));
      // no retries: calls on the dead node reject with NodeLostError naming it, none hangs
      await using mesh2 = new ta.Mesh([new ta.MeshNode("n2", { endpoint: `ws://127.0.0.1:${n2.port}` })]);
      const outcomes = await mesh2.run(async () => {
        const s = Solo.init();
        await s.echo.go(0);
        const refs = Array.from({ length: 1000 }, (_, i) => s.work.go(5_000, i));
        // every call is in flight on the node when it dies (not yet sent would be another story)
        assert.ok(await eventually(async () => (await pong(n2.url)).activeCalls === 1000), "1000 calls on n2");
        n2.kill("SIGKILL");
        return await Promise.allSettled(refs);
      });
      assert.equal(outcomes.length, 1000);
      for (const o of outcomes) {
        assert.equal(o.status, "rejected");
        assert.ok((o as PromiseRejectedResult).reason instanceof ta.NodeLostError);
        assert.equal(((o as PromiseRejectedResult).reason as ta.NodeLostError).node, "n2");
      }
      // the node comes back on the same port: new calls work (the instance is created again)
      await n2.exited;
      n1b = await startNodeProcess(APP, ["--port", String(n2.port), "--name", "n2"]);
      const again = await mesh2.run(() => Solo.init().echo.go("back"));
      assert.equal(again, "back");
    } finally {
      for (const p of [n1, n2, n1b]) p?.kill("SIGKILL");
    }
  },
);

test(
  "SIGTERM drains: a call in flight completes, then the node exits 0; a second node cannot take a used port",
  T,
  async () => {
    const n = await startNodeProcess(APP, ["--port", "0", "--name", "n1"]);
    const clash = await startNodeProcess(APP, ["--port", String(n.port), "--name", "n2"]).then(
      () => "started",
      (e: Error) => e.message,
    );
    assert.match(clash, /exited with 1[\s\S]*already in use/);
    await using mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: `ws://127.0.0.1:${n.port}` })]);
    const [slow, s] = await mesh.run(async () => {
      const s = Solo.init();
      await s.echo.go(0);
      return [s.work.go(400, 42), s] as const;
    });
    assert.ok(await eventually(async () => (await pong(n.url)).activeCalls === 1), "the call reached the node");
    n.kill("SIGTERM");
    assert.equal(await slow, 42, "the in-flight call finished");
    assert.equal(await n.cleanExit(), 0);
    assert.match(n.output(), /drained, exiting/);
    const after = await mesh.run(() => rejection(s.echo.go(1)));
    assert.ok(after instanceof ta.TransportError || after instanceof ta.NodeLostError, `got ${after}`);
  },
);

test(
  "limits and garbage: oversized frames are refused, 10,000 random and mutated frames leave the node serving with bounded memory",
  T,
  async () => {
    const n = await startNodeProcess(APP, ["--port", "0", "--name", "n1", "--max-frame-bytes", "65536"]);
    try {
      await using mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: `ws://127.0.0.1:${n.port}` })]);
      const s = await mesh.run(async () => {
        const s = Solo.init();
        await s.echo.go(0);
        return [s];
      });
      // a frame a little over the limit is refused by the node, with a reply that says why
      const big = await mesh.run(() => rejection(s[0].echo.go(new Float32Array(20_000))));
      assert.ok(big instanceof ta.TransportError || big instanceof ta.OpExecutionError, `got ${big}`);
      assert.match((big as Error).message, /too large|limit|65536/i);
      // one far over it is not even read: the node's runtime closes the connection (1009); a driver
      // still writing the frame then may meet the closed socket first (1006, broken pipe or unexpected
      // EOF: seen on Deno under load), which is the same refusal (the node goes on serving, see below)
      const huge = await mesh.run(() => rejection(s[0].echo.go(new Float32Array(1 << 18))));
      assert.ok(huge instanceof ta.NodeLostError || huge instanceof ta.TransportError, `got ${huge}`);
      assert.match((huge as Error).message, /1009|too big|too large|closed|1006, (Broken pipe|Unexpected EOF)/i);
      const before = await rssOf(n.proc.pid!);
      const valid = encodeMessage({ t: "call", cid: "x", id: "nope", method: "echo", args: [1] });
      const hello = encodeMessage({ t: "hello", v: PROTOCOL_VERSION });
      let seed = 12345;
      const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
      const conn = await webSocketTransport.connect(n.url);
      let answered = 0;
      for (let batch = 0; batch < 100; batch++) {
        const frames = Array.from({ length: 100 }, (_, i) => {
          if ((batch + i) % 2 === 0) {
            return Uint8Array.from({ length: 1 + Math.floor(rand() * 200) }, () => Math.floor(rand() * 256));
          }
          const f = (i % 3 === 0 ? hello : valid).slice(0, 1 + Math.floor(rand() * valid.length));
          for (let k = 0; k < 3; k++) f[Math.floor(rand() * f.length)] = Math.floor(rand() * 256);
          return f;
        });
        const res = await Promise.allSettled(frames.map((f) => conn.request(f)));
        answered += res.length;
      }
      await conn.close();
      // raw HTTP garbage as well
      for (let i = 0; i < 50; i++) {
        const r = await fetch(`${n.url}/rpc`, {
          method: "POST",
          headers: { "content-type": "application/cbor" },
          body: Uint8Array.from({ length: 64 }, () => Math.floor(rand() * 256)),
        });
        assert.equal(r.status, 400, "garbage is a client error (ProtocolError), not a node failure");
        await r.arrayBuffer();
      }
      assert.equal(answered, 10_000);
      assert.equal(await mesh.run(() => s[0].echo.go("still here")), "still here");
      const after = await rssOf(n.proc.pid!);
      if (before !== undefined && after !== undefined) {
        assert.ok(after - before < 128 * 1024 * 1024, `RSS grew by ${((after - before) / 2 ** 20).toFixed(1)} MiB`);
      }
    } finally {
      n.kill();
      await n.exited;
    }
  },
);

test("thinkagain serve --object-store-bytes bounds the node's object store; a bad value is refused", T, async () => {
  const { parseServeArgs } = await import("./cli_serve.ts");
  assert.equal(parseServeArgs(["app.ts"], {}).objectStoreBytes, undefined);
  assert.throws(
    () => parseServeArgs(["app.ts", "--object-store-bytes", "-1"], {}),
    /--object-store-bytes needs an integer ≥ 0/,
  );
  const app = fileURLToPath(new URL("./transports/_test_data_plane_app.ts", import.meta.url));
  const { dpLostMake } = await import("./transports/_test_data_plane_app.ts");
  const node = await startNodeProcess(app, [
    "--port",
    "0",
    "--name",
    "s1",
    "--gpus",
    "1",
    "--object-store-bytes",
    "1024",
  ]);
  try {
    // every result is kept on the node: one of 4000 bytes does not fit in 1024
    await using mesh = new ta.Mesh([new ta.MeshNode("s1", { endpoint: `ws://127.0.0.1:${node.port}`, gpus: 1 })], {
      keepResultsAbove: 0,
    });
    // (left to settle before it is awaited: an awaited result comes back in its reply, never stored)
    const e = await rejection(mesh.run(async () => {
      const made = dpLostMake.go(1000);
      await eventually(() => made.status !== "pending" && made.status !== "running", 10_000);
      return made;
    }));
    assert.ok(e instanceof ta.OverloadedError, String(e));
    assert.match(e.message, /larger than its whole object store \(1024 bytes, --object-store-bytes\)/);
  } finally {
    node.kill("SIGKILL");
    await node.exited;
  }
});

test("thinkagain serve rejects bad arguments with a usage message and exit code 2", T, async () => {
  const { parseServeArgs } = await import("./cli_serve.ts");
  assert.throws(() => parseServeArgs([], {}), /needs the module/);
  assert.throws(() => parseServeArgs(["app.ts", "--port", "abc"], {}), /--port needs an integer/);
  assert.throws(() => parseServeArgs(["app.ts", "--port", "70000"], {}), /from 0 to 65535, got "70000"/);
  assert.throws(() => parseServeArgs(["app.ts", "--gpus", "-1"], {}), /--gpus needs an integer/);
  assert.throws(() => parseServeArgs(["app.ts", "--bogus"], {}), /unknown option --bogus/);
  assert.throws(() => parseServeArgs(["a.ts", "b.ts"], {}), /one module only/);
  assert.equal(
    parseServeArgs(["app.ts"], { THINKAGAIN_TOKEN: "t" }).token,
    "t",
    "the token comes from the environment",
  );
  assert.equal(parseServeArgs(["app.ts", "--port=0", "--name=n"], {}).port, 0, "--flag=value works");
  assert.equal(parseServeArgs(["app.ts"], {}).leaseMs, 30_000, "instances are leased by default");
  assert.equal(parseServeArgs(["app.ts", "--lease-ms", "0"], {}).leaseMs, 0);
  assert.throws(() => parseServeArgs(["app.ts", "--lease-ms", "soon"], {}), /--lease-ms needs an integer/);
  const { spawnSync } = await import("node:child_process");
  const { runArgs } = await import("./adapters/_test_nodes.ts");
  const [bin, argv] = runArgs(thisRuntime(), fileURLToPath(new URL("./cli.ts", import.meta.url)), [
    "serve",
    APP,
    "--port",
    "nope",
  ]);
  const r = spawnSync(bin, argv, { encoding: "utf8" });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--port needs an integer[\s\S]*usage: thinkagain serve/);
  const missing = spawnSync(
    bin,
    runArgs(thisRuntime(), fileURLToPath(new URL("./cli.ts", import.meta.url)), [
      "serve",
      "/nonexistent/app.ts",
      "--port",
      "0",
    ])[1],
    {
      encoding: "utf8",
    },
  );
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /cannot start node/);
});

test(
  "thinkagain serve: a flag left without its value (the next word is an option) is a usage error, exit 2",
  T,
  async () => {
    const { spawnSync } = await import("node:child_process");
    const { runArgs } = await import("./adapters/_test_nodes.ts");
    const cli = fileURLToPath(new URL("./cli.ts", import.meta.url));
    const cases: [string[], string][] = [
      [["--port", "0", "--token", "--dashboard"], "--token needs a value, got the option --dashboard"],
      [["--port", "0", "--name", "--dashboard"], "--name needs a value, got the option --dashboard"],
      [["--port", "0", "--host", "--dashboard"], "--host needs a value, got the option --dashboard"],
      [["--host", "--port", "0"], "--host needs a value, got the option --port"],
      [["--port", ""], '--port needs an integer from 0 to 65535, got ""'],
      [["--port", "0x1F90"], '--port needs an integer from 0 to 65535, got "0x1F90"'],
    ];
    for (const [args, message] of cases) {
      const [bin, argv] = runArgs(thisRuntime(), cli, ["serve", APP, ...args]);
      // (a bound only for the mistake this guards against: a node that starts serves until killed)
      const r = spawnSync(bin, argv, { encoding: "utf8", timeout: 60_000, killSignal: "SIGKILL" });
      assert.equal(r.status, 2, `${args.join(" ")}: ${r.stdout}${r.stderr}`);
      assert.ok(r.stderr.startsWith(`thinkagain: ${message}\nusage: thinkagain serve`), r.stderr);
      assert.equal(r.stdout, "", "no ready line");
    }
  },
);

test(
  "thinkagain serve: a module that does not build fails the start with each error's place and text, on Bun too",
  T,
  async () => {
    const { spawnSync } = await import("node:child_process");
    const { mkdtempSync, rmSync, writeFileSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const { runArgs } = await import("./adapters/_test_nodes.ts");
    const dir = mkdtempSync(join(tmpdir(), "thinkagain-bad-module-"));
    try {
      const bad = join(dir, "bad_app.ts");
      writeFileSync(bad, "export const = 5;\n");
      const cli = fileURLToPath(new URL("./cli.ts", import.meta.url));
      const [bin, argv] = runArgs(thisRuntime(), cli, ["serve", bad, "--port", "0"]);
      const r = spawnSync(bin, argv, { encoding: "utf8", timeout: 60_000, killSignal: "SIGKILL" });
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, /^thinkagain: cannot start node "node-0": /);
      // where (the "=" at line 1, column 14) and what: Bun's build messages, each with its place;
      // Deno writes the place into its SyntaxError
      assert.ok(r.stderr.includes(`${bad}:1:14`), r.stderr);
      assert.match(r.stderr, /Expected identifier but found "="|Unexpected token `=`/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

/** Whether this machine can listen on the IPv6 loopback (a container may have no IPv6). */
async function hasIpv6Loopback(): Promise<boolean> {
  const { createServer } = await import("node:net");
  return await new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(0, "::1", () => server.close(() => resolve(true)));
  });
}

test(
  "thinkagain serve --host ::1 prints its URLs with the address in brackets, and a mesh reaches it there",
  { ...T, skip: !(await hasIpv6Loopback()) && "no IPv6 loopback on this machine" },
  async () => {
    const n = await startNodeProcess(APP, ["--host", "::1", "--port", "0", "--name", "v6", "--dashboard"]);
    try {
      assert.equal(n.url, `http://[::1]:${n.port}`, n.output());
      assert.ok(await eventually(() => /dashboard on \S+/.test(n.output()), 30_000), n.output());
      const dashboard = /dashboard on (\S+)/.exec(n.output())![1];
      assert.match(dashboard, /^http:\/\/\[::1\]:\d+$/);
      const page = await fetch(dashboard);
      assert.equal(page.status, 200);
      await page.body?.cancel();
      await using mesh = new ta.Mesh([new ta.MeshNode("v6", { endpoint: `ws://[::1]:${n.port}` })]);
      assert.equal(await mesh.run(() => Solo.init().echo.go(7)), 7);
    } finally {
      n.kill();
      assert.equal(await n.cleanExit(), 0, n.output());
    }
  },
);

test(
  "over HTTP too, a node killed under in-flight calls fails them with NodeLostError or fails over to a live replica",
  T,
  async () => {
    const n1 = await startNodeProcess(APP, ["--port", "0", "--name", "n1"]);
    const n2 = await startNodeProcess(APP, ["--port", "0", "--name", "n2"]);
    try {
      await using mesh = new ta.Mesh([
        new ta.MeshNode("n1", { endpoint: n1.url }),
        new ta.MeshNode("n2", { endpoint: n2.url }),
      ], { transport: "http" });
      const retried = await mesh.run(async () => {
        const w = Worker.init();
        await Promise.all([w.work.go(0, -1), w.work.go(0, -2)]);
        const refs = Array.from({ length: 200 }, (_, i) => w.work.go(300, i));
        await sleep(100);
        n1.kill("SIGKILL");
        return await Promise.all(refs);
      });
      assert.deepEqual(retried, Array.from({ length: 200 }, (_, i) => i));
      await using mesh2 = new ta.Mesh([new ta.MeshNode("n2", { endpoint: n2.url })], { transport: "http" });
      const outcomes = await mesh2.run(async () => {
        const s = Solo.init();
        await s.echo.go(0);
        const refs = Array.from({ length: 200 }, (_, i) => s.work.go(5_000, i));
        // (an HTTP connection keeps at most MAX_EXCHANGES requests under way; the rest wait their turn)
        const running = Math.min(200, MAX_EXCHANGES);
        assert.ok(
          await eventually(async () => (await pong(n2.url)).activeCalls === running),
          `${running} calls on n2`,
        );
        n2.kill("SIGKILL");
        return await Promise.allSettled(refs);
      });
      for (const o of outcomes) {
        assert.equal(o.status, "rejected");
        const e = (o as PromiseRejectedResult).reason;
        assert.ok(e instanceof ta.NodeLostError, `expected NodeLostError, got ${e}`);
        assert.equal(e.node, "n2");
      }
    } finally {
      n1.kill("SIGKILL");
      n2.kill("SIGKILL");
    }
  },
);

test("a driver killed with SIGKILL: the node destroys its instances once its lease runs out", T, async () => {
  const node = await startNodeProcess(APP, ["--port", "0", "--name", "n1", "--lease-ms", "1000"]);
  const { spawn } = await import("node:child_process");
  const { runArgs } = await import("./adapters/_test_nodes.ts");
  const [bin, argv] = runArgs(
    thisRuntime(),
    fileURLToPath(new URL("./adapters/_test_lease_driver.ts", import.meta.url)),
    [node.url],
  );
  const driver = spawn(bin, argv, { stdio: ["ignore", "pipe", "inherit"] });
  try {
    let out = "";
    driver.stdout!.on("data", (d: Uint8Array) => (out += new TextDecoder().decode(d)));
    assert.ok(await eventually(() => out.includes("driver ready"), 30_000), "the driver created its instances");
    assert.equal((await pong(node.url)).instances, 2);
    // over two leases: the live driver's keepalives (every third of one) hold its instances; a lease of
    // 1 s, so that a driver starved for a moment on a busy machine is not taken for a dead one
    await sleep(2_500);
    assert.equal((await pong(node.url)).instances, 2);
    driver.kill("SIGKILL");
    assert.ok(await eventually(async () => (await pong(node.url)).instances === 0, 10_000), "gone with their driver");
    assert.equal((await pong(node.url)).expiredInstances, 2);
    assert.match(node.output(), /a driver sent no keepalive for 1000 ms; destroyed its 2 instances \(Solo\)/);
  } finally {
    driver.kill("SIGKILL");
    node.kill("SIGKILL");
  }
});

test(
  "thinkagain serve --token-file: the token comes from a file, never shows in the process list, and works",
  T,
  async () => {
    const { mkdtempSync, readFileSync, writeFileSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const { parseServeArgs } = await import("./cli_serve.ts");
    const dir = mkdtempSync(join(tmpdir(), "thinkagain-token-"));
    const file = join(dir, "token");
    writeFileSync(file, "f1le-t0ken\n");
    assert.equal(parseServeArgs(["app.ts", "--token-file", file], {}).token, "f1le-t0ken", "the newline is dropped");
    assert.equal(parseServeArgs(["app.ts", "--token-file", file], {}).tokenOnCommandLine, false);
    assert.throws(() => parseServeArgs(["app.ts", "--token-file", join(dir, "nope")], {}), /--token-file cannot read/);
    writeFileSync(join(dir, "empty"), "\n");
    assert.throws(() => parseServeArgs(["app.ts", "--token-file", join(dir, "empty")], {}), /holds no token/);
    assert.throws(() => parseServeArgs(["app.ts", "--token", "t", "--token-file", file], {}), /one of --token and/);
    const n = await startNodeProcess(APP, ["--port", "0", "--name", "filed", "--token-file", file]);
    try {
      for (const token of [undefined, "wrong"]) {
        await using mesh = new ta.Mesh([new ta.MeshNode("filed", { endpoint: n.url })], token ? { token } : {});
        assert.ok((await mesh.run(() => rejection(Solo.init().echo.go(1)))) instanceof ta.AuthError);
      }
      await using mesh = new ta.Mesh([new ta.MeshNode("filed", { endpoint: n.url })], { token: "f1le-t0ken" });
      assert.equal(await mesh.run(() => Solo.init().echo.go(7)), 7);
      if (process.platform === "linux") {
        const cmdline = readFileSync(`/proc/${n.proc.pid}/cmdline`, "utf8");
        assert.ok(
          cmdline.includes("--token-file") && !cmdline.includes("f1le-t0ken"),
          "ps shows the path, not the token",
        );
      }
    } finally {
      n.kill();
      await n.exited;
    }
    assert.ok(!n.output().includes("f1le-t0ken"));
    assert.doesNotMatch(n.output(), /without a token|process list/);
    // --token still works, and says what it costs
    const shown = await startNodeProcess(APP, ["--port", "0", "--name", "shown", "--token", "visible-t0ken"]);
    shown.kill();
    await shown.exited;
    assert.match(shown.output(), /given with --token, so every user of this machine can read it in the process list/);
  },
);

test("thinkagain --help and serve --help print the usage to stdout and exit 0", T, async () => {
  const { spawnSync } = await import("node:child_process");
  const { runArgs } = await import("./adapters/_test_nodes.ts");
  const cli = fileURLToPath(new URL("./cli.ts", import.meta.url));
  for (const args of [["--help"], ["-h"], ["serve", "--help"], ["serve", APP, "-h"]]) {
    const [bin, argv] = runArgs(thisRuntime(), cli, args);
    const r = spawnSync(bin, argv, { encoding: "utf8" });
    assert.equal(r.status, 0, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stdout, /^usage: thinkagain serve <module>/, args.join(" "));
    assert.equal(r.stderr, "", args.join(" "));
  }
  // no command at all is a mistake: the usage goes to stderr, exit 2
  const [bin, argv] = runArgs(thisRuntime(), cli, []);
  const r = spawnSync(bin, argv, { encoding: "utf8" });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /usage: thinkagain serve/);
});
