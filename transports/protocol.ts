/**
 * The node protocol: CBOR messages carried as frames by any transport. A driver says `hello` and
 * learns the node's resources and registered names (`welcome`), `create`s service instances,
 * `call`s their methods (or registered ops), `cancel`s calls, and `destroy`s instances; on a
 * WebSocket its first frame is a one-way `session` with what every call would otherwise carry. Only names
 * the node's module registered can be created or called; nothing from the wire is evaluated.
 *
 * @module
 */
import { decode, encodeFrame, findRefusal, isValueRefusal, valueRefusalError, type WireError } from "../core/codec.ts";
import { ProtocolError } from "../core/errors.ts";

/**
 * Version of this protocol; a peer speaking another one is refused with `ProtocolError`. Version 2
 * added streams: a call may be answered with a `chunk`, and `credit` asks for the next one.
 * Version 3 added the data plane: a call's `keep`, `keepAbove`, `owner` and `pipe`, results kept on
 * the node (`object`), `fetch` and `free`, and the WebSocket connection's one-way `session`.
 * Version 4 added a call's `publish` (hand-offs to other nodes) and a piped argument's `path`
 * (results nested in arrays and objects): a node of version 3 would ignore both, so the calls
 * pulling a result from it would fail with "Unknown object", and a nested result would reach the
 * method as `null`. Version 5 added `store` (a `put` value kept on the node under an id its driver
 * chose, which calls and other nodes' `fetch`es name, waiting a little for it to arrive): a node of
 * version 4 would refuse the message. Version 6 sends, on a WebSocket, the bytes of large typed
 * arrays and byte strings beside a frame instead of in it (`KIND_SEGMENTED` in `ws_framing.ts`, the
 * codec's `TAG_SEGMENT`): a peer of version 5 would take those messages for frames and drop the
 * connection.
 */
export const PROTOCOL_VERSION = 6;

/** Driver → node: introduce yourself. */
export interface HelloMessage {
  readonly t: "hello";
  readonly v: number;
  /**
   * The endpoints of the driver's mesh: handles the node receives may lead there (with no token;
   * see `handle_wire.ts`). At most {@linkcode MAX_MESH_ENDPOINTS}.
   */
  readonly mesh?: readonly string[];
}

/** The most endpoints a `hello` may declare. */
export const MAX_MESH_ENDPOINTS: number = 1024;

/** Node → driver: who the node is and what it offers. */
export interface WelcomeMessage {
  readonly t: "welcome";
  readonly v: number;
  /** The node's name. */
  readonly node: string;
  /** Changes every time the node process starts: instances from another session are gone. */
  readonly session: string;
  readonly gpus: number;
  readonly cpus: number | null;
  /** Services the node's module registered. */
  readonly services: readonly string[];
  /** Remote-capable ops the node's module registered. */
  readonly ops: readonly string[];
  /**
   * How long instances outlive their driver's last keepalive, in ms (0: they live until destroyed
   * or the node drains). Absent from older nodes.
   */
  readonly leaseMs?: number;
  /**
   * The most bytes the node's object store keeps for drivers (`--object-store-bytes`): a driver
   * has its dropped refs collected well before its results could fill it. Absent from older nodes.
   */
  readonly objectStoreBytes?: number;
  /**
   * The node's resident instances (`thinkagain serve --start`), which drivers connect to instead of
   * creating their own (`Service.connect()`). Absent when it has none. At most
   * {@linkcode MAX_RESIDENTS}.
   */
  readonly residents?: readonly ResidentInfo[];
  /** True while the node still constructs resident services (`--start`): more may come. */
  readonly loading?: true;
}

/** One resident instance a node hosts, as its welcome lists it. */
export interface ResidentInfo {
  /** The service's registered name. */
  readonly service: string;
  /** The instance id calls name. */
  readonly id: string;
  /** Its replica index among the node's residents of that service. */
  readonly replica: number;
  /** The node's GPU ids it holds. */
  readonly gpus: readonly number[];
}

/** The most resident instances a `welcome` may list. */
export const MAX_RESIDENTS: number = 4096;

