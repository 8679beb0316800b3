/**
 * How results travel between calls without passing through the driver:
 * - **pipelining**: once a call was sent to a node over an ordered link, the calls waiting for its
 *   result that go to the same node are sent at once, naming it (`pipe: [{ i, cid }]`); the node
 *   keeps that result until they have all left ({@linkcode planPipeline}, {@linkcode pipeArgs});
 * - **objects that stay**: a ref whose value stayed on a node (a {@linkcode RemoteObject}) goes to a
 *   call as its id: to the same node as `{ i, oid }`, to another as `{ i, oid, node, endpoint }`,
 *   and that node pulls it node to node (over a link it may open: see `handle_wire.ts`'s `reachableLink`);
 * - **hand-offs**: the calls waiting for a call's result that go to a method of an instance on
 *   another node are sent at once too: the call is sent with `publish` (an id chosen here), and
 *   they name that id as an object on its node, which they pull as soon as they arrive (the node
 *   answers the pull once the call ended). The driver never waits for the result between the two.
 *
 * @module
 */
import { isPipelinedRef, pipelineCandidates, releasePipelined } from "../core/pipeline.ts";
import { LazyValue, materializeArgs } from "../core/lazy_value.ts";
import { findNested, replaceNested } from "../core/nested.ts";
import { addWaiter, pinInput, State, Task } from "../core/task.ts";
import { NodeLostError } from "../core/errors.ts";
import type { NodeLink } from "./link.ts";
import type { PipedArg } from "./protocol.ts";
import { RemoteObject } from "./remote_object.ts";

/** Results larger than this (as encoded) stay on the node that made them, unless the mesh says otherwise. */
export const DEFAULT_KEEP_ABOVE_BYTES: number = 64 * 1024;

/**
 * The `keepAbove` of a call sent on `link` (the mesh's `keepResultsAbove`, else the default), as a
 * message field: none when every result comes back.
 *
 * @param link The link the call goes on.
 * @returns `{ keepAbove, owner }`, or `{}`.
 *
 * @example
 * ```ts
 * import { keepFields } from "./objects.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * deepStrictEqual(keepFields({ holder: { options: { keepResultsAbove: Infinity } }, leaseId: "l" } as never), {});
 * // an op's NATS queue group: any member may answer, so nothing stays
 * deepStrictEqual(keepFields({ holder: { options: {} }, leaseId: "l", endpoint: "nats://h:4222/op:embed" } as never), {});
 * ```
 */
export function keepFields(link: NodeLink): { keepAbove?: number; owner?: string } {
  const above = keepAboveOf(link);
  return above !== undefined ? { keepAbove: above, owner: link.leaseId } : {};
}

/** {@linkcode keepFields}' `keepAbove`, without the object (asked once per call on a WebSocket). */
function keepAboveOf(link: NodeLink): number | undefined {
  if (isQueueGroup(link)) return undefined; // (no one node would hold it: see isQueueGroup)
  const options = (link.holder as { options?: { keepResultsAbove?: number } }).options;
  const above = options?.keepResultsAbove ?? DEFAULT_KEEP_ABOVE_BYTES;
  return Number.isFinite(above) ? above : undefined;
}

/**
 * Whether `link` reaches an op's NATS queue group (`nats://…/op:<op>`): NATS gives each call to one
 * of the group's nodes, so a result can neither stay "there" to be fetched or pulled later, nor be
 * named by call id by a later call that may land on another member. Its calls plan nothing and keep
 * nothing; every result comes back in its reply.
 *
 * @param link A link.
 * @returns True for a queue group's link.
 *
 * @example
 * ```ts
 * import { isQueueGroup } from "./objects.ts";
 * if (!isQueueGroup({ endpoint: "nats://h:4222/op:embed" } as never)) throw new Error("a queue group");
 * if (isQueueGroup({ endpoint: "nats://h:4222/gpu-1" } as never)) throw new Error("one node");
 * ```
 */
