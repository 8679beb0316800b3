import { test } from "node:test";
import assert from "node:assert/strict";
import { Effect, Layer } from "effect";
import * as ta from "../mod.ts";
import { collectUntil, eventually, gate, gcFunction, rejection, settlesWithin, sleep } from "./_test_utils.ts";

const Generator = ta.service(
  { gpus: 4 },
  class MeshGenerator {
    async generate(q: string) {
      return `gen(${q}) on gpus ${ta.currentInstanceGpus()!.map((g) => g.id).join(",")}`;
    }
  },
);

test("Mesh places GPU services across a 3-node mesh and assigns distinct GPUs", async () => {
  await using mesh = new ta.Mesh([
    new ta.MeshNode("n1", { gpus: 8, cpus: 32 }),
    new ta.MeshNode("n2", { gpus: 8, cpus: 32 }),
    new ta.MeshNode("n3", { gpus: 8, cpus: 32 }),
  ]);
  await mesh.run(async () => {
    const handles = Array.from({ length: 6 }, () => Generator.init());
    const outs = await Promise.all(handles.map((h) => h.generate.go("q")));
    assert.equal(outs.length, 6);
  });
  const s = mesh.stats();
  assert.equal(s.instances.length, 6);
  const perNode = new Map<string, number[][]>();
  for (const i of s.instances) perNode.set(i.node, [...(perNode.get(i.node) ?? []), [...i.gpus]]);
  assert.deepEqual([...perNode.keys()].sort(), ["n1", "n2", "n3"], "spread over all nodes");
  for (const [, gpuSets] of perNode) {
    const all = gpuSets.flat();
    assert.equal(new Set(all).size, all.length, "no GPU is given twice on a node");
    assert.equal(all.length, 8);
  }
  for (const n of s.nodes) assert.equal(n.gpus.free, 0);
});

test("PlacementError says what was asked and the most any node has free", async () => {
  const Big = ta.service(
    { gpus: 4, name: "Big" },
    class {
      f() {}
    },
  );
  await using mesh = new ta.Mesh([new ta.MeshNode("server1", { gpus: 2 }), new ta.MeshNode("server2", { gpus: 1 })]);
  await mesh.run(() => {
    assert.throws(
      () => Big.init(),
      (e: unknown) =>
        e instanceof ta.PlacementError &&
        e.message === 'Cannot place service "Big": needs 4 GPUs, the largest free on any node is 2 (server1)',
    );
  });
  const CpuHeavy = ta.service(
    { cpus: 16, name: "CpuHeavy" },
    class {
      f() {}
    },
  );
  await using mesh2 = new ta.Mesh([new ta.MeshNode("a", { cpus: 8 })]);
  const big = CpuHeavy.init(); // created outside a mesh: placed on first use, which fails
  const e = await mesh2.run(() => rejection(big.f.go()));
  assert.ok(e instanceof ta.PlacementError);
  assert.match(e.message, /needs 16 CPUs, the largest free on any node is 8 \(a\)/);
  assert.equal(mesh2.stats().instances.length, 0, "a failed placement holds no resources");
});

test("replicas are placed all or nothing", async () => {
  const R = ta.service(
    { gpus: 1, replicas: 3, name: "R3" },
    class {
      f() {}
    },
  );
  await using mesh = new ta.Mesh([new ta.MeshNode("a", { gpus: 1 }), new ta.MeshNode("b", { gpus: 1 })]);
  await mesh.run(() => assert.throws(() => R.init(), /replica 3 of 3 of service "R3"/));
  assert.deepEqual(mesh.stats().nodes.map((n) => n.gpus.free), [1, 1]);
});

test("a Mesh built from devices is one local node with those resources", async () => {
  await using mesh = new ta.Mesh([new ta.GpuDevice(0), new ta.GpuDevice(1), new ta.CpuDevice(0, { cores: 4 })]);
  const s = mesh.stats();
  assert.equal(s.nodes.length, 1);
  assert.equal(s.nodes[0].gpus.total, 2);
  assert.equal(s.nodes[0].cpus.total, 4);
});

test("nested .go() inside ops and service methods uses the mesh of mesh.run", async () => {
  const Where = ta.service(
    { cpus: 1 },
    class Where {
      node() {
        return ta.currentInstance()!.node;
      }
    },
  );
  const w = Where.init();
  const inner = ta.op(async function inner() {
    return await w.node.go();
  });
  const outer = ta.op(async function outer() {
    await sleep(1);
    return await inner.go();
  });
  await using mesh = new ta.Mesh([new ta.MeshNode("only", { cpus: 1 })]);
  assert.equal(await mesh.run(() => outer.go()), "only");
  assert.equal(mesh.stats().instances[0].node, "only");
  assert.equal(await w.node(), "only", "outside mesh.run the handle calls the instance it was placed with");
});

