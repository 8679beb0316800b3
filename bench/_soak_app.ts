// The soak's node module (bench/soak.ts): the backpressure test app, plus, with SOAK_LAG_MS set,
// a watch on the node's event loop. A 1 ms interval timer notes every gap between its ticks longer
// than SOAK_LAG_MS (the loop was busy that long), stamped like the soak's --trace-ms lines (wall
// clock ms mod 1e6), with the node's CPU time (user, system ms) spent in that gap and, on Bun, the
// JavaScript heap's size before and after it. They are printed on stderr, which the soak shows at
// the end.
export * from "../transports/_backpressure_app.ts";

const env = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env ?? {};
const lagMs = Number(env.SOAK_LAG_MS ?? "0");
if (lagMs > 0) {
  const proc = (globalThis as unknown as { process: { cpuUsage(): { user: number; system: number } } }).process;
  let last = performance.now();
  let cpu = proc.cpuUsage();
  // on Bun, the heap's size too: a gap in which it shrank held a collection
  const jscModule = "bun:jsc"; // not a literal: Deno's module graph would try to resolve it
  const jsc = (globalThis as { Bun?: unknown }).Bun ? (await import(jscModule)) as { heapSize(): number } : undefined;
  let heap = jsc ? jsc.heapSize() : 0;
  setInterval(() => {
    const now = performance.now();
    const c = proc.cpuUsage();
    const gap = now - last;
    const h = jsc ? jsc.heapSize() : 0;
    if (gap > lagMs) {
      console.error(
        `lag ${Date.now() % 1e6} ${gap.toFixed(1)} ms (cpu user ${((c.user - cpu.user) / 1000).toFixed(1)} sys ${
          ((c.system - cpu.system) / 1000).toFixed(1)
        } ms) heap ${(heap / 1048576).toFixed(1)} -> ${(h / 1048576).toFixed(1)} MiB`,
      );
    }
    last = now;
    cpu = c;
    heap = h;
  }, 1);
}
