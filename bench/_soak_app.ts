// The soak's node module (bench/soak.ts): the backpressure test app, plus, with SOAK_LAG_MS set,
// a watch on the node's event loop. A 1 ms interval timer notes every gap between its ticks longer
// than SOAK_LAG_MS (the loop was busy that long), stamped like the soak's --trace-ms lines (wall
// clock ms mod 1e6), with the node's CPU time (user, system ms) spent in that gap. They are
// printed on stderr, which the soak shows at the end.
export * from "../transports/_backpressure_app.ts";

const env = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env ?? {};
const lagMs = Number(env.SOAK_LAG_MS ?? "0");
if (lagMs > 0) {
  const proc = (globalThis as unknown as { process: { cpuUsage(): { user: number; system: number } } }).process;
  let last = performance.now();
  let cpu = proc.cpuUsage();
  setInterval(() => {
    const now = performance.now();
    const c = proc.cpuUsage();
    const gap = now - last;
    if (gap > lagMs) {
      console.error(
        `lag ${Date.now() % 1e6} ${gap.toFixed(1)} ms (cpu user ${((c.user - cpu.user) / 1000).toFixed(1)} sys ${
          ((c.system - cpu.system) / 1000).toFixed(1)
        } ms)`,
      );
    }
    last = now;
    cpu = c;
  }, 1);
}
