/**
 * A call's arguments that name results instead of carrying them (`CallMessage.pipe`): a call's kept
 * or running result and an object kept on this node are put in place at once (a call's result that
 * is a stream is refused: its items go to its own caller); an object on another node is pulled,
 * over a link this node may open (a peer, or a node its driver declared), never one the frame chose,
 * and a `put` value pulled once for all the calls here that name it.
 *
 * @module
 */
import { NodeLostError, ProtocolError, TransportError } from "../core/errors.ts";
import type { ObjectRef } from "../core/object_ref.ts";
import { Stream } from "../core/stream.ts";
import { addWaiter, settle, State, type Task } from "../core/task.ts";
import { failure } from "../core/invoke.ts";
import { type CallMessage, type PipedArg, PUBLISH_WAIT_MS, STORED_ID_PREFIX } from "./protocol.ts";
import { PulledPuts } from "./pulled_puts.ts";
import { reachableLink } from "./handle_wire.ts";
import { refusalExplained } from "./reach_refusal.ts";
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

/** A call waiting for its pulls (see {@linkcode PipedArgs.entering}). */
interface Entering {
  readonly promise: Promise<ObjectRef<unknown>>;
}

/**
 * Refuses a call whose arguments name another call's result on this node that turns out to be a
 * stream: its items go to that call's caller (the reply to it), so two readers would split them.
 * Told of each result still unsettled when the call's arguments were filled in ({@linkcode watch});
 * the first that settles as a stream fails the call ({@linkcode made}) before it could start, since a
 * ref tells those who wait for it before it starts the calls that take it.
 *
 * @example A result that settles as a stream fails the call that names it
 * ```ts
 * import { PipedStreams } from "./piped_args.ts";
 * import { op } from "../mod.ts";
 * import { rejects } from "node:assert/strict";
 * const gate = Promise.withResolvers<void>();
 * const made = op(async function* pipedStreamsDocItems(_: unknown) {
 *   yield 1;
 * });
 * const takes = op(async function pipedStreamsDocSum(xs: AsyncIterable<number>) {
 *   let s = 0;
 *   for await (const x of xs) s += x;
 *   return s;
 * });
 * const wait = op(async function pipedStreamsDocWait() {
 *   await gate.promise;
 * });
 * const source = made.go(wait.go()); // (runs once the gate opens)
 * const watch = new PipedStreams();
 * watch.watch(source as never, () => new TypeError("argument 0 is a stream"));
 * const sum = takes.go(source);
 * watch.made(sum);
 * gate.resolve();
 * await rejects(Promise.resolve(sum), /argument 0 is a stream/);
 * ```
 */
export class PipedStreams {
  /** The call, once made. */
  #call: Task<unknown> | undefined;
  /** Why it is refused, when that was known before it was made. */
  #refused: unknown;

  /**
   * Watches a result the call names: refused with `error()` if it settles as a stream.
   *
   * @param source The result's call (unsettled).
   * @param error The call's error then.
   */
  watch(source: Task<unknown>, error: () => TypeError): void {
    addWaiter(source, (s) => {
      if (s._state !== State.COMPLETED || !(s._value instanceof Stream)) return;
      const call = this.#call;
      if (call === undefined) this.#refused ??= error();
      else refuse(call, error());
    });
  }

