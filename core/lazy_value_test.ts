// Values kept on a node among a body's arguments: fetched at any depth, once each.
import { test } from "node:test";
import assert from "node:assert/strict";
import { LazyValue, materializeArgs } from "./lazy_value.ts";

class Kept extends LazyValue {
  fetches = 0;
  constructor(private readonly value: unknown) {
    super();
  }
  protected fetch(): Promise<unknown> {
    this.fetches++;
    return Promise.resolve(this.value);
  }
}

function nest(v: unknown, depth: number): unknown {
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}

function innermost(v: unknown): unknown {
  while (Array.isArray(v)) v = v[0];
  return v;
}

test("materializeArgs fetches a value kept on a node nested 40 and 5,000 levels deep, once, and keeps what holds none", async () => {
  const kept = new Kept(7);
  const plain = nest("plain", 40);
  const args: unknown[] = [nest(kept, 40), { deep: nest(kept, 5_000), plain }];
  await materializeArgs(args);
  assert.equal(innermost(args[0]), 7);
  assert.equal(innermost((args[1] as { deep: unknown }).deep), 7);
  assert.equal((args[1] as { plain: unknown }).plain, plain);
  assert.equal(kept.fetches, 1);
});

test("materializeArgs passes a cyclic structure that holds no kept value, and refuses one that does", async () => {
  const graph: unknown[] = [];
  graph.push(graph, graph); // every path through it is 2^depth long
  assert.equal(materializeArgs([graph, 1]), undefined);
  const loop: unknown[] = [new Kept(1)];
  loop.push(loop);
  await assert.rejects(
    materializeArgs([0, loop])!,
    (e: Error) => e instanceof TypeError && /argument 1/.test(e.message),
  );
});
