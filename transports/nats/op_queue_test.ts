// Remote ops served by several NATS nodes (an op's queue group), driven by a mesh from
// Mesh.discover: streams and results too large for NATS come back whole, whichever member ran them.
import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import * as ta from "../../mod.ts";
import { NodeServer } from "../node_server.ts";
import { startNatsNode } from "./node.ts";
import { ReplyParking } from "./parking.ts";
import { natsMissing, type NatsServerProcess, startNatsServer } from "./_test_nats.ts";

const queueGen = ta.op(
  { name: "natsQueueGen", remote: true },
  async function* natsQueueGen(n: number): AsyncGenerator<number> {
    for (let i = 0; i < n; i++) yield i;
  },
);
const queueBig = ta.op(
  { name: "natsQueueBig", remote: true },
  (n: number): Uint8Array => new Uint8Array(n).fill(7),
);

describe("an op's NATS queue group of two nodes", { skip: natsMissing() }, () => {
  let server: NatsServerProcess;
  const stops: (() => Promise<void>)[] = [];
  before(async () => {
    server = await startNatsServer(); // max_payload: the server's default 1 MB
    for (const name of ["qm1", "qm2"]) {
      const { serveFrames } = await import("../../adapters/serve.ts");
      const node = new NodeServer({ name });
      const parking = new ReplyParking();
      const direct = await serveFrames(parking.wrap(node.handler), { port: 0 });
      const nats = await startNatsNode(node.handler, { nats: server.url, name, direct: direct.url, parking });
      stops.push(async () => {
        await nats.close();
        await direct.close();
        await node.drain({ graceMs: 0 });
      });
    }
  });
  after(async () => {
    for (const stop of stops) await stop();
    await server?.stop();
  });

  test("a stream from an op on two NATS nodes arrives whole, whichever member runs it", async () => {
    await using mesh = await ta.Mesh.discover({ nats: server.url, nodes: 2, timeoutMs: 30_000 });
    const counts = await mesh.run(() =>
      Promise.all(Array.from({ length: 12 }, async () => {
        const items: number[] = [];
        for await (const x of await queueGen.go(300)) items.push(x);
        deepStrictEqual(items, Array.from({ length: 300 }, (_, i) => i));
        return items.length;
      }))
    );
    deepStrictEqual(counts, new Array(12).fill(300));
  });

  test("a result over max_payload from an op on two NATS nodes is fetched from the member that parked it", async () => {
    await using mesh = await ta.Mesh.discover({ nats: server.url, nodes: 2, timeoutMs: 30_000 });
    const sizes = await mesh.run(async () => {
      const out: number[] = [];
      for (let i = 0; i < 12; i++) {
        const r = await queueBig.go(1_100_000);
        ok(r instanceof Uint8Array && r[0] === 7 && r[r.length - 1] === 7);
        out.push(r.length);
      }
      return out;
    });
    strictEqual(sizes.length, 12);
    ok(sizes.every((n) => n === 1_100_000), String(sizes));
  });
});
