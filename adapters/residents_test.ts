// Resident instances with real processes: `thinkagain serve --start` nodes on 127.0.0.1, driver
// processes on Bun and Deno, SIGKILL. The protocol-level tests are in transports/residents_test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import http from "node:http";
import { fileURLToPath } from "node:url";
import * as ta from "../mod.ts";
import { eventually } from "../core/_test_utils.ts";
import { parseServeArgs } from "../cli_serve.ts";
import process from "node:process";
import { type NodeProcess, runArgs, type Runtime, startNodeProcess, thisRuntime } from "./_test_nodes.ts";
import { ResidentModel, Restartable } from "./_test_resident_app.ts";
import { decode, errorFromWire } from "../core/codec.ts";
import {
  decodeReply,
  encodeMessage,
  PROTOCOL_VERSION,
  type ResultMessage,
  type WelcomeMessage,
} from "../transports/protocol.ts";

const APP = fileURLToPath(new URL("./_test_resident_app.ts", import.meta.url));
const DRIVER = fileURLToPath(new URL("./_test_resident_driver.ts", import.meta.url));
const T = { timeout: 180_000 };

interface Driver {
  readonly proc: ChildProcess;
  output(): string;
  answers(): number;
}

function startDriver(runtime: Runtime, url: string, label: string): Driver {
  const [bin, argv] = runArgs(runtime, DRIVER, [url, label]);
  const proc = spawn(bin, argv, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  proc.stdout!.on("data", (d: Uint8Array) => (out += new TextDecoder().decode(d)));
  proc.stderr!.on("data", (d: Uint8Array) => (out += new TextDecoder().decode(d)));
  return {
    proc,
    output: () => out,
    answers: () => out.split("\n").filter((l) => l.startsWith(`answer ${label} `)).length,
  };
}

async function stopNode(node: NodeProcess): Promise<void> {
  node.kill("SIGTERM");
  assert.equal(await node.cleanExit(), 0, node.output());
}

test(
  "thinkagain serve --start: three drivers (Bun, Deno, Bun) share one resident instance; a SIGKILLed driver leaves it serving the others; its constructor ran once",
  T,
  async () => {
    // a lease far shorter than the test: resident instances have none, so nothing expires
    const node = await startNodeProcess(APP, [
      "--port",
      "0",
      "--name",
      "n1",
      "--start",
      "ResidentModel",
      "--lease-ms",
      "300",
    ]);
    const drivers: Driver[] = [];
    try {
      const ws = node.url.replace("http://", "ws://");
      drivers.push(startDriver("bun", ws, "a"), startDriver("deno", ws, "b"), startDriver("bun", ws, "c"));
      assert.ok(
        await eventually(() => drivers.every((d) => d.answers() >= 5), 90_000),
        `every driver gets answers:\n${drivers.map((d) => d.output().slice(-400)).join("\n---\n")}`,
      );
      drivers[1].proc.kill("SIGKILL"); // mid-flight: it keeps 4 calls in flight at all times
      const [a, c] = [drivers[0].answers(), drivers[2].answers()];
      assert.ok(
        await eventually(() => drivers[0].answers() >= a + 20 && drivers[2].answers() >= c + 20, 60_000),
        "the others keep getting answers",
      );
      for (const d of [drivers[0], drivers[2]]) {
        assert.doesNotMatch(d.output(), /^(wrong|error) /m, d.output().slice(-400));
      }
      await using mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: node.url })]);
      const model = await mesh.connect(ResidentModel);
      assert.equal(await mesh.run(() => model.constructions()), 1, "one instance for every driver");
      await mesh.close(); // a driver closing its mesh leaves the instance too
      await using again = new ta.Mesh([new ta.MeshNode("n1", { endpoint: node.url })]);
      assert.equal(await again.run(async () => (await ResidentModel.connect()).generate("x")), "x -> ok");
    } finally {
      for (const d of drivers) d.proc.kill("SIGKILL");
    }
    await stopNode(node);
    assert.match(node.output(), /ResidentModel disposed after \d+ calls/, "SIGTERM drains it and runs its dispose");
  },
);

test(
  "thinkagain serve --start: a constructor that throws exits 1 with the error and prints no ready line",
  T,
  async () => {
    const e = await startNodeProcess(APP, ["--port", "0", "--name", "bad", "--start", "BrokenModel"]).then(
      (n) => {
        n.kill("SIGKILL");
        return new Error("the node started");
      },
      (e: Error) => e,
    );
    assert.match(e.message, /^node exited with 1 before it was ready/);
    assert.match(
      e.message,
      /cannot start node "bad": Cannot start resident service "BrokenModel" \(replica 0\) on node "bad": its constructor threw: weights not found at \/models\/broken\.bin/,
    );
    assert.doesNotMatch(e.message, /listening on/);
    const unknown = await startNodeProcess(APP, ["--port", "0", "--name", "u", "--start", "NoSuchModel"]).then(
      () => new Error("the node started"),
      (e: Error) => e,
    );
    assert.match(unknown.message, /Cannot start resident service "NoSuchModel" on node "u": the module registered/);
  },
);

