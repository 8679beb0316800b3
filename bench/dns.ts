// How long Mesh.fromDns takes to build a mesh of 3 pods (node processes on 127.0.0.2-4 sharing one
// port, a resolver that answers at once, as a cluster's DNS cache would), against building a mesh
// of the same 3 listed endpoints and waiting for their welcomes (what fromDns also waits for).
//
//   bun bench/dns.ts      deno run -A bench/dns.ts      (RUNS=5 by default)
import process from "node:process";
import { fileURLToPath } from "node:url";
import * as ta from "../mod.ts";
import { meshRuntime } from "../core/mesh.ts";
import { startNodeProcess, thisRuntime } from "../adapters/_test_nodes.ts";
import { handleWire } from "../transports/handle_wire.ts";
import { meshLink } from "../transports/link_table.ts";

const RUNS = Number(process.env.RUNS ?? 5);
const APP = fileURLToPath(new URL("../examples/distributed_app.ts", import.meta.url));
const TOKEN = "bench-dns";

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const spread = (xs: number[], d = 2) => `${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)}`;

const first = await startNodeProcess(APP, ["--host", "127.0.0.2", "--port", "0", "--name", "pod-0"], {
  env: { THINKAGAIN_TOKEN: TOKEN },
});
const port = first.port;
const pods = [
  first,
  ...await Promise.all(
    [1, 2].map((i) =>
      startNodeProcess(APP, ["--host", `127.0.0.${i + 2}`, "--port", String(port), "--name", `pod-${i}`], {
        env: { THINKAGAIN_TOKEN: TOKEN },
      })
    ),
  ),
];
const ips = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
const resolver = { resolve4: () => Promise.resolve(ips), resolveSrv: () => Promise.resolve([]) };

const dnsMs: number[] = [], listedMs: number[] = [];
// run 0 is a warm-up (module loading, first connections), not counted
for (let run = -1; run < RUNS; run++) {
  // alternate which goes first, so neither is billed for the other's warm-up
  const order = run % 2 === 0 ? ["dns", "listed"] : ["listed", "dns"];
  for (const which of order) {
    const s = performance.now();
    if (which === "dns") {
      const mesh = await ta.Mesh.fromDns("pods.bench", { port, token: TOKEN, nodes: 3, resolver, intervalMs: 60_000 });
      if (run >= 0) dnsMs.push(performance.now() - s);
      if (mesh.nodes.length !== 3) throw new Error(`found ${mesh.nodes.length} nodes`);
      await mesh.close();
    } else {
      const mesh = new ta.Mesh(ips.map((ip, i) => new ta.MeshNode(`pod-${i}`, { endpoint: `ws://${ip}:${port}` })), {
        token: TOKEN,
      });
      const rt = meshRuntime(mesh);
      await Promise.all(mesh.nodes.map((n) => meshLink(rt, n, handleWire).welcome()));
      if (run >= 0) listedMs.push(performance.now() - s);
      await mesh.close();
    }
  }
}

const ratios = dnsMs.map((d, i) => listedMs[i] / d);
console.log(`\n### DNS (${thisRuntime()}, ${RUNS} runs, 3 pods)\n`);
console.log(
  "| measure | listed endpoints + welcomes (median) | Mesh.fromDns (median, min–max) | ratio (median, min–max) |",
);
console.log("|---|---|---|---|");
console.log(
  `| build a mesh of 3 pods | ${median(listedMs).toFixed(1)} ms | ${median(dnsMs).toFixed(1)} ms (${
    spread(dnsMs, 1)
  }) | ${median(ratios).toFixed(2)}× (${spread(ratios)}) |`,
);

for (const p of pods) p.kill("SIGKILL");
await Promise.all(pods.map((p) => p.exited));
process.exit(0);
