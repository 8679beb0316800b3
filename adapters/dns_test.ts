// Mesh.fromDns against real node processes standing in for the pods of a headless Service: each
// "pod" is `thinkagain serve` on its own loopback address (127.0.0.2, 127.0.0.3, …) and one shared
// port, as pods share a port on their own IPs; an injected resolver plays the cluster's DNS.
import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import * as ta from "../mod.ts";
import { type NodeProcess, startNodeProcess } from "./_test_nodes.ts";
import { eventually, rejection } from "../core/_test_utils.ts";
import { Generator, Solo } from "../examples/distributed_app.ts";
import { webSocketTransport } from "../transports/websocket.ts";
import { encodeMessage } from "../transports/protocol.ts";
import { decode } from "../core/codec.ts";
import { NodeServer } from "../server.ts";
import { serveFrames } from "./serve.ts";

const APP = fileURLToPath(new URL("../examples/distributed_app.ts", import.meta.url));
const T = { timeout: 180_000 };
const TOKEN = "dns-test-token";

/** The cluster's DNS as a test sets it: the addresses the Service's name resolves to now. */
function fakeDns(name: string) {
  let ips: string[] = [];
  const srv: { name: string; port: number }[] = [];
  let asked = 0;
  return {
    set(next: string[]) {
      ips = [...next];
    },
    srv,
    get asked() {
      return asked;
    },
    resolver: {
      resolve4: (host: string) => {
        asked++;
        if (host === name) return Promise.resolve([...ips]);
        const m = /^(pod-\d+)\./.exec(host);
        const i = m === null ? -1 : Number(m[1].slice(4));
        return i >= 0 && ips[i] !== undefined ? Promise.resolve([ips[i]]) : Promise.reject(enotfound(host));
      },
      resolveSrv: (n: string) => (n.startsWith("_") ? Promise.resolve([...srv]) : Promise.reject(enotfound(n))),
    },
  };
}

/** Calls running on a node, as its pong says. */
async function activeCalls(url: string): Promise<number> {
  const conn = await webSocketTransport.connect(url, { token: TOKEN });
  try {
    return (decode(await conn.request(encodeMessage({ t: "ping" }))) as { activeCalls: number }).activeCalls;
  } finally {
    await conn.close();
  }
}

function enotfound(host: string): Error {
  return Object.assign(new Error(`queryA ENOTFOUND ${host}`), { code: "ENOTFOUND" });
}

/** A "pod": a node process named pod-<i> on 127.0.0.<i + 2>, on `port` (0: a free one). */
function startPod(i: number, port: number, runtime: "bun" | "deno", more: string[] = []): Promise<NodeProcess> {
  return startNodeProcess(
    APP,
    ["--host", `127.0.0.${i + 2}`, "--port", String(port), "--name", `pod-${i}`, ...more],
    { runtime, env: { THINKAGAIN_TOKEN: TOKEN } },
  );
}

