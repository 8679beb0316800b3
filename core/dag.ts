/**
 * The DAG's edges: a call's arguments become counted inputs. At submission every unresolved ref
 * among the arguments (also nested in arrays and plain objects) gets the task as a dependent and
 * bumps its `_pending` count; when the count reaches zero the task is ready (see `task.ts`'s
 * settle). When it starts, every ref is replaced by its value. No scans, no polling.
 *
 * @module
 */
import { LazyValue } from "./lazy_value.ts";
import { pinInput, releasedError, settle, State, Task } from "./task.ts";

const { PENDING, COMPLETED, FAILED } = State;

function isPlainObject(v: object): boolean {
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** Registers `task` as a dependent of every unresolved ref in its args (counted in `_pending`). */
export function scanArgs(task: Task<unknown>, args: unknown[]): void {
  let shape = 0;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (typeof a !== "object" || a === null) continue;
    if (a instanceof Task) {
      if (shape === 0) shape = 1;
      link(task, a);
    } else if (Array.isArray(a) || isPlainObject(a)) {
      if (scanNested(task, a, 0)) shape = 2;
    }
  }
  task._shape = shape;
}

function scanNested(task: Task<unknown>, v: object, depth: number): boolean {
  if (depth > 32) return false;
  let found = false;
  const values = Array.isArray(v) ? v : Object.values(v);
  for (let i = 0; i < values.length; i++) {
    const a = values[i];
    if (typeof a !== "object" || a === null) continue;
    if (a instanceof Task) {
      found = true;
      link(task, a);
    } else if ((Array.isArray(a) || isPlainObject(a)) && scanNested(task, a, depth + 1)) {
      found = true;
    }
  }
  return found;
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

/** The args with every ref replaced by its value (refs are all completed here). */
export function resolveArgs(task: Task<unknown>): unknown[] {
  const args = task._args!;
  task._args = undefined;
  if (task._shape === 0) return args;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (typeof a !== "object" || a === null) continue;
    // a ref still unsettled here was let through for pipelining (see pipeline.ts): it travels as itself
    if (a instanceof Task) args[i] = a._state === COMPLETED ? a._value : a;
    else if (task._shape === 2 && (Array.isArray(a) || isPlainObject(a))) args[i] = resolveNested(a, 0);
  }
  return args;
}

function resolveNested(v: object, depth: number): unknown {
  if (depth > 32) return v;
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
