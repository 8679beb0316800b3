/**
 * The arrays and plain objects inside a call's arguments, walked at any depth: refs nested in them
 * are inputs (`dag.ts`), values kept on nodes are fetched (`lazy_value.ts`), pending ones are
 * explained (`explain.ts`). The callers walk the common case (a few levels, a few containers)
 * themselves, with no allocation; what is deeper or larger, or cyclic, or shared many ways, comes
 * here: each container is visited once (a walk of every path through a structure shared many ways
 * never ends), without recursion (a structure 100k levels deep takes no stack).
 *
 * @module
 */

/**
 * Whether `v` is a container whose contents are walked: an array, or an object whose prototype is
 * `Object.prototype` or `null`.
 *
 * @param v An object.
 * @returns True for arrays and plain objects.
 *
 * @example
 * ```ts
 * import { isPlainContainer } from "./nested.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(isPlainContainer([1]), true);
 * strictEqual(isPlainContainer(Object.create(null)), true);
 * strictEqual(isPlainContainer(new Map()), false);
 * ```
 */
export function isPlainContainer(v: object): boolean {
  if (Array.isArray(v)) return true;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/**
 * Collects into `leaves` every leaf (`isLeaf`) inside `root`, at any depth, walking each container
 * once; with `reach`, also adds to it every container from which a leaf can be reached (those that
 * {@linkcode replaceNested} copies).
 *
 * @param root An array or plain object.
 * @param isLeaf What is collected (not walked into).
 * @param leaves Where they are appended, in walk order (a leaf in two containers twice).
 * @param reach Where the containers holding a leaf, at any depth, are added (or none).
 * @returns With `reach`: true when some container holding a leaf is part of a cycle (it contains
 * itself), which no copy can replace; else false.
 *
 * @example Leaves at any depth, and a cycle that holds one
 * ```ts
 * import { findNested } from "./nested.ts";
 * import { deepStrictEqual, strictEqual } from "node:assert/strict";
 * const isDate = (v: object) => v instanceof Date;
 * let deep: unknown = new Date(0);
 * for (let i = 0; i < 10_000; i++) deep = [deep];
 * const leaves: object[] = [];
 * strictEqual(findNested({ deep }, isDate, leaves, new Set()), false);
 * deepStrictEqual(leaves, [new Date(0)]);
 * const loop: unknown[] = [new Date(1)];
 * loop.push(loop);
 * strictEqual(findNested(loop, isDate, [], new Set()), true);
 * ```
 */
export function findNested(
  root: object,
  isLeaf: (v: object) => boolean,
  leaves: object[],
  reach?: Set<object>,
): boolean {
  // 1: on the walk's path now, 2: walked
  const state = new Map<object, number>([[root, 1]]);
  const parents = reach === undefined ? undefined : new Map<object, object[]>();
  const holders: object[] = [];
  // containers reached again while on the path: each is part of a cycle
  const cycles: object[] = [];
  const path: object[] = [root];
  const contents: unknown[][] = [valuesOf(root)];
  const next: number[] = [0];
  while (path.length > 0) {
    const top = path.length - 1;
    const values = contents[top];
    const i = next[top];
    if (i >= values.length) {
      state.set(path[top], 2);
      path.pop();
      contents.pop();
      next.pop();
      continue;
    }
    next[top] = i + 1;
    const x = values[i];
    if (typeof x !== "object" || x === null) continue;
    const v = path[top];
    if (isLeaf(x)) {
      leaves.push(x);
      if (reach !== undefined) holders.push(v);
      continue;
    }
    if (!isPlainContainer(x)) continue;
    if (parents !== undefined) {
      const p = parents.get(x);
      if (p === undefined) parents.set(x, [v]);
      else p.push(v);
    }
    const s = state.get(x);
    if (s === undefined) {
      state.set(x, 1);
      path.push(x);
      contents.push(valuesOf(x));
      next.push(0);
    } else if (s === 1) cycles.push(x);
  }
  if (reach === undefined || parents === undefined) return false;
  // up from the containers holding a leaf, to every container that holds one of those
  for (let i = 0; i < holders.length; i++) {
    const c = holders[i];
    if (reach.has(c)) continue;
    reach.add(c);
    const ps = parents.get(c);
    if (ps !== undefined) { for (const p of ps) if (!reach.has(p)) holders.push(p); }
  }
  // a cycle holds a leaf when the container it first came back to does (every one in it reaches that)
  for (const c of cycles) if (reach.has(c)) return true;
  return false;
}

function valuesOf(v: object): unknown[] {
  return Array.isArray(v) ? v : Object.values(v);
}

/**
 * `root` with every leaf replaced (`replace`), at any depth: each container in `reach` (from
 * {@linkcode findNested}) whose contents changed is copied (once, however many times it is named),
 * everything else is kept as itself; `root` itself is never changed.
 *
 * @param root An array or plain object in `reach`.
 * @param reach The containers on a path to a leaf (no cycle among them).
 * @param replace Called with each object inside a container of `reach` that is not itself in
 * `reach`: returns what takes its place (the object itself to keep it).
 * @returns `root`, or its copy.
 *
 * @example
 * ```ts
 * import { findNested, replaceNested } from "./nested.ts";
 * import { deepStrictEqual, notStrictEqual, strictEqual } from "node:assert/strict";
 * const isDate = (v: object) => v instanceof Date;
 * const kept = { note: "no dates" };
 * const root = { kept, when: [[new Date(5)]] };
 * const reach = new Set<object>();
 * findNested(root, isDate, [], reach);
 * const out = replaceNested(root, reach, (v) => (v instanceof Date ? v.getTime() : v)) as typeof root;
 * deepStrictEqual(out, { kept, when: [[5]] });
 * strictEqual(out.kept, kept);
 * notStrictEqual(out, root);
 * ```
 */
export function replaceNested(root: object, reach: ReadonlySet<object>, replace: (v: object) => unknown): unknown {
  // each container's result, once walked (itself while it is walked: a cycle added since ends there)
  const done = new Map<object, unknown>([[root, root]]);
  const path: object[] = [root];
  const keys: (string[] | undefined)[] = [keysOf(root)];
  const next: number[] = [0];
  const copies: (object | undefined)[] = [undefined];
  /** Puts `r` in the copy of the container at `level`, in place of its `i`-th item. */
  const put = (level: number, i: number, r: unknown) => {
    const v = path[level], ks = keys[level];
    let copy = copies[level];
    if (ks === undefined) {
      if (copy === undefined) copies[level] = copy = (v as unknown[]).slice();
      (copy as unknown[])[i] = r;
      return;
    }
    if (copy === undefined) copies[level] = copy = { ...(v as Record<string, unknown>) };
    // (a key "__proto__" must stay an own property, not set the copy's prototype)
    Object.defineProperty(copy, ks[i], { value: r, writable: true, enumerable: true, configurable: true });
  };
  for (;;) {
    const top = path.length - 1;
    const v = path[top], ks = keys[top], i = next[top];
    if (i < (ks === undefined ? (v as unknown[]).length : ks.length)) {
      next[top] = i + 1;
      const x = ks === undefined ? (v as unknown[])[i] : (v as Record<string, unknown>)[ks[i]];
      if (typeof x !== "object" || x === null) continue;
      let r: unknown;
      if (reach.has(x)) {
        if (!done.has(x)) {
          done.set(x, x);
          path.push(x);
          keys.push(keysOf(x));
          next.push(0);
          copies.push(undefined);
          continue;
        }
        r = done.get(x);
      } else r = replace(x);
      if (r !== x) put(top, i, r);
      continue;
    }
    const out = copies[top] ?? v;
    done.set(v, out);
    path.pop();
    keys.pop();
    next.pop();
    copies.pop();
    if (top === 0) return out;
    if (out !== v) put(top - 1, next[top - 1] - 1, out);
  }
}

function keysOf(v: object): string[] | undefined {
  return Array.isArray(v) ? undefined : Object.keys(v);
}
