/**
 * The dashboard's hono app (Web-standard `fetch`, no runtime API): the page at `/`, a live stream of
 * snapshots at `/events` (server-sent events), one snapshot at `/api/snapshot`, the last profile's
 * DAG at `/api/dag` and its Chrome trace at `/trace.json`. It listens to the task event stream only
 * while a page is open (and `lingerMs` after the last one closes, so a reload keeps the counts).
 *
 * @module
 */
import { Hono } from "hono";
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import { describe } from "../../core/describe.ts";
import { onTaskEvent } from "../../core/events.ts";
import { Mesh, meshRuntime } from "../../core/mesh.ts";
import { checkKnownKeys, checkOptionType, type KnownKeys } from "../../core/options.ts";
import type { MeshStats } from "../../core/mesh_runtime.ts";
import { lastProfiler, type Profiler } from "../../core/profile.ts";
import { taskMesh } from "../../core/record.ts";
import { isTracingEnabled } from "../../core/tracing/lifecycle.ts";
import { injectTraceContext } from "../../core/tracing/propagation.ts";
import { unrefTimer } from "../../core/_runtime.ts";
import { timingSafeEqualString } from "../../transports/transport.ts";
import { type NameStats, type StuckTask, TaskAggregator } from "./aggregate.ts";
import { RecordingBudget } from "./budget.ts";
import { type DagLayout, profileDag } from "./dag.ts";
import { DASHBOARD_PAGE } from "./_page.ts";

/**
 * What a dashboard shows: a `Mesh` (its nodes and instances, and the calls submitted in it), or
 * anything with a mesh's `stats()` (then the calls of this whole process).
 */
export interface DashboardSource {
  /** Nodes, their free resources, and the instances placed on them. */
  stats(): MeshStats;
  /** The mesh's options; a `token` there protects the dashboard unless `token` is given. */
  readonly options?: { readonly token?: string };
}

/** Options of {@linkcode createDashboardApp}. */
export interface DashboardAppOptions {
  /**
   * Token a page must give (`Authorization: Bearer <token>`, or `?token=` where a header cannot be
   * set: the event stream, the trace link). Default: the mesh's `token` option; none: open.
   */
  token?: string;
  /** How often the stream sends a snapshot, in ms (default 1000). */
  intervalMs?: number;
  /** How long it keeps listening after the last page closed, in ms (default 10 000). */
  lingerMs?: number;
  /** Most tasks drawn in the DAG (default 300). */
  maxDagTasks?: number;
  /**
   * Share of the time that recording tasks for the dashboard may cost, in (0, 1) (default 0.02):
   * past it, only a share of new tasks is recorded and counts are estimated (see `budget.ts`).
   */
  maxOverhead?: number;
  /**
   * Host names the app answers to besides IP addresses, `localhost` and `listenHost`; `"*"`: any.
   * A request naming another host is refused 403 (a page reaching a loopback dashboard by DNS
   * rebinding names its own host).
   */
  allowHosts?: readonly string[];
  /** The host name the server listens on (answered to, like `localhost`). */
  listenHost?: string;
  /** The clock of the aggregation, in `performance.now()` ms (tests inject one). */
  now?: () => number;
}

/** A node as a snapshot shows it (unbounded resources are `null`, as JSON has no Infinity). */
export interface DashboardNode {
  /** The node's name in the mesh (what errors and the profiler call it). */
  readonly name: string;
  /** Endpoint (`undefined`: in this process). */
  readonly endpoint: string | undefined;
  /** GPUs: total and free (`null`: not limited). */
  readonly gpus: { readonly total: number | null; readonly free: number | null };
  /** CPU cores: total and free (`null`: not limited). */
  readonly cpus: { readonly total: number | null; readonly free: number | null };
  /** True while the mesh has lost the node (its instances show `"lost"`; calls go to their siblings). */
  readonly lost: boolean;
}

/**
 * A service instance as a snapshot shows it: `mesh.stats()`'s, with an `id` that tells it from the
 * others (two `init()`s of one service are each replica 0, maybe on one node).
 */
