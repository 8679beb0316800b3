/**
 * The DAG's edges: a call's arguments become counted inputs. At submission every unresolved ref
 * among the arguments (also nested in arrays and plain objects, at any depth) gets the task as a
 * dependent and bumps its `_pending` count; when the count reaches zero the task is ready (see
 * `task.ts`'s settle). When it starts, every ref is replaced by its value. No scans, no polling.
 *
 * @module
 */
import { LazyValue } from "./lazy_value.ts";
import { findNested, isPlainContainer, replaceNested } from "./nested.ts";
import { pinInput, releasedError, settle, State, Task } from "./task.ts";

const { PENDING, COMPLETED, FAILED } = State;

function isPlainObject(v: object): boolean {
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/**
 * How deep the quick walk of an argument goes: deeper nesting (and so any cycle) takes the careful
 * walk of `nested.ts`, which visits each container once.
 */
const SHALLOW_DEPTH = 32;
/**
 * Containers the quick walk visits per call (a container named N times is visited N times): past
 * them, the careful walk (a structure shared many ways has more paths than any walk can take).
 */
const SHALLOW_VISITS = 1 << 22;
let shallowLeft = 0;

/**
 * The refs the quick walk found, linked once it has seen every argument (so that a careful walk can
 * start over): one array for all calls, each using the part past where it started (a getter read
 * during the walk may submit a call of its own).
 */
const found: Task<unknown>[] = [];

/** For a task whose arguments took the careful walk: the containers that hold a ref, at any depth. */
const deepArgs = new WeakMap<Task<unknown>, ReadonlySet<object>>();

/**
 * Registers `task` as a dependent of every unresolved ref in its args (counted in `_pending`).
 *
 * @throws {TypeError} When a ref is inside a cyclic array or plain object (one that contains itself):
 * no copy of it can hold the ref's value. The task is failed with the same error.
 */
export function scanArgs(task: Task<unknown>, args: unknown[]): void {
  let shape = 0;
  // once an argument is a container: where this call's refs start in `found`, which argument that
  // is, the shape before it, and the quick walk's visits left to an outer call (a getter's)
  let from = -1, first = -1, before = 0, outerLeft = 0;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (typeof a !== "object" || a === null) continue;
    if (a instanceof Task) {
      if (shape === 0) shape = 1;
      if (from < 0) link(task, a);
      else found.push(a);
    } else if (Array.isArray(a) || isPlainObject(a)) {
      if (from < 0) {
        from = found.length;
        first = i;
        before = shape;
        outerLeft = shallowLeft;
        shallowLeft = SHALLOW_VISITS;
      }
      const r = scanNested(a, 0);
      if (r > 0) shape = 2;
      else if (r < 0) {
        // too deep or too large for the quick walk: from the first container on, the careful one
        found.length = from;
        shape = scanCarefully(task, args, first, before);
        if (shape < 0) {
          found.length = from;
          shallowLeft = outerLeft;
          refuseCycle(task, -1 - shape);
        }
        break;
      }
    }
  }
  if (from < 0) {
    task._shape = shape;
    return;
  }
  shallowLeft = outerLeft;
  for (let i = from; i < found.length; i++) link(task, found[i]);
  found.length = from;
  task._shape = shape;
}

/** Collects the refs in `v` into `found`: 1 if any, 0 if none, −1 when it is too deep or too large to tell here. */
function scanNested(v: object, depth: number): number {
  if (depth === SHALLOW_DEPTH || --shallowLeft < 0) return -1;
  let any = 0;
  const values = Array.isArray(v) ? v : Object.values(v);
  for (let i = 0; i < values.length; i++) {
    const a = values[i];
    if (typeof a !== "object" || a === null) continue;
    if (a instanceof Task) {
      any = 1;
      found.push(a);
    } else if (Array.isArray(a) || isPlainObject(a)) {
      const r = scanNested(a, depth + 1);
      if (r < 0) return r;
      if (r > 0) any = 1;
    }
  }
  return any;
}

const isTask = (v: object): boolean => v instanceof Task;

/**
 * The careful walk of `args` from index `first` on (each container once, at any depth): collects
 * their refs into `found` and returns the task's shape, 3 when a container holds one (then
 * `deepArgs` keeps which containers do, for `resolveArgs`); −1 − i when argument i holds a ref in a
 * cycle.
 */
