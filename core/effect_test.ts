import { test } from "node:test";
import assert from "node:assert/strict";
import { Effect, Fiber } from "effect";
import * as ta from "../mod.ts";
import { eventually, gate } from "./_test_utils.ts";

test("layerMesh provides a mesh to goEffect and closes it with the layer", async () => {
  const closed: string[] = [];
  const Svc = ta.service(
    { gpus: 1 },
    class Svc {
      where() {
        return ta.currentInstance()!.node;
      }
      close() {
        closed.push("Svc");
      }
    },
  );
  const svc = Svc.init();
  const program = Effect.gen(function* () {
    return yield* ta.goEffect(svc.where);
  }).pipe(Effect.provide(ta.layerMesh([new ta.MeshNode("gpu-node", { gpus: 1 })])));
  assert.equal(await Effect.runPromise(program), "gpu-node");
  assert.deepEqual(closed, ["Svc"], "the layer's scope closed the mesh");
});

test("goEffect fails with the typed error, catchable by tag", async () => {
  const never = gate();
  const slow = ta.op({ name: "slowE", timeoutMs: 5 }, async () => {
    await never.promise; // released after the deadline answered (a 100 ms body could win on a stalled loop)
  });
  const tag = await Effect.runPromise(
    ta.goEffect(slow).pipe(Effect.catchTag("TimeoutError", (e) => Effect.succeed(`${e._tag}:${e.op}`))),
  );
  never.open();
  assert.equal(tag, "TimeoutError:slowE");
});

test("interrupting a goEffect cancels the submitted call", async () => {
  let ref: ta.ObjectRef<unknown> | undefined;
  const release = gate();
  const hang = ta.op(async function hang() {
    await release.promise;
  });
  const spy = { go: (...a: []) => (ref = hang.go(...a)) };
  const fiber = Effect.runFork(ta.goEffect(spy));
  assert.ok(await eventually(() => ref?.status === "running"), "the call was submitted and started");
  await Effect.runPromise(Fiber.interrupt(fiber));
  assert.equal(ref?.status, "cancelled");
  release.open();
});

test("ref.effect of a 10,000-long chain of Effect waits does not overflow", async () => {
  const inc = ta.op(function incE(x: number) {
    return x + 1;
  });
  let eff: Effect.Effect<number, ta.TaskError> = Effect.succeed(0);
  for (let i = 0; i < 10_000; i++) eff = Effect.flatMap(eff, (x) => inc.go(x).effect);
  assert.equal(await Effect.runPromise(eff), 10_000);
});
