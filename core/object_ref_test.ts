// What an ObjectRef is outside the scheduler: its JSON form, and that it is no data to clone.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../mod.ts";
import { gate } from "./_test_utils.ts";

test("ObjectRef toJSON is its String form: JSON.stringify never shows the call's arguments or value", async () => {
  const login = ta.op(async function jsonLogin(user: string, password: string) {
    await started.promise;
    return `${user}:${password}`;
  });
  const started = gate();
  const ref = login.go("alice", "hunter2");
  assert.equal(JSON.stringify(ref), JSON.stringify(String(ref)));
  assert.match(JSON.stringify({ ref }), /^\{"ref":"ObjectRef\(jsonLogin#\d+, (pending|running)\)"\}$/);
  started.open();
  await ref;
  assert.equal(JSON.stringify(ref), JSON.stringify(`ObjectRef(${ref.id}, completed)`));
  assert.doesNotMatch(JSON.stringify([ref]), /hunter2|alice/);
});

test("ObjectRef cannot be structured-cloned (structuredClone, postMessage): DataCloneError, for every kind of ref", async () => {
  const Svc = ta.service(
    class CloneSvc {
      echo(x: string) {
        return x;
      }
    },
  );
  const echo = ta.op(async function cloneEcho(x: string) {
    await held.promise;
    return x;
  });
  const held = gate();
  const refuses = (ref: unknown) =>
    assert.throws(() => structuredClone(ref), (e: unknown) => (e as Error).name === "DataCloneError");
  const pending = echo.go("secret");
  const h = Svc.init();
  const mesh = new ta.Mesh([new ta.MeshNode("a")]);
  const orphan = Svc.init();
  await mesh.run(() => orphan.echo.go("placed"));
  await mesh.close();
  const failed = orphan.echo.go("secret"); // its instance was disposed with its mesh
  const refs: ta.ObjectRef<unknown>[] = [pending, h.echo.go("secret"), ta.put("secret"), failed];
  for (const ref of refs) refuses(ref);
  held.open();
  await Promise.allSettled(refs);
  assert.equal(failed.status, "failed");
  for (const ref of refs) refuses(ref);
});