export function isQueueGroup(link: NodeLink): boolean {
  const e = link.endpoint;
  // (asked once or twice per call: the pattern runs only for an endpoint that starts with n or N)
  return typeof e === "string" && (e.charCodeAt(0) | 0x20) === 0x6e && /^nats:\/\/[^/]+\/op:/i.test(e);
}

/**
 * Where a call was sent, whether its result is kept for calls on the same link (by `cid`) or
 * published for other nodes (as object `publish`), and who may still need it there. A dependent
 * names the result only if its call is prepared while the result is pending ({@linkcode pipeArgs});
 * one prepared later gets the value (or the object it became) instead, and one cancelled first
 * never names it. So the node may forget it once no dependent can name it any more (each named it,
 * or the call settled here) and every call that named it has left (by `cid`) or ended (hand-offs).
 */
interface Sent {
  readonly link: NodeLink;
  cid: string | undefined;
  readonly keep: boolean;
  readonly publish: string | undefined;
  /** Dependents that may still name it: those that have not yet, until the call settles (none after). */
  unnamed: number;
  /** Calls that named it and have not left (by `cid`) or ended (a hand-off) yet. */
  naming: number;
}

const sentCalls = new WeakMap<object, Sent>();
/** Remote-capable op calls let through for pipelining: the link they must go to. */
const preferred = new WeakMap<object, NodeLink>();

/**
 * The link a pipelined op call must go to (where the result it names is), if it is one.
 *
 * @param task The op call's task (a cancel hook's `task`).
 * @returns The link, or `undefined`.
 *
 * @example
 * ```ts
 * import { pipelinedLink } from "./objects.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(pipelinedLink({}), undefined);
 * ```
 */
export function pipelinedLink(task: object | undefined): NodeLink | undefined {
  return task === undefined ? undefined : preferred.get(task);
}

/** Whether `d` (a dependent of a call sent on `link`) would go to the same node. */
function goesTo(d: Task<unknown>, link: NodeLink): boolean {
  if (d._ctx?.mesh !== link.holder && d._ctx?.mesh !== undefined) return false;
  const target = d._target as unknown as {
    kind: string;
    replica?: { link?: unknown };
    remoteCapable?: boolean;
    gpus?: number;
    name: string;
  };
  if (target.kind === "method") return target.replica?.link === link;
  if (target.remoteCapable !== true) return false;
  const w = link.knownWelcome();
  return w !== undefined && w.ops.includes(target.name) && w.gpus >= (target.gpus ?? 0);
}

/**
 * Whether `d` (a dependent of a call sent on `link`) is a method call to an instance on another
 * node of the same mesh, which can pull the result from `link`'s node itself (a hand-off).
 */
function handsOff(d: Task<unknown>, link: NodeLink): boolean {
  if (d._ctx?.mesh !== link.holder && d._ctx?.mesh !== undefined) return false;
  const target = d._target as unknown as { kind: string; replica?: { link?: NodeLink } };
  const to = target.kind === "method" ? target.replica?.link : undefined;
  return to !== undefined && to !== link && to.holder === link.holder && typeof to.endpoint === "string" &&
    typeof link.endpoint === "string";
}

/** What {@linkcode planPipeline} decided for a call: the dependents to let through once it left. */
export interface PipelinePlan {
  /** The dependents to let through once the call was sent (empty: none). */
  readonly dependents: Task<unknown>[];
  /** Whether the call must carry `keep` (dependents on the same link name it by call id). */
  readonly keep: boolean;
  /** The id the call must carry as `publish` (dependents on other nodes pull it by that id), if any. */
  readonly publish: string | undefined;
}

/** The plan of a call nothing waits for. */
export const NO_PLAN: PipelinePlan = Object.freeze({ dependents: [], keep: false, publish: undefined });

/**
 * The `keepAbove` of a call whose caller already awaits its result: the protocol's largest, so the
 * result comes back in the reply however large (kept on the node, it would cost the driver a second
 * round trip to fetch the bytes it is about to ask for).
 */
const AWAITED_KEEP_ABOVE = 2 ** 40;

