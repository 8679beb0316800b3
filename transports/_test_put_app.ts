// Private test module for transports/stored_puts_nodes_test.ts: what its node processes register
// (`thinkagain serve transports/_test_put_app.ts`), and the test imports too.
import * as ta from "../mod.ts";

function firstLastPlus(a: Float32Array, i: number): number {
  if (!(a instanceof Float32Array)) throw new TypeError(`expected a Float32Array, got ${String(a)}`);
  return a[0] + a[a.length - 1] + a.length + i;
}

/** Its 4 CPUs fit only node A in the test. */
export const PutOnA = ta.service(
  { name: "PutOnA", cpus: 4 },
  class PutOnA {
    use(a: Float32Array, i: number): number {
      return firstLastPlus(a, i);
    }
  },
);

/** Its GPU fits only node B in the test. */
export const PutOnB = ta.service(
  { name: "PutOnB", gpus: 1 },
  class PutOnB {
    use(a: Float32Array, i: number): number {
      return firstLastPlus(a, i);
    }
  },
);
