// The OTLP/HTTP receiver of bench/tracing.ts, in its own process so decoding does not compete
// with the benchmark's event loop. Prints its endpoint; when stdin closes, prints how many spans it
// received and exits.
import process from "node:process";
import { startOtlpReceiver } from "../core/_test_otlp_receiver.ts";

const receiver = await startOtlpReceiver();
console.log(receiver.endpoint);
process.stdin.on("data", () => {});
process.stdin.on("end", async () => {
  console.log(`spans ${receiver.spans.length}`);
  await receiver.close();
  process.exit(0);
});
