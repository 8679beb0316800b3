import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import { Buffer } from "node:buffer";
import { eventually } from "../core/_test_utils.ts";
import { test } from "node:test";
import { serveFrames } from "../adapters/serve.ts";
import { AuthError, TransportError } from "../core/errors.ts";
import { decode, encode } from "../core/codec.ts";
import { runTransportConformance } from "./_conformance.ts";
import { startRealServer } from "./_test_servers.ts";
import { httpTransport, MAX_EXCHANGES } from "./http.ts";

runTransportConformance("http", {
  transport: httpTransport,
  ordered: false,
  unreachable: "http://127.0.0.1:9",
  start: (handler, options) => startRealServer(handler, options, "http"),
  async sendRawGarbage(server) {
    const url = `${server.endpoint}/rpc`;
    const wrongType = await fetch(url, { method: "POST", body: "hello", headers: { "content-type": "text/plain" } });
    strictEqual(wrongType.status, 415);
    strictEqual(wrongType.headers.get("x-thinkagain-error"), "1");
    ok(
      String((decode(new Uint8Array(await wrongType.arrayBuffer())) as { message: string }).message).includes(
        "content-type",
      ),
    );
    const garbage = await fetch(url, {
      method: "POST",
      body: new Uint8Array([0x9f, 0x01, 0x02]),
      headers: { "content-type": "application/cbor" },
    });
    strictEqual(garbage.status, 400, "a frame the protocol rejects is a client error");
    strictEqual((decode(new Uint8Array(await garbage.arrayBuffer())) as { tag: string }).tag, "ProtocolError");
    const get = await fetch(url);
    ok(get.status === 404 || get.status === 405, `GET /rpc answered ${get.status}`);
    await get.body?.cancel();
  },
});

test("serveFrames refuses a port another server already holds", async () => {
  const first = await serveFrames((f) => f, { port: 0 });
  try {
    await rejects(serveFrames((f) => f, { port: first.port }), (e: unknown) => {
      ok(e instanceof Error);
      ok(e.message.includes(`127.0.0.1:${first.port}`) && e.message.includes("in use"), e.message);
      return true;
    });
    // The first server still answers.
    const conn = await httpTransport.connect(first.url);
    strictEqual(decode(await conn.request(encode(7))), 7);
    await conn.close();
  } finally {
    await first.close();
  }
});

test("POST /rpc refuses a declared body over the limit without reading it", async () => {
  let calls = 0;
  const server = await serveFrames((f) => {
    calls++;
    return f;
  }, { port: 0, maxFrameBytes: 1024 });
  try {
    const res = await fetch(`${server.url}/rpc`, {
      method: "POST",
      body: new Uint8Array(4096),
      headers: { "content-type": "application/cbor" },
    });
    strictEqual(res.status, 413);
    strictEqual(
      (decode(new Uint8Array(await res.arrayBuffer())) as { data: { reason: string } }).data.reason,
      "too-large",
    );
    strictEqual(calls, 0);
  } finally {
    await server.close();
  }
});

