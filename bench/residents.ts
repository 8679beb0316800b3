/**
 * Resident instances: one node process (`thinkagain serve bench/residents.ts --start BenchModel`)
 * holds one instance (maxConcurrency 1); driver processes connect to it over WebSocket.
 *
 *   npx bun bench/residents.ts
 *   npx deno run -A bench/residents.ts
 *
 * 1. Sharing: three drivers at once, each making CALLS calls with IN_FLIGHT in flight, against one
 *    driver alone making the same number, in the same run: total calls/s of the three as a ratio
 *    of the one's (1.0: sharing costs nothing; below: contention).
 * 2. Fairness: driver B's call latency (one call at a time) alone, then while driver A floods the
 *    same instance with 1,024 calls in flight: B's p50 and p99 in both, and the ratio.
 * 3. Fairness over HTTP: the same with B calling over HTTP (`POST /rpc`), alone and while another
 *    process floods the instance with raw `POST /rpc` calls, 64 in flight, naming itself
 *    (`x-thinkagain-caller`) as every HTTP client connection does.
 *
 * Each scenario runs RUNS times, alternating; the table gives the median and the spread (min–max).
 * Timing claims live here, never in tests.
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";
import * as ta from "../mod.ts";
import { decodeReply, encodeMessage, PROTOCOL_VERSION, type WelcomeMessage } from "../transports/protocol.ts";

/** The shared model: a call is a small async step (as a call into an accelerator would be). */
export const BenchModel = ta.service(
  { name: "BenchModel" },
  class BenchModel {
    async generate(prompt: string): Promise<string> {
      await Promise.resolve();
      return prompt;
    }
  },
);

const CALLS = Number(process.env.BENCH_CALLS ?? 20_000);
const IN_FLIGHT = Number(process.env.BENCH_IN_FLIGHT ?? 64);
const PROBES = Number(process.env.BENCH_PROBES ?? 400);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const self = fileURLToPath(import.meta.url);
const isDeno = "Deno" in globalThis;

function spawnSelf(args: string[]): ChildProcess {
  const argv = isDeno ? ["run", "-A", "--quiet", self, ...args] : [self, ...args];
  return spawn(process.execPath, argv, { stdio: ["pipe", "pipe", "inherit"] });
}

/** Resolves with the first line of `child`'s output that matches `re`. */
function lineOf(child: ChildProcess, re: RegExp): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let out = "";
    const onData = (d: Uint8Array) => {
      out += new TextDecoder().decode(d);
      const m = re.exec(out);
      if (m) {
        child.stdout!.off("data", onData);
        resolve(m);
      }
    };
    child.stdout!.on("data", onData);
    child.on("exit", (code) => reject(new Error(`exited with ${code} before printing ${re}:\n${out}`)));
  });
}

// ---------------------------------------------------------------------------------------------
// A driver process: `--driver <endpoint> <mode>`. It connects, prints READY, waits for a line on
// stdin ("go"), runs, and prints its result.

