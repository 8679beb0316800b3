/**
 * Soak: one node (`thinkagain serve`, a process of its own) under attack traffic mixed with a
 * well-behaved client, for `--minutes` (default 10). Reports, per interval, the node's RSS and the
 * well-behaved client's call latency (p50, p99), beside the same client's latency against the idle
 * node measured first in the same run (`--idle-s`, default 20 s, after `--warmup-calls` calls back to
 * back, default 20,000, and `--warmup-s` of paced calls, default 10), and again once the attack stopped
 * (`--idle-after-s`, default as long as `--idle-s`; 0: not measured), after 5 s for the node to settle:
 * this VM's speed can change by 2x within an hour, so one idle baseline alone may flatter or wrong the
 * attacked minutes. Target (issue 11): p99 under attack within 2x of idle, and RSS that does not keep
 * growing. Each ratio of the whole attack's p99 to an idle one also comes with a 95 % bootstrap
 * interval (`ratioInterval`): how far the run's own samples let it move.
 *
 *     bun bench/soak.ts                        (a Bun node, 10 minutes)
 *     bun bench/soak.ts --runtime deno --minutes 2
 *     bun bench/soak.ts --minutes 1 --attacks bombs   (one kind of attack only)
 *
 * The attack, all at once and all the time, on fresh connections each round:
 * - raw WebSocket clients that send 2,000 calls with 16 KiB replies each and never read a reply;
 * - decoder bombs: deep nesting, a 64 KiB bigint, shared-reference and record tags, invalid UTF-8;
 * - idle TCP connections (200 at a time) and connections that drip their headers;
 * - bursts of calls beyond a mailbox's `maxQueued` (refused with OverloadedError).
 * The well-behaved client calls a tiny op over its own WebSocket, one call every 20 ms.
 * `--attacks` picks kinds, comma-separated (default all): `noread`, `bombs`, `idle` (idle and
 * header-dripping connections), `burst`; `none` attacks nothing (a control: the same run, only the
 * machine's own noise). The attackers run in a process of their own
 * (`--attackers process`, the default) or in the bench's (`--attackers inline`, as the first runs
 * did: their work then delays the well-behaved client's own event loop too).
 *
 * @module
 */
import { spawn } from "node:child_process";
import net from "node:net";
import { fileURLToPath } from "node:url";
import { rssOf, runArgs, type Runtime, startNodeProcess } from "../adapters/_test_nodes.ts";
import { wsUpgradeHead } from "../transports/_test_servers.ts";
import { encodeMessage } from "../transports/protocol.ts";
import { webSocketTransport } from "../transports/websocket.ts";
import { FRAME_HEADER_BYTES, KIND_REQUEST, writeHeader } from "../transports/ws_framing.ts";

function flag(name: string, dflt: string): string {
  const args = (globalThis as { Deno?: { args: string[] } }).Deno?.args ??
    (globalThis as { process?: { argv: string[] } }).process?.argv.slice(2) ?? [];
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
}

const MINUTES = Number(flag("minutes", "10"));
const IDLE_S = Number(flag("idle-s", "20"));
const IDLE_AFTER_S = Number(flag("idle-after-s", String(IDLE_S)));
/** How long the node is left alone after the attack, before the second idle baseline. */
const SETTLE_MS = 5_000;
const INTERVAL_S = Number(flag("interval-s", "60"));
const RUNTIME_SELF: Runtime = (globalThis as { Bun?: unknown }).Bun ? "bun" : "deno";
const RUNTIME = flag("runtime", (globalThis as { Bun?: unknown }).Bun ? "bun" : "deno") as Runtime;
const ATTACK_KINDS = ["noread", "bombs", "idle", "burst"] as const;
const ATTACKS = new Set(flag("attacks", ATTACK_KINDS.join(",")).split(",").map((k) => k.trim()));
// `none`: the attacker process runs and attacks nothing (a control for the machine's own noise)
ATTACKS.delete("none");
for (const k of ATTACKS) {
  if (!(ATTACK_KINDS as readonly string[]).includes(k)) {
    throw new TypeError(`--attacks: unknown kind ${JSON.stringify(k)}, expected some of ${ATTACK_KINDS.join(", ")}`);
  }
}
/** `--trace-ms N`: print each well-behaved call slower than N ms, and each attack's start and end (wall clock, ms). */
const TRACE_MS = Number(flag("trace-ms", "0"));
const trace = (what: string) => TRACE_MS > 0 && console.error(`trace ${Date.now() % 1e6} ${what}`);
/**
 * `--lag-ms N`: the node notes each stall of its event loop longer than N ms (`bench/_soak_app.ts`),
 * and this process each 100 ms the CPU time the node, the attackers and itself used; all printed at
 * the end, stamped like `--trace-ms`'s lines, so that `sort -k2 -n` puts them in order.
 */
