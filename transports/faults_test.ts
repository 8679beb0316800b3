// Faults a driver meets with real node processes (Bun and Deno): a driver that reads slowly, a node
// that hangs (SIGSTOP), a frozen node among healthy ones, deadlines past what a timer can hold, a
// node that drains, and a node that reports its own resources.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import * as ta from "../mod.ts";
import { eventually, gate, rejection, settlesWithin } from "../core/_test_utils.ts";
import { type NodeProcess, runArgs, type Runtime, startNodeProcess } from "../adapters/_test_nodes.ts";
import { spawn } from "node:child_process";
import {
  Bulk,
  GpuUser,
  LongDeadline,
  NoDeadline,
  waitOp,
  waitOpLong,
  waitOpNone,
  whereAmI,
} from "./_test_faults_app.ts";
import { startRealServer } from "./_test_servers.ts";
import { decodeDriverMessage } from "./protocol.ts";
import { errorFromWire, errorToWire } from "../core/codec.ts";

const APP = fileURLToPath(new URL("./_test_faults_app.ts", import.meta.url));
const WS_NODE = fileURLToPath(new URL("./_test_ws_node.ts", import.meta.url));
const T = { timeout: 240_000 };
const RUNTIMES: Runtime[] = ["bun", "deno"];

async function stop(node: NodeProcess): Promise<void> {
  // by pid: Deno's ChildProcess.kill() sends nothing after its first signal
  for (const signal of ["SIGCONT", "SIGKILL"] as const) { // a node a test froze must be able to die
    try {
      process.kill(node.proc.pid!, signal);
    } catch {
      // it exited already
    }
  }
  await node.exited;
}

/** Starts `_test_ws_node.ts` (a node with a small WebSocket send queue) on `runtime`. */
function startWsNode(runtime: Runtime, maxSendQueueBytes: number): Promise<NodeProcess> {
  const [bin, argv] = runArgs(runtime, WS_NODE, [String(maxSendQueueBytes)]);
  const proc = spawn(bin, argv, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  const exited = new Promise<number | string>((resolve) => proc.on("exit", (code, sig) => resolve(code ?? sig ?? -1)));
  return new Promise((resolve, reject) => {
    proc.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /ready (\d+)/.exec(out);
      if (m) {
        const port = Number(m[1]);
        resolve({
          url: `http://127.0.0.1:${port}`,
          port,
          proc,
          output: () => out,
          exited,
          cleanExit: () => exited,
          kill: (s = "SIGTERM") => void proc.kill(s),
        });
      }
    });
    proc.stderr!.on("data", (d: Buffer) => (out += d.toString()));
    exited.then((code) => reject(new Error(`node exited with ${code} before it was ready:\n${out}`)));
  });
}

/**
 * Makes `n` calls of 1 MiB replies on `node`, all answered while this driver's event loop is
 * blocked (it reads nothing meanwhile), and returns each call's outcome.
 */