test(
  "thinkagain serve --start: /healthz says loading until the model's ready promise settles, and the ready line waits for it",
  T,
  async () => {
    const { mkdtempSync, writeFileSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const { createServer } = await import("node:net");
    const gate = join(mkdtempSync(join(tmpdir(), "thinkagain-gate-")), "loaded");
    const port = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, "127.0.0.1", () => {
        const p = (probe.address() as { port: number }).port;
        probe.close(() => resolve(p));
      });
    });
    const cli = fileURLToPath(new URL("../cli.ts", import.meta.url));
    const [bin, argv] = runArgs(thisRuntime(), cli, [
      "serve",
      APP,
      "--port",
      String(port),
      "--name",
      "gated",
      "--start",
      "GatedModel",
    ]);
    const proc = spawn(bin, argv, {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, THINKAGAIN_TEST_GATE: gate },
    });
    let out = "";
    proc.stdout!.on("data", (d: Uint8Array) => (out += new TextDecoder().decode(d)));
    proc.stderr!.on("data", (d: Uint8Array) => (out += new TextDecoder().decode(d)));
    const health = async () => {
      try {
        const r = await fetch(`http://127.0.0.1:${port}/healthz`);
        return `${r.status} ${(await r.json()).status}`;
      } catch {
        return "unreachable";
      }
    };
    try {
      assert.ok(await eventually(async () => (await health()) === "503 loading", 60_000), `loading first:\n${out}`);
      assert.doesNotMatch(out, /listening on/, "no ready line while the model loads");
      writeFileSync(gate, "");
      assert.ok(await eventually(() => /listening on/.test(out), 60_000), "ready once loaded");
      assert.equal(await health(), "200 ready");
    } finally {
      proc.kill("SIGKILL");
    }
  },
);

test(
  "A connected handle reaches the resident instance of a node restarted on the same port (its id is stable)",
  T,
  async () => {
    const first = await startNodeProcess(APP, ["--port", "0", "--name", "n1", "--start", "ResidentModel"]);
    const ws = first.url.replace("http://", "ws://");
    let second: NodeProcess | undefined;
    try {
      await using mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: ws })]);
      const model = await mesh.connect(ResidentModel);
      assert.equal(await mesh.run(() => model.generate("before")), "before -> ok");
      first.kill("SIGKILL");
      await first.exited;
      second = await startNodeProcess(APP, ["--port", String(first.port), "--name", "n1", "--start", "ResidentModel"]);
      // the call that finds the old connection gone may fail with NodeLostError; the next one reconnects
      assert.ok(
        await eventually(
          async () => (await mesh.run(() => model.generate("after")).catch(() => "")) === "after -> ok",
          30_000,
        ),
        "the same handle reaches the new process's instance",
      );
      assert.equal(await mesh.run(() => model.constructions()), 1, "a fresh instance (its state starts over)");
    } finally {
      first.kill("SIGKILL");
      second?.kill("SIGKILL");
    }
  },
);

test(
  "Mesh.fromDns: a connected handle reaches the resident instance of a pod that restarted (removed, then added back)",
  T,
  async () => {
    // the cluster's DNS as the test sets it: the pod's address while it is ready
    let ips: string[] = [];
    const resolver = { resolve4: () => Promise.resolve([...ips]), resolveSrv: () => Promise.resolve([]) };
    const env = { THINKAGAIN_TOKEN: "residents-dns-token" };
    const pod = (port: number) =>
      startNodeProcess(APP, [
        "--host",
        "127.0.0.2",
        "--port",
        String(port),
        "--name",
        "pod-0",
        "--start",
        "ResidentModel",
      ], {
        env,
      });
    const first = await pod(0);
    let second: NodeProcess | undefined;
    try {
      ips = ["127.0.0.2"];
      await using mesh = await ta.Mesh.fromDns("residents.test", {
        port: first.port,
        token: env.THINKAGAIN_TOKEN,
        intervalMs: 50,
        resolver,
      });
      const model = await mesh.connect(ResidentModel);
      assert.equal(await mesh.run(() => model.generate("before")), "before -> ok");
      first.kill("SIGKILL");
      await first.exited;
      ips = []; // not ready: out of the records
      assert.ok(await eventually(() => mesh.nodes.length === 0, 30_000), "the mesh removed the pod");
      second = await pod(first.port);
      ips = ["127.0.0.2"];
      assert.ok(await eventually(() => mesh.nodes.some((n) => n.name === "pod-0"), 30_000), "the pod was added back");
      assert.equal(await mesh.run(() => model.generate("after")), "after -> ok", "the same handle reaches it");
      assert.equal(
        await mesh.run(() => model.constructions()),
        1,
        "the new process's instance (its state starts over)",
      );
    } finally {
      first.kill("SIGKILL");
      second?.kill("SIGKILL");
    }
  },
);

