import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import * as ta from "../../mod.ts";
import { Mesh as CoreMesh } from "../../core/mesh.ts";
import { NodeServer } from "../node_server.ts";
import { PROTOCOL_VERSION } from "../protocol.ts";
import { connect } from "@nats-io/transport-node";
import { decodeAnnouncement, DISCOVER_SUBJECT, encodeAnnouncement } from "./announcement.ts";
import { discoverNodes } from "./discovery.ts";
import { startNatsNode } from "./node.ts";
import { natsMissing, type NatsServerProcess, startNatsServer } from "./_test_nats.ts";

test("Mesh.fromConfig: a discover entry is checked, and needs the package root's Mesh", async () => {
  await rejects(
    ta.Mesh.fromConfig({ discover: { nats: "nats://h:4222" }, nodes: [] }),
    /"nodes" or "discover", not both/,
  );
  await rejects(
    ta.Mesh.fromConfig({ discover: { nats: "nats://h:4222", timeout: 5 } as never }),
    /did you mean "timeoutMs"/,
  );
  await rejects(ta.Mesh.fromConfig({ discover: { url: "nats://h" } as never }), /"discover" needs \{ "nats"/);
  await rejects(CoreMesh.fromConfig({ discover: { nats: "nats://h:4222" } }), /needs the Mesh of the package root/);
  await rejects(ta.Mesh.fromConfig({ discover: { nats: "http://h:4222" } }), /expected a NATS URL/);
  await rejects(
    ta.Mesh.fromConfig({ discover: { nats: "nats://127.0.0.1:9", timeoutMs: 500 } }),
    (e: unknown) => e instanceof ta.TransportError && e.message.includes("nats://127.0.0.1:9"),
  );
  await rejects(
    ta.Mesh.discover({ nats: "nats://127.0.0.1:9", callTimeoutMs: -1 }),
    /Mesh\.discover: callTimeoutMs must be a positive number/,
  );
  // the config's timeoutMs is the mesh's call deadline, which reaches discover as its callTimeoutMs
  let asked: Record<string, unknown> | undefined;
  class Seen extends ta.Mesh {
    static override discover(o: ta.DiscoverOptions): Promise<ta.Mesh> {
      asked = { ...o };
      return Promise.resolve(new this([new ta.MeshNode("seen")]));
    }
  }
  const seen = await Seen.fromConfig({ timeoutMs: 4_000, discover: { nats: "nats://h:4222", timeoutMs: 100 } });
  strictEqual(asked?.timeoutMs, 100, "the discover entry's wait");
  strictEqual(asked?.callTimeoutMs, 4_000, "the mesh's call deadline");
  await seen.close();
});

test("decodeAnnouncement refuses malformed announcements and other protocol versions", () => {
  const good = {
    v: PROTOCOL_VERSION,
    node: "n1",
    endpoint: "nats://h:4222/n1",
    session: "s",
    gpus: 1,
    cpus: 4,
    services: ["A"],
    ops: ["b"],
  };
  deepStrictEqual(decodeAnnouncement(encodeAnnouncement(good)), good);
  for (
    const bad of [
      { ...good, v: PROTOCOL_VERSION - 1 },
      { ...good, node: "a.b" },
      { ...good, endpoint: "nats://h:4222/other" },
      { ...good, gpus: -1 },
      { ...good, services: [1] },
      { ...good, direct: "file:///etc/passwd" },
    ]
  ) strictEqual(decodeAnnouncement(encodeAnnouncement(bad as never)), undefined, JSON.stringify(bad));
});

describe("discovery on one NATS server", { skip: natsMissing() }, () => {
  let server: NatsServerProcess;
  before(async () => {
    server = await startNatsServer();
  });
  after(async () => {
    await server?.stop();
  });

  test("Mesh.discover with nobody there is a TypeError saying how to start a node", async () => {
    await rejects(ta.Mesh.discover({ nats: server.url, timeoutMs: 200 }), (e: unknown) => {
      ok(e instanceof TypeError && e.message.includes("no node answered") && e.message.includes("--nats"), String(e));
      return true;
    });
    await rejects(ta.Mesh.discover({ nats: server.url, timeoutMs: -1 }), RangeError);
  });

  test("Mesh.discover passes the mesh's token: calls with it work, a mesh without it is refused with AuthError", async () => {
    const Greeter = ta.service(
      { name: "NatsDiscoverGreeter" },
      class NatsDiscoverGreeter {
        hi(name: string): string {
          return `hi ${name}`;
        }
      },
    );
    const node = new NodeServer({ name: "tok", token: "s3cret-token" });
    const served = await startNatsNode(node.handler, { nats: server.url, name: "tok", token: "s3cret-token" });
    try {
      {
        await using mesh = await ta.Mesh.discover({ nats: server.url, nodes: 1, token: "s3cret-token" });
        strictEqual(await mesh.run(() => Greeter.init().hi.go("ann")), "hi ann");
      }
      await using open = await ta.Mesh.discover({ nats: server.url, nodes: 1 });
      await rejects(open.run(() => Greeter.init().hi.go("bob")), (e: unknown) => {
        ok(e instanceof ta.AuthError && !e.message.includes("s3cret"), String(e));
        return true;
      });
    } finally {
      await served.close();
      await node.drain();
    }
  });

  test("Mesh.discover: callTimeoutMs is the mesh's call deadline, timeoutMs how long to look", async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const Waits = ta.service(
      class NatsDiscoverDeadline {
        async wait() {
          await gate;
          return "late";
        }
      },
    );
    const node = new NodeServer({ name: "deadline" });
    const served = await startNatsNode(node.handler, { nats: server.url, name: "deadline" });
    try {
      await using mesh = await ta.Mesh.discover({ nats: server.url, nodes: 1, timeoutMs: 20_000, callTimeoutMs: 50 });
      strictEqual(mesh.options.timeoutMs, 50);
      await rejects(mesh.run(() => Waits.init().wait.go()), ta.TimeoutError);
    } finally {
      open();
      await served.close();
      await node.drain();
    }
  });

  test("discoverNodes lists what each node announced; a node that left no longer answers", async () => {
    const a = new NodeServer({ name: "da", gpus: 2, cpus: 3 });
    const na = await startNatsNode(a.handler, { nats: server.url, name: "da", direct: "http://127.0.0.1:1" });
    const b = new NodeServer({ name: "db" });
    const nb = await startNatsNode(b.handler, { nats: server.url, name: "db" });
    try {
      const found = await discoverNodes(server.url, { nodes: 2, timeoutMs: 30_000 });
      deepStrictEqual(found.map((x) => [x.node, x.gpus, x.cpus, x.endpoint, x.direct]), [
        ["da", 2, 3, `${server.url}/da`, "http://127.0.0.1:1"],
        ["db", 0, null, `${server.url}/db`, undefined],
      ]);
      // a node listening on every address announces the address its NATS server sees
      const c = new NodeServer({ name: "dc" });
      const nc = await startNatsNode(c.handler, { nats: server.url, name: "dc", direct: "http://0.0.0.0:7070" });
      strictEqual(nc.announcement.direct, "http://127.0.0.1:7070");
      await nc.close();
      await c.drain();
      await nb.leave();
      const after = await discoverNodes(server.url, { timeoutMs: 300 });
      deepStrictEqual(after.map((x) => x.node), ["da"]);
      // Mesh.fromConfig with a discover entry builds the same mesh as Mesh.discover
      await using mesh = await ta.Mesh.fromConfig({ name: "found", discover: { nats: server.url, nodes: 1 } });
      deepStrictEqual(mesh.nodes.map((n) => [n.name, n.endpoint, n.gpus.length, n.cpus]), [[
        "da",
        `${server.url}/da`,
        2,
        3,
      ]]);
      strictEqual(mesh.name, "found");
    } finally {
      await na.close();
      await nb.close();
      await a.drain();
      await b.drain();
    }
  });

  test("discovery asks again: a node that was not yet listening when the first question went out is found", async () => {
    // On a cluster, a node's subscription reaches the driver's server a while after the node has
    // announced; this stands in for it with a node that subscribes only once a first question passed.
    const spy = await connect({ servers: server.url });
    const late = await connect({ servers: server.url });
    try {
      let firstAsked!: () => void;
      const asked = new Promise<void>((r) => (firstAsked = r));
      spy.subscribe(DISCOVER_SUBJECT, { callback: () => firstAsked() });
      await spy.flush();
      const found = discoverNodes(server.url, { nodes: 1, timeoutMs: 60_000 });
      await asked;
      const announcement = {
        v: PROTOCOL_VERSION,
        node: "late",
        endpoint: `${server.url}/late`,
        session: "s1",
        gpus: 0,
        cpus: null,
        services: [],
        ops: [],
      };
      late.subscribe(DISCOVER_SUBJECT, { callback: (_e, m) => void m.respond(encodeAnnouncement(announcement)) });
      await late.flush();
      deepStrictEqual((await found).map((a) => a.node), ["late"]);
    } finally {
      await spy.close();
      await late.close();
    }
  });

  test("discoverNodes with a timeoutMs of 2^31 ms or more collects until the nodes it waits for answer", async () => {
    for (const timeoutMs of [2 ** 31, 1e10]) {
      const spy = await connect({ servers: server.url });
      const late = await connect({ servers: server.url });
      try {
        let firstAsked!: () => void;
        const asked = new Promise<void>((r) => (firstAsked = r));
        spy.subscribe(DISCOVER_SUBJECT, { callback: () => firstAsked() });
        await spy.flush();
        let settled = false;
        const found = discoverNodes(server.url, { nodes: 1, timeoutMs });
        found.then(() => (settled = true), () => (settled = true));
        await asked;
        // setTimeout takes 2^31 ms or more for 1 ms: such a timer has fired by now
        for (let i = 0; i < 3; i++) await new Promise((r) => setTimeout(r, 1));
        strictEqual(settled, false, `timeoutMs ${timeoutMs}: stopped collecting before any node answered`);
        const announcement = {
          v: PROTOCOL_VERSION,
          node: "patient",
          endpoint: `${server.url}/patient`,
          session: "s1",
          gpus: 0,
          cpus: null,
          services: [],
          ops: [],
        };
        late.subscribe(DISCOVER_SUBJECT, { callback: (_e, m) => void m.respond(encodeAnnouncement(announcement)) });
        await late.flush();
        deepStrictEqual((await found).map((a) => a.node), ["patient"], `timeoutMs ${timeoutMs}`);
      } finally {
        await spy.close();
        await late.close();
      }
    }
  });

  test("a node that says it leaves drains: its calls finish, nothing new goes there, it is gone once it stops serving", async () => {
    let open!: () => void;
    const held = new Promise<void>((r) => (open = r));
    const Draining = ta.service(
      { name: "NatsDrainingWhere", cpus: 1 },
      class NatsDrainingWhere {
        where(): string {
          return ta.currentInstance()!.node;
        }
        async hold(): Promise<string> {
          await held;
          return ta.currentInstance()!.node;
        }
      },
    );
    const a = new NodeServer({ name: "la", cpus: 1 }), b = new NodeServer({ name: "lb", cpus: 1 });
    const na = await startNatsNode(a.handler, { nats: server.url, name: "la" });
    const nb = await startNatsNode(b.handler, { nats: server.url, name: "lb" });
    try {
      await using mesh = await ta.Mesh.discover({ nats: server.url, nodes: 2, timeoutMs: 30_000, refreshMs: 100 });
      const onB = await mesh.run(async () => {
        const one = Draining.init(), two = Draining.init(); // one on each node (1 CPU each)
        const where = await Promise.all([one.where.go(), two.where.go()]);
        deepStrictEqual([...where].sort(), ["la", "lb"]);
        return where[0] === "lb" ? one : two;
      });
      const waiting = mesh.run(() => onB.hold.go());
      await eventually(() => b.activeCalls === 1, "the call reached lb");
      let settled = false;
      waiting.then(() => (settled = true), () => (settled = true));
      await nb.leave(); // what thinkagain serve does on SIGTERM, before it drains
      await eventually(() => !mesh.nodes.some((n) => n.name === "lb"), "lb is taken out of the mesh");
      deepStrictEqual(mesh.stats().instances.map((i) => i.node), ["la"], "lb's instance left the stats");
      ok(!settled, "the call on the draining node still runs");
      await rejects(mesh.run(() => Draining.init()), ta.PlacementError); // nothing new placed on lb
      open();
      strictEqual(await waiting, "lb", "the call sent before it left finished there");
      // it stops serving: gone for good, its handle's calls fail with NodeLostError saying so
      await nb.close();
      await eventually(async () => {
        const e = await mesh.run(() => onB.where.go()).then(() => undefined, (e: unknown) => e);
        return e instanceof ta.NodeLostError && /drained and left the NATS cluster/.test(e.message);
      }, "lb is gone for good");
    } finally {
      open();
      await na.close();
      await nb.close();
      await a.drain();
      await b.drain();
    }
  });
});

/** Polls `check` until it holds, at most `ms` (a generous bound, not a timing claim). */
async function eventually(check: () => boolean | Promise<boolean>, what: string, ms = 60_000): Promise<void> {
  const until = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > until) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test("thinkagain serve --nats: the URL and a name are checked", async () => {
  const { parseServeArgs } = await import("../../cli_serve.ts");
  const { throws } = await import("node:assert/strict");
  strictEqual(
    parseServeArgs(["app.ts", "--name", "n1", "--nats", "nats://h:4222,h2:4222"], {}).nats,
    "nats://h:4222,h2:4222",
  );
  strictEqual(parseServeArgs(["app.ts"], {}).nats, undefined);
  throws(
    () => parseServeArgs(["app.ts", "--name", "n1", "--nats", "http://h:4222"], {}),
    /--nats needs a NATS server's URL/,
  );
  throws(() => parseServeArgs(["app.ts", "--nats", "nats://h:4222"], {}), /--nats needs --name/);
});
