/**
 * The node side: a `NodeServer` answers protocol frames from any transport. It creates instances
 * only of services its module registered, runs their calls through the same mailboxes as local
 * code (one at a time unless `maxConcurrency`), runs registered remote-capable ops, honours
 * cancels and deadlines, and drains in-flight calls on shutdown.
 *
 * This file is the call path and the wiring; the node's other concerns are collaborators of their
 * own: its options and limits (`node_options.ts`), its book of the calls in flight, by connection
 * and against its bounds (`node_calls.ts`), the instances it hosts (`node_instances.ts`),
 * its drivers' leases (`node_leases.ts`), the object store's `fetch`, `store` and `free`
 * (`object_endpoints.ts`), a call's piped arguments (`piped_args.ts`), and its streams
 * (`stream_outlet.ts`).
 *
 * @module
 */
import { errorToWire, frameBytes } from "../core/codec.ts";
import { runInContext } from "../core/context.ts";
import type { GpuDevice } from "../core/devices.ts";
import {
  CancelledError,
  NodeLostError,
  OpExecutionError,
  OverloadedError,
  ProtocolError,
  TransportError,
} from "../core/errors.ts";
import { Mesh, MeshNode, meshRuntime } from "../core/mesh.ts";
import type { MeshRuntime, MeshStats } from "../core/mesh_runtime.ts";
import type { ObjectRef } from "../core/object_ref.ts";
import { cancelTask, State, type Task } from "../core/task.ts";
import type { CancelReason } from "../core/errors.ts";
import { type OpDef, registeredOps } from "../core/op.ts";
import { registeredServices } from "../core/service_def.ts";
import { isTracingEnabled, withExtractedContext } from "../core/tracing/mod.ts";
import { listening } from "../core/events.ts";
import { describe } from "../core/describe.ts";
import { setLongTimeout, untilDeadline } from "../core/long_timer.ts";
import {
  type CallMessage,
  decodeDriverMessage,
  type DriverMessage,
  encodeMessage,
  PROTOCOL_VERSION,
} from "./protocol.ts";
import { PublishedResults } from "./published.ts";
import type { FrameHandler, PeerInfo, TransportName } from "./transport.ts";
import type { NodeHealth } from "./server.ts";
import { HandleReach, reviveValue, wireValue } from "./handle_wire.ts";
import { closeLinks } from "./link_table.ts";
import { deviceBytes, holdsDeviceValues, ObjectStore, readBack } from "./object_store.ts";
import { Stream } from "../core/stream.ts";
import { StreamOutlets } from "./stream_outlet.ts";
import { type NodeServerOptions, resolveNodeLimits } from "./node_options.ts";
import { type Lease, NodeLeases } from "./node_leases.ts";
import { ObjectEndpoints } from "./object_endpoints.ts";
import { PipedArgs, PipedStreams } from "./piped_args.ts";
import { type HostedInstance, NodeInstances, type ServedMethod, ServedOp } from "./node_instances.ts";
import { callKey, callScope, fairCaller, NodeCalls } from "./node_calls.ts";

export {
  DEFAULT_LEASE_MS,
  DEFAULT_MAX_CALLS_PER_CONNECTION,
  DEFAULT_MAX_IN_FLIGHT,
  DEFAULT_MAX_IN_FLIGHT_BYTES,
  type NodeServerOptions,
} from "./node_options.ts";

/**
 * Answers protocol frames: `hello`, `create`, `call`, `cancel`, `destroy`, `ping`. Instances share
 * the fate of the driver that created them: one that sends no keepalive for `leaseMs` is taken for
 * gone, and its instances are destroyed.
 *
 * @example A node in this process, over the in-memory transport
 * ```ts
 * import * as ta from "../mod.ts";
 * import { NodeServer } from "./node_server.ts";
 * import { serveInMemory } from "./in_memory.ts";
 * const Echo = ta.service(class Echo { echo(x: string) { return x; } });
 * const node = new NodeServer({ name: "n1" });
 * const server = serveInMemory("doc-node", node.handler);
 * await using mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: "mem://doc-node" })]);
 * const out = await mesh.run(() => Echo.init().echo.go("hi"));
 * await server.close();
 * if (out !== "hi") throw new Error("unexpected");
 * ```
 */