/**
 * Writes into a call message the data plane's fields: the results its arguments name (`pipe`),
 * whether the node keeps or publishes its result (`plan`), and the link's `keepAbove` and `owner`
 * where its connection did not declare them once. Shared by method and op calls.
 *
 * A call whose task the driver already awaits (`await ref`, `.then`, a direct call) when it is sent
 * gets its result back in the reply whatever its size; a copy still stays on the node when calls on
 * it or on other nodes take the result (`plan`).
 *
 * @param message The call being built.
 * @param piped Its prepared arguments, if any were prepared.
 * @param plan What {@linkcode planPipeline} planned for it.
 * @param link Where it goes.
 * @param awaited Whether the caller already awaits the result.
 *
 * @example Nothing named, nothing planned: only the link's fields
 * ```ts
 * import { callDataFields, NO_PLAN } from "./objects.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const m: Record<string, unknown> = {};
 * callDataFields(m, undefined, NO_PLAN, { callKeepFields: () => ({ keepAbove: 10, owner: "o" }) } as never);
 * deepStrictEqual(m, { keepAbove: 10, owner: "o" });
 * ```
 */
export function callDataFields(
  message: { pipe?: readonly PipedArg[]; keep?: boolean; publish?: string; keepAbove?: number; owner?: string },
  piped: PipedCall | undefined,
  plan: PipelinePlan,
  link: NodeLink,
  awaited = false,
): void {
  if (piped?.pipe !== undefined) message.pipe = piped.pipe;
  if (piped?.from !== undefined) pulling.set(message, piped.from);
  if (plan.keep) message.keep = true;
  if (plan.publish !== undefined) message.publish = plan.publish;
  const keep = link.callKeepFields();
  if (keep.keepAbove !== undefined) {
    message.keepAbove = awaited ? AWAITED_KEEP_ABOVE : keep.keepAbove;
    message.owner = keep.owner;
  } else if (awaited || plan.publish !== undefined) {
    const declared = keepAboveOf(link) !== undefined; // (by the connection's session, once)
    // (the connection declared a keepAbove once: this call overrides it)
    if (awaited && declared) message.keepAbove = AWAITED_KEEP_ABOVE;
    // a published result goes with the link's lease when its driver never frees it (gone, cut
    // off): a link that keeps nothing names its lease for it
    if (plan.publish !== undefined && !declared) message.owner = link.leaseId;
  }
}

/**
 * Whether the driver already awaits `task`'s result (`await`, `.then`, a direct call made it a
 * promise).
 *
 * @param task The call's task, if known.
 * @returns True when its promise exists.
 *
 * @example
 * ```ts
 * import { awaited } from "./objects.ts";
 * if (awaited(undefined) || awaited({ _promise: undefined })) throw new Error("nobody awaits these");
 * if (!awaited({ _promise: Promise.resolve(1) })) throw new Error("this one is awaited");
 * ```
 */
export function awaited(task: object | undefined): boolean {
  return task !== undefined && (task as { _promise?: unknown })._promise !== undefined;
}

/**
 * The calls waiting for `task` (being sent on `link`) that may be sent at once, naming its result:
 * those going to the same node over an ordered link (by call id), and method calls to instances
 * on other nodes (hand-offs: they pull the result node to node by the id the call publishes).
 * A call with `retries` is not a source (a retry would be another call).
 *
 * @param task The call being sent (a cancel hook's `task`), if known.
 * @param link Where it goes.
 * @param retries Whether the call may be retried.
 * @returns The plan: the dependents to let through once it was sent, and the fields the call needs.
 *
 * @example Nothing to pipeline without a task
 * ```ts
 * import { planPipeline } from "./objects.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(planPipeline(undefined, {} as never, false).dependents.length, 0);
 * ```
 */
