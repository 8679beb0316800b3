// The helpers every transport shares.
import { test } from "node:test";
import assert from "node:assert/strict";
import { backgroundInterval } from "./_common.ts";

test("backgroundInterval of 2^31 ms or more does not run every millisecond", async () => {
  for (const ms of [2 ** 31, 1e10, Infinity]) {
    let runs = 0;
    const timer = backgroundInterval(() => runs++, ms);
    try {
      // setInterval takes 2^31 ms or more for 1 ms: such an interval has run by now
      for (let i = 0; i < 3; i++) await new Promise((r) => setTimeout(r, 1));
      assert.equal(runs, 0, `every ${ms} ms`);
    } finally {
      clearInterval(timer);
    }
  }
});
