/**
 * Tagged errors of thinkagain. Every error a ref can reject with is one of these classes; each has
 * a `_tag` equal to its class name, so Effect users can `Effect.catchTag("TimeoutError", …)` and
 * plain users can `instanceof`. `await ref` rejects with the same instance `ref.effect` fails with.
 *
 * @module
 */
import { Data } from "effect";
import type { Cause } from "effect";

/** Constructor shape of the Effect error base (typed explicitly so JSR does not infer it). */
type ErrorBaseConstructor = new (args: { message: string; cause?: unknown }) => Cause.YieldableError;

// Data.Error gives instances Effect's YieldableError behaviour (`yield* err` fails an Effect).
const ErrorBase: ErrorBaseConstructor = Data.Error as unknown as ErrorBaseConstructor;

/** Names of every error class that may be rebuilt from the wire (the allow-list). */
export type ThinkagainErrorTag =
  | "OpExecutionError"
  | "PlacementError"
  | "TransportError"
  | "RemoteError"
  | "TimeoutError"
  | "CancelledError"
  | "NodeLostError"
  | "ProtocolError"
  | "AuthError"
  | "OverloadedError";

/**
 * Base of every thinkagain error.
 *
 * @example Catching any thinkagain error
 * ```ts
 * import { ThinkagainError, TimeoutError } from "./errors.ts";
 * const e = new TimeoutError("op slow", 10);
 * if (!(e instanceof ThinkagainError)) throw new Error("expected a ThinkagainError");
 * ```
 */
export abstract class ThinkagainError extends ErrorBase {
  /**
   * The class name, for `Effect.catchTag` and the wire. Only {@link ThinkagainErrorTag}s are rebuilt
   * from the wire; an adapter's own error (e.g. WebGPU's `KernelError`) arrives as `RemoteError`.
   */
  abstract readonly _tag: string;
  /** The class name (same as `_tag`), so stack traces and logs say which error this is. */
  override get name(): string {
    return this._tag;
  }
  /** Data that travels with the error on the wire (beside `_tag` and `message`). */
  toData(): Record<string, unknown> {
    return {};
  }
}

/**
 * What an error with an `op` field is about: an op (`"op"`) or a service method (`"method"`, named
 * `Service.method`). Messages call the first an "Op" and the second a "Call".
 *
 * @example
 * ```ts
 * import { OpExecutionError } from "./errors.ts";
 * const e = new OpExecutionError({ name: "Parser.parse", kind: "method" }, new TypeError("bad"));
 * if (e.kind !== "method" || !e.message.startsWith('Call "Parser.parse" failed')) throw new Error(e.message);
 * ```
 */
export type CallKind = "op" | "method";

/**
 * The op or method an error is about: its name alone (an op), or its name and kind (a task's
 * target is one).
 *
 * @example
 * ```ts
 * import { CancelledError, type CallName } from "./errors.ts";
 * const work: CallName = { name: "Slow.work", kind: "method" };
 * if (new CancelledError(work).message !== 'Call "Slow.work" was cancelled') throw new Error("unexpected");
 * ```
 */
export type CallName = string | { readonly name: string; readonly kind: CallKind };

/** The name and the word for it in messages ("Op" or "Call"). */
function named(what: CallName): { name: string; kind: CallKind; word: string } {
  if (typeof what === "string") return { name: what, kind: "op", word: "Op" };
  return { name: what.name, kind: what.kind, word: what.kind === "method" ? "Call" : "Op" };
}

/** The wire data of an error about `op` of `kind` (the kind only when it is a method, as before). */
function callData(op: string, kind: CallKind): Record<string, unknown> {
  return kind === "method" ? { op, kind } : { op };
}

function describe(cause: unknown): string {
  if (cause instanceof Error) return `${cause.name}: ${cause.message}`;
  try {
    return typeof cause === "string" ? cause : JSON.stringify(cause) ?? String(cause);
  } catch {
    return String(cause);
  }
}

/**
 * An op or service method threw (or returned a rejected promise). `.op` names it, `.cause` is what
 * it threw, unchanged (also a non-Error value).
 *
 * @example
 * ```ts
 * import { OpExecutionError } from "./errors.ts";
 * const e = new OpExecutionError("parse", new TypeError("bad"));
 * if (e.op !== "parse" || !(e.cause instanceof TypeError)) throw new Error("unexpected");
 * ```
 */
