/**
 * `nats://` endpoints: which NATS servers to connect to and which node to reach through them
 * (`nats://host:4222/<node>`, or several seed servers `nats://h1:4222,h2:4222/<node>`), and the
 * subjects a node is reached on.
 *
 * @module
 */

/** The subject prefix every thinkagain subject starts with. */
export const SUBJECT_PREFIX: string = "thinkagain";

/** A parsed `nats://` endpoint. */
export interface NatsEndpoint {
  /** The seed servers, as the NATS client takes them (`nats://host:port`). */
  readonly servers: readonly string[];
  /** The node's name (the last path segment). */
  readonly node: string;
  /** The subject the node serves frames on. */
  readonly subject: string;
  /**
   * For an op's queue group (`nats://…/op:<name>`): the subject every member hears (not one of
   * them), where one-way frames (cancels) and audits go, since the member that took a call is not
   * known.
   */
  readonly broadcast?: string;
}

const NODE_NAME = /^[A-Za-z0-9_-]{1,128}$/;

/**
 * Whether `name` can name a node reached over NATS: letters, digits, `_` and `-` (a NATS subject
 * token without wildcards or dots), at most 128 characters.
 *
 * @param name A node name.
 * @returns Whether it fits in a subject.
 *
 * @example
 * ```ts
 * import { isNatsNodeName } from "./endpoint.ts";
 * if (!isNatsNodeName("gpu-0") || isNatsNodeName("a.b") || isNatsNodeName("*")) throw new Error("unexpected");
 * ```
 */
export function isNatsNodeName(name: string): boolean {
  return NODE_NAME.test(name);
}

/**
 * The subject a node serves its frames on.
 *
 * @param node The node's name (see {@linkcode isNatsNodeName}).
 * @returns `thinkagain.node.<node>`.
 *
 * @example
 * ```ts
 * import { nodeSubject } from "./endpoint.ts";
 * if (nodeSubject("n1") !== "thinkagain.node.n1") throw new Error("unexpected");
 * ```
 */
export function nodeSubject(node: string): string {
  return `${SUBJECT_PREFIX}.node.${node}`;
}

/**
 * The subject of a remote-capable op, served by every node that registered it in a NATS queue group
 * of the same name (each call goes to one of them). Characters a subject token cannot hold are
 * written as `~` and their code in hex.
 *
 * @param op The op's registered name.
 * @returns `thinkagain.op.<op>`.
 *
 * @example
 * ```ts
 * import { opSubject } from "./endpoint.ts";
 * if (opSubject("embed") !== "thinkagain.op.embed" || opSubject("a.b") !== "thinkagain.op.a~2e~b") {
 *   throw new Error("unexpected");
 * }
 * ```
 */
export function opSubject(op: string): string {
  return `${SUBJECT_PREFIX}.op.${opToken(op)}`;
}

/**
 * The subject every node serving an op hears (no queue group): cancels and audits of calls sent to
 * the op's queue group go there.
 *
 * @param op The op's registered name.
 * @returns `thinkagain.opall.<op>`.
 *
 * @example
 * ```ts
 * import { opBroadcastSubject } from "./endpoint.ts";
 * if (opBroadcastSubject("embed") !== "thinkagain.opall.embed") throw new Error("unexpected");
 * ```
 */
export function opBroadcastSubject(op: string): string {
  return `${SUBJECT_PREFIX}.opall.${opToken(op)}`;
}

function opToken(op: string): string {
  return op.replace(/[^A-Za-z0-9_-]/g, (c) => `~${c.codePointAt(0)!.toString(16)}~`);
}

/**
 * The endpoint of an op's NATS queue group among nodes reached through the same NATS servers: a
 * call sent there goes to one of the nodes that registered the op, chosen by NATS. `undefined`
 * unless there are at least two such endpoints, all `nats://` through the same servers.
 *
 * @param endpoints The endpoints of the nodes that registered the op.
 * @param op The op's registered name.
 * @returns `nats://…/op:<op>`, or `undefined`.
 *
 * @example
 * ```ts
 * import { opQueueEndpoint } from "./endpoint.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(opQueueEndpoint(["nats://h:4222/a", "nats://h:4222/b"], "embed"), "nats://h:4222/op:embed");
 * strictEqual(opQueueEndpoint(["nats://h:4222/a", "ws://h:7070"], "embed"), undefined);
 * ```
 */
