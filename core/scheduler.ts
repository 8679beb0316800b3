/**
 * Where an op or method call is scheduled: `submit` makes the task, wires its arguments into the
 * DAG (`dag.ts`: counted inputs) and, when nothing is pending, queues it on one microtask-drained
 * ready queue; a task whose inputs resolve later is started by the settle of its last input
 * (`task.ts`). Starting means handing the task to its target: an op's runner (`op.ts`) or a
 * replica's mailbox (`mailbox.ts`), which run its body (`run_body.ts`).
 *
 * @module
 */
import { currentContext, type RunContext } from "./context.ts";
import { scanArgs } from "./dag.ts";
import { eventsEnabled, listening, submitProbe } from "./events.ts";
import { record } from "./record.ts";
import { settle, State, Task, type TaskTarget } from "./task.ts";

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
 * Creates the task for one call and wires it into the DAG. `enqueue` (a service
 * replica's mailbox) sees the task at submission, so per-instance order is submission order.
 */
export function submit<T>(
  target: TaskTarget,
  args: unknown[],
  ctx: RunContext | undefined,
  enqueue?: (task: Task<unknown>) => void,
): Task<T> {
  if (submitProbe !== undefined) submitProbe();
  const task = new Task<T>(target, args, ctx);
  if (eventsEnabled) record(task as Task<unknown>, ctx);
  else if (listening && ctx?.task !== undefined) record(task as Task<unknown>, ctx); // gate closed: a recorded caller's
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