test("mesh.close disposes instances and cancels calls that had not started", async () => {
  const disposed: string[] = [];
  let starts = 0;
  const release = gate();
  const A = ta.service(
    class A {
      async slow() {
        starts++;
        await release.promise;
        return "done";
      }
      async [Symbol.asyncDispose]() {
        disposed.push("A");
      }
    },
  );
  const B = ta.service(
    class B {
      ping() {
        return "pong";
      }
      close() {
        disposed.push("B");
      }
    },
  );
  const mesh = new ta.Mesh([new ta.MeshNode("n")]);
  const [running, queued] = await mesh.run(async () => {
    const a = A.init();
    B.init();
    const r = a.slow.go();
    assert.ok(await eventually(() => starts === 1), "the first call started");
    return [r, a.slow.go()];
  });
  const closed = mesh.close();
  release.open();
  await closed;
  assert.equal(starts, 1, "the queued call never started");
  assert.equal(await running, "done", "a running call finishes before disposal");
  assert.ok((await rejection(queued)) instanceof ta.CancelledError);
  assert.deepEqual(disposed.sort(), ["A", "B"]);
  assert.equal(mesh.closed, true);
  await assert.rejects(mesh.run(() => 1), /closed/);
  await mesh.close(); // idempotent
});

test("mesh maxConcurrentOps bounds the ops running at once", async () => {
  let running = 0, peak = 0;
  const release = gate();
  const work = ta.op(async function work() {
    running++;
    peak = Math.max(peak, running);
    await release.promise;
    running--;
  });
  await using mesh = new ta.Mesh([new ta.MeshNode("n")], { maxConcurrentOps: 3 });
  const all = mesh.run(() => Promise.all(Array.from({ length: 12 }, () => work.go())));
  assert.ok(await eventually(() => running === 3), `${running} ops running at once, not 3`);
  release.open();
  await all;
  assert.equal(peak, 3);
});

test("Mesh and MeshNode reject bad input with clear errors", () => {
  assert.throws(() => new ta.Mesh("x" as never), TypeError);
  assert.throws(() => new ta.Mesh([]), /at least one node/);
  assert.throws(() => new ta.Mesh([new ta.MeshNode("a"), new ta.MeshNode("a")]), /two nodes named "a"/);
  assert.throws(() => new ta.Mesh([new ta.MeshNode("a"), new ta.GpuDevice(0)] as never), /not a mix/);
  assert.throws(() => new ta.MeshNode(""), TypeError);
  assert.throws(() => new ta.MeshNode("a", { gpus: -2 }), RangeError);
  assert.throws(() => new ta.MeshNode("a", { gpus: 1.5 }), RangeError);
  assert.throws(() => new ta.MeshNode("a", { endpoint: "not a url" }), TypeError);
  assert.throws(() => new ta.Mesh([new ta.MeshNode("a")], { maxConcurrentOps: 0 }), RangeError);
  assert.throws(() => new ta.GpuDevice(-1), TypeError);
  assert.throws(() => new ta.CpuDevice(-1), /CpuDevice id must be a non-negative integer/);
  assert.throws(() => new ta.CpuDevice(0, { cores: 0 }), RangeError);
  assert.throws(() => new ta.CpuDevice(0, 8 as never), /options must be an object such as \{ cores: 8 \}/);
});

test("devices() lists provider GPUs and the CPU count", async () => {
  const off = ta.registerDeviceProvider(async () => [new ta.GpuDevice(0, { name: "fake-gpu" })]);
  try {
    const found = await ta.devices();
    const gpus = found.filter((d) => d instanceof ta.GpuDevice);
    assert.equal(gpus.length, 1);
    assert.equal((gpus[0] as ta.GpuDevice).name, "fake-gpu");
    assert.ok(found.at(-1) instanceof ta.CpuDevice);
  } finally {
    off();
  }
});

test("Mesh.fromConfig builds a mesh from an object or a JSON file and names bad fields", async () => {
  const mesh = await ta.Mesh.fromConfig({
    name: "cfg",
    transport: "http",
    nodes: [{ name: "a", gpus: 2, endpoint: "ws://127.0.0.1:1" }],
  });
  assert.equal(mesh.name, "cfg");
  assert.equal(mesh.options.transport, "http");
  assert.equal(mesh.nodes[0].endpoint, "ws://127.0.0.1:1");
  await mesh.close();
  const { writeFileSync, mkdtempSync } = await import("node:fs");
  const { join } = await import("node:path");
  const { tmpdir } = await import("node:os");
  const file = join(mkdtempSync(join(tmpdir(), "ta-cfg-")), "mesh.json");
  writeFileSync(file, JSON.stringify({ nodes: [{ name: "x", cpus: 3 }, { name: "y" }] }));
  const fromFile = await ta.Mesh.fromConfig(file);
  assert.deepEqual(fromFile.nodes.map((n) => n.name), ["x", "y"]);
  await fromFile.close();
  await assert.rejects(ta.Mesh.fromConfig({} as never), /needs a "nodes" array/);
  await assert.rejects(
    ta.Mesh.fromConfig({ nodes: [{ name: "a" }], trasnport: "http" } as never),
    /unknown field "trasnport"; did you mean "transport"\?/,
  );
  await assert.rejects(
    ta.Mesh.fromConfig({ nodes: [{ name: "a" }], transport: "carrier-pigeon" } as never),
    /transport must be/,
  );
  await assert.rejects(ta.Mesh.fromConfig(join(tmpdir(), "does-not-exist.json")), /cannot read/);
});

