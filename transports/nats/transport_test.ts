import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { TransportError } from "../../core/errors.ts";
import { runTransportConformance, type TestServer } from "../_conformance.ts";
import { natsTransport } from "./transport.ts";
import { serveNats } from "./serve.ts";
import { natsMissing, type NatsServerProcess, startNatsServer } from "./_test_nats.ts";
import { eventually, gate } from "../../core/_test_utils.ts";

const missing = natsMissing();

// The suite's 16 MiB frame needs a server whose max_payload allows it (the default 1 MB refuses it,
// with the error the next tests check).
let server: NatsServerProcess | undefined;
let names = 0;

if (!missing) {
  before(async () => {
    server = await startNatsServer({ maxPayload: 64 * 1024 * 1024 });
  });
  after(async () => {
    await server?.stop();
  });
  runTransportConformance("nats", {
    transport: natsTransport,
    ordered: true,
    unreachable: "nats://127.0.0.1:9/nobody",
    async start(handler, options) {
      const name = options?.at ? options.at.slice(options.at.lastIndexOf("/") + 1) : `conf${++names}`;
      const served = await serveNats(handler, { ...options, nats: server!.url, name });
      return { endpoint: served.endpoint, close: () => served.close() } satisfies TestServer;
    },
  });
}

describe("nats transport", { skip: missing }, () => {
  let small: NatsServerProcess;
  before(async () => {
    small = await startNatsServer(); // max_payload: the server's default 1 MB
  });
  after(async () => {
    await small?.stop();
  });

  test("natsTransport refuses a frame over the server's max_payload, pointing to direct links", async () => {
    let calls = 0;
    const node = await serveNats((f) => {
      calls++;
      return f;
    }, { nats: small.url, name: "big" });
    const conn = await natsTransport.connect(node.endpoint);
    try {
      await rejects(conn.request(new Uint8Array(2 * 1024 * 1024)), (e: unknown) => {
        ok(e instanceof TransportError, String(e));
        strictEqual(e.reason, "too-large");
        ok(e.message.includes("max_payload") && e.message.includes("direct link"), e.message);
        ok(e.message.includes(String(2 * 1024 * 1024)), e.message);
        return true;
      });
      strictEqual(calls, 0);
      // a reply over it is refused by the node with the same advice, and the connection stays usable
      const big = await serveNats(() => new Uint8Array(2 * 1024 * 1024), { nats: small.url, name: "bigreply" });
      const conn2 = await natsTransport.connect(big.endpoint);
      await rejects(conn2.request(new Uint8Array([1])), (e: unknown) => {
        ok(e instanceof TransportError && e.reason === "too-large", String(e));
        ok(e.message.includes("max_payload") && e.message.includes("reply"), e.message);
        return true;
      });
      await conn2.close();
      await big.close();
      strictEqual((await conn.request(new Uint8Array([7])))[0], 7);
    } finally {
      await conn.close();
      await node.close();
    }
  });

  test("natsTransport sends frames and fetches replies too large for NATS over the node's direct link", async () => {
    const { serveFrames } = await import("../../adapters/serve.ts");
    const { ReplyParking } = await import("./parking.ts");
    const parking = new ReplyParking();
    const seen: number[] = [];
    // echoes the frame; a 1-byte frame [n] asks for a reply of n MiB
    const handler = (f: Uint8Array) => {
      seen.push(f.byteLength);
      return f.byteLength === 1 ? new Uint8Array(f[0] * 1024 * 1024).fill(f[0]) : f;
    };
    const token = "direct-token";
    const direct = await serveFrames(parking.wrap(handler), { port: 0, token });
    const node = await serveNats(handler, { nats: small.url, name: "withdirect", token, direct: direct.url, parking });
    const conn = await natsTransport.connect(node.endpoint, { token });
    try {
      const big = new Uint8Array(3 * 1024 * 1024).fill(5);
      const back = await conn.request(big);
      strictEqual(back.byteLength, big.byteLength);
      strictEqual(back[back.length - 1], 5);
      const reply = await conn.request(new Uint8Array([2]));
      strictEqual(reply.byteLength, 2 * 1024 * 1024);
      strictEqual(reply[0], 2);
      strictEqual(parking.bytes, 0, "a fetched reply is not kept");
      strictEqual((await conn.request(new Uint8Array([0])))[0], undefined, "small replies stay on NATS");
      deepStrictEqual(seen, [3 * 1024 * 1024, 1, 1]);
    } finally {
      await conn.close();
      await node.close();
      await direct.close();
    }
  });

  test("natsTransport: 'no responders' after the node went away fails every waiting request", async () => {
    // never reached: "unreachable", naming the endpoint
    const nobody = await natsTransport.connect(`${small.url}/nobody`);
    await rejects(nobody.request(new Uint8Array([1])), (e: unknown) => {
      ok(e instanceof TransportError && e.reason === "unreachable", String(e));
      ok(e.message.includes("no responders") && e.message.includes(`${small.url}/nobody`), e.message);
      return true;
    });
    await nobody.close();
    // a node on a NATS client of its own that holds frame 1 and echoes the others, then vanishes
    // without a word (as when its process is killed)
    const { connect } = await import("@nats-io/transport-node");
    const own = await connect({ servers: small.url });
    own.subscribe("thinkagain.node.vanishing", {
      callback: (_e, msg) => {
        if (msg.data[0] !== 1) msg.respond(msg.data);
      },
    });
    await own.flush();
    const conn = await natsTransport.connect(`${small.url}/vanishing`);
    const reasons: string[] = [];
    conn.onClose((r) => reasons.push(r.reason));
    try {
      const held = conn.request(new Uint8Array([1]));
      strictEqual((await conn.request(new Uint8Array([2])))[0], 2);
      await own.close();
      const gone = (e: unknown) => {
        ok(e instanceof TransportError && e.reason === "closed", String(e));
        ok(e.message.includes("went away"), e.message);
        return true;
      };
      await rejects(conn.request(new Uint8Array([3])), gone);
      await rejects(held, gone);
      ok(reasons.includes("closed"), "the connection's listeners hear the node is gone");
    } finally {
      await conn.close();
    }
  });

  test("natsTransport sends the caller's deadline: the node's work is aborted when it passes", async () => {
    let aborted: unknown;
    const node = await serveNats((_f, peer) =>
      new Promise<Uint8Array>((_r, reject) => {
        peer.signal?.addEventListener("abort", () => {
          aborted = peer.signal!.reason;
          reject(peer.signal!.reason);
        });
      }), { nats: small.url, name: "deadline" });
    const conn = await natsTransport.connect(node.endpoint);
    try {
      await rejects(conn.request(new Uint8Array([1]), { timeoutMs: 50 }), TransportError);
      for (let i = 0; i < 500 && aborted === undefined; i++) await new Promise((r) => setTimeout(r, 10));
      ok(aborted instanceof DOMException && aborted.name === "TimeoutError", String(aborted));
    } finally {
      await conn.close();
      await node.close();
    }
  });

  test("serveNats: requests from one inbox share a peer, and a caller's bye ends it (a later request gets a new one)", async () => {
    // the node finds the peer of a run of requests without a lookup per request; a bye, or another
    // inbox in between, must still be seen (requests sent here with a raw client, inboxes by hand)
    const seen: { id: number; aborted: boolean }[] = [];
    const node = await serveNats((f, peer) => {
      seen.push({ id: peer.connectionId, aborted: peer.signal?.aborted === true });
      return f;
    }, { nats: small.url, name: "peers" });
    const { connect, headers } = await import("@nats-io/transport-node");
    const nc = await connect({ servers: small.url });
    const answered: string[] = [];
    let allAnswered!: () => void;
    const all = new Promise<void>((resolve) => (allAnswered = resolve));
    const sub = nc.subscribe("_PEERS.>", {
      callback: (_e, msg) => {
        if (answered.push(msg.subject) === 8) allAnswered();
      },
    });
    try {
      const send = (reply: string) => nc.publish("thinkagain.node.peers", new Uint8Array([1]), { reply });
      send("_PEERS.a.1");
      send("_PEERS.a.2");
      send("_PEERS.b.1");
      send("_PEERS.a.3");
      // "_PEERS.a" and "_PEERS" are other inboxes than "_PEERS.a.x" (and its prefix)
      send("_PEERS.a.x.4");
      send("_PEERS.5");
      send("_PEERS.a.6");
      const bye = headers();
      bye.set("Ta-Bye", "_PEERS.a");
      nc.publish("thinkagain.node.peers", new Uint8Array(0), { headers: bye });
      send("_PEERS.a.7");
      await all;
      deepStrictEqual(answered, [
        "_PEERS.a.1",
        "_PEERS.a.2",
        "_PEERS.b.1",
        "_PEERS.a.3",
        "_PEERS.a.x.4",
        "_PEERS.5",
        "_PEERS.a.6",
        "_PEERS.a.7",
      ]);
      const [a1, a2, b1, a3, ax4, p5, a6, a7] = seen;
      strictEqual(a1.id, a2.id);
      strictEqual(a1.id, a3.id);
      strictEqual(a1.id, a6.id);
      ok(b1.id !== a1.id && ax4.id !== a1.id && p5.id !== a1.id && ax4.id !== p5.id, JSON.stringify(seen));
      ok(seen.slice(0, 7).every((s) => !s.aborted), JSON.stringify(seen));
      // after the bye (right after a request of that inbox): a new peer, not the ended one
      ok(a7.id !== a1.id && !a7.aborted, JSON.stringify(seen));
    } finally {
      sub.unsubscribe();
      await nc.close();
      await node.close();
    }
  });

  test("natsTransport: a request NATS lost is found by the audit and fails, it never hangs", async () => {
    // a node that takes the message and forgets it (as a server dying with it in its buffers would)
    const { acquireNats } = await import("./pool.ts");
    const lease = await acquireNats([small.url]);
    const { encode } = await import("../../core/codec.ts");
    const sub = lease.nc.subscribe("thinkagain.node.forgetful", {
      callback: (_e, msg) => {
        if (msg.headers?.has("Ta-Audit")) msg.respond(encode([false]));
      },
    });
    await lease.nc.flush();
    const conn = await natsTransport.connect(`${small.url}/forgetful`);
    try {
      await rejects(conn.request(new Uint8Array([1])), (e: unknown) => {
        ok(e instanceof TransportError && e.reason === "io", String(e));
        ok(e.message.includes("lost"), e.message);
        return true;
      });
    } finally {
      sub.unsubscribe();
      await conn.close();
      await lease.release();
    }
  });
});

