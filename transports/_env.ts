// The one place in transports/ that looks at the environment: THINKAGAIN_TRANSPORT overrides the
// transport of every mesh. Read through core's runtime seam, so edge runtimes without an
// environment simply have no override.
import { envVar } from "../core/_runtime.ts";
import type { TransportName } from "./transport.ts";
import { checkTransportName } from "./transport_for.ts";

/**
 * The transport named by THINKAGAIN_TRANSPORT, if set: any name the mesh's `transport` option takes
 * (`nats` too: it reaches only `nats://` endpoints, as that option does); a bad value is a TypeError
 * saying so.
 */
export function envTransport(): TransportName | undefined {
  const value = envVar("THINKAGAIN_TRANSPORT");
  if (value === undefined || value === "") return undefined;
  return checkTransportName(value, "THINKAGAIN_TRANSPORT");
}
