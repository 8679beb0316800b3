import { test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../mod.ts";
import { gate, rejection } from "./_test_utils.ts";

test("DEFAULT_MAX_QUEUED and DEFAULT_MAX_WAITING, the defaults the README names, are exported from the root", async () => {
  const { DEFAULT_MAX_QUEUED } = await import("./service_def.ts");
  const { DEFAULT_MAX_WAITING } = await import("./limiter.ts");
  assert.equal(ta.DEFAULT_MAX_QUEUED, DEFAULT_MAX_QUEUED);
  assert.equal(ta.DEFAULT_MAX_WAITING, DEFAULT_MAX_WAITING);
  assert.equal(ta.DEFAULT_MAX_QUEUED, 100_000);
});

test("service maxQueued: a burst beyond it gets OverloadedError for the excess; the rest completes", async () => {
  const started = gate();
  const release = gate();
  const Slow = ta.service(
    { name: "BpSlow", maxQueued: 3 },
    class {
      async work(i: number) {
        started.open();
        await release.promise;
        return i;
      }
    },
  );
  const slow = Slow.init();
  const first = slow.work.go(0);
  await started.promise; // one call runs: the mailbox holds only queued calls from here
  const burst = Array.from({ length: 9 }, (_, i) => slow.work.go(i + 1));
  const refused = await Promise.allSettled(burst.slice(3));
  for (const r of refused) {
    assert.equal(r.status, "rejected");
    const e = (r as PromiseRejectedResult).reason;
    assert.ok(e instanceof ta.OverloadedError, String(e));
    assert.match(e.message, /BpSlow\.work.*maxQueued 3/);
  }
  release.open();
  assert.deepEqual(await Promise.all([first, ...burst.slice(0, 3)]), [0, 1, 2, 3]);
  // room again once the queue drained
  release.open();
  assert.equal(await slow.work.go(42), 42);
});

test("service maxQueued counts the calls that wait for a slot: an idle instance with maxQueued 1 runs two calls made together and refuses the third, as an op's maxWaiting does", async () => {
  const release = gate();
  const Q1 = ta.service(
    { name: "BpIdleQ1", maxQueued: 1 },
    class {
      async work(i: number) {
        if (i >= 0) await release.promise;
        return i;
      }
    },
  );
  const q1 = Q1.init();
  await q1.work.go(-1); // the instance exists and is idle
  // made in one turn: the first is about to start on the free slot, the second waits, the third is refused
  const refs = [q1.work.go(0), q1.work.go(1), q1.work.go(2)];
  const e = await rejection(refs[2]);
  assert.ok(e instanceof ta.OverloadedError, String(e));
  assert.match(e.message, /BpIdleQ1\.work: its instance 0 on node "local" has 1 call queued \(maxQueued 1;/);
  // the op limiter in the same situation admits as many
  const op = ta.op({ name: "bpIdleW1", maxConcurrency: 1, maxWaiting: 1 }, async (i: number) => {
    await release.promise;
    return i;
  });
  const opRefs = [op.go(0), op.go(1), op.go(2)];
  assert.ok(await rejection(opRefs[2]) instanceof ta.OverloadedError);
  release.open();
  assert.deepEqual(await Promise.all([...refs.slice(0, 2), ...opRefs.slice(0, 2)]), [0, 1, 0, 1]);
});

test('service maxQueued "unbounded" never refuses; a bad value is a RangeError naming it', async () => {
  const release = gate();
  const Free = ta.service(
    { name: "BpFree", maxQueued: "unbounded" },
    class {
      async work(i: number) {
        await release.promise;
        return i;
      }
    },
  );
  const free = Free.init();
  const refs = Array.from({ length: 1_000 }, (_, i) => free.work.go(i));
  release.open();
  assert.equal((await Promise.all(refs)).length, 1_000);
  assert.throws(
    () =>
      ta.service(
        { name: "BpBad", maxQueued: 0 },
        class {
          m() {}
        },
      ),
    (e: unknown) =>
      e instanceof RangeError && /maxQueued must be an integer ≥ 1 or "unbounded", got number 0/.test(e.message),
  );
  assert.throws(
    () =>
      ta.service(
        { name: "BpBad2", maxQueued: "none" as unknown as number },
        class {
          m() {}
        },
      ),
    RangeError,
  );
});

test("op maxWaiting: ready calls beyond the waiting list fail with OverloadedError; the rest complete", async () => {
  const started = gate();
  const release = gate();
  const limited = ta.op({ name: "bpLimited", maxConcurrency: 1, maxWaiting: 2 }, async (i: number) => {
    started.open();
    await release.promise;
    return i;
  });
  const first = limited.go(0);
  await started.promise;
  const burst = Array.from({ length: 5 }, (_, i) => limited.go(i + 1));
  const settled = await Promise.allSettled(burst.slice(2));
  for (const r of settled) {
    assert.equal(r.status, "rejected");
    const e = (r as PromiseRejectedResult).reason;
    assert.ok(e instanceof ta.OverloadedError, String(e));
    assert.match(e.message, /op "bpLimited".*maxWaiting 2/);
  }
  release.open();
  assert.deepEqual(await Promise.all([first, ...burst.slice(0, 2)]), [0, 1, 2]);
  assert.throws(
    () => ta.op({ name: "bpBadOp", maxConcurrency: 1, maxWaiting: -1 }, () => 1),
    (e: unknown) => e instanceof RangeError && /op "bpBadOp": maxWaiting/.test(e.message),
  );
});

test("mesh maxWaitingOps: op calls beyond the mesh's waiting list fail with OverloadedError naming the limit; the rest complete", async () => {
  const started = gate();
  const release = gate();
  const work = ta.op({ name: "bpMeshWork" }, async (i: number) => {
    started.open();
    await release.promise;
    return i;
  });
  await using mesh = new ta.Mesh([new ta.MeshNode("local")], {
    name: "bpMesh",
    maxConcurrentOps: 1,
    maxWaitingOps: 2,
  });
  await mesh.run(async () => {
    const first = work.go(0);
    await started.promise;
    const burst = Array.from({ length: 5 }, (_, i) => work.go(i + 1));
    const settled = await Promise.allSettled(burst.slice(2));
    for (const r of settled) {
      assert.equal(r.status, "rejected");
      const e = (r as PromiseRejectedResult).reason;
      assert.ok(e instanceof ta.OverloadedError, String(e));
      assert.match(e.message, /mesh "bpMesh" refused a call of op "bpMeshWork".*maxWaitingOps 2/);
    }
    release.open();
    assert.deepEqual(await Promise.all([first, ...burst.slice(0, 2)]), [0, 1, 2]);
    assert.equal(await work.go(7), 7); // room again
  });
});

test("mesh maxWaitingOps: an op's own slot is given back when the mesh refuses its call", async () => {
  const started = gate();
  const release = gate();
  const limited = ta.op({ name: "bpMeshOwnSlot", maxConcurrency: 3 }, async (i: number) => {
    started.open();
    await release.promise;
    return i;
  });
  await using mesh = new ta.Mesh([new ta.MeshNode("local")], { maxConcurrentOps: 1, maxWaitingOps: 1 });
  await mesh.run(async () => {
    const first = limited.go(0); // runs: an op slot and the mesh's slot
    await started.promise;
    const waiting = limited.go(1); // an op slot, and the mesh's waiting list is full
    const refused = [limited.go(2), limited.go(3)];
    // each took the op's third slot and was refused by the mesh: had the first kept it, the second
    // would wait for an op slot instead of being refused
    for (const r of await Promise.allSettled(refused)) {
      assert.equal(r.status, "rejected");
      assert.ok((r as PromiseRejectedResult).reason instanceof ta.OverloadedError);
    }
    release.open();
    assert.deepEqual(await Promise.all([first, waiting]), [0, 1]);
  });
});

test('mesh maxWaitingOps "unbounded" never refuses; a bad value is a RangeError naming it', async () => {
  const release = gate();
  const work = ta.op({ name: "bpMeshFree" }, async (i: number) => {
    await release.promise;
    return i;
  });
  await using mesh = new ta.Mesh([new ta.MeshNode("local")], { maxConcurrentOps: 1, maxWaitingOps: "unbounded" });
  await mesh.run(async () => {
    const refs = Array.from({ length: 1_000 }, (_, i) => work.go(i));
    release.open();
    assert.equal((await Promise.all(refs)).length, 1_000);
  });
  assert.throws(
    () => new ta.Mesh([new ta.MeshNode("local")], { maxConcurrentOps: 1, maxWaitingOps: 0 }),
    (e: unknown) =>
      e instanceof RangeError && /Mesh: maxWaitingOps must be an integer ≥ 1 or "unbounded"/.test(e.message),
  );
});

test("service maxQueued with retries: a refused call tries again after a pause, as a node's refusal does, and completes once there is room", async () => {
  const started = gate();
  const release = gate();
  const Slow = ta.service(
    { name: "BpRetrySlow", maxQueued: 2, retries: 5 },
    class {
      async work(i: number) {
        started.open();
        await release.promise;
        return i;
      }
    },
  );
  const slow = Slow.init();
  const first = slow.work.go(0);
  await started.promise;
  // 2 fill the mailbox; 2 more wait to try again (as many as the mailbox holds); the next is refused
  const burst = Array.from({ length: 4 }, (_, i) => slow.work.go(i + 1));
  const e = await rejection(slow.work.go(99));
  assert.ok(e instanceof ta.OverloadedError, String(e));
  assert.match(e.message, /BpRetrySlow\.work.*maxQueued 2/);
  release.open();
  assert.deepEqual(await Promise.all([first, ...burst]), [0, 1, 2, 3, 4]);
});

test("service maxQueued with retries: a call still refused after its retries fails with OverloadedError saying so", async () => {
  const started = gate();
  const release = gate();
  const Stuck = ta.service(
    { name: "BpRetryStuck", maxQueued: 1, retries: 2 },
    class {
      async work(i: number) {
        started.open();
        await release.promise;
        return i;
      }
    },
  );
  const stuck = Stuck.init();
  const first = stuck.work.go(0);
  await started.promise;
  const queued = stuck.work.go(1);
  const e = await rejection(stuck.work.go(2)); // waits twice, the mailbox still full
  assert.ok(e instanceof ta.OverloadedError, String(e));
  assert.match(e.message, /BpRetryStuck\.work.*has 1 call queued \(also after 2 pauses, its retries\).*maxQueued 1/);
  // a call cancelled while it waits gives back nothing it did not take: the mailbox is still full
  const cancelled = stuck.work.go(3);
  cancelled.cancel();
  assert.ok(await rejection(cancelled) instanceof ta.CancelledError);
  assert.ok(await rejection(stuck.work.go(4)) instanceof ta.OverloadedError);
  release.open();
  assert.deepEqual(await Promise.all([first, queued]), [0, 1]);
  assert.equal(await stuck.work.go(5), 5);
});
