// assignLanes: the lanes of a Chrome trace's thread tracks (Profiler.toChromeTrace).
import { test } from "node:test";
import assert from "node:assert/strict";
import { assignLanes } from "./_trace_lanes.ts";

/** A deterministic pseudo-random sequence in [0, 1) (mulberry32). */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test("assignLanes never puts overlapping intervals on one lane, and opens no more lanes than are open at once", () => {
  const next = random(7);
  const starts: number[] = [], ends: number[] = [];
  let t = 0;
  for (let i = 0; i < 5_000; i++) {
    t += next() * 2;
    starts.push(t);
    ends.push(t + (next() < 0.1 ? next() * 200 : next() * 10));
  }
  const lanes = assignLanes(starts, ends, 10_000);
  const last = new Map<number, number>();
  for (let i = 0; i < starts.length; i++) {
    assert.ok(lanes[i] >= 0);
    const prev = last.get(lanes[i]);
    assert.ok(prev === undefined || ends[prev] <= starts[i], `interval ${i} overlaps ${prev} on lane ${lanes[i]}`);
    last.set(lanes[i], i);
  }
  // the most intervals open at once: events in time order, an end before a start at the same time
  const points = starts.map((s) => [s, 1]).concat(ends.map((e) => [e, -1]));
  points.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let open = 0, most = 0;
  for (const [, d] of points) most = Math.max(most, open += d);
  assert.equal(Math.max(...lanes) + 1, most);
});

test("assignLanes reuses the lowest lane free at a start: intervals one after another share lane 0", () => {
  assert.deepEqual([...assignLanes([0, 1, 2, 3], [1, 2, 3, 4], 4)], [0, 0, 0, 0]);
  // lanes 0 and 1 busy, then 0 frees first but 1 is taken back before 2 is opened
  assert.deepEqual([...assignLanes([0, 0, 0, 5, 6, 6], [10, 4, 3, 6, 7, 7], 8)], [0, 1, 2, 1, 1, 2]);
});

test("assignLanes gives -1 to an interval that would need a lane past maxLanes", () => {
  const n = 10;
  const lanes = assignLanes(Array(n).fill(0), Array(n).fill(5), 4);
  assert.deepEqual([...lanes], [0, 1, 2, 3, -1, -1, -1, -1, -1, -1]);
  assert.deepEqual([...assignLanes([0, 0, 5], [5, 5, 6], 1)], [0, -1, 0]);
});
