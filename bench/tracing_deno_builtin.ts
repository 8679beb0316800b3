// Tracing overhead with Deno's built-in OpenTelemetry (`OTEL_DENO=true`, no SDK): fanout of 10k
// no-op ops with tracing off, with every task traced, and with `sampleRatio` 1 % and 0.1 %, modes
// alternating within each round (each mode: one untimed run after the switch, two timed), medians of
// 15 rounds; spans go over OTLP/HTTP protobuf to a local
// receiver in another process. Deno only (on Bun it says so and exits).
// Run: deno run -A --v8-flags=--expose-gc bench/tracing_deno_builtin.ts
import process from "node:process";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import * as ta from "../mod.ts";

const N = 10_000;
const ROUNDS = 15;
const deno = (globalThis as { Deno?: { execPath(): string; args: string[] } }).Deno;

if (deno === undefined) {
  console.log("bench/tracing_deno_builtin.ts measures Deno's built-in OpenTelemetry: run it with deno");
} else if (process.env.OTEL_DENO !== "true") {
  // the parent: a receiver, then this file again with Deno's exporter pointed at it
  const root = fileURLToPath(new URL("..", import.meta.url));
  const sink = spawn(deno.execPath(), ["run", "-A", "--no-check", "bench/_otlp_sink.ts"], {
    cwd: root,
    stdio: ["pipe", "pipe", "inherit"],
  });
  let out = "";
  sink.stdout!.on("data", (d: Uint8Array) => (out += new TextDecoder().decode(d)));
  while (!out.includes("\n")) await new Promise((r) => setTimeout(r, 10));
  const endpoint = out.split("\n")[0];
  const child = spawn(deno.execPath(), ["run", "-A", "--v8-flags=--expose-gc", fileURLToPath(import.meta.url)], {
    cwd: root,
    stdio: "inherit",
    env: {
      ...process.env,
      OTEL_DENO: "true",
      OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
      OTEL_SERVICE_NAME: "bench",
    },
  });
  const code = await new Promise<number>((r) => child.on("exit", (c) => r(c ?? 1)));
  sink.stdin!.end();
  await new Promise((r) => sink.on("exit", r));
  console.log(`receiver got ${out.split("\n").find((l) => l.startsWith("spans "))?.slice(6)} spans`);
  process.exit(code);
} else {
  const noop = ta.op(async function noop(x: number) {
    return x;
  });
  const fanout = async () => {
    const t = performance.now();
    const refs = new Array(N);
    for (let i = 0; i < N; i++) refs[i] = noop.go(i);
    await Promise.all(refs);
    return performance.now() - t;
  };
  const gc = (globalThis as { gc?: () => void }).gc;
  // every task traced goes last, and its export gets time to finish before the next round (Deno's
  // exporter has no flush to call), so its spans are not exported during another mode's timing
  const modes: Array<[string, () => void]> = [
    ["off", () => ta.disableTracing()],
    ["sampleRatio 0.1%", () => ta.enableTracing({ sampleRatio: 0.001 })],
    ["sampleRatio 1%", () => ta.enableTracing({ sampleRatio: 0.01 })],
    ["every task traced", () => ta.enableTracing()],
  ];
  const times = new Map<string, number[]>(modes.map(([m]) => [m, []]));
  for (let round = 0; round <= ROUNDS; round++) {
    ta.disableTracing();
    await fanout(); // after the pause, one untimed run, so the first timed mode does not start cold
    for (const [mode, set] of modes) {
      set();
      await fanout(); // the first run after a switch pays for the switch (deopts): not timed
      for (let k = 0; k < 2; k++) {
        gc?.();
        const t = await fanout();
        if (round > 0) times.get(mode)!.push(t);
      }
    }
    ta.disableTracing();
    await new Promise((r) => setTimeout(r, 1_000));
  }
  ta.disableTracing();
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  const off = median(times.get("off")!);
  console.log(`tracing overhead with Deno's built-in OpenTelemetry (OTEL_DENO=true), N=${N}, ${ROUNDS} rounds`);
  console.log("| benchmark | mode | median ms | µs per task | vs off |");
  console.log("| --- | --- | ---: | ---: | ---: |");
  for (const [mode] of modes) {
    const m = median(times.get(mode)!);
    console.log(`| fanout | ${mode} | ${m.toFixed(2)} | ${(m / N * 1000).toFixed(2)} | ${(off / m).toFixed(3)} |`);
  }
}