export class NodeServer {
  /** The node's name. */
  readonly name: string;
  /** Changes each time a node starts, so drivers notice restarts. */
  readonly session: string = crypto.randomUUID();
  /**
   * The mesh its instances and ops run in (nested `.go()` calls use it). What code running here
   * makes (`init()`) is placed by the node itself, on the count of its GPUs and cores that drivers'
   * instances take from (`NodeInstances.deployNested`).
   */
  readonly mesh: Mesh;
  /** Its runtime: what its instances and the calls run here are given. */
  private readonly rt: MeshRuntime;
  /** The context the calls to its instances are submitted in (one for all: a context is never changed). */
  private readonly callCtx: { readonly mesh: MeshRuntime };
  /** Answer frames with this (pass it to a transport server). */
  readonly handler: FrameHandler;
  private readonly gpus: readonly GpuDevice[];
  /** The instances hosted here, and what is free of its GPUs and CPU cores (node_instances.ts). */
  private readonly hosted: NodeInstances;
  /** The instances by id (the hosted instances' own map). */
  private readonly instances: Map<string, HostedInstance>;
  /** When this node last read a frame: its resident instances' dispatch yields to reads. */
  private readonly readClock = { lastRead: 0 };
  private readonly leaseMs: number;
  /** Its drivers' leases, and what expired (node_leases.ts). */
  private readonly leases: NodeLeases;
  /** The leases by driver (the leases' own map: a call renews its driver's in place). */
  private readonly owners: Map<string, Lease>;
  /** Its calls in flight, by connection and call id, against its bounds (node_calls.ts). */
  private readonly book: NodeCalls;
  /** Streams being sent (results of calls that streamed), by call key. */
  private readonly streams = new StreamOutlets();
  private readonly linkOptions: { owner: object; token?: string; transport?: TransportName };
  /** Where handles that arrive here may lead. */
  private readonly reach: HandleReach;
  /** Results that stay here (see `CallMessage.keepAbove`), by object id. */
  private readonly objects: ObjectStore;
  /** Results of calls sent with `publish` (other nodes pull them by that id), until freed. */
  private readonly published: PublishedResults;
  /** Where the results a call names instead of carrying come from (piped_args.ts). */
  private readonly pipes: PipedArgs;
  /** What `fetch`, `store` and `free` are answered by (object_endpoints.ts). */
  private readonly objectEndpoints: ObjectEndpoints;
  private draining = false;
  /** Set once a drain let the results kept here go: a `fetch` of one is told so. */
  private drained = false;
  /** The `fetch`es (other nodes' pulls, drivers' awaits) being answered now, which a drain lets end. */
  private fetching = 0;
  /** Told when {@linkcode NodeServer.fetching} is back to 0 while a drain waits for that. */
  private fetchesEnded: (() => void) | undefined;

  /**
   * A node serving the services and ops this process registered.
   *
   * @param options The node's name, resources, and how it reaches other nodes.
   */
  constructor(options: NodeServerOptions) {
    const limits = resolveNodeLimits(options);
    this.leaseMs = limits.leaseMs;
    this.name = options.name;
    const node = new MeshNode(options.name, { gpus: options.gpus ?? 0, cpus: options.cpus });
    this.gpus = node.gpus;
    this.mesh = new Mesh([node], { name: `node ${options.name}`, token: options.token, transport: options.transport });
    this.rt = meshRuntime(this.mesh);
    // one count of this node's GPUs and cores: the instances its code makes take from the one that
    // drivers' instances do (a mesh of its own would count them apart, and give a GPU twice), and
    // belong to whoever that code works for (node_instances.ts)
    this.rt.deploy = (def, args) => this.hosted.deployNested(def, args);
    this.callCtx = { mesh: this.rt };
    this.linkOptions = { owner: this, token: options.token, transport: options.transport };
    this.reach = new HandleReach(this, {
      peers: options.peers,
      local: (id) => this.instances.get(id)?.replica,
      name: options.name,
      token: options.token,
    });
    this.objects = new ObjectStore({ maxBytes: options.objectStoreBytes, node: options.name, session: this.session });
    this.published = new PublishedResults(options.name, this.objects);
    this.book = new NodeCalls({ name: this.name, forgetPublished: (id) => this.published.forget(id) }, limits);
    this.leases = new NodeLeases(this.leaseMs, {
      serviceOf: (id) => this.instances.get(id)?.replica.def.name,
      // (results published for a driver go with its lease, as the objects kept for it do)
      freeObjects: (owner) => {
        this.objects.freeOwner(owner);
        this.published.forgetOwner(owner);
      },
      holdsObjects: (owner) => this.published.holds(owner) || this.objects.owners().includes(owner),
      destroy: (id, deadline, cause) => this.hosted.remove(id, deadline, cause),
    }, options.onLeaseExpired);
    this.owners = this.leases.owners;
    this.hosted = new NodeInstances({
      name: this.name,
      session: this.session,
      mesh: this.mesh,
      rt: this.rt,
      gpus: this.gpus,
      linkOptions: this.linkOptions,
      readClock: this.readClock,
      leases: this.leases,
      draining: () => this.draining,
    });
    this.instances = this.hosted.byId;
    this.pipes = new PipedArgs({
      node: this.name,
      kept: this.book.kept,
      calls: this.book.calls,
      objects: this.objects,
      linkOptions: this.linkOptions,
    });
    this.objectEndpoints = new ObjectEndpoints(this.objects, this.published, this.leases, this);
    this.handler = (frame, peer) => this.serve(frame, peer);
  }

