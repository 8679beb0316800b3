// Private test helper: a process whose one service call is cancelled while its body never returns.
// The body keeps the instance's slot for a grace of timeoutMs (ten minutes here: a call queued
// behind it stays pending), and then the process has nothing left to do: it must exit now, not when
// the grace ends. Prints what it saw as one JSON line.
import * as ta from "../mod.ts";

let entered!: () => void;
const started = new Promise<void>((r) => (entered = r));
const Endless = ta.service(
  { timeoutMs: 600_000 },
  class EndlessWork {
    run() {
      entered();
      return new Promise(() => {}); // never settles, and holds nothing open itself
    }
    next() {
      return "next";
    }
  },
);
const endless = Endless.init();
const ref = endless.run.go();
const next = endless.next.go();
await started;
ref.cancel();
const error = await ref.then(() => undefined, (e: unknown) => e);
console.log(JSON.stringify({ cancelled: error instanceof ta.CancelledError, next: next.status }));