async function slowReader(
  node: NodeProcess,
  n: number,
): Promise<{ pending: number; results: PromiseSettledResult<Uint8Array>[] }> {
  const dir = mkdtempSync(join(tmpdir(), "ta-slow-reader-"));
  // every result comes back at once (none stays on the node): the replies are what fills the socket
  const mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: `ws://127.0.0.1:${node.port}` })], {
    keepResultsAbove: Infinity,
  });
  try {
    // the calls still pending, if any, are cancelled at close
    return await mesh.run(async () => {
      const bulk = Bulk.init();
      assert.equal(await bulk.echo.go(1), 1); // the instance exists
      const refs = Array.from({ length: n }, (_, i) => bulk.big.go(i, n, dir));
      // every call reached the node (the requests leave while this event loop turns)
      assert.ok(await eventually(() => existsSync(join(dir, "arrived")), 60_000), "every call reached the node");
      writeFileSync(join(dir, "release"), "");
      // this driver stops reading: its event loop is blocked until the node has written every
      // reply (far more than the sockets' buffers hold)
      const end = Date.now() + 60_000;
      while (!existsSync(join(dir, "sent")) && Date.now() < end) { /* busy, as a driver doing CPU work */ }
      assert.ok(existsSync(join(dir, "sent")), "the node wrote every reply");
      return await outcomes(refs, 120_000);
    });
  } finally {
    await mesh.close({ graceMs: 0 });
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Each ref's outcome once all have settled, or the number still pending when the bound passed. */
async function outcomes<T>(
  refs: PromiseLike<T>[],
  boundMs: number,
): Promise<{ pending: number; results: PromiseSettledResult<T>[] }> {
  const results: (PromiseSettledResult<T> | undefined)[] = refs.map(() => undefined);
  refs.forEach((r, i) =>
    Promise.resolve(r).then(
      (value) => (results[i] = { status: "fulfilled", value }),
      (reason) => (results[i] = { status: "rejected", reason }),
    )
  );
  await eventually(() => results.every((r) => r !== undefined), boundMs);
  return { pending: results.filter((r) => r === undefined).length, results: results.filter((r) => r !== undefined) };
}

for (const runtime of RUNTIMES) {
  test(
    `A ${runtime} node never drops WebSocket replies to a driver that reads slowly: every call settles`,
    T,
    async () => {
      const node = await startNodeProcess(APP, ["--port", "0", "--name", "n1"], { runtime });
      try {
        const { pending, results } = await slowReader(node, 64);
        assert.equal(pending, 0, `${pending} calls still pending: their replies were dropped`);
        for (const [i, r] of results.entries()) {
          assert.equal(r.status, "fulfilled", `call ${i}: ${(r as PromiseRejectedResult).reason}`);
          const v = (r as PromiseFulfilledResult<Uint8Array>).value;
          assert.equal(v.byteLength, 1 << 20);
          assert.equal(v[0] | (v[1] << 8), i);
        }
      } finally {
        await stop(node);
      }
    },
  );

  test(
    `A ${runtime} node closes the connection of a driver that reads too slowly: its calls fail, none stays pending`,
    T,
    async () => {
      const node = await startWsNode(runtime, 4 << 20);
      try {
        const { pending, results } = await slowReader(node, 64);
        assert.equal(pending, 0, `${pending} calls still pending`);
        const failed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
        assert.ok(failed.length > 0, "more than the bound waited: the connection was closed");
        for (const r of failed) {
          assert.ok(r.reason instanceof ta.NodeLostError || r.reason instanceof ta.TransportError, String(r.reason));
        }
        assert.ok(failed.some((r) => /reads too slowly/.test(r.reason.message)), String(failed[0].reason));
      } finally {
        await stop(node);
      }
    },
  );
}

for (const runtime of RUNTIMES) {
  for (const transport of ["websocket", "http"] as const) {
    test(
      `A hung ${runtime} node (SIGSTOP) fails the calls waiting on it with NodeLostError over ${transport}`,
      T,
      async () => {
        const dir = mkdtempSync(join(tmpdir(), "ta-hung-"));
        const node = await startNodeProcess(APP, ["--port", "0", "--name", "n1"], { runtime });
        // the window is short so the test is quick; nothing here depends on how long anything takes
        const mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: `ws://127.0.0.1:${node.port}` })], {
          transport,
          keepaliveMs: 100,
          lostAfterMs: 5_000,
        });
        try {
          await mesh.run(async () => {
            const bulk = Bulk.init();
            assert.equal(await bulk.echo.go(1), 1);
            const gate = join(dir, "gate");
            const call = bulk.waitFor.go(gate, join(dir, "call-started"));
            const op = waitOp.go(gate, join(dir, "op-started"));
            assert.ok(
              await eventually(
                () => existsSync(join(dir, "call-started")) && existsSync(join(dir, "op-started")),
                60_000,
              ),
            );
            process.kill(node.proc.pid!, "SIGSTOP");
            // no timeoutMs anywhere: only the keepalive window can end these calls
            assert.ok(await settlesWithin(Promise.all([call, op].map((r) => rejection(r))), 120_000), "the calls hang");
            for (const ref of [call, op]) {
              const e = await rejection(ref);
              assert.ok(e instanceof ta.NodeLostError, String(e));
              assert.equal(e.node, "n1");
              assert.match(e.message, /no reply to keepalive pings for 5000 ms/);
            }
            // the node wakes up and answers: the late answers are ignored, new calls reach it again
            process.kill(node.proc.pid!, "SIGCONT");
            writeFileSync(gate, "");
            assert.equal(await bulk.echo.go(2), 2);
            assert.equal(call.status, "failed");
            assert.ok((await rejection(call)) instanceof ta.NodeLostError);
          });
        } finally {
          await mesh.close({ graceMs: 0 });
          await stop(node);
          rmSync(dir, { recursive: true, force: true });
        }
      },
    );
  }
}

test("Mesh keepaliveMs and lostAfterMs are validated: positive, below 2^31, the window longer than the ping", () => {
  const nodes = [new ta.MeshNode("a")];
  assert.throws(() => new ta.Mesh(nodes, { keepaliveMs: 0 }), /keepaliveMs must be a number of ms > 0/);
  assert.throws(
    () => new ta.Mesh(nodes, { lostAfterMs: Infinity }),
    /lostAfterMs must be a number of ms > 0 and < 2\^31/,
  );
  assert.throws(() => new ta.Mesh(nodes, { keepaliveMs: 1_000, lostAfterMs: 500 }), /must be longer than keepaliveMs/);
  assert.doesNotThrow(() => new ta.Mesh(nodes, { keepaliveMs: 100, lostAfterMs: 1_000 }).close());
});

