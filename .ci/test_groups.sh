# Sourced by .ci/test.sh and .ci/test_integration.sh: the two groups of test files
# (tools/test_groups.ts), as bash arrays unit_tests and integration_tests, and the WebGPU tests
# (GPU_TESTS, comma-separated), which run in a Deno process of their own in the integration step and
# in bun's unit run (where they skip: bun has no WebGPU). Exits 1 when a group cannot be had: an
# empty list would make a runner take every file.
# shellcheck disable=SC2034 # the arrays are for the scripts that source this file
GPU_TESTS="adapters/webgpu,examples/gpu_retrieval_test.ts,examples/gpu_retrieval.ts"
if ! groups_out=$(bun tools/test_groups.ts unit) || [ -z "$groups_out" ]; then
  echo "error: tools/test_groups.ts listed no unit tests"
  exit 1
fi
mapfile -t unit_tests <<<"$groups_out"
if ! groups_out=$(bun tools/test_groups.ts integration) || [ -z "$groups_out" ]; then
  echo "error: tools/test_groups.ts listed no integration tests"
  exit 1
fi
mapfile -t integration_tests <<<"$groups_out"
unset groups_out
