// bench/tracing.ts's table says which runtime and version measured it (it said only "deno" on Deno).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { runArgs, thisRuntime } from "../adapters/_test_nodes.ts";

test("bench/tracing.ts names the runtime and its version in its title, on Bun and Deno", { timeout: 120_000 }, () => {
  const [bin, argv] = runArgs(thisRuntime(), fileURLToPath(new URL("./tracing.ts", import.meta.url)), []);
  // the shortest run: one process of the "off" mode, 20 ms per benchmark
  const r = spawnSync(bin, argv, {
    encoding: "utf8",
    cwd: fileURLToPath(new URL("..", import.meta.url)),
    env: { ...process.env, REPS: "1", PERIOD_MS: "20", MODES: "off" },
  });
  assert.equal(r.status, 0, r.stderr);
  const title = r.stdout.split("\n").find((l) => l.startsWith("tracing overhead"));
  const expected = thisRuntime() === "bun"
    ? /^tracing overhead, bun \d+\.\d+\.\d+/
    : /^tracing overhead, deno \d+\.\d+\.\d+ \(V8 /;
  assert.match(title ?? r.stdout, expected);
});
