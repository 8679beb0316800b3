/**
 * A replica whose instance lives on a remote node: it creates the instance over its link (or, for
 * a handle that arrived from elsewhere, knows its id), sends its calls as `call` frames (ordered,
 * pipelined over ordered transports, cancellable, with deadlines), makes the instance again when
 * the node restarted, fails over to a sibling replica when its node is lost, and destroys the
 * instance on close within a bounded wait.
 *
 * @module
 */
import { trace as otelTrace } from "@opentelemetry/api";
import { ABORTABLE, type CancelHook } from "../core/cancel.ts";
import type { Deployment, ReplicaState } from "../core/deployment.ts";
import type { InstanceInfo } from "../core/context.ts";
import { GpuDevice } from "../core/devices.ts";
import { CancelledError, OverloadedError, ProtocolError, TransportError } from "../core/errors.ts";
import { localReplicaOf } from "../core/local_replica.ts";
import { MeshRuntime } from "../core/mesh_runtime.ts";
import { MailboxReplica } from "../core/mailbox.ts";
import type { RunPolicy } from "../core/policy.ts";
import { CONTEXT_FREE } from "../core/invoke.ts";
import { runBody } from "../core/run_body.ts";
import type { ServiceDef } from "../core/service_def.ts";
import { State, type Task } from "../core/task.ts";
import type { TaskInfo } from "../core/events.ts";
import { injectTraceContext, isTracingEnabled } from "../core/tracing/mod.ts";
import type { Mutable, NodeLink } from "./link.ts";
import { argumentRefusal, type CallMessage, type CreatedMessage } from "./protocol.ts";
import {
  argsAfterLoss,
  awaited,
  callDataFields,
  NO_PLAN,
  pipeArgs,
  type PipedCall,
  planPipeline,
  sentPipelined,
} from "./objects.ts";
import { refusalExplained } from "./reach_refusal.ts";
import { putArgs, putCopyLost } from "./stored_puts.ts";
import type { Span } from "@opentelemetry/api";

/** How many calls may be in flight to one instance over an ordered transport (pipelining). */
const PIPELINE = 1024;

/** A replica whose instance lives on a remote node. */
export class RemoteReplica extends MailboxReplica {
  readonly link: NodeLink;
  private readonly args: unknown[];
  private readonly policy: RunPolicy | undefined;
  private readonly owner: object;
  private instanceId: Promise<string> | undefined;
  /** The id once known, so calls need no await for it. */
  private createdId: string | undefined;
  /** Whether this replica made its instance (and so holds a lease on its link). */
  private holding = false;
  /** Why the last attempt to create the instance failed (cleared when one succeeds). */
  private createFailure: unknown = undefined;
  /** The node session the instance was made in (a restarted node has another). */
  private session: string | undefined;
  /**
   * False for a handle that arrived from elsewhere: it knows the instance's id, not its constructor
   * arguments, so it never creates the instance anew.
   */
  private readonly creator: boolean;
  /** The deployment it belongs to (a restart takes its place there; its siblings fail over to it). */
  private deployment: Deployment | undefined;
  /** The replica made in its place on another node after its node was lost (`restarts`). */
  private replacement: RemoteReplica | undefined;
  private readonly bodies = new Map<string, (...args: unknown[]) => unknown>();
  /**
   * Set when its node said it shuts down (it refused a call so, or the mesh removed it with
   * `drain`): calls go to a sibling that is up. Cleared once the node is lost (the draining process
   * is gone: what comes back at its endpoint is another) or takes a call sent after it was set.
   */
  private draining = false;
  /**
   * Whether calls still come here when its node is lost or drains, to make the instance again on
   * another node (`restarts`); cleared once that failed (none left, nothing fits).
   */
  private mayRestart: boolean;
  /** Calls its siblings forwarded here that have not ended (its load, besides its own). */
  private forwarded = 0;

