/**
 * Why a node reached another node the way it did (a `--peer`, with a token; or an endpoint a driver
 * declared, with the node's token or without one: see `handle_wire.ts`), kept per link, so that the
 * other node's refusal can be told in words that name both nodes, what was wanted, and what to
 * change — instead of a bare "the node requires a token" that reaches the driver, which did give
 * one.
 *
 * @module
 */
import { AuthError } from "../core/errors.ts";

/** How a node's link to another node was made. */
export interface Reach {
  /** The name of the node that reaches out. */
  readonly self: string;
  /** `"peer"`: a configured peer; `"declared"`: an endpoint a driver declared in its `hello`. */
  readonly how: "peer" | "declared";
  /** Whether the link presents a token. */
  readonly token: boolean;
  /** Whether the node reaching out has a token of its own. */
  readonly hasToken: boolean;
}

const reaches = new WeakMap<object, Reach>();

/**
 * Notes how `link` was made (the first time only: a link is made once and shared).
 *
 * @param link The link.
 * @param reach How it was made.
 *
 * @example
 * ```ts
 * import { noteReach, refusalExplained } from "./reach_refusal.ts";
 * import { AuthError } from "../core/errors.ts";
 * const link = { node: "a", endpoint: "ws://10.0.0.1:7070" };
 * noteReach(link, { self: "b", how: "declared", token: false, hasToken: true });
 * const e = refusalExplained(new AuthError("refused"), link, "argument 0 of a call");
 * if (!(e instanceof AuthError) || !e.message.includes("--peer ws://10.0.0.1:7070")) throw new Error(String(e));
 * ```
 */
export function noteReach(link: object, reach: Reach): void {
  if (!reaches.has(link)) reaches.set(link, reach);
}

/**
 * How `link` was made, if a node noted it ({@linkcode noteReach}).
 *
 * @param link The link.
 * @returns How it was made, or `undefined`.
 *
 * @example
 * ```ts
 * import { noteReach, reachOf } from "./reach_refusal.ts";
 * const link = {};
 * noteReach(link, { self: "b", how: "peer", token: true, hasToken: true });
 * if (reachOf(link)?.how !== "peer" || reachOf({}) !== undefined) throw new Error("unexpected");
 * ```
 */
export function reachOf(link: object): Reach | undefined {
  return reaches.get(link);
}

/**
 * The error to report when a node was refused by the node it reached (an `AuthError`): one that
 * names the node that reached out, the node and endpoint that refused it, what it wanted, and what
 * to change. Anything else, or a link not made for a node, is returned as it is.
 *
 * @param e What the link's request failed with.
 * @param link The link (its `node` and `endpoint` name the other node).
 * @param what What the node wanted there (`"argument 0 of call …"`).
 * @returns The error to throw.
 *
 * @example Any other error is left as it is
 * ```ts
 * import { refusalExplained } from "./reach_refusal.ts";
 * const e = new Error("other");
 * if (refusalExplained(e, { node: "a", endpoint: "ws://10.0.0.1:7070" }, "x") !== e) throw new Error("unexpected");
 * ```
 */
export function refusalExplained(
  e: unknown,
  link: { readonly node: string; readonly endpoint: string },
  what: string,
): unknown {
  if (!(e instanceof AuthError)) return e;
  const reach = reaches.get(link);
  if (reach === undefined) return e;
  const self = JSON.stringify(reach.self), other = JSON.stringify(link.node), at = link.endpoint;
  let why: string;
  if (reach.token) {
    why = `node ${other} refused node ${self}'s token (${e.message}): the two nodes hold different tokens; ` +
      `give node ${self} the token of node ${other} for that peer (NodeServer peers: [{ endpoint: "${at}", token }])`;
  } else if (!reach.hasToken) {
    why = `node ${other} requires a token, and node ${self} has none: start node ${self} with that token ` +
      `(--token-file) and --peer ${at}`;
  } else {
    why = `node ${other} requires a token, and node ${self} presented none: a node presents its token only to ` +
      `its peers (--peer) and to endpoints declared by a driver that connected to it with that same token, which ` +
      `the driver that declared ${at} did not; start node ${self} with --peer ${at}`;
  }
  return new AuthError(`Node ${self} could not reach node ${other} at ${at} for ${what}: ${why}`);
}