test("Mesh.fromConfig reads a config file afresh on every call, and names the file when it is not JSON", async () => {
  const { writeFile, mkdtemp } = await import("node:fs/promises");
  const { join } = await import("node:path");
  const { tmpdir } = await import("node:os");
  const { pathToFileURL } = await import("node:url");
  const file = join(await mkdtemp(join(tmpdir(), "ta-cfg-fresh-")), "mesh.json");
  await writeFile(file, JSON.stringify({ name: "first", nodes: [{ name: "a" }] }));
  const first = await ta.Mesh.fromConfig(file);
  await first.close();
  await writeFile(file, JSON.stringify({ name: "second", nodes: [{ name: "b", cpus: 2 }] }));
  const second = await ta.Mesh.fromConfig(file);
  await second.close();
  assert.deepEqual([first.name, ...first.nodes.map((n) => n.name)], ["first", "a"]);
  assert.deepEqual([second.name, ...second.nodes.map((n) => n.name)], ["second", "b"], "the file as it is now");
  // a file: URL is read afresh too
  await writeFile(file, JSON.stringify({ name: "third", nodes: [{ name: "c" }] }));
  const third = await ta.Mesh.fromConfig(pathToFileURL(file));
  await third.close();
  assert.equal(third.name, "third");
  await writeFile(file, '{ "nodes": [ { "name": "a" }, ] }');
  await assert.rejects(ta.Mesh.fromConfig(file), (e: unknown) => {
    assert.ok(e instanceof TypeError, `expected a TypeError, got ${e}`);
    assert.match(e.message, /^Mesh\.fromConfig: .*mesh\.json is not valid JSON: /);
    return true;
  });
});

test("GPU shares: services with gpus below 1 split one GPU until the shares add up to 1", async () => {
  const Half = ta.service(
    { gpus: 0.5, name: "Half" },
    class {
      gpu() {
        return ta.currentInstanceGpus()!.map((g) => g.id);
      }
    },
  );
  const Whole = ta.service(
    { gpus: 1, name: "WholeGpu" },
    class {
      gpu() {
        return ta.currentInstanceGpus()!.map((g) => g.id);
      }
    },
  );
  await using mesh = new ta.Mesh([new ta.MeshNode("n", { gpus: 2 })]);
  await mesh.run(async () => {
    const a = Half.init(), b = Half.init();
    assert.deepEqual(await a.gpu.go(), await b.gpu.go(), "two halves share one GPU");
    const w = Whole.init();
    assert.notDeepEqual(await w.gpu.go(), await a.gpu.go(), "a whole GPU is not one already shared");
    assert.throws(
      () => Half.init(),
      (e: unknown) => e instanceof ta.PlacementError && /needs 0\.5 of a GPU/.test(e.message),
    );
  });
  assert.equal(mesh.stats().nodes[0].gpus.free, 0);
  assert.throws(() =>
    ta.service(
      { gpus: 1.5 },
      class X {
        f() {}
      },
    ), /whole number ≥ 0 or a share/);
  assert.throws(() =>
    ta.service(
      { gpus: 0.0001 },
      class Y {
        f() {}
      },
    ), RangeError);
});

test("GPU shares are returned when the mesh closes and a whole GPU fits again", async () => {
  const Quarter = ta.service(
    { gpus: 0.25, name: "Quarter" },
    class {
      f() {}
    },
  );
  const mesh = new ta.Mesh([new ta.MeshNode("n", { gpus: 1 })]);
  await mesh.run(() => {
    for (let i = 0; i < 4; i++) Quarter.init();
    assert.throws(() => Quarter.init(), ta.PlacementError);
  });
  assert.equal(mesh.stats().nodes[0].gpus.free, 0);
  await mesh.close();
  assert.equal(mesh.stats().nodes[0].gpus.free, 1);
});