  /**
   * The node's object store: how many results it keeps for drivers and their bytes (as encoded),
   * against its bound, how many call results it keeps for pipelined calls, and how many it
   * publishes for calls on other nodes (hand-offs) with the bytes of those that came back in their
   * reply (`publishedBytes`: they count against the bound too).
   *
   * @returns A snapshot.
   *
   * @example
   * ```ts
   * import { NodeServer } from "./node_server.ts";
   * import { strictEqual } from "node:assert/strict";
   * const node = new NodeServer({ name: "n1", objectStoreBytes: 1024 });
   * strictEqual(node.objectStats().objects, 0);
   * strictEqual(node.objectStats().maxBytes, 1024);
   * await node.drain();
   * ```
   */
  objectStats(): {
    objects: number;
    bytes: number;
    maxBytes: number;
    keptResults: number;
    published: number;
    publishedBytes: number;
  } {
    const s = this.objects;
    return {
      objects: s.count,
      bytes: s.bytes,
      maxBytes: s.maxBytes,
      keptResults: this.book.kept.size,
      published: this.published.count,
      publishedBytes: this.published.bytes,
    };
  }

  /** Calls running now. */
  get activeCalls(): number {
    return this.book.inFlight;
  }

  /**
   * This node in the form of `Mesh.stats()`: itself with its GPUs and CPU cores (total, and free of
   * the instances here), and the instances drivers created here with their calls. What its
   * dashboard (`thinkagain serve --dashboard`) shows.
   *
   * @returns A snapshot.
   *
   * @example
   * ```ts
   * import { NodeServer } from "./node_server.ts";
   * const node = new NodeServer({ name: "n1", gpus: 2, cpus: 4 });
   * const s = node.stats();
   * if (s.nodes[0].gpus.free !== 2 || s.nodes[0].cpus.free !== 4 || s.instances.length !== 0) throw new Error();
   * await node.drain();
   * ```
   */
  stats(): MeshStats {
    const cpus = this.mesh.nodes[0].cpus;
    let used = 0;
    const instances = [...this.instances.values()].map(({ replica }) => {
      used += replica.def.cpus;
      return {
        service: replica.def.name,
        replica: replica.index,
        node: this.name,
        gpus: replica.gpus.map((g) => g.id),
        calls: replica.calls,
        outstanding: replica.outstanding,
      };
    });
    const gpus = { total: this.gpus.length, free: this.hosted.resources.freeGpus.length };
    return {
      name: this.mesh.name,
      closed: this.draining,
      nodes: [{ name: this.name, endpoint: undefined, gpus, cpus: { total: cpus, free: cpus - used } }],
      instances,
    };
  }

  /**
   * Whether this node takes work, for `GET /healthz` (pass it as `createNodeApp`'s `health`):
   * `"loading"` while resident services are being constructed ({@linkcode NodeServer.startResident}),
   * `"draining"` once {@linkcode NodeServer.drain} started, else `"ready"`.
   *
   * @returns The status, the node's name and the protocol version.
   *
   * @example
   * ```ts
   * import { NodeServer } from "./node_server.ts";
   * import { createNodeApp } from "./server.ts";
   * import { strictEqual } from "node:assert/strict";
   * const node = new NodeServer({ name: "n1", token: "secret" });
   * const app = createNodeApp(node.handler, { token: "secret", health: () => node.health() });
   * strictEqual((await app.fetch(new Request("http://127.0.0.1/healthz"))).status, 200);
   * await node.drain();
   * const res = await app.fetch(new Request("http://127.0.0.1/healthz"));
   * strictEqual(res.status, 503);
   * strictEqual((await res.json()).status, "draining");
   * ```
   */
  health(): NodeHealth {
    const status = this.draining ? "draining" : this.hosted.loading > 0 ? "loading" : "ready";
    return { status, name: this.name, protocol: PROTOCOL_VERSION };
  }

