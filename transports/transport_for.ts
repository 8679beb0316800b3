/**
 * Which transport reaches an endpoint: the endpoint's scheme picks one, a configured name overrides
 * it.
 *
 * @module
 */
import { httpTransport } from "./http.ts";
import { inMemoryTransport } from "./in_memory.ts";
import type { Transport, TransportName } from "./transport.ts";
import { webSocketTransport } from "./websocket.ts";

const BY_NAME: Record<TransportName, Transport> = {
  in_memory: inMemoryTransport,
  http: httpTransport,
  websocket: webSocketTransport,
};

/**
 * Picks the transport for an endpoint: `ws://`/`wss://` → websocket, `http://`/`https://` → http,
 * `mem://` → in_memory. `override` wins over the scheme (a node's `http://h:p` also serves
 * `ws://h:p/ws`, and each transport maps the other scheme to its own URL).
 *
 * @param endpoint A node endpoint.
 * @param override A transport name from configuration.
 * @returns The transport to `connect` with.
 * @throws {TypeError} For an unknown scheme or override.
 *
 * @example
 * ```ts
 * import { transportFor } from "./transport_for.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(transportFor("ws://10.0.0.1:7070").name, "websocket");
 * strictEqual(transportFor("ws://10.0.0.1:7070", "http").name, "http");
 * ```
 */
export function transportFor(endpoint: string, override?: TransportName): Transport {
  if (override !== undefined) {
    const t = BY_NAME[override];
    if (!t) {
      throw new TypeError(`Unknown transport "${override}": expected "http", "websocket" or "in_memory"`);
    }
    if (override !== "in_memory" && endpoint.startsWith("mem://")) {
      throw new TypeError(`Cannot use the ${override} transport for ${endpoint}: it is an in-memory endpoint`);
    }
    return t;
  }
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(endpoint)?.[1]?.toLowerCase();
  switch (scheme) {
    case "ws":
    case "wss":
      return webSocketTransport;
    case "http":
    case "https":
      return httpTransport;
    case "mem":
      return inMemoryTransport;
    default:
      throw new TypeError(`Cannot pick a transport for endpoint "${endpoint}": expected ws://, http:// or mem://`);
  }
}
