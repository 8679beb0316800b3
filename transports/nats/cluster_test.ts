// A 3-server NATS cluster on loopback, nodes on Bun and Deno started with `thinkagain serve --nats`,
// and a driver that finds them with Mesh.discover.
import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import * as ta from "../../mod.ts";
import { type NodeProcess, type Runtime, startNodeProcess } from "../../adapters/_test_nodes.ts";
import { natsMissing, type NatsServerProcess, startNatsCluster } from "./_test_nats.ts";
import {
  NatsBig,
  NatsGenerator,
  NatsRetriever,
  NatsSolo,
  NatsTensor,
  natsWhere,
  NatsWorker,
  ragPipeline,
} from "./_test_nats_app.ts";

const APP = fileURLToPath(new URL("./_test_nats_app.ts", import.meta.url));
const missing = natsMissing();

/** Polls `check` until it holds, at most `ms` (a generous bound, not a timing claim). */
async function eventually(check: () => boolean | Promise<boolean>, what: string, ms = 60_000): Promise<void> {
  const until = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > until) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("NATS cluster: discovery, placement, fail-over", { skip: missing, timeout: 300_000 }, () => {
  let servers: NatsServerProcess[] = [];
  const nodes = new Map<string, NodeProcess>();
  const startNode = async (name: string, runtime: Runtime, server: NatsServerProcess, gpus = 1) => {
    const p = await startNodeProcess(
      APP,
      ["--port", "0", "--name", name, "--gpus", String(gpus), "--nats", server.url],
      {
        runtime,
      },
    );
    await eventually(() => p.output().includes(`announced on NATS as ${server.url}/${name}`), `${name} announced`);
    nodes.set(name, p);
    return p;
  };

  before(async () => {
    servers = await startNatsCluster(3);
    await Promise.all([
      startNode("n1", "bun", servers[0]),
      startNode("n2", "deno", servers[1]),
      startNode("n3", "bun", servers[2]),
    ]);
  });
  after(async () => {
    for (const p of nodes.values()) p.kill("SIGKILL");
    await Promise.all([...nodes.values()].map((p) => p.exited));
    await Promise.all(servers.map((s) => s.kill()));
  });

  test("Mesh.discover finds the 3 nodes; the RAG pipeline gives the in-process result; replicas spread", {
    timeout: 120_000,
  }, async () => {
    const query = "What does NATS carry for a mesh of nodes?";
    // in process: the same pipeline on a mesh of local nodes
    let expected: string;
    {
      await using local = new ta.Mesh([new ta.MeshNode("l1", { gpus: 1 }), new ta.MeshNode("l2", { gpus: 1 })]);
      expected = await local.run(() => ragPipeline(NatsRetriever.init(), NatsGenerator.init(), query));
    }
    // the driver talks to the cluster through the first server only; nodes sit on all three
    await using mesh = await ta.Mesh.discover({ nats: servers[0].url, nodes: 3, timeoutMs: 30_000 });
    deepStrictEqual(mesh.nodes.map((n) => n.name), ["n1", "n2", "n3"]);
    ok(mesh.nodes.every((n) => n.endpoint === `${servers[0].url}/${n.name}`));
    deepStrictEqual(mesh.nodes.map((n) => n.gpus.length), [1, 1, 1]);
    const got = await mesh.run(() => ragPipeline(NatsRetriever.init(), NatsGenerator.init(), query));
    strictEqual(got, expected);
    const workers = await mesh.run(async () => {
      const w = NatsWorker.init();
      return await Promise.all(Array.from({ length: 30 }, (_, i) => w.work.go(1, i)));
    });
    deepStrictEqual(workers.map((r) => r.i), Array.from({ length: 30 }, (_, i) => i));
    deepStrictEqual(
      new Set(mesh.stats().instances.filter((i) => i.service === "NatsWorker").map((i) => i.node)),
      new Set(["n1", "n2", "n3"]),
    );
    deepStrictEqual(new Set(workers.map((r) => r.node)), new Set(["n1", "n2", "n3"]), "calls reach every replica");
    // 4 MiB each way, over NATS servers whose max_payload is 1 MB: sent and fetched over direct links
    const x = new Float32Array(1024 * 1024).map((_, i) => i);
    const y = await mesh.run(() => NatsTensor.init().double.go(x));
    ok(
      y instanceof Float32Array && y.length === x.length && y[12345] === 24690 &&
        y[x.length - 1] === 2 * (x.length - 1),
    );
  });

  test(
    "a remote op registered on every node is served through its NATS queue group",
    { timeout: 120_000 },
    async () => {
      await using mesh = await ta.Mesh.discover({ nats: servers[0].url, nodes: 3, timeoutMs: 30_000 });
      const where = await mesh.run(() => Promise.all(Array.from({ length: 60 }, () => natsWhere.go(5))));
      const ran = new Set(where);
      ok(ran.size >= 2 && [...ran].every((n) => ["n1", "n2", "n3"].includes(n)), `ran on ${[...ran]}`);
    },
  );

  test("SIGKILL of one nats-server: calls go on through the others, none hangs", { timeout: 120_000 }, async () => {
    await using mesh = await ta.Mesh.discover({
      nats: `${servers[0].url},${servers[2].url}`,
      nodes: 3,
      timeoutMs: 30_000,
    });
    await mesh.run(async () => {
      const w = NatsWorker.init();
      await Promise.all(Array.from({ length: 9 }, (_, i) => w.work.go(1, i))); // placed, reachable
      // calls in flight while n2's server dies: each settles (done, or failed over by retries)
      const during = Array.from({ length: 60 }, (_, i) => w.work.go(20, i));
      await servers[1].kill();
      const settled = await Promise.allSettled(during);
      for (const s of settled) {
        if (s.status === "rejected") {
          ok(s.reason instanceof ta.NodeLostError || s.reason instanceof ta.TransportError, String(s.reason));
        }
      }
      // after it: every call succeeds, n2 included once its client reconnected to another server
      await eventually(async () => {
        const r = await Promise.all(Array.from({ length: 12 }, (_, i) => w.work.go(1, i)));
        return new Set(r.map((x) => x.node)).size === 3;
      }, "calls reach all three nodes again");
    });
  });

  test(
    "a killed node: its calls fail with NodeLostError or fail over, nothing hangs",
    { timeout: 120_000 },
    async () => {
      await using mesh = await ta.Mesh.discover({ nats: servers[0].url, nodes: 3, timeoutMs: 30_000, refreshMs: 300 });
      await mesh.run(async () => {
        const w = NatsWorker.init();
        const solos = [NatsSolo.init(), NatsSolo.init(), NatsSolo.init()];
        const where = await Promise.all(solos.map((s) => s.where.go()));
        ok(where.includes("n3"), `a solo on n3: ${where}`);
        const onN3 = solos[where.indexOf("n3")];
        const held = onN3.hold.go(60_000);
        const work = Array.from({ length: 30 }, (_, i) => w.work.go(50, i));
        await eventually(() => held.status === "running", "the held call runs");
        nodes.get("n3")!.kill("SIGKILL");
        await nodes.get("n3")!.exited;
        nodes.delete("n3");
        const lost = await Promise.allSettled([held]);
        ok(
          lost[0].status === "rejected" && lost[0].reason instanceof ta.NodeLostError,
          String((lost[0] as PromiseRejectedResult).reason),
        );
        const done = await Promise.all(work); // retried on the other replicas
        deepStrictEqual(done.map((r) => r.i), Array.from({ length: 30 }, (_, i) => i));
        // it could not say it leaves: discovery's rounds find it gone and the mesh drops it
        await eventually(() => !mesh.nodes.some((n) => n.name === "n3"), "the killed node leaves the mesh");
        deepStrictEqual(mesh.nodes.map((n) => n.name), ["n1", "n2"]);
      });
    },
  );

  test("a node that joins later is discovered and placed on; one that leaves drains, then is gone", {
    timeout: 120_000,
    skip: typeof (ta.Mesh.prototype as { addNode?: unknown }).addNode !== "function" &&
      "the mesh takes no nodes after it is built (no Mesh.addNode)",
  }, async () => {
    await using mesh = await ta.Mesh.discover({ nats: servers[0].url, nodes: 2, timeoutMs: 30_000 });
    ok(!mesh.nodes.some((n) => n.name === "n4"));
    await startNode("n4", "deno", servers[2], 2); // on another server than the driver's
    await eventually(() => mesh.nodes.some((n) => n.name === "n4"), "n4 joins the mesh");
    const big = await mesh.run(() => NatsBig.init());
    strictEqual(await big.hold.go(1), "n4", "the new node takes what fits only there");
    // held well past the time n4 takes to say it leaves, and well within its drain (30 s)
    const held = big.hold.go(5_000);
    await eventually(() => held.status === "running", "the held call runs");
    nodes.get("n4")!.kill("SIGTERM"); // it announces it leaves, then drains
    await eventually(() => !mesh.nodes.some((n) => n.name === "n4"), "n4 leaves the mesh");
    ok(!mesh.stats().instances.some((i) => i.node === "n4"), "n4's instance left the stats");
    await rejects(mesh.run(() => NatsBig.init()), ta.PlacementError); // nothing new is placed there
    strictEqual(await held, "n4", "the call it had when it left finished");
    await nodes.get("n4")!.exited;
    // gone: later calls of its handle fail with NodeLostError saying it drained and left
    await eventually(async () => {
      const e = await big.hold.go(1).then(() => undefined, (e: unknown) => e);
      return e instanceof ta.NodeLostError && /drained and left the NATS cluster/.test(e.message);
    }, "n4 is gone for good");
    nodes.delete("n4");
  });
});
