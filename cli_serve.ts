/**
 * The `thinkagain` command, behind its entry (`cli.ts`, which sets the process up first and then
 * loads this): `thinkagain serve <module>` starts a node that serves the services and remote-capable
 * ops its module registers, over HTTP (`/rpc`) and WebSocket (`/ws`) on one port, on Bun, Deno or
 * Node. Its parts: the arguments ({@linkcode parseServeArgs}), the node ({@linkcode startNode}), and
 * the command's run with its signals and exit code ({@linkcode runCli}).
 *
 * It prints one ready line, `thinkagain node <name> listening on http://<host>:<port>`, and on
 * SIGINT/SIGTERM stops taking calls, drains the ones in flight, closes the port and exits 0.
 *
 * @module
 */
import process from "node:process";
import { pathToFileURL } from "node:url";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { DEFAULT_LEASE_MS, NodeServer } from "./server.ts";
import { serveFrames } from "./adapters/serve.ts";
import { devices, GpuDevice } from "./mod.ts";
import { endpointProblem } from "./core/mesh_node.ts";
import { checkToken } from "./core/token.ts";
import { ReplyParking } from "./transports/nats/parking.ts";

const USAGE = `usage: thinkagain serve <module> [--host 127.0.0.1] [--port 7070] [--name NAME] [--dashboard[=PORT]]
                       [--gpus N|auto] [--cpus N] [--token-file PATH] [--max-frame-bytes N] [--drain-ms N]
                       [--lease-ms N] [--allow-origin ORIGIN]... [--allow-host NAME]... [--peer URL]...
                       [--max-connections N] [--headers-timeout-ms N] [--idle-timeout-ms N]
                       [--max-calls-per-connection N] [--start SERVICE[:N]]... [--nats nats://HOST:4222]
                       [--object-store-bytes N] [--max-in-flight N|unbounded] [--max-in-flight-bytes N|unbounded]
  The token (visible ASCII characters, ! to ~, no spaces) comes from THINKAGAIN_TOKEN or
  --token-file (a file that holds it; surrounding whitespace is dropped); --token T works too, but
  shows it to every user of the machine (ps).
  --allow-origin: a browser page's origin
  (https://app.example) that may call this node (default: none; pages are refused). --allow-host:
  a host name this node answers to besides IP addresses, localhost and --host (DNS names of a
  cluster; default: none, so a page cannot reach it by DNS rebinding). --lease-ms: how long instances outlive the last
  keepalive of the driver that created them (default 30000; 0: until destroyed or drained). --peer: a
  node (ws://10.0.0.2:7070) this node may call with its token when a handle of an instance there
  arrives; handles and results also lead to the nodes a driver declared, given the token only when
  that driver presented it (so nodes of one mesh sharing a token need no --peer).
  --dashboard: also serve the node's dashboard page on --host, port PORT (default: a free one; it
  prints where), behind the token. --start: construct N (default 1) resident instances of SERVICE
  before the ready line (a model loaded once); every driver shares them (Service.connect()); a
  constructor that throws fails the start (exit 1). --nats: also serve the node on that NATS cluster
  (nats://h1:4222,h2:4222 for several seeds) and announce it (name, GPUs, CPUs, services, ops), so
  drivers find it with Mesh.discover({ nats }); its ops are served in a NATS queue group per op.
  --object-store-bytes: the most bytes the results this node keeps for drivers may hold together
  (results too large to send back unasked; default 1073741824); a result past it fails its call.
  --max-in-flight / --max-in-flight-bytes: the most calls (default 100000), and the most bytes of
  their frames (default 1073741824), in flight on this node from all clients together; a call past
  either is refused at once with OverloadedError (unbounded: no limit).
  A value is the next word (or --flag=VALUE); a next word that starts with -- is the next option, so
  the value is missing (write --token=--x to mean it). Numbers are decimal integers; the times in ms
  (--drain-ms, --lease-ms, --headers-timeout-ms, --idle-timeout-ms) are at most 2147483647 (about
  24.8 days, the longest a timer holds). --host ::1 listens on IPv6 (the ready line: http://[::1]:PORT).`;