export class OpExecutionError extends ThinkagainError {
  /** Always `"OpExecutionError"` (for `Effect.catchTag`). */
  readonly _tag = "OpExecutionError" as const;
  /** Name of the op (`name`) or the service method (`Service.method`) that failed. */
  readonly op: string;
  /** Whether `op` names an op or a service method (a call, in the message). */
  readonly kind: CallKind;
  /**
   * The error of `op`, which threw `cause`.
   *
   * @param op Name of the op, or a method's name and kind.
   * @param cause What it threw.
   */
  constructor(op: CallName, cause: unknown) {
    const n = named(op);
    super({ message: `${n.word} "${n.name}" failed: ${describe(cause)}`, cause });
    this.op = n.name;
    this.kind = n.kind;
  }
  /** Constructor data that travels with the error. */
  override toData(): Record<string, unknown> {
    return callData(this.op, this.kind);
  }
}

/**
 * A service could not be placed: no node has the free resources it asks for.
 *
 * @example
 * ```ts
 * import { PlacementError } from "./errors.ts";
 * const e = new PlacementError("Generator", 'Cannot place service "Generator": needs 4 GPUs');
 * if (e.service !== "Generator") throw new Error("unexpected");
 * ```
 */
export class PlacementError extends ThinkagainError {
  /** Always `"PlacementError"` (for `Effect.catchTag`). */
  readonly _tag = "PlacementError" as const;
  /** Name of the service that could not be placed. */
  readonly service: string;
  /**
   * The error of a `service` that fits on no node.
   *
   * @param service The service.
   * @param message What was asked and what is free.
   */
  constructor(service: string, message: string) {
    super({ message });
    this.service = service;
  }
  /** Constructor data that travels with the error. */
  override toData(): Record<string, unknown> {
    return { service: this.service };
  }
}

/** Why a transport failed. */
export type TransportErrorReason = "unreachable" | "closed" | "too-large" | "bad-frame" | "refused" | "io";

/**
 * Moving a frame failed: the endpoint is unreachable, the connection closed, a frame is too large.
 * A node that cannot be reached before it ever answered is this error (`reason: "unreachable"`);
 * once it has answered, losing it is a {@link NodeLostError} whose `cause` is this error.
 *
 * @example
 * ```ts
 * import { TransportError } from "./errors.ts";
 * const e = new TransportError("unreachable", "Cannot connect to ws://127.0.0.1:1: refused", "ws://127.0.0.1:1");
 * if (e.reason !== "unreachable") throw new Error("unexpected");
 * ```
 */
export class TransportError extends ThinkagainError {
  /** Always `"TransportError"` (for `Effect.catchTag`). */
  readonly _tag = "TransportError" as const;
  /** What went wrong, as a machine-readable reason. */
  readonly reason: TransportErrorReason;
  /** The endpoint involved, when there is one. */
  readonly endpoint: string | undefined;
  /**
   * A failure to move a frame to or from `endpoint`.
   *
   * @param reason Why.
   * @param message What was attempted.
   * @param endpoint Where.
   * @param cause The underlying error.
   */
  constructor(reason: TransportErrorReason, message: string, endpoint?: string, cause?: unknown) {
    super({ message, cause });
    this.reason = reason;
    this.endpoint = endpoint;
  }
  /** Constructor data that travels with the error. */
  override toData(): Record<string, unknown> {
    return { reason: this.reason, endpoint: this.endpoint };
  }
}

/**
 * An error arrived from another node whose type is not on the allow-list; only its name and message
 * are kept.
 *
 * @example
 * ```ts
 * import { RemoteError } from "./errors.ts";
 * const e = new RemoteError("boom", "SqlError");
 * if (e.remoteName !== "SqlError") throw new Error("unexpected");
 * ```
 */
export class RemoteError extends ThinkagainError {
  /** Always `"RemoteError"` (for `Effect.catchTag`). */
  readonly _tag = "RemoteError" as const;
  /** The `name` the error had where it was thrown. */
  readonly remoteName: string;
  /**
   * An error from another node whose type is not on the allow-list: its message and name.
   *
   * @param message The message.
   * @param remoteName The error's name where it was thrown.
   */
  constructor(message: string, remoteName = "Error") {
    super({ message });
    this.remoteName = remoteName;
  }
  /** Constructor data that travels with the error. */
  override toData(): Record<string, unknown> {
    return { remoteName: this.remoteName };
  }
}

/**
 * A task did not finish within its deadline (`timeoutMs`).
 *
 * @example
 * ```ts
 * import { TimeoutError } from "./errors.ts";
 * const e = new TimeoutError("fetch", 50);
 * if (e.timeoutMs !== 50) throw new Error("unexpected");
 * ```
 */