export function planPipeline(task: object | undefined, link: NodeLink, retries: boolean): PipelinePlan {
  if (task === undefined || retries || (task as Task<unknown>)._dependents === undefined) return NO_PLAN;
  if (isQueueGroup(link)) return NO_PLAN;
  const candidates = pipelineCandidates(task as Task<unknown>);
  if (candidates.length === 0) return NO_PLAN;
  const dependents: Task<unknown>[] = [];
  let keep = false, handoff = false;
  for (const d of candidates) {
    if (link.ordered && goesTo(d, link)) {
      keep = true;
      if (d._target.kind === "op") preferred.set(d, link);
      dependents.push(d);
    } else if (handsOff(d, link)) {
      handoff = true;
      dependents.push(d);
    }
  }
  if (dependents.length === 0) return NO_PLAN;
  return { dependents, keep, publish: handoff ? `p:${crypto.randomUUID()}` : undefined };
}

/**
 * `task` was sent on `link` as call `cid`: the dependents planned for it go now, and the node
 * forgets its kept (or published) result once they have all left (hand-offs: ended).
 *
 * @param task The call sent.
 * @param link Where.
 * @param cid Its call id.
 * @param plan What {@linkcode planPipeline} returned.
 *
 * @example Nothing planned, nothing kept
 * ```ts
 * import { planPipeline, sentPipelined } from "./objects.ts";
 * sentPipelined({}, {} as never, "c1", planPipeline(undefined, {} as never, false));
 * ```
 */
export function sentPipelined(task: object, link: NodeLink, cid: string, plan: PipelinePlan): void {
  const dependents = plan.dependents;
  if (dependents.length === 0) return;
  const t = task as Task<unknown>;
  const s: Sent = { link, cid, keep: plan.keep, publish: plan.publish, unnamed: dependents.length, naming: 0 };
  sentCalls.set(task, s);
  // a published result lives on its node with this link's lease until it is forgotten (a driver
  // that dies, or a link closed first, leaves it to the lease: see NodeLink.holdPublished)
  if (plan.publish !== undefined) link.holdPublished(plan.publish);
  // (one waiter per call whose dependents were let through: none on the common path)
  if (t._state < State.COMPLETED) addWaiter(t, (source) => sourceSettled(source, dependents));
  else s.unnamed = 0;
  releasePipelined(t, dependents);
  forgetIfUnneeded(task, s);
}

/**
 * A call whose dependents were let through settled here: a dependent prepared from now on gets
 * its value (or the object it became), so none names its result on the node any more. The object
 * it became stays on its node while those dependents run (their node may run them with it: a
 * release meanwhile frees it once they settled), as it does for the dependents that waited for it.
 */
function sourceSettled(task: Task<unknown>, dependents: readonly Task<unknown>[]): void {
  const kept = task._value;
  if (task._state === State.COMPLETED && kept instanceof LazyValue) {
    for (const d of dependents) if (d._state < State.COMPLETED) pinInput(d, kept);
  }
  const s = sentCalls.get(task);
  if (s === undefined) return;
  s.unnamed = 0;
  forgetIfUnneeded(task, s);
}

/** A call being prepared names the result `s` tells of (by `cid`, or as a hand-off). */
function namedPipelined(s: Sent): void {
  if (s.unnamed > 0) s.unnamed--;
  s.naming++;
}

/** A call that named `dep`'s result has left (by `cid`), ended (a hand-off) or given up. */
function leftPipelined(dep: object): void {
  const s = sentCalls.get(dep);
  if (s === undefined) return;
  s.naming--;
  forgetIfUnneeded(dep, s);
}

/** The node forgets `dep`'s kept or published result once no call needs it (see {@linkcode Sent}). */
function forgetIfUnneeded(dep: object, s: Sent): void {
  if (s.unnamed > 0 || s.naming > 0) return;
  sentCalls.delete(dep);
  if (s.keep && s.cid !== undefined) s.link.freeResult(s.cid);
  if (s.publish !== undefined) s.link.forgetPublished(s.publish);
}

