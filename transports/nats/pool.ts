/**
 * One NATS client connection per set of seed servers in this process, shared by every thinkagain
 * connection and node that uses those servers (the client multiplexes them all), closed when the
 * last user lets go. The client reconnects by itself, to any server of the cluster it learned of.
 *
 * @module
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { TransportError } from "../../core/errors.ts";
import { MAX_TIMER_MS } from "../../core/long_timer.ts";

interface Entry {
  readonly conn: Promise<NatsConnection>;
  refs: number;
}

const pool = new Map<string, Entry>();

/**
 * A URL (list) as it may be shown: passwords (`nats://user:pass@host`) replaced by `***`.
 *
 * @param text A URL, a list of them, or a message holding them.
 * @returns The same text without passwords.
 *
 * @example
 * ```ts
 * import { redactUrl } from "./pool.ts";
 * if (redactUrl("nats://ann:pw@h:4222/n1") !== "nats://ann:***@h:4222/n1") throw new Error("unexpected");
 * ```
 */
export function redactUrl(text: string): string {
  return text
    .replace(/(\/\/[^:@/\s,]*):[^@/\s,]*@/g, "$1:***@")
    .replace(/\/\/[^:@/\s,]+@/g, "//***@"); // a token alone (nats://tok@host)
}

/** The credentials of a set of seed servers, as the NATS client takes them. */
export interface NatsCredentials {
  user?: string;
  pass?: string;
  token?: string;
}

/**
 * Splits the credentials out of seed server URLs: the NATS client ignores those in a server URL
 * (`nats://user:pass@host`, `nats://token@host`), so they go in the connect options instead.
 *
 * @param servers The seed servers (`nats://[user:pass@|token@]host:port`).
 * @returns The servers without credentials, and the credentials (of the first server that has any).
 *
 * @example
 * ```ts
 * import { splitCredentials } from "./pool.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * deepStrictEqual(splitCredentials(["nats://ann:p%40w@h:4222", "nats://h2:4222"]), {
 *   servers: ["nats://h:4222", "nats://h2:4222"], credentials: { user: "ann", pass: "p@w" },
 * });
 * deepStrictEqual(splitCredentials(["nats://tok@h:4222"]), { servers: ["nats://h:4222"], credentials: { token: "tok" } });
 * ```
 */
export function splitCredentials(
  servers: readonly string[],
): { servers: string[]; credentials: NatsCredentials } {
  let credentials: NatsCredentials = {};
  const plain = servers.map((server) => {
    const m = /^(nats:\/\/)([^@/]*)@(.*)$/i.exec(server);
    if (m === null) return server;
    if (Object.keys(credentials).length === 0) {
      const colon = m[2].indexOf(":");
      credentials = colon < 0
        ? { token: decodePart(m[2]) }
        : { user: decodePart(m[2].slice(0, colon)), pass: decodePart(m[2].slice(colon + 1)) };
    }
    return m[1] + m[3];
  });
  return { servers: plain, credentials };
}

function decodePart(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

/** Options of {@linkcode acquireNats}. */
export interface AcquireNatsOptions {
  /**
   * How long the first connect may take before `TransportError("unreachable")`, ms (default 10 s;
   * at most 2^31 - 1, about 24.8 days, which is also what `Infinity` waits).
   */
  connectTimeoutMs?: number;
  /** Named in errors: what the connection is for (an endpoint). */
  purpose?: string;
}

/** A shared NATS client and the function that lets go of it. */
export interface NatsLease {
  /** The client. */
  readonly nc: NatsConnection;
  /** Lets go of it: the last user closes it. Idempotent. */
  release(): Promise<void>;
}

/**
 * Takes a share of the NATS client for `servers`, connecting it on first use.
 *
 * @param servers The seed servers (`nats://host:port`).
 * @param options Connect timeout, and what it is for (in errors).
 * @returns The client and its release.
 * @throws {TransportError} `"unreachable"` when no server answers.
 *
 * @example An unreachable server is a TransportError naming it
 * ```ts
 * import { acquireNats } from "./pool.ts";
 * import { rejects } from "node:assert/strict";
 * await rejects(acquireNats(["nats://127.0.0.1:9"], { connectTimeoutMs: 2000 }), (e: Error) =>
 *   e.name === "TransportError" && e.message.includes("nats://127.0.0.1:9"));
 * ```
 */
export async function acquireNats(servers: readonly string[], options: AcquireNatsOptions = {}): Promise<NatsLease> {
  const key = servers.join(",");
  let entry = pool.get(key);
  if (entry === undefined) {
    // credentials in a server URL are ignored by the client: they go in the options
    const { servers: plain, credentials } = splitCredentials(servers);
    const conn = connect({
      servers: plain,
      ...credentials,
      name: "thinkagain",
      // the client waits on one setTimeout, which fires at once for 2^31 ms or more (Infinity too)
      timeout: Math.min(options.connectTimeoutMs ?? 10_000, MAX_TIMER_MS),
      // a cluster member going away is survived: the client reconnects, forever, to the others
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      pingInterval: 10_000,
    }).catch((cause: unknown) => {
      if (pool.get(key) === created) pool.delete(key);
      throw new TransportError(
        "unreachable",
        `Cannot reach the NATS server${servers.length > 1 ? "s" : ""} ${redactUrl(key)}${
          options.purpose ? ` (for ${redactUrl(options.purpose)})` : ""
        }: ${cause instanceof Error ? redactUrl(cause.message) : String(cause)}`,
        redactUrl(options.purpose ?? key),
        cause,
      );
    });
    const created: Entry = { conn, refs: 0 };
    entry = created;
    pool.set(key, entry);
    conn.then((nc) => {
      // a client closed for good (not by us) is dropped, so the next user connects anew
      nc.closed().then(() => {
        if (pool.get(key) === created) pool.delete(key);
      });
    }, () => {});
  }
  const e = entry;
  e.refs++;
  let nc: NatsConnection;
  try {
    nc = await e.conn;
  } catch (err) {
    e.refs--;
    throw err;
  }
  let released = false;
  return {
    nc,
    release: async () => {
      if (released) return;
      released = true;
      if (--e.refs > 0) return;
      if (pool.get(key) === e) pool.delete(key);
      await nc.close().catch(() => {});
    },
  };
}
