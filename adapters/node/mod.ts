/**
 * The Node adapter: serve a node's hono app on Node.
 *
 * @example
 * ```ts
 * import { createNodeApp } from "../../transports/mod.ts";
 * import { serve, upgradeWebSocket } from "./mod.ts";
 * const server = await serve(createNodeApp((f) => f, { upgradeWebSocket }), { port: 0 });
 * await server.close();
 * ```
 *
 * @module
 */
export { peerAddress, serve, upgradeWebSocket } from "./serve.ts";
export type { FetchApp, ServedApp, ServeOptions } from "../types.ts";