/** Parsed `serve` options. */
export interface ServeCommand {
  module: string;
  host: string;
  port: number;
  name: string;
  gpus: number | "auto";
  cpus: number | undefined;
  token: string | undefined;
  /** True when the token was given as `--token` (visible in the process list). */
  tokenOnCommandLine: boolean;
  maxFrameBytes: number | undefined;
  drainMs: number;
  /** Port of the node's dashboard page (`--dashboard[=PORT]`; 0: a free one); none without the flag. */
  dashboard: number | undefined;
  /** How long instances outlive their driver's last keepalive (0: no lease). */
  leaseMs: number;
  /** Browser origins allowed to call the node (`--allow-origin`, repeatable). */
  allowOrigins: string[];
  /** Host names the node answers to besides IP addresses, localhost and `host` (`--allow-host`). */
  allowHosts: string[];
  /** Most connections open at once (`--max-connections`; default: the adapter's). */
  maxConnections: number | undefined;
  /** How long a request's headers may take, in ms (`--headers-timeout-ms`). */
  headersTimeoutMs: number | undefined;
  /** How long a connection may stay open with no request in progress, in ms (`--idle-timeout-ms`). */
  idleTimeoutMs: number | undefined;
  /** Most calls in flight per connection (`--max-calls-per-connection`; default: NodeServer's). */
  maxCallsPerConnection: number | undefined;
  /** Most bytes the node's object store holds (`--object-store-bytes`; default: NodeServer's). */
  objectStoreBytes: number | undefined;
  /** Most calls in flight on the node (`--max-in-flight`; default: NodeServer's). */
  maxInFlight?: number | "unbounded";
  /** Most bytes of call frames in flight on the node (`--max-in-flight-bytes`; default: NodeServer's). */
  maxInFlightBytes?: number | "unbounded";
  /** Nodes this node may call with its token (`--peer`, repeatable). */
  peers: string[];
  /** The NATS cluster to serve and announce the node on too (`--nats nats://host:4222`). */
  nats: string | undefined;
  /** Resident instances to construct before the ready line (`--start SERVICE[:N]`, repeatable). */
  start: { service: string; replicas: number }[];
}

/** The longest delay a timer holds (2^31 - 1 ms, about 24.8 days): a longer one fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Why a flag in ms stops at {@linkcode MAX_TIMER_MS}, for its error. */
const TIMER_BOUND = "about 24.8 days, the longest a timer holds";

/**
 * The integer a flag's value spells in decimal digits. `Number()` takes more: "" and " " (a blank
 * `--port` became a random port), "0x1F90", "1e3", "0b11"; only digits pass here, after an optional
 * "-" (so that "-1" gets the range error, not "not a number").
 */
function int(flag: string, v: string, min: number, max: number = Number.MAX_SAFE_INTEGER, why?: string): number {
  const n = /^-?\d+$/.test(v) ? Number(v) : NaN;
  if (!(n >= min && n <= max)) {
    const range = max === Number.MAX_SAFE_INTEGER && !(n > max) ? `≥ ${min}` : `from ${min} to ${max}`;
    throw new TypeError(`${flag} needs an integer ${range}${why ? ` (${why})` : ""}, got ${JSON.stringify(v)}`);
  }
  return n + 0; // "-0" is 0
}

function isOrigin(v: string): boolean {
  try {
    return new URL(v).origin === v;
  } catch {
    return false;
  }
}

/**
 * Parses `serve` arguments; throws a TypeError that says what is wrong.
 *
 * @param argv The arguments after `serve`.
 * @param env Environment variables (for THINKAGAIN_TOKEN).
 * @returns The options.
 *
 * @example
 * ```ts
 * import { parseServeArgs } from "./cli_serve.ts";
 * const o = parseServeArgs(["app.ts", "--port", "0", "--gpus", "2"], {});
 * if (o.port !== 0 || o.gpus !== 2 || o.host !== "127.0.0.1") throw new Error("unexpected");
 * ```
 */
