#!/usr/bin/env bash
# Runs every benchmark on Bun and on Deno (npm run bench). Each file's output is also kept in
# .bench-out/<runtime>-<file>.md. Usage: bash bench/run.sh [bun|deno]...  (default: both)
# Adding a benchmark is one line in BENCHES; it must run as `bun FILE` and `deno run -A FILE`.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"

BENCHES=(
  bench/core.ts
  bench/memory.ts
  bench/transport.ts
  bench/codec.ts
  bench/decoder_bombs.ts
  bench/tracing.ts
  bench/tracing_deno_builtin.ts
  bench/dashboard.ts
  bench/nats.ts
  bench/dns.ts
  bench/gpu_matmul.ts
  bench/residents.ts
  bench/streaming.ts
  bench/data_plane.ts
)

runtimes=("$@")
[ ${#runtimes[@]} -eq 0 ] && runtimes=(bun deno)
mkdir -p .bench-out
status=0
for rt in "${runtimes[@]}"; do
  case "$rt" in
    bun) cmd=(bun) ;;
    # --expose-gc lets the benchmarks collect between runs and measure memory after a drop
    deno) cmd=(deno run -A --v8-flags=--expose-gc) ;;
    *) echo "unknown runtime \"$rt\" (expected bun or deno)" >&2; exit 2 ;;
  esac
  echo "== $rt: $("${cmd[0]}" --version | head -1)"
  for f in "${BENCHES[@]}"; do
    out=".bench-out/$rt-$(basename "$f" .ts).md"
    echo "== $rt $f"
    "${cmd[@]}" "$f" | tee "$out" || { echo "!! $rt $f failed" >&2; status=1; }
  done
done
exit $status
