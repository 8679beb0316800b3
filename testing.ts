/**
 * Nodes inside your test's process: `serveInMemory` serves a `NodeServer` (or any frame handler)
 * as `mem://<name>`, and a `MeshNode` with that endpoint reaches it through the same protocol,
 * codec and mailboxes as a node over the network, with no port and no child process. Frames are
 * copied both ways, so what the wire would break, a test catches.
 *
 * @example A service on an in-memory node
 * ```ts
 * import * as ta from "./mod.ts";
 * import { NodeServer } from "./server.ts";
 * import { serveInMemory } from "./testing.ts";
 *
 * const Counter = ta.service(class TestingDocCounter {
 *   n = 0;
 *   add(k: number): number {
 *     return this.n += k;
 *   }
 * });
 * const node = new NodeServer({ name: "n1" });
 * const server = serveInMemory("testing-doc-n1", node.handler);
 * const mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: server.endpoint })]);
 * try {
 *   const total = await mesh.run(async () => {
 *     const counter = Counter.init();
 *     await Promise.all([1, 2, 3].map((k) => counter.add.go(k)));
 *     return await counter.add(0);
 *   });
 *   if (total !== 6) throw new Error(`expected 6, got ${total}`);
 * } finally {
 *   await mesh.close();
 *   await server.close();
 * }
 * ```
 *
 * @module
 */
export { type InMemoryServerHandle, inMemoryTransport, serveInMemory } from "./transports/in_memory.ts";
export type {
  ConnectOptions,
  FrameHandler,
  PeerInfo,
  RequestOptions,
  ServeFramesOptions,
  Transport,
  TransportConnection,
  TransportName,
} from "./transports/transport.ts";
