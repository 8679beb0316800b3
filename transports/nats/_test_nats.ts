// Private test helpers: real nats-server processes (single, or a cluster with routes) on loopback,
// each from a config file, from Debian's nats-server package (.ci/run installs it).
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Path of nats-server, or undefined when it is not installed. */
export function natsServerBinary(): string | undefined {
  for (const p of ["nats-server", "/usr/bin/nats-server", "/usr/sbin/nats-server", "/usr/local/bin/nats-server"]) {
    try {
      execFileSync(p, ["--version"], { stdio: "ignore" });
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Why the NATS tests cannot run here (printed by the skip), or false when they can. */
export function natsMissing(): string | false {
  if (natsServerBinary() !== undefined) return false;
  const why = "nats-server is not installed (apt-get install -y nats-server; .ci/run installs it)";
  console.error(`skipping NATS tests: ${why}`);
  return why;
}

/** A free TCP port on 127.0.0.1 (free when asked; the server binds it right after). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** One running nats-server. */
export interface NatsServerProcess {
  readonly port: number;
  readonly url: string;
  readonly proc: ChildProcess;
  /** Everything it printed. */
  output(): string;
  /** SIGKILL, and wait for the exit. */
  kill(): Promise<void>;
  /** SIGTERM (or SIGKILL after 5 s), and wait for the exit. */
  stop(): Promise<void>;
}

/** Options of {@linkcode startNatsServer}. */
export interface NatsServerOptions {
  port?: number;
  /** The server's max_payload in bytes (default: the server's 1 MB). */
  maxPayload?: number;
  /** Serve nats-server's monitoring endpoints (/subsz, /connz) on this port. */
  monitorPort?: number;
  /** Clients must authenticate: with a user and password, or with a token. */
  auth?: { user: string; pass: string } | { token: string };
  /** This server's route port and the other servers' routes, for a cluster. */
  cluster?: { port: number; routes: number[] };
}

let counter = 0;

/** Starts nats-server from a config file on 127.0.0.1 and waits until it accepts clients. */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServerProcess> {
  const bin = natsServerBinary();
  if (bin === undefined) throw new Error("nats-server is not installed");
  const port = options.port ?? await freePort();
  const dir = mkdtempSync(join(tmpdir(), "ta-nats-"));
  const lines = [`listen: 127.0.0.1:${port}`, `server_name: ta_test_${port}_${++counter}`];
  if (options.maxPayload !== undefined) lines.push(`max_payload: ${options.maxPayload}`);
  if (options.auth !== undefined) {
    lines.push(
      "authorization {",
      ..."token" in options.auth
        ? [`  token: ${JSON.stringify(options.auth.token)}`]
        : [`  user: ${JSON.stringify(options.auth.user)}`, `  password: ${JSON.stringify(options.auth.pass)}`],
      "}",
    );
  }
  if (options.monitorPort !== undefined) lines.push(`http: 127.0.0.1:${options.monitorPort}`);
  if (options.cluster) {
    lines.push(
      "cluster {",
      "  name: ta_test",
      `  listen: 127.0.0.1:${options.cluster.port}`,
      `  routes: [${options.cluster.routes.map((p) => `"nats-route://127.0.0.1:${p}"`).join(", ")}]`,
      "}",
    );
  }
  const conf = join(dir, "nats.conf");
  writeFileSync(conf, lines.join("\n") + "\n");
  const proc = spawn(bin, ["-c", conf], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  proc.stdout!.on("data", (d) => (out += d));
  proc.stderr!.on("data", (d) => (out += d));
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  exited.then(() => rmSync(dir, { recursive: true, force: true }));
  await new Promise<void>((resolve, reject) => {
    const check = () => {
      if (out.includes("Server is ready")) return resolve();
      if (proc.exitCode !== null) return reject(new Error(`nats-server exited: ${out}`));
      setTimeout(check, 20);
    };
    check();
  });
  return {
    port,
    url: `nats://127.0.0.1:${port}`,
    proc,
    output: () => out,
    kill: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
      await exited;
    },
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** A cluster of `n` servers on loopback, each routed to all the others. */
export async function startNatsCluster(n: number, options: { maxPayload?: number } = {}): Promise<NatsServerProcess[]> {
  const routePorts = await Promise.all(Array.from({ length: n }, () => freePort()));
  return await Promise.all(
    routePorts.map((p) =>
      startNatsServer({
        maxPayload: options.maxPayload,
        cluster: { port: p, routes: routePorts.filter((q) => q !== p) },
      })
    ),
  );
}