export type DashboardInstance = MeshStats["instances"][number] & {
  /**
   * Unique among the snapshot's instances: `Service/replica@node`, and for the second, third, …
   * instance of the same service, replica and node (in the order they were made) `#2`, `#3`, …
   * (so it moves up when one made before it goes). The page keeps one row per id.
   */
  readonly id: string;
};

/** What the event stream sends every `intervalMs`. */
export interface DashboardSnapshot {
  /** Wall-clock time of the snapshot (epoch ms). */
  readonly at: number;
  /** The mesh's name. */
  readonly mesh: string;
  /** True once the mesh was closed. */
  readonly closed: boolean;
  /** Nodes and their resources. */
  readonly nodes: readonly DashboardNode[];
  /** Service instances: where placed, calls, outstanding, and an id unique among them. */
  readonly instances: readonly DashboardInstance[];
  /** Per op / `Service.method`, from the event stream since the dashboard started listening. */
  readonly ops: readonly NameStats[];
  /** Calls settled per second, all names together, oldest second first. */
  readonly series: readonly number[];
  /** Seconds in the window of `series` and the percentiles. */
  readonly windowSeconds: number;
  /** Milliseconds the dashboard has been listening. */
  readonly listeningMs: number;
  /** Tracing: on or off, and the trace id of the last root task recorded. */
  readonly tracing: { readonly enabled: boolean; readonly traceId: string | undefined };
  /**
   * Share of the tasks made over the window that were recorded (1: all; less under the recording
   * budget or tracing's sampling, and then counts and rates are estimates), and the budget.
   */
  readonly recording: { readonly share: number; readonly maxOverhead: number };
  /**
   * Tasks the mesh's watchdog (`stuckAfterMs`) reported stuck since the dashboard started listening
   * and not settled yet, with their explanations (at most 50), and how many were reported in all.
   */
  readonly stuck: { readonly tasks: readonly StuckTask[]; readonly reported: number };
  /** The last `profile()`: its number (changes with each new profiler), tasks recorded, still recording. */
  readonly profile: { readonly serial: number; readonly tasks: number; readonly active: boolean } | null;
}

/** What {@linkcode createDashboardApp} returns. */
export interface DashboardApp {
  /** The hono app (serve `app.fetch`). */
  readonly app: Hono;
  /** Pages connected to the event stream now. */
  readonly clients: number;
  /** True while it listens to the task event stream. */
  readonly listening: boolean;
  /** The snapshot the stream would send now. */
  snapshot(): DashboardSnapshot;
  /** The last profile's DAG (`undefined` when no profiler is alive). */
  dag(): (DagLayout & { readonly serial: number }) | undefined;
  /** Ends every stream and stops listening. */
  close(): void;
}

const finite = (n: number): number | null => (Number.isFinite(n) ? n : null);

/**
 * The instances of `stats` with their ids (see {@linkcode DashboardInstance.id}): the service,
 * replica and node alone are not unique (every `init()` of a service has a replica 0).
 */
function withIds(instances: MeshStats["instances"]): DashboardInstance[] {
  const seen = new Map<string, number>();
  return instances.map((i) => {
    const key = `${i.service}/${i.replica}@${i.node}`;
    const n = (seen.get(key) ?? 0) + 1;
    seen.set(key, n);
    return { ...i, id: n === 1 ? key : `${key}#${n}` };
  });
}

/** One recording budget for every dashboard of the process: the sampling gate has one owner. */
let shared: { budget: RecordingBudget; users: number } | undefined;

function acquireBudget(maxOverhead: number): { budget: RecordingBudget; release: () => void } {
  if (shared === undefined) shared = { budget: new RecordingBudget({ maxOverhead }), users: 0 };
  const held = shared;
  held.users++;
  let released = false;
  return {
    budget: held.budget,
    release: () => {
      if (released) return;
      released = true;
      if (--held.users === 0) {
        held.budget.release();
        if (shared === held) shared = undefined;
      }
    },
  };
}

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/** The host name of a `Host` header, without port or IPv6 brackets, lower-cased. */
function hostName(host: string): string {
  const h = host.trim().toLowerCase();
  if (h.startsWith("[")) return h.slice(1, h.indexOf("]") < 0 ? undefined : h.indexOf("]"));
  const colon = h.lastIndexOf(":");
  return colon >= 0 ? h.slice(0, colon) : h;
}