  /**
   * @param owner The mesh (or node process) whose handles and links this replica uses.
   * @param def The service.
   * @param args Its constructor arguments (sent with `create`; may hold handles).
   * @param index The replica's index in its deployment.
   * @param link The link to the node the instance lives on.
   * @param gpus GPUs the placement gave it on that node.
   * @param policy Retries and deadline of its calls.
   * @param existingId For a handle that arrived from elsewhere: the instance's id (never created here).
   */
  constructor(
    owner: object,
    def: ServiceDef,
    args: unknown[],
    index: number,
    link: NodeLink,
    gpus: readonly GpuDevice[],
    policy: RunPolicy | undefined,
    existingId?: string,
  ) {
    super(def, index, link.node, gpus, link.ordered ? PIPELINE : def.maxConcurrency);
    this.owner = owner;
    this.link = link;
    this.args = args;
    this.policy = policy;
    this.creator = existingId === undefined;
    this.mayRestart = this.creator && (def.restarts ?? 0) > 0 && owner instanceof MeshRuntime;
    if (existingId !== undefined) {
      this.instanceId = Promise.resolve(existingId);
      this.createdId = existingId;
    } else this.instance().catch(() => {}); // create eagerly; failures surface on the calls
  }

  protected override get remote(): boolean {
    return true;
  }

  /** Knows its siblings in `deployment`, to fail over to when its node is lost or drains. */
  attach(deployment: Deployment): void {
    this.deployment = deployment;
  }

  /** Its node shuts down cleanly (`mesh.removeNode(…, { drain: true })`): new calls go to its siblings. */
  nodeDraining(): void {
    this.draining = true;
  }

  /** Whether its node drains (see {@linkcode RemoteReplica.draining}). */
  private isDraining(): boolean {
    if (this.draining && this.link.lost) this.draining = false;
    return this.draining;
  }

  /**
   * True while its node is lost or drains and no restart is due (see `Deployment.route`: calls go
   * to a sibling that is up). Read on every call of a replicated service: two fields, mostly.
   */
  get down(): boolean {
    return (this.isDraining() || this.link.lost) && !this.mayRestart;
  }

  /** The instance id on the node, creating the instance when needed. */
  instance(): Promise<string> {
    if (this.instanceId === undefined) {
      const p = Promise.resolve(this.declared(this.link.handles.toWire(this.args, this.owner))).then((args) =>
        this.link.request<CreatedMessage>({
          t: "create",
          service: this.def.name,
          args,
          gpus: this.gpus.map((g) => g.id),
          replica: this.index,
          owner: this.link.leaseId,
        }, "created").catch((e) => {
          throw argumentRefusal(e, args, `Cannot create service "${this.def.name}" on node "${this.link.node}"`);
        })
      ).then((m) => {
        if (this.instanceId === p) {
          this.createdId = m.id;
          this.session = m.session;
          this.createFailure = undefined;
          this.gpusGiven(m.gpus);
        }
        if (!this.holding) {
          // (re-created after a node restart: the lease is already held)
          this.holding = true;
          this.link.hold();
        }
        this.link.leaseIs(m.leaseMs);
        return m.id;
      });
      p.catch((e) => {
        if (this.instanceId !== p) return;
        this.instanceId = undefined; // retried on the next call
        this.createFailure = e;
      });
      this.instanceId = p;
    }
    return this.instanceId;
  }

  /**
   * Takes the GPUs the node gave the instance as its own (what `mesh.stats()` shows): placement
   * gave none where the node had not answered yet, and the ids it asked for are the node's to
   * change. (The mesh's own count of what it took keeps what placement gave: it gives that back.)
   */
  private gpusGiven(ids: readonly number[] | undefined): void {
    if (!Array.isArray(ids) || !ids.every((id) => Number.isSafeInteger(id) && id >= 0)) return;
    const now = this.gpus;
    if (ids.length === now.length && ids.every((id, i) => now[i].id === id)) return;
    const byId = new Map(now.map((g) => [g.id, g]));
    // (a field of the mailbox, set once there; a remote instance learns its GPUs only now)
    (this as { gpus: readonly GpuDevice[] }).gpus = ids.map((id) => byId.get(id) ?? new GpuDevice(id));
  }

  /**
   * The instance id to hand out as a reference: first made sure it lives in the node's current
   * session (the welcome is cached, and fetched again after the connection dropped), since the
   * holder of a reference cannot make the instance again; the creator can, and does so here.
   */
  async reference(): Promise<string> {
    const id = await this.instance();
    if (!this.creator || this.session === undefined) return id;
    let w = await this.link.welcome().catch(() => undefined);
    if (w === undefined || w.session === this.session) return id;
    // another session: make sure it is the node's session now, not a welcome cached before it changed
    this.link.forgetWelcome();
    w = await this.link.welcome().catch(() => undefined);
    if (w === undefined || w.session === this.session) return id;
    if (this.createdId === id) {
      this.createdId = undefined;
      this.instanceId = undefined;
    }
    return this.instance();
  }