describe("nats transport: op queue groups", { skip: missing }, () => {
  let srv: NatsServerProcess;
  before(async () => {
    srv = await startNatsServer();
  });
  after(async () => {
    await srv?.stop();
  });

  test("natsTransport to nats://…/op:<op> spreads calls over the queue group; cancels and audits reach every member", async () => {
    const { opBroadcastSubject, opSubject } = await import("./endpoint.ts");
    const ran: string[] = [];
    const oneWay: string[] = [];
    const members = await Promise.all(["qa", "qb", "qc"].map(async (name) => {
      const served = await serveNats(async (f, peer) => {
        if (peer.oneWay) {
          oneWay.push(name);
          return undefined;
        }
        ran.push(name);
        if (f[0] === 9) await new Promise((r) => setTimeout(r, 2_500)); // outlives two audits
        return new TextEncoder().encode(name);
      }, { nats: srv.url, name });
      served.serveQueue(opSubject("q.op"), opBroadcastSubject("q.op"));
      return served;
    }));
    await members[0].lease.nc.flush();
    const conn = await natsTransport.connect(`${srv.url}/op:${encodeURIComponent("q.op")}`);
    try {
      const who = await Promise.all(Array.from({ length: 90 }, () => conn.request(new Uint8Array([1]))));
      const names = new Set(who.map((b) => new TextDecoder().decode(b)));
      ok(names.size >= 2, `one member took every call: ${[...names]}`);
      strictEqual(ran.length, 90, "each call ran once");
      conn.notify(new Uint8Array([2]));
      for (let i = 0; i < 500 && oneWay.length < 3; i++) await new Promise((r) => setTimeout(r, 10));
      deepStrictEqual(oneWay.sort(), ["qa", "qb", "qc"], "a one-way frame (a cancel) reaches every member");
      // a call one member works on for longer than two audits: the others say no, it says yes
      const slow = await conn.request(new Uint8Array([9]));
      ok(["qa", "qb", "qc"].includes(new TextDecoder().decode(slow)));
    } finally {
      await conn.close();
      await Promise.all(members.map((m) => m.close()));
    }
  });
});

