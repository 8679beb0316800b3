// Private test module for transports/stream_wire_test.ts: streaming services and ops a node process
// registers (`thinkagain serve transports/_test_stream_app.ts`).
import * as ta from "../mod.ts";

/** How far the producers here got, and whose finally ran, as the node sees it. */
const seen = { produced: 0, finallyRan: 0, waiting: 0, log: [] as string[] };

/** Counts from 0 to n - 1. */
export const streamCount = ta.op({ name: "streamCount", remote: true }, async function* (n: number) {
  for (let i = 0; i < n; i++) yield i;
});

/** `n` typed arrays, the i-th holding i at every place. */
export const streamArrays = ta.op({ name: "streamArrays", remote: true }, async function* (n: number) {
  for (let i = 0; i < n; i++) yield new Float64Array(4).fill(i);
});

/** Items 0 .. k - 1, then an error. */
export const streamFailing = ta.op({ name: "streamFailing", remote: true }, async function* (k: number) {
  for (let i = 0; i < k; i++) yield i;
  throw new Error(`boom after ${k}`);
});

/** Items 1 and 2, then one that cannot travel (a function in it), then 4. */
export const streamBadItem = ta.op({ name: "streamBadItem", remote: true }, async function* () {
  yield 1;
  yield 2;
  yield { f: () => 1 };
  yield 4;
});

/** Counts from 0 to n - 1, from a generator (`function*`): items made as they are asked for. */
export const streamCountSync = ta.op({ name: "streamCountSync", remote: true }, function* (n: number) {
  for (let i = 0; i < n; i++) yield i;
});

/** Items 0 .. k - 1 from a generator, then an error. */
export const streamFailingSync = ta.op({ name: "streamFailingSync", remote: true }, function* (k: number) {
  for (let i = 0; i < k; i++) yield i;
  throw new Error(`sync boom after ${k}`);
});

/** What the node's producers did (read from another call, as a counter on the node). */
export const streamSeen = ta.op({ name: "streamSeen", remote: true }, () => ({ ...seen, log: [...seen.log] }));

/** A producer of `n` items that counts what it made and says when its finally ran. */
export const StreamGen = ta.service(
  { name: "StreamGen", maxConcurrency: 1 },
  class StreamGen {
    /** `countSync`'s items, from an async generator. */
    async *count(n: number): AsyncGenerator<number> {
      yield* this.countSync(n);
    }
    /** Counts from 0 to n - 1 from a generator (`function*`), counting what it made and its finally. */
    *countSync(n: number): Generator<number> {
      try {
        for (let i = 0; i < n; i++) {
          seen.produced++;
          yield i;
        }
      } finally {
        seen.finallyRan++;
      }
    }
    async *tagged(tag: string, n: number): AsyncGenerator<string> {
      for (let i = 0; i < n; i++) {
        await new Promise((r) => setTimeout(r, 1));
        seen.log.push(`${tag}${i}`);
        yield `${tag}${i}`;
      }
    }
    reset(): void {
      seen.produced = 0;
      seen.finallyRan = 0;
      seen.waiting = 0;
      seen.log = [];
    }
  },
);

/** Gates the driver opens (`streamOpen`): gate k is open once `opened > k`. */
let opened = 0;
const gateWaiters: { k: number; open: () => void }[] = [];
function gate(k: number): Promise<void> {
  return opened > k ? Promise.resolve() : new Promise((open) => gateWaiters.push({ k, open }));
}

/** Opens gate k (and those before it). */
export const streamOpen = ta.op({ name: "streamOpen", remote: true }, (k: number) => {
  opened = Math.max(opened, k + 1);
  for (const w of gateWaiters.splice(0)) {
    if (w.k < opened) w.open();
    else gateWaiters.push(w);
  }
});

/** Yields 0, waits for gate 0, yields 1, waits for gate 1, yields 2. */
export const streamGated = ta.op({ name: "streamGated", remote: true }, async function* () {
  yield 0;
  await gate(0);
  yield 1;
  await gate(1);
  yield 2;
});

/**
 * Waits for gate k before its first item, then counts without end; counts its starts (`waiting`)
 * and says when its finally ran.
 */
export const streamLate = ta.op({ name: "streamLate", remote: true }, async function* (k: number) {
  try {
    seen.waiting++;
    await gate(k);
    for (let i = 0;; i++) {
      seen.produced++;
      yield i;
    }
  } finally {
    seen.finallyRan++;
  }
});

/**
 * A stream with a deadline of 2 s, of items without end. (The test reads its first item before the
 * deadline: 300 ms was too short for the call and its first chunk on a machine at load 15.)
 */
export const StreamStuck = ta.service(
  { name: "StreamStuck", timeoutMs: 2_000 },
  class StreamStuck {
    async *endless(): AsyncGenerator<number> {
      try {
        for (let i = 0;; i++) yield i;
      } finally {
        seen.finallyRan++;
      }
    }
  },
);

/** Sums a stream's items (a remote-capable op: a stream cannot be sent to it from another process). */
export const streamSum = ta.op({ name: "streamSum", remote: true }, async (items: AsyncIterable<number>) => {
  let sum = 0;
  for await (const x of items) sum += x;
  return sum;
});
