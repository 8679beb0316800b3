/**
 * `ref.explain()`: why a ref is not done yet. Everything here is read from what the task path keeps
 * anyway (a pending task's arguments still hold its unresolved input refs; limiters and mailboxes
 * hold their queues), and asked only when someone calls it: no cost per task otherwise. How long a
 * task has been in its state comes from its recorded times when events are on (profiling,
 * tracing); else from when `explain()` (or the watchdog) first saw it in that state, a lower bound.
 *
 * @module
 */
import { findNested, isPlainContainer } from "./nested.ts";
import type { RefStatus, Task } from "./task.ts";

/** Numeric task states (`task.ts`'s `State`; repeated here so this file needs task.ts's types only). */
const PENDING = 0, RUNNING = 1, COMPLETED = 2;

/** A concurrency slot a ready task waits for (see {@linkcode Explanation.slot}). */
export interface SlotWait {
  /** `"op"`: the op's `maxConcurrency`; `"mesh"`: the mesh's `maxConcurrentOps`; `"mailbox"`: an instance's mailbox. */
  readonly kind: "op" | "mesh" | "mailbox";
  /** How many may run at once there. */
  readonly limit: number;
  /** How many run now. */
  readonly running: number;
  /** For a mailbox: the ids of the calls running on the instance now. */
  readonly runningIds?: readonly string[];
  /** The ids of the first calls queued ahead of it (for a mailbox; at most 10). */
  readonly ahead: readonly string[];
  /** How many pending calls are queued ahead of it. */
  readonly aheadCount: number;
}

/** What a mesh knows of a node's liveness (its keepalive pings), for {@linkcode Explanation.nodeHealth}. */
export interface NodeHealth {
  /** The node's name. */
  readonly node: string;
  /** True when the link gave up on the node (no answer within `lostAfterMs`, or its connection broke). */
  readonly lost: boolean;
  /** True when the last keepalive ping was answered (or none was sent yet); false while one waits for its pong. */
  readonly answeredLastKeepalive: boolean;
  /** Milliseconds since the last keepalive ping went out (`undefined`: none yet). */
  readonly lastPingAgoMs: number | undefined;
  /** Milliseconds since the node last answered a keepalive ping (`undefined`: never). */
  readonly lastPongAgoMs: number | undefined;
}

/** Why a ref is not done yet: what {@linkcode explainTask} (`ref.explain()`) returns. */
export interface Explanation {
  /** The ref's id (`name#seq`). */
  readonly id: string;
  /** Op name or `Service.method`. */
  readonly name: string;
  /** Its status now. */
  readonly status: RefStatus;
  /**
   * What it waits for: `"settled"` (nothing: it is done), `"inputs"` (refs among its arguments,
   * see `inputs`), `"slot"` (a concurrency limit or a mailbox, see `slot`), `"start"` (ready, about
   * to start in this turn), `"running"` (its body runs, here or on `node`).
   */
  readonly waitingFor: "settled" | "inputs" | "slot" | "start" | "running";
  /** The node it runs or will run on, when known. */
  readonly node: string | undefined;
  /** How long it has been waiting for this, in ms (see `sinceFirstSeen`). */
  readonly forMs: number;
  /**
   * True when its times were not recorded (no profiler or tracing on): `forMs` counts from when
   * `explain()` or the watchdog first saw it waiting for this, so it is a lower bound.
   */
  readonly sinceFirstSeen: boolean;
  /**
   * For `"inputs"`: the explanations of the inputs still unsettled (recursively), the first
   * `unsettledInputs` of them at most (a tree stops at 200 explanations and 64 levels, except that a
   * chain of calls each waiting for one input is followed to its end: see `skippedLinks`).
   */
  readonly inputs: readonly Explanation[];
  /** For `"inputs"`: how many of its inputs are unsettled, explained in `inputs` or not (else 0). */
  readonly unsettledInputs: number;
  /**
   * For `"inputs"`, where a chain of calls each waiting for one input (the next) runs past the 64
   * levels: how many links of it are left out between this ref and `inputs[0]`, the chain's last
   * link (explained with what holds it: the running or stuck call). Absent when none is.
   */
  readonly skippedLinks?: number;
  /** For `"slot"`: the slot and what is ahead of it. */
  readonly slot?: SlotWait;
  /** For a call on another node: whether the node answers its keepalives. */
  readonly nodeHealth?: NodeHealth;
}

