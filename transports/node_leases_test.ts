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
