/**
 * The credit window of a stream over the wire (see `stream_wire.ts`): how many items, and about
 * how many bytes of them, a node's producer may run ahead of its consumer. A consumer grants it with
 * its call (a mesh's `streamWindow`) and renews it as it takes items; both ends count an item's
 * bytes by the same cheap estimate, {@linkcode itemBytes}.
 *
 * @module
 */

/** A consumer's credit window: items (and about how many bytes of them) a producer may run ahead. */
export interface StreamWindow {
  /** Items (default {@linkcode DEFAULT_STREAM_WINDOW}'s 16384). */
  items?: number;
  /** Bytes, as {@linkcode itemBytes} estimates them (default 4 MiB). */
  bytes?: number;
}

/**
 * The default credit window of a stream over the wire: 16384 items and 4 MiB (a mesh's
 * `streamWindow` sets another). Eight full chunks (`CHUNK_ITEMS`, `stream_chunk.ts`): a consumer grants a
 * quarter of it at a time, so each grant lets the node make two full chunks, and a stream of many
 * small items costs each end few turns of its event loop per item.
 *
 * @example
 * ```ts
 * import { DEFAULT_STREAM_WINDOW, resolveStreamWindow } from "./stream_wire.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * deepStrictEqual(resolveStreamWindow(undefined), { ...DEFAULT_STREAM_WINDOW });
 * ```
 */
export const DEFAULT_STREAM_WINDOW: Readonly<Required<StreamWindow>> = Object.freeze({
  items: 16384,
  bytes: 4 * 1024 * 1024,
});

const DEFAULT_WINDOW: Required<StreamWindow> = DEFAULT_STREAM_WINDOW;

/**
 * About how many bytes an item takes on the wire (counted against a window's bytes): a byte string
 * or typed array its length, a string its length, anything else 16. An estimate, cheap per item.
 *
 * @param item A stream item.
 * @returns Its estimated size.
 *
 * @example
 * ```ts
 * import { itemBytes } from "./stream_window.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(itemBytes(new Float32Array(4)), 24);
 * strictEqual(itemBytes("abc"), 11);
 * ```
 */
export function itemBytes(item: unknown): number {
  if (typeof item === "string") return 8 + item.length;
  if (ArrayBuffer.isView(item)) return 8 + item.byteLength;
  return 16;
}

/**
 * Checks a window given by a user (a mesh's `streamWindow`): positive integers.
 *
 * @param window The window, or `undefined` for the default.
 * @returns The window with defaults filled in.
 * @throws {RangeError} For counts that are not positive integers.
 *
 * @example
 * ```ts
 * import { resolveStreamWindow } from "./stream_window.ts";
 * import { deepStrictEqual, throws } from "node:assert/strict";
 * deepStrictEqual(resolveStreamWindow({ items: 8 }), { items: 8, bytes: 4 * 1024 * 1024 });
 * throws(() => resolveStreamWindow({ items: 0 }), RangeError);
 * ```
 */
export function resolveStreamWindow(window: StreamWindow | undefined): Required<StreamWindow> {
  if (window === undefined) return DEFAULT_WINDOW; // every call without a window of its mesh's
  const items = window?.items ?? DEFAULT_STREAM_WINDOW.items;
  const bytes = window?.bytes ?? DEFAULT_STREAM_WINDOW.bytes;
  for (const [k, v] of [["items", items], ["bytes", bytes]] as const) {
    if (!(Number.isSafeInteger(v) && v > 0)) {
      throw new RangeError(`A stream window's ${k} must be a positive integer, got ${String(v)}`);
    }
  }
  return { items, bytes };
}