test(
  "natsTransport: a call its queue group lost (no member claims it) fails, it never hangs",
  { skip: missing },
  async () => {
    const srv = await startNatsServer();
    const { acquireNats } = await import("./pool.ts");
    const { opBroadcastSubject, opSubject } = await import("./endpoint.ts");
    const { encode } = await import("../../core/codec.ts");
    const lease = await acquireNats([srv.url]);
    // a member that takes calls and forgets them, and answers audits with "not mine"
    const subs = [
      lease.nc.subscribe(opSubject("forgot"), { queue: opSubject("forgot"), callback: () => {} }),
      lease.nc.subscribe(opBroadcastSubject("forgot"), {
        callback: (_e, msg) => void (msg.headers?.has("Ta-Audit") && msg.respond(encode([false]))),
      }),
    ];
    await lease.nc.flush();
    const conn = await natsTransport.connect(`${srv.url}/op:forgot`);
    try {
      await rejects(conn.request(new Uint8Array([1])), (e: unknown) => {
        ok(e instanceof TransportError && e.reason === "io" && e.message.includes("lost"), String(e));
        return true;
      });
    } finally {
      for (const sub of subs) sub.unsubscribe();
      await conn.close();
      await lease.release();
      await srv.stop();
    }
  },
);

test("natsTransport: a closed connection leaves no subscription on the shared NATS client", {
  skip: missing,
}, async () => {
  const { freePort } = await import("./_test_nats.ts");
  const monitor = await freePort();
  const srv = await startNatsServer({ monitorPort: monitor });
  const subs = async () =>
    ((await (await fetch(`http://127.0.0.1:${monitor}/subsz`)).json()) as { num_subscriptions: number })
      .num_subscriptions;
  const node = await serveNats((f) => f, { nats: srv.url, name: "subs" });
  try {
    const before = await subs();
    for (let i = 0; i < 5; i++) {
      const conn = await natsTransport.connect(node.endpoint);
      strictEqual((await conn.request(new Uint8Array([i])))[0], i);
      await conn.close();
    }
    await node.lease.nc.flush();
    strictEqual(await subs(), before);
  } finally {
    await node.close();
    await srv.stop();
  }
});

