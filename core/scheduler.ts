/**
 * Where an op or method call is scheduled: `submit` makes the task, wires its arguments into the
 * DAG (`dag.ts`: counted inputs) and, when nothing is pending, queues it on one microtask-drained
 * ready queue; a task whose inputs resolve later is started by the settle of its last input
 * (`task.ts`). Starting means handing the task to its target: an op's runner (`op.ts`) or a
 * replica's mailbox (`mailbox.ts`), which run its body (`run_body.ts`).
 *
 * @module
 */
import { currentContext, enterParentContext, type RunContext, runningBody } from "./context.ts";
import { scanArgs } from "./dag.ts";
import { eventsEnabled, listening, submitProbe } from "./events.ts";
import { record } from "./record.ts";
import { adoptChild, settle, State, Task, type TaskTarget } from "./task.ts";

const { PENDING, FAILED } = State;

const readyQueue: Task<unknown>[] = [];
let drainScheduled = false;

function drainReady(): void {
  drainScheduled = false;
  // tasks that become ready while draining (sync ops completing) are appended and run in this loop
  for (let i = 0; i < readyQueue.length; i++) {
    const task = readyQueue[i];
    if (task._state !== PENDING) continue;
    try {
      task._target.ready(task);
    } catch (e) {
      settle(task, FAILED, e);
    }
  }
  readyQueue.length = 0;
}

/**
 * The task whose body is submitting now, given the submitter's context `ctx`: the body whose
 * synchronous part runs (which then enters a context naming it, so that what it submits after an
 * await finds it too), else the parent its context names. `undefined` outside any body.
 */
export function submittingParent(ctx: RunContext | undefined): Task<unknown> | undefined {
  const body = runningBody.task as Task<unknown> | undefined;
  if (body !== undefined) {
    if (ctx === undefined || ctx.parent !== body) enterParentContext(body);
    return body;
  }
  return ctx === undefined ? undefined : ctx.parent as Task<unknown> | undefined;
}

/**
 * Creates the task for one call and wires it into the DAG. `enqueue` (a service
 * replica's mailbox) sees the task at submission, so per-instance order is submission order. A task
 * submitted by a body is that body's child (`adoptChild`).
 */
export function submit<T>(
  target: TaskTarget,
  args: unknown[],
  ctx: RunContext | undefined,
  enqueue?: (task: Task<unknown>) => void,
): Task<T> {
  if (submitProbe !== undefined) submitProbe();
  // counted before its "submitted" event, which then reads the mesh's count with this task in it
  if (ctx !== undefined && ctx.mesh !== undefined) ctx.mesh.tasksMade++;
  const task = new Task<T>(target, args, ctx);
  if (eventsEnabled) record(task as Task<unknown>, ctx);
  else if (listening && ctx?.task !== undefined) record(task as Task<unknown>, ctx); // gate closed: a recorded caller's
  const parent = runningBody.task !== undefined || ctx !== undefined ? submittingParent(ctx) : undefined;
  if (parent !== undefined && !adoptChild(parent, task as Task<unknown>)) return task;
  if (args.length !== 0) scanArgs(task as Task<unknown>, args);
  if (task._state !== PENDING) return task; // an input had already failed
  if (enqueue !== undefined) enqueue(task as Task<unknown>);
  if (task._pending === 0) {
    readyQueue.push(task as Task<unknown>);
    if (!drainScheduled) {
      drainScheduled = true;
      queueMicrotask(drainReady);
    }
  }
  return task;
}

/** A task that fails before it could be submitted anywhere (closed mesh, no placement). */
export function failedRef<T>(target: TaskTarget, error: unknown): Task<T> {
  const task = new Task<T>(target, undefined, undefined);
  if (listening) record(task as Task<unknown>, currentContext());
  settle(task as Task<unknown>, FAILED, error);
  return task;
}
