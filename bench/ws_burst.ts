/**
 * A burst of small calls written at once to a WebSocket, and how the serving process takes it:
 * how long until the last call is served, and the longest gap between the ticks of a 1 ms timer in
 * that process meanwhile (the longest task: how long another client's call could wait). The client
 * is a raw TCP socket in the same process, writing the whole burst in one write.
 *
 *   npx deno run -A bench/ws_burst.ts node    # our node's server (serveFrames, echo), through
 *                                             # the Deno guard's relay; Bun: npx bun bench/ws_burst.ts node
 *   npx deno run -A bench/ws_burst.ts plain   # Deno only: a bare Deno.serve WebSocket, empty handler
 *
 * `BENCH_CALLS` (default 2000) calls of 40 body bytes per burst, `BENCH_ROUNDS` (default 12)
 * bursts 50 ms apart in one process; the last three are printed (the first ones run cold).
 *
 * @module
 */
import net from "node:net";
import process from "node:process";
import { serveFrames } from "../adapters/serve.ts";
import { upgradeRaw, wsRequest } from "../transports/_test_servers.ts";

const CALLS = Number(process.env.BENCH_CALLS ?? 2000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 12);
const kind = process.argv[2] ?? (globalThis as { Deno?: { args: string[] } }).Deno?.args[0] ?? "node";

let served = 0;
let firstAt = 0, lastAt = 0;
const onCall = (): void => {
  if (++served === 1) firstAt = performance.now();
  if (served === CALLS) lastAt = performance.now();
};

let port: number;
let close: () => Promise<void>;
if (kind === "plain") {
  const deno = (globalThis as {
    Deno?: {
      serve(o: object, h: (r: Request) => Response): { addr: { port: number }; shutdown(): Promise<void> };
      upgradeWebSocket(r: Request): { socket: WebSocket; response: Response };
    };
  }).Deno;
  if (deno === undefined) throw new TypeError("plain: Deno only (a bare Deno.serve WebSocket)");
  const server = deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const { socket, response } = deno.upgradeWebSocket(req);
    socket.binaryType = "arraybuffer";
    socket.onmessage = onCall;
    return response;
  });
  port = server.addr.port;
  close = () => server.shutdown();
} else if (kind === "node") {
  const s = await serveFrames((frame) => (onCall(), frame), { hostname: "127.0.0.1", port: 0 });
  port = s.port;
  close = () => s.close();
} else throw new TypeError(`expected node or plain, found ${JSON.stringify(kind)}`);

// the client: a raw socket, upgraded by hand, reading (and dropping) whatever comes back
const socket = net.connect(port, "127.0.0.1");
// (what came after the answer's head: the start of the frames read below)
let pending = await upgradeRaw(socket, port);
// what comes back is read, and each ping answered with its pong (a node pauses a client that
// leaves its pings unanswered: it would stop serving the bursts)
socket.on("data", (d: Uint8Array) => {
  const all = new Uint8Array(pending.byteLength + d.byteLength);
  all.set(pending);
  all.set(d, pending.byteLength);
  let at = 0;
  for (;;) {
    if (all.byteLength - at < 2) break;
    const len7 = all[at + 1] & 0x7f;
    const head = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0);
    if (all.byteLength - at < head) break;
    const n = len7 === 126
      ? (all[at + 2] << 8) | all[at + 3]
      : len7 === 127
      ? new DataView(all.buffer, at + 6, 4).getUint32(0)
      : len7;
    if (all.byteLength - at < head + n) break;
    if ((all[at] & 0x0f) === 0x9 && n < 126) {
      // a pong with the ping's payload, masked with a zero key
      const pong = new Uint8Array(6 + n);
      pong[0] = 0x8a;
      pong[1] = 0x80 | n;
      pong.set(all.subarray(at + head, at + head + n), 6);
      socket.write(pong);
    }
    at += head + n;
  }
  pending = all.slice(at);
});
const parts: Uint8Array[] = [];
for (let i = 1; i <= CALLS; i++) parts.push(wsRequest(i, new Uint8Array(40)));
const burst = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
for (let i = 0, at = 0; i < parts.length; at += parts[i].byteLength, i++) burst.set(parts[i], at);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const runtime = "Deno" in globalThis ? "Deno" : "Bun";
console.log(`bench/ws_burst.ts ${kind} on ${runtime}: ${CALLS} calls written at once, ${ROUNDS} rounds`);
for (let round = 1; round <= ROUNDS; round++) {
  served = 0;
  await sleep(50);
  let last = performance.now(), longest = 0;
  const ticker = setInterval(() => {
    const now = performance.now();
    longest = Math.max(longest, now - last);
    last = now;
  }, 1);
  const t0 = performance.now();
  socket.write(burst);
  while (served < CALLS) await sleep(1);
  clearInterval(ticker);
  if (round > ROUNDS - 3) {
    console.log(
      `  round ${round}: first call served ${(firstAt - t0).toFixed(1)} ms after the write, the last ` +
        `${(lastAt - t0).toFixed(1)} ms after it; longest gap between timer ticks ${longest.toFixed(1)} ms`,
    );
  }
}
socket.destroy();
await close();
process.exit(0);