export function opQueueEndpoint(endpoints: readonly string[], op: string): string | undefined {
  if (endpoints.length < 2) return undefined;
  const bases = new Set(endpoints.map((e) => /^nats:\/\/[^/]+(?=\/[^/]+$)/i.exec(e)?.[0]));
  if (bases.size !== 1) return undefined;
  const [base] = bases;
  return base === undefined ? undefined : `${base}/op:${encodeURIComponent(op)}`;
}

/**
 * Parses the seed servers of a `nats://` URL (`nats://h1:4222,h2:4222`, an optional path ignored).
 *
 * @param url The URL as given (`--nats`, `Mesh.discover({ nats })`).
 * @param what Who asked, for the error.
 * @returns The servers, each `nats://host:port` (port 4222 when none is given).
 * @throws {TypeError} When it is no `nats://` URL.
 *
 * @example
 * ```ts
 * import { parseNatsServers } from "./endpoint.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * deepStrictEqual(parseNatsServers("nats://a:1,b", "test"), ["nats://a:1", "nats://b:4222"]);
 * deepStrictEqual(parseNatsServers("nats://a:1,nats://b:2", "test"), ["nats://a:1", "nats://b:2"]);
 * ```
 */
export function parseNatsServers(url: string, what: string): string[] {
  return splitNats(url, what).servers;
}

function splitNats(url: string, what: string): { servers: string[]; path: string } {
  // seeds may repeat the scheme: nats://h1:4222,nats://h2:4222
  const m = typeof url === "string"
    ? /^nats:\/\/([^/?#\s]+)(\/[^?#\s]*)?$/i.exec(url.replace(/,nats:\/\//gi, ","))
    : null;
  if (m === null) {
    throw new TypeError(`${what}: expected a NATS URL like nats://127.0.0.1:4222, got ${JSON.stringify(url)}`);
  }
  const servers = m[1].split(",").map((hostPort) => {
    if (!/^(?:[^@\s]+@)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/.test(hostPort)) {
      throw new TypeError(`${what}: "${hostPort}" in ${url} is no host:port`);
    }
    return `nats://${/:\d{1,5}$/.test(hostPort) ? hostPort : `${hostPort}:4222`}`;
  });
  return { servers, path: m[2] ?? "" };
}

/**
 * Parses a node endpoint `nats://host:port[,host:port…]/<node>`.
 *
 * @param endpoint The endpoint.
 * @returns Its servers, node and subject.
 * @throws {TypeError} When it is no `nats://` URL or names no valid node.
 *
 * @example
 * ```ts
 * import { parseNatsEndpoint } from "./endpoint.ts";
 * import { deepStrictEqual, throws } from "node:assert/strict";
 * deepStrictEqual(parseNatsEndpoint("nats://127.0.0.1:4222/n1"), {
 *   servers: ["nats://127.0.0.1:4222"], node: "n1", subject: "thinkagain.node.n1",
 * });
 * throws(() => parseNatsEndpoint("nats://127.0.0.1:4222"), /names no node/);
 * ```
 */
export function parseNatsEndpoint(endpoint: string): NatsEndpoint {
  const what = `Cannot connect over NATS to ${endpoint}`;
  const { servers, path } = splitNats(endpoint, what);
  const node = path.slice(1);
  if (node.startsWith("op:")) {
    let op: string;
    try {
      op = decodeURIComponent(node.slice(3));
    } catch {
      throw new TypeError(`${what}: "${node}" is no op name`);
    }
    if (op === "") throw new TypeError(`${what}: it names no op (expected nats://host:4222/op:<op>)`);
    return { servers, node, subject: opSubject(op), broadcast: opBroadcastSubject(op) };
  }
  if (node === "") {
    throw new TypeError(`${what}: it names no node (expected nats://host:4222/<node>)`);
  }
  if (!isNatsNodeName(node)) {
    throw new TypeError(
      `${what}: node name "${node}" cannot be a NATS subject token (letters, digits, _ and - only, at most 128)`,
    );
  }
  return { servers, node, subject: nodeSubject(node) };
}

/**
 * The endpoint of `node` through `servers`.
 *
 * @param servers A NATS URL (`nats://h:4222`, seeds separated by commas).
 * @param node The node's name.
 * @returns `nats://…/<node>`.
 *
 * @example
 * ```ts
 * import { natsEndpoint } from "./endpoint.ts";
 * if (natsEndpoint("nats://h:4222/", "n1") !== "nats://h:4222/n1") throw new Error("unexpected");
 * ```
 */
export function natsEndpoint(servers: string, node: string): string {
  const base = /^(nats:\/\/[^/]*)/i.exec(servers.replace(/,nats:\/\//gi, ","))?.[1] ?? servers;
  return `${base}/${node}`;
}
