/**
 * Promise pipelining in the DAG: a call whose input is the pending result of a call already sent
 * to a node may be sent there at once, naming that result, when it goes to the same node over an
 * ordered link; the node resolves the input itself. The transports decide which dependents may go
 * (they know links and nodes); here they are let through: they stop counting the input as pending
 * and it reaches their body as the unsettled ref itself (`dag.ts`'s `resolveArgs`).
 *
 * @module
 */
import { addWaiter, failWithInput, settle, State, Task } from "./task.ts";

const { PENDING, COMPLETED, FAILED } = State;

/**
 * The unsettled dependents of `dep` that wait for it (among their arguments, or nested in an
 * array or plain object among them), each with no other pending input.
 *
 * @param dep A task whose body was just sent to a node.
 * @returns The dependents that could be sent now, naming `dep`'s result.
 *
 * @example A dependent whose only input is pending
 * ```ts
 * import { op } from "./op.ts";
 * import { pipelineCandidates } from "./pipeline.ts";
 * import type { Task } from "./task.ts";
 * import { strictEqual } from "node:assert/strict";
 * let open: () => void = () => {};
 * const gate = new Promise<void>((r) => (open = r));
 * const slow = op(async function pipelineDocSlow() { await gate; return 1; });
 * const inc = op(function pipelineDocInc(x: number) { return x + 1; });
 * const a = slow.go();
 * const b = inc.go(a);
 * strictEqual(pipelineCandidates(a as unknown as Task<unknown>)[0], b);
 * open();
 * strictEqual(await b, 2);
 * ```
 */
export function pipelineCandidates(dep: Task<unknown>): Task<unknown>[] {
  const deps = dep._dependents;
  if (deps === undefined) return [];
  const out: Task<unknown>[] = [];
  for (let i = 0; i < deps.length; i++) {
    const d = deps[i];
    // (one pending input: a ref named twice, at the top or nested, counts twice)
    if (d._state !== PENDING || d._pending !== 1 || d._shape === 0 || out.includes(d)) continue;
    out.push(d);
  }
  return out;
}

/**
 * Lets `dependents` of `dep` (from {@linkcode pipelineCandidates}) start now: they no longer wait
 * for `dep`, and get it in their arguments as the unsettled ref. Their bodies must send it to
 * where `dep` runs, naming its result.
 *
 * @param dep The task whose result they name.
 * @param dependents Those to let through.
 *
 * @example See {@linkcode pipelineCandidates}; the transports call this once `dep`'s call was sent.
 * ```ts
 * import { releasePipelined } from "./pipeline.ts";
 * import { op } from "./op.ts";
 * import type { Task } from "./task.ts";
 * import { strictEqual } from "node:assert/strict";
 * const a = op(function pipelineDocA() { return 1; }).go() as unknown as Task<unknown>;
 * releasePipelined(a, []); // nothing to let through
 * strictEqual(await a, 1);
 * ```
 */
export function releasePipelined(dep: Task<unknown>, dependents: readonly Task<unknown>[]): void {
  const deps = dep._dependents;
  if (deps === undefined) return;
  let released: Task<unknown>[] | undefined, recorded: Task<unknown>[] | undefined;
  for (const d of dependents) {
    const at = deps.indexOf(d);
    if (at < 0 || d._state !== PENDING) continue;
    deps.splice(at, 1);
    (released ??= []).push(d);
    if (--d._pending !== 0) continue;
    const m = d._meta;
    if (m !== undefined) {
      m.readyAt = performance.now();
      (recorded ??= []).push(d);
    }
    try {
      d._target.ready(d);
    } catch (e) {
      settle(d, FAILED, e);
    }
  }
  if (deps.length === 0) dep._dependents = undefined;
  // they are no longer among `dep`'s dependents, which a failure or cancel of `dep` fails (task.ts'
  // flushSettled): this waiter does it for them (one per call whose dependents were let through)
  if (released !== undefined) addWaiter(dep, (input) => inputSettled(input, released, recorded));
}

/**
 * `input` settled. Failed or cancelled here: the dependents sent ahead of it fail with it, as those
 * that waited for it do, and are stopped on their node, where its result may still come and must
 * not be used (a cancel that reached its node after the body finished there stops nothing). Else
 * the recorded ones were not ready (nor running) before: while recorded, a dependent sent ahead
 * waits on its node for `input`, a wait for its input, not its run, so its ready and start times
 * move to when this process learns `input` settled.
 */
function inputSettled(
  input: Task<unknown>,
  sentAhead: readonly Task<unknown>[],
  recorded: readonly Task<unknown>[] | undefined,
): void {
  if (input._state !== COMPLETED) {
    for (const d of sentAhead) if (d._state < COMPLETED) failWithInput(d, input);
    return;
  }
  if (recorded === undefined) return;
  const at = input._meta?.settledAt || performance.now();
  for (const d of recorded) {
    const m = d._meta;
    if (m === undefined || d._state >= COMPLETED) continue; // its record was taken as it settled
    if (m.readyAt < at) m.readyAt = at;
    if (m.startedAt > 0 && m.startedAt < at) m.startedAt = at;
  }
}

/**
 * Whether `v` is an unsettled ref let through for pipelining (see {@linkcode releasePipelined}).
 *
 * @param v An argument as a body received it.
 * @returns True for a ref whose result is not here yet.
 *
 * @example
 * ```ts
 * import { isPipelinedRef } from "./pipeline.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(isPipelinedRef(3), false);
 * ```
 */
export function isPipelinedRef(v: unknown): v is Task<unknown> {
  return v instanceof Task && v._state < State.COMPLETED;
}
