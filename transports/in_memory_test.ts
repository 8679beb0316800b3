import { rejects, throws } from "node:assert/strict";
import { test } from "node:test";
import { runTransportConformance } from "./_conformance.ts";
import { inMemoryTransport, serveInMemory } from "./in_memory.ts";

let n = 0;
runTransportConformance("in_memory", {
  transport: inMemoryTransport,
  ordered: true,
  unreachable: "mem://nobody-serves-this",
  start(handler, options = {}) {
    const name = options.at ? options.at.slice("mem://".length) : `conformance-${n++}`;
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
