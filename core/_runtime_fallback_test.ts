// nextTurn where its own loopback connection cannot be made (Deno): the turns fall back to setImmediate,
// and the failed set-up leaves nothing behind (its pending accept once crashed the process).
// A file of its own: nextTurn makes its connection once per process, on first use.
import { test } from "node:test";
import assert from "node:assert/strict";
import { nextTurn, turnsReady } from "./_runtime.ts";

test("nextTurn still runs its callbacks, in order, when its loopback connection fails to connect", async () => {
  const deno = (globalThis as { Deno?: { connect?: unknown } }).Deno;
  const connect = deno?.connect;
  if (deno !== undefined) deno.connect = () => Promise.reject(new Error("connect refused by the test"));
  try {
    await turnsReady(); // settles once the set-up failed (at once where there is none to make)
  } finally {
    if (deno !== undefined) deno.connect = connect;
  }
  const ran: number[] = [];
  await new Promise<void>((done) => {
    for (let i = 0; i < 3; i++) nextTurn(() => ran.push(i));
    nextTurn(done);
  });
  // more turns: the accept left pending when the failed set-up closed its listener must not surface
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => nextTurn(r));
  assert.deepEqual(ran, [0, 1, 2]);
});
