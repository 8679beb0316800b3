/**
 * A node's object store: the results that stay where they were made (too large to send back
 * unasked, see `CallMessage.keepAbove`), each owned by the lease of the driver that asked for it,
 * until that driver frees it, its lease expires, or the node drains. Bounded in bytes: an object
 * past the bound is refused with `OverloadedError`, never dropped silently. Device values in a
 * result kept here (a `GpuArray`) are the store's: freed on their device (`Symbol.dispose`) with
 * the last object that holds them.
 *
 * @module
 */
import { NodeLostError, OverloadedError, ProtocolError } from "../core/errors.ts";
import { decodeReply, type ResultMessage } from "./protocol.ts";

const READBACK = Symbol.for("thinkagain.readback");

function onDevice(v: unknown): boolean {
  return typeof v === "object" && v !== null && typeof (v as Record<symbol, unknown>)[READBACK] === "function";
}

/** Whether the contents of `v` are looked through for device values: arrays, plain objects, Maps and Sets. */
function walked(v: object): boolean {
  if (Array.isArray(v)) return true;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null || v instanceof Map || v instanceof Set;
}

/** Calls `f` with each item of container `c` (a Map's keys and values). */
function eachItem(c: object, f: (x: unknown) => void): void {
  if (Array.isArray(c)) { for (let i = 0; i < c.length; i++) f(c[i]); }
  else if (c instanceof Map) {
    for (const [k, v] of c) {
      f(k);
      f(v);
    }
  } else if (c instanceof Set) { for (const v of c) f(v); }
  else for (const k of Object.keys(c)) f((c as Record<string, unknown>)[k]);
}

/**
 * How deep the quick look for a device value goes, and how many containers it visits (one named N
 * times, N times): a deeper or larger result (or a cyclic one) takes the careful walk
 * ({@linkcode devicesIn}), which visits each container once, without recursion.
 */
const QUICK_DEPTH = 32;
const QUICK_VISITS = 1 << 22;
let quickLeft = 0;

/** 1 if `v` holds a device value, 0 if not, −1 when it is too deep or too large to tell here. */
function quickHolds(v: unknown, depth: number): number {
  if (typeof v !== "object" || v === null) return 0;
  if (onDevice(v)) return 1;
  if (!walked(v)) return 0;
  if (depth === QUICK_DEPTH || --quickLeft < 0) return -1;
  let r = 0;
  if (v instanceof Map) {
    for (const [k, x] of v) if ((r = quickHolds(k, depth + 1)) !== 0 || (r = quickHolds(x, depth + 1)) !== 0) return r;
    return 0;
  }
  if (v instanceof Set) {
    for (const x of v) if ((r = quickHolds(x, depth + 1)) !== 0) return r;
    return 0;
  }
  const items = Array.isArray(v) ? v : Object.values(v);
  for (let i = 0; i < items.length; i++) if ((r = quickHolds(items[i], depth + 1)) !== 0) return r;
  return 0;
}

/**
 * The device values inside `root`, at any depth, each once; with `reach`, also adds to it every
 * container from which one can be reached (those {@linkcode readBack} copies). Each container is
 * visited once (a cycle, or one shared many ways, ends there), without recursion.
 */
function devicesIn(root: object, reach?: Set<object>): Set<object> {
  const devices = new Set<object>();
  if (onDevice(root)) return devices.add(root);
  if (!walked(root)) return devices;
  const seen = new Set<object>([root]);
  const parents = reach === undefined ? undefined : new Map<object, object[]>();
  const holders: object[] = [];
  const stack: object[] = [root];
  let c: object;
  const visit = (x: unknown) => {
    if (typeof x !== "object" || x === null) return;
    if (onDevice(x)) {
      devices.add(x);
      if (reach !== undefined) holders.push(c);
      return;
    }
    if (!walked(x)) return;
    if (parents !== undefined) {
      const p = parents.get(x);
      if (p === undefined) parents.set(x, [c]);
      else p.push(c);
    }
    if (!seen.has(x)) {
      seen.add(x);
      stack.push(x);
    }
  };
  while (stack.length > 0) {
    c = stack.pop()!;
    eachItem(c, visit);
  }
  if (reach !== undefined) {
    // up from the containers that hold one to every container that holds those
    for (let i = 0; i < holders.length; i++) {
      const h = holders[i];
      if (reach.has(h)) continue;
      reach.add(h);
      for (const p of parents!.get(h) ?? []) if (!reach.has(p)) holders.push(p);
    }
  }
  return devices;
}

