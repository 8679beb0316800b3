// .ci/deno_test.sh: a Deno run that crashes fails CI, also after it reported every test passed.
// A stand-in `deno` on PATH plays each outcome.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
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
