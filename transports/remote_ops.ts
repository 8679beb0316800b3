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
import type { TaskInfo } from "../core/events.ts";
import { injectTraceContext, isTracingEnabled } from "../core/tracing/mod.ts";
import { handleWire, wireValue } from "./handle_wire.ts";
import { RemoteObject } from "./remote_object.ts";
import { materializeArgs } from "../core/lazy_value.ts";
import { Task } from "../core/task.ts";
import { AuthError } from "../core/errors.ts";
import type { Span } from "@opentelemetry/api";
import type { Mutable, NodeLink } from "./link.ts";
import { meshLink } from "./link_table.ts";
import { natsQueueLink } from "./nats/queue_link.ts";
import type { CallMessage, WelcomeMessage } from "./protocol.ts";
import {
  argsAfterLoss,
  awaited,
  callDataFields,
  pipeArgs,
  pipelinedLink,
  planPipeline,
  sentPipelined,
} from "./objects.ts";
import { putArgs, putCopyLost } from "./stored_puts.ts";

function inFlightOf(link: NodeLink): number {
  return link.inFlight;
}

function noop(): void {}

/**
 * The body that runs a remote-capable op on a node of `mesh`: one that registered the op and offers
 * at least `gpus` GPUs, the one with the fewest calls in flight from this mesh; with no such node
 * reachable, the op runs here as a plain op would, unless a node refused the mesh's token (then the
 * call fails with that `AuthError`). `undefined` when the mesh has no remote node.
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
    const hook = a.pop() as CancelHook;
    // the op's own span, or for a call sampled out a context that says so (its node traces nothing)
    const trace = injectTraceContext(hook.task as TaskInfo | undefined);
    const span = isTracingEnabled() ? otelTrace.getActiveSpan() : undefined; // before any await: the op's own
    // a call let through for pipelining goes where the result it names is
    const pinned = pipelinedLink(hook.task);
    if (pinned !== undefined) return sendOp(mesh, name, pinned, a, hook, trace, span, body);
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
      let refused: AuthError | undefined;
      const answered = await Promise.all(links.map((l) =>
        l.welcome().then(fits, (e) => {
          if (e instanceof AuthError) refused ??= e;
          return false;
        })
      ));
      candidates = links.filter((_, i) => answered[i]);
      // a node that refused this mesh's token is a mistake to show, not a node to do without
      if (candidates.length === 0 && refused !== undefined) throw refused;
    }
    if (candidates.length === 0) {
      // no node registered the op: it runs here, as a plain op would
      noteOpPlacement(name, undefined);
      span?.setAttribute("thinkagain.executor", "local");
      // results kept on nodes among its arguments are fetched first, as for any body run here
      const here = localArgs(a);
      return registeredOps().get(name)!.fn(...(here instanceof Promise ? await here : here));
    }
    // a node holding results it is given takes the call (they need not travel)
    // among NATS nodes on the same servers, NATS hands the call to one member of the op's queue group
    const link = candidates.find((l) => holdsArgument(a, l)) ?? natsQueueLink(mesh, name, candidates, handleWire) ??
      leastLoaded(candidates, inFlightOf)!;
    return sendOp(mesh, name, link, a, hook, trace, span, body);
  };
  return Object.assign(body, { [ABORTABLE]: true });
}

/** `args` with every result among them here: refs let through awaited, kept objects fetched. */
function localArgs(args: unknown[]): unknown[] | Promise<unknown[]> {
  if (!args.some((v) => v instanceof Task)) {
    const fetching = materializeArgs(args);
    return fetching === undefined ? args : fetching.then(() => args);
  }
  return Promise.all(args).then(async (out) => {
    await materializeArgs(out);
    return out;
  });
}

function holdsArgument(args: unknown[], link: NodeLink): boolean {
  return args.some((v) => v instanceof RemoteObject && v.link === link);
}

/**
 * Sends one op call on `link`: the results among its arguments are named, not carried; a large
 * result stays on the node; the calls waiting for this one that go to the same node leave right
 * behind it (pipelining).
 */
async function sendOp(
  mesh: MeshRuntime,
  name: string,
  link: NodeLink,
  a: unknown[],
  hook: CancelHook,
  trace: Record<string, string>,
  span: Span | undefined,
  body: (...args: unknown[]) => unknown,
  again = false,
): Promise<unknown> {
  noteOpPlacement(name, link.node);
  span?.setAttribute("thinkagain.node", link.node);
  const timeoutMs = mesh.options.timeoutMs;
  // (a put value is named as its copy stored on a node, or travels as its bytes, encoded once)
  const prepared = pipeArgs(putArgs(a, link), link);
  const piped = prepared instanceof Promise ? await prepared : prepared;
  try {
    const args = await wireValue(piped.args, mesh);
    const task = hook.task;
    const retries = ((task as { _target?: { policy?: { retries?: number } } } | undefined)?._target?.policy?.retries ??
      0) > 0;
    const plan = planPipeline(task, link, retries);
    const sent = a.slice(); // (what a re-run sends: the same inputs)
    const message: Mutable<Omit<CallMessage, "t" | "cid">> = {
      op: name,
      args,
      ...(timeoutMs && Number.isFinite(timeoutMs) ? { timeoutMs } : {}), // Infinity: no deadline
      ...(trace.traceparent !== undefined ? { trace } : {}),
    };
    callDataFields(message, piped, plan, link, awaited(task));
    const result = await link.call(
      message,
      hook,
      span,
      (cid) => {
        piped.sent();
        if (task !== undefined) sentPipelined(task, link, cid, plan);
      },
    );
    // lineage: an op that may be retried can make its kept result again if its node is lost
    if (retries && result instanceof RemoteObject) {
      result.rebuild = () => Promise.resolve(body(...sent, { cancel: undefined }));
    }
    return result;
  } catch (e) {
    // a node holding one of its arguments was lost: those made again (or the loss named), once
    const args = again ? undefined : putCopyLost(e, a, link) ? a : await argsAfterLoss(e, a, link);
    if (args === undefined) throw e;
    return await sendOp(mesh, name, link, args, hook, trace, span, body, true);
  } finally {
    piped.ended(); // (and `piped` holds the objects it names alive until the answer came)
  }
}