test("thinkagain serve --start parses SERVICE and SERVICE:N, repeatable, and refuses a bad count", () => {
  assert.deepEqual(parseServeArgs(["app.ts", "--start", "Gen", "--start=Emb:2"], {}).start, [
    { service: "Gen", replicas: 1 },
    { service: "Emb", replicas: 2 },
  ]);
  for (const bad of ["Gen:0", "Gen:x", "", "Gen:5000"]) {
    assert.throws(
      () => parseServeArgs(["app.ts", "--start", bad], {}),
      /--start needs a service name and an optional count/,
    );
  }
});

test(
  "Resident instance: one driver flooding it does not starve another (calls from each connection take turns)",
  T,
  async () => {
    const node = await startNodeProcess(APP, ["--port", "0", "--name", "n1", "--start", "ResidentModel"]);
    try {
      const ws = node.url.replace("http://", "ws://"); // pipelined: A keeps 1,024 calls in flight
      await using meshA = new ta.Mesh([new ta.MeshNode("n1", { endpoint: ws })]);
      await using meshB = new ta.Mesh([new ta.MeshNode("n1", { endpoint: ws })]);
      const a = await meshA.connect(ResidentModel);
      const b = await meshB.connect(ResidentModel);
      assert.equal(await meshB.run(() => b.step("warm", 0)), "warm");
      let aDone = 0;
      // A floods: 3,000 calls of ~1 ms of the node's CPU each, 1,024 of them in flight at a time
      const flood = meshA.run(() =>
        Promise.all(Array.from({ length: 3000 }, (_, i) => a.step.go(`a${i}`, 1000).then(() => aDone++)))
      );
      assert.ok(await eventually(() => aDone >= 50, 60_000), "the flood is under way");
      const bStart = aDone;
      await meshB.run(() => Promise.all(Array.from({ length: 20 }, (_, i) => b.step.go(`b${i}`, 1000))));
      const during = aDone - bStart;
      // served in turns, B's 20 calls wait behind about 20 of A's; first come, first served they would
      // wait behind the ~1,000 of A's already queued on the node
      assert.ok(during < 500, `B's 20 calls completed while ${during} of A's did (A had ~1,000 queued)`);
      await flood;
    } finally {
      await stopNode(node);
    }
  },
);

