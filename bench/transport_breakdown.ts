/**
 * Where a sequential service call's time goes over one WebSocket, beside a raw hono WebSocket echo
 * in the same run: each process stamps its WebSocket messages in and out (an absolute clock,
 * `performance.timeOrigin + performance.now()`, shared by processes on one machine) and the driver
 * stamps each call's start and end, so each call splits into: the driver before its message leaves,
 * the way to the node, the node from message in to reply out, the way back, and the driver after
 * the reply came in. Medians of 3,000 calls, each after 1,000 warm-up calls.
 *
 *   npx deno run -A bench/transport_breakdown.ts
 *
 * Deno only for the node's part (its server sockets are `WebSocket`s, whose `send` and `onmessage`
 * are stamped here; Bun's server sockets are not): on Bun the node's columns stay empty. A
 * diagnostic: the stamps cost a little themselves; the figures to compare are `bench/transport.ts`'s.
 *
 * @module
 */
import process from "node:process";
import { serveFrames } from "../adapters/serve.ts";
import * as ta from "../mod.ts";
import { NodeServer } from "../server.ts";
import { startBenchChild } from "./_child.ts";
import { serveRawEcho } from "./_raw_echo.ts";

const CALLS = Number(process.env.BENCH_SEQ ?? 3000);
const WARM_UP = 1000;

const BreakdownEcho = ta.service(
  { name: "BreakdownEcho" },
  class BreakdownEcho {
    echo<T>(x: T): T {
      return x;
    }
  },
);

/** Absolute µs, comparable between processes on one machine. */
function stamp(): number {
  return (performance.timeOrigin + performance.now()) * 1000;
}

/** Stamps every WebSocket message this process receives (`ins`) and sends (`outs`). */
function stampWebSockets(): { ins: number[]; outs: number[] } {
  const ins: number[] = [], outs: number[] = [];
  const proto = WebSocket.prototype as unknown as {
    send(data: unknown): void;
    addEventListener(type: string, f: (e: unknown) => void): void;
  };
  const send = proto.send;
  proto.send = function (this: WebSocket, data: unknown) {
    outs.push(stamp());
    return send.call(this, data);
  };
  const handlers = new WeakMap<object, ((e: unknown) => void) | null>();
  Object.defineProperty(proto, "onmessage", {
    configurable: true,
    get(this: object) {
      return handlers.get(this) ?? null;
    },
    set(this: WebSocket, f: ((e: unknown) => void) | null) {
      if (!handlers.has(this)) {
        this.addEventListener("message", (e) => {
          ins.push(stamp());
          handlers.get(this)?.(e);
        });
      }
      handlers.set(this, f);
    },
  });
  return { ins, outs };
}

function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function runServer(kind: string): Promise<void> {
  const stamps = stampWebSockets();
  // told to stop, it prints its stamps as one JSON line first
  process.on("SIGTERM", () => {
    console.log(`STAMPS ${JSON.stringify(stamps)}`);
    process.exit(0);
  });
  if (kind === "node") {
    const node = new NodeServer({ name: "breakdown" });
    const served = await serveFrames(node.handler, { port: 0 });
    console.log(`PORT ${served.port}`);
  } else {
    await serveRawEcho();
  }
}

/** Stops the child, which prints its stamps on its way out. */
function childStamps(
  child: Awaited<ReturnType<typeof startBenchChild>>["child"],
): Promise<{ ins: number[]; outs: number[] }> {
  return new Promise((resolve) => {
    let out = "";
    child.stdout!.on("data", (d: Uint8Array) => {
      out += new TextDecoder().decode(d);
      const m = /STAMPS (.*)\n/.exec(out);
      if (m) resolve(JSON.parse(m[1]));
    });
    child.kill("SIGTERM");
  });
}

interface Run {
  go: number[];
  end: number[];
  outs: number[];
  ins: number[];
}

