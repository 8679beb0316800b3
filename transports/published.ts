/**
 * A node's published results (hand-offs, see `CallMessage.publish`): calls whose result other nodes
 * pull by an id the driver chose, sent to those nodes at the same time as the call itself. A pull
 * may arrive before the call does (another connection), so one for an id not published yet waits a
 * little for it; one for an id freed since is refused at once. The driver frees each once the calls
 * pulling it ended; one whose call named its driver's lease (`owner`) is forgotten with that lease
 * too, as the objects the node keeps for it are, so a driver that never frees it (gone, or cut off)
 * leaves nothing behind. The frame a published result holds outside the object store counts
 * against the store's bound while it is published ({@linkcode PublishedBound}).
 *
 * @module
 */
import { OverloadedError, ProtocolError } from "../core/errors.ts";
import { PUBLISH_WAIT_MS } from "./protocol.ts";

/** The most results a node keeps published at once, and the most pulls waiting for one to arrive. */
const MAX_PUBLISHED = 65_536;
const MAX_WAITING = 4096;
/** How many freed ids are remembered, so a late pull of one is refused at once. */
const FREED_REMEMBERED = 4096;

interface Waiter {
  resolve(answer: Promise<Uint8Array>): void;
  reject(e: unknown): void;
  timer: ReturnType<typeof setTimeout>;
}

/** One published result: the frame a pull gets, whose lease it goes with, and the bytes it counts. */
interface Entry {
  readonly answer: Promise<Uint8Array>;
  readonly owner: string | undefined;
  bytes: number;
}

/** The bound published results' frames count against: the node's object store's (`ObjectStore`). */
export interface PublishedBound {
  /**
   * Counts `bytes` against the bound.
   *
   * @throws {OverloadedError} When they do not fit.
   */
  countOutside(bytes: number, what: string): void;
  /** Gives back `bytes` counted before. */
  uncountOutside(bytes: number): void;
}

/**
 * The published results of a node, by id: each the promise of the `result` frame a pull gets.
 *
 * @example A pull that arrives before the call it names
 * ```ts
 * import { PublishedResults } from "./published.ts";
 * import { strictEqual } from "node:assert/strict";
 * const p = new PublishedResults("n1");
 * const pull = p.answer("p:1");
 * p.publish("p:1", Promise.resolve(new Uint8Array([1])));
 * strictEqual((await pull)[0], 1);
 * p.forget("p:1");
 * strictEqual(p.count, 0);
 * ```
 *
 * @example A result published for a lease goes with it; its frame counts against a bound
 * ```ts
 * import { PublishedResults } from "./published.ts";
 * import { strictEqual } from "node:assert/strict";
 * import { ObjectStore } from "./object_store.ts";
 * const store = new ObjectStore({ maxBytes: 100 });
 * const p = new PublishedResults("n1", store);
 * p.publish("p:2", Promise.resolve(new Uint8Array(8)), "lease-1");
 * p.hold("p:2", 8, "result of method make");
 * strictEqual(store.outsideBytes, 8);
 * strictEqual(p.holds("lease-1"), true);
 * strictEqual(p.forgetOwner("lease-1"), 1); // the lease expired
 * strictEqual(p.count, 0);
 * strictEqual(store.outsideBytes, 0);
 * ```
 */
export class PublishedResults {
  private readonly node: string;
  private readonly bound: PublishedBound | undefined;
  private readonly answers = new Map<string, Entry>();
  /** The ids published for each lease (calls that named their driver's lease). */
  private readonly byOwner = new Map<string, Set<string>>();
  private readonly waiting = new Map<string, Waiter[]>();
  private waiters = 0;
  private readonly freed = new Set<string>();
  /** The bytes of the frames counted against the bound ({@linkcode PublishedResults.hold}). */
  private held = 0;

  /**
   * @param node The node's name, for errors.
   * @param bound What the frames they hold count against (none: not counted).
   */
  constructor(node: string, bound?: PublishedBound) {
    this.node = node;
    this.bound = bound;
  }

  /** How many results are published. */
  get count(): number {
    return this.answers.size;
  }

  /** The bytes of the frames published results hold outside the object store. */
  get bytes(): number {
    return this.held;
  }

