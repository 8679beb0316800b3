#!/usr/bin/env bash
# npm test, the fast step: static checks, then the unit tests (the test files that start no process)
# and the doc tests under bun test and deno test. The test files that start processes (nodes,
# nats-server, chromium, kubectl, a runtime) and the WebGPU tests are the integration step,
# .ci/test_integration.sh (npm run test:integration); .ci/run runs both. tools/test_groups.ts sorts
# the files by what they import, and this step's Deno run may not start a process (--deny-run), so
# a test that starts one fails here, naming itself, if the sorting ever misses it (spawn and
# Deno.Command throw NotCapable; spawnSync returns no exit status).
# Every stage runs even when an earlier one fails; the exit code is non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"
status=0
echo "== tsc --noEmit"
tsc --noEmit -p tsconfig.json || status=1
echo "== deno lint, deno fmt --check"
deno lint --quiet || status=1
deno fmt --check --quiet || status=1
echo "== deno publish --dry-run (JSR slow types)"
deno publish --dry-run --allow-dirty --quiet || status=1
echo "== import graph (no cycles; adapters → transports → core; no runtime API in core/ or transports/)"
bun tools/check_imports.ts || status=1
# shellcheck source=.ci/test_groups.sh
source .ci/test_groups.sh # unit_tests, integration_tests, GPU_TESTS (or exit 1)
# Bun gives a test without its own timeout 5 s (bunfig.toml's [test] timeout is not read by Bun
# 1.4.5): on a machine with every core busy a unit test took 5.3 s once; --timeout makes it 60 s
# Both runners take test files in parallel, one worker per core (bun --parallel and deno --parallel;
# each file in its own global, so files cannot see each other's leftovers); tests that serve bind
# port 0, so files running at once never share a port. bun test and deno test run at the same time:
# each spends much of its run on a few long tests while its other worker is idle, and the other
# runner fills that time (tests pass with every core busy). deno's output is shown when both end.
# deno_test: deno test, where a crash fails the run even after a passing summary (see the file)
# shellcheck source=.ci/deno_test.sh
source .ci/deno_test.sh
deno_log=$(mktemp)
# deno finds the test files itself (and the doc tests of every module); the integration files and
# the WebGPU tests are left out
ignore=$(IFS=,; echo "$GPU_TESTS,${integration_tests[*]}")
deno_test -A --deny-run --doc --parallel --permit-no-files --v8-flags=--expose-gc --ignore="$ignore" \
  >"$deno_log" 2>&1 &
deno_pid=$!
echo "== bun test (unit: ${#unit_tests[@]} files; deno test runs beside it)"
bun test --timeout 60000 --parallel "${unit_tests[@]/#/./}" || status=1
echo "== deno test (unit and doc tests)"
wait "$deno_pid" || status=1
cat "$deno_log"
rm -f "$deno_log"
exit $status