export class TimeoutError extends ThinkagainError {
  /** Always `"TimeoutError"` (for `Effect.catchTag`). */
  readonly _tag = "TimeoutError" as const;
  /** Name of the op or method that timed out. */
  readonly op: string;
  /** Whether `op` names an op or a service method (a call, in the message). */
  readonly kind: CallKind;
  /** The deadline that passed, in milliseconds. */
  readonly timeoutMs: number;
  /**
   * The error of `op`, which did not finish within `timeoutMs`.
   *
   * @param op Name of the op, or a method's name and kind.
   * @param timeoutMs The deadline that passed.
   */
  constructor(op: CallName, timeoutMs: number) {
    const n = named(op);
    super({ message: `${n.word} "${n.name}" did not finish within ${timeoutMs} ms` });
    this.op = n.name;
    this.kind = n.kind;
    this.timeoutMs = timeoutMs;
  }
  /** Constructor data that travels with the error. */
  override toData(): Record<string, unknown> {
    return { ...callData(this.op, this.kind), timeoutMs: this.timeoutMs };
  }
}

/**
 * Who or what cancelled a call, as {@link CancelledError.reason} says (it travels with the error):
 * - `"cancelled"`: `ref.cancel()`, or a dependency that was cancelled;
 * - `"timeout"`: its deadline passed where it ran (a node stops a call past the driver's deadline);
 * - `"drain"`: the node running it shut down (SIGTERM, `node.drain()`): nothing is wrong with the
 *   call, so a driver may send it to another node;
 * - `"mesh-closed"`: its mesh closed before it started, or while it ran, past `mesh.close({ graceMs })`;
 * - `"parent"`: the task that submitted it was cancelled or passed its deadline;
 * - `"lease-expired"`: its node destroyed the instance it ran on, because the driver sent no
 *   keepalive for the node's lease (`--lease-ms`): its mesh is open, but that instance is gone.
 */
export type CancelReason = "cancelled" | "timeout" | "drain" | "mesh-closed" | "parent" | "lease-expired";

/** Every {@link CancelReason} (the allow-list a reason from the wire is checked against). */
export const CANCEL_REASONS: ReadonlySet<CancelReason> = new Set<CancelReason>([
  "cancelled",
  "timeout",
  "drain",
  "mesh-closed",
  "parent",
  "lease-expired",
]);

/**
 * A task was cancelled (`ref.cancel()`), or depends on a cancelled task. `reason` says who or what
 * cancelled it (a node draining, a deadline, a closed mesh, or a caller).
 *
 * @example
 * ```ts
 * import { CancelledError } from "./errors.ts";
 * const e = new CancelledError("slow");
 * if (e.op !== "slow" || e.reason !== "cancelled") throw new Error("unexpected");
 * ```
 *
 * @example A drain is told apart from a user's cancel: the call may go to another node
 * ```ts
 * import { CancelledError } from "./errors.ts";
 * const e = new CancelledError("embed", 'cancelled: node "n1" is shutting down', "drain");
 * if (e.reason !== "drain" || e.message !== 'Op "embed" was cancelled: node "n1" is shutting down') {
 *   throw new Error("unexpected");
 * }
 * ```
 */
export class CancelledError extends ThinkagainError {
  /** Always `"CancelledError"` (for `Effect.catchTag`). */
  readonly _tag = "CancelledError" as const;
  /** Name of the op or method that was cancelled. */
  readonly op: string;
  /** Whether `op` names an op or a service method (a call, in the message). */
  readonly kind: CallKind;
  /** Who or what cancelled it. */
  readonly reason: CancelReason;
  /**
   * The error of `op`, cancelled (by whom or what, `reason` says).
   *
   * @param op Name of the op, or a method's name and kind.
   * @param detail How it was cancelled, in words (`Op "<op>" was <detail>`; `Call "<Service.method>" …`).
   * @param reason Who or what cancelled it (default `"cancelled"`).
   */
  constructor(op: CallName, detail = "cancelled", reason: CancelReason = "cancelled") {
    const n = named(op);
    super({ message: `${n.word} "${n.name}" was ${detail}` });
    this.op = n.name;
    this.kind = n.kind;
    this.reason = reason;
  }
  /** Constructor data that travels with the error. */
  override toData(): Record<string, unknown> {
    return { ...callData(this.op, this.kind), reason: this.reason };
  }
}

/**
 * The node running a call went away before answering: its connection broke under the call, its
 * keepalives went unanswered, or a node that answered before cannot be reached any more. `cause` is
 * the transport's error, when there is one.
 *
 * Can't connect, which error? A node never reached yet (a wrong endpoint, nothing listening, a
 * refused upgrade) is a {@link TransportError} (`reason: "unreachable"`): a configuration or network
 * problem. Once the node has answered on a link, the same failure is a `NodeLostError`: the node was
 * there and is gone. Neither call got an answer; code that retries elsewhere catches both.
 *
 * @example
 * ```ts
 * import { NodeLostError } from "./errors.ts";
 * const e = new NodeLostError("n1", "connection closed");
 * if (e.node !== "n1") throw new Error("unexpected");
 * ```
 */