async function driver(endpoint: string, mode: string, kind: string): Promise<void> {
  const mesh = new ta.Mesh([new ta.MeshNode("bench", { endpoint })]);
  // the resident instance, or (the baseline) an instance of this driver's own on the same node
  const model = kind === "own" ? await mesh.run(() => BenchModel.init()) : await mesh.connect(BenchModel);
  await mesh.run(() => Promise.all(Array.from({ length: 100 }, (_, i) => model.generate.go(`warm${i}`))));
  console.log("READY");
  await new Promise<void>((resolve) => process.stdin.once("data", () => resolve()));
  if (mode === "calls") {
    const t0 = performance.now();
    let next = 0;
    await mesh.run(() =>
      Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
        while (next < CALLS) await model.generate(`p${next++}`);
      }))
    );
    console.log(`DONE ${performance.now() - t0}`);
  } else if (mode === "probe") {
    const ms: number[] = [];
    for (let i = 0; i < PROBES; i++) {
      const t = performance.now();
      await mesh.run(() => model.generate(`b${i}`));
      ms.push(performance.now() - t);
    }
    ms.sort((a, b) => a - b);
    console.log(`DONE ${ms[Math.floor(ms.length * 0.5)]} ${ms[Math.floor(ms.length * 0.99)]}`);
  } else if (mode === "httpflood") {
    // 64 raw POST /rpc calls in flight until stdin closes, as one HTTP client naming itself
    let stop = false;
    process.stdin.once("end", () => (stop = true));
    process.stdin.resume();
    const url = `${endpoint.replace(/^ws:/, "http:")}/rpc`;
    const post = async (message: unknown) => {
      const res = await fetch(url, {
        method: "POST",
        body: encodeMessage(message) as Uint8Array<ArrayBuffer>,
        headers: { "content-type": "application/cbor", "x-thinkagain-caller": "flood" },
      });
      return new Uint8Array(await res.arrayBuffer());
    };
    const welcome = decodeReply<WelcomeMessage>(await post({ t: "hello", v: PROTOCOL_VERSION }), "welcome");
    const id = welcome.residents!.find((r) => r.service === "BenchModel")!.id;
    let sent = 0;
    console.log("FLOODING");
    await Promise.all(Array.from({ length: 64 }, async () => {
      while (!stop) {
        const i = sent++;
        decodeReply(await post({ t: "call", cid: `f${i}`, id, method: "generate", args: [`a${i}`] }), "result");
      }
    }));
    console.log(`DONE ${sent}`);
  } else {
    // flood: 1,024 calls in flight until stdin closes
    let stop = false;
    process.stdin.once("end", () => (stop = true));
    process.stdin.resume();
    let sent = 0;
    console.log("FLOODING");
    await mesh.run(() =>
      Promise.all(Array.from({ length: 1024 }, async () => {
        while (!stop) await model.generate(`a${sent++}`);
      }))
    );
    console.log(`DONE ${sent}`);
  }
  await mesh.close();
  process.exit(0);
}

// ---------------------------------------------------------------------------------------------

async function startDrivers(endpoint: string, modes: string[], kind = "resident"): Promise<ChildProcess[]> {
  const kids = modes.map((m) => spawnSelf(["--driver", endpoint, m, kind]));
  await Promise.all(kids.map((k) => lineOf(k, /READY/)));
  return kids;
}

/** Total calls/s of `n` drivers, each making CALLS calls, started together. */
async function sharing(endpoint: string, n: number, kind = "resident"): Promise<number> {
  const kids = await startDrivers(endpoint, Array(n).fill("calls"), kind);
  const t0 = performance.now();
  const done = kids.map((k) => lineOf(k, /DONE (\S+)/));
  for (const k of kids) k.stdin!.write("go\n");
  await Promise.all(done);
  const wall = performance.now() - t0;
  return (n * CALLS) / (wall / 1000);
}

