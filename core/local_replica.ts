/**
 * A replica living in this process: the service instance, constructed in its run context (so it
 * sees its node and GPUs), whose calls run through the mailbox as plain calls.
 *
 * @module
 */
import { type InstanceInfo, type RunContext, runInContext } from "./context.ts";
import type { ReplicaState } from "./deployment.ts";
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

/** A replica living in this process: the instance and its run context. */
export class LocalReplica extends MailboxReplica {
  readonly ctx: RunContext;
  private instance: Record<string, unknown> | undefined;
  private initFailure: OpExecutionError | undefined;

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