/** Driver → node: create an instance of a registered service. */
export interface CreateMessage {
  readonly t: "create";
  readonly service: string;
  readonly args: readonly unknown[];
  /** GPU ids (on that node) placement assigned. */
  readonly gpus: readonly number[];
  readonly replica: number;
  /**
   * The creating driver's lease id (random per link). The instance shares the driver's fate: with
   * no `ping` carrying it for the node's `leaseMs`, the node destroys it. Without one it gets a lease
   * of its own, renewed by its calls.
   */
  readonly owner?: string;
}

/** Node → driver: the instance exists. */
export interface CreatedMessage {
  readonly t: "created";
  readonly id: string;
  readonly session: string;
  /**
   * The ids of the GPUs the node gave the instance (its own choice: what the driver asked for is a
   * preference); absent from a node of an older version.
   */
  readonly gpus?: readonly number[];
  /** The node's lease (see {@link WelcomeMessage.leaseMs}); the owner must ping well within it. */
  readonly leaseMs?: number;
}

/** Driver → node: call a method of an instance, or a registered op. */
export interface CallMessage {
  readonly t: "call";
  /** Call id chosen by the caller, unique per caller, used by `cancel`. */
  readonly cid: string;
  /** Instance id (method calls). */
  readonly id?: string;
  readonly method?: string;
  /** Op name (op calls). */
  readonly op?: string;
  readonly args: readonly unknown[];
  /** Time left before the caller's deadline, in ms. */
  readonly timeoutMs?: number;
  /** W3C trace context of the caller (`traceparent`, `tracestate`). */
  readonly trace?: Readonly<Record<string, string>>;
  /**
   * When the call's result is a stream: how many items (and about how many bytes of them) the node
   * may produce before the caller grants more with `credit` (the caller's window).
   */
  readonly creditItems?: number;
  readonly creditBytes?: number;
  /**
   * Keep the result on the node (a pipelined call names it by this call's `cid`) until a `free`
   * names the cid, or the connection closes.
   */
  readonly keep?: boolean;
  /**
   * A result whose frame would be larger than this many bytes stays in the node's object store, and
   * the reply names it (`object`) instead of carrying it. Owned by the lease `owner`.
   */
  readonly keepAbove?: number;
  /** The caller's lease id: objects kept for it, and the result it publishes, go when its lease expires. */
  readonly owner?: string;
  /** Arguments that are results the node holds or can pull, not values (`args[i]` is `null`). */
  readonly pipe?: readonly PipedArg[];
  /**
   * Other nodes may pull this call's result as object `publish` (an unguessable id the caller chose,
   * starting with `p:`), until a `free` names it, this connection closes or the lease `owner`
   * expires (the frame of a value its reply carries counts against the object store's bound
   * meanwhile): a `fetch` for it waits
   * until the call ended (and, for {@linkcode PUBLISH_WAIT_MS}, until the call arrived: the pulling
   * node may be told of it first), and is answered with the call's own `result`, failed or not.
   */
  readonly publish?: string;
}

/** How long a `fetch` of a published result (`p:…`) waits for the call that publishes it to arrive. */
export const PUBLISH_WAIT_MS: number = 10_000;

/**
 * An argument that is a result, not a value: the result of call `cid` sent earlier on the same
 * connection (pipelining), or object `oid` in this node's store, or in the store of the node
 * `node` at `endpoint` (pulled from there node to node, only from an endpoint this node may reach).
 */
export interface PipedArg {
  /** Which argument it is (or holds it). */
  readonly i: number;
  /**
   * Where inside argument `i` it sits, when nested in arrays and objects: the keys (strings) and
   * indexes from the argument down, at most {@linkcode MAX_PIPE_DEPTH}; what the frame holds there
   * is `null`, in an array or object of the argument's own.
   */
  readonly path?: readonly (string | number)[];
  readonly cid?: string;
  readonly oid?: string;
  readonly endpoint?: string;
  readonly node?: string;
}

/** The most piped arguments one call may have. */
const MAX_PIPED = 1024;

/** How deep inside an argument a piped result may sit (see {@link PipedArg.path}). */
export const MAX_PIPE_DEPTH = 32;