export function parseServeArgs(argv: readonly string[], env: Record<string, string | undefined>): ServeCommand {
  const out: ServeCommand = {
    module: "",
    host: "127.0.0.1",
    port: 7070,
    name: "",
    gpus: 0,
    cpus: undefined,
    token: env.THINKAGAIN_TOKEN?.trim() || undefined, // (surrounding whitespace dropped, as from a file)
    tokenOnCommandLine: false,
    maxFrameBytes: undefined,
    drainMs: 30_000,
    dashboard: undefined,
    leaseMs: DEFAULT_LEASE_MS,
    allowOrigins: [],
    allowHosts: [],
    maxConnections: undefined,
    headersTimeoutMs: undefined,
    idleTimeoutMs: undefined,
    maxCallsPerConnection: undefined,
    objectStoreBytes: undefined,
    peers: [],
    nats: undefined,
    start: [],
  };
  let tokenFile: string | undefined;
  /** Where the token came from, for the error about one no transport could carry. */
  let tokenFrom = "THINKAGAIN_TOKEN";
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] = a.startsWith("--") && a.includes("=")
      ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)]
      : [a, undefined];
    // a flag's value is the next word, unless that word is another option: `--token --dashboard` is
    // a token left out, not the token "--dashboard" (a value may start with one "-": `--gpus -1`)
    const value = (): string => {
      if (inline !== undefined) return inline;
      const next = argv[i + 1];
      if (next === undefined) throw new TypeError(`${flag} needs a value`);
      if (next.startsWith("--")) throw new TypeError(`${flag} needs a value, got the option ${next}`);
      i++;
      return next;
    };
    switch (flag) {
      case "--host":
        out.host = value();
        if (!out.host) throw new TypeError("--host needs a value");
        break;
      case "--port":
        out.port = int("--port", value(), 0, 65535);
        break;
      case "--name":
        out.name = value();
        if (!out.name) throw new TypeError("--name needs a value");
        break;
      case "--gpus": {
        const v = value();
        out.gpus = v === "auto" ? "auto" : int("--gpus", v, 0);
        break;
      }
      case "--cpus":
        out.cpus = int("--cpus", value(), 1);
        break;
      case "--token":
        if (tokenFile !== undefined) throw new TypeError("give one of --token and --token-file, not both");
        out.token = value();
        if (!out.token) throw new TypeError("--token needs a value");
        out.tokenOnCommandLine = true;
        tokenFrom = "--token";
        break;
      case "--token-file": {
        if (out.tokenOnCommandLine) throw new TypeError("give one of --token and --token-file, not both");
        tokenFile = value();
        if (!tokenFile) throw new TypeError("--token-file needs the path of a file that holds the token");
        let text: string;
        try {
          text = readFileSync(tokenFile, "utf8");
        } catch (e) {
          throw new TypeError(`--token-file cannot read ${tokenFile}: ${(e as Error).message}`);
        }
        out.token = text.trim();
        if (!out.token) throw new TypeError(`--token-file ${tokenFile} holds no token (it is empty)`);
        tokenFrom = `--token-file ${tokenFile}`;
        break;
      }
      case "--max-frame-bytes":
        out.maxFrameBytes = int("--max-frame-bytes", value(), 1024);
        break;
      case "--drain-ms":
        out.drainMs = int("--drain-ms", value(), 0, MAX_TIMER_MS, TIMER_BOUND);
        break;
      case "--lease-ms":
        out.leaseMs = int("--lease-ms", value(), 0, MAX_TIMER_MS, TIMER_BOUND);
        break;
      case "--allow-origin": {
        const v = value();
        if (v !== "*" && !isOrigin(v)) {
          throw new TypeError(`--allow-origin needs an origin like https://app.example (or *), got ${v || "nothing"}`);
        }
        out.allowOrigins.push(v);
        break;
      }
      case "--allow-host": {
        const v = value();
        if (!/^(\*|[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])$/.test(v)) {
          throw new TypeError(`--allow-host needs a host name like nodes.example (or *), got ${v || "nothing"}`);
        }
        out.allowHosts.push(v);
        break;
      }
      case "--max-connections":
        out.maxConnections = int("--max-connections", value(), 1);
        break;
      case "--headers-timeout-ms":
        out.headersTimeoutMs = int("--headers-timeout-ms", value(), 1, MAX_TIMER_MS, TIMER_BOUND);
        break;
      case "--idle-timeout-ms":
        out.idleTimeoutMs = int("--idle-timeout-ms", value(), 1, MAX_TIMER_MS, TIMER_BOUND);
        break;
      case "--max-calls-per-connection":
        out.maxCallsPerConnection = int("--max-calls-per-connection", value(), 1);
        break;
      case "--object-store-bytes":
        out.objectStoreBytes = int("--object-store-bytes", value(), 0);
        break;
      case "--max-in-flight": {
        const v = value();
        out.maxInFlight = v === "unbounded" ? v : int("--max-in-flight (or unbounded)", v, 1);
        break;
      }
      case "--max-in-flight-bytes": {
        const v = value();
        out.maxInFlightBytes = v === "unbounded" ? v : int("--max-in-flight-bytes (or unbounded)", v, 1);
        break;
      }
      case "--dashboard":
        // its port only inline (`--dashboard=8080`): a separate word would be taken for the module
        out.dashboard = inline === undefined ? 0 : int("--dashboard", inline, 0, 65535);
        break;
      case "--nats": {
        const v = value();
        const problem = /^nats:\/\/[^/\s]+\/?$/i.test(v) ? endpointProblem(v) : "";
        if (problem !== undefined) {
          throw new TypeError(
            `--nats needs a NATS server's URL like nats://127.0.0.1:4222, got ${v || "nothing"}${
              problem ? `: ${problem}` : ""
            }`,
          );
        }
        out.nats = v;
        break;
      }
      case "--peer": {
        const v = value();
        const problem = /^(wss?|https?):\/\/[^/\s]+/.test(v) ? endpointProblem(v) : "";
        if (problem !== undefined) {
          throw new TypeError(
            `--peer needs a node's endpoint like ws://10.0.0.2:7070, got ${v || "nothing"}${
              problem ? `: ${problem}` : ""
            }`,
          );
        }
        out.peers.push(v);
        break;
      }
      case "--start": {
        const v = value();
        const m = /^([^:\s]+)(?::(\d+))?$/.exec(v);
        const replicas = m?.[2] === undefined ? 1 : Number(m[2]);
        if (m === null || replicas < 1 || replicas > 4096) {
          throw new TypeError(
            `--start needs a service name and an optional count from 1 to 4096 (Generator, Generator:2), got ${
              v || "nothing"
            }`,
          );
        }
        out.start.push({ service: m[1], replicas });
        break;
      }
      default:
        if (flag.startsWith("-")) throw new TypeError(`unknown option ${flag}`);
        if (out.module) throw new TypeError(`one module only, got ${out.module} and ${flag}`);
        out.module = flag;
    }
  }
  if (!out.module) throw new TypeError("serve needs the module that registers your services");
  // a token drivers could send over ws:// but not over http:// (or NATS) is refused here, not there
  checkToken(tokenFrom, out.token);
  if (!out.name && out.nats !== undefined) {
    // on a NATS cluster nodes are told apart by name alone: node-<port> would repeat across machines
    throw new TypeError("--nats needs --name: every node on a NATS cluster needs a name of its own");
  }
  if (!out.name) out.name = `node-${out.port}`;
  return out;
}

