/**
 * How results travel between calls without passing through the driver:
 * - **pipelining**: once a call was sent to a node over an ordered link, the calls waiting for its
 *   result that go to the same node are sent at once, naming it (`pipe: [{ i, cid }]`); the node
 *   keeps that result until they have all left ({@linkcode planPipeline}, {@linkcode pipeArgs});
 * - **objects that stay**: a ref whose value stayed on a node (a {@linkcode RemoteObject}) goes to a
 *   call as its id: to the same node as `{ i, oid }`, to another as `{ i, oid, node, endpoint }`,
 *   and that node pulls it node to node (over a link it may open: see `handle_wire.ts`'s `reachableLink`).
 *
 * @module
 */
import { isPipelinedRef, pipelineCandidates, releasePipelined } from "../core/pipeline.ts";
import { LazyValue, materializeArgs } from "../core/lazy_value.ts";
import { State, Task } from "../core/task.ts";
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
 * ```
 */
export function keepFields(link: NodeLink): { keepAbove?: number; owner?: string } {
  const options = (link.holder as { options?: { keepResultsAbove?: number } }).options;
  const above = options?.keepResultsAbove ?? DEFAULT_KEEP_ABOVE_BYTES;
  return Number.isFinite(above) ? { keepAbove: above, owner: link.leaseId } : {};
}

/** Where a call was sent, and how many pipelined calls must still leave before its kept result may go. */
interface Sent {
  readonly link: NodeLink;
  cid: string | undefined;
  waiting: number;
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
 * The calls waiting for `task` (being sent on `link`) that may be sent at once, naming its result.
 * A call with `retries` is not a source (a retry would be another call), nor is an unordered link.
 *
 * @param task The call being sent (a cancel hook's `task`), if known.
 * @param link Where it goes.
 * @param retries Whether the call may be retried.
 * @returns The dependents to let through once it was sent (empty: none, and no `keep` needed).
 *
 * @example Nothing to pipeline without a task
 * ```ts
 * import { planPipeline } from "./objects.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(planPipeline(undefined, {} as never, false).length, 0);
 * ```
 */
export function planPipeline(task: object | undefined, link: NodeLink, retries: boolean): Task<unknown>[] {
  if (task === undefined || retries || !link.ordered) return [];
  const out = pipelineCandidates(task as Task<unknown>).filter((d) => goesTo(d, link));
  for (const d of out) if (d._target.kind === "op") preferred.set(d, link);
  return out;
}

/**
 * `task` was sent on `link` as call `cid`: the `dependents` planned for it go now, and the node
 * forgets its kept result once they have all left.
 *
 * @param task The call sent.
 * @param link Where.
 * @param cid Its call id.
 * @param dependents What {@linkcode planPipeline} returned.
 *
 * @example Nothing planned, nothing kept
 * ```ts
 * import { sentPipelined } from "./objects.ts";
 * sentPipelined({}, {} as never, "c1", []);
 * ```
 */
export function sentPipelined(task: object, link: NodeLink, cid: string, dependents: Task<unknown>[]): void {
  if (dependents.length === 0) return;
  sentCalls.set(task, { link, cid, waiting: dependents.length });
  releasePipelined(task as Task<unknown>, dependents);
}

/** One pipelined call that named `dep`'s result has left (or given up): the last one frees it. */
function leftPipelined(dep: object): void {
  const s = sentCalls.get(dep);
  if (s === undefined || --s.waiting > 0) return;
  sentCalls.delete(dep);
  if (s.cid !== undefined) s.link.freeResult(s.cid);
}

/** A call's arguments as they travel to a node, and what to do once it left. */
export interface PipedCall {
  /** The arguments (`null` where `pipe` names a result). */
  readonly args: unknown[];
  /** The results named, if any. */
  readonly pipe: PipedArg[] | undefined;
  /**
   * Call once the call's frame was handed to the link (the kept results it names may go), and
   * again when the call ended (a call that never left gives its turn up); only the first counts.
   */
  sent(): void;
  /** What the call must hold until it has an answer (the objects it names stay alive). */
  readonly holds: readonly unknown[];
}

/**
 * The arguments of a call to `link` with the results among them named instead of carried:
 * pipelined refs (pending results of calls sent on this link) by call id, objects kept on nodes by
 * object id (this node's, or another's, which the node pulls). A result nested inside an array or
 * object travels as a value (fetched here).
 *
 * @param args The body's arguments (refs let through for pipelining among them).
 * @param link Where the call goes.
 * @returns The call's arguments and pipe.
 *
 * @example Plain values pass as they are
 * ```ts
 * import { pipeArgs } from "./objects.ts";
 * import { deepStrictEqual, strictEqual } from "node:assert/strict";
 * const c = await pipeArgs([1, "a"], {} as never);
 * // (synchronous when nothing needs fetching)
 * deepStrictEqual(c.args, [1, "a"]);
 * strictEqual(c.pipe, undefined);
 * ```
 */
export function pipeArgs(args: unknown[], link: NodeLink): PipedCall | Promise<PipedCall> {
  let pipe: PipedArg[] | undefined;
  let out: unknown[] | undefined;
  let slow = false;
  const deps: object[] = [];
  const holds: unknown[] = [];
  for (let i = 0; i < args.length; i++) {
    let a = args[i];
    if (typeof a !== "object" || a === null) continue;
    if (a instanceof Task && !isPipelinedRef(a)) {
      // a ref let through that settled meanwhile (a call sent again): its outcome
      if (a._state !== State.COMPLETED) throw a._error;
      (out ??= args.slice())[i] = a = a._value;
      if (typeof a !== "object" || a === null) continue;
    }
    if (isPipelinedRef(a)) {
      const s = sentCalls.get(a);
      if (s !== undefined && s.link === link && s.cid !== undefined) {
        (pipe ??= []).push({ i, cid: s.cid });
        deps.push(a);
        (out ??= args.slice())[i] = null;
      } else slow = true; // not sent there: its value is waited for here (never expected)
    } else if (a instanceof RemoteObject) {
      holds.push(a);
      (pipe ??= []).push(
        a.link === link ? { i, oid: a.oid } : { i, oid: a.oid, node: a.link.node, endpoint: a.link.endpoint },
      );
      (out ??= args.slice())[i] = null;
    }
  }
  const final = out ?? args;
  let left = false;
  // idempotent: called when the frame left, and again (for nothing) when the call ends
  const leave = () => {
    if (left) return;
    left = true;
    for (const d of deps) leftPipelined(d);
  };
  const call: PipedCall = { args: final, pipe, sent: leave, holds };
  // results nested in arrays and objects (and refs not sent there) travel as values, fetched here
  for (let i = 0; i < final.length && !slow; i++) {
    const v = final[i];
    slow = v instanceof LazyValue || (typeof v === "object" && v !== null && !(v instanceof RemoteObject) &&
      materializeArgs([v]) !== undefined);
  }
  if (!slow) return call;
  return (async () => {
    if (final === args) out = args.slice();
    const vals = out!;
    for (let i = 0; i < vals.length; i++) if (isPipelinedRef(vals[i])) vals[i] = await (vals[i] as Task<unknown>);
    await materializeArgs(vals);
    return { ...call, args: vals };
  })();
}

/**
 * After a call on `link` failed with `error`: when that is the loss of another node holding objects
 * among `args` (the node pulling them found it gone), the arguments with those objects made again
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
  const lost = (v: unknown): v is RemoteObject => v instanceof RemoteObject && v.link.node === error.node;
  if (!args.some(lost)) return undefined;
  return await Promise.all(args.map((v) => (lost(v) ? v.remade(error) : v)));
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
  call.sent();
}
