/**
 * A node's object store: the results that stay where they were made (too large to send back
 * unasked, see `CallMessage.keepAbove`), each owned by the lease of the driver that asked for it,
 * until that driver frees it, its lease expires, or the node drains. Bounded in bytes: an object
 * past the bound is refused with `OverloadedError`, never dropped silently.
 *
 * @module
 */
import { OverloadedError, ProtocolError } from "../core/errors.ts";
import { decodeReply, type ResultMessage } from "./protocol.ts";

const READBACK = Symbol.for("thinkagain.readback");

function onDevice(v: unknown): boolean {
  return typeof v === "object" && v !== null && typeof (v as Record<symbol, unknown>)[READBACK] === "function";
}

/**
 * Whether `value` holds values that live on a device (a WebGPU adapter's `GpuArray`: they answer
 * `Symbol.for("thinkagain.readback")`), itself or among the items of an array or plain object.
 *
 * @param value A call's result.
 * @returns True when it must be read back before it can leave this process.
 *
 * @example
 * ```ts
 * import { holdsDeviceValues } from "./object_store.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(holdsDeviceValues([1, new Float32Array(2)]), false);
 * strictEqual(holdsDeviceValues({ a: { [Symbol.for("thinkagain.readback")]: () => Promise.resolve(1) } }), true);
 * ```
 */
export function holdsDeviceValues(value: unknown): boolean {
  if (onDevice(value)) return true;
  if (typeof value !== "object" || value === null) return false;
  const items = Array.isArray(value)
    ? value
    : Object.getPrototypeOf(value) === Object.prototype
    ? Object.values(value)
    : [];
  return items.some(onDevice);
}

/**
 * `value` with what lives on a device read back into this process (see
 * {@linkcode holdsDeviceValues}): what leaves a node.
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
 * ```
 */
export async function readBack(value: unknown): Promise<unknown> {
  const one = (v: unknown) => onDevice(v) ? (v as Record<symbol, () => Promise<unknown>>)[READBACK]() : v;
  if (onDevice(value)) return await one(value);
  if (Array.isArray(value)) return await Promise.all(value.map(one));
  if (typeof value !== "object" || value === null) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    Object.defineProperty(out, k, { value: await one(v), enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/**
 * About how many bytes the device values in `value` hold (4 per element), for the store's bound.
 *
 * @param value A call's result.
 * @returns The estimate.
 *
 * @example
 * ```ts
 * import { deviceBytes } from "./object_store.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(deviceBytes([{ length: 3, [Symbol.for("thinkagain.readback")]: () => Promise.resolve() }]), 12);
 * ```
 */
export function deviceBytes(value: unknown): number {
  const size = (v: unknown) => onDevice(v) ? 4 * Number((v as { length?: number }).length ?? 0) : 0;
  if (onDevice(value)) return size(value);
  if (typeof value !== "object" || value === null) return 0;
  return (Array.isArray(value) ? value : Object.values(value)).reduce((n: number, v) => n + size(v), 0);
}

/** Default of {@link ObjectStoreOptions.maxBytes}: 1 GiB. */
export const DEFAULT_OBJECT_STORE_BYTES = 1024 ** 3;

/** Options of an {@linkcode ObjectStore}. */
export interface ObjectStoreOptions {
  /** Most bytes (as encoded) the objects may hold together (default {@linkcode DEFAULT_OBJECT_STORE_BYTES}). */
  maxBytes?: number;
  /** The node's name, for errors. */
  node?: string;
}

/**
 * One stored object: its value (or the `result` frame that carries it, already encoded: what a
 * fetch sends as it is), its encoded size, who owns it and what made it.
 */
interface Entry {
  readonly value: unknown;
  readonly frame: Uint8Array | undefined;
  readonly bytes: number;
  readonly owner: string | undefined;
  readonly madeBy: string;
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
  }

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
   * and sent as it is by a fetch).
   * @returns The object's id.
   * @throws {OverloadedError} When it does not fit in what is left of the bound.
   */
  put(value: unknown, bytes: number, meta: { owner?: string; madeBy: string; frame?: Uint8Array }): string {
    if (this.used + bytes > this.maxBytes) {
      throw new OverloadedError(
        `Node "${this.node}" cannot keep the ${bytes}-byte result of ${meta.madeBy}: its object store holds ` +
          `${this.used} of ${this.maxBytes} bytes (${this.objects.size} objects; raise --object-store-bytes, ` +
          "or drop refs to results no longer needed)",
      );
    }
    const oid = crypto.randomUUID();
    const frame = meta.frame;
    this.objects.set(oid, {
      value: frame === undefined ? value : undefined,
      frame,
      bytes,
      owner: meta.owner,
      madeBy: meta.madeBy,
    });
    this.used += bytes;
    if (meta.owner !== undefined) {
      let set = this.byOwner.get(meta.owner);
      if (set === undefined) this.byOwner.set(meta.owner, set = new Set());
      set.add(oid);
    }
    return oid;
  }

  /**
   * The value of object `oid`.
   *
   * @param oid The object's id.
   * @returns Its value.
   * @throws {ProtocolError} When this node holds no such object (freed, or never made here).
   */
  get(oid: string): unknown {
    const e = this.entry(oid);
    return e.frame === undefined
      ? e.value
      : (decodeReply<ResultMessage>(e.frame, "result") as { value: unknown }).value;
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

  /** Forgets object `oid` (nothing when it holds none). */
  free(oid: string): void {
    const e = this.objects.get(oid);
    if (e === undefined) return;
    this.objects.delete(oid);
    this.used -= e.bytes;
    if (e.owner !== undefined) {
      const set = this.byOwner.get(e.owner);
      set?.delete(oid);
      if (set !== undefined && set.size === 0) this.byOwner.delete(e.owner);
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

  /** Forgets everything (the node drains). */
  clear(): void {
    this.objects.clear();
    this.byOwner.clear();
    this.used = 0;
  }
}