  protected unavailable(): unknown {
    return undefined;
  }

  /**
   * `"ready"` once the node created the instance, `"failed"` when the last attempt failed;
   * `"lost"` while the link has lost its node, `"draining"` while the node shuts down.
   */
  get state(): ReplicaState {
    const draining = this.isDraining();
    if (this.link.lost) return "lost";
    if (draining) return "draining";
    if (this.createdId !== undefined) return "ready";
    return this.createFailure === undefined ? "creating" : "failed";
  }

  /** Why the last attempt to create the instance failed, while {@linkcode state} is `"failed"`. */
  get failure(): unknown {
    return this.createdId === undefined ? this.createFailure : undefined;
  }

  /** A call from inside the instance this handle names (it lives in this process, a node): a self-call. */
  protected override replicaOf(instance: InstanceInfo): MailboxReplica | undefined {
    return instance.id !== undefined && instance.id === this.createdId ? localReplicaOf(instance) : undefined;
  }

  protected start(task: Task<unknown>, method: string): void {
    let body = this.bodies.get(method);
    if (body === undefined) {
      body = Object.assign((...a: unknown[]) => {
        const hook = a.pop() as CancelHook;
        return this.invoke(method, a, hook, true);
      }, { [ABORTABLE]: true, [CONTEXT_FREE]: true });
      this.bodies.set(method, body);
    }
    runBody(task, body, this, undefined, this.policy, this.doneBound);
  }

  /**
   * Sends one call; with `failover`, it goes elsewhere (a sibling that is up, or the instance made
   * again: `restarts`) when this node is known lost or draining, or refuses it as it drains.
   */
  invoke(method: string, args: unknown[], hook: CancelHook, failover: boolean): Promise<unknown> {
    // the call's own span, or for a call sampled out a context that says so (its node traces nothing)
    const trace = injectTraceContext(hook.task as TaskInfo | undefined);
    const span = isTracingEnabled() ? otelTrace.getActiveSpan() : undefined;
    // arguments that are all primitives name nothing (the common case: no preparation, no retry),
    // and the call's own promise is the body's (no async function around it: a promise and a job
    // less per call)
    if (!(failover && (this.link.lost || this.draining)) && primitivesOnly(args)) {
      return this.send(method, args, undefined, hook, trace, span, failover ? args : undefined);
    }
    return this.invokePrepared(method, args, hook, failover, trace, span);
  }

  /** {@linkcode invoke} past its common case: failing over, or arguments that may name results. */
  private async invokePrepared(
    method: string,
    args: unknown[],
    hook: CancelHook,
    failover: boolean,
    trace: Record<string, string>,
    span: Span | undefined,
  ): Promise<unknown> {
    if (failover && (this.link.lost || this.isDraining())) {
      // made again on a live node while its service has restarts left (its capacity comes back),
      // else a sibling on another node takes the call
      const elsewhere = this.restarted() ?? this.sibling();
      if (elsewhere !== undefined) return this.forward(elsewhere, method, args, hook);
    }
    // results among the arguments are named, not carried (pipelined refs, objects kept on nodes)
    if (primitivesOnly(args)) return this.send(method, args, undefined, hook, trace, span, failover ? args : undefined);
    for (let again = false;; again = true) {
      // (a put value is named as its copy stored on a node, or travels as its bytes, encoded once)
      const prepared = pipeArgs(putArgs(args, this.link), this.link);
      const piped = prepared instanceof Promise ? await prepared : prepared;
      let refused: unknown;
      try {
        return await this.send(method, piped.args, piped, hook, trace, span, undefined);
      } catch (e) {
        // sent elsewhere below, once its turn here ended
        if (failover && (drainRefusal(e) || this.triesSiblings(e))) refused = e;
        else {
          // a node holding one of its arguments was lost: those made again (or the loss named), once
          const remade = again
            ? undefined
            : putCopyLost(e, args, this.link)
            ? args
            : await argsAfterLoss(e, args, this.link);
          if (remade === undefined) throw e;
          args = remade;
        }
      } finally {
        piped.ended(); // (a call that never left gives up its turn)
      }
      if (refused === undefined) continue;
      return drainRefusal(refused)
        ? this.refusedWhileDraining(refused, method, args, hook)
        : this.refusedAsFull(refused, method, args, hook);
    }
  }