test("http: a reply with no declared length is still held to maxFrameBytes", async () => {
  const { createServer } = await import("node:http");
  const server = createServer((_req, res) => {
    res.writeHead(200, { "content-type": "application/cbor" }); // no content-length: chunked
    for (let i = 0; i < 8; i++) res.write(new Uint8Array(1024));
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as { port: number }).port;
  const conn = await httpTransport.connect(`http://127.0.0.1:${port}`, { maxFrameBytes: 4096 });
  try {
    await rejects(
      conn.request(new Uint8Array([1])),
      (e: unknown) => e instanceof TransportError && e.reason === "too-large",
    );
  } finally {
    await conn.close();
    await new Promise((r) => server.close(r));
  }
});

test("http: a server that is not a node (it answers HTTP 200 with text) is refused, naming the endpoint", async () => {
  const { createServer } = await import("node:http");
  const server = createServer((_req, res) => res.writeHead(200, { "content-type": "text/plain" }).end("hello"));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const endpoint = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const conn = await httpTransport.connect(endpoint);
  try {
    await rejects(
      conn.request(encode({ t: "hello", v: 2 })),
      (e: unknown) =>
        e instanceof TransportError && e.reason === "refused" &&
        e.message.startsWith(`${endpoint} is not a thinkagain node: POST ${endpoint}/rpc answered HTTP 200 with `) &&
        e.message.includes("text/plain"),
    );
  } finally {
    await conn.close();
    await new Promise((r) => server.close(r));
  }
});

test("http: at most MAX_EXCHANGES requests of a connection are under way at once, the rest wait their turn and are all answered; an urgent one goes past them", async () => {
  const { createServer } = await import("node:http");
  let open = 0, most = 0;
  const held: (() => void)[] = [];
  const server = createServer((req, res) => {
    const chunks: Uint8Array[] = [];
    req.on("data", (c: Uint8Array) => chunks.push(c));
    req.on("end", () => {
      const body = new Uint8Array(Buffer.concat(chunks));
      const reply = () => res.writeHead(200, { "content-type": "application/cbor" }).end(body);
      if (decode(body) === "urgent") return reply();
      open++;
      most = Math.max(most, open);
      held.push(() => {
        open--;
        reply();
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const conn = await httpTransport.connect(`http://127.0.0.1:${(server.address() as { port: number }).port}`);
  try {
    const n = MAX_EXCHANGES + 40;
    let answered = 0;
    const all = Promise.all(
      Array.from({ length: n }, (_, i) => conn.request(encode(i)).then((r) => (answered++, decode(r)))),
    );
    ok(await eventually(() => held.length === MAX_EXCHANGES), `${held.length} requests reached the server`);
    strictEqual(decode(await conn.request(encode("urgent"), { urgent: true })), "urgent");
    for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 1)); // (any more would have come by now)
    strictEqual(held.length, MAX_EXCHANGES);
    while (answered < n) {
      for (const release of held.splice(0)) release();
      await eventually(() => answered === n || held.length > 0);
    }
    deepStrictEqual(await all, Array.from({ length: n }, (_, i) => i));
    ok(most <= MAX_EXCHANGES, `${most} requests were under way at once`);
  } finally {
    for (const release of held.splice(0)) release();
    await conn.close();
    await new Promise((r) => server.close(r));
  }
});

test("serveFrames refuses an option it does not know (a mistyped token would serve with none) or a token that is not a string", async () => {
  await rejects(
    serveFrames((f) => f, { tokn: "secret" } as never),
    /serveFrames: unknown option "tokn"; did you mean "token"/,
  );
  await rejects(serveFrames((f) => f, { token: 5 } as never), /serveFrames: token must be a string/);
});

test("http: errors name the URL the transport used, not the ws:// endpoint it was given", async () => {
  const unreachable = await httpTransport.connect("ws://127.0.0.1:9");
  await rejects(unreachable.request(encode({ t: "hello", v: 2 })), (e: unknown) => {
    ok(e instanceof TransportError && e.reason === "unreachable", String(e));
    ok(e.message.startsWith("Cannot reach http://127.0.0.1:9/rpc: "), e.message);
    strictEqual(e.endpoint, "ws://127.0.0.1:9", "the error still says which endpoint it is about");
    return true;
  });
  const server = await startRealServer((frame) => frame, { token: "s3cret-token" }, "ws");
  const conn = await httpTransport.connect(server.endpoint);
  try {
    await rejects(conn.request(encode({ t: "hello", v: 2 })), (e: unknown) => {
      ok(e instanceof AuthError, String(e));
      ok(e.message.startsWith(`Connection to ${server.endpoint.replace("ws:", "http:")}/rpc refused: `), e.message);
      return true;
    });
  } finally {
    await conn.close();
    await server.close();
  }
});
