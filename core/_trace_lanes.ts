/**
 * Lanes for a timeline: which thread track of its executor each task is drawn on, so that no two
 * tasks on one track overlap (Perfetto draws a partial overlap wrongly). O(n log n): two heaps of
 * lanes, the busy ones by when they free up and the free ones by number, so each task takes the
 * lowest-numbered lane free at its start, as a scan of every lane would, without the scan.
 *
 * @module
 */

/** A binary min-heap of lane numbers, ordered by `key[lane]` then by the lane number. */
class LaneHeap {
  private readonly items: number[] = [];
  constructor(private readonly key: ArrayLike<number> | undefined) {}

  get size(): number {
    return this.items.length;
  }

  /** The lane at the top (the heap must not be empty). */
  peek(): number {
    return this.items[0];
  }

  private less(a: number, b: number): boolean {
    const k = this.key;
    if (k !== undefined && k[a] !== k[b]) return k[a] < k[b];
    return a < b;
  }

  push(lane: number): void {
    const h = this.items;
    let i = h.push(lane) - 1;
    while (i > 0) {
      const up = (i - 1) >> 1;
      if (!this.less(h[i], h[up])) break;
      [h[i], h[up]] = [h[up], h[i]];
      i = up;
    }
  }

  pop(): number {
    const h = this.items;
    const top = h[0];
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < h.length && this.less(h[l], h[m])) m = l;
        if (r < h.length && this.less(h[r], h[m])) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m], h[i]];
        i = m;
      }
    }
    return top;
  }
}

/**
 * Assigns each interval (in order of start) the lowest-numbered lane free at its start: one whose
 * last interval ended at or before it. A new lane is opened only when every lane is busy, so the
 * lanes are as few as the most intervals open at once, up to `maxLanes`; an interval that would
 * need one more gets -1 (the caller draws it elsewhere).
 *
 * @param starts The intervals' starts, in ascending order.
 * @param ends Their ends (each at or after its start).
 * @param maxLanes The most lanes to open.
 * @returns The lane of each interval (0, 1, …), or -1 past `maxLanes`.
 *
 * @example Two overlapping tasks take two lanes; a later one reuses the first
 * ```ts
 * import { assignLanes } from "./_trace_lanes.ts";
 * const lanes = assignLanes([0, 1, 5], [4, 3, 6], 8);
 * if (lanes.join() !== "0,1,0") throw new Error(lanes.join());
 * ```
 */
export function assignLanes(starts: ArrayLike<number>, ends: ArrayLike<number>, maxLanes: number): Int32Array {
  const out = new Int32Array(starts.length);
  const freeAt: number[] = [];
  const busy = new LaneHeap(freeAt);
  const free = new LaneHeap(undefined);
  for (let i = 0; i < starts.length; i++) {
    const start = starts[i];
    while (busy.size > 0 && freeAt[busy.peek()] <= start) free.push(busy.pop());
    let lane: number;
    if (free.size > 0) lane = free.pop();
    else if (freeAt.length < maxLanes) lane = freeAt.push(0) - 1;
    else {
      out[i] = -1;
      continue;
    }
    freeAt[lane] = ends[i];
    busy.push(lane);
    out[i] = lane;
  }
  return out;
}