async function runClient(): Promise<void> {
  const stamps = stampWebSockets();
  const measure = async (call: () => PromiseLike<unknown>): Promise<Run> => {
    for (let i = 0; i < WARM_UP; i++) await call();
    const i0 = stamps.ins.length, o0 = stamps.outs.length;
    const go: number[] = [], end: number[] = [];
    for (let i = 0; i < CALLS; i++) {
      go.push(stamp());
      await call();
      end.push(stamp());
    }
    return { go, end, outs: stamps.outs.slice(o0, o0 + CALLS), ins: stamps.ins.slice(i0, i0 + CALLS) };
  };
  const node = await startBenchChild(import.meta.url, "node", [], { node: true });
  const raw = await startBenchChild(import.meta.url, "raw");
  const runs: Record<string, Run> = {};
  try {
    await using mesh = new ta.Mesh([
      new ta.MeshNode("breakdown", { endpoint: `ws://127.0.0.1:${node.port}` }),
    ]);
    const echo = await mesh.run(async () => {
      const e = BreakdownEcho.init();
      await e.echo.go(0);
      return [e];
    });
    const ws = new WebSocket(`ws://127.0.0.1:${raw.port}/ws`);
    ws.binaryType = "arraybuffer";
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = reject;
    });
    let pending: (() => void) | undefined;
    ws.onmessage = () => {
      const p = pending!;
      pending = undefined;
      p();
    };
    const bytes = new Uint8Array(64);
    // ours, raw, ours, raw: the second of each is kept
    for (let round = 0; round < 2; round++) {
      runs.ours = await mesh.run(() => measure(() => echo[0].echo.go("What is ML?")));
      runs.raw = await measure(() =>
        new Promise<void>((resolve) => {
          pending = resolve;
          ws.send(bytes);
        })
      );
    }
    ws.close();
    const rows: string[] = [];
    for (const [name, child] of [["thinkagain", node], ["raw hono echo", raw]] as const) {
      const r = runs[name === "thinkagain" ? "ours" : "raw"];
      const server = await childStamps(child.child);
      const from = r.go[0], to = r.end[CALLS - 1];
      const sIn = server.ins.filter((t) => t >= from && t <= to);
      const sOut = server.outs.filter((t) => t >= from && t <= to);
      const before: number[] = [], after: number[] = [], total: number[] = [];
      const there: number[] = [], inNode: number[] = [], back: number[] = [];
      for (let i = 0; i < CALLS; i++) {
        before.push(r.outs[i] - r.go[i]);
        after.push(r.end[i] - r.ins[i]);
        total.push(r.end[i] - r.go[i]);
        if (i < sIn.length && i < sOut.length) {
          there.push(sIn[i] - r.outs[i]);
          inNode.push(sOut[i] - sIn[i]);
          back.push(r.ins[i] - sOut[i]);
        }
      }
      const f = (v: number[]) => (Number.isNaN(median(v)) ? "" : median(v).toFixed(1));
      rows.push(
        `| ${name} | ${f(total)} | ${f(before)} | ${f(there)} | ${f(inNode)} | ${f(back)} | ${f(after)} |`,
      );
    }
    const g = globalThis as { Bun?: { version: string }; Deno?: { version: { deno: string } } };
    const runtime = g.Bun ? `bun ${g.Bun.version}` : g.Deno ? `deno ${g.Deno.version.deno}` : process.version;
    console.log(`\nsequential call over one WebSocket, medians of ${CALLS} calls, µs — ${runtime}\n`);
    console.log(
      "| | call | driver, before the message leaves | to the node | node: message in → reply out | back | driver, reply in → await resumes |",
    );
    console.log("|---|---:|---:|---:|---:|---:|---:|");
    for (const row of rows) console.log(row);
  } finally {
    node.child.kill("SIGTERM");
    raw.child.kill("SIGTERM");
  }
  process.exit(0);
}

const args = process.argv.slice(2);
if (args[0] === "--server") await runServer(args[1]);
else await runClient();