/**
 * Whether `value` holds values that live on a device (a WebGPU adapter's `GpuArray`: they answer
 * `Symbol.for("thinkagain.readback")`), itself or at any depth in arrays, plain objects, Maps and
 * Sets.
 *
 * @param value A call's result.
 * @returns True when it must be read back before it can leave this process.
 *
 * @example
 * ```ts
 * import { holdsDeviceValues } from "./object_store.ts";
 * import { strictEqual } from "node:assert/strict";
 * const onGpu = { [Symbol.for("thinkagain.readback")]: () => Promise.resolve(1) };
 * strictEqual(holdsDeviceValues([1, new Float32Array(2)]), false);
 * strictEqual(holdsDeviceValues({ a: onGpu }), true);
 * strictEqual(holdsDeviceValues({ emb: { docs: [new Map([["g", onGpu]])] } }), true);
 * ```
 */
export function holdsDeviceValues(value: unknown): boolean {
  if (typeof value !== "object" || value === null) return false;
  if (onDevice(value)) return true;
  if (!walked(value)) return false;
  quickLeft = QUICK_VISITS;
  const r = quickHolds(value, 0);
  return r === 1 || (r === -1 && devicesIn(value).size > 0);
}

/** A device value read back into this process (its typed array). */
function read(v: object): Promise<unknown> {
  return (v as Record<symbol, () => Promise<unknown>>)[READBACK]();
}

/** An empty container of `c`'s kind (a plain object with its prototype), to fill with its items. */
function emptyLike(c: object): object {
  if (Array.isArray(c)) return c.slice(); // (its length and holes; its items are set again)
  if (c instanceof Map) return new Map();
  if (c instanceof Set) return new Set();
  return Object.create(Object.getPrototypeOf(c));
}

/** Fills `copy` (from {@linkcode emptyLike}) with the items of `c`, each as `to` maps it. */
function fillCopy(c: object, copy: object, to: (x: unknown) => unknown): void {
  if (Array.isArray(c)) {
    for (let i = 0; i < c.length; i++) if (i in c) (copy as unknown[])[i] = to(c[i]);
  } else if (c instanceof Map) { for (const [k, v] of c) (copy as Map<unknown, unknown>).set(to(k), to(v)); }
  else if (c instanceof Set) { for (const v of c) (copy as Set<unknown>).add(to(v)); }
  else {
    for (const k of Object.keys(c)) {
      // (a key "__proto__" stays an own property)
      const value = to((c as Record<string, unknown>)[k]);
      Object.defineProperty(copy, k, { value, enumerable: true, writable: true, configurable: true });
    }
  }
}

/**
 * `value` with what lives on a device read back into this process (see
 * {@linkcode holdsDeviceValues}), at any depth: what leaves a node. Each device value is read back
 * once; the containers that hold one are copied (each once), the others kept as they are, and
 * `value` itself is left unchanged.
 *
 * @param value A call's result.
 * @returns The value with typed arrays where device arrays were.
 *
 * @example
 * ```ts
 * import { readBack } from "./object_store.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const onGpu = { [Symbol.for("thinkagain.readback")]: () => Promise.resolve(new Float32Array([1])) };
 * deepStrictEqual(await readBack({ x: onGpu, n: 1 }), { x: new Float32Array([1]), n: 1 });
 * deepStrictEqual(await readBack([[new Map([["g", onGpu]])]]), [[new Map([["g", new Float32Array([1])]])]]);
 * ```
 */
export async function readBack(value: unknown): Promise<unknown> {
  if (typeof value !== "object" || value === null) return value;
  if (onDevice(value)) return await read(value);
  const reach = new Set<object>();
  const devices = [...devicesIn(value, reach)];
  if (devices.length === 0) return value;
  // (every readback is asked for before any await: a free that comes meanwhile cannot take one)
  const values = await Promise.all(devices.map(read));
  const swapped = new Map<object, unknown>();
  for (let i = 0; i < devices.length; i++) swapped.set(devices[i], values[i]);
  // each container's copy is made before any is filled: one that holds itself holds its copy
  for (const c of reach) swapped.set(c, emptyLike(c));
  const to = (x: unknown) => (typeof x === "object" && x !== null && swapped.has(x) ? swapped.get(x) : x);
  for (const c of reach) fillCopy(c, swapped.get(c) as object, to);
  return swapped.get(value);
}