function pipePath(x: Record<string, unknown>): (string | number)[] | undefined {
  const p = x.path;
  if (p === undefined) return undefined;
  if (
    !Array.isArray(p) || p.length === 0 || p.length > MAX_PIPE_DEPTH ||
    !p.every((k) =>
      (typeof k === "string" && k.length <= 512 && k !== "__proto__") || (Number.isSafeInteger(k) && k >= 0)
    )
  ) {
    fail(
      `"call" pipe entry path must be 1 to ${MAX_PIPE_DEPTH} keys (strings, not "__proto__", or indexes ≥ 0)`,
    );
  }
  return p as (string | number)[];
}

/** Driver (or node) → node: send the value of object `oid` of this node's store (a `result` answers). */
export interface FetchMessage {
  readonly t: "fetch";
  readonly oid: string;
}

/** Driver → node (may be one-way): forget these objects and kept call results. */
export interface FreeMessage {
  readonly t: "free";
  readonly oids: readonly string[];
  readonly cids: readonly string[];
  /**
   * Some of the objects go because the driver's garbage collector found their refs dropped (not
   * released at once): they lived a while, so the node collects its own garbage soon after, for
   * their memory to be reused (see `core/_runtime.ts`'s `collectFreedMemory`).
   */
  readonly collected?: boolean;
}

/**
 * Driver → node: keep `value` (a `ta.put` value) in the object store as object `oid`, an
 * unguessable id the driver chose, starting with {@linkcode STORED_ID_PREFIX}, owned by the lease
 * `owner`, until a `free` names it or the lease expires. Calls name it as they name any object,
 * sent right behind it without waiting for the answer (a `result` naming the object): a `fetch` or
 * a piped argument naming such an id that has not arrived yet waits up to
 * {@linkcode PUBLISH_WAIT_MS} for it.
 */
export interface StoreMessage {
  readonly t: "store";
  readonly oid: string;
  readonly value: unknown;
  readonly owner?: string;
}

/** How the ids of stored values (see {@linkcode StoreMessage}) start. */
export const STORED_ID_PREFIX: string = "s:";

/** Where an object a call's result became lives: its id in the node's store, and its size. */
export interface StoredObject {
  readonly oid: string;
  readonly bytes: number;
}

/** Node → driver: the outcome of a call. */
export type ResultMessage =
  | { readonly t: "result"; readonly ok: true; readonly value: unknown; readonly object?: StoredObject }
  | { readonly t: "result"; readonly ok: false; readonly error: WireError };

/** Driver → node (one-way): stop a call. */
export interface CancelMessage {
  readonly t: "cancel";
  readonly cid: string;
}

/**
 * Driver → node: the consumer of the stream that call `cid` returned grants `items` more items (and
 * `bytes` more bytes of them; either may be 0) and asks for the next `chunk`, answered once the
 * node holds an item to send or the stream ended.
 */
export interface CreditMessage {
  readonly t: "credit";
  readonly cid: string;
  readonly items: number;
  readonly bytes: number;
}

/**
 * Node → driver: items of a stream, in order: the answer to a `call` whose result is a stream (its
 * first items) and to each `credit`. `done` ends the stream; with `error`, it failed after `items`.
 */
export interface ChunkMessage {
  readonly t: "chunk";
  readonly items: readonly unknown[];
  readonly done: boolean;
  readonly error?: WireError;
}

/** Driver → node: dispose an instance. */
export interface DestroyMessage {
  readonly t: "destroy";
  readonly id: string;
}

/** Liveness check; with `owner`, also the keepalive that renews that driver's lease. */
export interface PingMessage {
  readonly t: "ping";
  readonly owner?: string;
}

/**
 * Sent one-way as the first frame of a WebSocket connection: the data-plane fields (see
 * {@linkcode CallMessage}'s `keepAbove` and `owner`) that every call on this connection would
 * carry, said once. A call's own fields still win; over HTTP, where no connection lasts, each call
 * carries them.
 */
export interface SessionMessage {
  readonly t: "session";
  readonly keepAbove?: number;
  readonly owner?: string;
}

/** Every message a driver sends. */
export type DriverMessage =
  | HelloMessage
  | SessionMessage
  | CreateMessage
  | CallMessage
  | CancelMessage
  | DestroyMessage
  | PingMessage
  | CreditMessage
  | FetchMessage
  | FreeMessage
  | StoreMessage;

