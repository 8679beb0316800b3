// Where a node's CPU goes per service call over NATS (bench/nats.ts gives the ratios to raw NATS).
// One nats-server; a responder process of three kinds, one after another, each driven by this
// process with 256 requests in flight of the sizes a service call sends (a 183-byte frame, an
// 86-byte reply), and its CPU per request read from /proc:
//   raw     the NATS client alone: subscribe, msg.respond(86 bytes)
//   frames  serveNats (the node's NATS side) with a handler that returns 86 bytes
//   full    serveNats + NodeServer: the service call NatsBenchEcho.echo("x" × 64), as a node runs it
// "full" minus "frames" is the node's call path (decode, dispatch, mailbox, encode); "frames" minus
// "raw" is the NATS side of the node. The last row is that call path alone: NodeServer.handler in
// this process, called with the same call frames (a fresh call id each), 256 in flight, no NATS.
// Needs nats-server (apt-get install -y nats-server).
//
//   bun bench/nats_node.ts      deno run -A bench/nats_node.ts      (RUNS=5, CALLS=100000)
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import process from "node:process";
import { fileURLToPath } from "node:url";

const KINDS = ["raw", "frames", "full"] as const;
const SUBJECT_NODE = "nbench";
const FLIGHT = 256;
const REPLY_BYTES = 86;
const FRAME_BYTES = 183;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const spread = (xs: number[]) => `${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}`;

/** CPU ms of a process so far (Linux /proc, 10 ms ticks). */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

async function pace(call: () => PromiseLike<unknown>, total: number): Promise<number> {
  let left = total;
  const s = performance.now();
  await Promise.all(Array.from({ length: FLIGHT }, async () => {
    while (left-- > 0) await call();
  }));
  return total / ((performance.now() - s) / 1000);
}

if (process.argv[2] === "--responder") {
  // the responder process: <kind> <nats url>
  const [kind, url] = process.argv.slice(3);
  const reply = new Uint8Array(REPLY_BYTES);
  if (kind === "raw") {
    const { connect } = await import("@nats-io/transport-node");
    const nc = await connect({ servers: url });
    nc.subscribe(`thinkagain.node.${SUBJECT_NODE}`, { callback: (_e, m) => void m.respond(reply) });
    await nc.flush();
  } else {
    const { serveNats } = await import("../transports/nats/serve.ts");
    if (kind === "frames") await serveNats(() => reply, { nats: url, name: SUBJECT_NODE });
    else {
      await import("./_nats_app.ts");
      const { NodeServer } = await import("../transports/node_server.ts");
      await serveNats(new NodeServer({ name: SUBJECT_NODE }).handler, { nats: url, name: SUBJECT_NODE });
    }
  }
  console.log("ready");
  await new Promise(() => {});
}

const { natsServerBinary, startNatsServer } = await import("../transports/nats/_test_nats.ts");
if (natsServerBinary() === undefined) {
  console.log("bench/nats_node.ts: nats-server is not installed (apt-get install -y nats-server); nothing measured");
  process.exit(0);
}
const { runArgs, thisRuntime } = await import("../adapters/_test_nodes.ts");
const ta = await import("../mod.ts");
const { NatsBenchEcho } = await import("./_nats_app.ts");
const { natsTransport } = await import("../transports/nats/transport.ts");
const { NodeServer } = await import("../transports/node_server.ts");
const { decode, encode } = await import("../core/codec.ts");

const RUNS = Number(process.env.RUNS ?? 5);
const CALLS = Number(process.env.CALLS ?? 100_000);
const server = await startNatsServer();
const self = fileURLToPath(import.meta.url);
const rows: Record<string, { rate: number[]; cpu: number[] }> = {};

for (const kind of KINDS) {
  const [bin, args] = runArgs(thisRuntime(), self, ["--responder", kind, server.url]);
  const proc = spawn(bin, args, { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve, reject) => {
    proc.stdout!.on("data", (d) => String(d).includes("ready") && resolve());
    proc.once("exit", (c) => reject(new Error(`responder ${kind} exited ${c}`)));
  });
  let call: () => PromiseLike<unknown>;
  let close: () => Promise<void>;
  if (kind === "full") {
    const mesh = new ta.Mesh([new ta.MeshNode(SUBJECT_NODE, { endpoint: `${server.url}/${SUBJECT_NODE}` })]);
    const echo = await mesh.run(async () => {
      const h = NatsBenchEcho.init();
      await h.echo.go("warm");
      return h;
    });
    const payload = "x".repeat(64);
    call = () => echo.echo.go(payload);
    close = () => mesh.close();
  } else {
    const conn = await natsTransport.connect(`${server.url}/${SUBJECT_NODE}`);
    const frame = new Uint8Array(FRAME_BYTES);
    call = () => conn.request(frame);
    close = () => conn.close();
  }
  await pace(call, 50_000); // warm-up (the JIT)
  rows[kind] = { rate: [], cpu: [] };
  for (let run = 0; run < RUNS; run++) {
    const before = cpuMs(proc.pid!);
    rows[kind].rate.push(await pace(call, CALLS));
    rows[kind].cpu.push((cpuMs(proc.pid!) - before) * 1000 / CALLS);
  }
  await close();
  proc.kill("SIGKILL");
}

// the call path alone, in this process: NodeServer.handler with the call frames a driver sends
{
  const node = new NodeServer({ name: "inproc" });
  const peer = { transport: "nats" as const, connectionId: 1, oneWay: false, signal: new AbortController().signal };
  const owner = "78779469117d934d6fb392b4";
  const created = decode(
    (await node.handler(
      encode({ t: "create", service: "NatsBenchEcho", args: [], gpus: [], replica: 0, owner }),
      peer,
    ))!,
  ) as { id: string };
  const payload = "x".repeat(64);
  let cid = 0;
  const frames = (n: number) =>
    Array.from(
      { length: n },
      () =>
        encode({
          id: created.id,
          method: "echo",
          args: [payload],
          keepAbove: 65_536,
          owner,
          t: "call",
          cid: `5873-${++cid}`,
        }),
    );
  const handle = async (batch: Uint8Array[]) => {
    let i = 0;
    await Promise.all(Array.from({ length: FLIGHT }, async () => {
      while (i < batch.length) await node.handler(batch[i++], peer);
    }));
  };
  await handle(frames(50_000));
  rows.handler = { rate: [], cpu: [] };
  for (let run = 0; run < RUNS; run++) {
    const batch = frames(CALLS); // made before the clock starts
    const before = process.cpuUsage(), s = performance.now();
    await handle(batch);
    const used = process.cpuUsage(before);
    rows.handler.rate.push(CALLS / ((performance.now() - s) / 1000));
    rows.handler.cpu.push((used.user + used.system) / CALLS);
  }
}

const label: Record<string, string> = {
  raw: "raw NATS responder (msg.respond)",
  frames: "serveNats, a handler returning the reply",
  full: "serveNats + NodeServer: the service call",
  handler: "NodeServer.handler alone, in process (no NATS)",
};
console.log(`\n### NATS node cost (${thisRuntime()}, ${RUNS} runs of ${CALLS} calls, ${FLIGHT} in flight)\n`);
console.log("| responder | calls/s (median) | its CPU µs per call (median, min–max) |");
console.log("|---|---|---|");
for (const [k, r] of Object.entries(rows)) {
  console.log(`| ${label[k]} | ${median(r.rate).toFixed(0)} | ${median(r.cpu).toFixed(1)} (${spread(r.cpu)}) |`);
}
await server.kill();
process.exit(0);
