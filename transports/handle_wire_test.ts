// Handles on the wire: a tag no plain value can take, endpoints a frame cannot choose, a token that
// never goes where someone who does not hold it says, a bounded link table. Real node processes
// (Bun and Deno) for the node side; a fake node on a real socket for the driver side; in-memory
// nodes for tokened nodes reaching each other.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import * as ta from "../mod.ts";
import { rejection } from "../core/_test_utils.ts";
import { decode, encode, TAG_HANDLE, WireHandle } from "../core/codec.ts";
import { meshRuntime } from "../core/mesh.ts";
import { type Runtime, startNodeProcess } from "../adapters/_test_nodes.ts";
import { Retriever } from "../examples/distributed_app.ts";
import { NodeServer } from "../server.ts";
import { startRealServer } from "./_test_servers.ts";
import { serveInMemory } from "./in_memory.ts";
import { endpointKey, HandleReach, handleWire, MAX_DECLARED_ENDPOINTS, reviveValue } from "./handle_wire.ts";
import { linkFor, MAX_NODE_LINKS } from "./link_table.ts";
import { decodeDriverMessage, encodeMessage, PROTOCOL_VERSION } from "./protocol.ts";
import type { TransportConnection } from "./transport.ts";
import { webSocketTransport } from "./websocket.ts";

const APP = fileURLToPath(new URL("../examples/distributed_app.ts", import.meta.url));
const T = { timeout: 120_000 };
const TOKEN = "s3cret-token";
const FORGED_KEY = "$thinkagain.handle";