const KINDS: ReadonlySet<string> = new Set([
  "hello",
  "session",
  "create",
  "call",
  "cancel",
  "destroy",
  "ping",
  "credit",
  "fetch",
  "free",
  "store",
]);

/** The most ids one `free` may name. */
const MAX_FREE = 65_536;

function ids(r: Record<string, unknown>, key: string, kind: string): string[] {
  const v = r[key] ?? [];
  if (
    !Array.isArray(v) || v.length > MAX_FREE ||
    !v.every((x) => typeof x === "string" && x.length > 0 && x.length <= 512)
  ) {
    fail(`"${kind}" ${key} must be at most ${MAX_FREE} ids of 1 to 512 characters`);
  }
  return v as string[];
}

function pipedArgs(r: Record<string, unknown>, args: readonly unknown[]): PipedArg[] | undefined {
  const v = r.pipe;
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length > MAX_PIPED) fail(`"call" pipe must be a list of at most ${MAX_PIPED} entries`);
  return v.map((e) => {
    if (typeof e !== "object" || e === null || Array.isArray(e)) fail('"call" pipe must hold objects');
    const x = e as Record<string, unknown>;
    if (!Number.isSafeInteger(x.i) || (x.i as number) < 0 || (x.i as number) >= args.length) {
      fail(`"call" pipe entry needs an argument index i from 0 to ${args.length - 1}, got ${String(x.i).slice(0, 40)}`);
    }
    const text = (k: string) => x[k] === undefined ? undefined : str(x, k, "call pipe");
    const cid = text("cid"), oid = text("oid"), endpoint = text("endpoint"), node = text("node");
    if ((cid === undefined) === (oid === undefined) || (endpoint === undefined) !== (node === undefined)) {
      fail('"call" pipe entry needs either a cid or an oid (with an endpoint and node, or neither)');
    }
    const path = pipePath(x);
    return path === undefined
      ? { i: x.i as number, cid, oid, endpoint, node }
      : { i: x.i as number, path, cid, oid, endpoint, node };
  });
}

/** The most items (or bytes) one `credit` (or a call's window) may grant. */
const MAX_CREDIT = 2 ** 40;

function credit(r: Record<string, unknown>, key: string, kind: string): number | undefined {
  const v = r[key];
  if (v === undefined) return undefined;
  if (!Number.isSafeInteger(v) || (v as number) < 0 || (v as number) > MAX_CREDIT) {
    fail(`"${kind}" ${key} must be an integer from 0 to ${MAX_CREDIT}, got ${JSON.stringify(String(v)).slice(0, 40)}`);
  }
  return v as number;
}

/** Most replicas a service may have: a `create`'s replica index is below it. */
const MAX_REPLICAS = 1_000_000;
/** Most GPU ids a `create` may name. */
const MAX_GPU_IDS = 4096;

/**
 * Encodes a message as a frame.
 *
 * @param message Any protocol message.
 * @returns The CBOR frame.
 *
 * @example
 * ```ts
 * import { decodeDriverMessage, encodeMessage, PROTOCOL_VERSION } from "./protocol.ts";
 * const m = decodeDriverMessage(encodeMessage({ t: "hello", v: PROTOCOL_VERSION }));
 * if (m.t !== "hello") throw new Error("unexpected");
 * ```
 */
export function encodeMessage(message: unknown): Uint8Array {
  // framed for sending: a large message gets its transport header in place, and its typed arrays
  // arrive aligned (see encodeFrame)
  return encodeFrame(message);
}

function fail(message: string): never {
  throw new ProtocolError(message);
}

function str(m: Record<string, unknown>, key: string, kind: string): string {
  const v = m[key];
  if (typeof v !== "string" || v.length === 0 || v.length > 512) fail(`"${kind}" message needs a string "${key}"`);
  return v;
}

/**
 * Decodes and validates a frame sent by a driver; anything malformed is a `ProtocolError` that
 * says what was wrong.
 *
 * @param frame The frame.
 * @returns The message.
 *
 * @example A malformed frame is a ProtocolError
 * ```ts
 * import { decodeDriverMessage } from "./protocol.ts";
 * import { ProtocolError } from "../core/errors.ts";
 * try { decodeDriverMessage(new Uint8Array([0xff, 0x00])); throw new Error("expected a throw"); }
 * catch (e) { if (!(e instanceof ProtocolError)) throw e; }
 * ```
 */
