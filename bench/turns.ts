/**
 * How long a message waits while a process is busy in turns: a server (a child process of this
 * runtime) spins for `--spin-ms` in each turn of a chain and yields between turns with `setImmediate`
 * or with our `nextTurn` (`core/_runtime.ts`); this process sends it a timestamp over loopback TCP
 * every millisecond, and the server notes how long each took to reach its `data` handler. That is
 * what a node's stream producer or a flood's slices do to a client's messages (credit requests, a
 * well-behaved client's calls). On Deno, `setImmediate`'s turns read the sockets only once in 61
 * turns (BENCHMARKS.md, Streaming, twenty-first session).
 *
 *     npx deno run -A bench/turns.ts
 *     npx bun bench/turns.ts
 *     npx deno run -A bench/turns.ts --spin-ms 2 --messages 1000
 *
 * @module
 */
import net from "node:net";
import process from "node:process";
import { nextTurn, turnsReady } from "../core/_runtime.ts";
import { startBenchChild } from "./_child.ts";

const args = (globalThis as { Deno?: { args: string[] } }).Deno?.args ?? process.argv.slice(2);
function flag(name: string, dflt: string): string {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
}
const SPIN_MS = Number(flag("spin-ms", "0.5"));
const MESSAGES = Number(flag("messages", "500"));
const g = globalThis as { Deno?: { version: { deno: string } }; Bun?: { version: string } };
const RUNTIME = g.Deno ? `Deno ${g.Deno.version.deno}` : `Bun ${g.Bun?.version}`;
/** A timestamp message: 8 bytes, a float64 of `performance.timeOrigin + performance.now()`; negative ends. */
const MESSAGE_BYTES = 8;

const now = (): number => performance.timeOrigin + performance.now();

/** The server: turns of SPIN_MS chained with `yieldWith`; each timestamp's delay noted; stats printed at the end. */
async function runServer(yieldWith: string, spinMs: number): Promise<void> {
  const turn = yieldWith === "nextTurn" ? nextTurn : (f: () => void) => void setImmediate(f);
  if (yieldWith === "nextTurn") await turnsReady();
  const delays: number[] = [];
  let turns = 0;
  let busy = false;
  const loop = (): void => {
    if (!busy) return;
    turns++;
    const t = performance.now();
    while (performance.now() - t < spinMs) { /* the turn's work */ }
    turn(loop);
  };
  const server = net.createServer((socket) => {
    let pending = new Uint8Array(0);
    socket.on("data", (d: Uint8Array) => {
      const at = now();
      const all = new Uint8Array(pending.byteLength + d.byteLength);
      all.set(pending);
      all.set(d, pending.byteLength);
      const view = new DataView(all.buffer);
      let i = 0;
      for (; i + MESSAGE_BYTES <= all.byteLength; i += MESSAGE_BYTES) {
        const ts = view.getFloat64(i);
        if (ts >= 0) {
          if (!busy) (busy = true, loop()); // the turns start with the first message
          delays.push(at - ts);
          continue;
        }
        busy = false;
        delays.sort((a, b) => a - b);
        const q = (p: number): number => delays[Math.min(delays.length - 1, Math.floor(p * delays.length))];
        socket.end(JSON.stringify({ turns, n: delays.length, p50: q(0.5), p90: q(0.9), max: q(1) }));
        return;
      }
      pending = all.slice(i);
    });
  });
  server.listen(0, "127.0.0.1", () => console.log(`PORT ${(server.address() as net.AddressInfo).port}`));
}

/** Sends MESSAGES timestamps, one per ms, then the end; resolves with the server's stats. */
async function measure(port: number): Promise<{ turns: number; n: number; p50: number; p90: number; max: number }> {
  const socket = net.connect(port, "127.0.0.1");
  socket.setNoDelay(true);
  await new Promise<void>((r) => socket.once("connect", () => r()));
  let reply = "";
  const done = new Promise<string>((r) => {
    socket.on("data", (d: Uint8Array) => (reply += new TextDecoder().decode(d)));
    socket.on("end", () => r(reply));
  });
  const message = (ts: number): Uint8Array => {
    const b = new Uint8Array(MESSAGE_BYTES);
    new DataView(b.buffer).setFloat64(0, ts);
    return b;
  };
  for (let i = 0; i < MESSAGES; i++) {
    socket.write(message(now()));
    await new Promise((r) => setTimeout(r, 1));
  }
  socket.write(message(-1));
  const stats = JSON.parse(await done);
  socket.destroy();
  return stats;
}

if (args[0] === "--server") {
  const [yieldWith, spin] = args[1].split(":");
  await runServer(yieldWith, Number(spin));
} else {
  console.log(
    `bench/turns.ts on ${RUNTIME}: a server in turns of ${SPIN_MS} ms of work; a timestamp sent to it every ms over loopback TCP, ${MESSAGES} of them`,
  );
  console.log("yield between turns   turns   message's wait p50 / p90 / max, ms");
  for (const yieldWith of ["setImmediate", "nextTurn"]) {
    const { child, port } = await startBenchChild(import.meta.url, `${yieldWith}:${SPIN_MS}`);
    try {
      const s = await measure(port);
      console.log(
        `${yieldWith.padEnd(21)} ${String(s.turns).padStart(6)}   ${s.p50.toFixed(2)} / ${s.p90.toFixed(2)} / ${
          s.max.toFixed(2)
        }`,
      );
    } finally {
      child.kill("SIGKILL");
    }
  }
  process.exit(0);
}
