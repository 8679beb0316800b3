import { rejects, throws } from "node:assert/strict";
import { test } from "node:test";
import { runTransportConformance } from "./_conformance.ts";
import { inMemoryTransport, serveInMemory } from "./in_memory.ts";

let n = 0;
runTransportConformance("in_memory", {
  transport: inMemoryTransport,
  ordered: true,
  unreachable: "mem://nobody-serves-this",
  start(handler, { at, ...options } = {}) {
    const name = at ? at.slice("mem://".length) : `conformance-${n++}`;
    return Promise.resolve(serveInMemory(name, handler, options));
  },
});

test("serveInMemory refuses a name already in use", async () => {
  const server = serveInMemory("taken", (f) => f);
  throws(() => serveInMemory("taken", (f) => f), /already in use/);
  await server.close();
});

test("inMemoryTransport rejects an endpoint that is not mem://", async () => {
  await rejects(inMemoryTransport.connect("http://127.0.0.1:1"), TypeError);
});

test("serveInMemory refuses an unknown option (a typo of token must not serve without one), naming the closest", () => {
  throws(
    () => serveInMemory("typo-token", (f) => f, { tokn: "secret" } as never),
    (e: unknown) =>
      e instanceof TypeError &&
      /serveInMemory "typo-token": unknown option "tokn"; did you mean "token"\?/.test(e.message),
  );
  throws(
    () => serveInMemory("typo-token", (f) => f, { token: 5 } as never),
    /serveInMemory "typo-token": token must be a string, got number 5/,
  );
  // nothing was served under the name
  serveInMemory("typo-token", (f) => f).close();
});

test("serveInMemory refuses a handler that is not a function, and options that are not an object, at once", () => {
  throws(
    () => serveInMemory("bad-handler", 5 as never),
    (e: unknown) =>
      e instanceof TypeError && /serveInMemory "bad-handler": handler must be a function, got number 5/.test(e.message),
  );
  throws(() => serveInMemory("bad-options", (f) => f, 5 as never), /options must be an object, got number 5/);
});