export function decodeDriverMessage(frame: Uint8Array): DriverMessage {
  const m = decode(frame);
  if (typeof m !== "object" || m === null || Array.isArray(m)) fail("A frame must hold a message object");
  const r = m as Record<string, unknown>;
  const t = r.t;
  if (typeof t !== "string" || !KINDS.has(t)) fail(`Unknown message type ${JSON.stringify(String(t)).slice(0, 40)}`);
  switch (t) {
    case "hello":
      if (r.v !== PROTOCOL_VERSION) {
        fail(`Protocol version ${String(r.v)} is not supported; this node speaks ${PROTOCOL_VERSION}`);
      }
      if (r.mesh === undefined) return { t, v: PROTOCOL_VERSION };
      if (
        !Array.isArray(r.mesh) || r.mesh.length > MAX_MESH_ENDPOINTS ||
        !r.mesh.every((e) => typeof e === "string" && e.length > 0 && e.length <= 512)
      ) {
        fail(`"hello" mesh must be at most ${MAX_MESH_ENDPOINTS} endpoints of 1 to 512 characters`);
      }
      return { t, v: PROTOCOL_VERSION, mesh: r.mesh as string[] };
    case "create": {
      const gpus = r.gpus ?? [];
      if (!Array.isArray(gpus) || gpus.length > MAX_GPU_IDS || !gpus.every((g) => Number.isSafeInteger(g) && g >= 0)) {
        fail(`"create" gpus must be at most ${MAX_GPU_IDS} GPU ids (integers ≥ 0)`);
      }
      if (!Array.isArray(r.args)) fail('"create" needs an args array');
      const replica = (r.replica ?? 0) as number;
      if (!Number.isSafeInteger(replica) || replica < 0 || replica >= MAX_REPLICAS) {
        fail(
          `"create" replica must be a replica index, an integer from 0 to ${MAX_REPLICAS - 1}, got ${
            JSON.stringify(String(replica)).slice(0, 40)
          }`,
        );
      }
      const owner = r.owner === undefined ? undefined : str(r, "owner", t);
      return { t, service: str(r, "service", t), args: r.args, gpus: gpus as number[], replica, owner };
    }
    case "call": {
      if (!Array.isArray(r.args)) fail('"call" needs an args array');
      const cid = str(r, "cid", t);
      const timeoutMs = typeof r.timeoutMs === "number" && r.timeoutMs > 0 ? r.timeoutMs : undefined;
      const trace = typeof r.trace === "object" && r.trace !== null && !Array.isArray(r.trace)
        ? Object.fromEntries(Object.entries(r.trace).filter(([, v]) => typeof v === "string")) as Record<string, string>
        : undefined;
      const creditItems = credit(r, "creditItems", t), creditBytes = credit(r, "creditBytes", t);
      // built field by field, the optional ones only when given (no spreads: this runs once per call)
      const call: { -readonly [K in keyof CallMessage]: CallMessage[K] } = typeof r.op === "string"
        ? { t, cid, op: str(r, "op", t), args: r.args, timeoutMs, trace }
        : { t, cid, id: str(r, "id", t), method: str(r, "method", t), args: r.args, timeoutMs, trace };
      if (creditItems !== undefined || creditBytes !== undefined) {
        call.creditItems = creditItems;
        call.creditBytes = creditBytes;
      }
      // the data plane's fields (see CallMessage)
      if (r.keep === true) call.keep = true;
      const keepAbove = credit(r, "keepAbove", t);
      if (keepAbove !== undefined) call.keepAbove = keepAbove;
      if (r.owner !== undefined) call.owner = str(r, "owner", t);
      if (r.pipe !== undefined) {
        const pipe = pipedArgs(r, r.args);
        if (pipe !== undefined) call.pipe = pipe;
      }
      if (r.publish !== undefined) {
        const publish = str(r, "publish", t);
        if (!publish.startsWith("p:")) fail(`"call" publish must be an id starting with "p:"`);
        call.publish = publish;
      }
      return call;
    }
    case "session":
      return {
        t,
        keepAbove: credit(r, "keepAbove", t),
        owner: r.owner === undefined ? undefined : str(r, "owner", t),
      };
    case "credit":
      return { t, cid: str(r, "cid", t), items: credit(r, "items", t) ?? 0, bytes: credit(r, "bytes", t) ?? 0 };
    case "cancel":
      return { t, cid: str(r, "cid", t) };
    case "fetch":
      return { t, oid: str(r, "oid", t) };
    case "free": {
      const free = { t, oids: ids(r, "oids", t), cids: ids(r, "cids", t) } as const;
      if (r.collected === undefined) return free;
      if (typeof r.collected !== "boolean") fail(`"free" collected must be a boolean, got ${typeof r.collected}`);
      return { ...free, collected: r.collected as boolean };
    }
    case "store": {
      const oid = str(r, "oid", t);
      if (!oid.startsWith(STORED_ID_PREFIX)) {
        fail(`"store" oid must be an id starting with "${STORED_ID_PREFIX}"`);
      }
      if (!("value" in r)) fail('"store" needs a value');
      return r.owner === undefined ? { t, oid, value: r.value } : { t, oid, value: r.value, owner: str(r, "owner", t) };
    }
    case "destroy":
      return { t, id: str(r, "id", t) };
    default:
      return r.owner === undefined ? { t: "ping" } : { t: "ping", owner: str(r, "owner", t) };
  }
}

