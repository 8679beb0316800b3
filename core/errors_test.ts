import { test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../mod.ts";
import { errorFromWire, errorToWire } from "./codec.ts";
import { CancelledError, OpExecutionError, TimeoutError } from "./errors.ts";
import { gate, rejection } from "./_test_utils.ts";

test("a service method is a Call in messages, an op an Op: failed, timed out, cancelled", async () => {
  const ErrWording = ta.service(
    { name: "ErrWording" },
    class {
      boom(): never {
        throw new Error("boom");
      }
      async wait(until: Promise<void>): Promise<void> {
        await until;
      }
    },
  );
  const failing = ta.op(async function errWordingOp(): Promise<never> {
    throw new Error("op boom");
  });
  const h = ErrWording.init();
  const failed = await rejection(h.boom.go());
  assert.ok(failed instanceof OpExecutionError);
  assert.equal(failed.message, 'Call "ErrWording.boom" failed: Error: boom');
  assert.equal(failed.kind, "method");

  const release = gate();
  const running = h.wait.go(release.promise);
  const queued = h.wait.go(release.promise);
  queued.cancel();
  const cancelled = await rejection(queued);
  assert.ok(cancelled instanceof CancelledError);
  assert.equal(cancelled.message, 'Call "ErrWording.wait" was cancelled');
  release.open();
  await running;

  const opFailed = await rejection(failing.go());
  assert.equal((opFailed as Error).message, 'Op "errWordingOp" failed: Error: op boom');
  assert.equal((opFailed as OpExecutionError).kind, "op");
});

test("a method's deadline passing is a Call that did not finish", async () => {
  const Late = ta.service(
    { name: "ErrWordingLate", timeoutMs: 20 },
    class {
      async wait(until: Promise<void>): Promise<void> {
        await until;
      }
    },
  );
  const release = gate();
  const err = await rejection(Late.init().wait.go(release.promise));
  release.open();
  assert.ok(err instanceof TimeoutError, String(err));
  assert.equal(err.message, 'Call "ErrWordingLate.wait" did not finish within 20 ms');
});

test("the kind travels with the error, so a rebuilt error knows it was a call", () => {
  for (
    const err of [
      new OpExecutionError({ name: "S.m", kind: "method" }, new Error("x")),
      new TimeoutError({ name: "S.m", kind: "method" }, 5),
      new CancelledError({ name: "S.m", kind: "method" }, "cancelled", "drain"),
    ]
  ) {
    const back = errorFromWire(errorToWire(err)) as OpExecutionError | TimeoutError | CancelledError;
    assert.equal(back.constructor, err.constructor);
    assert.equal(back.kind, "method");
    assert.equal(back.op, "S.m");
    assert.match(back.message, /^Call "S\.m" /);
  }
  // an op's error carries no kind on the wire, as before, and comes back an op
  const wire = errorToWire(new CancelledError("f"));
  assert.equal("kind" in (wire.data ?? {}), false);
  assert.equal((errorFromWire(wire) as CancelledError).kind, "op");
});

test("a PlacementError reads naturally: one GPU, unlimited CPUs, what each node has free", async () => {
  const Big = ta.service(
    { name: "ErrWordingBig", gpus: 1, cpus: 4 },
    class {
      hi(): number {
        return 1;
      }
    },
  );
  await using mesh = new ta.Mesh([new ta.MeshNode("a", { gpus: 1, cpus: 2 }), new ta.MeshNode("b")]);
  const err = await rejection(mesh.run(() => Big.init().hi.go()));
  assert.ok(err instanceof ta.PlacementError, String(err));
  assert.equal(
    err.message,
    'Cannot place service "ErrWordingBig": needs 1 GPU and 4 CPUs on one node; ' +
      "free: 1 GPU and 2 CPUs on a, 0 GPUs and unlimited CPUs on b",
  );
});

test("mesh.stats() shows an instance whose constructor threw as failed, with why", async () => {
  const Broken = ta.service(
    { name: "ErrWordingBroken" },
    class {
      constructor() {
        throw new Error("no model file");
      }
      hi(): number {
        return 1;
      }
    },
  );
  await using mesh = new ta.Mesh([new ta.MeshNode("n1")]);
  const err = await rejection(mesh.run(() => Broken.init().hi.go()));
  assert.match(String((err as Error).message), /no model file/);
  const [inst] = mesh.stats().instances;
  assert.equal(inst.state, "failed");
  assert.equal(inst.error, 'Call "ErrWordingBroken.constructor" failed: Error: no model file');
  assert.equal(mesh.stats().nodes[0].servedAs, "n1", "an in-process node is served under its own name");
});