/** Driver B's p50 and p99 (ms), alone or while A floods (`http`: both over HTTP, A with raw requests). */
async function probe(endpoint: string, flood: boolean, http = false): Promise<[number, number]> {
  const at = http ? endpoint.replace(/^ws:/, "http:") : endpoint;
  const [b, a] = await startDrivers(at, flood ? ["probe", http ? "httpflood" : "flood"] : ["probe"]);
  if (a !== undefined) {
    const flooding = lineOf(a, /FLOODING/);
    a.stdin!.write("go\n");
    await flooding;
  }
  const done = lineOf(b, /DONE (\S+) (\S+)/);
  b.stdin!.write("go\n");
  const m = await done;
  if (a !== undefined) {
    const aDone = lineOf(a, /DONE/);
    a.stdin!.end();
    await aDone;
  }
  return [Number(m[1]), Number(m[2])];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function spread(xs: number[], digits: number): string {
  return `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`;
}

async function main(): Promise<void> {
  const cli = fileURLToPath(new URL("../cli.ts", import.meta.url));
  const argv = isDeno ? ["run", "-A", "--quiet", cli] : [cli];
  const node = spawn(process.execPath, [
    ...argv,
    "serve",
    self,
    "--port",
    "0",
    "--name",
    "bench",
    "--start",
    "BenchModel",
  ], { stdio: ["ignore", "pipe", "ignore"] });
  const endpoint = `ws://${(await lineOf(node, /listening on http:\/\/(\S+)/))[1]}`;
  const runtime = isDeno
    ? `Deno ${(globalThis as unknown as { Deno: { version: { deno: string } } }).Deno.version.deno}`
    : `Bun ${process.versions.bun}`;
  const ratios: number[] = [], ones: number[] = [], threes: number[] = [], owns: number[] = [];
  const p99s: number[] = [], p99Alone: number[] = [], p50s: number[] = [], p50Alone: number[] = [];
  const httpAlone: [number, number][] = [], httpDuring: [number, number][] = [];
  try {
    for (let r = 0; r < RUNS; r++) {
      // alternate the order, so neither scenario always runs on a warmer node
      const even = r % 2 === 0;
      const three = even ? undefined : await sharing(endpoint, 3);
      const one = await sharing(endpoint, 1);
      const threeAfter = three ?? await sharing(endpoint, 3);
      ones.push(one);
      // the baseline for what sharing itself costs: three drivers, each with an instance of its own
      owns.push(await sharing(endpoint, 3, "own"));
      threes.push(threeAfter);
      ratios.push(threeAfter / one);
      const during0 = even ? undefined : await probe(endpoint, true);
      const alone = await probe(endpoint, false);
      const during = during0 ?? await probe(endpoint, true);
      p50Alone.push(alone[0]);
      p99Alone.push(alone[1]);
      p50s.push(during[0]);
      p99s.push(during[1]);
      const httpDuring0 = even ? undefined : await probe(endpoint, true, true);
      httpAlone.push(await probe(endpoint, false, true));
      httpDuring.push(httpDuring0 ?? await probe(endpoint, true, true));
    }
  } finally {
    node.kill("SIGTERM");
  }
  const k = (x: number) => `${(x / 1000).toFixed(1)}k`;
  console.log(`## Resident instances (${runtime}, ${RUNS} runs, median and min–max)\n`);
  console.log(`| scenario | median | spread |`);
  console.log(`|---|---|---|`);
  console.log(`| one driver alone, calls/s | ${k(median(ones))} | ${k(Math.min(...ones))}–${k(Math.max(...ones))} |`);
  console.log(
    `| three drivers at once, total calls/s | ${k(median(threes))} | ${k(Math.min(...threes))}–${
      k(Math.max(...threes))
    } |`,
  );
  console.log(`| three / one (target ≥ 0.9) | ${median(ratios).toFixed(2)}x | ${spread(ratios, 2)} |`);
  console.log(
    `| three drivers, each its own instance on the node, total calls/s | ${k(median(owns))} | ${k(Math.min(...owns))}–${
      k(Math.max(...owns))
    } |`,
  );
  const vsOwn = threes.map((t, i) => t / owns[i]);
  console.log(
    `| three on one resident / three on their own instances | ${median(vsOwn).toFixed(2)}x | ${spread(vsOwn, 2)} |`,
  );
  console.log(
    `| B alone, p50 / p99 ms | ${median(p50Alone).toFixed(2)} / ${median(p99Alone).toFixed(2)} | p99 ${
      spread(p99Alone, 2)
    } |`,
  );
  console.log(
    `| B while A floods (1,024 in flight), p50 / p99 ms | ${median(p50s).toFixed(2)} / ${
      median(p99s).toFixed(2)
    } | p99 ${spread(p99s, 2)} |`,
  );
  const pr = p99s.map((p, i) => p / p99Alone[i]);
  console.log(`| B's p99 while A floods / alone | ${median(pr).toFixed(2)}x | ${spread(pr, 2)} |`);
  const hp = (xs: [number, number][], i: number) => xs.map((x) => x[i]);
  for (
    const [what, xs] of [["alone", httpAlone], ["while an HTTP client floods (64 in flight)", httpDuring]] as const
  ) {
    console.log(
      `| HTTP: B ${what}, p50 / p99 ms | ${median(hp(xs, 0)).toFixed(2)} / ${median(hp(xs, 1)).toFixed(2)} | p99 ${
        spread(hp(xs, 1), 2)
      } |`,
    );
  }
  const hr = httpDuring.map((d, i) => d[1] / httpAlone[i][1]);
  console.log(`| HTTP: B's p99 while flooded / alone | ${median(hr).toFixed(2)}x | ${spread(hr, 2)} |`);
  console.log(`\n${CALLS} calls per driver, ${IN_FLIGHT} in flight each; B: ${PROBES} calls one at a time.`);
}

if (import.meta.main) {
  const i = process.argv.indexOf("--driver");
  if (i >= 0) await driver(process.argv[i + 1], process.argv[i + 2], process.argv[i + 3]);
  else {
    await main();
    process.exit(0);
  }
}