test("transportFor picks the NATS transport for nats:// endpoints and refuses mixing it with others", async () => {
  const { transportFor } = await import("../transport_for.ts");
  strictEqual(transportFor("nats://127.0.0.1:4222/n1").name, "nats");
  strictEqual(transportFor("nats://127.0.0.1:4222/n1", "nats").name, "nats");
  const { throws } = await import("node:assert/strict");
  throws(() => transportFor("nats://127.0.0.1:4222/n1", "http"), /it is a NATS endpoint/);
  throws(() => transportFor("ws://127.0.0.1:7070", "nats"), /needs a nats:\/\/host:4222\/<node> endpoint/);
  // loaded on first connect: a bad endpoint is refused there, naming it
  await rejects(transportFor("nats://127.0.0.1:4222").connect("nats://127.0.0.1:4222"), /names no node/);
});

test("natsTransport: an unreachable server's error shows its URL without the password", async () => {
  await rejects(natsTransport.connect("nats://ann:s3cret@127.0.0.1:9/n1", { connectTimeoutMs: 2000 }), (e: unknown) => {
    ok(e instanceof TransportError && e.reason === "unreachable", String(e));
    ok(!e.message.includes("s3cret") && e.message.includes("nats://ann:***@127.0.0.1:9"), e.message);
    ok(!String(e.endpoint).includes("s3cret"), String(e.endpoint));
    return true;
  });
  // a reachable server, a node nobody serves: the no-responders error hides it too
  const srv = await startNatsServer();
  try {
    const conn = await natsTransport.connect(`nats://ann:s3cret@127.0.0.1:${srv.port}/nobody`);
    await rejects(conn.request(new Uint8Array([1])), (e: unknown) => {
      ok(e instanceof TransportError && !e.message.includes("s3cret") && e.message.includes("ann:***@"), String(e));
      return true;
    });
    await conn.close();
  } finally {
    await srv.stop();
  }
});