test(
  "Mesh.fromDns: pods on 127.0.0.x are found, a pod that appears is used, one that vanishes is removed",
  T,
  async () => {
    const dns = fakeDns("thinkagain-test.default.svc.cluster.local");
    const pods: NodeProcess[] = [];
    try {
      pods.push(await startPod(0, 0, "bun"));
      const port = pods[0].port;
      pods.push(await startPod(1, port, "deno"));
      dns.set(["127.0.0.2", "127.0.0.3"]);
      const mesh = await ta.Mesh.fromDns("thinkagain-test.default.svc.cluster.local", {
        port,
        token: TOKEN,
        intervalMs: 50,
        nodes: 2,
        resolver: dns.resolver,
      });
      try {
        assert.deepEqual(mesh.nodes.map((n) => [n.name, n.endpoint]), [
          ["pod-0", `ws://127.0.0.2:${port}`],
          ["pod-1", `ws://127.0.0.3:${port}`],
        ]);
        const solo = await mesh.run(() => Solo.init());
        assert.equal(await mesh.run(() => solo.echo.go("hi")), "hi");

        // a third pod appears in DNS: the mesh welcomes it, and the next init() goes there (fewest instances)
        pods.push(await startPod(2, port, "bun"));
        dns.set(["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
        assert.ok(await eventually(() => mesh.nodes.some((n) => n.name === "pod-2"), 30_000), "pod-2 joined");
        const [placed, handles] = await mesh.run(async () => {
          const onA = Solo.init(); // pod-0 holds one already, so pod-1 and pod-2 come first
          const onB = Solo.init();
          await Promise.all([onA.echo.go(1), onB.echo.go(2)]);
          return [mesh.stats().instances.map((i) => i.node), [solo, onA, onB]] as const;
        });
        assert.deepEqual([...placed].sort(), ["pod-0", "pod-1", "pod-2"], "one instance on each pod, pod-2 too");

        // pod-1 dies (SIGKILL) and leaves DNS: it is removed, and calls of its instance fail with
        // NodeLostError (it has no sibling to fail over to); the others answer
        pods[1].kill("SIGKILL");
        await pods[1].exited;
        dns.set(["127.0.0.2", "127.0.0.4"]);
        assert.ok(await eventually(() => !mesh.nodes.some((n) => n.name === "pod-1"), 30_000), "pod-1 removed");
        assert.deepEqual(mesh.nodes.map((n) => n.name).sort(), ["pod-0", "pod-2"]);
        const outcomes = await mesh.run(() => Promise.all(handles.map((h) => h.echo.go("x").then((v) => v, (e) => e))));
        const lost = outcomes.filter((o) => o instanceof ta.NodeLostError);
        assert.equal(lost.length, 1, `one instance was on pod-1: ${outcomes}`);
        assert.equal(lost[0].node, "pod-1");
        assert.equal(outcomes.filter((o) => o === "x").length, 2);
        // new instances go to live pods only, and work
        const where = await mesh.run(async () => {
          const s = Solo.init();
          await s.echo.go(0);
          return mesh.stats().instances.at(-1)!.node;
        });
        assert.ok(where === "pod-0" || where === "pod-2", `placed on ${where}`);
      } finally {
        await mesh.close();
      }
    } finally {
      for (const p of pods) p.kill("SIGKILL");
    }
  },
);

test(
  "Mesh.fromDns: a pod stopped with SIGTERM drains: its call in flight finishes, nothing new goes there, then it is removed",
  T,
  async () => {
    const dns = fakeDns("drain.test");
    const pods: NodeProcess[] = [];
    try {
      pods.push(await startPod(0, 0, "deno", ["--drain-ms", "600000"]));
      const port = pods[0].port;
      pods.push(await startPod(1, port, "bun", ["--drain-ms", "600000"]));
      dns.set(["127.0.0.2", "127.0.0.3"]);
      const mesh = await ta.Mesh.fromDns("drain.test", {
        port,
        token: TOKEN,
        intervalMs: 50,
        nodes: 2,
        resolver: dns.resolver,
      });
      try {
        // a pod gone from DNS that still answers ready (a DNS hiccup) stays a member
        dns.set(["127.0.0.2"]);
        const before = dns.asked;
        assert.ok(await eventually(() => dns.asked >= before + 5, 30_000));
        assert.deepEqual(mesh.nodes.map((n) => n.name), ["pod-0", "pod-1"]);
        dns.set(["127.0.0.2", "127.0.0.3"]);
        // an instance on pod-1, with a call running there
        const [onPod1, slow] = await mesh.run(async () => {
          const first = Solo.init();
          const second = Solo.init();
          await Promise.all([first.echo.go(0), second.echo.go(0)]);
          const at = mesh.stats().instances.map((i) => i.node);
          const h = at[0] === "pod-1" ? first : second;
          return [h, h.work.go(3_000, 7)] as const;
        });
        assert.ok(await eventually(async () => (await activeCalls(pods[1].url)) === 1, 30_000), "the call runs");
        // a rolling update stops pod-1: it drains, and leaves the Service's records
        pods[1].kill("SIGTERM");
        dns.set(["127.0.0.2"]);
        assert.ok(await eventually(() => mesh.nodes.length === 1, 30_000), "nothing new goes to the draining pod");
        assert.deepEqual(mesh.nodes.map((n) => n.name), ["pod-0"]);
        assert.equal(await slow, 7, "the call in flight finished on the draining pod");
        assert.equal(await pods[1].cleanExit(), 0);
        // once it no longer answers it is gone: its instance's calls fail with NodeLostError saying so
        assert.ok(
          await eventually(async () => {
            const e = await mesh.run(() => rejection(onPod1.echo.go(1)));
            return e instanceof ta.NodeLostError && e.node === "pod-1" && /no longer answers/.test(e.message);
          }, 30_000),
        );
      } finally {
        await mesh.close();
      }
    } finally {
      for (const p of pods) p.kill("SIGKILL");
    }
  },
);

test(
  "Mesh.fromDns: placement knows each pod's GPUs from the start, also of a pod that joins; a refused token fails at once",
  T,
  async () => {
    const dns = fakeDns("gpus.test");
    const pods: NodeProcess[] = [];
    try {
      pods.push(await startPod(0, 0, "bun")); // no GPU
      const port = pods[0].port;
      pods.push(await startPod(1, port, "deno", ["--gpus", "1"]));
      dns.set(["127.0.0.2", "127.0.0.3"]);
      const options = { port, token: TOKEN, intervalMs: 50, nodes: 2, resolver: dns.resolver };
      const mesh = await ta.Mesh.fromDns("gpus.test", options);
      try {
        // at once: the GPU service goes to the pod with the GPU, never to the first pod
        const first = await mesh.run(() => Generator.init().generate.go("q", ["d"]));
        assert.match(first, /^\[pod-1\]/);
        // a pod with 2 GPUs joins: the next GPU instance goes there as soon as it is a member
        pods.push(await startPod(2, port, "bun", ["--gpus", "2"]));
        dns.set(["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
        assert.ok(await eventually(() => mesh.nodes.some((n) => n.name === "pod-2"), 30_000), "pod-2 joined");
        assert.equal(mesh.stats().nodes.find((n) => n.name === "pod-2")!.gpus.total, 2);
        const second = await mesh.run(() => Generator.init().generate.go("q", ["d"]));
        assert.match(second, /^\[pod-2\]/);
      } finally {
        await mesh.close();
      }
      const refused = await rejection(ta.Mesh.fromDns("gpus.test", { ...options, token: "not-the-token" }));
      assert.ok(refused instanceof ta.AuthError, `expected AuthError, got ${refused}`);
    } finally {
      for (const p of pods) p.kill("SIGKILL");
    }
  },
);

test("Mesh.fromDns: SRV records give each pod's own port", T, async () => {
  const dns = fakeDns("unused.test");
  const pods: NodeProcess[] = [];
  try {
    pods.push(await startPod(0, 0, "bun"), await startPod(1, 0, "bun"));
    dns.set(["127.0.0.2", "127.0.0.3"]);
    dns.srv.push({ name: "pod-0.srv.test", port: pods[0].port }, { name: "pod-1.srv.test", port: pods[1].port });
    const mesh = await ta.Mesh.fromDns("_rpc._tcp.srv.test", { token: TOKEN, nodes: 2, resolver: dns.resolver });
    try {
      assert.deepEqual(mesh.nodes.map((n) => n.endpoint), [
        `ws://127.0.0.2:${pods[0].port}`,
        `ws://127.0.0.3:${pods[1].port}`,
      ]);
    } finally {
      await mesh.close();
    }
  } finally {
    for (const p of pods) p.kill("SIGKILL");
  }
});

test(
  "Mesh.fromDns with one name per pool makes one mesh of their pods; a pool with no records adds none",
  T,
  async () => {
    const pods: NodeProcess[] = [];
    try {
      pods.push(await startPod(0, 0, "bun"));
      pods.push(await startPod(1, pods[0].port, "bun"));
      const records: Record<string, string[]> = { "gpu.test": ["127.0.0.2"], "cpu.test": ["127.0.0.3"] };
      const resolver = {
        resolve4: (
          host: string,
        ) => (host in records ? Promise.resolve(records[host]) : Promise.reject(enotfound(host))),
        resolveSrv: (host: string) => Promise.reject(enotfound(host)),
      };
      const mesh = await ta.Mesh.fromDns(["gpu.test", "cpu.test", "scaled-to-zero.test"], {
        port: pods[0].port,
        token: TOKEN,
        nodes: 2,
        resolver,
      });
      try {
        assert.deepEqual(mesh.nodes.map((n) => n.name), ["pod-0", "pod-1"]);
      } finally {
        await mesh.close();
      }
    } finally {
      for (const p of pods) p.kill("SIGKILL");
    }
  },
);

test("Mesh.fromDns refuses bad input and says what the name resolved to when too few nodes answer", T, async () => {
  const dns = fakeDns("x.test");
  await assert.rejects(ta.Mesh.fromDns(""), /needs a DNS name/);
  await assert.rejects(ta.Mesh.fromDns([]), /needs a DNS name \(a headless Service's\) or a list of them, got/);
  await assert.rejects(ta.Mesh.fromDns("x.test", { port: 70000 }), /port must be an integer from 1 to 65535/);
  await assert.rejects(ta.Mesh.fromDns("x.test", { intervalMS: 5 } as never), /intervalMS/);
  await assert.rejects(ta.Mesh.fromDns("x.test", { resolver: {} as never }), /resolver needs resolve4/);
  dns.set(["127.0.0.9"]); // nobody serves there
  // a resolver that never answers (an unreachable cluster DNS) is bounded by timeoutMs too
  const never = () => new Promise<never>(() => {});
  const silent = await rejection(
    ta.Mesh.fromDns("x.test", { resolver: { resolve4: never, resolveSrv: never }, timeoutMs: 100 }),
  );
  assert.match((silent as Error).message, /resolving it failed: no answer from the resolver within 100 ms/);
  const e = await rejection(ta.Mesh.fromDns("x.test", { resolver: dns.resolver, port: 9, timeoutMs: 100 }));
  assert.ok(e instanceof TypeError);
  assert.match(e.message, /found 0 ready nodes at "x\.test" within 100 ms, wanted 1: it resolved to 127\.0\.0\.9:9/);
});

test(
  "Mesh.fromConfig with a dns entry builds the mesh through Mesh.fromDns; bad dns entries name the field",
  T,
  async () => {
    const e = await rejection(ta.Mesh.fromConfig({ token: "t", dns: { name: "nothing.invalid", timeoutMs: 100 } }));
    assert.ok(e instanceof TypeError, `got ${e}`);
    assert.match(e.message, /found 0 ready nodes at "nothing\.invalid" within 100 ms, wanted 1: it has no addresses/);
    await assert.rejects(ta.Mesh.fromConfig({ dns: { name: "a.test", prot: 1 } } as never), /did you mean "port"/);
    await assert.rejects(ta.Mesh.fromConfig({ dns: { port: 1 } } as never), /"dns" needs \{ "name"/);
    await assert.rejects(
      ta.Mesh.fromConfig({ nodes: [{ name: "a" }], dns: { name: "a.test" } }),
      /give one of "nodes", "discover" or "dns"/,
    );
    const core = await import("../core/mesh.ts");
    await assert.rejects(core.Mesh.fromConfig({ dns: { name: "a.test" } }), /needs the Mesh of the package root/);
    // the config's timeoutMs is the mesh's call deadline; the dns entry's, how long to look
    const late = await rejection(
      ta.Mesh.fromConfig({ token: "t", timeoutMs: 60_000, dns: { name: "nothing.invalid", timeoutMs: 100 } }),
    );
    assert.match((late as Error).message, /within 100 ms/);
    let asked: Record<string, unknown> | undefined;
    class Seen extends ta.Mesh {
      static override fromDns(_name: string | readonly string[], o: ta.DnsMeshOptions = {}): Promise<ta.Mesh> {
        asked = { ...o };
        const { timeoutMs: _looked, port: _port, callTimeoutMs, ...meshOptions } = o;
        return Promise.resolve(new this([new ta.MeshNode("seen")], { ...meshOptions, timeoutMs: callTimeoutMs }));
      }
    }
    const seen = await Seen.fromConfig({ timeoutMs: 4_000, dns: { name: "a.test", port: 7070, timeoutMs: 100 } });
    assert.equal(asked?.timeoutMs, 100, "the dns entry's wait");
    assert.equal(asked?.callTimeoutMs, 4_000, "the config's timeoutMs reaches fromDns as its callTimeoutMs");
    assert.equal(core.meshRuntime(seen).options.timeoutMs, 4_000, "the mesh's call deadline");
    await seen.close();
  },
);

test("Mesh.fromDns: callTimeoutMs is the mesh's call deadline, timeoutMs how long to look", T, async () => {
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  const Waits = ta.service(
    class DnsDeadlineWaits {
      async wait() {
        await gate;
        return "late";
      }
    },
  );
  const node = new NodeServer({ name: "pod-deadline" });
  const served = await serveFrames(node.handler, { hostname: "127.0.0.2", port: 0, health: () => node.health() });
  const resolver = { resolve4: () => Promise.resolve(["127.0.0.2"]), resolveSrv: () => Promise.resolve([]) };
  try {
    await assert.rejects(
      ta.Mesh.fromDns("deadline.test", { port: served.port, resolver, callTimeoutMs: 0 }),
      /Mesh\.fromDns: callTimeoutMs must be a positive number/,
    );
    await using mesh = await ta.Mesh.fromDns("deadline.test", {
      port: served.port,
      resolver,
      timeoutMs: 20_000,
      callTimeoutMs: 50,
    });
    assert.equal(mesh.options.timeoutMs, 50);
    const e = await rejection(mesh.run(() => Waits.init().wait.go()));
    assert.ok(e instanceof ta.TimeoutError, `got ${e}`);
  } finally {
    open();
    await served.close();
    await node.drain();
  }
});
