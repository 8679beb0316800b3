// Private test module for core's tests with node processes (`thinkagain serve core/_test_wedge_app.ts`):
// services that misuse their own handles, registered by the driver and the nodes alike.
import * as ta from "../mod.ts";

/** A service that calls itself through the handle it is given. */
export const SelfCaller = ta.service(
  { name: "WedgeSelfCaller" },
  class SelfCaller {
    n = 0;
    /** Calls `inner` on `me` (a handle of this very instance) and waits for it. */
    async viaHandle(me: { inner: { go(): PromiseLike<number> } }): Promise<number> {
      return await me.inner.go();
    }
    inner(): number {
      return ++this.n;
    }
  },
);

/** A service that schedules a call on itself through the handle it is given, without waiting for it. */
export const SelfScheduler = ta.service(
  { name: "WedgeSelfScheduler" },
  class SelfScheduler {
    ticks = 0;
    /** Makes a detached `tick` on `me` (a handle of this very instance): it runs after this call. */
    schedule(me: { tick: { go(): PromiseLike<number> } }): string {
      ta.detach(me.tick.go() as ta.ObjectRef<number>);
      return "scheduled";
    }
    tick(): number {
      return ++this.ticks;
    }
    count(): number {
      return this.ticks;
    }
  },
);

/** The same with a second slot: calling itself is fine while a slot is free. */
export const WideSelfCaller = ta.service(
  { name: "WedgeWideSelfCaller", maxConcurrency: 2 },
  class WideSelfCaller {
    async viaHandle(me: { inner: { go(): PromiseLike<string> } }): Promise<string> {
      return await me.inner.go();
    }
    inner(): string {
      return "inner ran";
    }
  },
);

/** A call that never returns: what a parent's cancel must stop on the node. */
export const Hang = ta.service(
  { name: "WedgeHang", maxConcurrency: 100 },
  class Hang {
    hang(): Promise<never> {
      return new Promise(() => {});
    }
  },
);