/** A call's arguments as they travel to a node, and what to do once it left. */
export interface PipedCall {
  /** The arguments (`null` where `pipe` names a result). */
  readonly args: unknown[];
  /** The results named, if any. */
  readonly pipe: PipedArg[] | undefined;
  /**
   * Call once the call's frame was handed to the link (the kept results it names may go); only
   * the first call counts.
   */
  sent(): void;
  /**
   * Call when the call ended, however (results it pulls from other nodes may go then; a call that
   * never left gives its turn up).
   */
  ended(): void;
  /**
   * What the call must hold until it has an answer: the objects it names stay alive, and a release
   * frees them once the call ended.
   */
  readonly holds: readonly unknown[];
  /**
   * The other nodes' links whose results the call's node pulls (hand-offs, objects kept there), if
   * any: the driver fails the call if it takes one of those nodes for lost first (see
   * {@linkcode pullsFrom}).
   */
  readonly from?: readonly NodeLink[];
}

/** What each call message being sent pulls from other nodes (set by {@linkcode callDataFields}). */
const pulling = new WeakMap<object, readonly NodeLink[]>();

/**
 * The other nodes whose results the node of call `message` pulls (a hand-off, an object kept
 * there): while it waits for its reply, the driver watches them, and fails the call when it takes
 * one for lost (`link.ts`), rather than wait for the node's own link to give up on it.
 *
 * @param message A call message made with {@linkcode callDataFields}.
 * @returns Their links, or `undefined`.
 *
 * @example A call that pulls nothing
 * ```ts
 * import { pullsFrom } from "./objects.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(pullsFrom({}), undefined);
 * ```
 */
export function pullsFrom(message: object): readonly NodeLink[] | undefined {
  return pulling.get(message);
}

/** Where a result sits inside an argument: the keys from the argument down (see `PipedArg.path`). */
type Path = (string | number)[];

/** How deep in an argument results are looked for (as the DAG looks for refs). */
const MAX_DEPTH = 32;

