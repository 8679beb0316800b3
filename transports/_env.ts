// The one place in transports/ that looks at the environment: THINKAGAIN_TRANSPORT overrides the
// transport of every mesh. Read through core's runtime seam, so edge runtimes without an
// environment simply have no override.
import { envVar } from "../core/_runtime.ts";
import type { TransportName } from "./transport.ts";

const NAMES: ReadonlySet<string> = new Set(["http", "websocket", "in_memory"]);

/** The transport named by THINKAGAIN_TRANSPORT, if set; a bad value is a TypeError saying so. */
export function envTransport(): TransportName | undefined {
  const value = envVar("THINKAGAIN_TRANSPORT");
  if (value === undefined || value === "") return undefined;
  if (!NAMES.has(value)) {
    throw new TypeError(
      `THINKAGAIN_TRANSPORT must be "http", "websocket" or "in_memory", got ${JSON.stringify(value)}`,
    );
  }
  return value as TransportName;
}
