import { test } from "node:test";
import assert from "node:assert/strict";
import { Layer } from "effect";
import * as ta from "../mod.ts";
import { RemoteExecutor } from "./remote_executor.ts";
import { eventually } from "./_test_utils.ts";

test(
  "when creating a remote instance throws, placement gives every resource back and disposes the instances already made",
  {
    timeout: 30_000,
  },
  async () => {
    const refused = Layer.succeed(RemoteExecutor, {
      createReplica: () => {
        throw new TypeError("no transport reaches this node");
      },
      opBody: () => undefined,
    });
    let made = 0, disposed = 0;
    const Split = ta.service(
      { replicas: 2, gpus: 1, cpus: 1 },
      class LeakSplit {
        constructor() {
          made++;
        }
        work() {
          return "ok";
        }
        [Symbol.dispose]() {
          disposed++;
        }
      },
    );
    await using mesh = new ta.Mesh([
      new ta.MeshNode("here", { gpus: 1, cpus: 1 }),
      new ta.MeshNode("there", { gpus: 1, cpus: 1, endpoint: "ws://127.0.0.1:9" }),
    ], { remote: refused });
    await assert.rejects(mesh.run(() => Split.init()), /no transport reaches this node/);
    assert.equal(made, 1, "the local replica was made before the remote one failed");
    assert.equal(await eventually(() => disposed === 1), true, "the local instance was disposed");
    for (const n of mesh.stats().nodes) {
      assert.deepEqual([n.gpus.free, n.cpus.free], [n.gpus.total, n.cpus.total], `${n.name} got everything back`);
    }
    assert.equal(mesh.stats().instances.length, 0);
    // the freed GPU and core fit a service again
    const Solo = ta.service(
      { gpus: 1, cpus: 1 },
      class LeakSolo {
        where() {
          return ta.currentInstance()!.node;
        }
      },
    );
    assert.equal(await mesh.run(() => Solo.init().where()), "here");
  },
);
