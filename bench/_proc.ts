// Private to bench/: what Linux's /proc says a process has spent so far (CPU time, page faults).
import { readdirSync, readFileSync } from "node:fs";

/**
 * µs on the CPU of all the threads of process `pid` so far, from each thread's schedstat (ns); a
 * thread that ends between the listing and its read is left out.
 *
 * @throws When there is no /proc (not Linux) or no such process.
 */
export function processCpuMicros(pid: number): number {
  let ns = 0;
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, "utf8").split(" ")[0]);
    } catch {
      // (a thread that ended between the listing and the read)
    }
  }
  return ns / 1000;
}

/**
 * Minor page faults process `pid` (or this one, `"self"`) has taken so far (/proc/<pid>/stat).
 *
 * @throws When there is no /proc (not Linux) or no such process.
 */
export function processMinorFaults(pid: number | "self"): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // the fields after the command's name (which may hold spaces) in parentheses: minflt is the 10th field
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[7]);
}