  /**
   * The replica a call goes to instead of this one (whose node is lost or drains, or refused it as
   * full): the sibling on a node that is up with the fewest calls, its own and those forwarded to it
   * (so forwarded calls spread), if any, other than those `refused` names.
   */
  private sibling(refused?: readonly RemoteReplica[]): RemoteReplica | undefined {
    const rs = this.deployment?.replicas;
    if (rs === undefined) return undefined;
    let best: RemoteReplica | undefined;
    let bestLoad = Infinity;
    for (let i = 0; i < rs.length; i++) {
      const s = rs[i];
      if (!(s instanceof RemoteReplica) || s === this || s.link.lost || s.isDraining()) continue;
      if (refused !== undefined && refused.includes(s)) continue;
      const load = s.outstanding + s.forwarded;
      if (best === undefined || load < bestLoad) {
        best = s;
        bestLoad = load;
      }
    }
    return best;
  }

  /**
   * Sends a call made to this replica to `to` instead (its node is lost, drains or is full): counted there
   * (`mesh.stats()` counts calls where they ran), and as its load until it ends.
   */
  private forward(to: RemoteReplica, method: string, args: unknown[], hook: CancelHook): Promise<unknown> {
    const task = hook.task ?? hook;
    const from = countedAt.get(task) ?? this; // (a retry may forward the call again)
    from.calls--;
    to.calls++;
    countedAt.set(task, to);
    to.forwarded++;
    return to.invoke(method, args, hook, false).finally(() => to.forwarded--);
  }

  /**
   * A call this node refused as it drains: it never ran, so it goes to the instance made again
   * elsewhere (`restarts`) or to a sibling that is up, and later calls go there too (see
   * {@linkcode RemoteReplica.down}); with neither, the refusal is the call's error.
   */
  private refusedWhileDraining(e: unknown, method: string, args: unknown[], hook: CancelHook): Promise<unknown> {
    const elsewhere = this.restarted() ?? this.sibling();
    if (elsewhere === undefined) return Promise.reject(e);
    return this.forward(elsewhere, method, args, hook);
  }

  /**
   * Whether a call refused with `e` tries this replica's siblings before its retries pause: `e` is
   * an `OverloadedError` (its node is full: `--max-in-flight`, `--max-in-flight-bytes`,
   * `--max-calls-per-connection`, or its instance's mailbox) and the service has `retries`.
   */
  private triesSiblings(e: unknown): boolean {
    return e instanceof OverloadedError && (this.policy?.retries ?? 0) > 0;
  }

  /**
   * A call this replica's node refused as full, for a service with `retries`: it never ran, so it
   * goes to the sibling up with the fewest calls among those that have not refused it, each in turn
   * (the driver cannot see a node's own bounds, only what it sent there). Refused by them all, the
   * call fails with this node's refusal, which its retries pause after before they try again
   * (`policy.ts`), here first.
   */
  private async refusedAsFull(e: unknown, method: string, args: unknown[], hook: CancelHook): Promise<unknown> {
    const refused: RemoteReplica[] = [this];
    for (let s = this.sibling(refused); s !== undefined; s = this.sibling(refused)) {
      refused.push(s);
      try {
        return await this.forward(s, method, args, hook);
      } catch (err) {
        if (!(err instanceof OverloadedError)) throw err;
      }
    }
    // refused by them all: counted here again, where its retries send it
    const task = hook.task ?? hook, at = countedAt.get(task);
    if (at !== undefined && at !== this) {
      at.calls--;
      this.calls++;
      countedAt.set(task, this);
    }
    throw e;
  }

