/**
 * What runs a node: a `NodeServer` answers the protocol for the services and remote-capable ops
 * this process registered, and `createNodeApp` turns it into a hono app (`POST /rpc`, `GET /ws`)
 * that a runtime adapter (`@thinkagain/thinkagain/bun`, `/deno` or `/node`) puts on a port.
 * `thinkagain serve <module>` does all of this for you; import this entry to start a node from
 * your own program.
 *
 * @example A node on Deno, and one call to it through a Mesh
 * ```ts
 * import * as ta from "./mod.ts";
 * import { createNodeApp, NodeServer } from "./server.ts";
 * import { serve, upgradeWebSocket } from "./adapters/deno/mod.ts";
 *
 * const Greeter = ta.service(class ServerDocGreeter {
 *   greet(name: string): string {
 *     return `hello ${name}`;
 *   }
 * });
 * const node = new NodeServer({ name: "n1" });
 * const server = await serve(createNodeApp(node.handler, { upgradeWebSocket }), { port: 0 });
 * const mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: `ws://127.0.0.1:${server.port}` })]);
 * try {
 *   const out = await mesh.run(() => Greeter.init().greet.go("deno"));
 *   if (out !== "hello deno") throw new Error(`expected "hello deno", got ${out}`);
 * } finally {
 *   await mesh.close();
 *   await node.drain();
 *   await server.close();
 * }
 * ```
 *
 * @module
 */
export { DEFAULT_LEASE_MS, NodeServer, type NodeServerOptions } from "./transports/node_server.ts";
export { createNodeApp, type NodeAppOptions, type NodeHealth, type NodeStatus } from "./transports/server.ts";
export { PROTOCOL_VERSION } from "./transports/protocol.ts";
export type { FrameHandler, PeerInfo, ServeFramesOptions, TransportName } from "./transports/transport.ts";
export type { NodePeer } from "./transports/handle_wire.ts";
