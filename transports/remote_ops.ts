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
import { State, Task } from "../core/task.ts";
import { AuthError, CancelledError, TimeoutError } from "../core/errors.ts";
import { setLongTimeout } from "../core/long_timer.ts";
import type { RunPolicy } from "../core/policy.ts";
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
 * A call sent to a node has a deadline, its op's own `timeoutMs` or else the mesh's: its node is
 * given it, and the call fails with `TimeoutError` here when it passes, whatever the node does (it
 * is told to stop the call). The op's own deadline is kept by its policy (`policy.ts`); the mesh's
 * by a timer here, set only for a call that has one (an op run here has only its own).
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
  const meshMs = meshDeadlineMs(mesh);
  const body = async (...a: unknown[]) => {
    const hook = a.pop() as CancelHook;
    // the mesh's deadline, for an op without one of its own, counts from here (0: none)
    const deadline = meshMs > 0 && ownDeadlineMs(hook) === 0 ? performance.now() + meshMs : 0;
    // the op's own span, or for a call sampled out a context that says so (its node traces nothing)
    const trace = injectTraceContext(hook.task as TaskInfo | undefined);
    const span = isTracingEnabled() ? otelTrace.getActiveSpan() : undefined; // before any await: the op's own
    // a call let through for pipelining goes where the result it names is
    const pinned = pipelinedLink(hook.task);
    if (pinned !== undefined) return sendOp(mesh, name, pinned, a, hook, trace, span, body, deadline);
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
    return sendOp(mesh, name, link, a, hook, trace, span, body, deadline);
  };
  return Object.assign(body, { [ABORTABLE]: true });
}

/** The mesh's deadline for remote calls, ms (0: none; `Infinity` is none). */
function meshDeadlineMs(mesh: MeshRuntime): number {
  const t = mesh.options.timeoutMs;
  return t !== undefined && t > 0 && Number.isFinite(t) ? t : 0;
}

/** The op's own deadline, ms (0: none), from the policy of the call's task (`hook.task`). */
function ownDeadlineMs(hook: CancelHook): number {
  return (hook.task as { _target?: { policy?: RunPolicy } } | undefined)?._target?.policy?.timeoutMs ?? 0;
}

/**
 * `call`, or `TimeoutError` (of a deadline of `ms`) once `left` ms have passed: the node is told to
 * stop the call then, as a policy's deadline does for an op with a deadline of its own
 * (`policy.ts`). The driver keeps the deadline itself: a node that never answers (wedged, of
 * another version, or hostile) must not hold the call past it.
 */
function withinDeadline(
  call: Promise<unknown>,
  hook: CancelHook,
  name: string,
  ms: number,
  left: number,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const stop = setLongTimeout(() => {
      hook.cancel?.();
      reject(new TimeoutError(name, ms));
    }, left);
    call.then((v) => {
      stop();
      resolve(v);
    }, (e) => {
      stop();
      reject(e);
    });
  });
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
 * behind it (pipelining). `deadline` (a `performance.now()` time; 0: none) is the mesh's deadline
 * of a call whose op has none of its own: kept here.
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
  deadline: number,
  again = false,
): Promise<unknown> {
  noteOpPlacement(name, link.node);
  span?.setAttribute("thinkagain.node", link.node);
  // the deadline the node is given: the op's own (as its policy keeps it here), else the mesh's
  const timeoutMs = ownDeadlineMs(hook) || meshDeadlineMs(mesh);
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
      ...(timeoutMs > 0 ? { timeoutMs } : {}),
      ...(trace.traceparent !== undefined ? { trace } : {}),
    };
    callDataFields(message, piped, plan, link, awaited(task));
    // past its deadline (or cancelled) before it could leave: the node is not asked at all
    const left = deadline === 0 ? 0 : deadline - performance.now();
    if (deadline !== 0 && left <= 0) throw new TimeoutError(name, timeoutMs);
    if (task !== undefined && (task as Task<unknown>)._state >= State.COMPLETED) {
      throw new CancelledError(name, "cancelled before it was sent");
    }
    const calling = link.call(
      message,
      hook,
      span,
      (cid) => {
        piped.sent();
        if (task !== undefined) sentPipelined(task, link, cid, plan);
      },
    );
    const result = await (deadline === 0 ? calling : withinDeadline(calling, hook, name, timeoutMs, left));
    // lineage: an op that may be retried can make its kept result again if its node is lost
    if (retries && result instanceof RemoteObject) {
      result.rebuild = () => Promise.resolve(body(...sent, { cancel: undefined }));
    }
    return result;
  } catch (e) {
    // the node stopped it at the deadline it was given: the caller's TimeoutError, as here
    if (timeoutMs > 0 && e instanceof CancelledError && e.reason === "timeout") throw new TimeoutError(name, timeoutMs);
    // a node holding one of its arguments was lost: those made again (or the loss named), once
    const args = again ? undefined : putCopyLost(e, a, link) ? a : await argsAfterLoss(e, a, link);
    if (args === undefined) throw e;
    return await sendOp(mesh, name, link, args, hook, trace, span, body, deadline, true);
  } finally {
    piped.ended(); // (and `piped` holds the objects it names alive until the answer came)
  }
}
