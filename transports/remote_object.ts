/**
 * A result that stayed in a node's object store, as the driver holds it: where it lives (the link
 * to its node, its id there), its size and the call that made it. `await ref` fetches it once; a
 * call to a node sends its id instead (that node pulls it, or finds it in its own store). The
 * driver owns it: when the last ref to it is collected, or its ref is released (`ref.release()`,
 * `using`) and no call in flight carries it, the node is told to free it, and closing the link (the
 * mesh) frees every object it still holds there: awaited after that, it fails with
 * `CancelledError` (`reason: "mesh-closed"`), as the mesh's handles and calls then do.
 *
 * @module
 */
import { type CallName, CancelledError, NodeLostError } from "../core/errors.ts";
import { LazyValue } from "../core/lazy_value.ts";
import type { NodeLink } from "./link.ts";

/** The objects of links still open, freed once nothing in this process holds them any more. */
const collected = new FinalizationRegistry<{ link: NodeLink; oid: string }>(({ link, oid }) => {
  link.freeObject(oid, true);
});

/**
 * A value kept on a node (see `CallMessage.keepAbove`).
 *
 * @example What a driver's ref holds for a large result (made here without a node)
 * ```ts
 * import { RemoteObject } from "./remote_object.ts";
 * import { LazyValue } from "../core/lazy_value.ts";
 * import { strictEqual } from "node:assert/strict";
 * const fake = { node: "n1", fetchObject: () => Promise.resolve(7), holdObject() {}, freeObject() {} };
 * const o = new RemoteObject(fake as never, "oid-1", 100, "embed");
 * strictEqual(o instanceof LazyValue, true);
 * strictEqual(await o.materialize(), 7);
 * ```
 */
export class RemoteObject extends LazyValue {
  /** The link to the node that holds it. */
  readonly link: NodeLink;
  /** Its id in that node's store. */
  readonly oid: string;
  /** Its size as encoded, in bytes. */
  readonly bytes: number;
  /** The op or method whose result it is (in errors). */
  readonly madeBy: string;
  /** The op or method whose result it is, as errors about the call name it. */
  readonly call: CallName;
  /**
   * Makes the value again when its node is lost (lineage: set for the results of ops with
   * `retries`, which re-run the op; services are not re-run). Answers the value or a new object.
   */
  rebuild: (() => Promise<unknown>) | undefined = undefined;

  /**
   * @param link The link to its node (which frees it there when it is collected).
   * @param oid Its id there.
   * @param bytes Its encoded size.
   * @param madeBy The op or method that made it, in words (`op "embed" on node "n1"`).
   * @param call Its name as errors about the call take it (default: `madeBy`).
   */
  constructor(link: NodeLink, oid: string, bytes: number, madeBy: string, call: CallName = madeBy) {
    super();
    this.link = link;
    this.oid = oid;
    this.bytes = bytes;
    this.madeBy = madeBy;
    this.call = call;
    link.holdObject(oid, bytes);
    // (itself as the token: a release frees it at once and takes it off the registry)
    collected.register(this, { link, oid }, this);
  }

  /** Its ref was released and no call in flight carries it: the node frees it now, not at GC. */
  protected override free(): void {
    collected.unregister(this);
    this.link.freeObject(this.oid);
  }

  /** The node the value lives on. */
  get node(): string {
    return this.link.node;
  }

  /**
   * Fetches the bytes from the node; a lost node is a `NodeLostError` naming the op that made it,
   * unless the op can make it again ({@linkcode RemoteObject.rebuild}). Once the link was closed
   * (its mesh closed) the value was freed there: a `CancelledError` with reason `"mesh-closed"`,
   * not a lost node (the node is fine, and the value is not made again).
   */
  protected async fetch(): Promise<unknown> {
    if (this.freedWithLink()) throw this.freedError();
    // (a release meanwhile frees it once the bytes are here)
    this.pin();
    try {
      return await this.link.fetchObject(this.oid);
    } catch (e) {
      // (closed while it was asked for: the request failed as a closed connection does)
      if (this.freedWithLink()) throw this.freedError();
      if (e instanceof NodeLostError) return await this.remade(e);
      throw e;
    } finally {
      this.unpin();
    }
  }

  /** Whether its link was closed by its owner (its mesh closed), not given up on (its node lost or removed). */
  private freedWithLink(): boolean {
    return this.link.closedByOwner;
  }

  /** The error of awaiting it once its link closed: its mesh's close freed it on its node. */
  private freedError(): CancelledError {
    return new CancelledError(
      this.call,
      `freed on node "${this.link.node}" when its mesh closed: a result kept on a node goes with the mesh ` +
        "(await it before closing)",
      "mesh-closed",
    );
  }

  /**
   * The value made again after its node was lost with `error` (the op re-run), or that loss as a
   * `NodeLostError` naming the node and the op or method that made it.
   *
   * @param error How the node was found lost.
   * @returns The value (fetched, when the re-run kept it on a node too).
   */
  async remade(error: NodeLostError): Promise<unknown> {
    if (this.rebuild === undefined) {
      throw new NodeLostError(
        this.link.node,
        `the result of ${this.madeBy} lived there and is gone with it (${error.message})`,
        error,
      );
    }
    const again = await this.rebuild();
    return again instanceof LazyValue ? await again.materialize() : again;
  }
}