test("mesh.close({ graceMs }) stops waiting for a call that never finishes: it is cancelled, the instance disposed", async () => {
  const disposed: string[] = [];
  const Stuck = ta.service(
    { name: "Stuck" },
    class {
      hang() {
        return new Promise(() => {}); // never settles
      }
      close() {
        disposed.push("Stuck");
      }
    },
  );
  const mesh = new ta.Mesh([new ta.MeshNode("n")]);
  const [ref] = await mesh.run(async () => {
    const s = Stuck.init();
    const r = s.hang.go();
    await sleep(1);
    return [r];
  });
  await mesh.close({ graceMs: 20 });
  assert.ok((await rejection(ref)) instanceof ta.CancelledError);
  assert.deepEqual(disposed, ["Stuck"]);
  await assert.rejects(new ta.Mesh([new ta.MeshNode("m")]).close({ graceMs: -1 }), RangeError);
  await assert.rejects(
    new ta.Mesh([new ta.MeshNode("m")]).close({ graceMs: NaN }),
    /mesh\.close: graceMs must be a number of ms ≥ 0 \(Infinity: no limit\), got number NaN/,
  );
});

test("mesh.close({ graceMs }) of Infinity or of 2^31 ms or more waits for running calls instead of cancelling them", async () => {
  let running = gate(), release = gate();
  const disposed: string[] = [];
  const Held = ta.service(
    { name: "HeldAtClose" },
    class {
      async work(x: number) {
        running.open();
        await release.promise;
        return x;
      }
      close() {
        disposed.push("HeldAtClose");
      }
    },
  );
  for (const graceMs of [Infinity, 2 ** 31 + 10, 1e10]) {
    running = gate();
    release = gate();
    const mesh = new ta.Mesh([new ta.MeshNode("n")]);
    const [ref] = await mesh.run(() => [Held.init().work.go(7)]);
    await running.promise; // a call not started when the mesh closes is cancelled, as it should be
    let closed = false;
    const closing = mesh.close({ graceMs }).then(() => (closed = true));
    // setTimeout takes 2^31 ms or more for 1 ms: such a timer has fired by now
    for (let i = 0; i < 3; i++) await new Promise((r) => setTimeout(r, 1));
    assert.equal(ref.status, "running", `graceMs ${graceMs}: the running call was cancelled`);
    assert.equal(closed, false, `graceMs ${graceMs}: closed before the running call finished`);
    release.open();
    assert.equal(await ref, 7, `graceMs ${graceMs}`);
    await closing;
  }
  assert.deepEqual(disposed, ["HeldAtClose", "HeldAtClose", "HeldAtClose"]);
});

test("mesh.close waits for the op calls running in the mesh, as for running method calls, and disposes the instances after them", async () => {
  const started = gate(), release = gate<number>();
  const order: string[] = [];
  const Res = ta.service(
    class CloseAfterOpsRes {
      use() {
        return 1;
      }
      close() {
        order.push("disposed");
      }
    },
  );
  const runsAtClose = ta.op(async function runsAtClose() {
    started.open();
    const v = await release.promise;
    order.push("op done");
    return v;
  });
  const mesh = new ta.Mesh([new ta.MeshNode("n")]);
  const [ref] = await mesh.run(async () => {
    await Res.init().use.go();
    return [runsAtClose.go()];
  });
  await started.promise;
  let closed = false;
  const closing = mesh.close().then(() => (closed = true));
  for (let i = 0; i < 3; i++) await new Promise((r) => setTimeout(r, 1));
  assert.equal(closed, false, "close() returned while an op of the mesh ran");
  assert.equal(ref.status, "running");
  release.open(7);
  await closing;
  assert.equal(ref.status, "completed");
  assert.equal(await ref, 7);
  assert.deepEqual(order, ["op done", "disposed"]);
});

test("mesh.close() awaited inside an op of the mesh returns: that op, and the op waiting for it, are not waited for", async () => {
  const besideStarted = gate(), release = gate();
  const order: string[] = [];
  const beside = ta.op(async function runsBesideCloser() {
    besideStarted.open();
    await release.promise;
    order.push("beside done");
  });
  const mesh = new ta.Mesh([new ta.MeshNode("n")]);
  const closer = ta.op(async function closesItsMesh() {
    await besideStarted.promise;
    const closing = mesh.close();
    release.open();
    await closing;
    order.push("closed");
    return "closed";
  });
  const outer = ta.op(async function waitsForCloser() {
    return await closer.go();
  });
  const [ref] = await mesh.run(() => [outer.go(), beside.go()]);
  assert.equal(await settlesWithin(ref, 20_000), true, "the close waited for the op closing it");
  assert.equal(await ref, "closed");
  assert.deepEqual(order, ["beside done", "closed"], "the other running op was waited for");
});

