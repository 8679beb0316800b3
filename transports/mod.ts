/**
 * Transports move frames (bytes) between a client and a node: in memory, over HTTP, over
 * WebSocket. The endpoint's scheme picks one; an explicit name overrides it.
 *
 * @example The shortest useful program
 * ```ts
 * import { serveInMemory, transportFor } from "./mod.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const server = serveInMemory("mod-doc", (frame) => frame.reverse());
 * const conn = await transportFor(server.endpoint).connect(server.endpoint);
 * deepStrictEqual(await conn.request(new Uint8Array([1, 2, 3])), new Uint8Array([3, 2, 1]));
 * await conn.close();
 * await server.close();
 * ```
 *
 * @module
 */
export type {
  ConnectOptions,
  FrameHandler,
  PeerInfo,
  RequestOptions,
  ServeFramesOptions,
  Transport,
  TransportConnection,
  TransportName,
} from "./transport.ts";
export { DEFAULT_MAX_FRAME_BYTES, timingSafeEqualString } from "./transport.ts";
export { type InMemoryServerHandle, inMemoryTransport, serveInMemory } from "./in_memory.ts";
export { httpTransport, rpcUrl } from "./http.ts";
export { webSocketTransport, webSocketUrl } from "./websocket.ts";
export { createNodeApp, type NodeAppOptions, type NodeHealth, type NodeStatus } from "./server.ts";
export { NodeServer, type NodeServerOptions } from "./node_server.ts";
export { layerRemote } from "./remote_executor.ts";
export { transportFor } from "./transport_for.ts";
