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
import { serve } from "../serve.ts";
import type { ServeOptions } from "../types.ts";
import { createDashboardApp, type DashboardApp, type DashboardAppOptions, type DashboardSource } from "./app.ts";

export {
  createDashboardApp,
  type DashboardApp,
  type DashboardAppOptions,
  type DashboardNode,
  type DashboardSnapshot,
  type DashboardSource,
} from "./app.ts";
export {
  type AggregateSnapshot,
  type NameStats,
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
 * @throws {TypeError} When `mesh` has no `stats()`.
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
  const hostname = options.hostname ?? "127.0.0.1";
  const app = createDashboardApp(mesh, { ...options, listenHost: options.listenHost ?? hostname });
  const serveOptions: ServeOptions = { hostname, port: options.port ?? 0, signal: options.signal };
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