for (const runtime of RUNTIMES) {
  for (const transport of ["websocket", "http"] as const) {
    test(
      `remote ops keep going to a healthy ${runtime} node while another node never answers (${transport})`,
      T,
      async () => {
        const healthy = await startNodeProcess(APP, ["--port", "0", "--name", "ok"], {
          runtime,
          env: { FAULT_NODE: "ok" },
        });
        // a frozen node: it accepts connections and frames, and answers nothing
        let hellos = 0;
        const frozen = await startRealServer(
          (frame) => {
            if (decodeDriverMessage(frame).t === "hello") hellos++;
            return new Promise<never>(() => {});
          },
          {},
          transport === "http" ? "http" : "ws",
        );
        const mesh = new ta.Mesh([
          new ta.MeshNode("frozen", { endpoint: frozen.endpoint }),
          new ta.MeshNode("ok", { endpoint: `ws://127.0.0.1:${healthy.port}` }),
        ], { transport, keepaliveMs: 100, lostAfterMs: 8_000 });
        try {
          const calls = 20;
          const done = mesh.run(async () => {
            const out = [];
            for (let i = 0; i < calls; i++) out.push(await whereAmI.go(i));
            return out;
          });
          assert.ok(await settlesWithin(done, 120_000), "the calls wait for the frozen node");
          const out = await done;
          assert.deepEqual(out.map((r) => r.node), Array(calls).fill("ok"));
          assert.deepEqual(out.map((r) => r.x), [...Array(calls).keys()]);
          // a failed hello is remembered: the frozen node is not asked once per call
          assert.ok(hellos >= 1 && hellos < calls, `${hellos} hellos to the frozen node for ${calls} calls`);
        } finally {
          await mesh.close({ graceMs: 0 });
          await frozen.close();
          await stop(healthy);
        }
      },
    );
  }
}

for (const runtime of RUNTIMES) {
  test(
    `timeoutMs of 2^31 ms and Infinity (op, service, mesh) do not cancel calls on a ${runtime} node`,
    T,
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "ta-deadline-"));
      const node = await startNodeProcess(APP, ["--port", "0", "--name", "n1"], { runtime });
      let seq = 0;
      // a call that is still running when a timer of the node's (overflowed: due at once) would fire
      const gated = async (go: (gate: string, started: string) => PromiseLike<string>) => {
        const gate = join(dir, `gate-${++seq}`), started = join(dir, `started-${seq}`);
        const ref = go(gate, started);
        assert.ok(await eventually(() => existsSync(started), 60_000), "the call started");
        writeFileSync(gate, "");
        return await ref;
      };
      try {
        for (const timeoutMs of [undefined, 2 ** 31, Infinity]) {
          const mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: `ws://127.0.0.1:${node.port}` })], { timeoutMs });
          try {
            const what = `mesh timeoutMs ${timeoutMs}`;
            await mesh.run(async () => {
              if (timeoutMs === undefined) {
                const long = LongDeadline.init(), none = NoDeadline.init();
                assert.equal(await gated((g, s) => long.waitFor.go(g, s)), "done", "service timeoutMs 2^31");
                assert.equal(await gated((g, s) => none.waitFor.go(g, s)), "done", "service timeoutMs Infinity");
                assert.equal(await gated((g, s) => waitOpLong.go(g, s)), "done", "op timeoutMs 2^31");
                assert.equal(await gated((g, s) => waitOpNone.go(g, s)), "done", "op timeoutMs Infinity");
              } else {
                const bulk = Bulk.init();
                assert.equal(await gated((g, s) => bulk.waitFor.go(g, s)), "done", `service call, ${what}`);
                assert.equal(await gated((g, s) => waitOp.go(g, s)), "done", `op call, ${what}`);
              }
            });
          } finally {
            await mesh.close({ graceMs: 0 });
          }
        }
      } finally {
        await stop(node);
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
}

test("op and service timeoutMs take Infinity (no deadline); NaN and 0 are still refused", () => {
  assert.doesNotThrow(() => ta.op({ name: "faultInfinityOk", timeoutMs: Infinity }, () => 1));
  assert.throws(() => ta.op({ name: "faultNaN", timeoutMs: NaN }, () => 1), /timeoutMs must be a positive number/);
  assert.throws(
    () =>
      ta.service(
        { name: "FaultZero", timeoutMs: 0 },
        class FaultZero {
          m() {}
        },
      ),
    /timeoutMs must be a positive number/,
  );
  assert.throws(() => new ta.Mesh([new ta.MeshNode("a")], { destroyTimeoutMs: 2 ** 31 }), /destroyTimeoutMs/);
});