  /**
   * Answers one frame. A call (the common frame) is answered by {@linkcode call}'s own promise,
   * without {@linkcode handle}'s async function around it: a promise and two jobs less per call.
   */
  private serve(frame: Uint8Array, peer: PeerInfo | undefined): Promise<Uint8Array | undefined> {
    const now = performance.now(); // (one clock read per frame: a read is not free on Deno)
    this.readClock.lastRead = now;
    let msg: DriverMessage;
    try {
      msg = decodeDriverMessage(frame);
    } catch (e) {
      return Promise.reject(e);
    }
    if (msg.t === "call" && msg.publish === undefined && peer?.oneWay !== true) {
      return this.call(msg, peer, frameBytes(frame), now);
    }
    return this.handle(msg, frame, peer);
  }

  /** Answers one decoded frame. */
  private async handle(
    msg: DriverMessage,
    frame: Uint8Array,
    peer: PeerInfo | undefined,
  ): Promise<Uint8Array | undefined> {
    if (peer?.oneWay && msg.t !== "cancel" && msg.t !== "free" && msg.t !== "session") {
      // nobody waits for a one-way frame's answer, so nothing would hold its work to a bound
      throw new ProtocolError(`A one-way "${msg.t}" message is refused: only "cancel" may be sent without a reply`);
    }
    switch (msg.t) {
      case "hello": {
        // (declared by a driver that presented this node's token, they get it: see handle_wire.ts)
        if (msg.mesh !== undefined) this.reach.declare(msg.mesh, peer);
        const ops = [...registeredOps().keys()];
        return encodeMessage({
          t: "welcome",
          v: PROTOCOL_VERSION,
          node: this.name,
          session: this.session,
          gpus: this.gpus.length,
          cpus: Number.isFinite(this.mesh.nodes[0].cpus) ? this.mesh.nodes[0].cpus : null,
          services: [...registeredServices().keys()],
          ops,
          leaseMs: this.leaseMs,
          objectStoreBytes: this.objects.maxBytes,
          ...(this.hosted.residents.length > 0 ? { residents: this.hosted.residents } : {}),
          ...(this.hosted.loading > 0 ? { loading: true } : {}),
        });
      }
      case "ping": {
        if (msg.owner !== undefined) this.leases.renew(msg.owner);
        return encodeMessage({
          t: "pong",
          node: this.name,
          activeCalls: this.book.inFlight,
          instances: this.instances.size,
          expiredInstances: this.leases.expiredCount,
          objects: this.objects.count,
          leaseMs: this.leaseMs,
        });
      }
      case "session": {
        // what every call on this connection would carry (protocol.ts, SessionMessage)
        this.book.declareSession(peer, msg);
        return peer!.oneWay ? undefined : encodeMessage({ t: "session" });
      }
      case "create":
        return encodeMessage(this.hosted.create(msg.service, msg.args as unknown[], msg.gpus, msg.replica, msg.owner));
      case "call":
        if (msg.publish !== undefined) return await this.publishing(msg, peer, frameBytes(frame));
        return await this.call(msg, peer, frameBytes(frame));
      case "credit":
        return await this.streams.credit(callKey(peer, msg.cid), msg.items, msg.bytes);
      case "cancel": {
        const key = callKey(peer, msg.cid);
        if (!this.streams.cancel(key)) this.book.cancel(key);
        return undefined;
      }
      case "fetch":
        return await this.fetchObject(msg.oid);
      case "store":
        if (this.draining) throw new TransportError("refused", `Node "${this.name}" is shutting down`);
        return this.objectEndpoints.store(msg);
      case "free": {
        this.objectEndpoints.free(msg.oids, msg.collected === true, this.book.publishedOn(peer));
        this.book.freeKept(peer, msg.cids);
        return peer?.oneWay ? undefined : encodeMessage({ t: "freed" });
      }
      case "destroy": {
        if (this.instances.get(msg.id)?.fair !== undefined) {
          throw new ProtocolError(
            `Cannot destroy instance "${msg.id}" on node "${this.name}": it is resident (it belongs to the node, ` +
              "not to a driver, and lives until the node drains)",
          );
        }
        await this.hosted.remove(msg.id);
        return encodeMessage({ t: "destroyed" });
      }
    }
  }

