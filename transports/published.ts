/**
 * A node's published results (hand-offs, see `CallMessage.publish`): calls whose result other nodes
 * pull by an id the driver chose, sent to those nodes at the same time as the call itself. A pull
 * may arrive before the call does (another connection), so one for an id not published yet waits a
 * little for it; one for an id freed since is refused at once.
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
 */
export class PublishedResults {
  private readonly node: string;
  private readonly answers = new Map<string, Promise<Uint8Array>>();
  private readonly waiting = new Map<string, Waiter[]>();
  private waiters = 0;
  private readonly freed = new Set<string>();

  /** @param node The node's name, for errors. */
  constructor(node: string) {
    this.node = node;
  }

  /** How many results are published. */
  get count(): number {
    return this.answers.size;
  }

  /**
   * Publishes the result of a call that just arrived as `id`.
   *
   * @param id The id its call carried.
   * @param answer The `result` frame a pull gets, once the call ended (never rejects).
   * @throws {ProtocolError} For an id in use; {@linkcode OverloadedError} past the bound.
   */
  publish(id: string, answer: Promise<Uint8Array>): void {
    if (this.answers.has(id)) throw new ProtocolError(`Node "${this.node}" already publishes a result as "${id}"`);
    if (this.answers.size >= MAX_PUBLISHED) {
      throw new OverloadedError(
        `Node "${this.node}" publishes ${MAX_PUBLISHED} results, its limit: free some before publishing more`,
      );
    }
    this.answers.set(id, answer);
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
    if (known !== undefined) return known;
    if (this.freed.has(id) || this.waiters >= MAX_WAITING) {
      return Promise.reject(
        new ProtocolError(
          `Unknown object "${id}" on node "${this.node}": ${
            this.freed.has(id) ? "its driver freed it (the calls pulling it had ended)" : "too many pulls wait already"
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
   * Forgets published result `id`.
   *
   * @param id The id.
   * @returns Whether it was published here.
   */
  forget(id: string): boolean {
    if (!this.answers.delete(id)) return false;
    this.freed.add(id);
    if (this.freed.size > FREED_REMEMBERED) this.freed.delete(this.freed.values().next().value!);
    return true;
  }

  /** Forgets everything (the node drains); pulls waiting are refused. */
  clear(): void {
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