function checkPositive(what: string, name: string, v: number | undefined, min: number): void {
  if (v !== undefined && !(typeof v === "number" && Number.isFinite(v) && v >= min)) {
    throw new RangeError(`${what}: ${name} must be a number ≥ ${min}, got ${describe(v)}`);
  }
}

/**
 * The keys of {@linkcode DashboardAppOptions} (any other is an error naming the closest of these).
 *
 * @example
 * ```ts
 * import { DASHBOARD_APP_OPTION_KEYS } from "./app.ts";
 * if (!DASHBOARD_APP_OPTION_KEYS.allowHosts || "port" in DASHBOARD_APP_OPTION_KEYS) throw new Error("unexpected");
 * ```
 */
export const DASHBOARD_APP_OPTION_KEYS: KnownKeys<DashboardAppOptions> = {
  token: true,
  intervalMs: true,
  lingerMs: true,
  maxDagTasks: true,
  maxOverhead: true,
  allowHosts: true,
  listenHost: true,
  now: true,
};

/**
 * Checks the options of a dashboard's app: an options object with known keys, each value of its
 * type and in range.
 *
 * @param what Who was given them, for the messages (`createDashboardApp`, `serveDashboard`).
 * @param options The options.
 * @throws {TypeError} For what is not an options object, an unknown key (naming the closest) or a
 * value of the wrong type. {@link RangeError} For a number out of its range.
 *
 * @example
 * ```ts
 * import { checkDashboardAppOptions } from "./app.ts";
 * import { throws } from "node:assert/strict";
 * checkDashboardAppOptions("serveDashboard", { intervalMs: 500, allowHosts: ["dash.example"] });
 * throws(() => checkDashboardAppOptions("serveDashboard", { allowHosts: "x" as never }), /allowHosts must be an array/);
 * ```
 */
export function checkDashboardAppOptions(what: string, options: DashboardAppOptions): void {
  checkKnownKeys(what, options, DASHBOARD_APP_OPTION_KEYS);
  checkPositive(what, "intervalMs", options.intervalMs, 10);
  checkPositive(what, "lingerMs", options.lingerMs, 0);
  const maxOverhead: unknown = options.maxOverhead;
  if (maxOverhead !== undefined && !(typeof maxOverhead === "number" && maxOverhead > 0 && maxOverhead < 1)) {
    throw new RangeError(`${what}: maxOverhead must be a number in (0, 1), got ${describe(maxOverhead)}`);
  }
  const maxDagTasks: unknown = options.maxDagTasks;
  if (maxDagTasks !== undefined && !(Number.isSafeInteger(maxDagTasks) && (maxDagTasks as number) >= 1)) {
    throw new RangeError(`${what}: maxDagTasks must be an integer ≥ 1, got ${describe(maxDagTasks)}`);
  }
  checkOptionType(what, "token", options.token, "string");
  checkOptionType(what, "listenHost", options.listenHost, "string");
  checkOptionType(what, "now", options.now, "function");
  const hosts: unknown = options.allowHosts;
  if (hosts !== undefined && !(Array.isArray(hosts) && hosts.every((h) => typeof h === "string"))) {
    throw new TypeError(`${what}: allowHosts must be an array of host names, got ${describe(hosts)}`);
  }
}

/**
 * Builds the dashboard's app for a mesh. Serve it with `serveDashboard` (this entry's `mod.ts`), or
 * put `app.fetch` on any server.
 *
 * @param source The mesh (or anything with its `stats()`).
 * @param options Token, stream period, host names.
 * @returns The app, with its state.
 * @throws {TypeError} When `source` has no `stats()`, for an unknown option (naming the closest
 * one), or an option of the wrong type (`allowHosts` not an array of strings, `token` not a string).
 * @throws {RangeError} When an interval or bound is not a number ≥ its minimum.
 *
 * @example One snapshot through `fetch`
 * ```ts
 * import * as ta from "../../mod.ts";
 * import { createDashboardApp } from "./app.ts";
 * await using mesh = new ta.Mesh([new ta.MeshNode("n1", { cpus: 4 })], { token: "t" });
 * const dash = createDashboardApp(mesh);
 * const refused = await dash.app.fetch(new Request("http://127.0.0.1/api/snapshot"));
 * const res = await dash.app.fetch(new Request("http://127.0.0.1/api/snapshot?token=t"));
 * const snap = await res.json();
 * if (refused.status !== 401 || snap.nodes[0].cpus.free !== 4) throw new Error("unexpected");
 * dash.close();
 * ```
 */
