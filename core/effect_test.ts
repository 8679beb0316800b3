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

test("goEffect: catchIf with instanceof ta.TimeoutError catches a task's deadline, not Effect.timeout's TimeoutError of the same tag", async () => {
  const never = gate();
  const slow = ta.op({ name: "slowTagged", timeoutMs: 5 }, async () => {
    await never.promise;
  });
  // the README's way to catch the task's own deadline only
  const taskDeadline = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    effect.pipe(
      Effect.catchIf((e): e is E & ta.TimeoutError => e instanceof ta.TimeoutError, (e) =>
        Effect.succeed(`task:${e.op}`)),
    );
  assert.equal(await Effect.runPromise(taskDeadline(ta.goEffect(slow))), "task:slowTagged");
  // Effect.timeout's error shares the tag (catchTag would take it for the task's) and passes through
  const effectTimeout = ta.goEffect(ta.op(async function slowUntimed() {
    await never.promise;
  })).pipe(Effect.timeout("1 millis"), taskDeadline, Effect.catchTag("TimeoutError", (e) => Effect.succeed(e)));
  const caught = await Effect.runPromise(effectTimeout);
  never.open();
  assert.equal(typeof caught === "object" && caught._tag, "TimeoutError", "Effect.timeout's own error");
  assert.ok(!(caught instanceof ta.TimeoutError));
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