export class NodeLostError extends ThinkagainError {
  /** Always `"NodeLostError"` (for `Effect.catchTag`). */
  readonly _tag = "NodeLostError" as const;
  /** Name of the node that was lost. */
  readonly node: string;
  /**
   * The error of a call on `node`, which went away before answering.
   *
   * @param node The node.
   * @param detail What happened.
   * @param cause The transport's error, if any.
   */
  constructor(node: string, detail = "connection lost", cause?: unknown) {
    const message = `Node "${node}" was lost: ${detail}`;
    super(cause === undefined ? { message } : { message, cause });
    this.node = node;
  }
  /** Constructor data that travels with the error. */
  override toData(): Record<string, unknown> {
    return { node: this.node };
  }
}

/**
 * A peer sent something that breaks the protocol: a malformed frame, an unknown message type, an
 * unknown service or method, a wrong protocol version.
 *
 * @example
 * ```ts
 * import { ProtocolError } from "./errors.ts";
 * const e = new ProtocolError("Unknown service \"Nope\"");
 * if (!e.message.includes("Nope")) throw new Error("unexpected");
 * ```
 */
export class ProtocolError extends ThinkagainError {
  /** Always `"ProtocolError"` (for `Effect.catchTag`). */
  readonly _tag = "ProtocolError" as const;
  /**
   * A protocol violation, said in `message`.
   *
   * @param message What went wrong.
   */
  constructor(message: string) {
    super({ message });
  }
}

/**
 * A connection was refused because its token was missing or wrong.
 *
 * @example
 * ```ts
 * import { AuthError } from "./errors.ts";
 * const e = new AuthError("Connection to n1 refused: wrong token");
 * if (e._tag !== "AuthError") throw new Error("unexpected");
 * ```
 */
export class AuthError extends ThinkagainError {
  /** Always `"AuthError"` (for `Effect.catchTag`). */
  readonly _tag = "AuthError" as const;
  /**
   * A refused connection, said in `message` (never quoting a token).
   *
   * @param message What went wrong.
   */
  constructor(message: string) {
    super({ message });
  }
}

/**
 * Work was refused because a bound was reached (e.g. a node's in-flight calls per connection).
 * Nothing of it ran; the message names the bound and its value. Trying again later may succeed.
 *
 * @example
 * ```ts
 * import { OverloadedError } from "./errors.ts";
 * const e = new OverloadedError("Node n1 refused a call: 10000 calls in flight on this connection");
 * if (e._tag !== "OverloadedError") throw new Error("unexpected");
 * ```
 */
export class OverloadedError extends ThinkagainError {
  /** Always `"OverloadedError"` (for `Effect.catchTag`). */
  readonly _tag = "OverloadedError" as const;
  /**
   * Refused work, `message` naming the bound reached and its value.
   *
   * @param message Which bound was reached, and its value.
   */
  constructor(message: string) {
    super({ message });
  }
}

/**
 * A ref was used after `ref.release()` (or the end of its `using` block): awaited, or passed to a
 * call. The driver gave up the value then, so the node that kept it may have freed it. Raised in
 * the process that released the ref; it is not rebuilt from the wire (elsewhere it arrives as a
 * `RemoteError` named `ReleasedError`).
 *
 * @example
 * ```ts
 * import { ReleasedError } from "./errors.ts";
 * const e = new ReleasedError("embed#7", { name: "embed", kind: "op" });
 * if (e.ref !== "embed#7" || !e.message.includes('op "embed"')) throw new Error(e.message);
 * ```
 */
export class ReleasedError extends ThinkagainError {
  /** Always `"ReleasedError"` (for `Effect.catchTag`). */
  readonly _tag = "ReleasedError" as const;
  /** The released ref's id (`<name>#<seq>`). */
  readonly ref: string;
  /** The op or method whose result it was. */
  readonly op: string;
  /** Whether `op` names an op or a service method. */
  readonly kind: CallKind;
  /**
   * The error of `ref`, used after it was released.
   *
   * @param ref The ref's id.
   * @param op The op, or a method's name and kind, whose result it was.
   */
  constructor(ref: string, op: CallName) {
    const n = named(op);
    super({
      message: `Ref ${ref} (the result of ${n.kind === "method" ? "method" : "op"} "${n.name}") was released ` +
        "(release() or the end of its using block): it can no longer be awaited or passed to a call",
    });
    this.ref = ref;
    this.op = n.name;
    this.kind = n.kind;
  }
  /** Constructor data that travels with the error. */
  override toData(): Record<string, unknown> {
    return { ref: this.ref, ...callData(this.op, this.kind) };
  }
}

/** Every error a task (an `ObjectRef`) can fail with. */
export type TaskError =
  | OpExecutionError
  | PlacementError
  | TransportError
  | RemoteError
  | TimeoutError
  | CancelledError
  | NodeLostError
  | ProtocolError
  | AuthError
  | OverloadedError
  | ReleasedError;
