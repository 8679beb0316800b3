// Private test helper: a process whose first service call passes its deadline while its body never
// returns, and whose second call, queued behind it, is awaited. The first body keeps the instance's
// slot for a grace of timeoutMs; the awaited call must keep the process alive through that grace
// and then run (not be dropped by a process that exits with it pending). Prints what it saw.
import * as ta from "../mod.ts";

const Endless = ta.service(
  { timeoutMs: 200 },
  class GraceWaiterWork {
    run() {
      return new Promise(() => {}); // never settles, and holds nothing open itself
    }
    next() {
      return "next";
    }
  },
);
// not a top-level await: a pending top-level await keeps Bun and Deno running on its own, which
// would hide what is tested here (a program whose pending work is all in a function's awaits)
async function main(): Promise<void> {
  const endless = Endless.init();
  const ref = endless.run.go();
  const next = endless.next.go();
  const error = await ref.then(() => undefined, (e: unknown) => e);
  console.log(JSON.stringify({ timedOut: error instanceof ta.TimeoutError, next: await next }));
}
main();
