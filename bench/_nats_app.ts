// The module the node of bench/nats.ts serves (thinkagain serve bench/_nats_app.ts --nats …), and,
// run as a script, the raw NATS responder it is compared with (same client, same payload).
import * as ta from "../mod.ts";

/** Answers with its argument. */
export const NatsBenchEcho = ta.service(
  { name: "NatsBenchEcho", maxConcurrency: 100_000 },
  class NatsBenchEcho {
    echo(x: string): string {
      return x;
    }
  },
);

if (import.meta.main) {
  // raw responder: node:process args: <nats url> <subject>
  const { connect } = await import("@nats-io/transport-node");
  const process = (await import("node:process")).default;
  const [url, subject] = process.argv.slice(2);
  const nc = await connect({ servers: url });
  nc.subscribe(subject, { callback: (_e, m) => void m.respond(m.data) });
  await nc.flush();
  console.log("raw responder ready");
  await nc.closed();
}
