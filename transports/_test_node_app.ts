// Private test module for transports/node_server_limits_test.ts: services a node process
// registers (`thinkagain serve transports/_test_node_app.ts --gpus 2`).
import * as ta from "../mod.ts";

/** Needs two whole GPUs; says which it got. */
export const GpuPair = ta.service(
  { name: "GpuPair", gpus: 2 },
  class GpuPair {
    gpus(): number[] {
      return ta.currentInstance()!.gpus.map((g) => g.id);
    }
  },
);

/** Needs half a GPU; says which it got. */
export const GpuHalf = ta.service(
  { name: "GpuHalf", gpus: 0.5 },
  class GpuHalf {
    gpus(): number[] {
      return ta.currentInstance()!.gpus.map((g) => g.id);
    }
  },
);

/** Has a disposer (`close`) and a `dispose`, which no caller may call. */
export const Closable = ta.service(
  { name: "Closable" },
  class Closable {
    closed = false;
    ping(): string {
      return this.closed ? "closed" : "open";
    }
    close(): void {
      this.closed = true;
    }
    dispose(): void {
      this.closed = true;
    }
  },
);
