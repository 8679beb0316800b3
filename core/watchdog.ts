/**
 * The stuck-work watchdog (`MeshOptions.stuckAfterMs`): a timer that looks over a mesh's unsettled
 * tasks (its roster, and the service calls listed for it while it looks: `TaskRoster.calls`) a few
 * times per `stuckAfterMs` and reports each task (op or service call) pending or running longer
 * than that, once, with its explanation (`explain.ts`): as a `"stuck"` event on the task event stream
 * (`onTaskEvent`, which the dashboard shows) and to the mesh's `onStuck`. It costs nothing per op
 * call: the timer reads the roster the mesh keeps anyway; a service call costs one entry on the list
 * while the watchdog is on (and one property read while it is off). Times come from the tasks'
 * recorded times when events are on, else from when the watchdog first saw each task (so a task is
 * reported at most one look late).
 *
 * @module
 */
import { unrefTimer } from "./_runtime.ts";
import { emitStuck } from "./events.ts";
import { type ChainEnds, explainTask, type Explanation, formatExplanation, noteSeen } from "./explain.ts";
import { type Task, TaskRoster } from "./task.ts";

/** What the watchdog does with a stuck task: by default, a `console.warn` with its explanation. */
export type StuckListener = (explanation: Explanation) => void;

/** Warns on the console with the explanation (the default {@linkcode StuckListener}). */
export function warnStuck(explanation: Explanation): void {
  console.warn(`thinkagain: ${explanation.id} is stuck:\n${formatExplanation(explanation)}`);
}

/**
 * Starts watching `roster`: every task unsettled for `stuckAfterMs` or longer is sent once as a
 * `"stuck"` event on the task event stream and passed to `report`.
 *
 * @param roster The mesh's unsettled tasks.
 * @param stuckAfterMs How long a task may stay unsettled before it is reported, in ms.
 * @param report Told of each stuck task once.
 * @returns A function that stops the watchdog.
 *
 * @example
 * ```ts
 * import { watchStuck } from "./watchdog.ts";
 * import { TaskRoster } from "./task.ts";
 * const stop = watchStuck(new TaskRoster(), 1000, () => {});
 * stop();
 * ```
 */
export function watchStuck(roster: TaskRoster, stuckAfterMs: number, report: StuckListener): () => void {
  const firstSeen = new WeakMap<Task<unknown>, number>();
  const reported = new WeakSet<Task<unknown>>();
  // the mesh's service calls are listed for it, apart from its op calls (see TaskRoster.calls)
  const calls = roster.calls ??= new TaskRoster();
  const look = () => {
    if (roster.size === 0 && calls.size === 0) return;
    const now = performance.now();
    const stuck: Task<unknown>[] = [];
    const see = (task: Task<unknown>) => {
      if (reported.has(task)) return;
      let since = task._meta?.submittedAt;
      if (since === undefined || since === 0) {
        // explain() counts how long it waits from this look too (its first in that state)
        noteSeen(task, now);
        since = firstSeen.get(task);
        if (since === undefined) {
          firstSeen.set(task, now);
          since = now;
        }
      }
      if (now - since >= stuckAfterMs) stuck.push(task);
    };
    roster.forEach(see);
    calls.forEach(see);
    // many stuck tasks of one long chain walk it once between them
    const ends: ChainEnds = new Map();
    for (const task of stuck) {
      reported.add(task);
      try {
        const explanation = explainTask(task, ends);
        emitStuck(task, now, explanation);
        report(explanation);
      } catch {
        // a throwing listener must not stop the watchdog
      }
    }
  };
  const timer = setInterval(look, Math.max(5, Math.min(stuckAfterMs / 4, 1000)));
  unrefTimer(timer);
  return () => {
    clearInterval(timer);
    // no longer listed: the calls on the list leave it now, not when they settle
    if (roster.calls === calls) {
      roster.calls = undefined;
      calls.takeAll();
    }
  };
}
