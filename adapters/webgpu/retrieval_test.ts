import { after, test } from "node:test";
import assert from "node:assert/strict";
import { CosineIndex } from "./retrieval.ts";
import { cosineTopKCpu } from "./_reference.ts";
import { noGpu, randomFloats } from "./_test_utils.ts";
import { releaseGpuDevices } from "./detect.ts";

// Destroy the cached device when this file is done, so none outlives its tests.
after(() => releaseGpuDevices());

function assertSameHits(got: { index: number; score: number }[], want: { index: number; score: number }[]): void {
  assert.deepEqual(got.map((h) => h.index), want.map((h) => h.index));
  got.forEach((h, i) =>
    assert.ok(Math.abs(h.score - want[i].score) < 1e-5, `score ${i}: ${h.score} vs ${want[i].score}`)
  );
}

test(
  "CosineIndex.search top-k equals the CPU reference (2000 × 384, k = 10, several queries)",
  { skip: noGpu },
  async () => {
    const n = 2000, dim = 384;
    const docs = randomFloats(n * dim, 42);
    const index = await CosineIndex.create(docs, dim);
    try {
      for (let q = 0; q < 3; q++) {
        const query = randomFloats(dim, 1000 + q);
        assertSameHits(await index.search(query, 10), cosineTopKCpu(docs, dim, query, 10));
      }
    } finally {
      index.destroy();
    }
  },
);

test(
  "CosineIndex.search merges across chunks and handles dims that are not multiples of 4",
  { skip: noGpu },
  async () => {
    const n = 777, dim = 30;
    const docs = randomFloats(n * dim, 7);
    // Small chunks force several kernel runs whose candidates the CPU merges.
    const index = await CosineIndex.create(docs, dim, { maxChunkBytes: 100 * 32 * 4 });
    try {
      const query = randomFloats(dim, 8);
      assertSameHits(await index.search(query, 25), cosineTopKCpu(docs, dim, query, 25));
      // A document equal to the query (scaled) ranks first with similarity 1.
      const hits = await index.search(docs.slice(5 * dim, 6 * dim).map((v) => v * 3), 1);
      assert.equal(hits[0].index, 5);
      assert.ok(Math.abs(hits[0].score - 1) < 1e-5);
    } finally {
      index.destroy();
    }
  },
);

test("CosineIndex.search rejects a query of the wrong width and a k out of range", { skip: noGpu }, async () => {
  const index = await CosineIndex.create(new Float32Array(8), 4);
  try {
    await assert.rejects(index.search(new Float32Array(3), 1), {
      name: "RangeError",
      message: /query must be a Float32Array of 4 elements, got 3/,
    });
    await assert.rejects(index.search(new Float32Array(4), 0), {
      name: "RangeError",
      message: /k must be an integer in 1\.\.64, got 0/,
    });
  } finally {
    index.destroy();
  }
});

test("cosineTopKCpu ranks by similarity and keeps the lower index first on ties", () => {
  const docs = new Float32Array([1, 0, 2, 0, 0, 1, 1, 1]);
  const hits = cosineTopKCpu(docs, 2, new Float32Array([1, 0]), 3);
  assert.deepEqual(hits.map((h) => h.index), [0, 1, 3]);
});