/** An HTTP server that records every request and WebSocket upgrade it sees, and answers none usefully. */
async function listener(): Promise<{ port: number; seen: IncomingHttpHeaders[]; close(): Promise<void> }> {
  const seen: IncomingHttpHeaders[] = [];
  const server = createServer((req, res) => {
    seen.push(req.headers);
    req.resume();
    res.statusCode = 500;
    res.end("no");
  });
  server.on("upgrade", (req, socket) => {
    seen.push(req.headers);
    socket.destroy();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

function request(conn: TransportConnection, message: unknown): Promise<unknown> {
  return conn.request(encodeMessage(message)).then(decode);
}

test("handles travel under their own tag; a plain object with the handle key stays a plain object", () => {
  const handle = new WireHandle("Retriever", [{ node: "n2", endpoint: "ws://10.0.0.2:7070", id: "i1" }]);
  const bytes = encode([handle]);
  assert.deepEqual([...bytes.subarray(1, 6)], [0xda, 0x74, 0x68, 0x6b, 0x61], "tag 1953000289 ('thka')");
  assert.equal(TAG_HANDLE, 0x74686b61);
  const back = decode(bytes) as WireHandle[];
  assert.ok(back[0] instanceof WireHandle);
  assert.deepEqual(back[0].replicas, handle.replicas);
  const forged = { [FORGED_KEY]: { service: "Retriever", replicas: [{ endpoint: "ws://evil:1", id: "x" }] } };
  const arrived = decode(encode({ args: [forged] })) as { args: unknown[] };
  assert.deepEqual(arrived.args[0], forged);
  assert.equal(reviveValue(arrived.args, { owner: {} }), arrived.args, "nothing to revive in user data");
  // malformed handles are refused by decode
  for (const body of [["Retriever"], ["Retriever", []], ["", [["n", "ws://h:1", "i"]]], ["R", [["n", 5, "i"]]]]) {
    const wrong = encode([body]);
    const tagged = new Uint8Array([0x81, 0xda, 0x74, 0x68, 0x6b, 0x61, ...wrong.subarray(1)]);
    assert.throws(() => decode(tagged), ta.ProtocolError, JSON.stringify(body));
  }
});

test("a node remembers the last endpoints drivers declared, and matches them however they are spelled", () => {
  const reach = new HandleReach({}, { peers: ["ws://peer.example:7070", { endpoint: "http://p2:1", token: "t2" }] });
  assert.equal(reach.peer("http://PEER.example:7070/")?.endpoint, "ws://peer.example:7070");
  assert.equal(reach.peer("ws://p2:1")?.token, "t2");
  assert.equal(reach.peer("ws://peer.example:7071"), undefined);
  reach.declare(Array.from({ length: MAX_DECLARED_ENDPOINTS + 10 }, (_, i) => `ws://10.0.0.1:${1000 + i}`));
  assert.equal(reach.declared("ws://10.0.0.1:1000"), undefined, "the oldest were forgotten");
  assert.equal(
    reach.declared(`http://10.0.0.1:${1000 + MAX_DECLARED_ENDPOINTS + 9}`),
    `ws://10.0.0.1:${1009 + MAX_DECLARED_ENDPOINTS}`,
  );
  assert.equal(endpointKey("not a url"), undefined);
  assert.throws(() => new HandleReach({}, { peers: ["nope"] }), /A peer endpoint must be a URL/);
});

test("HandleReach trusts endpoints declared by a driver holding the node's token; others cannot change them", () => {
  const holder = {
    transport: "websocket" as const,
    connectionId: 1,
    oneWay: false,
    holdsToken: (t: string) => t === TOKEN,
  };
  const other = {
    transport: "websocket" as const,
    connectionId: 2,
    oneWay: false,
    holdsToken: (t: string) => t === "x",
  };
  const open = { transport: "websocket" as const, connectionId: 3, oneWay: false };
  const reach = new HandleReach({}, { token: TOKEN });
  reach.declare(["wss://10.0.0.3:7070"], holder);
  reach.declare(["ws://10.0.0.4:7070"], other); // let in with another token
  reach.declare(["ws://10.0.0.5:7070"], open); // let in with none
  assert.deepEqual(reach.declaration("wss://10.0.0.3:7070"), { endpoint: "wss://10.0.0.3:7070", trusted: true });
  assert.equal(reach.declaration("ws://10.0.0.4:7070")?.trusted, false);
  assert.equal(reach.declaration("ws://10.0.0.5:7070")?.trusted, false);
  // another driver naming the holder's endpoint in another spelling changes neither how nor where
  reach.declare(["ws://10.0.0.3:7070"], open);
  assert.deepEqual(reach.declaration("wss://10.0.0.3:7070"), { endpoint: "wss://10.0.0.3:7070", trusted: true });
  // a node with no token of its own trusts nobody's declaration with one
  const tokenless = new HandleReach({});
  tokenless.declare(["ws://10.0.0.3:7070"], holder);
  assert.equal(tokenless.declaration("ws://10.0.0.3:7070")?.trusted, false);
});

test("thinkagain serve --peer: repeatable, a node's endpoint; anything else is a usage error", async () => {
  const { parseServeArgs } = await import("../cli_serve.ts");
  assert.deepEqual(parseServeArgs(["app.ts", "--peer", "ws://10.0.0.2:7070", "--peer=https://n3:1"], {}).peers, [
    "ws://10.0.0.2:7070",
    "https://n3:1",
  ]);
  assert.deepEqual(parseServeArgs(["app.ts"], {}).peers, []);
  for (const bad of ["10.0.0.2:7070", "ftp://h:1", ""]) {
    assert.throws(() => parseServeArgs(["app.ts", "--peer", bad], {}), /--peer needs a node's endpoint/, bad);
  }
});

// Node to node with tokens, in process: a result kept on node a is pulled by node b, and a handle of
// an instance on a is called from b. The producer needs the only GPU (node a); the sink more cores
// than a may give (node b).
const Producer = ta.service(
  { gpus: 1 },
  class PeerAuthProducer {
    make(n: number) {
      return new Float32Array(n).fill(1);
    }
  },
);
const Sink = ta.service(
  { cpus: 2 },
  class PeerAuthSink {
    sum(a: Float32Array) {
      return a.reduce((x, y) => x + y, 0);
    }
    async sumVia(producer: { make(n: number): Promise<Float32Array> }, n: number) {
      return this.sum(await producer.make(n));
    }
  },
);

/** Nodes a (1 GPU, 1 core for the mesh) and b; `open` serves b without asking for a token. */
async function tokenedPair<T>(
  name: string,
  b: { open?: boolean },
  fn: (mesh: ta.Mesh, endpoints: { a: string; b: string }) => Promise<T>,
): Promise<T> {
  const na = new NodeServer({ name: "a", token: "t", gpus: 1 }), nb = new NodeServer({ name: "b", token: "t" });
  const sa = serveInMemory(`${name}-a`, na.handler, { token: "t" });
  const sb = serveInMemory(`${name}-b`, nb.handler, b.open ? {} : { token: "t" });
  const mesh = new ta.Mesh([
    new ta.MeshNode("a", { endpoint: sa.endpoint, gpus: 1, cpus: 1 }),
    new ta.MeshNode("b", { endpoint: sb.endpoint, gpus: 0, cpus: 8 }),
  ], { token: "t" });
  try {
    return await fn(mesh, { a: sa.endpoint, b: sb.endpoint });
  } finally {
    await mesh.close();
    await Promise.all([na.drain({ graceMs: 0 }), nb.drain({ graceMs: 0 })]);
    await Promise.all([sa.close(), sb.close()]);
  }
}

test("nodes that share the mesh's token pass a large result and a handle node to node with no --peer", async () => {
  await tokenedPair("peer-auth-shared", {}, async (mesh) => {
    const { total, via } = await mesh.run(async () => {
      const p = Producer.init(), s = Sink.init();
      const big = p.make.go(1 << 16); // 256 KiB: kept on node a, pulled by node b
      return { total: await s.sum.go(big), via: await s.sumVia.go(p, 1000) };
    });
    assert.deepEqual(mesh.stats().instances.map((i) => [i.service, i.node]), [
      ["PeerAuthProducer", "a"],
      ["PeerAuthSink", "b"],
    ]);
    assert.equal(total, 1 << 16);
    assert.equal(via, 1000, "node b called the instance on node a through the handle, with the token");
  });
});

test("a node added to a mesh later (a pod scaled up) is declared to the nodes it reaches: they pull from it", async () => {
  const na = new NodeServer({ name: "a", token: "t", gpus: 1 }), nb = new NodeServer({ name: "b", token: "t" });
  const sa = serveInMemory("peer-auth-late-a", na.handler, { token: "t" });
  const sb = serveInMemory("peer-auth-late-b", nb.handler, { token: "t" });
  const mesh = new ta.Mesh([new ta.MeshNode("b", { endpoint: sb.endpoint, gpus: 0, cpus: 8 })], { token: "t" });
  try {
    const total = await mesh.run(async () => {
      const s = Sink.init();
      await s.sum.go(new Float32Array(2)); // node b has this mesh's hello, which named b alone
      mesh.addNode(new ta.MeshNode("a", { endpoint: sa.endpoint, gpus: 1, cpus: 1 }));
      return await s.sum.go(Producer.init().make.go(1 << 16)); // kept on a, pulled by b
    });
    assert.deepEqual(mesh.stats().instances.map((i) => i.node), ["b", "a"]);
    assert.equal(total, 1 << 16);
  } finally {
    await mesh.close();
    await Promise.all([na.drain({ graceMs: 0 }), nb.drain({ graceMs: 0 })]);
    await Promise.all([sa.close(), sb.close()]);
  }
});

test("a node refused by another for want of a token says which nodes, what it wanted, and to use --peer", async () => {
  // node b lets in any connection: the driver's hello there proves no token, so b gives a's none
  await tokenedPair("peer-auth-open", { open: true }, async (mesh, at) => {
    const [pulled, called] = await mesh.run(async () => {
      const p = Producer.init(), s = Sink.init();
      const big = p.make.go(1 << 16);
      return await Promise.all([rejection(s.sum.go(big)), rejection(s.sumVia.go(p, 10))]);
    });
    assert.deepEqual(mesh.stats().instances.map((i) => i.node), ["a", "b"]);
    // the pull fails the call; the refused handle call fails the method that made it (its cause)
    const callerError = called instanceof ta.OpExecutionError ? called.cause : called;
    for (
      const [e, what] of [[pulled, 'argument 0 of method "sum"'], [callerError, 'a call of "PeerAuthProducer.make"']]
    ) {
      assert.ok(e instanceof ta.AuthError, String(e));
      assert.ok(
        e.message.startsWith(`Node "b" could not reach node "a" at ${at.a} for ${what}`),
        e.message,
      );
      assert.ok(e.message.endsWith(`start node "b" with --peer ${at.a}`), e.message);
      assert.doesNotMatch(e.message, /none was given/);
    }
  });
});

test("a node holds at most MAX_NODE_LINKS links; the next is refused with an error that says so", async () => {
  const owner = {};
  for (let i = 0; i < MAX_NODE_LINKS; i++) linkFor(owner, `n${i}`, `ws://10.0.0.1:${1 + i}`, {}, handleWire);
  assert.equal(linkFor(owner, "n0", "ws://10.0.0.1:1", {}, handleWire).endpoint, "ws://10.0.0.1:1", "known: reused");
  assert.throws(
    () => linkFor(owner, "more", "ws://10.0.0.2:1", {}, handleWire),
    (e) => e instanceof ta.TransportError && /already holds 1024 links/.test(e.message),
  );
  // a mesh links to its configured nodes only, however many
  await using mesh = new ta.Mesh([new ta.MeshNode("m", { endpoint: "ws://127.0.0.1:1" })]);
  assert.ok(linkFor(meshRuntime(mesh), "m", "ws://127.0.0.1:1", {}, handleWire));
});

for (const runtime of ["bun", "deno"] as Runtime[]) {
  test(
    `a ${runtime} node: forged handles lead nowhere; peers, and endpoints declared by a token holder, get the token`,
    T,
    async () => {
      const spy = await listener();
      const spyHttp = `http://127.0.0.1:${spy.port}`;
      const spyWs = `ws://127.0.0.1:${spy.port}`;
      const plain = await startNodeProcess(APP, ["--port", "0", "--name", "n1", "--gpus", "1", "--token", TOKEN], {
        runtime,
      });
      const peered = await startNodeProcess(
        APP,
        ["--port", "0", "--name", "n2", "--gpus", "1", "--token", TOKEN, "--peer", spyHttp],
        { runtime },
      );
      const conns: TransportConnection[] = [];
      try {
        /** A Generator on `url`, and a call of its generateWith(retriever) that returns the node's answer. */
        const generator = async (url: string) => {
          const conn = await webSocketTransport.connect(url, { token: TOKEN });
          conns.push(conn);
          const created = await request(conn, { t: "create", service: "Generator", args: [], gpus: [0], replica: 0 });
          const id = (created as { id: string }).id;
          let n = 0;
          return {
            conn,
            generateWith: (retriever: unknown) =>
              conn.request(encodeMessage({
                t: "call",
                cid: `c${++n}`,
                id,
                method: "generateWith",
                args: [retriever, "what is a mesh"],
              })).then(decode, (e) => ({ thrown: e })),
          };
        };
        const handleTo = (endpoint: string) =>
          new WireHandle("Retriever", [{ node: "spy", endpoint, id: "00000000-0000-0000-0000-000000000000" }]);

        const g1 = await generator(plain.url);
        // 1. the old forgery, a plain object: it stays one (the method finds no retriever in it)
        const forged = await g1.generateWith({
          [FORGED_KEY]: { service: "Retriever", replicas: [{ endpoint: spyHttp, node: "spy", id: "x" }] },
        }) as { ok: boolean; error: { message: string } };
        assert.equal(forged.ok, false);
        assert.match(JSON.stringify(forged.error), /reading 'go'|undefined is not an object|go/);
        // 2. a handle to an endpoint nobody declared or configured: refused, nothing dialled
        for (const endpoint of [spyHttp, spyWs]) {
          const refused = await g1.generateWith(handleTo(endpoint)) as { thrown: unknown };
          assert.ok(refused.thrown instanceof ta.ProtocolError, `got ${JSON.stringify(refused)}`);
          assert.match(
            (refused.thrown as Error).message,
            new RegExp(
              `names endpoint "${endpoint.replaceAll(".", "\\.")}" \\(node "spy"\\), which this node may not reach`,
            ),
          );
        }
        assert.deepEqual(spy.seen, [], "the node dialled nothing a frame named");
        // 3. declared by a driver's hello on a connection that presented the node's token: reached with
        // it (the driver holds it already; on a node that lets in any connection, a declared endpoint
        // gets none: the in-memory tests above)
        assert.equal(
          (await request(g1.conn, { t: "hello", v: PROTOCOL_VERSION, mesh: [spyHttp] }) as { t: string }).t,
          "welcome",
        );
        const declared = await g1.generateWith(handleTo(spyHttp)) as { ok: boolean };
        assert.equal(declared.ok, false, "the spy answers nothing useful");
        assert.equal(spy.seen.length, 1, "the node called the declared endpoint");
        assert.equal((spy.seen as IncomingHttpHeaders[])[0].authorization, `Bearer ${TOKEN}`, "with the token");
        // 4. a configured peer gets the token
        const g2 = await generator(peered.url);
        const peer = await g2.generateWith(handleTo(`ws://127.0.0.1:${spy.port}/`)) as { ok: boolean };
        assert.equal(peer.ok, false);
        assert.equal(spy.seen.length, 2);
        assert.equal(
          (spy.seen as IncomingHttpHeaders[])[1].authorization,
          `Bearer ${TOKEN}`,
          "over the peer's configured scheme, with the token",
        );
        // 5. a handle of the node's own instance is called in place, whatever endpoint it names
        const retriever = await request(g1.conn, { t: "create", service: "Retriever", args: [], gpus: [], replica: 0 });
        const own = new WireHandle("Retriever", [{
          node: "n1",
          endpoint: "ws://10.255.255.1:9",
          id: (retriever as { id: string }).id,
        }]);
        const answer = await g1.generateWith(own) as { ok: boolean; value: string };
        assert.equal(answer.ok, true, JSON.stringify(answer));
        assert.match(answer.value, /what is a mesh -> 2 docs/);
        assert.equal(spy.seen.length, 2);
      } finally {
        for (const c of conns) await c.close();
        plain.kill();
        peered.kill();
        await Promise.all([plain.exited, peered.exited, spy.close()]);
      }
    },
  );
}

test("a driver revives a handle from a node's reply only for its mesh's own nodes, over its own link", T, async () => {
  const spy = await listener();
  let reply: unknown = null;
  const calls: unknown[] = [];
  let endpoint = "";
  const fake = await startRealServer(
    (frame) => {
      const m = decodeDriverMessage(frame);
      switch (m.t) {
        case "hello":
          return encodeMessage({
            t: "welcome",
            v: PROTOCOL_VERSION,
            node: "fake",
            session: "s",
            gpus: 0,
            cpus: null,
            services: ["Retriever"],
            ops: [],
            leaseMs: 0,
          });
        case "create":
          return encodeMessage({ t: "created", id: "inst-1", session: "s", leaseMs: 0 });
        case "call":
          calls.push(m);
          return encodeMessage({ t: "result", ok: true, value: m.method === "retrieve" ? ["doc"] : reply });
        default:
          return encodeMessage({ t: m.t === "destroy" ? "destroyed" : "pong" });
      }
    },
    { token: TOKEN },
    "ws",
  );
  endpoint = fake.endpoint;
  try {
    await using mesh = new ta.Mesh([new ta.MeshNode("fake", { endpoint })], { token: TOKEN });
    const r = await mesh.run(async () => {
      const r = Retriever.init();
      await r.node.go();
      return [r];
    });
    // a plain object with the handle key arrives as it is
    const forged = {
      [FORGED_KEY]: { service: "Retriever", replicas: [{ endpoint: `ws://127.0.0.1:${spy.port}`, id: "x" }] },
    };
    reply = forged;
    assert.deepEqual(await mesh.run(() => r[0].node.go()), forged);
    // a handle to somewhere else: ProtocolError, nothing dialled
    reply = new WireHandle("Retriever", [{ node: "spy", endpoint: `ws://127.0.0.1:${spy.port}`, id: "x" }]);
    const err = await mesh.run(() => rejection(r[0].node.go()));
    assert.ok(err instanceof ta.ProtocolError, `got ${err}`);
    assert.match((err as Error).message, /is not a node of this mesh/);
    assert.deepEqual(spy.seen, []);
    // a handle to one of the mesh's nodes works, over the mesh's link (its token, its scheme)
    reply = new WireHandle("Retriever", [{ node: "f", endpoint: endpoint.replace("ws://", "http://"), id: "inst-2" }]);
    const handle = await mesh.run(() => r[0].node.go()) as unknown as typeof r[0];
    assert.deepEqual(await mesh.run(() => handle.retrieve.go("q", 1)), ["doc"]);
    assert.equal((calls.at(-1) as { id: string }).id, "inst-2");
  } finally {
    await fake.close();
    await spy.close();
  }
});
