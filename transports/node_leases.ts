/**
 * The leases on a node: what its drivers hold there (instances, kept objects, and the instances
 * their op calls made there) lives while the driver does. A driver is taken for alive while it is
 * heard from (its keepalive pings, its calls) within `leaseMs`, and while an op call of its that
 * made instances here runs; a sweep every quarter lease (at most every 2^31 - 1 ms, the longest one
 * timer holds) destroys the instances, and frees the objects, of each driver not heard from for
 * longer, and remembers the instance ids it destroyed so that a late call to one is told why it is
 * gone. A lease also ends when its driver destroyed the last instance it made here and holds no
 * object (it closed its mesh): the instances its op calls made go then.
 *
 * @module
 */
import { MAX_TIMER_MS } from "../core/long_timer.ts";
import type { CloseCause } from "../core/mailbox.ts";
import { backgroundInterval } from "./_common.ts";
import type { NodeServerOptions } from "./node_options.ts";

/** Instance ids destroyed by an expired lease that calls can still be told about. */
const EXPIRED_REMEMBERED = 4096;

/** One driver's lease: when it was last heard from, and the instances it holds here. */
export interface Lease {
  /** When it was last heard from (`performance.now()`). */
  seen: number;
  /** Its instances here (those it created). */
  readonly ids: Set<string>;
  /** Instances its op calls made here (`init()` in an op's body), which it cannot name. */
  made?: Set<string>;
  /** Its op calls running here that made instances: while any runs, the lease does not expire. */
  running?: number;
}

/**
 * An op call a driver made here, as the instances its body makes see it: the lease they go to
 * while it runs (and whether it has ended).
 */
export interface LeaseCall {
  /** The lease it made instances under (set at its first). */
  lease: Lease | undefined;
  /** Set when the call has ended: instances made after that do not keep the lease. */
  ended: boolean;
}

/** What a node's leases ask of the node. */
export interface LeaseHost {
  /** The service of instance `id`, while it is here. */
  serviceOf(id: string): string | undefined;
  /** Frees the objects kept for `owner`. */
  freeObjects(owner: string): void;
  /** Whether objects are kept for `owner`. */
  holdsObjects(owner: string): boolean;
  /**
   * Destroys instance `id`, cancelling the calls running on it at `deadline` (none: they are waited
   * for), with the `CancelledError` of `cause` (an expired lease's).
   */
  destroy(id: string, deadline?: number, cause?: CloseCause): Promise<void>;
}

/**
 * A node's leases, by the lease id its drivers send (`owner`). The sweep runs only while some
 * lease is held.
 *
 * @example A lease that expires: its instance is destroyed and remembered
 * ```ts
 * import { NodeLeases } from "./node_leases.ts";
 * import { deepStrictEqual, strictEqual } from "node:assert/strict";
 * const destroyed: string[] = [];
 * const { promise: expired, resolve } = Promise.withResolvers<string[]>();
 * const awake = setInterval(() => {}, 1000); // the sweep's timer keeps no process alive
 * const leases = new NodeLeases(100, {
 *   serviceOf: () => "Model",
 *   freeObjects() {},
 *   holdsObjects: () => false,
 *   destroy: async (id) => void destroyed.push(id),
 * }, (event) => resolve(event.services));
 * leases.holdInstance("driver-1", "i1");
 * deepStrictEqual(await expired, ["Model"]);
 * deepStrictEqual(destroyed, ["i1"]);
 * strictEqual(leases.wasExpired("i1"), true);
 * strictEqual(leases.expiredCount, 1);
 * leases.stop();
 * clearInterval(awake);
 * ```
 */
export class NodeLeases {
  /**
   * The leases held, by owner: a node's call path renews a lease by setting its `seen` in place
   * (the node holds this map itself, so that a call does no more than that).
   */
  readonly owners: Map<string, Lease> = new Map();
  /** Instances destroyed by an expired lease since the node started. */
  expiredCount = 0;
  readonly #expired = new Set<string>();
  readonly #host: LeaseHost;
  readonly #onExpired: NodeServerOptions["onLeaseExpired"];
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #lastSweep = 0;

  /**
   * @param leaseMs How long a driver may go unheard (0: no leases).
   * @param host The node.
   * @param onExpired Told when a lease expired (for logs).
   */
  constructor(readonly leaseMs: number, host: LeaseHost, onExpired?: NodeServerOptions["onLeaseExpired"]) {
    this.#host = host;
    this.#onExpired = onExpired;
  }

  /**
   * A driver was heard from (its ping): its lease, if it holds one, is renewed.
   *
   * @param owner Its lease id.
   */
  renew(owner: string): void {
    const lease = this.owners.get(owner);
    if (lease !== undefined) lease.seen = performance.now();
  }

  /**
   * Instance `id` was made for `owner`: it lives while the lease does (which this renews).
   *
   * @param owner The lease id.
   * @param id The instance.
   */
  holdInstance(owner: string, id: string): void {
    let lease = this.owners.get(owner);
    if (lease === undefined) this.owners.set(owner, lease = { seen: 0, ids: new Set() });
    lease.seen = performance.now();
    lease.ids.add(id);
    this.#startSweeper();
  }