/** Node → driver: the instance is gone. */
export interface DestroyedMessage {
  readonly t: "destroyed";
}

/** Node → driver: the objects a `free` named are gone. */
export interface FreedMessage {
  readonly t: "freed";
}

/** Node → driver: the answer to a `ping`, with the node's load. */
export interface PongMessage {
  readonly t: "pong";
  readonly node?: string;
  readonly activeCalls?: number;
  readonly instances?: number;
  readonly expiredInstances?: number;
  readonly leaseMs?: number;
  /** Objects the node's store keeps for drivers. */
  readonly objects?: number;
}

/** Every message a node sends (its replies), each checked by {@linkcode decodeNodeMessage}. */
export type NodeMessage =
  | WelcomeMessage
  | CreatedMessage
  | ResultMessage
  | DestroyedMessage
  | PongMessage
  | ChunkMessage
  | FreedMessage;

/** The most names a `welcome` may list (services, ops). */
const MAX_NAMES = 65_536;

function count(m: Record<string, unknown>, key: string, kind: string, optional: boolean): number | undefined {
  const v = m[key];
  if (v === undefined && optional) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0) fail(`"${kind}" message needs a number ≥ 0 "${key}"`);
  return v;
}

function names(m: Record<string, unknown>, key: string, kind: string): string[] {
  const v = m[key];
  if (
    !Array.isArray(v) || v.length > MAX_NAMES ||
    !v.every((n) => typeof n === "string" && n.length > 0 && n.length <= 512)
  ) {
    fail(`"${kind}" message needs "${key}": at most ${MAX_NAMES} names of 1 to 512 characters`);
  }
  return v as string[];
}

/** A welcome's `residents`, each field checked; anything else is a ProtocolError. */
function residentList(v: unknown): ResidentInfo[] {
  if (!Array.isArray(v) || v.length > MAX_RESIDENTS) {
    fail(`"welcome" residents must be a list of at most ${MAX_RESIDENTS} instances`);
  }
  return v.map((e) => {
    if (typeof e !== "object" || e === null || Array.isArray(e)) fail('"welcome" residents must hold objects');
    const x = e as Record<string, unknown>;
    const gpus = x.gpus;
    if (
      !Number.isSafeInteger(x.replica) || (x.replica as number) < 0 || !Array.isArray(gpus) ||
      gpus.length > MAX_GPU_IDS || !gpus.every((g) => Number.isSafeInteger(g) && g >= 0)
    ) {
      fail('"welcome" resident needs a replica index and its GPU ids (integers ≥ 0)');
    }
    return {
      service: str(x, "service", "welcome"),
      id: str(x, "id", "welcome"),
      replica: x.replica as number,
      gpus: gpus as number[],
    };
  });
}

