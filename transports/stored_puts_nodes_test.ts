// ta.put values on real node processes (stored_puts.ts): 1,000 calls carrying a 1 MiB put value
// send it through the driver once (bytes counted by a TCP proxy in front of each node), the node
// that does not hold it pulls it from the one that does, the copy is freed with its ref and with
// the mesh, and a holder SIGKILLed gets the value stored again on the node of the next call.
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { fileURLToPath } from "node:url";
import * as ta from "../mod.ts";
import { eventually } from "../core/_test_utils.ts";
import { type NodeProcess, startNodeProcess } from "../adapters/_test_nodes.ts";
import { storedObjects } from "./_test_servers.ts";
import { PutOnA, PutOnB } from "./_test_put_app.ts";

const APP = fileURLToPath(new URL("./_test_put_app.ts", import.meta.url));
const T = { timeout: 240_000 };
const N = 256 * 1024; // a 1 MiB Float32Array

/** A TCP proxy to `port` that counts the bytes its clients send (what goes towards the node). */
function countingProxy(port: number): Promise<{ port: number; sent(): number; close(): Promise<void> }> {
  let sent = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(port, "127.0.0.1");
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => {});
      s.on("close", () => {
        sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    client.on("data", (d: Uint8Array) => {
      sent += d.byteLength;
      upstream.write(d);
    });
    upstream.on("data", (d: Uint8Array) => client.write(d));
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      resolve({
        port: (server.address() as net.AddressInfo).port,
        sent: () => sent,
        close: () =>
          new Promise<void>((r) => {
            for (const s of sockets) s.destroy();
            server.close(() => r());
          }),
      });
    });
  });
}

async function twoNodes(
  fn: (a: NodeProcess, b: NodeProcess, mesh: ta.Mesh, sentByDriver: () => number) => Promise<void>,
): Promise<void> {
  // A: the CPUs PutOnA needs; B: the one GPU PutOnB needs
  const a = await startNodeProcess(APP, ["--port", "0", "--name", "A", "--gpus", "0", "--cpus", "8"]);
  const b = await startNodeProcess(APP, ["--port", "0", "--name", "B", "--gpus", "1", "--cpus", "1"]);
  const pa = await countingProxy(a.port), pb = await countingProxy(b.port);
  const mesh = new ta.Mesh([
    new ta.MeshNode("A", { endpoint: `ws://127.0.0.1:${pa.port}`, gpus: 0, cpus: 8 }),
    new ta.MeshNode("B", { endpoint: `ws://127.0.0.1:${pb.port}`, gpus: 1, cpus: 1 }),
  ], { lostAfterMs: 10_000 });
  try {
    await fn(a, b, mesh, () => pa.sent() + pb.sent());
  } finally {
    await mesh.close({ graceMs: 0 });
    a.kill("SIGKILL");
    b.kill("SIGKILL");
    await Promise.all([a.exited, b.exited, pa.close(), pb.close()]);
  }
}

const expected = (fill: number, i: number) => 2 * fill + N + i;

test(
  "put on node processes: 1,000 calls carrying a 1 MiB value send it through the driver once; B pulls it from A; freed with its ref and its mesh",
  T,
  async () => {
    await twoNodes(async (a, b, mesh, sentByDriver) => {
      const onA = PutOnA.init(), onB = PutOnB.init();
      // instances made (and the links open) before counting
      assert.deepEqual(
        await mesh.run(() => ta.all([onA.use.go(new Float32Array(1), 0), onB.use.go(new Float32Array(1), 0)])),
        [1, 1],
      );
      const before = sentByDriver();
      const run = async (fill: number) => {
        const ref = ta.put(new Float32Array(N).fill(fill));
        // the first call stores it on A; B's calls pull it from A
        const first = await mesh.run(() => onA.use.go(ref, 0));
        assert.equal(first, expected(fill, 0));
        const out = await mesh.run(() =>
          ta.all(Array.from({ length: 1000 }, (_, i) => (i % 2 === 0 ? onA : onB).use.go(ref, i)))
        );
        assert.deepEqual(out, Array.from({ length: 1000 }, (_, i) => expected(fill, i)));
      };
      await run(1);
      const sent = sentByDriver() - before;
      // one copy (4 MiB), plus 1,001 small call frames and B's pull requests; 1,001 copies without the store
      assert.ok(sent > 4 * N, `${sent} bytes went towards the nodes: less than the value itself`);
      assert.ok(
        sent < 2 * 4 * N,
        `${sent} bytes went towards the nodes for 1,001 calls carrying a ${4 * N}-byte value`,
      );
      assert.equal(await storedObjects(a.port), 1, "A holds the value");
      assert.equal(await storedObjects(b.port), 0, "B pulled it, it did not store it");
      // dropped (run's ref is gone): freed on A once the driver collected it
      let garbage: unknown = undefined;
      const freed = await eventually(async () => {
        for (let i = 0; i < 20; i++) garbage = Array.from({ length: 100_000 }, (_, j) => ({ j }));
        return await storedObjects(a.port) === 0;
      }, 60_000);
      assert.ok(freed, "A still holds the put value after its ref was dropped");
      assert.ok(garbage !== undefined);
      // one still held goes with the mesh
      const kept = ta.put(new Float32Array(N).fill(2));
      assert.equal(await mesh.run(() => onA.use.go(kept, 1)), expected(2, 1));
      assert.equal(await storedObjects(a.port), 1);
      await mesh.close();
      assert.equal(await storedObjects(a.port), 0, "closing the mesh left the put value on A");
    });
  },
);

test(
  "put on node processes: the node holding a put value SIGKILLed, the next call elsewhere gets it stored again from the driver's copy",
  T,
  async () => {
    await twoNodes(async (a, b, mesh) => {
      const onA = PutOnA.init(), onB = PutOnB.init();
      const ref = ta.put(new Float32Array(N).fill(3));
      assert.equal(await mesh.run(() => onA.use.go(ref, 1)), expected(3, 1)); // stored on A
      assert.equal(await mesh.run(() => onB.use.go(new Float32Array(1), 0)), 1); // B's instance made
      assert.equal(await storedObjects(a.port), 1);
      a.kill("SIGKILL");
      await a.exited;
      // B cannot pull it any more: the driver stores it on B and sends the call again
      assert.equal(await mesh.run(() => onB.use.go(ref, 3)), expected(3, 3));
      assert.equal(await storedObjects(b.port), 1, "the value was not stored again on B");
      const out = await mesh.run(() => ta.all(Array.from({ length: 50 }, (_, i) => onB.use.go(ref, i))));
      assert.deepEqual(out, Array.from({ length: 50 }, (_, i) => expected(3, i)));
      assert.equal(await ref instanceof Float32Array, true);
    });
  },
);
