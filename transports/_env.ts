// The one place in transports/ that looks at the environment: THINKAGAIN_TRANSPORT overrides the
// transport of every mesh. Feature-detected (process.env on Bun/Node/Deno, Deno.env as a fallback)
// so edge runtimes without an environment simply have no override.
import type { TransportName } from "./transport.ts";

const NAMES: ReadonlySet<string> = new Set(["http", "websocket", "in_memory"]);

/** The transport named by THINKAGAIN_TRANSPORT, if set; a bad value is a TypeError saying so. */
export function envTransport(): TransportName | undefined {
  let value: string | undefined;
  try {
    const g = globalThis as {
      process?: { env?: Record<string, string | undefined> };
      Deno?: { env?: { get(k: string): string | undefined } };
    };
    value = g.process?.env?.THINKAGAIN_TRANSPORT ?? g.Deno?.env?.get("THINKAGAIN_TRANSPORT");
  } catch {
    return undefined; // no permission to read the environment
  }
  if (value === undefined || value === "") return undefined;
  if (!NAMES.has(value)) {
    throw new TypeError(
      `THINKAGAIN_TRANSPORT must be "http", "websocket" or "in_memory", got ${JSON.stringify(value)}`,
    );
  }
  return value as TransportName;
}
