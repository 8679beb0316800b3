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

/**
 * The NATS transport, loaded on its first connect: its client is a dependency of the `./nats` entry
 * only, so nothing that never reaches a `nats://` node loads it.
 */
const lazyNatsTransport: Transport = {
  name: "nats",
  async connect(endpoint, options) {
    const { natsTransport } = await import("./nats/transport.ts");
    return natsTransport.connect(endpoint, options);
  },
};

const BY_NAME: Record<TransportName, Transport> = {
  in_memory: inMemoryTransport,
  http: httpTransport,
  websocket: webSocketTransport,
  nats: lazyNatsTransport,
};

/**
 * Picks the transport for an endpoint: `ws://`/`wss://` → websocket, `http://`/`https://` → http,
 * `mem://` → in_memory, `nats://` → nats (loaded on first use). `override` wins over the scheme (a node's `http://h:p` also serves
 * `ws://h:p/ws`, and each transport maps the other scheme to its own URL).
 *
 * @param endpoint A node endpoint.
 * @param override A transport name from configuration.
 * @returns The transport to `connect` with.
 * @throws {TypeError} For an unknown scheme or override, or an override that cannot serve the scheme
 * (`in_memory` reaches only `mem://`, and only `in_memory` reaches it).
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
    // a nats:// endpoint names a subject, not a host to open a socket to (and the reverse)
    if ((override === "nats") !== /^nats:/i.test(endpoint)) {
      throw new TypeError(
        `Cannot use the ${override} transport for ${endpoint}: ${
          override === "nats" ? "the NATS transport needs a nats://host:4222/<node> endpoint" : "it is a NATS endpoint"
        }`,
      );
    }
    if (override === "in_memory" && !endpoint.startsWith("mem://")) {
      throw new TypeError(
        `Cannot use the in_memory transport for ${endpoint}: it reaches only nodes in this process (mem://name)`,
      );
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
    case "nats":
      return lazyNatsTransport;
    default:
      throw new TypeError(
        `Cannot pick a transport for endpoint "${endpoint}": expected ws://, http://, nats:// or mem://`,
      );
  }
}
