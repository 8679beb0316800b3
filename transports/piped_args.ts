/**
 * A call's arguments that name results instead of carrying them (`CallMessage.pipe`): a call's kept
 * or running result and an object kept on this node are put in place at once; an object on another
 * node is pulled, over a link this node may open (a peer, or a node its driver declared), never one
 * the frame chose, and a `put` value pulled once for all the calls here that name it.
 *
 * @module
 */
import { NodeLostError, ProtocolError, TransportError } from "../core/errors.ts";
import type { ObjectRef } from "../core/object_ref.ts";
import { type CallMessage, type PipedArg, PUBLISH_WAIT_MS, STORED_ID_PREFIX } from "./protocol.ts";
import { PulledPuts } from "./pulled_puts.ts";
import { reachableLink } from "./handle_wire.ts";
import { keyInScope } from "./node_calls.ts";
import type { ObjectStore } from "./object_store.ts";
import type { TransportName } from "./transport.ts";

/** Where piped results are found: the node's calls and objects, and how it reaches other nodes. */
export interface PipeSources {
  /** The node's name (in errors). */
  readonly node: string;
  /** Results of calls sent with `keep`, by call key. */
  readonly kept: ReadonlyMap<string, ObjectRef<unknown>>;
  /** Calls running, by call key. */
  readonly calls: ReadonlyMap<string, ObjectRef<unknown>>;
  /** The node's object store. */
  readonly objects: ObjectStore;
  /** How the node opens links to other nodes (and who owns them). */
  readonly linkOptions: { owner: object; token?: string; transport?: TransportName };
}

/**
 * Puts a piped result where it goes among a call's arguments: argument `p.i`, or inside it at
 * `p.path`, where the frame must hold `null` in an array or object of its own (so nothing but that
 * place changes, and no prototype).
 */
function put(args: unknown[], p: PipedArg, value: unknown, cid: string): void {
  if (p.path === undefined) {
    args[p.i] = value;
    return;
  }
  let c: unknown = args[p.i];
  for (let k = 0; k < p.path.length; k++) {
    const key = p.path[k];
    const ok = typeof c === "object" && c !== null &&
      (Array.isArray(c) || Object.getPrototypeOf(c) === Object.prototype ||
        Object.getPrototypeOf(c) === null) &&
      Object.hasOwn(c, key);
    if (!ok || (k === p.path.length - 1 && (c as Record<string | number, unknown>)[key] !== null)) {
      throw new ProtocolError(
        `Call "${cid}" names a result at argument ${p.i}, path ${JSON.stringify(p.path).slice(0, 200)}, where its ` +
          "arguments hold no null in an array or object",
      );
    }
    if (k === p.path.length - 1) (c as Record<string | number, unknown>)[key] = value;
    else c = (c as Record<string | number, unknown>)[key];
  }
}

/**
 * Fills in the results a node's calls name (see {@linkcode PipedArgs.fill}).
 *
 * @example An object kept on this node, named by a call
 * ```ts
 * import { PipedArgs } from "./piped_args.ts";
 * import { ObjectStore } from "./object_store.ts";
 * import type { CallMessage } from "./protocol.ts";
 * import { deepStrictEqual, strictEqual } from "node:assert/strict";
 * const objects = new ObjectStore({ node: "n1" });
 * const oid = objects.put("kept here", 9, { madeBy: "doc" });
 * const pipes = new PipedArgs({ node: "n1", kept: new Map(), calls: new Map(), objects, linkOptions: { owner: {} } });
 * const args: unknown[] = [null, 2];
 * const msg: CallMessage = { t: "call", cid: "c2", op: "f", args, pipe: [{ i: 0, oid }] };
 * strictEqual(pipes.fill(msg, args, "ws:1"), undefined); // nothing to pull
 * deepStrictEqual(args, ["kept here", 2]);
 * ```
 */
export class PipedArgs {
  readonly #sources: PipeSources;
  /** Put values pulled from other nodes, shared by the calls here that name them. */
  readonly #pulledPuts = new PulledPuts();

  /** @param sources Where the results are. */
  constructor(sources: PipeSources) {
    this.#sources = sources;
  }

  /**
   * Puts in `args` the results a call names instead of carrying (`msg.pipe`): a call's kept or
   * running result and an object here are taken at once; objects on other nodes are pulled, over a
   * link this node may open (a peer, or a node its driver declared), never one the frame chose.
   * Returns the promise of the pulls, if any.
   *
   * @param msg The call.
   * @param args Its arguments (revived), where the results go.
   * @param scope Which calls its call ids are unique among (its connection's): `kept` and `calls`
   * are keyed by `keyInScope(scope, cid)` (node_calls.ts).
   * @returns The pulls' promise, or `undefined` when every result was here.
   * @throws {ProtocolError} For a result that is not here (a call's not kept, or freed) or a place
   * in the arguments that holds no `null`.
   */
  fill(msg: CallMessage, args: unknown[], scope: string): Promise<void> | undefined {
    const { kept, calls, objects, linkOptions, node } = this.#sources;
    const pulls: Promise<void>[] = [];
    for (const p of msg.pipe!) {
      if (p.cid !== undefined) {
        const k = keyInScope(scope, p.cid);
        const ref = kept.get(k) ?? calls.get(k);
        if (ref === undefined) {
          throw new ProtocolError(
            `Call "${msg.cid}" names the result of call "${p.cid}" (argument ${p.i}), which node "${node}" ` +
              "does not hold: it was not sent on this connection with keep, or was freed",
          );
        }
        put(args, p, ref, msg.cid);
      } else if (p.endpoint === undefined) {
        const oid = p.oid!;
        if (oid.startsWith(STORED_ID_PREFIX) && !objects.has(oid)) {
          // a put value whose store this call overtook (HTTP has no order between requests)
          pulls.push(
            objects.whenStored(oid, PUBLISH_WAIT_MS).then(() => put(args, p, objects.get(oid), msg.cid)),
          );
        } else put(args, p, objects.get(oid), msg.cid);
      } else {
        // node to node, over a link this node may open (never one the frame chose)
        const link = reachableLink(p.node!, p.endpoint, linkOptions, `Call "${msg.cid}" (argument ${p.i})`);
        const oid = p.oid!;
        // a put value never changes: the calls here share one pull of it (pulled_puts.ts)
        const pulled = oid.startsWith(STORED_ID_PREFIX)
          ? this.#pulledPuts.pull(p.endpoint, oid, () => link.fetchObject(oid))
          : link.fetchObject(oid);
        pulls.push(
          pulled.then((v) => {
            put(args, p, v, msg.cid);
          }, (e) => {
            // a holder this node cannot reach is lost to the call, also if it never reached it before
            if (!(e instanceof TransportError)) throw e;
            throw new NodeLostError(
              p.node!,
              `node "${node}" cannot pull argument ${p.i} from it: ${e.message}`,
              e,
            );
          }),
        );
      }
    }
    return pulls.length === 0 ? undefined : Promise.all(pulls).then(() => {});
  }
}