/**
 * When explain() or the watchdog first saw a task in a state, for tasks whose times are not
 * recorded. The state is `"inputs"`, `"running"` or `"ready"` (`"slot"` and `"start"` alike: the
 * watchdog tells them apart at no cost only that far).
 */
const firstSeen = new WeakMap<Task<unknown>, { what: string; at: number }>();

/** The key of {@link firstSeen} for a task's state. */
function seenKey(what: Explanation["waitingFor"]): string {
  return what === "slot" || what === "start" ? "ready" : what;
}

/**
 * Notes that the watchdog saw `task` (unsettled, its times not recorded) now in the state it is in,
 * unless it was seen in that state before: `explainTask` then counts `forMs` from that first look.
 *
 * @param task An unsettled task.
 * @param now The clock (`performance.now()`).
 *
 * @example
 * ```ts
 * import * as ta from "../mod.ts";
 * import { noteSeen } from "./explain.ts";
 * import type { Task } from "./task.ts";
 * const gate = Promise.withResolvers<void>();
 * const slow = ta.op(async function noteSeenDocSlow() { await gate.promise; return 1; });
 * const ref = slow.go();
 * await Promise.resolve();
 * noteSeen(ref as unknown as Task<unknown>, performance.now() - 5_000);
 * if (ref.explain().forMs < 5_000) throw new Error("counted from the first look");
 * gate.resolve();
 * await ref;
 * ```
 */
export function noteSeen(task: Task<unknown>, now: number): void {
  const what = task._state === RUNNING ? "running" : task._pending > 0 ? "inputs" : "ready";
  const seen = firstSeen.get(task);
  if (seen === undefined || seen.what !== what) firstSeen.set(task, { what, at: now });
}

/** At most this many explanations in one tree (a fan-in of 100k pending inputs is summarized). */
const MAX_EXPLAINED = 200;
const MAX_DEPTH = 64;
/** Levels explained below a long chain's last link (past them, another chain is cut short again). */
const TAIL_DEPTH = 8;
/** A chain's walk marks one link in this many with where the chain ends (see `chainEnd`). */
const CHAIN_MARKS = 64;

function since(task: Task<unknown>, what: Explanation["waitingFor"], now: number): [number, boolean] {
  const m = task._meta;
  if (m !== undefined) {
    const from = what === "running" ? m.startedAt : what === "inputs" ? m.submittedAt : m.readyAt || m.submittedAt;
    if (from > 0) return [now - from, false];
  }
  const key = seenKey(what);
  const seen = firstSeen.get(task);
  if (seen !== undefined && seen.what === key) return [Math.max(0, now - seen.at), true];
  firstSeen.set(task, { what: key, at: now });
  return [0, true];
}

/** The unsettled refs among a pending task's arguments (also nested in arrays and plain objects, at any depth). */
function pendingInputs(task: Task<unknown>): Task<unknown>[] {
  const out: Task<unknown>[] = [];
  const args = task._args;
  if (args === undefined) return out;
  // (a Task, known by its constructor: this file imports task.ts's types only)
  const Ctor = task.constructor as abstract new (...a: never[]) => unknown;
  let refs: object[] | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (typeof a !== "object" || a === null) continue;
    if (a instanceof Ctor) (refs ??= []).push(a);
    else if (isPlainContainer(a)) findNested(a, (v) => v instanceof Ctor, refs ??= []);
  }
  if (refs === undefined) return out;
  if (refs.length === 1) {
    if ((refs[0] as Task<unknown>)._state < COMPLETED) out.push(refs[0] as Task<unknown>);
    return out;
  }
  const seen = new Set<unknown>();
  for (const r of refs) {
    const t = r as Task<unknown>;
    if (t._state < COMPLETED && !seen.has(t)) {
      seen.add(t);
      out.push(t);
    }
  }
  return out;
}