const LAG_MS = Number(flag("lag-ms", "0"));
/**
 * `--node-output FILE`: everything the node printed (stdout and stderr) is written to FILE at the end
 * (e.g. with `DENO_V8_FLAGS=--trace-gc` in the environment, its collections).
 */
const NODE_OUTPUT = flag("node-output", "");
const APP = fileURLToPath(new URL("./_soak_app.ts", import.meta.url));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function wsMessage(kind: number, id: number, body: Uint8Array): Uint8Array {
  const payload = new Uint8Array(FRAME_HEADER_BYTES + body.byteLength);
  writeHeader(payload, kind, id);
  payload.set(body, FRAME_HEADER_BYTES);
  const n = payload.byteLength;
  const head = n < 126
    ? [0x82, 0x80 | n]
    : n < 0x10000
    ? [0x82, 0x80 | 126, n >> 8, n & 0xff]
    : [0x82, 0x80 | 127, 0, 0, 0, 0, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
  const out = new Uint8Array(head.length + 4 + n);
  out.set(head);
  out.set(payload, head.length + 4); // a zero mask
  return out;
}

function rawSocket(port: number, read: boolean): Promise<net.Socket> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    if (!read) s.pause();
    else s.on("data", () => {});
    s.on("error", () => {});
    s.once("connect", () => resolve(s));
    s.once("error", () => resolve(s));
  });
}

/** Decoder bombs and malformed frames, each a request frame's body. */
function bombs(): Uint8Array[] {
  const deep = new Uint8Array(2_000).fill(0x81); // arrays nested 2,000 deep
  const bigint = new Uint8Array([0xc2, 0x5a, 0, 1, 0, 0, ...new Uint8Array(65_536).fill(0xff)]);
  const shared = new Uint8Array([0xd8, 0x1c, 0x81, 0xd8, 0x1d, 0x00]);
  const record = new Uint8Array([0xd9, 0xdf, 0xfe, 0x83, 0x20, 0x81, 0x61, 0x61, 0x01]);
  const badText = new Uint8Array([
    0xa2,
    0x61,
    0x74,
    0x64,
    0x70,
    0x69,
    0x6e,
    0x67,
    0x65,
    0x6f,
    0x77,
    0x6e,
    0x65,
    0x72,
    0x62,
    0xc3,
    0x28,
  ]);
  return [deep, bigint, shared, record, badText];
}