test("mesh.close() awaited inside a method of the mesh: its instance is disposed when the method ends, the others at close", async () => {
  const order: string[] = [];
  const mesh = new ta.Mesh([new ta.MeshNode("n")]);
  const Closer = ta.service(
    class ClosesItsOwnMesh {
      async shutdown() {
        await mesh.close();
        order.push("close returned");
        await Promise.resolve();
        order.push("method ends");
        return "done";
      }
      [Symbol.dispose]() {
        order.push("closer disposed");
      }
    },
  );
  const Other = ta.service(
    class DisposedWithTheMesh {
      ping() {
        return 1;
      }
      [Symbol.dispose]() {
        order.push("other disposed");
      }
    },
  );
  const [ref] = await mesh.run(async () => {
    const other = Other.init();
    await other.ping();
    return [Closer.init().shutdown.go()];
  });
  assert.equal(await settlesWithin(ref, 20_000), true, "the close waited for the method closing it");
  assert.equal(await ref, "done");
  assert.ok(await eventually(() => order.includes("closer disposed")), "the closer was disposed");
  assert.deepEqual(order, ["other disposed", "close returned", "method ends", "closer disposed"]);
});

test('mesh.close({ graceMs }) cancels the op and method calls still running past it with reason "mesh-closed"', async () => {
  const opStarted = gate(), callStarted = gate();
  const forever = new Promise<never>(() => {});
  const neverEnds = ta.op(async function neverEndsAtClose() {
    opStarted.open();
    return await forever;
  });
  const Hang = ta.service(
    class HangsAtClose {
      async hang() {
        callStarted.open();
        return await forever;
      }
    },
  );
  const mesh = new ta.Mesh([new ta.MeshNode("n")], { name: "graced" });
  const [op, call] = await mesh.run(() => [neverEnds.go(), Hang.init().hang.go()]);
  await opStarted.promise;
  await callStarted.promise;
  await mesh.close({ graceMs: 0 });
  assert.equal(op.status, "cancelled", "an op still running past graceMs is cancelled");
  assert.equal(call.status, "cancelled");
  for (const ref of [op, call]) {
    const e = await rejection(ref);
    assert.ok(e instanceof ta.CancelledError, `${ref.id}: ${e}`);
    assert.equal(e.reason, "mesh-closed", ref.id);
    assert.match(e.message, /was cancelled: mesh "graced" closed and its graceMs \(0 ms\) passed/);
  }
});

test('mesh.close: a service call not started when the mesh closed has reason "mesh-closed", as an op\'s has', async () => {
  const started = gate(), release = gate();
  const input = ta.op(async function closeReasonInput() {
    await release.promise;
    return 1;
  });
  const Svc = ta.service(
    class CloseReasonSvc {
      async w(_x?: number) {
        started.open();
        await release.promise;
        return 1;
      }
    },
  );
  const mesh = new ta.Mesh([new ta.MeshNode("n")]);
  const [running, queued, waitsForInput] = await mesh.run(() => {
    const s = Svc.init();
    return [s.w.go(), s.w.go(), s.w.go(input.go())];
  });
  await started.promise;
  const closing = mesh.close();
  for (const ref of [queued, waitsForInput]) {
    const e = await rejection(ref);
    assert.ok(e instanceof ta.CancelledError, `${ref.id}: ${e}`);
    assert.equal(e.reason, "mesh-closed", ref.id);
    assert.match(e.message, /not started: the mesh closed/);
  }
  release.open();
  assert.equal(await running, 1);
  await closing;
});

test("a task submitted outside any mesh does not take the mesh it happened to be started from", async () => {
  const noop = ta.op(function noopHere() {
    return 0;
  });
  const where = ta.op(function whereAmI() {
    return ta.currentInstance()?.service ?? "no instance";
  });
  const Echo = ta.service(
    class EchoOutside {
      hi() {
        return "hi";
      }
    },
  );
  const handle = Echo.init(); // outside any mesh: the default runtime
  const viaHandle = ta.op(async function viaHandle() {
    return await handle.hi.go();
  });
  const mesh = new ta.Mesh([new ta.MeshNode("m")]);
  void mesh.run(() => {
    noop.go(); // the ready queue's drain is scheduled from inside the mesh
  });
  const outside = viaHandle.go(); // but this one was submitted outside it
  const w = where.go();
  assert.equal(await outside, "hi");
  assert.equal(await w, "no instance");
  assert.equal(mesh.stats().instances.length, 0, "nothing was placed in the unrelated mesh");
  await mesh.close();
});

