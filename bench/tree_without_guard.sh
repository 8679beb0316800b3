#!/usr/bin/env bash
# Extracts revision $1 of this repository into directory $2 with the Deno adapter serving through
# Deno.serve directly, without the connection guard of adapters/deno/_connection_guard.ts (as before
# issue 11): a measurement copy for bench/compare.ts, to tell what the guard costs on Deno, e.g.
#
#   bash bench/tree_without_guard.sh HEAD /tmp/noguard
#   bun bench/compare.ts --before /tmp/noguard --after HEAD --runtimes deno bench/transport.ts
#
# Never serve a node from such a copy: it has no connection cap and no header or idle timeouts.
set -euo pipefail
rev=${1:?usage: tree_without_guard.sh <revision> <directory>}
dir=${2:?usage: tree_without_guard.sh <revision> <directory>}
root=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$dir" && mkdir -p "$dir"
git -C "$root" archive "$rev" | tar -x -C "$dir"
ln -s "$root/node_modules" "$dir/node_modules"
serve="$dir/adapters/deno/serve.ts"
grep -q '^  let listener: DenoListener' "$serve" || { echo "adapters/deno/serve.ts at $rev has no guard to take out" >&2; exit 1; }
# before the guard is set up, serve with Deno.serve directly and return
awk '
  /^  let listener: DenoListener/ && !done {
    print "  if (limits !== undefined) {"
    print "    let direct: DenoServer;"
    print "    try {"
    print "      direct = Deno.serve({ hostname, port, onListen() {} }, handle);"
    print "    } catch (err) {"
    print "      return Promise.reject(isAddressInUse(err) ? addressInUse(hostname, port, err) : err);"
    print "    }"
    print "    const closeDirect = () => {"
    print "      stopping = true;"
    print "      const done = direct.shutdown().then(() => direct.finished);"
    print "      for (const resolve of inflight) resolve(new Response(\"server is closing\", { status: 503 }));"
    print "      inflight.clear();"
    print "      return done;"
    print "    };"
    print "    const p = direct.addr.port;"
    print "    return Promise.resolve({ port: p, hostname, url: `http://${hostname}:${p}`, close: closeDirect });"
    print "  }"
    done = 1
  }
  { print }
' "$serve" > "$serve.new" && mv "$serve.new" "$serve"
echo "$dir: revision $rev with the Deno adapter serving without its connection guard"
