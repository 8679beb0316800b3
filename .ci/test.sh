#!/usr/bin/env bash
# The one test command (npm test): type-check, then the whole suite under bun test and deno test.
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
# Both runners take test files in parallel, one worker per core (bun --parallel and deno --parallel;
# each file in its own global, so files cannot see each other's leftovers); tests that start nodes
# bind port 0, so files running at once never share a port.
echo "== bun test"
bun test --parallel || status=1
# deno_test: deno test, where a crash fails the run even after a passing summary (see the file)
# shellcheck source=.ci/deno_test.sh
source .ci/deno_test.sh # (the working directory is the repository root)
# The WebGPU tests (llvmpipe) run in a process of their own: a crash there names its step.
GPU_TESTS="adapters/webgpu,examples/gpu_retrieval_test.ts,examples/gpu_retrieval.ts"
echo "== deno test"
deno_test -A --doc --parallel --permit-no-files --v8-flags=--expose-gc --ignore="$GPU_TESTS" || status=1
echo "== deno test (WebGPU)"
deno_test -A --doc --permit-no-files adapters/webgpu examples/gpu_retrieval_test.ts examples/gpu_retrieval.ts || status=1
exit $status