/**
 * About how many bytes the device values in `value` hold (4 per element, each counted once), at
 * any depth, for the store's bound.
 *
 * @param value A call's result.
 * @returns The estimate.
 *
 * @example
 * ```ts
 * import { deviceBytes } from "./object_store.ts";
 * import { strictEqual } from "node:assert/strict";
 * const onGpu = { length: 3, [Symbol.for("thinkagain.readback")]: () => Promise.resolve() };
 * strictEqual(deviceBytes([onGpu]), 12);
 * strictEqual(deviceBytes({ a: { b: [onGpu, onGpu] }, c: new Set([onGpu]) }), 12);
 * ```
 */
export function deviceBytes(value: unknown): number {
  if (typeof value !== "object" || value === null) return 0;
  let n = 0;
  for (const v of devicesIn(value)) n += 4 * Number((v as { length?: number }).length ?? 0);
  return n;
}

/** Default of {@link ObjectStoreOptions.maxBytes}: 1 GiB. */
export const DEFAULT_OBJECT_STORE_BYTES = 1024 ** 3;

/** Options of an {@linkcode ObjectStore}. */
export interface ObjectStoreOptions {
  /** Most bytes (as encoded) the objects may hold together (default {@linkcode DEFAULT_OBJECT_STORE_BYTES}). */
  maxBytes?: number;
  /** The node's name, for errors. */
  node?: string;
  /**
   * The node's session (a new one each time its process starts): the ids it makes begin with its
   * first 8 characters, so that an id of an earlier session is told for what it is, an object the
   * node lost when it restarted (a `NodeLostError`, as if the node had been lost), not one freed.
   */
  session?: string;
}

/** A made id: a UUID whose first group is the store's session tag (see `ObjectStoreOptions.session`). */
const MADE_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * One stored object: its value (or the `result` frame that carries it, already encoded: what a
 * fetch sends as it is), its encoded size, who owns it and what made it.
 */
interface Entry {
  /** The value (for a stored put value: decoded from its frame once asked for, then shared). */
  value: unknown;
  readonly frame: Uint8Array | undefined;
  readonly bytes: number;
  readonly owner: string | undefined;
  readonly madeBy: string;
  /** Whether its id was chosen by its driver (a stored `put` value). */
  readonly chosen: boolean;
  /** The device values in its value, if any: the store's, freed with the last object that holds them. */
  readonly devices: readonly object[] | undefined;
}

/**
 * Frees device value `d` (a `GpuArray`'s buffer: `Symbol.dispose`, which it answers). A device
 * that was lost meanwhile has nothing left to free.
 */
function dispose(d: object): void {
  const free = (d as { [Symbol.dispose]?: unknown })[Symbol.dispose];
  if (typeof free !== "function") return;
  try {
    free.call(d);
  } catch {
    // (its device is gone, and its memory with it)
  }
}

/** The most calls and pulls that may wait at once for objects not stored yet. */
const MAX_STORE_WAITERS = 4096;
/** How many freed ids that drivers chose are remembered. */
const FREED_REMEMBERED = 4096;

interface StoreWaiter {
  settle(error: unknown): void;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * The objects a node keeps for drivers, by id.
 *
 * @example Put, get, free
 * ```ts
 * import { ObjectStore } from "./object_store.ts";
 * import { strictEqual } from "node:assert/strict";
 * const store = new ObjectStore({ maxBytes: 100 });
 * const oid = store.put(new Float32Array(4), 16, { owner: "lease-1", madeBy: "embed" });
 * strictEqual(store.count, 1);
 * strictEqual((store.get(oid) as Float32Array).length, 4);
 * store.freeOwner("lease-1");
 * strictEqual(store.count, 0);
 * ```
 */
export class ObjectStore {
  /** Most bytes the objects may hold together. */
  readonly maxBytes: number;
  private readonly node: string;
  private readonly objects = new Map<string, Entry>();
  private readonly byOwner = new Map<string, Set<string>>();
  private used = 0;
  /** Bytes held outside the store that count against its bound (see {@linkcode ObjectStore.countOutside}). */
  private outside = 0;
  /** Those waiting for an object that a driver named before it arrived (see {@linkcode whenStored}). */
  private readonly waiting = new Map<string, StoreWaiter[]>();
  private waiters = 0;
  /** Ids their drivers chose that were freed since (remembered a while: a late call is refused at once). */
  private readonly freedChosen = new Set<string>();
  /** How many objects hold each device value kept here (made once one is kept). */
  private devices: Map<object, number> | undefined;

