// The Python seed's API as its users know it (CpuDevice(id), mesh totals, handle.config,
// getCurrentMesh), each in the form thinkagain gives it.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../mod.ts";

test("CpuDevice(0) is the seed's CPU device: an id, with the cores it offers in options", async () => {
  const cpu = new ta.CpuDevice(0);
  assert.equal(cpu.id, 0);
  assert.equal(cpu.cores, Infinity, "no core count: not limited");
  assert.equal(new ta.CpuDevice().id, 0);
  assert.deepEqual([new ta.CpuDevice(1, { cores: 8 }).id, new ta.CpuDevice(1, { cores: 8 }).cores], [1, 8]);
  await using seedMesh = new ta.Mesh([new ta.GpuDevice(0), new ta.GpuDevice(1), new ta.CpuDevice(0)]);
  assert.equal(seedMesh.nodes.length, 1);
  assert.equal(seedMesh.totalGpus, 2);
  assert.equal(seedMesh.totalCpus, Infinity);
  await using counted = new ta.Mesh([new ta.CpuDevice(0, { cores: 4 }), new ta.CpuDevice(1, { cores: 4 })]);
  assert.equal(counted.totalCpus, 8, "the cores of both CPUs");
  const found = await ta.devices();
  const last = found.at(-1) as ta.CpuDevice;
  assert.ok(last instanceof ta.CpuDevice && last.id === 0 && last.cores >= 1, "devices() states the cores");
});

test("Mesh.totalGpus and totalCpus add up the nodes, Infinity where a node is not limited", async () => {
  await using mesh = new ta.Mesh([
    new ta.MeshNode("server1", { gpus: 8, cpus: 32 }),
    new ta.MeshNode("server2", { gpus: 8, cpus: 32 }),
  ]);
  assert.equal(mesh.totalGpus, 16);
  assert.equal(mesh.totalCpus, 64);
  await using open = new ta.Mesh([new ta.MeshNode("a", { gpus: 2 }), new ta.MeshNode("b")]);
  assert.equal(open.totalGpus, 2, "a node states no GPUs: none");
  assert.equal(open.totalCpus, Infinity, "a node states no cores: not limited");
  await using gpuOnly = new ta.Mesh([new ta.MeshNode("g", { gpus: [new ta.GpuDevice(3)] })]);
  assert.equal(gpuOnly.totalGpus, 1);
});

test("handle.config gives the service's settings, defaults filled in; a method named config wins", async () => {
  const Gpu = ta.service(
    { gpus: 4, retries: 2 },
    class SeedGpuProcessor {
      async run(prompt: string) {
        return prompt;
      }
    },
  );
  const handle = Gpu.init();
  assert.equal(handle.config.gpus, 4);
  assert.deepEqual(handle.config, {
    name: "SeedGpuProcessor",
    gpus: 4,
    cpus: 0,
    replicas: 1,
    maxConcurrency: 1,
    retries: 2,
    timeoutMs: undefined,
    description: undefined,
  });
  assert.equal(Gpu.options.gpus, 4, "and from the class, as declared");
  assert.equal(Gpu.options.cpus, undefined);
  assert.ok(Object.isFrozen(handle.config));
  const Configured = ta.service(
    class SeedConfigured {
      config(key: string) {
        return `value of ${key}`;
      }
    },
  );
  const c = Configured.init();
  assert.equal(await c.config("k"), "value of k", "the service's own method");
  assert.equal(Configured.options.name, "SeedConfigured");
});

test("getCurrentMesh is the mesh of the surrounding mesh.run, in ops and service methods too", async () => {
  await using outer = new ta.Mesh([new ta.MeshNode("a")], { name: "outer" });
  await using inner = new ta.Mesh([new ta.MeshNode("b")], { name: "inner" });
  const Where = ta.service(
    class SeedWhere {
      mesh() {
        return ta.getCurrentMesh()?.name;
      }
    },
  );
  const where = Where.init();
  const inOp = ta.op(async function seedMeshOfOp() {
    return ta.getCurrentMesh();
  });
  assert.equal(ta.getCurrentMesh(), undefined, "outside any mesh.run");
  assert.equal(await outer.run(() => ta.getCurrentMesh()), outer);
  assert.equal(await outer.run(() => inOp.go()), outer);
  assert.equal(await outer.run(() => where.mesh.go()), "outer");
  assert.equal(await outer.run(() => inner.run(() => inOp.go())), inner, "the innermost run");
  assert.equal(await inOp.go(), undefined, "no mesh: the default runtime has no Mesh");
});