/** Most calls {@linkcode waitPath} looks through before it gives up. */
const MAX_WAIT_PATH = 1_000;

/**
 * Whether `ref`, pending, waits for `task` through its inputs (and theirs): the path from `ref` to
 * the input that takes `task` itself, or `undefined` when it does not (or not within the first 1,000
 * calls it waits for). What `await` inside a body asks: awaiting such a ref there never ends.
 *
 * @param ref A pending task.
 * @param task The task it may wait for.
 * @returns `[ref, …, the call that takes task]`, or `undefined`.
 *
 * @example
 * ```ts
 * import * as ta from "../mod.ts";
 * import { waitPath } from "./explain.ts";
 * import type { Task } from "./task.ts";
 * import { deepStrictEqual, strictEqual } from "node:assert/strict";
 * const gate = Promise.withResolvers<number>();
 * const root = ta.op(async function waitPathDocRoot() { return await gate.promise; });
 * const inc = ta.op(function waitPathDocInc(x: number) { return x + 1; });
 * const sum = ta.op(function waitPathDocSum(xs: number[]) { return xs[0] + 1; });
 * const a = root.go(), b = inc.go(a), c = sum.go([b]);
 * const t = (r: unknown) => r as Task<unknown>;
 * deepStrictEqual(waitPath(t(c), t(a)), [t(c), t(b)]);
 * strictEqual(waitPath(t(b), t(c)), undefined);
 * gate.resolve(0);
 * strictEqual(await c, 2);
 * ```
 */
export function waitPath(ref: Task<unknown>, task: Task<unknown>): Task<unknown>[] | undefined {
  // breadth first, each call once, remembering who led to it
  const from = new Map<Task<unknown>, Task<unknown> | undefined>([[ref, undefined]]);
  const queue = [ref];
  for (let i = 0; i < queue.length && i < MAX_WAIT_PATH; i++) {
    const t = queue[i];
    if (t._state !== PENDING || t._pending === 0) continue;
    for (const dep of pendingInputs(t)) {
      if (dep === task) {
        const path: Task<unknown>[] = [];
        for (let p: Task<unknown> | undefined = t; p !== undefined; p = from.get(p)) path.unshift(p);
        return path;
      }
      if (from.has(dep)) continue;
      from.set(dep, t);
      queue.push(dep);
    }
  }
  return undefined;
}

/**
 * Where a chain of links (calls each waiting for one input, the next) below a task ends: for each
 * link walked, how many links follow it before the chain's last one, and that last one (the link
 * whose input is no link: it runs, waits for a slot, or waits for several inputs). Kept for one
 * `explain()`, or for the watchdog's look at many tasks of one chain, so each link is walked once.
 */
export type ChainEnds = Map<Task<unknown>, readonly [skipped: number, last: Task<unknown>]>;

/** The one unsettled input of `task` when it waits for exactly one (a link of a chain), else `undefined`. */
function onlyInput(task: Task<unknown>): Task<unknown> | undefined {
  if (task._state !== PENDING || task._pending === 0) return undefined;
  const deps = pendingInputs(task);
  return deps.length === 1 ? deps[0] : undefined;
}