  /**
   * Starts resident instances of a registered service: the node's own, constructed now (a model
   * loaded once) and shared by every driver that connects to them (`Service.connect()`), each
   * driver's calls taking turns with the others' (round-robin between connections). They have no
   * lease: no driver's death or `mesh.close()` touches them; they are disposed when the node drains.
   * Each replica is placed on this node's GPUs by `placeReplicas` (all or none). When an instance
   * sets a thenable `ready` property in its constructor (an asynchronous model load), the start
   * waits for it. A constructor that throws, or a `ready` that rejects, fails the start: the
   * instances made by it are disposed.
   *
   * @param service The registered service's name.
   * @param options `replicas`: how many instances (default 1); `args`: constructor arguments.
   * @returns The ids of the instances (as drivers see them in the welcome).
   * @throws {TypeError} For an unknown service or a bad count; {@link PlacementError} when the
   * node's GPUs or CPUs cannot hold them; an `Error` naming the service when a constructor failed.
   *
   * @example A resident instance, reached from a driver
   * ```ts
   * import * as ta from "../mod.ts";
   * import { NodeServer } from "./node_server.ts";
   * import { serveInMemory } from "./in_memory.ts";
   * import { strictEqual } from "node:assert/strict";
   * let built = 0;
   * const Model = ta.service(class ResidentDocModel { constructor() { built++; } gen(q: string) { return `${q}!`; } });
   * const node = new NodeServer({ name: "n1" });
   * await node.startResident("ResidentDocModel");
   * const server = serveInMemory("doc-resident", node.handler);
   * for (const q of ["a", "b"]) {
   *   await using mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: "mem://doc-resident" })]);
   *   strictEqual(await mesh.run(async () => (await Model.connect()).gen(q)), `${q}!`);
   * }
   * strictEqual(built, 1); // two drivers, one instance
   * await node.drain();
   * await server.close();
   * ```
   */
  startResident(service: string, options: { replicas?: number; args?: unknown[] } = {}): Promise<string[]> {
    return this.hosted.startResident(service, options);
  }

  /**
   * Runs a call whose result other nodes pull (`msg.publish`, a hand-off): published before
   * anything else, then answered to them with the same `result` the caller gets (its value,
   * the object it became, or its error).
   */
  private async publishing(msg: CallMessage, peer: PeerInfo | undefined, bytes: number): Promise<Uint8Array> {
    const id = msg.publish!;
    let answered!: (frame: Uint8Array | Promise<Uint8Array>) => void;
    // forgotten when its driver frees it, its connection closes, or its driver's lease expires
    const owner = msg.owner ?? this.book.sessionOf(peer)?.owner;
    this.published.publish(id, new Promise<Uint8Array>((r) => (answered = r)), owner);
    if (owner !== undefined) this.leases.holdObjects(owner);
    this.book.notePublished(peer, id);
    try {
      const reply = await this.call(msg, peer, bytes);
      answered(this.objectEndpoints.pulledFrame(reply, msg));
      return reply;
    } catch (e) {
      answered(encodeMessage({ t: "result", ok: false, error: errorToWire(e) }));
      throw e;
    }
  }

  /** Keeps a result that lives on a device in the store (its bytes estimated), and names it. */
  private keepOnDevice(result: unknown, owner: string | undefined, msg: CallMessage, name: string): Uint8Array {
    const bytes = deviceBytes(result);
    const oid = this.objects.put(result, bytes, { owner, madeBy: msg.op ?? name });
    if (owner !== undefined) this.leases.holdObjects(owner);
    return encodeMessage({ t: "result", ok: true, object: { oid, bytes } });
  }

  // What call() makes closures of, made here: a closure in call() itself would put the locals it
  // names in a context object allocated with every call, whatever branch runs.

  /**
   * Submits a call of an op here, under the caller's trace (a SERVER span) where tracing is on, in
   * `ctx` (which names the lease the instances its body makes go to).
   */
  private serveOp(
    def: OpDef,
    name: string,
    args: unknown[],
    trace: Readonly<Record<string, string>> | undefined,
    ctx: ServedOp,
  ): ObjectRef<unknown> {
    // run it here: inside this node's mesh, where the op has no remote nodes to go to
    return withExtractedContext(trace, () => runInContext(ctx, () => def.op.go(...args)), {
      name: `serve ${name}`,
      attributes: { "thinkagain.node": this.name },
    });
  }

  /** Submits a call of a method to an instance here, under the caller's trace (a SERVER span) where tracing is on. */
  private serveMethod(
    inst: HostedInstance,
    method: string,
    args: unknown[],
    trace: Readonly<Record<string, string>> | undefined,
    served: ServedMethod,
    peer: PeerInfo | undefined,
    scope: string,
  ): ObjectRef<unknown> {
    const fair = inst.fair;
    const run = fair === undefined
      ? () => inst.replica.call(method, args, this.callCtx)
      : () => fair.call(fairCaller(peer, scope), method, args, this.callCtx);
    return withExtractedContext(trace, run, served.span);
  }