  /**
   * Sends a call whose arguments {@linkcode pipeArgs} prepared (`piped`; `undefined` when they were
   * all primitives), making the instance first if needed. `original`: the call's arguments, to send
   * elsewhere if the node refuses it as it drains (`undefined`: the refusal is its error).
   */
  private async send(
    method: string,
    args: unknown[],
    piped: PipedCall | undefined,
    hook: CancelHook,
    trace: Record<string, string>,
    span: Span | undefined,
    original: unknown[] | undefined,
  ): Promise<unknown> {
    const wired = this.wired(args, method, hook);
    const task = hook.task;
    // `await ref` calls the ref's then() one microtask after the call was submitted (a thenable is
    // resolved in a job of its own), after the scheduler's turn that sends it: one turn here lets the
    // call see that its caller waits (its result then comes back in the reply, see callDataFields).
    // Every call takes the turn, so calls to an instance still leave in the order they were made.
    const wiredArgs = await wired;
    const plan = planPipeline(task, this.link, (this.policy?.retries ?? 0) > 0);
    // built field by field (no spreads: this runs once per call)
    const message: Mutable<Omit<CallMessage, "t" | "cid">> & { id: string } = {
      id: "",
      method,
      args: wiredArgs,
    };
    const timeoutMs = this.policy?.timeoutMs;
    if (timeoutMs) message.timeoutMs = timeoutMs;
    if (trace.traceparent !== undefined) message.trace = trace;
    callDataFields(message, piped, plan, this.link, awaited(task));
    let planned = plan; // (sent once: a call made again after its instance was lost plans nothing)
    const onSent = piped === undefined && plan.dependents.length === 0 ? undefined : (cid: string) => {
      piped?.sent();
      if (task !== undefined) sentPipelined(task, this.link, cid, planned);
      planned = NO_PLAN;
    };
    for (let attempt = 0;; attempt++) {
      let id = this.createdId;
      if (id === undefined) {
        try {
          id = await this.instance();
        } catch (e) {
          if (drainRefusal(e)) {
            this.draining = true; // (routing sends no more here while a sibling is up)
            if (original !== undefined) return this.refusedWhileDraining(e, method, original, hook);
          }
          throw this.link.asNodeLost(e);
        }
      }
      // cancelled (or past its deadline) while it waited its turn, its instance or its arguments:
      // the task settled and the hook had nothing to stop yet (`link.call` sets it), so it is never
      // sent. Once sent, the hook tells the node, which drops the call if it still waits there.
      if (task !== undefined && (task as Task<unknown>)._state >= State.COMPLETED) {
        throw new CancelledError(
          { name: `${this.def.name}.${method}`, kind: "method" },
          "cancelled before it was sent",
        );
      }
      message.id = id;
      // (a call sent while the node was taken for draining that it answers says it serves again)
      const draining = this.draining;
      try {
        const value = await this.link.call(message, hook, span, onSent);
        if (draining) this.draining = false;
        return value;
      } catch (e) {
        if (drainRefusal(e)) {
          this.draining = true; // (routing sends no more here while a sibling is up)
          if (original !== undefined) return this.refusedWhileDraining(e, method, original, hook);
        }
        if (original !== undefined && this.triesSiblings(e)) return this.refusedAsFull(e, method, original, hook);
        // the node restarted and forgot the instance: its creator makes it again, once
        if (
          attempt === 0 && this.creator && e instanceof ProtocolError && e.message.startsWith("Unknown instance")
        ) {
          if (this.createdId === id) {
            this.createdId = undefined;
            this.instanceId = undefined;
          }
          continue;
        }
        // the instance died with an expired lease (this driver was silent too long): this call says
        // so, and the next one makes a new instance
        if (this.creator && e instanceof ProtocolError && /lease expired/.test(e.message) && this.createdId === id) {
          this.createdId = undefined;
          this.instanceId = undefined;
        }
        // a node calling an instance a handle named, refused there: which nodes, and what to change
        throw refusalExplained(e, this.link, `a call of "${this.def.name}.${method}" through a handle`);
      }
    }
  }

  /**
   * The instance made again on a live node in place of this one, whose node is lost, when its
   * service has `restarts` left (made once: every call waiting here goes to the same one).
   */
  private restarted(): RemoteReplica | undefined {
    if (this.replacement !== undefined || this.deployment === undefined || !(this.owner instanceof MeshRuntime)) {
      return this.replacement;
    }
    const next = this.owner.restartReplica(this.deployment, this, new Set([this.node]));
    if (next instanceof RemoteReplica) this.replacement = next;
    else this.mayRestart = false; // routing sends its calls to its siblings from now on
    return this.replacement;
  }

  /**
   * Arguments that held handles (`toWire` answered with a promise) leave once the node has this
   * mesh's `hello`: it reaches the instances a handle names only on the nodes a mesh declared there.
   */
  private declared<T>(wire: T | Promise<T>): T | Promise<T> {
    return wire instanceof Promise ? wire.then((v) => this.link.welcome().then(() => v, () => v)) : wire;
  }

