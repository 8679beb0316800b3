// Private test module for transports/data_plane_nodes_test.ts: what its node processes register
// (`thinkagain serve transports/_test_data_plane_app.ts`), and the test imports too.
import { existsSync, writeFileSync } from "node:fs";
import * as ta from "../mod.ts";

/** 1 MiB made on the one node with a GPU (node A in the test): it stays there. */
export const dpLostMake = ta.op({ name: "dpLostMake", gpus: 1 }, (n: number) => new Float32Array(n).fill(2));

/** The same with retries: its result can be made again (lineage) when its node is lost. */
export const dpLineageMake = ta.op(
  { name: "dpLineageMake", gpus: 1, retries: 2 },
  (n: number) => new Float32Array(n).fill(3),
);

/** Sums arrays; its 4 CPUs fit only node B in the test. */
export const DpNodeSink = ta.service(
  { name: "DpNodeSink", cpus: 4 },
  class DpNodeSink {
    sum(a: Float32Array): number {
      let s = 0;
      for (let i = 0; i < a.length; i++) s += a[i];
      return s;
    }
    /** Sums the arrays of `x.parts`, times `x.scale`: results nested in an argument. */
    sumParts(x: { parts: Float32Array[]; scale: number }): number {
      let s = 0;
      for (const a of x.parts) for (let i = 0; i < a.length; i++) s += a[i];
      return s * x.scale;
    }
  },
);

/**
 * 1 MiB of 4s made on node A once the test opens its gate: writes `dir/started`, waits until
 * `dir/open` exists, then makes the array, or throws when `dir/fail` exists too. A file is the gate
 * because the test and the node are different processes.
 */
export const dpGatedMake = ta.op({ name: "dpGatedMake", gpus: 1 }, async (n: number, dir: string) => {
  writeFileSync(`${dir}/started`, "");
  while (!existsSync(`${dir}/open`)) await new Promise((r) => setTimeout(r, 5));
  if (existsSync(`${dir}/fail`)) throw new Error(`dpGatedMake(${n}) failed as the test asked`);
  return new Float32Array(n).fill(4);
});