  /** Where each op's refusal reply is kept (by its definition: a name registered again is another op). */
  private readonly opRefusals = new WeakMap<OpDef, { refused?: Uint8Array }>();

  /** The place of `def`'s refusal reply in {@linkcode opRefusals}, made on first use. */
  private opRefusal(def: OpDef): { refused?: Uint8Array } {
    let kept = this.opRefusals.get(def);
    if (kept === undefined) this.opRefusals.set(def, kept = {});
    return kept;
  }

  /** Whether nothing would see a call made for `msg` (no profiler, task events or tracing) or keep it. */
  private unobserved(msg: CallMessage): boolean {
    return msg.keep !== true && !listening && !isTracingEnabled();
  }

  /**
   * The reply to a call its op's or instance's full queue refuses (`of.refuses()`), made without a
   * task, a ref or an error for the call: refusing a burst must cost a node less than serving it.
   * The call still shows its driver is alive. `kept` keeps the reply for the next refusal (a
   * method's `ServedMethod`, an op's {@linkcode opRefusal}).
   */
  private refused(
    of: { refusal(method: string): OverloadedError },
    msg: CallMessage,
    owner: string | undefined,
    kept: { refused?: Uint8Array },
    now: number,
  ): Uint8Array {
    const lease = owner === undefined ? undefined : this.owners.get(owner);
    if (lease !== undefined) lease.seen = now;
    kept.refused ??= encodeMessage({ t: "result", ok: false, error: errorToWire(of.refusal(msg.method ?? "")) });
    return kept.refused.slice(); // (a reply of its own: a transport may write into what it sends)
  }

  /** Stops `ref` once `timeoutMs` have passed (a deadline the driver gave); returns the timer's stop. */
  private deadline(ref: ObjectRef<unknown>, timeoutMs: number): () => void {
    return setLongTimeout(
      () => stopCall(ref, `past its deadline of ${timeoutMs} ms on node "${this.name}"`, "timeout"),
      timeoutMs,
    );
  }