  /**
   * The call was made: it fails at once if a result it names is a stream already.
   *
   * @param ref The call's ref.
   */
  made(ref: ObjectRef<unknown>): void {
    const call = ref as unknown as Task<unknown>;
    if (this.#refused !== undefined) refuse(call, this.#refused);
    else this.#call = call;
  }
}

/**
 * Fails `call` with `e` (its error as its body's throw would make it) if it has not started: it
 * waits for an input, so its target forgets it as it would a call whose input failed.
 */
function refuse(call: Task<unknown>, e: unknown): void {
  if (call._state !== State.PENDING) return;
  call._args = undefined;
  settle(call, State.FAILED, failure(call, e));
  call._target.dropped?.(call);
}

/**
 * The error of a call that names a stream among its arguments (`made`: the call whose result it
 * is): its items go to the caller that made that call, in the reply to it, so no call on a node
 * can take it; the `TypeError` a driver throws for a stream it holds, said from here.
 */
function pipedStreamError(msg: CallMessage, p: PipedArg, made: string, node: string): TypeError {
  const what = msg.op === undefined ? `method "${msg.method}"` : `op "${msg.op}"`;
  return new TypeError(
    `Cannot call ${what} on node "${node}": argument ${p.i}${
      p.path === undefined ? "" : ` (at ${p.path.join(".")})`
    } ` +
      `is the stream "${made}" returns, whose items go to the caller of "${made}": a stream does not travel ` +
      "on to another call's node, even the node that made it. Read it where it arrives (an op that is not " +
      "remote-capable takes it as its items come), or collect its items into an array first",
  );
}

/** The sizes a transport's too-large error names: the frame's, then the limit's. */
const TOO_LARGE_SIZES = /\b(\d+) bytes\b[^]*?\b(\d+) bytes\b/;

/**
 * The error of a pull that a frame limit refused (`e`, the transport's): the object is too large
 * to move between the two nodes, which are both there. Says which argument of which call, what it
 * is, its size and the limit, and how to make it fit.
 *
 * @example
 * ```ts
 * import { tooLargeToPull } from "./piped_args.ts";
 * import { replyTooLarge } from "./_common.ts";
 * import { match, strictEqual } from "node:assert/strict";
 * const msg = { t: "call", cid: "c1", method: "sum", args: [null] } as const;
 * const e = tooLargeToPull(msg as never, { i: 0, oid: "o", node: "A", endpoint: "ws://a" }, "B", replyTooLarge(2048, 1024));
 * strictEqual(e.reason, "too-large");
 * match(e.message, /^Node "B" cannot pull argument 0 of method "sum" \(a result kept on node "A"\) from node "A"/);
 * match(e.message, /its 2048 bytes as encoded are over the frame limit of 1024 bytes/);
 * ```
 */
export function tooLargeToPull(msg: CallMessage, p: PipedArg, node: string, e: TransportError): TransportError {
  const oid = p.oid!;
  const what = oid.startsWith(STORED_ID_PREFIX)
    ? "a ta.put() value stored"
    : oid.startsWith("p:")
    ? "the result of a call"
    : "a result kept";
  const sizes = TOO_LARGE_SIZES.exec(e.message);
  const over = sizes === null
    ? e.message
    : `its ${sizes[1]} bytes as encoded are over the frame limit of ${sizes[2]} bytes`;
  const holder = JSON.stringify(p.node);
  return new TransportError(
    "too-large",
    `Node ${JSON.stringify(node)} cannot pull argument ${p.i}${
      p.path === undefined ? "" : ` (at ${p.path.join(".")})`
    } ` +
      `of ${msg.op !== undefined ? `op "${msg.op}"` : `method "${msg.method}"`} (${what} on node ${holder}) from ` +
      `node ${holder}: it is too large to move between nodes: ${over}. Raise --max-frame-bytes (maxFrameBytes) ` +
      `of node ${holder}, which sends it, and of node ${JSON.stringify(node)}, which takes it, above its size, or ` +
      `pass it only to calls that run on node ${holder}`,
    p.endpoint,
    e,
  );
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
  /**
   * Calls waiting for results pulled from other nodes before they run, by call key: a call that
   * names one of them waits for it to run (its ref) or fail (its error) before it runs itself.
   */
  readonly #entering = new Map<string, Entering>();
  /** Put values pulled from other nodes, shared by the calls here that name them. */
  readonly #pulledPuts = new PulledPuts();

  /** @param sources Where the results are. */
  constructor(sources: PipeSources) {
    this.#sources = sources;
  }

  /**
   * Puts in `args` the results a call names instead of carrying (`msg.pipe`): a call's kept or
   * running result and an object here are taken at once (a call's result that is a stream is
   * refused, now or, through `watch`, when it settles); objects on other nodes are pulled, over a
   * link this node may open (a peer, or a node its driver declared), never one the frame chose.
   * Returns the promise of the pulls, if any.
   *
   * @param msg The call.
   * @param args Its arguments (revived), where the results go.
   * @param scope Which calls its call ids are unique among (its connection's): `kept` and `calls`
   * are keyed by `keyInScope(scope, cid)` (node_calls.ts).
   * @param watch Told of each call's result put in that has not settled yet (see
   * {@linkcode PipedStreams}).
   * @returns The pulls' promise, or `undefined` when every result was here.
   * @throws {ProtocolError} For a result that is not here (a call's not kept, or freed) or a place
   * in the arguments that holds no `null`.
   * @throws {TypeError} For a call's result that is a stream (its items go to that call's caller).
   */
  fill(msg: CallMessage, args: unknown[], scope: string, watch?: PipedStreams): Promise<void> | undefined {
    const { kept, calls, objects, linkOptions, node } = this.#sources;
    const pulls: Promise<void>[] = [];
    for (const p of msg.pipe!) {
      if (p.cid !== undefined) {
        const k = keyInScope(scope, p.cid);
        const ref = kept.get(k) ?? calls.get(k);
        if (ref !== undefined) {
          this.#named(msg, p, args, ref, watch);
          continue;
        }
        // a call still pulling its own arguments: this one waits until it runs (or fails with it)
        const entering = this.#entering.get(k);
        if (entering === undefined) {
          throw new ProtocolError(
            `Call "${msg.cid}" names the result of call "${p.cid}" (argument ${p.i}), which node "${node}" ` +
              "does not hold: it was not sent on this connection with keep, or was freed",
          );
        }
        pulls.push(entering.promise.then((made) => this.#named(msg, p, args, made, watch)));
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
            // too large for the frames between the two nodes: the holder is there, and a run again
            // (lineage) would make a result just as large
            if (e instanceof TransportError && e.reason === "too-large") throw tooLargeToPull(msg, p, node, e);
            // a holder this node cannot reach is lost to the call, also if it never reached it before
            if (!(e instanceof TransportError)) {
              // refused: the error names both nodes, what was pulled, and what to change
              throw refusalExplained(
                e,
                link,
                `argument ${p.i} of ${msg.op !== undefined ? `op "${msg.op}"` : `method "${msg.method}"`} ` +
                  "(a result kept there)",
              );
            }
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

  /**
   * A call's result put among another's arguments: its ref, or a refusal when it is a stream (now,
   * or through `watch` when it settles as one).
   */
  #named(msg: CallMessage, p: PipedArg, args: unknown[], ref: ObjectRef<unknown>, watch?: PipedStreams): void {
    const node = this.#sources.node;
    // a stream it makes goes to the caller, in the reply to its own call: never to this one
    const source = ref as unknown as Task<unknown>;
    if (source._state === State.COMPLETED && source._value instanceof Stream) {
      throw pipedStreamError(msg, p, ref.name, node);
    }
    put(args, p, ref, msg.cid);
    if (source._state === State.PENDING || source._state === State.RUNNING) {
      watch?.watch(source, () => pipedStreamError(msg, p, ref.name, node));
    }
  }

  /**
   * Call `key` waits for the results it pulls before it runs: calls that name its result wait for
   * it. Tell the returned entry when it runs (`made`) or will not (`failed`, also after `made`: then
   * nothing); either forgets it.
   *
   * @param key The call's key.
   * @returns Its entry.
   */
  entering(key: string): { made(ref: ObjectRef<unknown>): void; failed(error: unknown): void } {
    let resolve!: (ref: ObjectRef<unknown>) => void, reject!: (e: unknown) => void;
    const promise = new Promise<ObjectRef<unknown>>((res, rej) => (resolve = res, reject = rej));
    promise.catch(() => {}); // (nobody may wait for it)
    const entry: Entering = { promise };
    this.#entering.set(key, entry);
    const forget = () => {
      if (this.#entering.get(key) === entry) this.#entering.delete(key);
    };
    return {
      made: (ref) => {
        forget();
        resolve(ref);
      },
      failed: (e) => {
        forget();
        reject(e);
      },
    };
  }
}