test("with mesh maxConcurrentOps, 100k queued synchronous ops run after a slow one, and a cancelled waiter frees its op slot", async () => {
  const mesh = new ta.Mesh([new ta.MeshNode("n")], { maxConcurrentOps: 1 });
  const slow = ta.op(async function slowFirst() {
    await sleep(10);
    return 0;
  });
  const inc = ta.op(function incSync(x: number) {
    return x + 1;
  });
  const limited = ta.op({ name: "limitedOne", maxConcurrency: 1 }, async (x: number) => x);
  await mesh.run(async () => {
    const first = slow.go();
    const refs = Array.from({ length: 100_000 }, (_, i) => inc.go(i));
    await first;
    const out = await ta.all(refs);
    assert.equal(out[99_999], 100_000);
    // a call of a concurrency-1 op waits for the mesh slot, holding its op slot; cancelled, it gives it back
    const release = gate();
    const holder = ta.op(async function holdsTheMeshSlot() {
      await release.promise;
    });
    const hold = holder.go();
    await sleep(1);
    const waiting = limited.go(1);
    await sleep(1);
    assert.equal(waiting.status, "pending", "waits for the mesh slot");
    assert.equal(waiting.cancel(), true);
    release.open();
    await hold;
    assert.equal(await limited.go(2), 2, "the op's slot was freed");
  });
  await mesh.close();
});

test("mesh.close cancels an op waiting for its input: CancelledError says the mesh closed, the op never runs, its running input finishes before close returns", async () => {
  const release = gate<number>();
  let ran = 0;
  const slowInput = ta.op(async function slowInput() {
    return await release.promise;
  });
  const after = ta.op(function afterInput(x: number) {
    ran++;
    return x;
  });
  const mesh = new ta.Mesh([new ta.MeshNode("n")], { name: "m1" });
  const [input, waiting] = await mesh.run(() => {
    const i = slowInput.go();
    return [i, after.go(i)];
  });
  assert.equal(input.status, "running");
  const closing = mesh.close();
  assert.equal(waiting.status, "cancelled", "settled by close() itself");
  assert.equal(input.status, "running", "a running op keeps running");
  release.open(7);
  await closing; // waits for the running op
  assert.equal(input.status, "completed");
  assert.equal(await input, 7);
  const e = await rejection(waiting);
  assert.ok(e instanceof ta.CancelledError);
  assert.equal(e.op, "afterInput");
  assert.equal(e.message, 'Op "afterInput" was not started: mesh "m1" closed');
  assert.equal(ran, 0, "its input completed after the close, but it did not start");
});

test("mesh.close settles a whole DAG of waiting ops and service calls, and none of them runs", async () => {
  const release = gate();
  let ran = 0;
  const root = ta.op(async function dagRoot() {
    await release.promise;
    return 1;
  });
  const step = ta.op(function dagStep(x: number) {
    ran++;
    return x + 1;
  });
  const merge = ta.op(function dagMerge(xs: number[], o: { k: number }) {
    ran++;
    return xs[0] + xs[1] + o.k;
  });
  const Sink = ta.service(
    class DagSink {
      put(x: number) {
        ran++;
        return x;
      }
    },
  );
  const mesh = new ta.Mesh([new ta.MeshNode("n")], { name: "dag" });
  const { r, waiting } = await mesh.run(() => {
    const r = root.go();
    const a = step.go(r), b = step.go(a), c = step.go(r);
    const m = merge.go([a, b], { k: c }); // refs nested in an array and an object
    const s = Sink.init().put.go(m); // a service call waiting for an op
    return { r, waiting: [a, b, c, m, s, step.go(s), step.go(step.go(s))] };
  });
  const closing = mesh.close();
  assert.deepEqual(waiting.map((w) => w.status), waiting.map(() => "cancelled"));
  release.open();
  await closing;
  assert.equal(await r, 1);
  for (const w of waiting) {
    const e = await rejection(w);
    assert.ok(e instanceof ta.CancelledError, `${w.id}: ${e}`);
    assert.match(e.message, /not started: .*mesh.* closed/);
  }
  assert.equal(ran, 0);
});

test("mesh.close cancels calls queued for a slot (the mesh's maxConcurrentOps, an op's maxConcurrency, a service's maxConcurrency) and gives the slots back; running ones finish", async () => {
  const release = gate();
  const holder = ta.op(async function holdsMeshSlotAtClose() {
    await release.promise;
    return "held";
  });
  const limited = ta.op({ name: "limitedAtClose", maxConcurrency: 1 }, async (x: number) => x);
  const Busy = ta.service(
    { maxConcurrency: 2 },
    class BusyAtClose {
      async work(x: number) {
        await release.promise;
        return x;
      }
    },
  );
  const mesh = new ta.Mesh([new ta.MeshNode("n")], { maxConcurrentOps: 1 });
  const { hold, viaMesh, viaOp, running, queued } = await mesh.run(() => {
    const hold = holder.go();
    const viaMesh = limited.go(1); // holds limitedAtClose's slot while it waits for the mesh's
    const viaOp = limited.go(2); // waits for limitedAtClose's slot
    const b = Busy.init();
    return { hold, viaMesh, viaOp, running: [b.work.go(1), b.work.go(2)], queued: b.work.go(3) };
  });
  assert.deepEqual(
    [hold, viaMesh, viaOp, ...running, queued].map((r) => r.status),
    ["running", "pending", "pending", "running", "running", "pending"],
  );
  const closing = mesh.close();
  for (const r of [viaMesh, viaOp, queued]) assert.equal(r.status, "cancelled", r.id);
  release.open();
  await closing; // waits for the running service calls, which the gate let finish
  assert.deepEqual(await ta.all(running), [1, 2]);
  assert.equal(await hold, "held");
  for (const r of [viaMesh, viaOp, queued]) assert.ok((await rejection(r)) instanceof ta.CancelledError, r.id);
  assert.equal(await limited.go(5), 5, "the op's slot was given back (else this waits forever)");
});

