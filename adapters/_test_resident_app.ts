// Private test module: services a `thinkagain serve --start` node makes resident (and a driver
// connects to), for adapters/residents_test.ts and bench/residents.ts.
import { existsSync } from "node:fs";
import process from "node:process";
import * as ta from "../mod.ts";

let constructed = 0;

/** A model loaded once: counts its constructions, answers prompts, says when it is disposed. */
export const ResidentModel = ta.service(
  { name: "ResidentModel" },
  class ResidentModel {
    calls = 0;
    constructor() {
      constructed++;
    }
    generate(prompt: string): string {
      this.calls++;
      return `${prompt} -> ok`;
    }
    /**
     * A small model step: busy for about `us` microseconds of this node's CPU, then waits for a
     * timer (as a call to an accelerator would), so the node reads more calls meanwhile.
     */
    async step(tag: string, us: number): Promise<string> {
      const end = performance.now() + us / 1000;
      while (performance.now() < end) { /* the model's work */ }
      await new Promise((r) => setTimeout(r, 1));
      return tag;
    }
    constructions(): number {
      return constructed;
    }
    [Symbol.dispose](): void {
      console.error(`ResidentModel disposed after ${this.calls} calls`);
    }
  },
);

/** A model whose weights are not there: its constructor throws. */
export const BrokenModel = ta.service(
  { name: "BrokenModel" },
  class BrokenModel {
    constructor() {
      throw new Error("weights not found at /models/broken.bin");
    }
    generate(): string {
      return "never";
    }
  },
);

/** A model that loads asynchronously: ready once the file named by THINKAGAIN_TEST_GATE exists. */
export const GatedModel = ta.service(
  { name: "GatedModel" },
  class GatedModel {
    ready: Promise<void>;
    constructor() {
      const gate = process.env.THINKAGAIN_TEST_GATE ?? "";
      this.ready = new Promise<void>((resolve) => {
        const timer = setInterval(() => {
          if (existsSync(gate)) {
            clearInterval(timer);
            resolve();
          }
        }, 20);
      });
    }
    generate(prompt: string): string {
      return `${prompt} -> gated`;
    }
  },
);

/** A driver-created instance that is made again on another node when its node is lost. */
export const Restartable = ta.service(
  { name: "Restartable", restarts: 1, retries: 1 },
  class Restartable {
    n = 0;
    constructor(readonly label: string) {}
    where(): { node: string; n: number; label: string } {
      return { node: ta.currentInstance()!.node, n: ++this.n, label: this.label };
    }
  },
);
