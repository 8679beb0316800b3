/**
 * What a Deno node's front costs a short HTTP request: a plain `POST /echo` hono app served by
 * `Deno.serve` directly (no connection guard: never serve a node so), by the Deno adapter (behind
 * its connection guard, `adapters/deno/_connection_guard.ts`), and by the Node adapter under Deno's
 * Node compatibility; each with and without reading the request's `signal`. Each server is a fresh
 * child process, in turns, and the client (this process) sends sequential requests with `fetch`.
 * With `--ws`, instead: a WebSocket echo of 40-byte messages (hono's `upgradeWebSocket`), served by
 * `Deno.serve` directly and by the Deno adapter, sequential messages over one connection: what the
 * guard's relay adds to each message of a Deno node, and to `bench/transport.ts`' raw echo on Deno,
 * which is served by the adapter too.
 *
 *   deno run -A bench/deno_front.ts [--rounds 5]
 *   deno run -A bench/deno_front.ts --ws [--rounds 5]
 *
 * Prints each variant's p50 round trip (µs): the median over the rounds, with min–max.
 *
 * @module
 */
import { Hono } from "hono";
import type { WSEvents } from "hono/ws";

interface DenoApi {
  args: string[];
  execPath(): string;
  serve(options: Record<string, unknown>, handler: (req: Request) => Response | Promise<Response>): {
    addr: { port: number };
  };
  Command: new (cmd: string, options: Record<string, unknown>) => {
    spawn(): { stdout: ReadableStream<BufferSource>; kill(signal: string): void; status: Promise<unknown> };
  };
}
const Deno = (globalThis as unknown as { Deno: DenoApi }).Deno;
const N = 3000;
const VARIANTS = ["direct", "guard", "node"];

/** The WebSocket echo: binary messages as ArrayBuffers (a Deno server socket's default is Blob), sent back. */
const echo: WSEvents = {
  onOpen: (_evt, ws) => void ((ws.raw as { binaryType?: string }).binaryType = "arraybuffer"),
  onMessage: (evt, ws) => ws.send(evt.data as ArrayBuffer),
};

async function server(kind: string, readSignal: boolean): Promise<void> {
  const app = new Hono();
  app.post("/echo", async (c) => {
    if (readSignal) void c.req.raw.signal;
    return new Response(await c.req.arrayBuffer());
  });
  if (kind === "direct") {
    const { upgradeWebSocket } = await import("hono/deno");
    app.get("/ws", upgradeWebSocket(() => echo));
  } else if (kind === "guard") {
    const { upgradeWebSocket } = await import("../adapters/deno/serve.ts");
    app.get("/ws", upgradeWebSocket(() => echo));
  }
  let port: number;
  if (kind === "direct") port = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, app.fetch).addr.port;
  else if (kind === "guard") port = (await (await import("../adapters/deno/serve.ts")).serve(app, { port: 0 })).port;
  else port = (await (await import("../adapters/node/serve.ts")).serve(app, { port: 0 })).port;
  console.log(`PORT ${port}`);
}

async function start(kind: string, readSignal: boolean) {
  const self = new URL(import.meta.url).pathname;
  const args = ["run", "-A", self, "--server", kind, readSignal ? "signal" : "-"];
  const child = new Deno.Command(Deno.execPath(), { args, stdout: "piped", stderr: "null" }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`server ${kind} exited`);
    out += value;
    const m = /PORT (\d+)/.exec(out);
    if (m) return { child, port: Number(m[1]) };
  }
}

/** p50 of `once`, in µs, over N calls one after another, after 1,000 unmeasured. */
async function timedP50(once: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 1000; i++) await once();
  const t = new Array<number>(N);
  for (let i = 0; i < N; i++) {
    const t0 = performance.now();
    await once();
    t[i] = performance.now() - t0;
  }
  return t.sort((a, b) => a - b)[N >> 1] * 1000;
}

/** p50 of sequential 60-byte POSTs echoed. */
function p50(port: number): Promise<number> {
  const url = `http://127.0.0.1:${port}/echo`;
  const body = new Uint8Array(60);
  return timedP50(async () => await (await fetch(url, { method: "POST", body })).arrayBuffer());
}

/** p50 of sequential 40-byte WebSocket messages echoed, over one connection. */
async function wsP50(port: number): Promise<number> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
  ws.binaryType = "arraybuffer";
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  const msg = new Uint8Array(40);
  let echoed: () => void = () => {};
  ws.onmessage = () => echoed();
  try {
    return await timedP50(() => new Promise<void>((resolve) => (echoed = resolve, ws.send(msg))));
  } finally {
    ws.close();
  }
}

async function client(rounds: number, ws: boolean): Promise<void> {
  const res = new Map<string, number[]>();
  for (let r = 0; r < rounds; r++) {
    for (const kind of ws ? ["direct", "guard"] : VARIANTS) {
      for (const readSignal of ws ? [false] : [false, true]) {
        const s = await start(kind, readSignal);
        const name = `${kind}${readSignal ? " + request.signal" : ""}`;
        res.set(name, [...(res.get(name) ?? []), await (ws ? wsP50(s.port) : p50(s.port))]);
        s.child.kill("SIGKILL");
        await s.child.status;
      }
    }
  }
  console.log(
    ws
      ? `\nDeno node front, sequential WebSocket echo of 40 bytes, ${rounds} rounds of ${N} messages\n`
      : `\nDeno node front, sequential POST /echo, ${rounds} rounds of ${N} requests\n`,
  );
  console.log("| server | p50 (µs), median | min–max |");
  console.log("|---|---:|---:|");
  for (const [name, xs] of res) {
    const s = [...xs].sort((a, b) => a - b);
    console.log(`| ${name} | ${s[s.length >> 1].toFixed(0)} | ${s[0].toFixed(0)}–${s[s.length - 1].toFixed(0)} |`);
  }
}

const argv = Deno.args;
if (argv[0] === "--server") await server(argv[1], argv[2] === "signal");
else {
  const i = argv.indexOf("--rounds");
  await client(i >= 0 ? Number(argv[i + 1]) : 5, argv.includes("--ws"));
}
