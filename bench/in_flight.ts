/**
 * Service calls over one WebSocket with 512 in flight, the driver on this runtime and the node on
 * the one `--node` names (`bun` or `deno`; default this one): which end of a pair of runtimes limits
 * the throughput. `bench/transport.ts` measures the same-runtime pairs beside a raw echo; this adds
 * the mixed ones, and each process's CPU per call (all threads, Linux schedstat).
 *
 *   npx bun bench/in_flight.ts --node deno
 *   npx deno run -A bench/in_flight.ts --node bun
 *
 * Prints calls/s for each of `BENCH_ROUNDS` (default 6) rounds of `BENCH_CALLS` (default 50,000)
 * calls, after one unmeasured round, and their median. The other runtime is started from this
 * repository's `node_modules/.bin` (`startBenchChild`). Timing claims live in BENCHMARKS.md, never in tests.
 *
 * @module
 */
import process from "node:process";
import { serveFrames } from "../adapters/serve.ts";
import * as ta from "../mod.ts";
import { NodeServer } from "../server.ts";
import { startBenchChild } from "./_child.ts";
import { processCpuMicros } from "./_proc.ts";

const InFlightEcho = ta.service(
  { name: "InFlightEcho", maxConcurrency: 1024 },
  class InFlightEcho {
    echo<T>(x: T): T {
      return x;
    }
  },
);
const IN_FLIGHT = 512;
const CALLS = Number(process.env.BENCH_CALLS ?? 50_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 6);
const self: "bun" | "deno" = "Bun" in globalThis ? "bun" : "deno";
const argv = process.argv.slice(2);

/** `CALLS` calls of `call`, at most `IN_FLIGHT` at a time; resolves when every one has answered. */
function flood(call: () => PromiseLike<unknown>): Promise<void> {
  return new Promise((resolve, reject) => {
    let sent = 0, answered = 0;
    const more = (): void => {
      while (sent - answered < IN_FLIGHT && sent < CALLS) {
        sent++;
        call().then(() => {
          if (++answered === CALLS) resolve();
          else more();
        }, reject);
      }
    };
    more();
  });
}

async function driver(): Promise<void> {
  const i = argv.indexOf("--node");
  const runtime = (i >= 0 ? argv[i + 1] : self) as "bun" | "deno";
  if (runtime !== "bun" && runtime !== "deno") throw new TypeError(`--node: expected bun or deno, got ${runtime}`);
  const { child, port } = await startBenchChild(import.meta.url, "node", [], { node: true, runtime });
  const mesh = new ta.Mesh([new ta.MeshNode("in-flight", { endpoint: `http://127.0.0.1:${port}` })], {
    transport: "websocket",
  });
  const rates: number[] = [];
  let driverCpu = 0, nodeCpu = 0;
  try {
    await mesh.run(async () => {
      const e = InFlightEcho.init();
      const call = () => e.echo.go("What is ML?");
      await flood(call); // warm-up, not measured
      for (let r = 0; r < ROUNDS; r++) {
        const c0 = processCpuMicros(process.pid), n0 = processCpuMicros(child.pid!);
        const t0 = performance.now();
        await flood(call);
        rates.push(CALLS / ((performance.now() - t0) / 1000));
        driverCpu += processCpuMicros(process.pid) - c0;
        nodeCpu += processCpuMicros(child.pid!) - n0;
      }
    });
  } finally {
    await mesh.close();
    child.kill("SIGTERM");
  }
  const sorted = [...rates].sort((a, b) => a - b);
  const k = (x: number) => `${(x / 1000).toFixed(1)}k`;
  console.log(
    `driver ${self} → node ${runtime}, ${IN_FLIGHT} in flight: calls/s ${rates.map(k).join(", ")}; median ` +
      `${k(sorted[sorted.length >> 1])}; CPU per call: driver ${(driverCpu / (CALLS * ROUNDS)).toFixed(1)} µs, ` +
      `node ${(nodeCpu / (CALLS * ROUNDS)).toFixed(1)} µs`,
  );
  process.exit(0);
}

if (argv[0] === "--server") {
  const served = await serveFrames(new NodeServer({ name: "in-flight" }).handler, { port: 0 });
  console.log(`PORT ${served.port}`);
} else await driver();
