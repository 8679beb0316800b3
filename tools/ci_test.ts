// .ci/deno_test.sh: a Deno run that crashes fails CI, also after it reported every test passed.
// A stand-in `deno` on PATH plays each outcome.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** Runs deno_test with a `deno` that runs `body` (a shell script); its exit code and output. */
function deno_test(body: string): { status: number | null; out: string } {
  const dir = mkdtempSync(join(tmpdir(), "ta-ci-"));
  try {
    const fake = join(dir, "deno");
    writeFileSync(fake, `#!/usr/bin/env bash\n${body}\n`);
    chmodSync(fake, 0o755);
    const r = spawnSync("bash", ["-c", "source .ci/deno_test.sh; deno_test -A"], {
      cwd: ROOT,
      encoding: "utf8",
      env: { ...process.env, PATH: `${dir}:${process.env.PATH}` },
    });
    return { status: r.status, out: r.stdout + r.stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("a Deno abort after a passing summary fails CI, and what Deno printed after it is shown", () => {
  const r = deno_test(
    'echo "ok | 12 passed | 0 failed (3s)"; echo "corrupted size vs. prev_size" >&2; kill -ABRT $$',
  );
  assert.equal(r.status, 134);
  assert.match(r.out, /deno crashed \(exit 134, signal 6\) after reporting every test passed/);
  assert.match(r.out, / {2}\| corrupted size vs\. prev_size/);
});

test("a Deno abort before its summary fails CI", () => {
  const r = deno_test('echo "running 3 tests"; kill -ABRT $$');
  assert.equal(r.status, 134);
  assert.match(r.out, /deno crashed \(exit 134, signal 6\) before reporting its summary/);
});

test("deno_test passes deno's own exit code through: 0 for a pass, 1 for failed tests", () => {
  const pass = deno_test('echo "ok | 3 passed | 0 failed (1s)"; exit 0');
  assert.equal(pass.status, 0);
  assert.doesNotMatch(pass.out, /crashed/);
  const fail = deno_test('echo "FAILED | 2 passed | 1 failed (1s)"; exit 1');
  assert.equal(fail.status, 1);
  assert.doesNotMatch(fail.out, /crashed/);
});

/** Runs .ci/sum_results.sh on `log` with the steps' exit code `rc`; its exit code and output. */
function sumResults(log: string, rc: number): { status: number | null; out: string } {
  const dir = mkdtempSync(join(tmpdir(), "ta-ci-"));
  try {
    writeFileSync(join(dir, "log"), log);
    const r = spawnSync("bash", [".ci/sum_results.sh", join(dir, "log"), String(rc)], { cwd: ROOT, encoding: "utf8" });
    return { status: r.status, out: r.stdout + r.stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// what both steps print: bun's and deno's summaries of the unit step, then of the integration step
const BOTH_STEPS = [
  "== bun test (unit: 52 files)",
  " 323 pass",
  " 28 skip",
  " 0 fail",
  "\x1b[0m\x1b[32mok\x1b[0m | 555 passed (48 steps) | 0 failed | 0 ignored (1 step) \x1b[0m\x1b[38;5;245m(2m45s)\x1b[0m",
  "== bun test (integration: 35 files)",
  " 210 pass",
  " 2 fail",
  "FAILED | 180 passed | 1 failed (1m2s)",
  "ok | 52 passed | 0 failed | 2 ignored (9s)",
].join("\n");

test(".ci/run's last line sums bun's and deno's summaries over both steps", () => {
  const r = sumResults(BOTH_STEPS, 1);
  assert.equal(r.status, 1);
  assert.match(r.out, /^bun: 533 passed, 2 failed; deno: 787 passed, 1 failed$/m);
  assert.match(r.out, /\n1320 passed, 3 failed\n$/);
});

test(".ci/run counts a failure when a step failed with every test passed (a crash, a static check)", () => {
  const passing = BOTH_STEPS.replace(" 2 fail", " 0 fail").replace(
    "FAILED | 180 passed | 1 failed",
    "ok | 180 passed | 0 failed",
  );
  const ok = sumResults(passing, 0);
  assert.equal(ok.status, 0);
  assert.match(ok.out, /\n1320 passed, 0 failed\n$/);
  const crashed = sumResults(passing, 134);
  assert.equal(crashed.status, 134);
  assert.match(crashed.out, /\n1320 passed, 1 failed\n$/);
});

test("every CI script parses (bash -n), .ci/run installs what the integration tests start, bun test gets a timeout", () => {
  for (
    const script of [
      ".ci/run",
      ".ci/test.sh",
      ".ci/test_integration.sh",
      ".ci/sum_results.sh",
      ".ci/deno_test.sh",
      ".ci/test_groups.sh",
    ]
  ) {
    const r = spawnSync("bash", ["-n", script], { cwd: ROOT, encoding: "utf8" });
    assert.equal(r.status, 0, `${script} does not parse: ${r.stderr}`);
  }
  const run = readFileSync(join(ROOT, ".ci/run"), "utf8");
  for (const pkg of ["chromium", "nats-server", "kubectl"]) {
    assert.match(run, new RegExp(`apt-get install -y -q ${pkg}`), `.ci/run no longer installs ${pkg}`);
  }
  // Bun's own per-test default is 5 s and it reads no timeout from bunfig.toml: every bun test
  // the CI runs gives one (a unit test took 5.3 s once with every core busy)
  for (const script of [".ci/test.sh", ".ci/test_integration.sh"]) {
    const runs = readFileSync(join(ROOT, script), "utf8").split("\n").filter((l) => /^\s*bun test\b/.test(l));
    assert.ok(runs.length > 0, `${script} runs no bun test`);
    for (const line of runs) assert.match(line, /--timeout \d{5,}/, `${script}: bun test without --timeout: ${line}`);
  }
  // both steps run, in order, into the log that is summed
  assert.match(
    run,
    /npm test 2>&1 \| tee "\$log"[\s\S]*npm run test:integration 2>&1 \| tee -a "\$log"[\s\S]*sum_results\.sh "\$log"/,
  );
});
