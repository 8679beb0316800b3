/**
 * A live dashboard for a mesh, served by hono on Bun, Deno or Node: its nodes (endpoint, GPUs and
 * CPUs free of total), its service instances (where placed, calls, outstanding), per op and
 * `Service.method` the calls, failures, calls in flight, latency p50/p95 and throughput over the
 * last minute, the DAG of the last `ta.profile()` with its critical path, its Perfetto trace, and the
 * trace id while tracing is on. One page with a plain script (no build step, nothing from a
 * network), updated by server-sent events. It listens to the task event stream only while a page is
 * open, and records tasks within a budget of the time (`maxOverhead`, default 2 %): past it, counts
 * are estimated from the share recorded. A mesh with a `token` asks the page for it.
 *
 * @example A dashboard for a mesh
 * ```ts
 * import * as ta from "../../mod.ts";
 * import { serveDashboard } from "./mod.ts";
 * await using mesh = new ta.Mesh([new ta.MeshNode("n1", { gpus: 2, cpus: 8 })]);
 * await using dashboard = await serveDashboard(mesh, { port: 0 });
 * // open dashboard.url in a browser
 * const snap = await (await fetch(`${dashboard.url}/api/snapshot`)).json();
 * if (snap.nodes[0].gpus.total !== 2) throw new Error("unexpected");
 * ```
 *
 * @module
 */
import { describe } from "../../core/describe.ts";
import { checkKnownKeys, checkOptionType, type KnownKeys } from "../../core/options.ts";
import { serve } from "../serve.ts";
import type { ServeOptions } from "../types.ts";
import {
  checkDashboardAppOptions,
  createDashboardApp,
  DASHBOARD_APP_OPTION_KEYS,
  type DashboardApp,
  type DashboardAppOptions,
  type DashboardSource,
} from "./app.ts";

export {
  createDashboardApp,
  type DashboardApp,
  type DashboardAppOptions,
  type DashboardInstance,
  type DashboardNode,
  type DashboardSnapshot,
  type DashboardSource,
} from "./app.ts";
export {
  type AggregateSnapshot,
  type NameStats,
  type StuckTask,
  TaskAggregator,
  type TaskAggregatorOptions,
  type WindowStats,
} from "./aggregate.ts";
export { RecordingBudget, type RecordingBudgetOptions } from "./budget.ts";
export { type DagLayout, type DagTask, layoutDag, type LayoutDagOptions, profileDag } from "./dag.ts";

/** Options of {@linkcode serveDashboard}. */
export interface DashboardOptions extends DashboardAppOptions {
  /** Interface to listen on (default `127.0.0.1`). */
  hostname?: string;
  /** Port (default 0: a free one; `url` tells which). */
  port?: number;
  /** Aborting closes the dashboard, like `close()`. */
  signal?: AbortSignal;
}

const DASHBOARD_OPTION_KEYS: KnownKeys<DashboardOptions> = {
  ...DASHBOARD_APP_OPTION_KEYS,
  hostname: true,
  port: true,
  signal: true,
};

/** A served dashboard. */
export interface Dashboard extends AsyncDisposable {
  /** `http://host:port`: open it in a browser. */
  readonly url: string;
  /** The port really bound. */
  readonly port: number;
  /** The app and its state (clients, whether it listens). */
  readonly app: DashboardApp;
  /** Ends the streams, stops listening and closes the port. Idempotent. */
  close(): Promise<void>;
}

/**
 * Serves a mesh's dashboard on a port of this runtime (Bun, Deno or Node).
 *
 * @param mesh The mesh (or anything with its `stats()`; a `NodeServer`'s `mesh` for a node).
 * @param options Host, port, token (default: the mesh's), stream period.
 * @returns The served dashboard; `url` is the page.
 * @throws {TypeError} When `mesh` has no `stats()`, for an unknown option (naming the closest
 * one), or an option of the wrong type. {@link RangeError} For a port or interval out of range.
 *
 * @example A token-protected mesh's dashboard asks for the token
 * ```ts
 * import * as ta from "../../mod.ts";
 * import { serveDashboard } from "./mod.ts";
 * await using mesh = new ta.Mesh([new ta.MeshNode("n1")], { token: "s3cret" });
 * await using dashboard = await serveDashboard(mesh);
 * const page = await fetch(dashboard.url); // the page's shell, no data
 * const data = await fetch(`${dashboard.url}/api/snapshot`);
 * await page.body?.cancel();
 * await data.body?.cancel();
 * if (page.status !== 200 || data.status !== 401) throw new Error("unexpected");
 * ```
 */
export async function serveDashboard(mesh: DashboardSource, options: DashboardOptions = {}): Promise<Dashboard> {
  // a typo must not pass unnoticed: a "prot" would serve on a port nobody asked for
  checkKnownKeys("serveDashboard", options, DASHBOARD_OPTION_KEYS);
  const { hostname = "127.0.0.1", port = 0, signal, ...appOptions } = options;
  checkOptionType("serveDashboard", "hostname", hostname, "string");
  if (!(Number.isInteger(port) && port >= 0 && port <= 65535)) {
    throw new RangeError(`serveDashboard: port must be an integer from 0 to 65535, got ${describe(port)}`);
  }
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError(`serveDashboard: signal must be an AbortSignal, got ${describe(signal)}`);
  }
  checkDashboardAppOptions("serveDashboard", appOptions);
  const app = createDashboardApp(mesh, { ...appOptions, listenHost: options.listenHost ?? hostname });
  const serveOptions: ServeOptions = { hostname, port, signal };
  let served;
  try {
    served = await serve(app.app, serveOptions);
  } catch (e) {
    app.close();
    throw e;
  }
  options.signal?.addEventListener("abort", () => app.close(), { once: true });
  let closing: Promise<void> | undefined;
  const close = () =>
    closing ??= (async () => {
      app.close();
      await served.close();
    })();
  return { url: served.url, port: served.port, app, close, [Symbol.asyncDispose]: close };
}