/**
 * Starts a node from parsed options: imports the module, serves it, prints the ready line.
 *
 * @param cmd The parsed options.
 * @returns The node and a `shutdown()` that drains and closes it.
 */
export async function startNode(cmd: ServeCommand): Promise<{ url: string; shutdown(): Promise<void> }> {
  await import(pathToFileURL(resolve(cmd.module)).href);
  let gpus: number | GpuDevice[] = cmd.gpus === "auto" ? 0 : cmd.gpus;
  if (cmd.gpus === "auto") {
    const webgpu = await import("./adapters/webgpu/mod.ts");
    const off = webgpu.registerWebGpu();
    gpus = (await devices()).filter((d): d is GpuDevice => d instanceof GpuDevice);
    off();
    if (gpus.length === 0) {
      // said, not silent: a node asked to find its GPUs that serves none is worth a line
      const why = typeof navigator === "undefined" || !("gpu" in navigator)
        ? "this runtime has no WebGPU (navigator.gpu)"
        : "WebGPU offers no adapter";
      console.error(`thinkagain node ${cmd.name}: --gpus auto found no GPU (${why}): serving 0 GPUs`);
    }
  }
  const node = new NodeServer({
    name: cmd.name,
    gpus,
    cpus: cmd.cpus,
    token: cmd.token,
    peers: cmd.peers,
    leaseMs: cmd.leaseMs,
    maxCallsPerConnection: cmd.maxCallsPerConnection,
    objectStoreBytes: cmd.objectStoreBytes,
    maxInFlight: cmd.maxInFlight,
    maxInFlightBytes: cmd.maxInFlightBytes,
    onLeaseExpired: ({ instances, services, leaseMs }) =>
      console.error(
        `thinkagain node ${cmd.name}: a driver sent no keepalive for ${leaseMs} ms; destroyed its ${instances} ` +
          `instance${instances === 1 ? "" : "s"} (${[...new Set(services)].join(", ")})`,
      ),
  });
  // on a NATS cluster, replies too large for NATS wait here for their callers to fetch over the port
  const parking = cmd.nats === undefined ? undefined : new ReplyParking();
  const server = await serveFrames(parking === undefined ? node.handler : parking.wrap(node.handler), {
    hostname: cmd.host,
    port: cmd.port,
    token: cmd.token,
    maxFrameBytes: cmd.maxFrameBytes,
    allowOrigins: cmd.allowOrigins,
    allowHosts: cmd.allowHosts,
    maxConnections: cmd.maxConnections,
    headersTimeoutMs: cmd.headersTimeoutMs,
    idleTimeoutMs: cmd.idleTimeoutMs,
    onAcceptError: acceptErrorLog(cmd.name),
    health: () => node.health(),
  });
  try {
    // served first, so GET /healthz says "loading" while the models load; the ready line waits
    for (const { service, replicas } of cmd.start) await node.startResident(service, { replicas });
  } catch (e) {
    await node.drain({ graceMs: 0 }).catch(() => {});
    await server.close().catch(() => {});
    throw e;
  }
  const dashboard = cmd.dashboard === undefined
    ? undefined
    : await (await import("./adapters/dashboard/mod.ts")).serveDashboard(node, {
      hostname: cmd.host,
      port: cmd.dashboard,
      token: cmd.token,
      // the names the node answers to, its dashboard too (a cluster's DNS name)
      allowHosts: cmd.allowHosts,
    });
  if (dashboard !== undefined) console.error(`thinkagain node ${cmd.name}: dashboard on ${dashboard.url}`);
  // on a NATS cluster too: served on its subject, announced, found by Mesh.discover
  let nats: { endpoint: string; leave(): Promise<void>; close(): Promise<void> } | undefined;
  if (cmd.nats !== undefined) {
    try {
      nats = await (await import("./transports/nats/node.ts")).startNatsNode(node.handler, {
        nats: cmd.nats,
        name: cmd.name,
        token: cmd.token,
        maxFrameBytes: cmd.maxFrameBytes,
        direct: server.url,
        parking,
      });
    } catch (e) {
      await node.drain({ graceMs: 0 }).catch(() => {});
      await server.close().catch(() => {});
      await dashboard?.close().catch(() => {});
      throw e;
    }
    console.error(`thinkagain node ${cmd.name}: announced on NATS as ${nats.endpoint}`);
  }
  let closing: Promise<void> | undefined;
  return {
    url: server.url,
    shutdown: () =>
      closing ??= (async () => {
        await nats?.leave(); // drivers stop placing here; calls in flight still get their answers
        await node.drain({ graceMs: cmd.drainMs });
        await nats?.close();
        await server.close();
        await dashboard?.close();
      })(),
  };
}