/** How many links follow `link` (one) down its chain before the last one, and the last one. */
function chainEnd(
  link: Task<unknown>,
  visiting: ReadonlySet<Task<unknown>>,
  ends: ChainEnds,
): readonly [number, Task<unknown>] {
  const path: Task<unknown>[] = [];
  let end: readonly [number, Task<unknown>] | undefined;
  for (let cur = link, next = onlyInput(link);;) {
    end = ends.get(cur);
    if (end !== undefined) break;
    const after = next === undefined || visiting.has(next) ? undefined : onlyInput(next);
    if (after === undefined) {
      end = [0, cur];
      ends.set(cur, end);
      break;
    }
    path.push(cur);
    cur = next!;
    next = after;
  }
  // the first link, and one in every CHAIN_MARKS further down: a later walk from anywhere above ends
  // within that many links (marking every link costs more than walking it)
  const [after, last] = end;
  for (let i = path.length - 1; i >= 0; i--) {
    if (i % CHAIN_MARKS === 0) ends.set(path[i], end = [after + path.length - i, last]);
  }
  return end;
}

/**
 * Explains why `task` is not done yet (see {@linkcode Explanation}): `ref.explain()`.
 *
 * @param task The task behind a ref.
 * @returns Its explanation, its pending inputs explained recursively (at most 200 in one tree).
 *
 * @example A call waiting for its input
 * ```ts
 * import * as ta from "../mod.ts";
 * const gate = Promise.withResolvers<void>();
 * const slow = ta.op(async function explainDocSlow() { await gate.promise; return 1; });
 * const inc = ta.op(async function explainDocInc(x: number) { return x + 1; });
 * const ref = inc.go(slow.go());
 * const why = ref.explain();
 * if (why.waitingFor !== "inputs" || why.inputs[0].name !== "explainDocSlow") throw new Error("unexpected");
 * gate.resolve();
 * await ref;
 * ```
 */
export function explainTask(task: Task<unknown>, ends?: ChainEnds): Explanation {
  const budget = { left: MAX_EXPLAINED, ends };
  return explainOne(task, performance.now(), 0, budget, new Set());
}

function explainOne(
  task: Task<unknown>,
  now: number,
  depth: number,
  budget: { left: number; ends: ChainEnds | undefined },
  visiting: Set<Task<unknown>>,
): Explanation {
  budget.left--;
  const base = { id: task.id, name: task.name, status: task.status, node: task.node };
  if (task._state >= COMPLETED) {
    return { ...base, waitingFor: "settled", forMs: 0, sinceFirstSeen: false, inputs: [], unsettledInputs: 0 };
  }
  let waitingFor: Explanation["waitingFor"];
  let inputs: Explanation[] = [];
  let unsettledInputs = 0;
  let skippedLinks = 0;
  let slot: SlotWait | undefined;
  if (task._state === RUNNING) waitingFor = "running";
  else if (task._pending > 0) {
    waitingFor = "inputs";
    visiting.add(task);
    const deps = pendingInputs(task);
    unsettledInputs = deps.length;
    for (const dep of deps) {
      if (budget.left <= 0 || visiting.has(dep)) break;
      if (depth + 1 < MAX_DEPTH) {
        inputs.push(explainOne(dep, now, depth + 1, budget, visiting));
        continue;
      }
      // this deep, only a chain goes on: its middle is left out, its end (what holds it) explained
      if (deps.length !== 1) break;
      const [skipped, last] = onlyInput(dep) === undefined
        ? [0, dep]
        : chainEnd(dep, visiting, budget.ends ??= new Map());
      skippedLinks = skipped;
      inputs.push(explainOne(last, now, MAX_DEPTH - TAIL_DEPTH, budget, visiting));
    }
    visiting.delete(task);
  } else {
    slot = task._target.slotWait?.(task);
    waitingFor = slot !== undefined ? "slot" : "start";
  }
  if (task._state !== PENDING && waitingFor === "inputs") {
    inputs = [];
    unsettledInputs = 0;
  }
  const [forMs, sinceFirstSeen] = since(task, waitingFor, now);
  const out: {
    -readonly [K in keyof Explanation]: Explanation[K];
  } = { ...base, waitingFor, forMs, sinceFirstSeen, inputs, unsettledInputs };
  if (slot !== undefined) out.slot = slot;
  if (skippedLinks > 0 && inputs.length > 0) out.skippedLinks = skippedLinks;
  const node = task.node;
  const mesh = task._ctx?.mesh;
  if (node !== undefined && task._target.remote === true && mesh?.remote?.nodeHealth !== undefined) {
    const health = mesh.remote.nodeHealth(mesh, node);
    if (health !== undefined) out.nodeHealth = health;
  }
  return out;
}