/**
 * Decodes and validates a frame sent by a node (a reply to a driver), as strictly as
 * {@linkcode decodeDriverMessage} checks a driver's: anything malformed is a `ProtocolError` that
 * says what was wrong, so a broken or hostile node fails the calls it answers and nothing else.
 *
 * @param frame The frame.
 * @returns The message, with only the fields this protocol defines.
 *
 * @example A welcome with a malformed list of services is a ProtocolError
 * ```ts
 * import { decodeNodeMessage, encodeMessage, PROTOCOL_VERSION } from "./protocol.ts";
 * import { ProtocolError } from "../core/errors.ts";
 * import { throws } from "node:assert/strict";
 * const bad = { t: "welcome", v: PROTOCOL_VERSION, node: "n1", session: "s", gpus: 0, cpus: null, services: [1], ops: [] };
 * throws(() => decodeNodeMessage(encodeMessage(bad)), ProtocolError);
 * ```
 */
export function decodeNodeMessage(frame: Uint8Array): NodeMessage {
  const m = decode(frame);
  if (typeof m !== "object" || m === null || Array.isArray(m)) fail("A reply must hold a message object");
  const r = m as Record<string, unknown>;
  const t = r.t;
  switch (t) {
    case "welcome": {
      if (r.v !== PROTOCOL_VERSION) {
        fail(`The node speaks protocol version ${String(r.v).slice(0, 40)}; this driver speaks ${PROTOCOL_VERSION}`);
      }
      const gpus = r.gpus;
      if (!Number.isInteger(gpus) || (gpus as number) < 0) fail('"welcome" message needs a GPU count "gpus"');
      const cpus = r.cpus === null ? null : count(r, "cpus", t, false)!;
      const welcome: WelcomeMessage = {
        t,
        v: PROTOCOL_VERSION,
        node: str(r, "node", t),
        session: str(r, "session", t),
        gpus: gpus as number,
        cpus,
        services: names(r, "services", t),
        ops: names(r, "ops", t),
      };
      const leaseMs = count(r, "leaseMs", t, true);
      const objectStoreBytes = count(r, "objectStoreBytes", t, true);
      const residents = r.residents === undefined ? undefined : residentList(r.residents);
      return {
        ...welcome,
        ...(leaseMs === undefined ? {} : { leaseMs }),
        ...(objectStoreBytes === undefined ? {} : { objectStoreBytes }),
        ...(residents === undefined ? {} : { residents }),
        ...(r.loading === true ? { loading: true as const } : {}),
      };
    }
    case "created": {
      const created: { -readonly [K in keyof CreatedMessage]: CreatedMessage[K] } = {
        t,
        id: str(r, "id", t),
        session: str(r, "session", t),
      };
      const leaseMs = count(r, "leaseMs", t, true);
      if (leaseMs !== undefined) created.leaseMs = leaseMs;
      // the GPUs the node gave (a node of an older version names none)
      if (
        Array.isArray(r.gpus) && r.gpus.length <= MAX_GPU_IDS && r.gpus.every((g) => Number.isSafeInteger(g) && g >= 0)
      ) {
        created.gpus = r.gpus as number[];
      }
      return created;
    }
    case "result": {
      if (r.ok === true && r.object !== undefined) {
        const o = r.object as Record<string, unknown>;
        if (typeof o !== "object" || o === null || Array.isArray(o)) fail('"result" object must be { oid, bytes }');
        return {
          t,
          ok: true,
          value: undefined,
          object: { oid: str(o, "oid", t), bytes: count(o, "bytes", t, false)! },
        };
      }
      if (r.ok === true) return { t, ok: true, value: r.value };
      const error = r.error;
      if (
        r.ok !== false || typeof error !== "object" || error === null || Array.isArray(error) ||
        typeof (error as { tag?: unknown }).tag !== "string" ||
        typeof (error as { message?: unknown }).message !== "string"
      ) {
        fail('"result" message needs ok: true and a value, or ok: false and an error { tag, message, data }');
      }
      return { t, ok: false, error: error as WireError };
    }
    case "chunk": {
      const error = r.error;
      if (
        !Array.isArray(r.items) || typeof r.done !== "boolean" ||
        (error !== undefined && (typeof error !== "object" || error === null || Array.isArray(error) ||
          typeof (error as { tag?: unknown }).tag !== "string" ||
          typeof (error as { message?: unknown }).message !== "string"))
      ) {
        fail('"chunk" message needs an items array, a boolean done, and optionally an error { tag, message, data }');
      }
      return error === undefined
        ? { t, items: r.items, done: r.done as boolean }
        : { t, items: r.items, done: true, error: error as WireError };
    }
    case "destroyed":
    case "freed":
      return { t };
    case "pong": {
      const pong: { -readonly [K in keyof PongMessage]: PongMessage[K] } = { t };
      if (r.node !== undefined) pong.node = str(r, "node", t);
      for (const key of ["activeCalls", "instances", "expiredInstances", "leaseMs", "objects"] as const) {
        const v = count(r, key, t, true);
        if (v !== undefined) pong[key] = v;
      }
      return pong;
    }
    default:
      fail(`Unknown reply type ${JSON.stringify(typeof t === "string" ? t.slice(0, 40) : typeof t)}`);
  }
}

