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
echo "== bun test"
bun test || status=1
# Deno with WebGPU on the software adapter (llvmpipe) sometimes aborts while the process tears down,
# after the runner has reported every test passed ("corrupted size vs. prev_size", exit 134; about
# 1 run in 6, not reproducible with a small program). deno_test treats exactly that case, an abort
# after an "ok | … 0 failed" summary, as the pass the runner reported, and says so; any failed
# test, any other exit code, or an abort before the summary still fails. The WebGPU tests run in
# their own process so the rest of the suite never meets it.
deno_test() {
  local out rc
  out=$(mktemp)
  deno test "$@" 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  if [ "$rc" -eq 134 ] && sed 's/\x1b\[[0-9;]*m//g' "$out" | grep -qE '^ok \| [0-9]+ passed.* 0 failed'; then
    echo "note: deno aborted during teardown (exit 134) after reporting all tests passed: the known llvmpipe exit crash"
    rc=0
  fi
  rm -f "$out"
  return "$rc"
}
GPU_TESTS="adapters/webgpu,examples/gpu_retrieval_test.ts,examples/gpu_retrieval.ts"
echo "== deno test"
deno_test -A --doc --permit-no-files --v8-flags=--expose-gc --ignore="$GPU_TESTS" || status=1
echo "== deno test (WebGPU)"
deno_test -A --doc --permit-no-files adapters/webgpu examples/gpu_retrieval_test.ts examples/gpu_retrieval.ts || status=1
exit $status