test("mesh.close cancels 100k waiting ops at once (a fanout on one input, a chain, a queue behind maxConcurrentOps) without deep recursion", async () => {
  const release = gate();
  let ran = 0;
  const source = ta.op(async function bigSource() {
    await release.promise;
    return 0;
  });
  const inc = ta.op(function bigInc(x: number) {
    ran++;
    return x + 1;
  });
  const n = 100_000;
  const mesh = new ta.Mesh([new ta.MeshNode("n")], { maxConcurrentOps: 1 });
  const { s, fanout, chain, queued } = await mesh.run(() => {
    const s = source.go(); // holds the mesh's only slot
    const fanout = Array.from({ length: n }, () => inc.go(s));
    let last: ta.ObjectRef<number> = s;
    for (let i = 0; i < n; i++) last = inc.go(last);
    const queued = Array.from({ length: n }, (_, i) => inc.go(i)); // ready, waiting for the slot
    return { s, fanout, chain: last, queued };
  });
  const closing = mesh.close();
  assert.ok(fanout.every((r) => r.status === "cancelled"));
  assert.ok(queued.every((r) => r.status === "cancelled"));
  assert.equal(chain.status, "cancelled");
  release.open();
  await closing; // after the running source
  assert.equal(await s, 0);
  assert.ok((await rejection(ta.all(fanout))) instanceof ta.CancelledError);
  assert.ok((await rejection(ta.all(queued))) instanceof ta.CancelledError);
  assert.ok((await rejection(chain)) instanceof ta.CancelledError);
  assert.equal(ran, 0);
});

test("mesh.close is idempotent, and .go() in a closed mesh's context fails at once with CancelledError instead of running", async () => {
  const release = gate();
  let ran = 0;
  const late = ta.op(function lateOp(_after?: unknown) {
    ran++;
    return 1;
  });
  const Echo = ta.service(
    class EchoAfterClose {
      hi() {
        ran++;
        return "hi";
      }
    },
  );
  let echo!: ta.ServiceHandle<InstanceType<typeof Echo.cls>>;
  const body = ta.op(async function keepsRunningPastClose() {
    await release.promise;
    return [late.go(), echo.hi.go()]; // submitted after the close, in the closed mesh's context
  });
  const mesh = new ta.Mesh([new ta.MeshNode("n")], { name: "twice" });
  const [running, waiting] = await mesh.run(() => {
    echo = Echo.init();
    const r = body.go();
    return [r, late.go(r)];
  });
  const first = mesh.close();
  assert.equal(waiting.status, "cancelled");
  const e = waiting.error;
  assert.equal(mesh.close(), first, "a second close returns the same promise");
  assert.equal(waiting.error, e, "and cancels nothing again");
  release.open();
  await first;
  const refs = await running;
  for (const ref of refs) {
    const err = await rejection(ref);
    assert.ok(err instanceof ta.CancelledError);
    assert.match(err.message, /not started: mesh "twice" is closed/);
  }
  assert.equal(ran, 0);
  await mesh.close();
  await mesh[Symbol.asyncDispose]();
  await assert.rejects(mesh.run(() => 1), /closed/);
});

test("closing a mesh leaves the ops of another mesh and of no mesh alone", async () => {
  const release = gate<number>();
  const input = ta.op(async function sharedInput() {
    return await release.promise;
  });
  const plus = ta.op(function plusOne(x: number) {
    return x + 1;
  });
  const shared = input.go(); // outside any mesh
  const outside = plus.go(shared);
  const closed = new ta.Mesh([new ta.MeshNode("a")], { name: "closed" });
  const open = new ta.Mesh([new ta.MeshNode("b")], { name: "open" });
  const [inClosed] = await closed.run(() => [plus.go(shared)]); // in an array: run() would await a ref
  const [inOpen] = await open.run(() => [plus.go(shared)]);
  await closed.close();
  assert.equal(inClosed.status, "cancelled");
  release.open(1);
  assert.equal(await outside, 2);
  assert.equal(await inOpen, 2);
  await open.close();
});