test("natsTransport: a connectTimeoutMs of Infinity or of 2^31 ms or more waits for the server's answer", async () => {
  const { createServer } = await import("node:net");
  for (const connectTimeoutMs of [Infinity, 2 ** 31, 1e10]) {
    const accepted = gate<{ destroy(): void }>();
    const sockets: Array<{ destroy(): void }> = [];
    const silent = createServer((sock) => { // accepts, then says nothing (no INFO)
      sockets.push(sock);
      accepted.open(sock);
    });
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", () => r()));
    const port = (silent.address() as { port: number }).port;
    try {
      let settled = false;
      const opening = natsTransport.connect(`nats://127.0.0.1:${port}/n1`, { connectTimeoutMs });
      const outcome = opening.then(() => (settled = true), () => (settled = true));
      await Promise.race([accepted.promise, outcome]);
      // setTimeout takes 2^31 ms or more for 1 ms: such a timer has fired by now
      for (let i = 0; i < 3; i++) await new Promise((r) => setTimeout(r, 1));
      strictEqual(settled, false, `connectTimeoutMs ${connectTimeoutMs}: gave up before the server answered`);
      // the server goes away: the connect fails for that, not for a timeout
      (await accepted.promise).destroy();
      await rejects(opening, (e: unknown) => {
        ok(e instanceof TransportError && e.reason === "unreachable", String(e));
        ok(!/timeout/i.test(e.message), e.message);
        return true;
      });
    } finally {
      for (const sock of sockets) sock.destroy();
      await new Promise((r) => silent.close(r));
    }
  }
});

test("natsTransport and serveNats send the credentials of nats://user:pass@host and nats://token@host", async () => {
  for (const [auth, creds] of [[{ user: "ann", pass: "p@w:1" }, "ann:p%40w%3A1"], [{ token: "t0k" }, "t0k"]] as const) {
    const srv = await startNatsServer({ auth });
    try {
      const url = `nats://${creds}@127.0.0.1:${srv.port}`;
      const node = await serveNats((f) => f, { nats: url, name: "authed" });
      const secret = "pass" in auth ? "p%40w" : "t0k";
      ok(!node.endpoint.includes(secret), `the endpoint shows no secret: ${node.endpoint}`);
      const conn = await natsTransport.connect(`${url}/authed`);
      try {
        deepStrictEqual(await conn.request(new Uint8Array([4, 2])), new Uint8Array([4, 2]));
      } finally {
        await conn.close();
        await node.close();
      }
      // without them the server refuses, and the error shows no secret
      await rejects(natsTransport.connect(`nats://nobody:wrong@127.0.0.1:${srv.port}/authed`), (e: unknown) => {
        ok(e instanceof TransportError && e.reason === "unreachable" && !e.message.includes("wrong"), String(e));
        return true;
      });
    } finally {
      await srv.stop();
    }
  }
});