function isPlain(v: object): boolean {
  if (Array.isArray(v)) return true;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/**
 * `v` (an array or plain object) with what `swap` replaces among the values nested in it, copied
 * only along the paths that changed; `v` itself when nothing did.
 */
function swapNested(
  v: object,
  path: Path,
  swap: (x: object, path: Path) => { value: unknown } | undefined,
): object {
  if (path.length >= MAX_DEPTH) return v;
  let out: Record<string | number, unknown> | undefined;
  const at = (k: string | number, x: unknown) => {
    if (typeof x !== "object" || x === null) return;
    const p = [...path, k];
    const swapped = swap(x, p);
    const r = swapped !== undefined ? swapped.value : isPlain(x) ? swapNested(x, p, swap) : x;
    if (r !== x) (out ??= (Array.isArray(v) ? v.slice() : { ...v }) as Record<string | number, unknown>)[k] = r;
  };
  if (Array.isArray(v)) { for (let i = 0; i < v.length; i++) at(i, v[i]); }
  else for (const k of Object.keys(v)) at(k, (v as Record<string, unknown>)[k]);
  return out ?? v;
}

/** Sets `value` at `path` inside `root` (containers along it are the copies {@linkcode swapNested} made). */
function setAt(root: unknown, path: Path, value: unknown): void {
  let c = root as Record<string | number, unknown>;
  for (let i = 0; i < path.length - 1; i++) c = c[path[i]] as Record<string | number, unknown>;
  c[path[path.length - 1]] = value;
}

/**
 * The arguments of a call to `link` with the results among them named instead of carried, at the
 * top of an argument or nested in arrays and plain objects (`PipedArg.path`): pipelined refs
 * (pending results of calls sent on this link) by call id, pending results of calls sent to other
 * nodes by the id they publish (the node pulls them), objects kept on nodes by object id (this
 * node's, or another's, which the node pulls).
 *
 * @param args The body's arguments (refs let through for pipelining among them).
 * @param link Where the call goes.
 * @returns The call's arguments and pipe.
 *
 * @example Plain values pass as they are
 * ```ts
 * import { pipeArgs } from "./objects.ts";
 * import { deepStrictEqual, strictEqual } from "node:assert/strict";
 * const c = await pipeArgs([1, "a", { b: [2] }], {} as never);
 * // (synchronous when nothing needs fetching)
 * deepStrictEqual(c.args, [1, "a", { b: [2] }]);
 * strictEqual(c.pipe, undefined);
 * ```
 */
export function pipeArgs(args: unknown[], link: NodeLink): PipedCall | Promise<PipedCall> {
  let pipe: PipedArg[] | undefined;
  let out: unknown[] | undefined;
  const deps: object[] = []; // named by call id: their turn ends when this call left
  const pulled: object[] = []; // pulled by the node from other nodes (hand-offs): their turn ends with this call
  const holds: RemoteObject[] = []; // pinned until the call ends
  let from: NodeLink[] | undefined; // the other nodes it pulls from
  /** Refs whose value must be waited for here (not sent where they can be named), and where they go. */
  let waits: { i: number; path: Path | undefined; ref: Task<unknown> }[] | undefined;
  const named = (i: number, path: Path | undefined, entry: Omit<PipedArg, "i" | "path">) => {
    (pipe ??= []).push(path === undefined ? { i, ...entry } : { i, path, ...entry });
    return { value: null };
  };
  // what a result found at argument i (at `path` inside it) becomes: named (null in its place), its
  // value (a ref settled meanwhile), or `undefined`: left as it is
  const swap = (a: object, i: number, path: Path | undefined): { value: unknown } | undefined => {
    if (a instanceof Task && !isPipelinedRef(a)) {
      // a ref let through that settled meanwhile (a call sent again): its outcome, not named
      if (a._state !== State.COMPLETED) throw a._error;
      const v = a._value;
      if (typeof v !== "object" || v === null) return { value: v };
      return swap(v, i, path) ?? { value: v };
    }
    if (isPipelinedRef(a)) {
      const s = sentCalls.get(a);
      if (s !== undefined && s.link === link && s.keep && s.cid !== undefined) {
        namedPipelined(s);
        deps.push(a);
        return named(i, path, { cid: s.cid });
      }
      if (s !== undefined && s.link !== link && s.publish !== undefined) {
        // a hand-off: the node pulls it from where it is being made, as soon as this call arrives
        namedPipelined(s);
        pulled.push(a);
        (from ??= []).push(s.link);
        return named(i, path, { oid: s.publish, node: s.link.node, endpoint: s.link.endpoint });
      }
      // not sent there, or its node forgot it already (no call could name it any more, see Sent):
      // its value is waited for here
      (waits ??= []).push({ i, path, ref: a });
      return { value: null };
    }
    if (a instanceof RemoteObject) {
      // a release meanwhile frees it once the call ended (a put value's copy has no ref that an
      // input's pin would hold: see pinInput)
      a.pin();
      holds.push(a);
      if (a.link !== link) (from ??= []).push(a.link);
      return named(
        i,
        path,
        a.link === link ? { oid: a.oid } : { oid: a.oid, node: a.link.node, endpoint: a.link.endpoint },
      );
    }
    return undefined;
  };
  try {
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      if (typeof a !== "object" || a === null) continue;
      const swapped = swap(a, i, undefined);
      const r = swapped !== undefined ? swapped.value : isPlain(a) ? swapNested(a, [], (x, p) => swap(x, i, p)) : a;
      if (r !== a) (out ??= args.slice())[i] = r;
    }
  } catch (e) {
    // an argument failed (a ref let through settled failed): the call never leaves, and the
    // results it named so far are not waited for
    for (const d of deps) leftPipelined(d);
    for (const d of pulled) leftPipelined(d);
    for (const o of holds) o.unpin();
    throw e;
  }
  const final = out ?? args;
  let left = false, ended = false;
  // idempotent: called when the frame left, and again (for nothing) when the call ends
  const leave = () => {
    if (left) return;
    left = true;
    for (const d of deps) leftPipelined(d);
  };
  const end = () => {
    leave();
    if (ended) return;
    ended = true;
    for (const d of pulled) leftPipelined(d);
    for (let i = 0; i < holds.length; i++) holds[i].unpin();
  };
  const call: PipedCall = from === undefined
    ? { args: final, pipe, sent: leave, ended: end, holds }
    : { args: final, pipe, sent: leave, ended: end, holds, from };
  // other values kept elsewhere (not on a node of this mesh) travel as values, fetched here
  let slow = waits !== undefined;
  for (let i = 0; i < final.length && !slow; i++) {
    const v = final[i];
    slow = v instanceof LazyValue || (typeof v === "object" && v !== null && materializeArgs([v]) !== undefined);
  }
  if (!slow) return call;
  return (async () => {
    const vals = final === args ? args.slice() : final;
    try {
      for (const w of waits ?? []) {
        const v = await w.ref;
        if (w.path === undefined) vals[w.i] = v;
        else setAt(vals[w.i], w.path, v);
      }
      await materializeArgs(vals);
    } catch (e) {
      end(); // (its caller never gets the call to end it)
      throw e;
    }
    return { ...call, args: vals };
  })();
}