  /** Runs one call and encodes its result; `now`: when its frame was read. */
  private async call(
    msg: CallMessage,
    peer: PeerInfo | undefined,
    bytes: number,
    now = performance.now(),
  ): Promise<Uint8Array> {
    if (this.draining) throw new TransportError("refused", `Node "${this.name}" is shutting down`);
    const key = callKey(peer, msg.cid);
    const scope = callScope(peer);
    // what this call leaves with its connection (one abort listener per WebSocket connection, not
    // one per call: adding a listener scans the signal's others, dear on Deno with many calls in
    // flight); a node at one of its own bounds answers with a reply saying so (bench/refusals.ts)
    const book = this.book;
    const conn = book.connection(peer);
    const refusal = book.admit(msg, key, scope, conn, bytes);
    if (refusal !== undefined) return refusal;
    // the data plane's fields: the call's own, else those its connection declared once
    const session = book.sessionOf(peer);
    const keepAbove = msg.keepAbove ?? session?.keepAbove;
    const owner = msg.owner ?? session?.owner;
    const args = reviveValue(msg.args as unknown[], this.linkOptions);
    // results named instead of sent: those held here now (before any await, so a `free` sent after
    // this call cannot overtake it), then those pulled from other nodes
    let streams: PipedStreams | undefined;
    let entering: ReturnType<PipedArgs["entering"]> | undefined;
    if (msg.pipe !== undefined) {
      const pulls = this.pipes.fill(msg, args, scope, streams = new PipedStreams());
      if (pulls !== undefined) {
        // calls that name this one's result wait until it runs, or fail as it does (piped_args.ts);
        // meanwhile it holds the node's bounds as a running call does (its bytes are here already)
        entering = this.pipes.entering(key);
        book.count(conn, scope, bytes);
        try {
          await pulls;
          // its driver gave it up meanwhile (its input was cancelled there): its body never starts
          if (book.cancelledMeanwhile(key)) {
            throw new CancelledError(
              msg.op ?? { name: msg.method ?? "call", kind: "method" },
              "cancelled while it pulled its arguments",
            );
          }
        } catch (e) {
          book.uncount(conn, scope, bytes);
          entering.failed(e);
          throw e;
        }
        now = performance.now(); // (the leases below are renewed once its arguments are here, as before)
      }
    }
    let ref: ObjectRef<unknown>;
    let name: string;
    let renewed: string | undefined; // the lease this call already renewed
    let made = false;
    let served: ServedOp | undefined; // an op's context (one object per call, as a plain one was)
    try {
      if (msg.op !== undefined) {
        const def = registeredOps().get(msg.op);
        if (def === undefined) {
          throw new ProtocolError(
            `Unknown op "${msg.op}": node "${this.name}" registered ${
              [...registeredOps().keys()].join(", ") || "none"
            }`,
          );
        }
        name = msg.op;
        if (def.refuses() && this.unobserved(msg)) return this.refused(def, msg, owner, this.opRefusal(def), now);
        // run it here: inside this node's mesh, where the op has no remote nodes to go to
        // the caller's trace continues here, under a SERVER span
        ref = this.serveOp(def, name, args, msg.trace, served = new ServedOp(this.rt, owner));
      } else {
        const inst = this.instances.get(msg.id!);
        if (inst === undefined) {
          throw new ProtocolError(
            this.leases.wasExpired(msg.id!)
              ? `Instance "${msg.id}" on node "${this.name}" was destroyed: its driver sent no keepalive for ` +
                `${this.leaseMs} ms (lease expired)`
              : `Unknown instance "${msg.id}" on node "${this.name}": it was destroyed or the node restarted`,
          );
        }
        // (made once per method: no names or span options built per call)
        let served = inst.served?.get(msg.method!);
        if (served === undefined) {
          if (!inst.replica.def.methods.has(msg.method!)) {
            throw new ProtocolError(`Service "${inst.replica.def.name}" has no method "${msg.method}"`);
          }
          const method = `${inst.replica.def.name}.${msg.method}`;
          served = { name: method, span: { name: `serve ${method}`, attributes: { "thinkagain.node": this.name } } };
          (inst.served ??= new Map()).set(msg.method!, served);
        }
        name = served.name;
        // a call shows its driver is alive, like a keepalive
        if (inst.owner !== undefined) {
          const lease = this.owners.get(inst.owner);
          if (lease !== undefined) lease.seen = now;
          renewed = inst.owner;
        }
        if (inst.fair === undefined && inst.replica.refuses() && this.unobserved(msg)) {
          return this.refused(inst.replica, msg, owner, served, now);
        }
        ref = this.serveMethod(inst, msg.method!, args, msg.trace, served, peer, scope);
      }
      if (owner !== undefined && owner !== renewed) {
        const lease = this.owners.get(owner);
        if (lease !== undefined) lease.seen = now;
      }
      made = true;
    } catch (e) {
      entering?.failed(e);
      throw e;
    } finally {
      // (refused: a reply says so, and the calls naming its result have none to take)
      if (!made && entering !== undefined) {
        book.uncount(conn, scope, bytes);
        entering.failed(new ProtocolError(`Call "${msg.cid}" was refused on node "${this.name}"`));
      }
    }
    // counted, kept (with `keep`) until the caller frees it or its connection closes, and stopped
    // when its connection closes
    const signal = peer?.signal;
    const onGone = book.enter(key, ref, msg.keep === true, signal, conn, scope, bytes, entering !== undefined);
    if (streams !== undefined) streams.made(ref);
    entering?.made(ref);
    // any deadline the driver gives, past what one timer holds too; Infinity is none
    const stopTimer = msg.timeoutMs === undefined ? undefined : this.deadline(ref, msg.timeoutMs);
    try {
      // (its promise, not the ref: awaiting a thenable costs a job and a promise more per call)
      let result = await ref.promise();
      // a stream's items go in chunks, each asked for with credit (stream_wire.ts)
      if (result instanceof Stream) return await this.streams.open(key, result, msg, peer, name);
      if (holdsDeviceValues(result)) {
        // arrays on a GPU stay there until they leave this node (read back once, when fetched)
        if (keepAbove !== undefined) return this.keepOnDevice(result, owner, msg, name);
        result = await readBack(result);
      }
      const wired = wireValue(result, this);
      const value = wired instanceof Promise ? await wired : wired;
      try {
        const reply = encodeMessage({ t: "result", ok: true, value });
        const size = frameBytes(reply); // its large arrays too (segments, sent beside it)
        if (keepAbove === undefined || size <= keepAbove) return reply;
        // too large to send unasked: it stays here, and the caller's ref names it
        // kept encoded (a fetch sends it as it is) unless it holds handles (revived here on use)
        const frame = value === result ? reply : undefined;
        const oid = this.objects.put(result, size, { owner, madeBy: msg.op ?? name, frame });
        if (owner !== undefined) this.leases.holdObjects(owner);
        return encodeMessage({ t: "result", ok: true, object: { oid, bytes: size } });
      } catch (e) {
        if (e instanceof OverloadedError) return encodeMessage({ t: "result", ok: false, error: errorToWire(e) });
        return encodeMessage({
          t: "result",
          ok: false,
          error: errorToWire(
            new OpExecutionError(
              msg.op ?? { name, kind: "method" },
              new TypeError(`its result cannot be sent: ${(e as Error).message}`),
            ),
          ),
        });
      }
    } catch (e) {
      return encodeMessage({ t: "result", ok: false, error: errorToWire(e) });
    } finally {
      stopTimer?.();
      book.leave(key, ref, signal, conn, scope, bytes, onGone);
      // (the lease of the instances its body made may expire again)
      if (served !== undefined) this.leases.callEnded(served);
    }
  }

