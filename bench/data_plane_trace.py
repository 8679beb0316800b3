"""Reads the stamps written by bench/data_plane.ts with bench/data_plane_trace.patch applied.

Usage (diagnostic only; the patch applies to 7a093d5 and trees whose files it touches are the same;
its version for f9faec7, with the eighth session's ZC=1 experiment, is `git show 87918c9:bench/data_plane_trace.patch`):
    git worktree add --detach /tmp/dpt 7a093d5 && cd /tmp/dpt && ln -s /work/main/node_modules .
    git apply /work/main/bench/data_plane_trace.patch
    DPT=/tmp/dpt.log N=300 npx bun bench/data_plane.ts        # or: npx deno run -A bench/data_plane.ts
    python3 /work/main/bench/data_plane_trace.py /tmp/dpt.log ours   # or: raw
MIB=16 (and a smaller N: A's store holds 1 GiB) times 16 MiB hand-offs. Stamps: cs/cr a client's
WebSocket send/receive (with the bytes, segments included), sr/ss the node's, raw-send0/1 around
Bun's send call, handle/h-<type>/ran/encoded/put/objectFrame the node's steps.

Each process (driver, A, B, raw) stamps events with performance.timeOrigin + performance.now(); the
driver stamps the start and end of each hand-off. Prints, for each event, its median time after the
hand-off's start (the n-th event of that name in that process, kept when seen in half the hand-offs).
"""
import collections
import statistics
import sys

events = []
for line in open(sys.argv[1]):
    parts = line.split()
    events.append((float(parts[-1]), parts[0], " ".join(parts[1:-1])))
events.sort()
which = sys.argv[2] if len(sys.argv) > 2 else "ours"
windows, cur = [], None
for t, proc, label in events:
    if proc == "driver" and label == f"start {which}":
        cur = (t, [])
    elif proc == "driver" and label == f"end {which}" and cur:
        windows.append((cur[0], t, cur[1]))
        cur = None
    elif cur is not None:
        cur[1].append((t, proc, label))
seen = collections.defaultdict(list)
for t0, t1, inside in windows:
    count = collections.Counter()
    for t, proc, label in inside:
        count[(proc, label)] += 1
        seen[(proc, label, count[(proc, label)])].append(t - t0)
    seen[("driver", "END", 1)].append(t1 - t0)
rows = sorted((statistics.median(v), k, len(v)) for k, v in seen.items() if len(v) >= len(windows) * 0.5)
for m, k, n in rows:
    print(f"{m:8.3f} ms  {k[0]:7s} {k[1]} #{k[2]}  (n={n})")