/** Logs failed accepts (e.g. out of file descriptors), at most one line per 10 s with a count. */
function acceptErrorLog(name: string): (error: unknown) => void {
  let last = -Infinity;
  let unlogged = 0;
  return (error) => {
    const now = performance.now();
    if (now - last < 10_000) {
      unlogged++;
      return;
    }
    const more = unlogged > 0 ? ` (and ${unlogged} more since the last report)` : "";
    console.error(
      `thinkagain node ${name}: accepting a connection failed: ${(error as Error)?.message ?? error}${more}; ` +
        "still accepting",
    );
    last = now;
    unlogged = 0;
  };
}

/**
 * Why the node did not start, in words: the error's message, and what Bun keeps beside it. A module
 * that does not build rejects there with "3 errors building …" and the build messages in `errors`,
 * or with one message whose text says not where; each has a `position`. (Deno writes the place and
 * the line into the message.)
 */
function startFailure(e: unknown): string {
  const text = (m: unknown): string => {
    const message = (m as { message?: unknown } | null)?.message;
    const p = (m as { position?: { file?: unknown; line?: unknown; column?: unknown } | null } | null)?.position;
    const at = typeof p?.file === "string" && p.file !== "" ? `${p.file}:${p.line}:${p.column}: ` : "";
    return at + (typeof message === "string" ? message : String(m));
  };
  const errors = (e as { errors?: unknown } | null)?.errors;
  return text(e) + (Array.isArray(errors) ? errors.map((m) => `\n  ${text(m)}`).join("") : "");
}