  /**
   * @param options Its bound and the node's name.
   * @throws {TypeError} For a bound that is not an integer ≥ 0.
   */
  constructor(options: ObjectStoreOptions = {}) {
    const max = options.maxBytes ?? DEFAULT_OBJECT_STORE_BYTES;
    if (!Number.isSafeInteger(max) || max < 0) {
      throw new TypeError(`An object store's maxBytes must be an integer ≥ 0, got ${String(options.maxBytes)}`);
    }
    this.maxBytes = max;
    this.node = options.node ?? "this node";
    this.tag = (options.session ?? crypto.randomUUID()).replaceAll("-", "").slice(0, 8).padEnd(8, "0");
  }

  /** The first group of every id this store makes (see `ObjectStoreOptions.session`). */
  private readonly tag: string;

  /** How many objects it holds. */
  get count(): number {
    return this.objects.size;
  }

  /** How many bytes they hold together (as encoded). */
  get bytes(): number {
    return this.used;
  }

  /**
   * Keeps `value` (of `bytes` encoded bytes) under a new unguessable id.
   *
   * @param value The value.
   * @param bytes Its encoded size.
   * @param meta `owner`: the lease it goes with; `madeBy`: the op or method that made it (in errors);
   * `frame`: the `result` frame that carries it, when already encoded (kept instead of the value,
   * and sent as it is by a fetch); `oid`: the id its driver chose (a stored `put` value), else a new one.
   * @returns The object's id.
   * @throws {OverloadedError} When it does not fit in what is left of the bound (those waiting for
   * `meta.oid` get the error too); {@linkcode ProtocolError} for an `oid` in use.
   */
  put(
    value: unknown,
    bytes: number,
    meta: { owner?: string; madeBy: string; frame?: Uint8Array; oid?: string },
  ): string {
    if (meta.oid !== undefined && this.objects.has(meta.oid)) {
      throw new ProtocolError(`Node "${this.node}" already holds an object "${meta.oid}"`);
    }
    if (this.used + this.outside + bytes > this.maxBytes) {
      const e = this.full(bytes, `result of ${meta.madeBy}`);
      if (meta.oid !== undefined) this.settleWaiters(meta.oid, e);
      throw e;
    }
    const oid = meta.oid ?? `${this.tag}${crypto.randomUUID().slice(8)}`;
    const frame = meta.frame;
    // (one kept as a value, not a frame, may hold device values: those are the store's now)
    const found = frame === undefined && typeof value === "object" && value !== null ? devicesIn(value) : undefined;
    const devices = found !== undefined && found.size > 0 ? [...found] : undefined;
    if (devices !== undefined) {
      const held = this.devices ??= new Map();
      for (const d of devices) held.set(d, (held.get(d) ?? 0) + 1);
    }
    this.objects.set(oid, {
      value: frame === undefined ? value : undefined,
      frame,
      bytes,
      owner: meta.owner,
      madeBy: meta.madeBy,
      chosen: meta.oid !== undefined,
      devices,
    });
    this.used += bytes;
    if (meta.owner !== undefined) {
      let set = this.byOwner.get(meta.owner);
      if (set === undefined) this.byOwner.set(meta.owner, set = new Set());
      set.add(oid);
    }
    if (meta.oid !== undefined) this.settleWaiters(oid, undefined);
    return oid;
  }

