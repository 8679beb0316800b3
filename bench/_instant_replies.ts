/**
 * Bench helper: the driver's side of a call measured alone. It records the in-memory connections a
 * mesh opens from now on; once the instance exists on its node, `answerAll(reply)` makes each of
 * them answer every request at once with `reply`, and `restore()` puts the transport back.
 *
 * @module
 */
import { inMemoryTransport } from "../transports/in_memory.ts";
import type { TransportConnection } from "../transports/transport.ts";

/** Records the in-memory connections opened after it is called (see the module's doc). */
export function recordInMemoryConnections(): { answerAll(reply: Uint8Array): void; restore(): void } {
  const connections: TransportConnection[] = [];
  const connect = inMemoryTransport.connect;
  (inMemoryTransport as { connect: typeof connect }).connect = async (...a) => {
    const c = await connect.apply(inMemoryTransport, a);
    connections.push(c);
    return c;
  };
  return {
    answerAll(reply) {
      for (const c of connections) c.request = () => Promise.resolve(reply);
    },
    restore() {
      (inMemoryTransport as { connect: typeof connect }).connect = connect;
    },
  };
}
