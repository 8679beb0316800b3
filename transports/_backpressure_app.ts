// A node module for the backpressure tests (transports/backpressure_test.ts): a service with a small
// mailbox bound, an op with a small waiting list, and an op whose replies are large.
import * as ta from "../mod.ts";

/** One call at a time; at most 5 more wait in its mailbox. */
export const BpQueue = ta.service(
  { name: "BpQueue", maxQueued: 5 },
  class BpQueue {
    async hold(ms: number, i: number): Promise<number> {
      await new Promise((r) => setTimeout(r, ms));
      return i;
    }
  },
);

/** One call at a time; at most 2 more wait for its slot. */
export const bpLimited = ta.op(
  { name: "bpLimited", remote: true, maxConcurrency: 1, maxWaiting: 2 },
  async (ms: number, i: number): Promise<number> => {
    await new Promise((r) => setTimeout(r, ms));
    return i;
  },
);

/** Returns `n` bytes at once (replies that fill a socket whose peer does not read). */
export const bpBytes = ta.op({ name: "bpBytes", remote: true }, (n: number): Uint8Array => new Uint8Array(n));

/** Several calls at once, each retried up to 8 times (a refusal for overload after a pause). */
export const BpRetry = ta.service(
  { name: "BpRetry", maxConcurrency: 4, retries: 8 },
  class BpRetry {
    async hold(ms: number, i: number): Promise<number> {
      await new Promise((r) => setTimeout(r, ms));
      return i;
    }
  },
);