async function attackRound(port: number, stop: () => boolean): Promise<void> {
  const sockets: net.Socket[] = [];
  try {
    // never-reading clients
    for (let c = 0; c < 2 && ATTACKS.has("noread") && !stop(); c++) {
      trace(`noread ${c} start`);
      const s = await rawSocket(port, false);
      sockets.push(s);
      s.write(wsUpgradeHead(port));
      for (let i = 1; i <= 2_000 && !s.destroyed; i++) {
        const body = encodeMessage({ t: "call", cid: `a${i}`, op: "bpBytes", args: [16 * 1024] });
        if (!s.write(wsMessage(KIND_REQUEST, i, body))) {
          await Promise.race([new Promise((r) => s.once("drain", r)), sleep(200)]);
        }
      }
    }
    trace("noread written");
    // decoder bombs, each on a connection that reads (the node answers or closes it)
    for (const b of ATTACKS.has("bombs") ? bombs() : []) {
      const s = await rawSocket(port, true);
      sockets.push(s);
      s.write(wsUpgradeHead(port));
      for (let i = 1; i <= 20; i++) s.write(wsMessage(KIND_REQUEST, i, b));
    }
    // idle and dripping connections
    for (let i = 0; i < 200 && ATTACKS.has("idle") && !stop(); i++) sockets.push(await rawSocket(port, true));
    for (let i = 0; i < 10 && ATTACKS.has("idle"); i++) {
      const s = await rawSocket(port, true);
      sockets.push(s);
      s.write("GET /rpc HTTP/1.1\r\n");
    }
    // a burst beyond a mailbox's bound, from a client that reads
    const conn = ATTACKS.has("burst")
      ? await webSocketTransport.connect(`http://127.0.0.1:${port}`).catch(() => undefined)
      : undefined;
    if (conn !== undefined) {
      try {
        const created = await conn.request(
          encodeMessage({ t: "create", service: "BpQueue", args: [], gpus: [], replica: 0, owner: "soak" }),
        );
        const { decode } = await import("../core/codec.ts");
        const id = (decode(created) as { id: string }).id;
        await Promise.allSettled(
          Array.from(
            { length: 200 },
            (_, i) => conn.request(encodeMessage({ t: "call", cid: `q${i}`, id, method: "hold", args: [5, i] })),
          ),
        );
      } catch {
        // refused or closed: part of the attack
      }
      await conn.close().catch(() => {});
    }
    trace("round sent");
    await sleep(2_000);
  } finally {
    trace(`round ends: ${sockets.length} sockets destroyed`);
    for (const s of sockets) s.destroy();
  }
}

/** CPU time a process has used, in seconds (Linux: /proc; NaN elsewhere). */
async function cpuOf(pid: number | undefined): Promise<number> {
  try {
    const { readFileSync } = await import("node:fs");
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, in ticks of 10 ms
  } catch {
    return NaN;
  }
}

function selfPidOf(): number | undefined {
  return (globalThis as { process?: { pid: number } }).process?.pid;
}

function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

/**
 * How far a run's p99 ratio could move by chance: the 2.5th and 97.5th percentiles of p99(xs) /
 * p99(base) over `rounds` bootstrap resamples of both (each drawn with replacement, as many as it
 * has). A minute's p99 rests on its 30 slowest calls, an idle baseline's on fewer: this says whether
 * a ratio is told apart from a target by the run itself (not whether the next run would agree: this
 * machine's speed also moves between runs). Seeded, so the same samples give the same interval.
 */
