# deno_test ARGS…: `deno test ARGS…`, its output shown as it comes, and its exit code as it is.
# Sourced by .ci/test.sh (and by tools/ci_test.ts, which checks this behaviour).
#
# A crash is a failure, also after the runner reported every test passed: an abort at teardown
# (exit 134, SIGABRT) fails CI like any other exit. Deno with WebGPU on the software adapter
# (llvmpipe) was seen aborting at teardown ("corrupted size vs. prev_size", about 1 run in 6 on
# Deno 2.x in November 2026; 0 in 16 runs on Deno 2.9.6 in December): when a run crashes, what
# Deno printed after its summary is shown, so the crash can be told apart from a failing test and
# reported upstream; the WebGPU tests run in a step of their own. On 2026-12-05, in ten full-suite
# runs with both cores busy, Deno aborted three times after reporting every test passed: the WebGPU
# step once ("corrupted size vs. prev_size in fastbins") and the unit step twice, which has no WebGPU
# (`--parallel --v8-flags=--expose-gc`; "double free or corruption (out)"): not isolated yet (the
# files new that day, run alone 8-15 times each, did not abort). On 2026-12-05 later, at 57c3cb5, none
# in 16 runs of the unit step (8 alone, 8 beside bun's unit step at load 10-15) and none in five
# full-suite runs with both cores busy: still not explained, so a crash still fails the run.
# Cause of the WebGPU step's abort, found on 2026-12-05 (Deno 2.9.6, Debian Mesa 22.3 llvmpipe; no
# Vulkan ICD is installed, so Deno's wgpu runs on its GL backend through libglvnd's libEGL): five
# core dumps all show the main thread in exit() -> _dl_fini running libEGL.so.1's destructor (it
# frees EGL per-thread state) while another Deno thread is still exiting (glibc
# freeing its thread-specific data / tcache): a race between Deno's exit and libglvnd, after every
# test passed, not a failing test. Counts that day (CI's command unless said): test files alone
# 0/20, doc snippets alone 0/20, standalone 30-module and 1-module files (adapter + device) 0/20 and
# 0/300; whole step 1/25, then interleaved A/B with both cores busy: main 4/64, with every test and
# doc snippet destroying its devices (releaseGpuDevices) 1/64, same backtrace: releasing devices
# does not fix it. Not fixed; no test-side change found that avoids it. The unit step's "double
# free or corruption (out)" may be the same race if a unit test reached WebGPU (cli.ts imports
# adapters/webgpu for --gpus auto): unconfirmed. What avoids it (2026-12-05, 23:35-23:42 UTC): with
# Mesa's Vulkan drivers installed (mesa-vulkan-drivers, lavapipe) Deno still loads libEGL (its
# default backends include GL) and aborted 1 of 2 runs; with DENO_WEBGPU_BACKEND=vulkan as well,
# libEGL is not loaded (/proc/self/maps) and the WebGPU step passed 24 of 24 runs with no abort (54
# passed each, on lavapipe), and 20 of 20 more after a clean-clone CI run. .ci/run installs the drivers and sets the variable; a crash still fails.
# `npm test` and `npm run test:integration` on a machine of one's own: where Mesa's Vulkan driver
# (lavapipe) is installed and no backend was chosen, Deno's WebGPU uses it, as under .ci/run, and
# not libEGL (the unit step's doc tests reach WebGPU too: without this, a developer's `npm test`
# could abort at exit the way described above).
if [ -z "${DENO_WEBGPU_BACKEND:-}" ] && ls /usr/share/vulkan/icd.d/lvp_icd.*.json >/dev/null 2>&1; then
  export DENO_WEBGPU_BACKEND=vulkan
fi
deno_test() {
  local out rc plain
  out=$(mktemp)
  deno test "$@" 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  if [ "$rc" -ge 128 ]; then
    plain=$(sed 's/\x1b\[[0-9;]*m//g' "$out")
    if grep -qE '^ok \| [0-9]+ passed.* 0 failed' <<<"$plain"; then
      echo "error: deno crashed (exit $rc, signal $((rc - 128))) after reporting every test passed;" \
        "a crash at teardown fails the run. What it printed after its summary:"
      sed -n '/^ok | [0-9]* passed/,$p' <<<"$plain" | tail -n +2 | head -n 40 | sed 's/^/  | /'
    else
      echo "error: deno crashed (exit $rc, signal $((rc - 128))) before reporting its summary"
    fi
  fi
  rm -f "$out"
  return "$rc"
}
