/**
 * Remote-capable ops: where a call of one runs (a node that registered it, else here) and how it
 * travels there.
 *
 * @module
 */
import { leastLoaded } from "../core/placement.ts";
import { trace as otelTrace } from "@opentelemetry/api";
import { ABORTABLE, type CancelHook } from "../core/cancel.ts";
import type { MeshRuntime } from "../core/mesh_runtime.ts";
import { registeredOps } from "../core/op.ts";
import { noteOpPlacement } from "../core/record.ts";
import { injectTraceContext, isTracingEnabled } from "../core/tracing/mod.ts";
import { handleWire, wireValue } from "./handle_wire.ts";
import { meshLink, type NodeLink } from "./link.ts";
import { natsQueueLink } from "./nats/queue_link.ts";
import type { WelcomeMessage } from "./protocol.ts";

function inFlightOf(link: NodeLink): number {
  return link.inFlight;
}

function noop(): void {}

/**
 * The body that runs a remote-capable op on a node of `mesh`: one that registered the op and offers
 * at least `gpus` GPUs, the one with the fewest calls in flight from this mesh; with no such node
 * reachable, the op runs here as a plain op would. `undefined` when the mesh has no remote node.
 *
 * @param mesh The mesh the call runs in.
 * @param name The op's registered name.
 * @param gpus GPUs the op asks for.
 * @returns An abortable body (its last argument is the call's cancel hook), or `undefined`.
 */
export function remoteOpBody(
  mesh: MeshRuntime,
  name: string,
  gpus: number,
): ((...args: unknown[]) => unknown) | undefined {
  if (!mesh.hasRemoteNodes) return undefined;
  const body = async (...a: unknown[]) => {
    const trace = injectTraceContext(); // before any await: the active span is the op's own
    const span = isTracingEnabled() ? otelTrace.getActiveSpan() : undefined;
    const hook = a.pop() as CancelHook;
    const links = mesh.nodes.filter((n) => n.endpoint !== undefined).map((n) => meshLink(mesh, n, handleWire));
    const fits = (w: WelcomeMessage) => w.ops.includes(name) && w.gpus >= gpus;
    // the nodes whose welcome is known take the call at once; the others are asked meanwhile (each
    // hello bounded, a failed one not asked again before its backoff), so they join later calls, and
    // a frozen node never holds a call to the others
    let candidates = links.filter((l) => {
      const w = l.knownWelcome();
      return w !== undefined && fits(w);
    });
    if (candidates.length > 0) {
      for (const l of links) if (l.knownWelcome() === undefined) l.welcome().catch(noop);
    } else {
      const answered = await Promise.all(links.map((l) => l.welcome().then(fits, () => false)));
      candidates = links.filter((_, i) => answered[i]);
    }
    if (candidates.length === 0) {
      // no node registered the op: it runs here, as a plain op would
      noteOpPlacement(name, undefined);
      span?.setAttribute("thinkagain.executor", "local");
      return registeredOps().get(name)!.fn(...a);
    }
    // among NATS nodes on the same servers, NATS hands the call to one member of the op's queue group
    const link = natsQueueLink(mesh, name, candidates, handleWire) ??
      leastLoaded(candidates, inFlightOf)!;
    noteOpPlacement(name, link.node);
    span?.setAttribute("thinkagain.node", link.node);
    const timeoutMs = mesh.options.timeoutMs;
    return link.call(
      {
        op: name,
        args: await wireValue(a, mesh),
        ...(timeoutMs && Number.isFinite(timeoutMs) ? { timeoutMs } : {}), // Infinity: no deadline
        ...(trace.traceparent !== undefined ? { trace } : {}),
      },
      hook,
      span,
    );
  };
  return Object.assign(body, { [ABORTABLE]: true });
}