function ratioInterval(xs: number[], base: number[], rounds = 200): [number, number] {
  let seed = 0x9e3779b9;
  const random = (): number => {
    // mulberry32
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const p99Of = (from: number[]): number => {
    const s = new Float64Array(from.length);
    for (let i = 0; i < s.length; i++) s[i] = from[Math.floor(random() * from.length)];
    s.sort();
    return s[Math.min(s.length - 1, Math.floor(0.99 * s.length))];
  };
  const ratios: number[] = [];
  for (let r = 0; r < rounds; r++) ratios.push(p99Of(xs) / p99Of(base));
  return [percentile(ratios, 2.5), percentile(ratios, 97.5)];
}

const interval = ([lo, hi]: [number, number]): string => `95 % interval ${lo.toFixed(2)}–${hi.toFixed(2)}x`;

// the attacker process (see --attackers): attack the node on that port until killed
const ATTACK_PORT = Number(flag("attack-port", "0"));
if (ATTACK_PORT > 0) {
  // how many rounds it has made so far, each second on stdout (the bench reports the attack's rate)
  let rounds = 0;
  setInterval(() => console.log(`attack-rounds ${rounds}`), 1_000);
  await Promise.all([0, 1].map(async () => {
    for (;;) {
      await attackRound(ATTACK_PORT, () => false).catch(() => {});
      rounds++;
    }
  }));
}
const ATTACKERS = flag("attackers", "process");
/**
 * `--attackers-cpu N` (Linux, `taskset`): the attacker process runs on CPU N only, and the node and
 * this process (the well-behaved client) on the other CPUs, as if the attack came from another
 * machine: its own CPU work then no longer takes turns with the node's and the client's.
 */
const ATTACKERS_CPU = flag("attackers-cpu", "");
/** `--warmup-s`: the well-behaved client calls this long first, not counted, before the idle baseline. */
const WARMUP_S = Number(flag("warmup-s", "10"));
/**
 * `--warmup-calls`: that many calls back to back before the paced warm-up, so that the JITs of both
 * processes have compiled the call path before the idle baseline (see the warm-up below).
 */
const WARMUP_CALLS = Number(flag("warmup-calls", "20000"));
if (ATTACKERS !== "process" && ATTACKERS !== "inline") {
  throw new TypeError(`--attackers: expected process or inline, found ${JSON.stringify(ATTACKERS)}`);
}

const node = await startNodeProcess(APP, ["--port", "0", "--name", "soak", "--headers-timeout-ms", "2000"], {
  runtime: RUNTIME,
  env: LAG_MS > 0 ? { SOAK_LAG_MS: String(LAG_MS) } : {},
});
const pid = node.proc.pid!;
// --attackers-cpu: the node and this process keep off the attackers' CPU for the whole run (idle too)
if (ATTACKERS_CPU !== "") {
  const { execFileSync } = await import("node:child_process");
  const cpus = (await import("node:os")).cpus().map((_, i) => i).filter((i) => String(i) !== ATTACKERS_CPU).join(",");
  for (const p of [pid, selfPidOf()]) execFileSync("taskset", ["-a", "-p", "-c", cpus, String(p)], { stdio: "ignore" });
}
const client = await webSocketTransport.connect(node.url);
let seq = 0;
/** A call with no answer in this long counts as failed, so that a stalled node shows in the table. */
const CALL_LIMIT_MS = 30_000;
async function callOnce(): Promise<number> {
  const t0 = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      client.request(encodeMessage({ t: "call", cid: `w${seq++}`, op: "bpBytes", args: [8] })),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer in ${CALL_LIMIT_MS} ms`)), CALL_LIMIT_MS);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
  return performance.now() - t0;
}

/** The well-behaved client: one call every 20 ms for `ms`; its latencies and failures. */
async function wellBehaved(ms: number): Promise<{ lat: number[]; failed: number }> {
  const lat: number[] = [];
  let failed = 0;
  const end = performance.now() + ms;
  while (performance.now() < end) {
    try {
      const ms = await callOnce();
      lat.push(ms);
      if (TRACE_MS > 0 && ms > TRACE_MS) trace(`slow call ${ms.toFixed(1)} ms, ended`);
    } catch {
      failed++;
    }
    await sleep(20);
  }
  return { lat, failed };
}

console.log(
  `soak: a ${RUNTIME} node, ${MINUTES} min of attack (${[...ATTACKS].join(", ") || "none"}; attackers ${ATTACKERS}` +
    `${ATTACKERS_CPU === "" ? "" : ` on CPU ${ATTACKERS_CPU}`}), ${WARMUP_S} s warm-up, then ${IDLE_S} s idle baseline`,
);
// Warmed up first (the runtimes' JITs, the node's and the client's first calls), so that the
// idle baseline is the steady state the attacked minutes are compared with: without it the idle
// p99 held the warm-up's slow calls (the ninth session's control: idle p99 1.52 ms, then 0.74 ms
// with nothing attacking). Paced calls alone did not do it: at one call every 20 ms the call path
// was not yet compiled through the idle baseline, whose p99 was then slower than the minutes of
// `--attacks none` after it (BENCHMARKS.md, Soak under attack, twenty-second session), so calls back
// to back come first.
for (let i = 0; i < WARMUP_CALLS; i++) await callOnce();
await wellBehaved(WARMUP_S * 1000);
const cpuIdle0 = await cpuOf(pid), tIdle0 = performance.now();
const idle = await wellBehaved(IDLE_S * 1000);
const nodeCpuIdle = (await cpuOf(pid) - cpuIdle0) / ((performance.now() - tIdle0) / 1000);
const idleP50 = percentile(idle.lat, 50), idleP99 = percentile(idle.lat, 99);
const rss0 = (await rssOf(pid)) ?? NaN;
console.log(
  `idle: p50 ${idleP50.toFixed(2)} ms, p99 ${idleP99.toFixed(2)} ms, RSS ${(rss0 / 2 ** 20).toFixed(0)} MiB\n`,
);
console.log("| minute | node RSS MiB (max in interval) | p50 ms | p99 ms | p99 / idle p99 | calls | failed |");
console.log("|---:|---:|---:|---:|---:|---:|---:|");

const endAt = performance.now() + MINUTES * 60_000;
let stopped = false;
// in a process of their own by default, so that the attack's own work never delays the
// well-behaved client's event loop here (inline, as the first runs did, it did)
const attackArgs = runArgs(RUNTIME_SELF, fileURLToPath(import.meta.url), [
  "--attacks",
  [...ATTACKS].join(",") || "none",
  "--attack-port",
  String(node.port),
  "--trace-ms",
  String(TRACE_MS),
]);
const attackProcess = ATTACKERS === "process"
  ? spawn(
    ...(ATTACKERS_CPU === ""
      ? attackArgs
      : ["taskset", ["-c", ATTACKERS_CPU, attackArgs[0], ...attackArgs[1]]] as [string, string[]]),
    { stdio: ["ignore", "pipe", "inherit"] },
  )
  : undefined;
let attackRounds = 0;
attackProcess?.stdout?.on("data", (d: Uint8Array) => {
  const m = /attack-rounds (\d+)\s*$/.exec(new TextDecoder().decode(d));
  if (m) attackRounds = Number(m[1]);
});
const attackers = ATTACKERS === "process" ? [] : [0, 1].map(async () => {
  while (!stopped) await attackRound(node.port, () => stopped).catch(() => {});
});
const cpuAttack0 = await cpuOf(pid), attackerCpu0 = await cpuOf(attackProcess?.pid), tAttack0 = performance.now();
// --lag-ms: CPU ms used in each 100 ms by the node, the attackers and this process (the client)
const cpuLog: string[] = [];
let cpuLast = [0, 0, 0];
const selfPid = selfPidOf();
const cpuSampler = LAG_MS > 0
  ? setInterval(async () => {
    const now = [await cpuOf(pid), await cpuOf(attackProcess?.pid), await cpuOf(selfPid)];
    const d = now.map((c, i) => ((c - cpuLast[i]) * 1000).toFixed(0));
    cpuLast = now;
    cpuLog.push(`cpu ${Date.now() % 1e6} node ${d[0]} attackers ${d[1]} client ${d[2]} ms per 100 ms`);
  }, 100)
  : undefined;
let peakAll = rss0;
const allP99: number[] = [];
const allLat: number[] = [];
let allFailed = 0;
for (let k = 1; performance.now() < endAt; k++) {
  let peak = 0;
  const sampler = setInterval(() => {
    void rssOf(pid).then((r) => {
      if (r !== undefined && r > peak) peak = r;
    });
  }, 250);
  const w = await wellBehaved(Math.min(INTERVAL_S * 1000, endAt - performance.now()));
  clearInterval(sampler);
  peakAll = Math.max(peakAll, peak);
  allLat.push(...w.lat);
  allFailed += w.failed;
  const p99 = percentile(w.lat, 99);
  allP99.push(p99 / idleP99);
  console.log(
    `| ${((k * INTERVAL_S) / 60).toFixed(1)} | ${(peak / 2 ** 20).toFixed(0)} | ${
      percentile(w.lat, 50).toFixed(2)
    } | ` +
      `${p99.toFixed(2)} | ${(p99 / idleP99).toFixed(2)}x | ${w.lat.length} | ${w.failed} |`,
  );
}
const attackS = (performance.now() - tAttack0) / 1000;
const nodeCpuAttack = (await cpuOf(pid) - cpuAttack0) / attackS;
const attackerCpu = (await cpuOf(attackProcess?.pid) - attackerCpu0) / attackS;
stopped = true;
clearInterval(cpuSampler);
attackProcess?.kill("SIGKILL");
if (LAG_MS > 0) {
  for (const line of node.output().split("\n")) if (line.startsWith("lag ")) console.error(`trace ${line.slice(4)}`);
  for (const line of cpuLog.slice(1)) console.error(`trace ${line.slice(4)}`);
}
await Promise.all(attackers);
// the second idle baseline: the same client against the same node once the attack is over
let after: { p50: number; p99: number; lat: number[] } | undefined;
if (IDLE_AFTER_S > 0) {
  await sleep(SETTLE_MS);
  const a = await wellBehaved(IDLE_AFTER_S * 1000);
  after = { p50: percentile(a.lat, 50), p99: percentile(a.lat, 99), lat: a.lat };
  console.log(
    `\nidle after the attack (${IDLE_AFTER_S} s, after ${SETTLE_MS / 1000} s to settle): p50 ${
      after.p50.toFixed(2)
    } ms, ` +
      `p99 ${after.p99.toFixed(2)} ms; attack p99 / this p99 ${(percentile(allLat, 99) / after.p99).toFixed(2)}x`,
  );
}
// (resampled: see ratioInterval)
console.log(
  `attack p99 / idle p99, resampled: before ${interval(ratioInterval(allLat, idle.lat))}` +
    (after === undefined ? "" : `; after ${interval(ratioInterval(allLat, after.lat))}`),
);
console.log(
  `\nnode alive: ${node.proc.exitCode === null}; peak RSS ${(peakAll / 2 ** 20).toFixed(0)} MiB; ` +
    `p99/idle per interval: median ${percentile(allP99, 50).toFixed(2)}x, max ${Math.max(...allP99).toFixed(2)}x`,
);
// one line for scripts: idle and the whole attack's latency (ms), the peak RSS (MiB)
console.log(
  `summary: idle p50 ${idleP50.toFixed(2)} p99 ${idleP99.toFixed(2)}; attack p50 ${
    percentile(allLat, 50).toFixed(2)
  } p99 ${percentile(allLat, 99).toFixed(2)} max ${Math.max(...allLat).toFixed(2)} (${
    (percentile(allLat, 99) / idleP99).toFixed(2)
  }x idle p99${
    after === undefined
      ? ""
      : `; idle after p50 ${after.p50.toFixed(2)} p99 ${after.p99.toFixed(2)}, ${
        (percentile(allLat, 99) / after.p99).toFixed(2)
      }x it`
  }); calls ${allLat.length} failed ${allFailed}; peak RSS ${(peakAll / 2 ** 20).toFixed(0)} MiB; ` +
    `node CPU ${nodeCpuIdle.toFixed(2)} idle, ${nodeCpuAttack.toFixed(2)} attacked; attackers ${
      attackerCpu.toFixed(2)
    } (cores)` +
    (attackProcess ? `; attack rounds ${attackRounds} (${(attackRounds / (attackS / 60)).toFixed(1)}/min)` : ""),
);
await client.close();
node.kill();
// (once its output streams closed: a runtime may hold piped output until it exits)
await node.cleanExit();
if (NODE_OUTPUT !== "") (await import("node:fs")).writeFileSync(NODE_OUTPUT, node.output());
