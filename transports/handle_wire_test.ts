// Handles on the wire: a tag no plain value can take, endpoints a frame cannot choose, a token that
// never goes where a frame says, a bounded link table. Real node processes (Bun and Deno) for the
// node side; a fake node on a real socket for the driver side.
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
import { startRealServer } from "./_test_servers.ts";
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
  test(`a ${runtime} node: forged handles lead nowhere, declared endpoints get no token, peers get it`, T, async () => {
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
      // 3. declared by a driver's hello: reached, but without the node's token
      assert.equal(
        (await request(g1.conn, { t: "hello", v: PROTOCOL_VERSION, mesh: [spyHttp] }) as { t: string }).t,
        "welcome",
      );
      const declared = await g1.generateWith(handleTo(spyHttp)) as { ok: boolean };
      assert.equal(declared.ok, false, "the spy answers nothing useful");
      assert.equal(spy.seen.length, 1, "the node called the declared endpoint");
      assert.equal((spy.seen as IncomingHttpHeaders[])[0].authorization, undefined, "without a token");
      assert.ok(!JSON.stringify(spy.seen).includes(TOKEN), "the token went nowhere");
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
  });
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