  /** Settles when the last call still turning handles into references has left or given up. */
  private wiring: Promise<void> | undefined;

  /**
   * The call's arguments as they travel. Turning a handle into a reference may wait (for its
   * instance to exist): the calls after such a call wait their turn, so calls to one instance still
   * leave in the order they started. A call cancelled (or past its deadline) while it waits gives up
   * its turn, so one handle whose node never answers cannot hold the others back.
   */
  private wired(args: unknown[], method: string, hook: CancelHook): unknown[] | Promise<unknown[]> {
    const wire = this.declared(this.link.handles.toWire(args, this.owner));
    const before = this.wiring;
    if (before === undefined && !(wire instanceof Promise)) return wire;
    // observed through `mine` below, possibly only after earlier turns: never unhandled meanwhile
    if (wire instanceof Promise) wire.catch(noop);
    let giveUp!: () => void;
    const gaveUp = new Promise<never>((_, reject) => {
      giveUp = () =>
        reject(
          new CancelledError({ name: `${this.def.name}.${method}`, kind: "method" }, "cancelled before it was sent"),
        );
    });
    gaveUp.catch(noop);
    hook.cancel = giveUp;
    const ready = before === undefined ? wire as Promise<unknown[]> : before.then(() => wire);
    const mine = Promise.race([ready, gaveUp]);
    // this turn ends when the call left or gave up, and never before the turns ahead of it
    const turn: Promise<void> = before === undefined ? mine.then(noop, noop) : before.then(() => mine).then(noop, noop);
    this.wiring = turn;
    turn.then(() => {
      if (this.wiring === turn) this.wiring = undefined;
      if (hook.cancel === giveUp) hook.cancel = undefined;
    });
    return mine;
  }

  protected async dispose(deadline?: number): Promise<void> {
    const p = this.instanceId;
    this.instanceId = undefined;
    this.createdId = undefined;
    try {
      // a node the link has lost is not reached again to close (a hung one would hold mesh.close()
      // once per instance): its lease frees the instance, as a dead node's went with it
      if (p === undefined || this.link.lost || this.link.unresponsive) return;
      // bounded: a frozen node must not hold mesh.close() forever (its lease frees the instance).
      // One wait covers the create's answer, the connection and the destroy's reply; once one
      // destroy on a link got no answer, the link's other instances are left to the lease.
      const most = this.link.destroyTimeoutMs;
      const wait = deadline === undefined ? most : Math.min(most, Math.max(100, deadline - performance.now()));
      let timer: ReturnType<typeof setTimeout> | undefined;
      let timedOut = false;
      const bound = new Promise<undefined>((r) => {
        timer = setTimeout(() => {
          timedOut = true;
          r(undefined);
        }, wait);
      });
      try {
        const id = await Promise.race([p.catch(() => undefined), bound]);
        // (a create that failed made nothing; one that never answered leaves the link's other
        // instances to the lease too)
        if (id === undefined || this.link.lost || this.link.unresponsive) return;
        await Promise.race([
          this.link.request({ t: "destroy", id }, "destroyed", undefined, wait).catch((e) => {
            // no reply, no connection: the node cannot be reached now (a refusal is an answer)
            if (e instanceof TransportError && e.reason !== "refused") this.link.unresponsive = true;
          }),
          bound,
        ]);
      } finally {
        clearTimeout(timer);
        if (timedOut) this.link.unresponsive = true;
      }
    } finally {
      if (this.holding) {
        this.holding = false;
        this.link.release();
      }
    }
  }
}

function noop(): void {}

/** Where a call forwarded from replica to replica is counted now (by its task). */
const countedAt = new WeakMap<object, RemoteReplica>();

/**
 * Whether `e` is a node's refusal of a call because it shuts down (`TransportError` `"refused"`,
 * "is shutting down"): the call never ran there.
 */
function drainRefusal(e: unknown): boolean {
  return e instanceof TransportError && e.reason === "refused" && / is shutting down/.test(e.message);
}

/** Whether no argument is an object (so none is a ref, a kept object or holds one). */
function primitivesOnly(args: unknown[]): boolean {
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if ((typeof a === "object" && a !== null) || typeof a === "function") return false;
  }
  return true;
}