  /**
   * Publishes the result of a call that just arrived as `id`.
   *
   * @param id The id its call carried.
   * @param answer The `result` frame a pull gets, once the call ended (never rejects).
   * @param owner The lease its call named: it is forgotten when that lease expires.
   * @throws {ProtocolError} For an id in use; {@linkcode OverloadedError} past the bound.
   */
  publish(id: string, answer: Promise<Uint8Array>, owner?: string): void {
    if (this.answers.has(id)) throw new ProtocolError(`Node "${this.node}" already publishes a result as "${id}"`);
    if (this.answers.size >= MAX_PUBLISHED) {
      throw new OverloadedError(
        `Node "${this.node}" publishes ${MAX_PUBLISHED} results for calls on other nodes (hand-offs), its limit: ` +
          "each is forgotten once the calls pulling it ended (or its driver's lease expired)",
      );
    }
    this.answers.set(id, { answer, owner, bytes: 0 });
    if (owner !== undefined) {
      const ids = this.byOwner.get(owner);
      if (ids === undefined) this.byOwner.set(owner, new Set([id]));
      else ids.add(id);
    }
    const waiters = this.waiting.get(id);
    if (waiters === undefined) return;
    this.waiting.delete(id);
    this.waiters -= waiters.length;
    for (const w of waiters) {
      clearTimeout(w.timer);
      w.resolve(answer);
    }
  }

  /**
   * The `result` frame of published result `id`, once its call ended; waits up to
   * {@linkcode PUBLISH_WAIT_MS} for the call to arrive.
   *
   * @param id The id.
   * @returns The frame.
   * @throws {ProtocolError} When it was freed, or its call never arrived.
   */
  answer(id: string): Promise<Uint8Array> {
    const known = this.answers.get(id);
    if (known !== undefined) return known.answer;
    if (this.freed.has(id) || this.waiters >= MAX_WAITING) {
      return Promise.reject(
        new ProtocolError(
          `Unknown object "${id}" on node "${this.node}": ${
            this.freed.has(id)
              ? "its driver freed it (the calls pulling it had ended) or its driver's lease expired"
              : "too many pulls wait already"
          }`,
        ),
      );
    }
    return new Promise<Promise<Uint8Array>>((resolve, reject) => {
      const list = this.waiting.get(id) ?? [];
      const w: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          list.splice(list.indexOf(w), 1);
          if (list.length === 0) this.waiting.delete(id);
          this.waiters--;
          reject(
            new ProtocolError(
              `Unknown object "${id}" on node "${this.node}": the call publishing it did not arrive within ` +
                `${PUBLISH_WAIT_MS} ms`,
            ),
          );
        }, PUBLISH_WAIT_MS),
      };
      list.push(w);
      this.waiting.set(id, list);
      this.waiters++;
    }).then((p) => p);
  }

  /**
   * Counts the frame published result `id` holds outside the object store (its value came back in
   * its call's reply) against the bound, until it is forgotten.
   *
   * @param id The id.
   * @param bytes The frame's bytes.
   * @param what What made it, for the error.
   * @returns Whether it is still published (a free may have come first: then nothing is counted).
   * @throws {OverloadedError} When the bound has no room for it (nothing is counted then).
   */
  hold(id: string, bytes: number, what: string): boolean {
    const e = this.answers.get(id);
    if (e === undefined) return false;
    this.bound?.countOutside(bytes, what);
    e.bytes += bytes;
    this.held += bytes;
    return true;
  }

  /**
   * Forgets published result `id`.
   *
   * @param id The id.
   * @returns Whether it was published here.
   */
  forget(id: string): boolean {
    const e = this.answers.get(id);
    if (e === undefined) return false;
    this.answers.delete(id);
    if (e.owner !== undefined) {
      const ids = this.byOwner.get(e.owner)!;
      ids.delete(id);
      if (ids.size === 0) this.byOwner.delete(e.owner);
    }
    if (e.bytes > 0) {
      this.held -= e.bytes;
      this.bound?.uncountOutside(e.bytes);
    }
    this.freed.add(id);
    if (this.freed.size > FREED_REMEMBERED) this.freed.delete(this.freed.values().next().value!);
    return true;
  }

  /**
   * Forgets every result published for `owner` (its lease expired: its driver is gone).
   *
   * @param owner The lease id.
   * @returns How many.
   */
  forgetOwner(owner: string): number {
    const ids = this.byOwner.get(owner);
    if (ids === undefined) return 0;
    const n = ids.size;
    for (const id of [...ids]) this.forget(id);
    return n;
  }

  /**
   * Whether results are published for `owner` (its lease holds them).
   *
   * @param owner The lease id.
   * @returns True when any is.
   */
  holds(owner: string): boolean {
    return this.byOwner.has(owner);
  }

  /** Forgets everything (the node drains); pulls waiting are refused. */
  clear(): void {
    if (this.held > 0) this.bound?.uncountOutside(this.held);
    this.held = 0;
    this.byOwner.clear();
    this.answers.clear();
    for (const list of this.waiting.values()) {
      for (const w of list) {
        clearTimeout(w.timer);
        w.reject(new ProtocolError(`Node "${this.node}" is shutting down`));
      }
    }
    this.waiting.clear();
    this.waiters = 0;
  }
}