for (const runtime of RUNTIMES) {
  test(
    `a call cancelled by a ${runtime} node's drain says so (reason "drain"), unlike a user's cancel`,
    T,
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "ta-drain-"));
      const node = await startNodeProcess(APP, ["--port", "0", "--name", "n1", "--drain-ms", "100"], { runtime });
      const mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: `ws://127.0.0.1:${node.port}` })]);
      try {
        await mesh.run(async () => {
          const bulk = Bulk.init();
          const gate = join(dir, "never");
          const mine = bulk.waitFor.go(gate, join(dir, "mine-started"));
          assert.ok(await eventually(() => existsSync(join(dir, "mine-started")), 60_000));
          mine.cancel();
          const cancelled = await rejection(mine);
          assert.ok(cancelled instanceof ta.CancelledError);
          assert.equal(cancelled.reason, "cancelled");
          const running = bulk.waitFor.go(gate, join(dir, "started"));
          assert.ok(await eventually(() => existsSync(join(dir, "started")), 60_000));
          node.kill("SIGTERM"); // drains: the call outlives the grace and is cancelled
          const drained = await rejection(running);
          assert.ok(drained instanceof ta.CancelledError, String(drained));
          assert.equal(drained.reason, "drain");
          assert.match(drained.message, /node "n1" is shutting down/);
        });
        assert.equal(await node.cleanExit(), 0);
      } finally {
        await mesh.close({ graceMs: 0 });
        await stop(node);
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
}

test("CancelledError's reason travels on the wire; a reason off the allow-list arrives as a plain cancel", async () => {
  const back = errorFromWire(errorToWire(new ta.CancelledError("embed", "cancelled: node draining", "drain")));
  assert.ok(back instanceof ta.CancelledError);
  assert.equal(back.reason, "drain");
  assert.equal(back.message, 'Op "embed" was cancelled: node draining');
  const forged = errorFromWire({ tag: "CancelledError", message: "x", data: { op: "a", reason: "rm -rf" } });
  assert.equal((forged as ta.CancelledError).reason, "cancelled");
  // a call that had not started when its mesh closed says so too
  const mesh = new ta.Mesh([new ta.MeshNode("a")]);
  const open = gate();
  const slow = ta.op(async function faultSlow(x: number) {
    await open.promise;
    return x;
  });
  const { later } = await mesh.run(() => ({ later: slow.go(slow.go(1)) }));
  const closing = mesh.close();
  const e = await rejection(later);
  open.open();
  await closing;
  assert.ok(e instanceof ta.CancelledError);
  assert.equal(e.reason, "mesh-closed");
});

for (const runtime of RUNTIMES) {
  test(
    `a mesh learns a ${runtime} node's GPUs from its welcome: none declared, GPU services are placed there`,
    T,
    async () => {
      const node = await startNodeProcess(APP, ["--port", "0", "--name", "n1", "--gpus", "2", "--cpus", "3"], {
        runtime,
      });
      const mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: `ws://127.0.0.1:${node.port}` })]);
      try {
        await mesh.run(async () => {
          const [a, b] = [GpuUser.init(), GpuUser.init()];
          const ids = [...await a.gpus.go(), ...await b.gpus.go()].sort();
          assert.deepEqual(ids, [0, 1], "each got one of the node's two GPUs");
          // the node said what it has: the mesh counts it, and refuses what does not fit before sending it
          assert.ok(await eventually(() => mesh.stats().nodes[0].gpus.total === 2, 60_000), "the mesh learned 2 GPUs");
          assert.equal(mesh.stats().nodes[0].gpus.free, 0);
          assert.equal(mesh.stats().nodes[0].cpus.total, 3);
          const e = await rejection((async () => await GpuUser.init().gpus.go())()); // init places it
          assert.ok(e instanceof ta.PlacementError, String(e));
          assert.match(e.message, /needs 1 GPU, the largest free on any node is 0 \(n1\)/);
        });
      } finally {
        await mesh.close({ graceMs: 0 });
        await stop(node);
      }
    },
  );

  test(
    `GPUs a mesh declares are a cap on what a ${runtime} node reports: more than it has is refused clearly`,
    T,
    async () => {
      const node = await startNodeProcess(APP, ["--port", "0", "--name", "n1", "--gpus", "1"], { runtime });
      const mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: `ws://127.0.0.1:${node.port}`, gpus: 3 })]);
      try {
        await mesh.run(async () => {
          assert.deepEqual(await GpuUser.init().gpus.go(), [0]);
          assert.ok(
            await eventually(() => mesh.stats().nodes[0].gpus.total === 1, 60_000),
            "capped at the node's 1 GPU",
          );
          const e = await rejection((async () => await GpuUser.init().gpus.go())()); // init places it
          assert.ok(e instanceof ta.PlacementError, String(e));
          assert.doesNotMatch(e.message, /is taken/);
        });
      } finally {
        await mesh.close({ graceMs: 0 });
        await stop(node);
      }
    },
  );
}
