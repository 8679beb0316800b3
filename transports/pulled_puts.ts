/**
 * A node's copies of `ta.put` values pulled from other nodes (see `stored_puts.ts`): a put value
 * never changes, so the calls on this node that name one share one pull and one copy, as calls in
 * the driver's process share the value itself. The copy is kept only while calls here hold it
 * (a weak reference): once they are done and it was collected, the next call pulls it again.
 *
 * @module
 */

/**
 * Pulls of put values by where they are stored (endpoint and object id), shared while in flight
 * and while their copy is alive.
 *
 * @example Concurrent calls share one pull
 * ```ts
 * import { PulledPuts } from "./pulled_puts.ts";
 * import { strictEqual } from "node:assert/strict";
 * const pulled = new PulledPuts();
 * let pulls = 0;
 * const fetch = () => Promise.resolve({ n: ++pulls });
 * const [a, b] = await Promise.all([pulled.pull("ws://a", "s:1", fetch), pulled.pull("ws://a", "s:1", fetch)]);
 * strictEqual(a, b);
 * strictEqual(pulls, 1);
 * ```
 */
export class PulledPuts {
  private readonly inFlight = new Map<string, Promise<unknown>>();
  private readonly held = new Map<string, WeakRef<object>>();
  private readonly collected = new FinalizationRegistry<string>((key) => {
    if (this.held.get(key)?.deref() === undefined) this.held.delete(key);
  });

  /**
   * The value of put object `oid` stored on the node at `endpoint`: the copy calls here still
   * hold, or the pull in flight, or a new pull made with `fetch`.
   *
   * @param endpoint Where it is stored.
   * @param oid Its id there.
   * @param fetch Pulls it (a failed pull is not kept: the next call pulls anew).
   * @returns The value.
   */
  pull(endpoint: string, oid: string, fetch: () => Promise<unknown>): Promise<unknown> {
    const key = `${endpoint} ${oid}`;
    const alive = this.held.get(key)?.deref();
    if (alive !== undefined) return Promise.resolve(alive);
    let p = this.inFlight.get(key);
    if (p === undefined) {
      p = fetch();
      this.inFlight.set(key, p);
      p.then((v) => {
        this.inFlight.delete(key);
        if (typeof v === "object" && v !== null) {
          this.held.set(key, new WeakRef(v));
          this.collected.register(v, key);
        }
      }, () => this.inFlight.delete(key));
    }
    return p;
  }
}