  /** Answers a `fetch`, counted while it is answered (see {@linkcode NodeServer.drain}). */
  private async fetchObject(oid: string): Promise<Uint8Array> {
    if (this.drained) throw drainedObject(this.name, oid);
    this.fetching++;
    try {
      return await this.objectEndpoints.fetch(oid);
    } finally {
      if (--this.fetching === 0) this.fetchesEnded?.();
    }
  }

  /**
   * Stops taking new calls, waits for the calls in flight (at most `graceMs`, default 10 s; then
   * they are cancelled) and for the pulls of results kept here being answered (within the same
   * grace), and disposes every instance. The results kept here go with it: a later `fetch` of one
   * (another node's call that needs it, a driver's await) fails with `NodeLostError`, saying the
   * node drained.
   *
   * @param options `graceMs`: how long in-flight calls may take to finish, however long (also past
   * the 2^31 ms one timer holds); `Infinity`: as long as they need.
   * @returns When the node has drained.
   * @throws {RangeError} When `graceMs` is negative or not a number (nothing is drained then).
   */
  async drain(options: { graceMs?: number } = {}): Promise<void> {
    const graceMs = options.graceMs ?? 10_000;
    if (!(typeof graceMs === "number" && graceMs >= 0)) {
      throw new RangeError(
        `Cannot drain node "${this.name}": graceMs must be a number of ms ≥ 0 (Infinity: no limit), got ${
          describe(graceMs)
        }`,
      );
    }
    this.draining = true;
    // (a long timer: a grace of 2^31 ms or more must not end at once, as a plain setTimeout does)
    const deadline = performance.now() + graceMs;
    this.leases.stop();
    this.streams.cancelAll();
    // a stream still at its first chunk is its call's (stream_wire.ts): stopped through the call's
    // ref, which stops nothing but a stream once its call completed
    const calls = this.book.calls;
    for (const ref of calls.values()) if (ref.status === "completed") ref.cancel();
    if (this.book.inFlight > 0) {
      await untilDeadline(this.book.whenIdle(), deadline);
      for (const ref of calls.values()) stopCall(ref, `cancelled: node "${this.name}" is shutting down`, "drain");
    }
    // the pulls of results kept here being answered (another node's call that started, a driver's
    // await) end first, within the grace: the replies of the calls let finish are not all there is
    if (this.fetching > 0) {
      await untilDeadline(new Promise<void>((r) => (this.fetchesEnded = r)), deadline);
      this.fetchesEnded = undefined;
    }
    // what was kept here goes with the drain (the process ends): later pulls are told so
    this.drained = true;
    this.objects.clear();
    this.book.kept.clear();
    this.published.clear();
    await this.hosted.closeAll();
    await this.mesh.close();
    await closeLinks(this); // the links opened for handles that arrived as arguments
  }
}

/**
 * The error of a `fetch` of object `oid` once node `node` drained: the results it kept went with
 * it, as with a node lost (an op with `retries` makes its result again), saying it left cleanly.
 */
function drainedObject(node: string, oid: string): NodeLostError {
  return new NodeLostError(
    node,
    `it drained (shut down cleanly) and the results it kept went with it (object "${oid}")`,
  );
}

/**
 * Cancels a call running here, saying why (a deadline, a drain): the driver gets a
 * `CancelledError` whose `reason` tells a drain (try another node) from its own cancel.
 */
function stopCall(ref: ObjectRef<unknown>, detail: string, reason: CancelReason): void {
  const task = ref as unknown as Task<unknown>;
  if (task._state < State.COMPLETED) cancelTask(task, new CancelledError(task._target, detail, reason));
}