  /**
   * Instance `id` was made here by an op call of `owner`'s (its body ran `init()`): it lives while
   * the lease does, which does not expire while that call runs (see {@linkcode callEnded}), and goes
   * when it ends. The driver does not know of it, so it neither pings for it nor destroys it.
   *
   * @param owner The lease id the call named.
   * @param id The instance.
   * @param call The op call whose body made it.
   */
  holdMade(owner: string, id: string, call: LeaseCall): void {
    let lease = this.owners.get(owner);
    if (lease === undefined) this.owners.set(owner, lease = { seen: performance.now(), ids: new Set() });
    (lease.made ??= new Set()).add(id);
    if (call.lease === undefined && !call.ended) {
      call.lease = lease;
      lease.running = (lease.running ?? 0) + 1;
    }
    this.#startSweeper();
  }

  /**
   * An op call that made instances under a lease ({@linkcode holdMade}) has ended: the lease may
   * expire again, `leaseMs` from now at the earliest.
   *
   * @param call The op call.
   */
  callEnded(call: LeaseCall): void {
    call.ended = true;
    const lease = call.lease;
    if (lease === undefined) return;
    call.lease = undefined;
    lease.running!--;
    lease.seen = performance.now();
  }

  /**
   * Objects are kept for `owner`: they live while its lease does (its pings renew it, as for
   * instances). Nothing, when the node has no leases.
   *
   * @param owner The lease id.
   */
  holdObjects(owner: string): void {
    if (this.leaseMs <= 0) return;
    if (!this.owners.has(owner)) this.owners.set(owner, { seen: performance.now(), ids: new Set() });
    this.#startSweeper();
  }

  /**
   * Instance `id` of `owner` is gone: the lease ends when it held nothing else (no instance, no
   * object), and the sweep stops when no lease is left. When the last instance the driver created
   * here goes and it holds no object (it closed its mesh), the instances its op calls made here go
   * too, unless one of those calls still runs (then the lease expires as usual).
   *
   * @param owner The lease id.
   * @param id The instance.
   * @returns When the instances the lease's op calls made are disposed, if it ended with some.
   */
  release(owner: string, id: string): Promise<void> | undefined {
    const lease = this.owners.get(owner);
    let ended: Promise<void> | undefined;
    if (lease !== undefined) {
      const created = lease.ids.delete(id);
      const made = lease.made;
      made?.delete(id);
      if (lease.ids.size === 0 && !this.#host.holdsObjects(owner)) {
        if (made === undefined || made.size === 0) this.owners.delete(owner);
        else if (created && !((lease.running ?? 0) > 0)) {
          this.owners.delete(owner);
          ended = Promise.all([...made].map((m) => this.#host.destroy(m).catch(() => {}))).then(() => {});
        }
      }
    }
    if (this.owners.size === 0) this.#stopSweeper();
    return ended;
  }

  /**
   * Whether instance `id` was destroyed by an expired lease (of the last 4096 so destroyed).
   *
   * @param id The instance.
   * @returns Whether it was.
   */
  wasExpired(id: string): boolean {
    return this.#expired.has(id);
  }

  /** The node drains: the sweep stops and every lease is dropped. */
  stop(): void {
    this.#stopSweeper();
    this.owners.clear();
  }

  #startSweeper(): void {
    if (this.#sweeper !== undefined) return;
    this.#lastSweep = performance.now();
    this.#sweeper = backgroundInterval(() => this.#sweep(), this.#sweepEvery());
  }

  /** Destroys the instances of every driver not heard from within the lease. */
  #sweep(): void {
    const now = performance.now();
    const late = now - this.#lastSweep > 2 * this.#sweepEvery();
    this.#lastSweep = now;
    if (late) {
      // this node's own event loop stalled (a long synchronous call): the keepalives it could not
      // read meanwhile are still queued on its sockets. Nobody is taken for gone on that account.
      for (const lease of this.owners.values()) lease.seen = now;
      return;
    }
    const host = this.#host, expired = this.#expired;
    for (const [owner, lease] of this.owners) {
      if (now - lease.seen <= this.leaseMs) continue;
      // an op call of its that made instances here runs: its driver waits for it (and pings, if
      // without naming the lease: it does not know of them)
      if ((lease.running ?? 0) > 0) {
        lease.seen = now;
        continue;
      }
      const ids = lease.made === undefined ? [...lease.ids] : [...lease.ids, ...lease.made];
      const services = ids.map((id) => host.serviceOf(id) ?? "?");
      // (its calls say why they stopped: the driver's mesh is open, it did not close them)
      const why =
        `its node destroyed its instance, its driver sent no keepalive for ${this.leaseMs} ms (lease expired)`;
      const cause: CloseCause = { reason: "lease-expired", what: why, pastDeadline: why };
      host.freeObjects(owner); // its objects go with its instances
      // (gone first: the release each destroy makes finds no lease to end a second time)
      this.owners.delete(owner);
      for (const id of ids) {
        expired.add(id);
        this.expiredCount++;
        if (expired.size > EXPIRED_REMEMBERED) expired.delete(expired.values().next().value!);
        // the driver is gone: its calls still running are cancelled now, not waited for
        host.destroy(id, now, cause).catch(() => {});
      }
      // a lease that held only objects (one a driver that closed cleanly leaves behind) destroyed
      // nothing to tell of: no "destroyed its 0 instances" line
      if (services.length === 0) continue;
      try {
        this.#onExpired?.({ instances: services.length, services, leaseMs: this.leaseMs });
      } catch {
        // a logging hook must not stop the sweep
      }
    }
  }

  #sweepEvery(): number {
    // at most what one timer holds: a longer interval overflows and would sweep every millisecond
    return Math.min(MAX_TIMER_MS, Math.max(10, Math.floor(this.leaseMs / 4)));
  }

  #stopSweeper(): void {
    if (this.#sweeper !== undefined) clearInterval(this.#sweeper);
    this.#sweeper = undefined;
  }
}
