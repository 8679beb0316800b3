#!/usr/bin/env bash
# sum_results.sh LOG RC: the one plain "N passed, N failed" line of .ci/run, summed over every bun test
# and deno test summary in LOG (the output of both steps); RC is the steps' exit code, and a non-zero
# one with no failed test counted (a crash, a failed static check) counts as one failure. Exits RC.
# (tools/ci_test.ts checks it.)
set -uo pipefail
log=$1
rc=$2
plain=$(sed 's/\x1b\[[0-9;]*m//g' "$log")
# bun: " 42 pass" / " 0 fail"; deno: "ok | 42 passed | 0 failed" or "FAILED | 40 passed | 2 failed"
bun_pass=$(grep -E '^ *[0-9]+ pass$' <<<"$plain" | awk '{s+=$1} END {print s+0}')
bun_fail=$(grep -E '^ *[0-9]+ fail$' <<<"$plain" | awk '{s+=$1} END {print s+0}')
# deno's summary may carry step counts: "ok | 3 passed (13 steps) | 0 failed | 1 ignored"
deno=$(grep -E '^(ok|FAILED) \| [0-9]+ passed' <<<"$plain")
deno_pass=$(sed -E 's/^[A-Z a-z]*\| ([0-9]+) passed.*/\1/' <<<"$deno" | awk '{s+=$1} END {print s+0}')
deno_fail=$(sed -E 's/.*\| ([0-9]+) failed.*/\1/' <<<"$deno" | awk '{s+=$1} END {print s+0}')
passed=$((bun_pass + deno_pass))
failed=$((bun_fail + deno_fail))
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "bun: $bun_pass passed, $bun_fail failed; deno: $deno_pass passed, $deno_fail failed"
echo "$passed passed, $failed failed"
exit "$rc"