  /**
   * Counts `bytes` held outside the store against its bound, until
   * {@linkcode ObjectStore.uncountOutside} gives them back: the frame of a result a node publishes
   * for calls on other nodes (a hand-off) whose value came back in its call's reply (see
   * `published.ts`). They are not objects (`count` and `bytes` leave them out).
   *
   * @param bytes Their size.
   * @param what What they hold, for the error (`"result of method make"`).
   * @throws {OverloadedError} When they do not fit in what is left of the bound.
   *
   * @example
   * ```ts
   * import { ObjectStore } from "./object_store.ts";
   * import { strictEqual, throws } from "node:assert/strict";
   * const store = new ObjectStore({ maxBytes: 100 });
   * store.countOutside(60, "published result of method make");
   * throws(() => store.put(new Float32Array(16), 64, { madeBy: "embed" }), { name: "OverloadedError" });
   * store.uncountOutside(60);
   * strictEqual(store.outsideBytes, 0);
   * ```
   */
  countOutside(bytes: number, what: string): void {
    if (this.used + this.outside + bytes > this.maxBytes) throw this.full(bytes, what);
    this.outside += bytes;
  }

  /**
   * Gives back bytes counted with {@linkcode ObjectStore.countOutside}.
   *
   * @param bytes Their size.
   */
  uncountOutside(bytes: number): void {
    this.outside -= bytes;
  }

  /** Bytes counted against the bound outside the store ({@linkcode ObjectStore.countOutside}). */
  get outsideBytes(): number {
    return this.outside;
  }

  /** The error for `bytes` of `what` that do not fit: what would make them fit. */
  private full(bytes: number, what: string): OverloadedError {
    if (bytes > this.maxBytes) {
      // nothing freed would make room: the store as a whole is too small for it
      return new OverloadedError(
        `Node "${this.node}" cannot keep the ${bytes}-byte ${what}: it is larger than its whole object store ` +
          `(${this.maxBytes} bytes, --object-store-bytes); only a larger --object-store-bytes (at least ${bytes}) ` +
          "or a smaller result lets it stay on the node",
      );
    }
    const published = this.outside > 0 ? ` and ${this.outside} bytes of results published for other nodes` : "";
    return new OverloadedError(
      `Node "${this.node}" cannot keep the ${bytes}-byte ${what}: its object store holds ` +
        `${this.used} of ${this.maxBytes} bytes (its bound, --object-store-bytes) in ${this.objects.size} results` +
        `${published}. ` +
        "A dropped ref's result is freed when the driver's garbage collector collects the ref (a driver of this " +
        "version prompts one each time its refs pin another eighth of the store more); " +
        "release refs no longer needed at once with `using ref = op.go(...)` or `ref.release()`, " +
        "or raise --object-store-bytes",
    );
  }

  /**
   * Resolves once object `oid` is here: at once when it is, else when a driver's `store` of it
   * arrives (the calls naming it are sent right behind the store, and a pull from another node may
   * overtake it); rejects with `ProtocolError` when none arrived within `waitMs`, with the store's
   * own error when it was refused.
   *
   * @param oid The object's id (one its driver chose).
   * @param waitMs How long to wait for it.
   * @returns When it is here.
   */
  whenStored(oid: string, waitMs: number): Promise<void> {
    if (this.objects.has(oid)) return Promise.resolve();
    if (this.freedChosen.has(oid)) {
      return Promise.reject(
        new ProtocolError(
          `Unknown object "${oid}" on node "${this.node}": it was freed (its refs were dropped, its driver's lease ` +
            "expired or its mesh closed)",
        ),
      );
    }
    if (this.waiters >= MAX_STORE_WAITERS) {
      return Promise.reject(
        new ProtocolError(`Unknown object "${oid}" on node "${this.node}": too many calls wait for objects already`),
      );
    }
    return new Promise<void>((resolve, reject) => {
      const list = this.waiting.get(oid) ?? [];
      const w: StoreWaiter = {
        settle: (error) => (error === undefined ? resolve() : reject(error)),
        timer: setTimeout(() => {
          list.splice(list.indexOf(w), 1);
          if (list.length === 0) this.waiting.delete(oid);
          this.waiters--;
          reject(
            new ProtocolError(
              `Unknown object "${oid}" on node "${this.node}": it was freed (its refs were dropped, its driver's ` +
                `lease expired or its mesh closed), or its store did not arrive within ${waitMs} ms`,
            ),
          );
        }, waitMs),
      };
      list.push(w);
      this.waiting.set(oid, list);
      this.waiters++;
    });
  }

  private rememberFreed(oid: string): void {
    this.freedChosen.add(oid);
    if (this.freedChosen.size > FREED_REMEMBERED) this.freedChosen.delete(this.freedChosen.values().next().value!);
  }