test(
  "in a mesh, results are released once their refs are dropped (the mesh keeps only calls not yet settled)",
  { skip: gcFunction() ? false : "no GC hook on this runtime" },
  async () => {
    const gc = gcFunction()!;
    let collected = 0;
    const registry = new FinalizationRegistry(() => collected++);
    const make = ta.op(async function makeInMesh(i: number) {
      const big = { payload: new Array(100).fill(i) };
      registry.register(big, i);
      return big;
    });
    const n = 2_000;
    await using mesh = new ta.Mesh([new ta.MeshNode("n")]);
    await mesh.run(async () => {
      const refs = Array.from({ length: n }, (_, i) => make.go(i));
      await Promise.all(refs);
    });
    await collectUntil(gc, () => collected, n * 0.9);
    assert.ok(collected >= n * 0.9, `only ${collected} of ${n} results were collected`);
  },
);

test(
  "calls cancelled by mesh.close while they waited for a slot are let go at once, though the slot stays taken",
  { skip: gcFunction() ? false : "no GC hook on this runtime" },
  async () => {
    const gc = gcFunction()!;
    const release = gate();
    const wedged = ta.op({ name: "wedgedAtClose", maxConcurrency: 1 }, async (_i: number) => {
      await release.promise;
    });
    const hog = ta.op(async function hogsMeshSlot() {
      await release.promise;
    });
    let collected = 0;
    const registry = new FinalizationRegistry(() => collected++);
    const n = 1_000;
    const holder = wedged.go(-1); // outside any mesh: holds the op's only slot until the end
    const byOp = new ta.Mesh([new ta.MeshNode("a")]);
    const byMesh = new ta.Mesh([new ta.MeshNode("b")], { maxConcurrentOps: 1 });
    let hogRef!: ta.ObjectRef<void>;
    await byOp.run(() => {
      for (let i = 0; i < n; i++) registry.register(wedged.go(i), i); // wait for the op's slot
    });
    await byMesh.run(() => {
      hogRef = hog.go(); // holds the mesh's only slot until the end
      for (let i = 0; i < n; i++) registry.register(hog.go(), i); // wait for the mesh's slot
    });
    await byOp.close();
    const closingByMesh = byMesh.close(); // waits for the running hog
    await collectUntil(gc, () => collected, 2 * n * 0.9);
    assert.ok(collected >= 2 * n * 0.9, `only ${collected} of ${2 * n} cancelled calls were collected`);
    assert.equal(byMesh.closed, true); // byMesh (and its limit) is still referenced here
    release.open();
    await closingByMesh;
    await holder;
    await hogRef;
  },
);

test("renamed options fail with a TypeError naming the new name: op concurrency, Mesh maxConcurrency, close timeoutMs", async () => {
  assert.throws(
    () => ta.op({ name: "oldConcurrency", concurrency: 1 } as ta.OpOptions, async () => 1),
    /"concurrency" is now "maxConcurrency"/,
  );
  assert.throws(
    () => new ta.Mesh([new ta.MeshNode("a")], { maxConcurrency: 1 } as ta.MeshOptions),
    /"maxConcurrency" is now "maxConcurrentOps"/,
  );
  const mesh = new ta.Mesh([new ta.MeshNode("a")]);
  await assert.rejects(mesh.close({ timeoutMs: 5 } as ta.MeshCloseOptions), /"timeoutMs" is now "graceMs"/);
  await mesh.close();
});

test("Mesh drops the whitespace around its token (a file's or a Secret's newline), as a node does with its --token-file", async () => {
  await using mesh = new ta.Mesh([new ta.MeshNode("tokenTrim")], { token: "s3cret-token\n" });
  assert.equal(mesh.options.token, "s3cret-token");
});

test("Mesh refuses a remote layer that needs async work with a TypeError naming options.remote; a failing one is named too, and what it acquired is released", async () => {
  const node = () => [new ta.MeshNode("a", { endpoint: "ws://127.0.0.1:9" })];
  const executor = { createReplica: () => assert.fail("not used"), opBody: () => undefined };
  const asyncLayer = Layer.effect(ta.RemoteExecutor, Effect.promise(async () => executor as never));
  assert.throws(
    () => new ta.Mesh(node(), { remote: asyncLayer }),
    (e: Error) => e instanceof TypeError && /options\.remote/.test(e.message) && /synchronously/.test(e.message),
  );
  let released = 0;
  const failing = Layer.effect(
    ta.RemoteExecutor,
    Effect.gen(function* () {
      yield* Effect.acquireRelease(Effect.void, () => Effect.sync(() => released++));
      return yield* Effect.fail(new Error("config missing"));
    }),
  ) as unknown as Layer.Layer<ta.RemoteExecutor>;
  assert.throws(() => new ta.Mesh(node(), { remote: failing }), /options\.remote .*: config missing/);
  assert.ok(await eventually(() => released === 1), "the layer's scope was closed");
});