for (const runtime of ["bun", "deno"] as const) {
  test(
    `Resident instance on a ${runtime} node: an HTTP caller flooding POST /rpc does not starve an HTTP driver (each caller takes its turn)`,
    T,
    async () => {
      const node = await startNodeProcess(APP, ["--port", "0", "--name", "n1", "--start", "ResidentModel"], {
        runtime,
      });
      try {
        const post = async (message: unknown, caller: string) => {
          const res = await fetch(`${node.url}/rpc`, {
            method: "POST",
            body: encodeMessage(message) as Uint8Array<ArrayBuffer>,
            headers: { "content-type": "application/cbor", "x-thinkagain-caller": caller },
          });
          const body = new Uint8Array(await res.arrayBuffer());
          if (res.headers.get("x-thinkagain-error") === "1") throw errorFromWire(decode(body));
          return body;
        };
        const welcome = decodeReply<WelcomeMessage>(
          await post({ t: "hello", v: PROTOCOL_VERSION }, "flood"),
          "welcome",
        );
        const id = welcome.residents!.find((r) => r.service === "ResidentModel")!.id;
        await using meshB = new ta.Mesh([new ta.MeshNode("n1", { endpoint: node.url })], { transport: "http" });
        const b = await meshB.connect(ResidentModel);
        assert.equal(await meshB.run(() => b.step("warm", 0)), "warm");
        // A floods: 3,000 calls of ~1 ms of the node's CPU each, 64 requests in flight at a time (fewer than the fetch pool of this process, which B shares)
        let aDone = 0;
        let next = 0;
        const worker = async () => {
          while (next < 3000) {
            const i = next++;
            const reply = await post({ t: "call", cid: `a${i}`, id, method: "step", args: [`a${i}`, 1000] }, "flood");
            assert.deepEqual(decodeReply<ResultMessage>(reply, "result"), { t: "result", ok: true, value: `a${i}` });
            aDone++;
          }
        };
        const flood = Promise.all(Array.from({ length: 64 }, worker));
        assert.ok(await eventually(() => aDone >= 50, 60_000), "the flood is under way");
        const bStart = aDone;
        // B's calls go one at a time (HTTP is not pipelined)
        for (let i = 0; i < 20; i++) assert.equal(await meshB.run(() => b.step(`b${i}`, 1000)), `b${i}`);
        const during = aDone - bStart;
        // in turns, each of B's calls waits behind about one of A's; in one queue for every HTTP caller
        // it would wait behind the ~60 of A's queued on the node
        assert.ok(during < 500, `B's 20 calls completed while ${during} of A's did (A had ~60 queued)`);
        await flood;
      } finally {
        await stopNode(node);
      }
    },
  );
}
/** POSTs `message` to `url`'s /rpc from the local address `from`, naming no caller, over `agent`'s connections. */
function postFrom(url: string, from: string, agent: http.Agent, message: unknown): Promise<Uint8Array> {
  const body = encodeMessage(message);
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}/rpc`, {
      method: "POST",
      agent,
      localAddress: from,
      headers: { "content-type": "application/cbor", "content-length": String(body.byteLength) },
    }, (res) => {
      const parts: Uint8Array[] = [];
      res.on("data", (d: Uint8Array) => parts.push(d));
      res.on("end", () => {
        const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
        let at = 0;
        for (const p of parts) out.set(p, (at += p.byteLength) - p.byteLength);
        if (res.headers["x-thinkagain-error"] === "1") reject(errorFromWire(decode(out)));
        else resolve(out);
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

test(
  "Resident instance on a bun node: an HTTP client naming no caller, flooding POST /rpc from one address, does not starve another from another address (each address takes its turn)",
  T,
  async () => {
    const node = await startNodeProcess(APP, ["--port", "0", "--name", "n1", "--start", "ResidentModel"], {
      runtime: "bun",
    });
    const agentA = new http.Agent({ keepAlive: true }), agentB = new http.Agent({ keepAlive: true });
    try {
      // two clients on two loopback addresses, neither sending x-thinkagain-caller
      const call = (from: string, agent: http.Agent, message: unknown) => postFrom(node.url, from, agent, message);
      const welcome = decodeReply<WelcomeMessage>(
        await call("127.0.0.2", agentA, { t: "hello", v: PROTOCOL_VERSION }),
        "welcome",
      );
      const id = welcome.residents!.find((r) => r.service === "ResidentModel")!.id;
      const step = async (from: string, agent: http.Agent, tag: string) => {
        const reply = await call(from, agent, { t: "call", cid: tag, id, method: "step", args: [tag, 1000] });
        assert.deepEqual(decodeReply<ResultMessage>(reply, "result"), { t: "result", ok: true, value: tag });
      };
      await step("127.0.0.3", agentB, "warm");
      // A floods from 127.0.0.2: 3,000 calls of ~1 ms of the node's CPU each, 64 requests in flight
      let aDone = 0;
      let next = 0;
      const worker = async () => {
        while (next < 3000) {
          await step("127.0.0.2", agentA, `a${next++}`);
          aDone++;
        }
      };
      const flood = Promise.all(Array.from({ length: 64 }, worker));
      flood.catch(() => {}); // (awaited below: a failed assertion first ends its requests)
      assert.ok(await eventually(() => aDone >= 50, 60_000), "the flood is under way");
      const bStart = aDone;
      for (let i = 0; i < 20; i++) await step("127.0.0.3", agentB, `b${i}`);
      const during = aDone - bStart;
      // in turns, each of B's calls waits behind about one of A's; in the one queue of every unnamed
      // HTTP caller it would wait behind the ~60 of A's queued on the node
      assert.ok(during < 500, `B's 20 calls completed while ${during} of A's did (A had ~60 queued)`);
      await flood;
    } finally {
      agentA.destroy();
      agentB.destroy();
      await stopNode(node);
    }
  },
);

test(
  "service restarts: 1, its node SIGKILLed: the next call lands on a re-created instance on the other node",
  T,
  async () => {
    const nodes = await Promise.all(["n1", "n2"].map((name) => startNodeProcess(APP, ["--port", "0", "--name", name])));
    try {
      await using mesh = new ta.Mesh(nodes.map((n, i) => new ta.MeshNode(`n${i + 1}`, { endpoint: n.url })));
      await mesh.run(async () => {
        const r = Restartable.init("r1");
        const first = await r.where();
        assert.equal((await r.where()).n, 2);
        const home = first.node === "n1" ? 0 : 1;
        nodes[home].kill("SIGKILL");
        await nodes[home].exited;
        const next = await r.where();
        assert.deepEqual(next, { node: home === 0 ? "n2" : "n1", n: 1, label: "r1" }, "made again, its state lost");
        assert.equal((await r.where()).n, 2);
      });
    } finally {
      for (const n of nodes) n.kill("SIGKILL");
    }
  },
);