function ms(n: number): string {
  return n < 1000 ? `${Math.round(n)} ms` : `${(n / 1000).toFixed(1)} s`;
}

/**
 * The explanation as indented text, one line per ref (what `ta.explain(ref)` prints).
 *
 * @param e An explanation from `ref.explain()`.
 * @returns The text.
 *
 * @example
 * ```ts
 * import * as ta from "../mod.ts";
 * import { formatExplanation } from "./explain.ts";
 * const inc = ta.op(async function formatDocInc(x: number) { return x + 1; });
 * const ref = inc.go(1);
 * await ref;
 * if (!formatExplanation(ref.explain()).includes("completed")) throw new Error("unexpected");
 * ```
 */
export function formatExplanation(e: Explanation): string {
  const lines: string[] = [];
  const line = (x: Explanation, indent: string) => {
    const at = x.node === undefined ? "" : ` on node ${x.node}`;
    const long = `${x.sinceFirstSeen ? "at least " : ""}${ms(x.forMs)}`;
    let what: string;
    switch (x.waitingFor) {
      case "settled":
        what = x.status;
        break;
      case "inputs":
        what = `waiting ${long} for ${x.unsettledInputs} input(s)`;
        break;
      case "start":
        what = `ready ${long}, starting`;
        break;
      case "running":
        what = `running ${long}${at}`;
        break;
      case "slot": {
        const s = x.slot!;
        const where = s.kind === "op"
          ? `a slot of its op (maxConcurrency ${s.limit}, ${s.running} running)`
          : s.kind === "mesh"
          ? `a slot of the mesh (maxConcurrentOps ${s.limit}, ${s.running} running)`
          : `its instance's mailbox${at} (maxConcurrency ${s.limit}; running: ${
            s.runningIds?.length ? s.runningIds.join(", ") : "none"
          })`;
        const ahead = s.aheadCount === 0
          ? ""
          : `, ${s.aheadCount} queued ahead${
            s.ahead.length ? ` (${s.ahead.join(", ")}${s.aheadCount > s.ahead.length ? ", …" : ""})` : ""
          }`;
        what = `waiting ${long} for ${where}${ahead}`;
        break;
      }
    }
    const h = x.nodeHealth;
    const health = h === undefined
      ? ""
      : h.lost
      ? `; node ${h.node} is lost`
      : h.answeredLastKeepalive
      ? `; node ${h.node} answered its last keepalive${
        h.lastPongAgoMs === undefined ? "" : ` ${ms(h.lastPongAgoMs)} ago`
      }`
      : `; node ${h.node} has not answered its last keepalive (sent ${ms(h.lastPingAgoMs ?? 0)} ago)`;
    // a call sent to a node runs there, or waits there for its instance's (or op's) slot: the node
    // does not say which
    const sent = h !== undefined && x.waitingFor === "running" ? " (running there, or waiting there for a slot)" : "";
    lines.push(`${indent}${x.id}: ${what}${health}${sent}`);
    if (x.skippedLinks !== undefined) lines.push(`${indent}  … ${x.skippedLinks} waiting links …`);
    for (const i of x.inputs) line(i, indent + "  ");
    // the tree stopped before the rest (its size or depth bound)
    const more = x.unsettledInputs - x.inputs.length;
    if (more > 0) lines.push(`${indent}  … and ${more} more`);
  };
  line(e, "");
  return lines.join("\n");
}