  private settleWaiters(oid: string, error: unknown): void {
    const list = this.waiting.get(oid);
    if (list === undefined) return;
    this.waiting.delete(oid);
    this.waiters -= list.length;
    for (const w of list) {
      clearTimeout(w.timer);
      w.settle(error);
    }
  }

  /**
   * The value of object `oid`. A stored `put` value is decoded once, when first asked for, and that
   * copy is shared by every later call here (held beside its frame, which fetches send).
   *
   * @param oid The object's id.
   * @returns Its value.
   * @throws {ProtocolError} When this node holds no such object (freed, or never made here).
   */
  get(oid: string): unknown {
    const e = this.entry(oid);
    if (e.frame === undefined || (e.chosen && e.value !== undefined)) return e.value;
    const value = (decodeReply<ResultMessage>(e.frame, "result") as { value: unknown }).value;
    // a put value never changes: the calls here share one copy, as calls in its driver share the value
    if (e.chosen) e.value = value;
    return value;
  }

  /**
   * The `result` frame that carries object `oid`, when it was stored encoded (else `undefined`).
   *
   * @param oid The object's id.
   * @returns The frame, or `undefined`.
   * @throws {ProtocolError} When this node holds no such object.
   */
  frame(oid: string): Uint8Array | undefined {
    return this.entry(oid).frame;
  }

  private entry(oid: string): Entry {
    const e = this.objects.get(oid);
    if (e === undefined) {
      if (MADE_ID.test(oid) && !oid.startsWith(this.tag)) {
        // made by this node before it restarted: lost with that process
        throw new NodeLostError(
          this.node,
          `it restarted since it kept object "${oid}" (made by its process before), which is gone with that process`,
        );
      }
      throw new ProtocolError(
        `Unknown object "${oid}" on node "${this.node}": it was freed (its refs were dropped, its driver's lease ` +
          "expired or its mesh closed) or the node restarted",
      );
    }
    return e;
  }

  /** Whether it holds object `oid`. */
  has(oid: string): boolean {
    return this.objects.has(oid);
  }

  /**
   * Forgets object `oid`. One it holds none of may be a store that never came (its driver gave up
   * on it): the calls waiting for it are refused at once, and so are later ones.
   */
  free(oid: string): void {
    const e = this.objects.get(oid);
    if (e === undefined) {
      this.rememberFreed(oid);
      this.settleWaiters(
        oid,
        new ProtocolError(`Unknown object "${oid}" on node "${this.node}": its driver gave up storing it here`),
      );
      return;
    }
    this.objects.delete(oid);
    this.used -= e.bytes;
    if (e.devices !== undefined) this.letGo(e.devices);
    if (e.chosen) this.rememberFreed(oid);
    if (e.owner !== undefined) {
      const set = this.byOwner.get(e.owner);
      set?.delete(oid);
      if (set !== undefined && set.size === 0) this.byOwner.delete(e.owner);
    }
  }

  /**
   * An object holding `devices` was freed: each that no other object here holds is freed on its
   * device at once (the store owns what a call's result left with it; the garbage collector knows
   * nothing of device memory, and a loop of results would fill the device while the store, which
   * counts their bytes, looks empty).
   */
  private letGo(devices: readonly object[]): void {
    const held = this.devices!;
    for (const d of devices) {
      const n = held.get(d)! - 1;
      if (n > 0) held.set(d, n);
      else {
        held.delete(d);
        dispose(d);
      }
    }
  }

  /** Forgets every object `owner` holds (its lease expired); returns how many. */
  freeOwner(owner: string): number {
    const set = this.byOwner.get(owner);
    if (set === undefined) return 0;
    const n = set.size;
    for (const oid of [...set]) this.free(oid);
    return n;
  }

  /** The leases that hold objects here. */
  owners(): string[] {
    return [...this.byOwner.keys()];
  }

  /** Forgets everything (the node drains); those waiting for objects are refused. */
  clear(): void {
    this.objects.clear();
    this.byOwner.clear();
    this.used = 0;
    const devices = this.devices;
    this.devices = undefined;
    if (devices !== undefined) { for (const d of devices.keys()) dispose(d); }
    for (const oid of [...this.waiting.keys()]) {
      this.settleWaiters(oid, new ProtocolError(`Node "${this.node}" is shutting down`));
    }
  }
}