export function createDashboardApp(source: DashboardSource, options: DashboardAppOptions = {}): DashboardApp {
  if (source === null || typeof source !== "object" || typeof source.stats !== "function") {
    throw new TypeError(`createDashboardApp expects a Mesh (or an object with stats()), got ${describe(source)}`);
  }
  checkDashboardAppOptions("createDashboardApp", options);
  const maxOverhead = options.maxOverhead ?? 0.02;
  const token = options.token ?? source.options?.token;
  const rt = source instanceof Mesh ? meshRuntime(source) : undefined;
  const intervalMs = options.intervalMs ?? 1000;
  const lingerMs = options.lingerMs ?? 10_000;
  const maxDagTasks = options.maxDagTasks ?? 300;
  const allowHosts = new Set((options.allowHosts ?? []).map((h) => h.toLowerCase()));
  if (options.listenHost !== undefined) allowHosts.add(hostName(options.listenHost));

  let aggregator: TaskAggregator | undefined;
  let off: (() => void) | undefined;
  let watchers = 0;
  let linger: ReturnType<typeof setTimeout> | undefined;
  const streams = new Set<() => void>();
  let closed = false;
  // the last profiler seen is held here while the dashboard lives, so its DAG stays after it stops
  let profiler: Profiler | undefined;
  const serials = new WeakMap<Profiler, number>();
  let nextSerial = 1;
  let dagCache: { serial: number; count: number; dag: DagLayout } | undefined;

  let releaseBudget: (() => void) | undefined;
  const stopListening = () => {
    off?.();
    off = undefined;
    aggregator = undefined;
    releaseBudget?.();
    releaseBudget = undefined;
  };
  /** Listens while someone watches; returns the release. */
  const watch = (): () => void => {
    watchers++;
    if (linger !== undefined) clearTimeout(linger);
    linger = undefined;
    if (off === undefined) {
      // a mesh's dashboard counts the calls submitted in it: not another mesh's, nor, with nodes in
      // this process (tests), the nodes' own tasks for the same calls
      const agg = new TaskAggregator({
        now: options.now,
        accept: rt === undefined ? undefined : (t) => taskMesh(t) === rt,
        scopeCount: rt === undefined ? undefined : () => rt.tasksMade,
      });
      aggregator = agg;
      const held = acquireBudget(maxOverhead);
      releaseBudget = held.release;
      const budget = held.budget;
      off = onTaskEvent((e) => {
        if (e.kind === "submitted") budget.spend();
        // the events of tasks recorded earlier reopen a shut gate as soon as time has earned it,
        // also while a flood's microtasks keep its timer from firing (else a batch submitted right
        // after a flood would go unrecorded whole)
        else if (budget.gateShut) budget.topUp();
        agg.record(e);
      });
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--watchers > 0 || closed) return;
      if (lingerMs === 0) return stopListening();
      linger = setTimeout(() => {
        linger = undefined;
        if (watchers === 0) stopListening();
      }, lingerMs);
      unrefTimer(linger);
    };
  };

  const currentProfiler = (): Profiler | undefined => {
    const p = lastProfiler();
    if (p !== undefined && p !== profiler) profiler = p;
    if (profiler !== undefined && !serials.has(profiler)) serials.set(profiler, nextSerial++);
    return profiler;
  };

  const snapshot = (): DashboardSnapshot => {
    const stats = source.stats();
    const agg = aggregator?.snapshot();
    const p = currentProfiler();
    let traceId: string | undefined;
    const tracing = isTracingEnabled();
    if (tracing && agg?.lastRoot !== undefined) {
      const parent = injectTraceContext(agg.lastRoot).traceparent;
      if (parent !== undefined) traceId = parent.split("-")[1];
    }
    return {
      at: Date.now(),
      mesh: stats.name,
      closed: stats.closed,
      nodes: stats.nodes.map((n) => ({
        name: n.name,
        endpoint: n.endpoint,
        gpus: { total: finite(n.gpus.total), free: finite(n.gpus.free) },
        cpus: { total: finite(n.cpus.total), free: finite(n.cpus.free) },
        lost: n.lost === true,
      })),
      instances: withIds(stats.instances),
      ops: agg?.names ?? [],
      series: agg?.series ?? [],
      windowSeconds: agg?.windowSeconds ?? 60,
      listeningMs: agg?.elapsedMs ?? 0,
      tracing: { enabled: tracing, traceId },
      recording: { share: agg?.recordedShare ?? 1, maxOverhead },
      stuck: { tasks: agg?.stuck ?? [], reported: agg?.stuckReported ?? 0 },
      profile: p === undefined ? null : { serial: serials.get(p)!, tasks: p.tasks().length, active: p.active },
    };
  };

  const dag = (): (DagLayout & { readonly serial: number }) | undefined => {
    const p = currentProfiler();
    if (p === undefined) return undefined;
    const serial = serials.get(p)!;
    const count = p.tasks().length;
    if (dagCache === undefined || dagCache.serial !== serial || dagCache.count !== count) {
      dagCache = { serial, count, dag: profileDag(p, { maxTasks: maxDagTasks }) };
    }
    return { ...dagCache.dag, serial };
  };

  const authorized = (c: Context): boolean => {
    if (token === undefined) return true;
    const header = c.req.header("authorization");
    const presented = header !== undefined && /^bearer /i.test(header) ? header.slice(7) : c.req.query("token");
    return presented !== undefined && timingSafeEqualString(presented, token);
  };

  const app = new Hono();
  app.use("*", async (c, next) => {
    const host = c.req.header("host");
    if (host !== undefined && !allowHosts.has("*")) {
      const name = hostName(host);
      if (!(IPV4.test(name) || name.includes(":") || name === "localhost" || allowHosts.has(name))) {
        return c.text(
          `Refused: this dashboard does not answer to the host "${name}" (allow it with allowHosts)`,
          403,
        );
      }
    }
    await next();
    c.header("x-content-type-options", "nosniff");
    c.header("referrer-policy", "no-referrer");
  });
  const refuse = (c: Context) =>
    c.json({ error: token === undefined ? "unauthorized" : "this dashboard needs the mesh's token" }, 401);

  app.get("/", (c) => {
    c.header("cache-control", "no-store");
    c.header(
      "content-security-policy",
      "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; " +
        "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    );
    return c.html(DASHBOARD_PAGE);
  });
  app.get("/api/snapshot", (c) => (authorized(c) ? c.json(snapshot()) : refuse(c)));
  app.get("/api/dag", (c) => {
    if (!authorized(c)) return refuse(c);
    const d = dag();
    return d === undefined ? c.json({ error: "no profile: start one with ta.profile()" }, 404) : c.json(d);
  });
  app.get("/trace.json", (c) => {
    if (!authorized(c)) return refuse(c);
    const p = currentProfiler();
    if (p === undefined) return c.json({ error: "no profile: start one with ta.profile()" }, 404);
    c.header("content-disposition", 'attachment; filename="thinkagain-trace.json"');
    return c.json(p.toChromeTrace());
  });
  app.get("/events", (c) => {
    if (!authorized(c)) return refuse(c);
    if (closed) return c.text("dashboard closed", 503);
    return streamSSE(c, async (stream) => {
      const release = watch();
      let wake: (() => void) | undefined;
      const end = () => {
        stream.abort();
        wake?.();
      };
      streams.add(end);
      stream.onAbort(() => wake?.());
      try {
        while (!stream.aborted && !closed) {
          await stream.writeSSE({ event: "snapshot", data: JSON.stringify(snapshot()) });
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, intervalMs);
            wake = () => {
              clearTimeout(t);
              resolve();
            };
          });
          wake = undefined;
        }
      } finally {
        streams.delete(end);
        release();
      }
    });
  });

  return {
    app,
    get clients() {
      return watchers;
    },
    get listening() {
      return off !== undefined;
    },
    snapshot,
    dag,
    close() {
      if (closed) return;
      closed = true;
      for (const end of [...streams]) end();
      if (linger !== undefined) clearTimeout(linger);
      stopListening();
    },
  };
}
