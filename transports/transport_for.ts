/**
 * Which transport reaches an endpoint: the endpoint's scheme picks one, a configured name overrides
 * it.
 *
 * @module
 */
import { httpTransport } from "./http.ts";
import { inMemoryTransport } from "./in_memory.ts";
import type { Transport, TransportName } from "./transport.ts";
import { checkWebSocketRuntime, webSocketTransport } from "./websocket.ts";

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
  websocket: webSocketTransport,
  http: httpTransport,
  nats: lazyNatsTransport,
  in_memory: inMemoryTransport,
};

/** Every name, in words (`"websocket", "http", "nats" or "in_memory"`), for the errors. */
const NAMES_IN_WORDS: string = Object.keys(BY_NAME).map((n) => JSON.stringify(n)).join(", ").replace(
  /, ([^,]*)$/,
  " or $1",
);

/**
 * Checks a transport name from configuration: the mesh's `transport` option, the config file's,
 * and `THINKAGAIN_TRANSPORT` take the same names, every built-in transport's.
 *
 * @param value The name given.
 * @param what Where it was given, for the error (`THINKAGAIN_TRANSPORT`).
 * @returns The name.
 * @throws {TypeError} For a name no transport has, listing the names there are.
 *
 * @example
 * ```ts
 * import { checkTransportName } from "./transport_for.ts";
 * import { strictEqual, throws } from "node:assert/strict";
 * strictEqual(checkTransportName("nats", "THINKAGAIN_TRANSPORT"), "nats");
 * throws(() => checkTransportName("tcp", "THINKAGAIN_TRANSPORT"), /must be "websocket", "http", "nats" or "in_memory"/);
 * ```
 */
export function checkTransportName(value: unknown, what: string): TransportName {
  if (typeof value === "string" && Object.hasOwn(BY_NAME, value)) return value as TransportName;
  throw new TypeError(`${what} must be ${NAMES_IN_WORDS}, got ${JSON.stringify(value)}`);
}

/**
 * Picks the transport for an endpoint: `ws://`/`wss://` → websocket, `http://`/`https://` → http,
 * `mem://` → in_memory, `nats://` → nats (loaded on first use). `override` wins over the scheme (a node's `http://h:p` also serves
 * `ws://h:p/ws`, and each transport maps the other scheme to its own URL).
 *
 * @param endpoint A node endpoint.
 * @param override A transport name from configuration.
 * @returns The transport to `connect` with.
 * @throws {TypeError} For an unknown scheme or override, an override that cannot serve the scheme
 * (`in_memory` reaches only `mem://`, and only `in_memory` reaches it), or the WebSocket transport
 * on a runtime with no global `WebSocket` (Node before 22).
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
    if (!Object.hasOwn(BY_NAME, override)) {
      throw new TypeError(`Unknown transport ${JSON.stringify(override)}: expected ${NAMES_IN_WORDS}`);
    }
    const t = BY_NAME[override];
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
    if (override === "websocket") checkWebSocketRuntime(endpoint);
    return t;
  }
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(endpoint)?.[1]?.toLowerCase();
  switch (scheme) {
    case "ws":
    case "wss":
      checkWebSocketRuntime(endpoint); // (Node before 22 has no WebSocket: said when the mesh is built)
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
