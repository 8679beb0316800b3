import { test } from "node:test";
import assert from "node:assert/strict";
import { GpuDevice } from "./devices.ts";
import { PlacementError } from "./errors.ts";
import {
  assignNodeGpus,
  type MutableNodeResources,
  type PlacementRequest,
  releaseResources,
  takeResources,
} from "./placement.ts";

/** A node's own count of its GPUs, as NodeServer keeps it. */
function node(gpus: number): MutableNodeResources {
  return {
    name: "n1",
    unboundedGpus: false,
    freeGpus: Array.from({ length: gpus }, (_, i) => new GpuDevice(i)),
    shared: new Map(),
    freeCpus: Infinity,
    instances: 0,
  };
}

const needs = (gpus: number): PlacementRequest => ({ service: "S", gpus, cpus: 0, replicas: 1 });

/** Assigns and takes, as a node does on `create`. */
function create(n: MutableNodeResources, gpus: number, asked: number[]): number[] {
  const placed = assignNodeGpus(n, needs(gpus), { asked, gpuCount: 2 });
  takeResources(n, placed, needs(gpus));
  return placed.map((g) => g.id);
}

test("assignNodeGpus never gives a GPU twice: [0,0] then [1,1] on a 2-GPU node", () => {
  const n = node(2);
  assert.deepEqual(create(n, 2, [0, 0]), [0, 1], "distinct GPUs, whatever was asked");
  assert.throws(
    () => create(n, 2, [1, 1]),
    (e: unknown) => e instanceof PlacementError && /needs 2 GPUs/.test(e.message),
  );
  assert.throws(() => create(n, 1, [0]), PlacementError, "nothing left for even one");
});

test("assignNodeGpus gives only GPUs the node has: a share asked of GPU 7 lands on a real GPU", () => {
  const n = node(2);
  assert.deepEqual(create(n, 0.5, [7]), [0]);
  assert.deepEqual(create(n, 1, [7]), [1]);
  assert.deepEqual(create(n, 0.5, [-1]), [0], "the other half of GPU 0");
  assert.throws(
    () => create(n, 0.5, [9]),
    (e: unknown) => e instanceof PlacementError && /GPU 9 does not exist: the node has 2/.test(e.message),
  );
});

test("assignNodeGpus never splits a GPU past whole: three halves asked of GPU 0 take two GPUs", () => {
  const n = node(2);
  assert.deepEqual([create(n, 0.5, [0]), create(n, 0.5, [0]), create(n, 0.5, [0])], [[0], [0], [1]]);
  assert.deepEqual(create(n, 0.5, [0]), [1], "the last half left");
  assert.throws(
    () => create(n, 0.5, [0]),
    (e: unknown) => e instanceof PlacementError && /0.5 of a GPU/.test(e.message),
  );
  assert.throws(() => create(n, 1, []), PlacementError, "no whole GPU is left either");
});

test("assignNodeGpus honours the driver's choice when it fits, and released GPUs are given again", () => {
  const n = node(3);
  const placed = assignNodeGpus(n, needs(2), { asked: [2, 0] });
  assert.deepEqual(placed.map((g) => g.id), [2, 0]);
  takeResources(n, placed, needs(2));
  assert.deepEqual(n.freeGpus.map((g) => g.id), [1]);
  releaseResources(n, placed, needs(2));
  assert.deepEqual(n.freeGpus.map((g) => g.id), [0, 1, 2]);
  const half = assignNodeGpus(n, needs(0.25), { asked: [1] });
  takeResources(n, half, needs(0.25));
  releaseResources(n, half, needs(0.25));
  assert.equal(n.shared.size, 0, "a split GPU whose shares all came back is whole again");
  assert.deepEqual(assignNodeGpus(n, needs(0), { asked: [5] }), [], "a CPU-only service gets none");
});