/**
 * Decodes a node's reply (see {@linkcode decodeNodeMessage}), checking it is a message of the
 * expected type.
 *
 * @param frame The reply frame.
 * @param expected The message type expected (`"welcome"`, `"created"`, `"result"`, …), or the types.
 * @returns The message.
 * @throws {ProtocolError} For a malformed reply, or one of another type.
 *
 * @example
 * ```ts
 * import { decodeReply, encodeMessage, type ResultMessage } from "./protocol.ts";
 * const r = decodeReply<ResultMessage>(encodeMessage({ t: "result", ok: true, value: 3 }), "result");
 * if (!r.ok || r.value !== 3) throw new Error("unexpected");
 * ```
 */
export function decodeReply<T extends { t: string }>(frame: Uint8Array, expected: T["t"] | readonly T["t"][]): T {
  const m = decodeNodeMessage(frame);
  if (typeof expected === "string" ? m.t !== expected : !expected.includes(m.t)) {
    fail(`Expected a ${[expected].flat().map((t) => `"${t}"`).join(" or ")} reply, got "${m.t}"`);
  }
  return m as unknown as T;
}

/**
 * The error for a message that could not be encoded because one of `args` cannot travel: a
 * TypeError (a value refusal, see `isValueRefusal`) that names the argument, where in it, and why.
 * Any other error is returned as it is.
 *
 * @param err What encoding the message threw.
 * @param args The arguments the message carried.
 * @param attempt What was attempted, for the message (`Cannot call method "echo" on node "n1"`).
 * @returns The error to throw.
 *
 * @example A symbol in the second argument
 * ```ts
 * import { argumentRefusal, encodeMessage } from "./protocol.ts";
 * import { strictEqual } from "node:assert/strict";
 * const args = [1, { docs: [Symbol("x")] }];
 * let err: unknown;
 * try { encodeMessage({ t: "call", cid: "c", op: "f", args }); } catch (e) { err = argumentRefusal(e, args, "Cannot call f"); }
 * strictEqual((err as TypeError).message, "Cannot call f: argument 1, at [1].docs[0]: a symbol cannot travel");
 * ```
 */
export function argumentRefusal(err: unknown, args: readonly unknown[], attempt: string): unknown {
  if (!isValueRefusal(err)) return err;
  // walked where they sit in a message (one level inside it), so nesting is counted as encode did
  const found = findRefusal({ args });
  const index = found === undefined ? null : /^\.args(\[(\d+)\])/.exec(found.path);
  if (found === undefined || index === null) return err;
  const path = found.path.slice(".args".length);
  const at = path.length > index[1].length ? `, at ${path}` : "";
  // a cycle's reason names where it leads back to as the message does: argument N, or a path in it
  const reason = found.reason.replace(
    /it is \.args(\[(\d+)\]\S*) again$/,
    (_, back: string, i: string) => `it is ${back === `[${i}]` ? `argument ${i}` : back} again`,
  );
  return valueRefusalError(`${attempt}: argument ${index[2]}${at}: ${reason}`, err);
}
