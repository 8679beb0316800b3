// NodeLeases: what a node's drivers hold there lives while they are heard from.
import { test } from "node:test";
import assert from "node:assert/strict";
import { NodeLeases } from "./node_leases.ts";

test("NodeLeases with a lease of 2^33 ms or more (a quarter past what one timer holds) does not sweep every millisecond", async () => {
  for (const leaseMs of [99_999_999_999, 2 ** 33]) {
    const destroyed: string[] = [];
    const leases = new NodeLeases(leaseMs, {
      serviceOf: () => "Model",
      freeObjects() {},
      holdsObjects: () => false,
      destroy: async (id) => void destroyed.push(id),
    });
    leases.holdInstance("driver-1", "i1");
    // the driver was last heard from two leases ago: the next sweep destroys its instance
    leases.owners.get("driver-1")!.seen -= 2 * leaseMs;
    try {
      // setInterval takes 2^31 ms or more for 1 ms: such a sweep has run by now
      for (let i = 0; i < 3; i++) await new Promise((r) => setTimeout(r, 1));
      assert.deepEqual(destroyed, [], `leaseMs ${leaseMs}: swept within a few ms of the first lease`);
    } finally {
      leases.stop();
    }
  }
});

test("NodeLeases tells of an expired lease that held instances, not of one that held only objects", async () => {
  const freed: string[] = [];
  const told: { instances: number; services: string[] }[] = [];
  let bothFreed!: () => void;
  const swept = new Promise<void>((r) => (bothFreed = r));
  const leases = new NodeLeases(40, {
    serviceOf: () => "Model",
    freeObjects(owner) {
      freed.push(owner);
      if (freed.length === 2) bothFreed();
    },
    holdsObjects: () => true,
    destroy: async () => {},
  }, ({ instances, services }) => told.push({ instances, services }));
  leases.holdObjects("objects-only"); // as a driver that closed cleanly leaves its lease behind
  leases.holdInstance("with-instance", "i1");
  for (const lease of leases.owners.values()) lease.seen -= 1_000; // both were last heard long ago
  const alive = setInterval(() => {}, 1_000); // (the sweeper's timer does not hold the process open)
  try {
    await swept; // the sweep frees what each lease held
    assert.deepEqual(freed.sort(), ["objects-only", "with-instance"]);
    assert.deepEqual(told, [{ instances: 1, services: ["Model"] }]); // before: also { instances: 0, services: [] }
  } finally {
    clearInterval(alive);
    leases.stop();
  }
});

test("NodeLeases: what a driver's op calls made goes when the driver destroyed its last instance, or with the expired lease, never while such a call runs", async () => {
  const destroyed: string[] = [];
  let sweptB!: () => void;
  const swept = new Promise<void>((r) => (sweptB = r));
  const leases = new NodeLeases(40, {
    serviceOf: () => "Model",
    freeObjects() {},
    holdsObjects: () => false,
    destroy: async (id) => {
      destroyed.push(id);
      if (id === "b-made") sweptB();
    },
  });
  const alive = setInterval(() => {}, 1_000); // (the sweeper's timer does not hold the process open)
  try {
    // a driver that closed its mesh: destroying its last instance takes what its finished op made
    const done = { lease: undefined, ended: false };
    leases.holdInstance("closer", "i1");
    leases.holdMade("closer", "closer-made", done);
    leases.callEnded(done);
    leases.release("closer", "i1");
    assert.deepEqual(destroyed, ["closer-made"]);
    assert.equal(leases.owners.has("closer"), false);
    // an op call that still runs keeps its lease, however long its driver is not heard from
    const running = { lease: undefined, ended: false };
    leases.holdMade("a", "a-made", running);
    leases.holdMade("b", "b-made", { lease: undefined, ended: true }); // made after its call ended
    for (const lease of leases.owners.values()) lease.seen -= 1_000;
    await swept; // one sweep looked at both ("a" first)
    assert.deepEqual(destroyed, ["closer-made", "b-made"]);
    assert.equal(leases.owners.has("a"), true);
    leases.callEnded(running);
    assert.equal(leases.owners.get("a")!.running, 0);
  } finally {
    clearInterval(alive);
    leases.stop();
  }
});