/**
 * Runs the command with `argv` (the arguments after the program): prints its usage or error, or
 * serves until a signal drains the node.
 *
 * @param argv The arguments, `serve <module> ...`.
 * @returns The exit code.
 */
export async function runCli(argv: string[]): Promise<number> {
  // asked for: the usage goes to stdout (`thinkagain --help | less`) and is no failure
  const isHelp = (a: string | undefined) => a === "--help" || a === "-h";
  if (isHelp(argv[0]) || (argv[0] === "serve" && argv.slice(1).some(isHelp))) {
    console.log(USAGE);
    return 0;
  }
  if (argv[0] !== "serve") {
    console.error(argv[0] === undefined ? USAGE : `unknown command ${argv[0]}\n${USAGE}`);
    return 2;
  }
  let cmd: ServeCommand;
  try {
    cmd = parseServeArgs(argv.slice(1), process.env);
  } catch (e) {
    console.error(`thinkagain: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  let node: Awaited<ReturnType<typeof startNode>>;
  try {
    node = await startNode(cmd);
  } catch (e) {
    console.error(`thinkagain: cannot start node "${cmd.name}": ${startFailure(e)}`);
    return 1;
  }
  // handlers are installed before the ready line, so a signal right after it is never missed
  const exit = new Promise<number>((done) => {
    let signals = 0;
    const stop = (signal: string) => {
      if (++signals > 1) return done(130); // a second signal: leave now
      console.error(`thinkagain node ${cmd.name}: ${signal}, draining`);
      node.shutdown().then(() => {
        console.error(`thinkagain node ${cmd.name}: drained, exiting`);
        done(0);
      }, (e) => {
        console.error(`thinkagain node ${cmd.name}: shutdown failed: ${(e as Error).message}`);
        done(1);
      });
    };
    process.on("SIGINT", () => stop("SIGINT"));
    process.on("SIGTERM", () => stop("SIGTERM"));
  });
  if (cmd.token === undefined) {
    // serving with no token is allowed, but never silently: on loopback every local user and
    // program can still reach the port (browser pages cannot, unless --allow-origin lets them)
    const who = /^(127\.|localhost$|::1$|\[::1\]$)/.test(cmd.host)
      ? "every user and program on this machine"
      : "anyone who can reach the port";
    console.error(
      `thinkagain node ${cmd.name}: listening on ${cmd.host} without a token: ${who} can create and call the ` +
        "services this module registered (set THINKAGAIN_TOKEN or --token-file)",
    );
  } else if (cmd.tokenOnCommandLine) {
    console.error(
      `thinkagain node ${cmd.name}: the token was given with --token, so every user of this machine can read ` +
        "it in the process list; pass it in THINKAGAIN_TOKEN or --token-file instead",
    );
  }
  console.log(`thinkagain node ${cmd.name} listening on ${node.url}`);
  return await exit;
}
