/**
 * A replica living in this process: the service instance, constructed in its run context (so it
 * sees its node and GPUs), whose calls run through the mailbox as plain calls.
 *
 * @module
 */
import { type InstanceInfo, type RunContext, runInContext } from "./context.ts";
import type { Replica, ReplicaState } from "./deployment.ts";
import type { GpuDevice } from "./devices.ts";
import { CancelledError, OpExecutionError } from "./errors.ts";
import { MailboxReplica } from "./mailbox.ts";
import type { MeshRuntime } from "./mesh_runtime.ts";
import { runBody } from "./run_body.ts";
import type { ServiceDef } from "./service_def.ts";
import type { Task } from "./task.ts";

const byInstance = new WeakMap<InstanceInfo, LocalReplica>();

/**
 * The replica in this process whose constructor or methods see `instance` as theirs, if any.
 *
 * @param instance What `currentInstance()` returns inside the replica.
 * @returns The replica, or `undefined` when it does not live in this process.
 *
 * @example
 * ```ts
 * import { localReplicaOf } from "./local_replica.ts";
 * if (localReplicaOf({ service: "S", replica: 0, node: "local", gpus: [] }) !== undefined) throw new Error();
 * ```
 */
export function localReplicaOf(instance: InstanceInfo): LocalReplica | undefined {
  return byInstance.get(instance);
}

/**
 * The instances of handles outside any mesh, each disposed once its handle is collected. The
 * registry holds the replicas, never the handle (which holds them): an instance that keeps its own
 * handle keeps itself, and is never disposed.
 */
const ownedByHandles = new FinalizationRegistry<readonly Replica[]>((replicas) => {
  for (const r of replicas) if (r instanceof LocalReplica) r.closeWhenIdle();
});

/**
 * Has the instances of `replicas` disposed once `owner` is collected, each when its calls are through
 * (outside any mesh, where nothing else closes them: a handle's instance lives as long as the handle).
 * Not prompt: when the runtime collects it, which may be long after, or never before the program ends.
 *
 * @param owner What the instances live as long as (a handle's state).
 * @param replicas The replicas (those of this process are disposed; others are left alone).
 *
 * @example An instance is disposed once what owns it is collected
 * ```ts
 * import { closeWithOwner, LocalReplica } from "./local_replica.ts";
 * import { defineService } from "./service_def.ts";
 * import { collectNow } from "./_runtime.ts";
 * let disposed = false;
 * const def = defineService({}, class CloseWithOwnerDoc {
 *   get() { return 1; }
 *   [Symbol.dispose]() { disposed = true; }
 * });
 * (() => closeWithOwner({}, [new LocalReplica(def, [], undefined, 0, "local", [])]))();
 * for (let i = 0; i < 100 && !disposed; i++) {
 *   collectNow();
 *   await new Promise((r) => setTimeout(r, 0));
 * }
 * if (!disposed) throw new Error("not disposed");
 * ```
 */
export function closeWithOwner(owner: object, replicas: readonly Replica[]): void {
  ownedByHandles.register(owner, replicas);
}

/** A replica living in this process: the instance and its run context. */
export class LocalReplica extends MailboxReplica {
  readonly ctx: RunContext;
  private instance: Record<string, unknown> | undefined;
  private initFailure: OpExecutionError | undefined;
  /** Closes the replica, once {@linkcode closeWhenIdle} was asked while calls were outstanding. */
  private whenIdle: (() => void) | undefined;

  constructor(
    def: ServiceDef,
    args: unknown[],
    mesh: MeshRuntime | undefined,
    index: number,
    node: string,
    gpus: readonly GpuDevice[],
    id?: string,
  ) {
    super(def, index, node, gpus, def.maxConcurrency);
    const info: InstanceInfo = id === undefined
      ? { service: def.name, replica: index, node, gpus }
      : { service: def.name, replica: index, node, gpus, id };
    this.ctx = { mesh, instance: info };
    byInstance.set(info, this);
    try {
      this.instance = runInContext(this.ctx, () => new def.cls(...args));
    } catch (e) {
      this.initFailure = new OpExecutionError({ name: `${def.name}.constructor`, kind: "method" }, e);
    }
  }

  /** A call from code running inside `instance` waits for this replica's slots when it is this replica. */
  protected override replicaOf(instance: InstanceInfo): MailboxReplica | undefined {
    return instance === this.ctx.instance ? this : undefined;
  }

  /** The instance (a node waits for a resident's `ready`); `undefined` once disposed or when its constructor threw. */
  get value(): Record<string, unknown> | undefined {
    return this.instance;
  }

  /** What the constructor threw, wrapped; `undefined` when the instance exists. */
  get failure(): OpExecutionError | undefined {
    return this.initFailure;
  }

  /** `"failed"` when the constructor threw, else `"ready"`. */
  get state(): ReplicaState {
    return this.initFailure === undefined ? "ready" : "failed";
  }

  /**
   * Closes the replica (disposing the instance) once no call is outstanding: queued, running, or
   * holding its slot while the stream it returned is read. For an instance no call can reach any
   * more (its handle is gone): its calls made before run first, as they would have.
   */
  closeWhenIdle(): void {
    // (as a mesh's close, this ignores what a dispose throws)
    const close = () => void this.close().catch(() => {});
    if (this.outstanding === 0) return close();
    this.whenIdle = () => {
      this.whenIdle = undefined;
      queueMicrotask(close); // (after the call that ended, not inside it)
    };
  }

  /** Starts what may start; then, when closing waits for no call to be outstanding, closes once none is. */
  override pump(): void {
    super.pump();
    // (every call leaves through here: ended, dropped from the queue, or failed without starting)
    if (this.whenIdle !== undefined && this.outstanding === 0) this.whenIdle();
  }

  protected unavailable(task: Task<unknown>): unknown {
    if (this.initFailure !== undefined) return this.initFailure;
    if (this.instance === undefined) return new CancelledError(task._target, "not started: instance disposed");
    return undefined;
  }

  protected start(task: Task<unknown>, method: string): void {
    const instance = this.instance!;
    runBody(
      task,
      instance[method] as (...a: unknown[]) => unknown,
      instance,
      this.ctx,
      this.def.policy,
      this.doneBound,
    );
  }

  protected async dispose(): Promise<void> {
    const instance = this.instance;
    this.instance = undefined;
    if (instance === undefined) return;
    const dispose =
      (instance[Symbol.asyncDispose as unknown as string] ?? instance[Symbol.dispose as unknown as string] ??
        instance["close"]) as (() => unknown) | undefined;
    if (typeof dispose === "function") await runInContext(this.ctx, () => dispose.call(instance));
  }
}