/**
 * After a call on `link` failed with `error`: when that is the loss of another node holding objects
 * among `args`, at their top or nested in arrays and plain objects at any depth (the node pulling
 * them found it gone), the arguments with those objects made again
 * (ops with `retries` re-run: lineage), to send the call once more; a loss nobody can repair is a
 * `NodeLostError` naming the node and the op or method that made the object. `undefined` for any
 * other failure.
 *
 * @param error What the call failed with.
 * @param args The call's arguments as the body got them.
 * @param link Where the call went.
 * @returns The arguments to send again, or `undefined`.
 *
 * @example Other failures are left alone
 * ```ts
 * import { argsAfterLoss } from "./objects.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(await argsAfterLoss(new Error("x"), [1], { node: "b" } as never), undefined);
 * ```
 */
export async function argsAfterLoss(error: unknown, args: readonly unknown[], link: NodeLink): Promise<
  unknown[] | undefined
> {
  if (!(error instanceof NodeLostError) || error.node === link.node) return undefined;
  const lost = (v: object): boolean => v instanceof RemoteObject && v.link.node === error.node;
  let nested = false;
  for (const a of args) if (typeof a === "object" && a !== null && !lost(a) && isPlain(a)) nested = true;
  // (the common case: every object lost is an argument itself)
  if (!nested) {
    if (!args.some((v) => typeof v === "object" && v !== null && lost(v))) return undefined;
    return await Promise.all(args.map((v) => (v instanceof RemoteObject && lost(v) ? v.remade(error) : v)));
  }
  // also those nested in arrays and plain objects, at any depth (as pipeArgs named them), each made
  // again once however many times it is named; the containers that hold one are copied
  const found: object[] = [];
  const reach = new Set<object>();
  for (const a of args) {
    if (typeof a !== "object" || a === null) continue;
    if (lost(a)) found.push(a);
    // (a cycle that holds one cannot be copied: that call is not sent again)
    else if (isPlain(a) && findNested(a, lost, found, reach)) return undefined;
  }
  if (found.length === 0) return undefined;
  const unique = [...new Set(found as RemoteObject[])];
  const values = await Promise.all(unique.map((o) => o.remade(error)));
  const again = new Map<object, unknown>(unique.map((o, i) => [o, values[i]]));
  const swap = (v: object) => (again.has(v) ? again.get(v) : v);
  return args.map((a) =>
    typeof a !== "object" || a === null
      ? a
      : again.has(a)
      ? again.get(a)
      : reach.has(a)
      ? replaceNested(a, reach, swap)
      : a
  );
}

/**
 * Gives up the turn of a call prepared with {@linkcode pipeArgs} that did not leave (it failed
 * before its frame was sent): the kept results it named may go.
 *
 * @param call The prepared call.
 *
 * @example
 * ```ts
 * import { pipeArgs, abandonPiped } from "./objects.ts";
 * abandonPiped(await pipeArgs([], {} as never));
 * ```
 */
export function abandonPiped(call: PipedCall): void {
  call.ended();
}
