/**
 * A node on a NATS cluster (`thinkagain serve app.ts --nats nats://…`): serves its frames on
 * `thinkagain.node.<name>`, answers discovery, announces itself when it starts (and after its NATS
 * client reconnected), says when it leaves, and serves each of its remote-capable ops in a NATS
 * queue group per op, so that any number of nodes share an op.
 *
 * @module
 */
import type { Subscription } from "@nats-io/nats-core";
import { decodeReply, encodeMessage, PROTOCOL_VERSION, type WelcomeMessage } from "../protocol.ts";
import type { FrameHandler } from "../transport.ts";
import {
  ANNOUNCE_SUBJECT,
  DISCOVER_SUBJECT,
  encodeAnnouncement,
  LEAVE_SUBJECT,
  type NodeAnnouncement,
} from "./announcement.ts";
import { opBroadcastSubject, opSubject } from "./endpoint.ts";
import { type NatsServer, serveNats, type ServeNatsOptions } from "./serve.ts";

/** Options of {@linkcode startNatsNode} (`direct` is also told in its announcement). */
export interface NatsNodeOptions extends ServeNatsOptions {}

/** A node announced on a NATS cluster. */
export interface NatsNode {
  /** Its NATS endpoint, `nats://…/<name>`. */
  readonly endpoint: string;
  /** What it announced. */
  readonly announcement: NodeAnnouncement;
  /** Tells the cluster it leaves (drivers stop placing on it); it still answers calls in flight. */
  leave(): Promise<void>;
  /** Leaves, and stops serving over NATS. */
  close(): Promise<void>;
}

/**
 * Serves a node over NATS and announces it (see the module doc).
 *
 * @param handler The node's frame handler (`NodeServer.handler`).
 * @param options NATS servers, name, token, frame limit, direct endpoint.
 * @returns The announced node.
 * @throws {TransportError} When NATS is unreachable.
 *
 * @example No NATS server to announce on
 * ```ts
 * import { startNatsNode } from "./node.ts";
 * import { NodeServer } from "../node_server.ts";
 * import { rejects } from "node:assert/strict";
 * const node = new NodeServer({ name: "n1" });
 * await rejects(startNatsNode(node.handler, { nats: "nats://127.0.0.1:9", name: "n1", connectTimeoutMs: 2000 }));
 * ```
 */
export async function startNatsNode(handler: FrameHandler, options: NatsNodeOptions): Promise<NatsNode> {
  const served: NatsServer = await serveNats(handler, options);
  const nc = served.lease.nc;
  const direct = served.direct;
  let announcement: NodeAnnouncement;
  try {
    // what the node says of itself is its welcome, asked of its own handler
    const welcome = decodeReply<WelcomeMessage>(
      (await handler(encodeMessage({ t: "hello", v: PROTOCOL_VERSION }), {
        transport: "nats",
        connectionId: 0,
        oneWay: false,
      }))!,
      "welcome",
    );
    announcement = {
      v: welcome.v,
      node: welcome.node,
      endpoint: served.endpoint,
      ...(direct !== undefined ? { direct } : {}),
      session: welcome.session,
      gpus: welcome.gpus,
      cpus: welcome.cpus,
      services: welcome.services,
      ops: welcome.ops,
    };
  } catch (e) {
    await served.close();
    throw e;
  }
  const bytes = encodeAnnouncement(announcement);
  const subs: Subscription[] = [];
  subs.push(nc.subscribe(DISCOVER_SUBJECT, {
    callback: (_err, msg) => {
      try {
        msg.respond(bytes);
      } catch {
        // closing
      }
    },
  }));
  const unqueue = announcement.ops.map((op) => served.serveQueue(opSubject(op), opBroadcastSubject(op)));
  const announce = () => {
    try {
      nc.publish(ANNOUNCE_SUBJECT, bytes);
    } catch {
      // closing
    }
  };
  await nc.flush();
  announce();
  let stopped = false;
  // after a reconnect (its NATS server died), drivers that took it for gone learn it is back
  (async () => {
    for await (const s of nc.status()) {
      if (stopped) break;
      if (s.type === "reconnect") announce();
    }
  })().catch(() => {});
  let left = false;
  const leave = async () => {
    if (left) return;
    left = true;
    for (const s of subs) s.unsubscribe();
    for (const u of unqueue) u();
    try {
      nc.publish(LEAVE_SUBJECT, bytes);
      await nc.flush();
    } catch {
      // the client is gone: drivers find the node gone by "no responders"
    }
  };
  return {
    endpoint: served.endpoint,
    announcement,
    leave,
    async close() {
      await leave();
      stopped = true;
      await served.close();
    },
  };
}
