/**
 * thinkagain over NATS: the `nats://` transport (a node's frames on the subject
 * `thinkagain.node.<name>`), serving a node over NATS, and discovery of the nodes on a NATS
 * cluster. NATS carries control and small messages; large values travel on direct node links.
 *
 * @example The shortest useful program: a node served over NATS, called through it
 * ```ts ignore
 * import { natsTransport, serveNats } from "@thinkagain/thinkagain/nats";
 * const node = await serveNats((frame) => frame, { nats: "nats://127.0.0.1:4222", name: "n1" });
 * const conn = await natsTransport.connect(node.endpoint); // nats://127.0.0.1:4222/n1
 * await conn.request(new Uint8Array([1, 2, 3]));
 * await conn.close();
 * await node.close();
 * ```
 *
 * @module
 */
export {
  isNatsNodeName,
  type NatsEndpoint,
  natsEndpoint,
  nodeSubject,
  parseNatsEndpoint,
  parseNatsServers,
} from "./endpoint.ts";
export { AUDIT_EVERY_MS, natsTransport, overMaxPayload } from "./transport.ts";
export { type NatsServer, serveNats, type ServeNatsOptions } from "./serve.ts";
export type { NatsLease } from "./pool.ts";
export type { ConnectOptions, RequestOptions, Transport, TransportConnection, TransportName } from "../transport.ts";
export { type NatsNode, type NatsNodeOptions, startNatsNode } from "./node.ts";
export { type NodeAnnouncement } from "./announcement.ts";
export { fetchFrame, MAX_PARKED_BYTES, PARKED_TTL_MS, ReplyParking } from "./parking.ts";
export {
  announcedNode,
  DEFAULT_DISCOVER_TIMEOUT_MS,
  discoverNodes,
  type DiscoverNodesOptions,
  type DiscoverOptions,
} from "./discovery.ts";
