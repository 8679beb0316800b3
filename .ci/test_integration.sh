#!/usr/bin/env bash
# npm run test:integration: the test files that start processes (nodes, nats-server, chromium,
# kubectl, a runtime; tools/test_groups.ts finds them by what they import) under bun test and deno
# test, then the WebGPU tests (llvmpipe) in a Deno process of their own, so a crash there names its
# step. The rest of the suite is npm test (.ci/test.sh); .ci/run runs both.
# Every stage runs even when an earlier one fails; the exit code is non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"
status=0
# shellcheck source=.ci/test_groups.sh
source .ci/test_groups.sh # unit_tests, integration_tests, GPU_TESTS (or exit 1)
# files run in parallel, one worker per core; the nodes they start bind port 0
echo "== bun test (integration: ${#integration_tests[@]} files)"
bun test --timeout 60000 --parallel "${integration_tests[@]/#/./}" || status=1
# shellcheck source=.ci/deno_test.sh
source .ci/deno_test.sh # deno_test: a crash fails the run even after a passing summary
echo "== deno test (integration: ${#integration_tests[@]} files)"
deno_test -A --parallel --v8-flags=--expose-gc "${integration_tests[@]}" || status=1
echo "== deno test (WebGPU)"
IFS=, read -ra gpu_tests <<<"$GPU_TESTS"
deno_test -A --doc --permit-no-files "${gpu_tests[@]}" || status=1
exit $status