function scanCarefully(task: Task<unknown>, args: unknown[], first: number, shape: number): number {
  const reach = new Set<object>();
  for (let i = first; i < args.length; i++) {
    const a = args[i];
    if (typeof a !== "object" || a === null) continue;
    if (a instanceof Task) {
      if (shape === 0) shape = 1;
      found.push(a);
    } else if (isPlainContainer(a) && findNested(a, isTask, found as object[], reach)) return -1 - i;
  }
  if (reach.size === 0) return shape;
  deepArgs.set(task, reach);
  return 3;
}

/** Fails `task` (submitted, its nested refs not linked) and throws: its argument `i` holds a ref in a cycle. */
function refuseCycle(task: Task<unknown>, i: number): never {
  const target = task._target;
  const error = new TypeError(
    `${target.kind === "op" ? "op" : "Call"} "${target.name}" refused: its argument ${i} holds a ref inside a ` +
      "cyclic array or object (one that contains itself), where no copy can hold the ref's value; pass the ref " +
      "outside the cycle, or await it first",
  );
  task._args = undefined;
  settle(task, FAILED, error);
  throw error;
}

function link(task: Task<unknown>, dep: Task<unknown>): void {
  if (task._meta) task._meta.deps.push(dep);
  if (dep._released === true) {
    // released: its value may be gone from its node (checked by the caller through _state)
    if (task._state === PENDING) settle(task, FAILED, releasedError(dep));
    return;
  }
  if (dep._state === COMPLETED) {
    // a value kept on a node stays there while this task carries it
    if (dep._value instanceof LazyValue && task._state === PENDING) pinInput(task, dep._value);
    return;
  }
  if (dep._state >= FAILED) {
    // already failed: the task fails at once (checked by the caller through _state)
    if (task._state === PENDING) settle(task, dep._state, dep._error);
    return;
  }
  task._pending++;
  (dep._dependents ??= []).push(task);
}

/** A ref's value once it completed; one still unsettled was let through for pipelining (see pipeline.ts): it travels as itself. */
function valueOf(a: unknown): unknown {
  return a instanceof Task && a._state === COMPLETED ? a._value : a;
}

/** The args with every ref replaced by its value (refs are all completed here). */
export function resolveArgs(task: Task<unknown>): unknown[] {
  const args = task._args!;
  task._args = undefined;
  const shape = task._shape;
  if (shape === 0) return args;
  let reach: ReadonlySet<object> | undefined;
  if (shape === 3) {
    reach = deepArgs.get(task);
    deepArgs.delete(task);
  }
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (typeof a !== "object" || a === null) continue;
    // a ref still unsettled here was let through for pipelining (see pipeline.ts): it travels as itself
    if (a instanceof Task) args[i] = a._state === COMPLETED ? a._value : a;
    else if (reach !== undefined) {
      if (reach.has(a)) args[i] = replaceNested(a, reach, valueOf);
    } else if (shape === 2 && (Array.isArray(a) || isPlainObject(a))) args[i] = resolveNested(a, 0);
  }
  return args;
}

// (the quick walk at submission saw every container within SHALLOW_DEPTH levels)
function resolveNested(v: object, depth: number): unknown {
  if (depth === SHALLOW_DEPTH) return v;
  if (Array.isArray(v)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < v.length; i++) {
      const a = v[i];
      let r = a;
      // (one still unsettled was let through for pipelining: it travels as itself)
      if (a instanceof Task) r = a._state === COMPLETED ? a._value : a;
      else if (typeof a === "object" && a !== null && (Array.isArray(a) || isPlainObject(a))) {
        r = resolveNested(a, depth + 1);
      }
      if (r !== a) (out ??= v.slice())[i] = r;
    }
    return out ?? v;
  }
  let out: Record<string, unknown> | undefined;
  for (const k of Object.keys(v)) {
    const a = (v as Record<string, unknown>)[k];
    let r = a;
    if (a instanceof Task) r = a._state === COMPLETED ? a._value : a;
    else if (typeof a === "object" && a !== null && (Array.isArray(a) || isPlainObject(a))) {
      r = resolveNested(a, depth + 1);
    }
    if (r !== a) (out ??= { ...(v as Record<string, unknown>) })[k] = r;
  }
  return out ?? v;
}
