// Private test module for transports/faults_test.ts: what its node processes register
// (`thinkagain serve transports/_test_faults_app.ts`). Files in a directory the test names are the
// gates between the test and the node, since a test driver that blocks its own event loop cannot
// read a socket.
import { existsSync, writeFileSync } from "node:fs";
import process from "node:process";
import * as ta from "../mod.ts";

async function untilExists(path: string): Promise<void> {
  while (!existsSync(path)) await new Promise((r) => setTimeout(r, 5));
}

/** Replies of 1 MiB, held until the test releases them all at once. */
export const Bulk = ta.service(
  { name: "FaultBulk", maxConcurrency: 10_000 },
  class Bulk {
    arrived = 0;
    returned = 0;
    /**
     * The n-th call to arrive writes `dir/arrived`; every call waits for `dir/release`, then
     * returns 1 MiB; once the n-th has returned (its reply written to the socket in the same turn),
     * `dir/sent` is written.
     */
    async big(i: number, n: number, dir: string): Promise<Uint8Array> {
      if (++this.arrived === n) writeFileSync(`${dir}/arrived`, "");
      await untilExists(`${dir}/release`);
      const out = new Uint8Array(1 << 20);
      out[0] = i & 0xff;
      out[1] = i >> 8;
      if (++this.returned === n) setTimeout(() => writeFileSync(`${dir}/sent`, ""), 0);
      return out;
    }
    /** Writes `started` (when given), then answers once `path` exists (the test's gate). */
    async waitFor(path: string, started?: string): Promise<string> {
      if (started !== undefined) writeFileSync(started, "");
      await untilExists(path);
      return "done";
    }
    echo<T>(x: T): T {
      return x;
    }
  },
);

/** A remote op every node of the test registers: says which node ran it (`FAULT_NODE` in its environment). */
export const whereAmI = ta.op(
  { name: "faultWhereAmI", remote: true },
  (x: number) => ({ x, node: process.env.FAULT_NODE ?? "?" }),
);

/** A remote op that writes `started`, then answers once `path` exists (the test's gate). */
export const waitOp = ta.op({ name: "faultWait", remote: true }, async (path: string, started: string) => {
  writeFileSync(started, "");
  await untilExists(path);
  return "done";
});

async function waitForGate(path: string, started: string): Promise<string> {
  writeFileSync(started, "");
  await untilExists(path);
  return "done";
}

/** Deadlines past what one timer holds (2^31 ms), and none (Infinity), on services and ops. */
export const LongDeadline = ta.service(
  { name: "FaultLongDeadline", timeoutMs: 2 ** 31 },
  class LongDeadline {
    waitFor(path: string, started: string): Promise<string> {
      return waitForGate(path, started);
    }
  },
);
export const NoDeadline = ta.service(
  { name: "FaultNoDeadline", timeoutMs: Infinity },
  class NoDeadline {
    waitFor(path: string, started: string): Promise<string> {
      return waitForGate(path, started);
    }
  },
);
export const waitOpLong = ta.op({ name: "faultWaitLong", remote: true, timeoutMs: 2 ** 31 }, waitForGate);
export const waitOpNone = ta.op({ name: "faultWaitNone", remote: true, timeoutMs: Infinity }, waitForGate);

/** A service that needs a GPU: says which GPU ids the node gave it. */
export const GpuUser = ta.service(
  { name: "FaultGpuUser", gpus: 1 },
  class GpuUser {
    gpus(): number[] {
      return (ta.currentInstanceGpus() ?? []).map((g) => g.id);
    }
  },
);