test("serveNats refuses a name another node already serves on the NATS cluster; once it stops, the name is free", async () => {
  const srv = await startNatsServer();
  try {
    const first = await serveNats(() => new Uint8Array([1]), { nats: srv.url, name: "gpu1" });
    await rejects(serveNats(() => new Uint8Array([2]), { nats: srv.url, name: "gpu1" }), (e: unknown) => {
      ok(e instanceof TransportError && e.reason === "refused", String(e));
      ok(e.message.includes("a node named gpu1 already serves on this NATS cluster"), e.message);
      return true;
    });
    const conn = await natsTransport.connect(first.endpoint);
    try {
      const replies = await Promise.all(Array.from({ length: 20 }, () => conn.request(new Uint8Array([0]))));
      ok(replies.every((r) => r[0] === 1), "every call reaches the first node");
    } finally {
      await conn.close();
      await first.close();
    }
    const again = await serveNats(() => new Uint8Array([3]), { nats: srv.url, name: "gpu1" });
    await again.close();
  } finally {
    await srv.stop();
  }
});

test(
  "natsTransport never connects, with its token, to an endpoint a reply names: a parked reply is fetched from the node the reply names, found on its own subject",
  {
    skip: missing,
  },
  async () => {
    const srv = await startNatsServer();
    const net = await import("node:net");
    let connections = 0;
    const listener = net.createServer((socket) => {
      connections++;
      socket.destroy();
    });
    await new Promise<void>((r) => listener.listen(0, "127.0.0.1", () => r()));
    const port = (listener.address() as { port: number }).port;
    const { connect } = await import("@nats-io/transport-node");
    const { headers } = await import("@nats-io/nats-core");
    const peer = await connect({ servers: srv.url });
    try {
      // a peer on the subject answers as a node would with a parked reply, naming where to fetch it
      let k = 0;
      peer.subscribe("thinkagain.node.fake", {
        callback: (_e, m) => {
          const h = headers();
          h.set("Ta-Parked", "p1");
          h.set("Ta-Parked-At", k++ % 2 === 0 ? `ws://127.0.0.1:${port}/internal` : "elsewhere");
          m.respond(new Uint8Array(0), { headers: h });
        },
      });
      await peer.flush();
      const driver = await natsTransport.connect(`${srv.url}/fake`, { token: "driver-secret" });
      try {
        for (let i = 0; i < 4; i++) {
          await rejects(driver.request(new Uint8Array([1])), (e: unknown) => e instanceof Error);
        }
      } finally {
        await driver.close();
      }
      strictEqual(connections, 0, "the driver connected where a reply said");
    } finally {
      await peer.close();
      await new Promise((r) => listener.close(r));
      await srv.stop();
    }
  },
);

test(
  "serveNats: a result published for a driver that never frees it nor says bye (killed) is forgotten when its lease expires",
  { skip: missing, timeout: 60_000 },
  async () => {
    const { NodeServer } = await import("../node_server.ts");
    const { decodeReply, encodeMessage } = await import("../protocol.ts");
    const ta = await import("../../mod.ts");
    ta.op({ name: "natsPublishedInc", remote: true }, (x: number) => x + 1);
    const srv = await startNatsServer();
    const node = new NodeServer({ name: "pub", leaseMs: 200 });
    const served = await serveNats(node.handler, { nats: srv.url, name: "pub" });
    const conn = await natsTransport.connect(served.endpoint);
    try {
      const call = { t: "call", cid: "c1", op: "natsPublishedInc", args: [1], publish: "p:nats-1", owner: "killed" };
      deepStrictEqual(decodeReply(await conn.request(encodeMessage(call)), "result"), {
        t: "result",
        ok: true,
        value: 2,
      });
      strictEqual(node.objectStats().published, 1);
      // the connection stays open (no bye): only the lease can tell the driver is gone
      ok(
        await eventually(() => node.objectStats().published === 0, 10_000),
        "the result is still published after its driver's lease expired",
      );
    } finally {
      await conn.close();
      await node.drain();
      await served.close();
      await srv.stop();
    }
  },
);
