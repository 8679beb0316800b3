/**
 * Service handles as values on the wire: a handle in an argument or a result travels as a reference
 * to its remote instances (`{ "$thinkagain.handle": { service, replicas } }`), and arrives as a
 * handle whose replicas reach those instances over links of the receiving mesh or node.
 *
 * @module
 */
import { ProtocolError } from "../core/errors.ts";
import { Deployment } from "../core/deployment.ts";
import { HandleState, handleStateOf, makeHandle } from "../core/handle.ts";
import { MeshRuntime } from "../core/mesh_runtime.ts";
import { registeredServices } from "../core/service_def.ts";
import { type HandleWire, linkFor, type LinkOptions } from "./link.ts";
import { RemoteReplica } from "./remote_replica.ts";

const HANDLE_KEY = "$thinkagain.handle";

function isPlain(v: object): boolean {
  const p = Object.getPrototypeOf(v);
  return p === Object.prototype || p === null;
}

/** Whether `value` holds a service handle (in arrays and plain objects). */
function holdsHandle(value: unknown, depth = 0): boolean {
  if (typeof value !== "object" || value === null || depth > 32) return false;
  if (handleStateOf(value) !== undefined) return true;
  if (Array.isArray(value)) return value.some((v) => holdsHandle(v, depth + 1));
  return isPlain(value) && Object.values(value).some((v) => holdsHandle(v, depth + 1));
}

/**
 * The value as it may travel: service handles become references to their remote instances. A
 * handle of an instance living in this process cannot travel: a TypeError says so.
 *
 * @param value A value that may hold handles (in arrays and plain objects).
 * @param owner The mesh (or node process) sending it: a handle travels as its deployment there.
 * @returns The value itself when it holds no handle, else (a promise of) a copy with references.
 *
 * @example A value without handles travels as it is
 * ```ts
 * import { wireValue } from "./handle_wire.ts";
 * import { strictEqual } from "node:assert/strict";
 * const args = [1, { docs: ["a"] }];
 * strictEqual(wireValue(args, {}), args);
 * ```
 */
export function wireValue<T>(value: T, owner: object): T | Promise<T> {
  return holdsHandle(value) ? replaceHandles(value, owner, 0) as Promise<T> : value;
}

async function replaceHandles(value: unknown, owner: object, depth: number): Promise<unknown> {
  if (typeof value !== "object" || value === null || depth > 32) return value;
  const state = handleStateOf(value);
  if (state !== undefined) return await handleToWire(state, owner);
  if (Array.isArray(value)) return await Promise.all(value.map((v) => replaceHandles(v, owner, depth + 1)));
  if (!isPlain(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = await replaceHandles(v, owner, depth + 1);
  return out;
}

async function handleToWire(state: HandleState, owner: object): Promise<unknown> {
  const deployment = owner instanceof MeshRuntime ? state.deployment(owner) : state.pinned;
  const replicas = deployment?.replicas ?? [];
  if (replicas.length === 0 || !replicas.every((r) => r instanceof RemoteReplica)) {
    throw new TypeError(
      `Cannot send a handle of service "${state.def.name}" to another node: its instance lives in this process; ` +
        "place the service on a node with an endpoint to share it",
    );
  }
  const remote = replicas as RemoteReplica[];
  const ids = await Promise.all(remote.map((r) => r.reference()));
  return {
    [HANDLE_KEY]: {
      service: state.def.name,
      replicas: remote.map((r, i) => ({ endpoint: r.link.endpoint, node: r.node, id: ids[i] })),
    },
  };
}

/**
 * The value with handle references turned back into handles reachable through `from`'s owner (over
 * links it owns, made with its token and transport).
 *
 * @param value A value that arrived from another node.
 * @param from The owner of the links the handles will use, with its link options.
 * @param depth How deep `value` already is in the walk (values nested past 32 are left alone).
 * @returns The value itself when it holds no reference, else a copy with handles.
 * @throws {ProtocolError} For a reference to a service this process did not register, or a malformed one.
 *
 * @example A value without references comes back as it is
 * ```ts
 * import { reviveValue } from "./handle_wire.ts";
 * import { strictEqual } from "node:assert/strict";
 * const value = { docs: ["a", "b"] };
 * strictEqual(reviveValue(value, { owner: {} }), value);
 * ```
 */
export function reviveValue<T>(value: T, from: LinkOptions & { owner: object }, depth = 0): T {
  if (typeof value !== "object" || value === null || depth > 32) return value;
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const v = value[i];
      const r = reviveValue(v, from, depth + 1);
      if (r !== v) (out ??= value.slice())[i] = r;
    }
    return (out ?? value) as T;
  }
  if (!isPlain(value)) return value;
  const h = (value as Record<string, unknown>)[HANDLE_KEY];
  if (h !== undefined) return reviveHandle(h, from) as T;
  let out: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(value)) {
    const r = reviveValue(v, from, depth + 1);
    if (r !== v) (out ??= { ...(value as Record<string, unknown>) })[k] = r;
  }
  return (out ?? value) as T;
}

function reviveHandle(h: unknown, options: LinkOptions & { owner: object }): object {
  const spec = h as { service?: unknown; replicas?: unknown };
  const def = typeof spec.service === "string" ? registeredServices().get(spec.service) : undefined;
  if (def === undefined) {
    throw new ProtocolError(
      `A handle of unknown service ${JSON.stringify(spec.service)} arrived; this process did not register it`,
    );
  }
  if (!Array.isArray(spec.replicas) || spec.replicas.length === 0) {
    throw new ProtocolError("A handle arrived without replicas");
  }
  const replicas = spec.replicas.map((r: { endpoint?: unknown; node?: unknown; id?: unknown }, i: number) => {
    if (typeof r.endpoint !== "string" || typeof r.id !== "string") {
      throw new ProtocolError("A handle arrived with a malformed replica");
    }
    const link = linkFor(
      options.owner,
      typeof r.node === "string" ? r.node : r.endpoint,
      r.endpoint,
      options,
      handleWire,
    );
    return new RemoteReplica(options.owner, def, [], i, link, [], def.policy, r.id);
  });
  const state = new HandleState(def, []);
  state.pinned = new Deployment(def, replicas);
  for (const r of replicas) r.attach(state.pinned);
  return makeHandle(state);
}

/** Handles to and from the wire, as links and node servers pass it on (see {@linkcode HandleWire}). */
export const handleWire: HandleWire = { toWire: wireValue, fromWire: reviveValue };
