/**
 * Where things run: the one place a node, a GPU or a replica is chosen. Every decision here is a
 * pure function of what it is given (free resources, loads) — the mesh (placing a service's
 * replicas), a deployment (routing a call to a replica), remote ops (picking a node that
 * registered the op), fail-over (picking a sibling replica) and a node (which GPU ids an instance
 * gets) all call these, so the policy is tested once and changed in one file.
 *
 * @module
 */
import type { GpuDevice } from "./devices.ts";
import { PlacementError } from "./errors.ts";

/** What placement knows about one node: its identity and what is free on it. */
export interface NodeResources {
  /** The node's name. */
  readonly name: string;
  /** True when the node's GPUs are not counted (the default local runtime). */
  readonly unboundedGpus: boolean;
  /** Whole GPUs free. */
  readonly freeGpus: readonly GpuDevice[];
  /** GPUs split between instances: thousandths of the GPU still free. */
  readonly shared: ReadonlyMap<GpuDevice, number>;
  /** CPU cores free (`Infinity`: not limited). */
  readonly freeCpus: number;
  /** Instances placed on the node (of any service). */
  readonly instances: number;
}

/** What a service's replicas need. */
export interface PlacementRequest {
  /** The service's name (for the error message). */
  readonly service: string;
  /** GPUs per replica: a whole number, or a share of one GPU (0 < gpus < 1). */
  readonly gpus: number;
  /** CPU cores per replica. */
  readonly cpus: number;
  /** How many replicas. */
  readonly replicas: number;
}

/** Where one replica goes: the index of its node in the input and the GPUs it gets. */
export interface ReplicaPlacement {
  /** Index into the `nodes` given to {@linkcode placeReplicas}. */
  readonly node: number;
  /** The GPUs assigned (a shared GPU for a share below 1; none for a CPU-only service). */
  readonly gpus: readonly GpuDevice[];
}

/** Thousandths of a GPU, so fractional shares add up exactly. */
export function milliGpus(gpus: number): number {
  return Math.round(gpus * 1000);
}

interface Free {
  readonly res: NodeResources;
  freeGpus: GpuDevice[];
  shared: Map<GpuDevice, number>;
  freeCpus: number;
  instances: number;
}

function gpuFits(st: Free, gpus: number): boolean {
  if (st.res.unboundedGpus || gpus === 0) return true;
  if (gpus >= 1) return st.freeGpus.length >= gpus;
  const need = milliGpus(gpus);
  if (st.freeGpus.length > 0) return true;
  for (const left of st.shared.values()) if (left >= need) return true;
  return false;
}

/** Takes the GPUs for one instance: whole ones, or a share of the fullest GPU that still fits. */
function takeGpus(st: Free, gpus: number): GpuDevice[] {
  if (st.res.unboundedGpus || gpus === 0) return [];
  if (gpus >= 1) return st.freeGpus.splice(0, gpus);
  const need = milliGpus(gpus);
  let pick: GpuDevice | undefined;
  for (const [g, left] of st.shared) if (left >= need && (pick === undefined || left < st.shared.get(pick)!)) pick = g;
  if (pick === undefined) {
    pick = st.freeGpus.shift()!;
    st.shared.set(pick, 1000);
  }
  st.shared.set(pick, st.shared.get(pick)! - need);
  return [pick];
}

/**
 * Places every replica of a service (all or none): each goes to a node where its GPUs and CPUs
 * fit, spreading replicas (fewest replicas of this service, then fewest instances, then — for a GPU
 * service — most free GPUs, for a CPU-only one the fewest, keeping GPU nodes free; then most free
 * CPUs). Pure: `nodes` is not changed; apply the result with {@linkcode takeResources}.
 *
 * @param nodes The nodes and what is free on each.
 * @param request What each replica needs.
 * @returns One placement per replica.
 * @throws {PlacementError} When some replica fits nowhere; the message says what was asked and what is free.
 *
 * @example Two replicas spread over two nodes
 * ```ts
 * import { GpuDevice } from "./devices.ts";
 * import { placeReplicas } from "./placement.ts";
 * const node = (name: string) => ({
 *   name, unboundedGpus: false, freeGpus: [new GpuDevice(0), new GpuDevice(1)], shared: new Map(), freeCpus: 8, instances: 0,
 * });
 * const out = placeReplicas([node("a"), node("b")], { service: "Gen", gpus: 1, cpus: 0, replicas: 2 });
 * if (out[0].node === out[1].node) throw new Error("expected the replicas spread");
 * ```
 */
export function placeReplicas(nodes: readonly NodeResources[], request: PlacementRequest): ReplicaPlacement[] {
  const states: Free[] = nodes.map((res) => ({
    res,
    freeGpus: [...res.freeGpus],
    shared: new Map(res.shared),
    freeCpus: res.freeCpus,
    instances: res.instances,
  }));
  const counts = new Map<Free, number>();
  const out: ReplicaPlacement[] = [];
  for (let r = 0; r < request.replicas; r++) {
    let best: Free | undefined;
    for (const st of states) {
      if (!gpuFits(st, request.gpus) || st.freeCpus < request.cpus) continue;
      if (best === undefined) {
        best = st;
        continue;
      }
      const a = counts.get(st) ?? 0, b = counts.get(best) ?? 0;
      if (a !== b) {
        if (a < b) best = st;
      } else if (st.instances !== best.instances) {
        if (st.instances < best.instances) best = st;
      } else if (st.freeGpus.length !== best.freeGpus.length) {
        if ((st.freeGpus.length > best.freeGpus.length) === request.gpus > 0) best = st;
      } else if (st.freeCpus > best.freeCpus) best = st;
    }
    if (best === undefined) {
      throw new PlacementError(request.service, placementMessage(nodes, request, r));
    }
    const gpus = takeGpus(best, request.gpus);
    best.freeCpus -= request.cpus;
    best.instances++;
    counts.set(best, (counts.get(best) ?? 0) + 1);
    out.push({ node: states.indexOf(best), gpus });
  }
  return out;
}

/** A node's free resources as the mesh keeps them (what {@linkcode takeResources} changes). */
export interface MutableNodeResources extends NodeResources {
  freeGpus: GpuDevice[];
  shared: Map<GpuDevice, number>;
  freeCpus: number;
  instances: number;
}

/**
 * Takes one placed replica's resources from its node (after {@linkcode placeReplicas} chose it).
 *
 * @param node The node's resources, changed in place.
 * @param placed The GPUs the replica got.
 * @param request What the replica needs.
 *
 * @example
 * ```ts
 * import { GpuDevice } from "./devices.ts";
 * import { takeResources } from "./placement.ts";
 * const g = new GpuDevice(0);
 * const node = { name: "a", unboundedGpus: false, freeGpus: [g], shared: new Map(), freeCpus: 4, instances: 0 };
 * takeResources(node, [g], { service: "S", gpus: 1, cpus: 2, replicas: 1 });
 * if (node.freeGpus.length !== 0 || node.freeCpus !== 2) throw new Error("unexpected");
 * ```
 */
export function takeResources(
  node: MutableNodeResources,
  placed: readonly GpuDevice[],
  request: PlacementRequest,
): void {
  if (!node.unboundedGpus && request.gpus > 0) {
    if (request.gpus >= 1) {
      for (const g of placed) {
        const i = node.freeGpus.indexOf(g);
        if (i >= 0) node.freeGpus.splice(i, 1);
      }
    } else {
      const g = placed[0];
      if (!node.shared.has(g)) {
        const i = node.freeGpus.indexOf(g);
        if (i >= 0) node.freeGpus.splice(i, 1);
        node.shared.set(g, 1000);
      }
      node.shared.set(g, node.shared.get(g)! - milliGpus(request.gpus));
    }
  }
  node.freeCpus -= request.cpus;
  node.instances++;
}

/**
 * Gives a replica's resources back to its node.
 *
 * @param node The node's resources, changed in place.
 * @param placed The GPUs the replica had.
 * @param request What the replica needed.
 *
 * @example
 * ```ts
 * import { GpuDevice } from "./devices.ts";
 * import { releaseResources, takeResources } from "./placement.ts";
 * const g = new GpuDevice(0);
 * const node = { name: "a", unboundedGpus: false, freeGpus: [g], shared: new Map(), freeCpus: 4, instances: 0 };
 * const req = { service: "S", gpus: 0.5, cpus: 0, replicas: 1 };
 * takeResources(node, [g], req);
 * releaseResources(node, [g], req);
 * if (node.freeGpus.length !== 1 || node.shared.size !== 0) throw new Error("unexpected");
 * ```
 */
export function releaseResources(
  node: MutableNodeResources,
  placed: readonly GpuDevice[],
  request: PlacementRequest,
): void {
  if (!node.unboundedGpus && request.gpus > 0) {
    if (request.gpus < 1) {
      for (const g of placed) {
        const left = (node.shared.get(g) ?? 0) + milliGpus(request.gpus);
        if (left >= 1000) {
          node.shared.delete(g);
          node.freeGpus.push(g);
        } else node.shared.set(g, left);
      }
    } else node.freeGpus.push(...placed);
    node.freeGpus.sort((a, b) => a.id - b.id);
  }
  node.freeCpus += request.cpus;
  node.instances--;
}

/** What a failed placement asked for and what is free. */
function placementMessage(nodes: readonly NodeResources[], req: PlacementRequest, replica: number): string {
  const what = req.replicas > 1
    ? `replica ${replica + 1} of ${req.replicas} of service "${req.service}"`
    : `service "${req.service}"`;
  if (nodes.length === 0) return `Cannot place ${what}: the mesh has no nodes`;
  const states: Free[] = nodes.map((res) => ({
    res,
    freeGpus: [...res.freeGpus],
    shared: new Map(res.shared),
    freeCpus: res.freeCpus,
    instances: res.instances,
  }));
  const maxBy = (f: (s: Free) => number) => states.reduce((a, b) => (f(b) > f(a) ? b : a));
  const gpuFit = states.some((s) => gpuFits(s, req.gpus));
  const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? "" : "s"}`;
  if (!gpuFit && req.gpus < 1) {
    const most = Math.max(0, ...states.map((s) => Math.max(s.freeGpus.length ? 1000 : 0, ...s.shared.values())));
    return `Cannot place ${what}: needs ${req.gpus} of a GPU, the most free on any one GPU is ${most / 1000}`;
  }
  if (!gpuFit) {
    const m = maxBy((s) => s.freeGpus.length);
    return `Cannot place ${what}: needs ${
      plural(req.gpus, "GPU")
    }, the largest free on any node is ${m.freeGpus.length} (${m.res.name})`;
  }
  const m = maxBy((s) => s.freeCpus);
  if (req.gpus === 0) {
    return `Cannot place ${what}: needs ${
      plural(req.cpus, "CPU")
    }, the largest free on any node is ${m.freeCpus} (${m.res.name})`;
  }
  // what each node has free, in words: "1 GPU and 2 CPUs on a", "0 GPUs and unlimited CPUs on b"
  const cpus = (n: number) => (n === Infinity ? "unlimited CPUs" : plural(n, "CPU"));
  const gpus = (f: Free) => (f.res.unboundedGpus ? "unlimited GPUs" : plural(f.freeGpus.length, "GPU"));
  const free = states.map((s) => `${gpus(s)} and ${cpus(s.freeCpus)} on ${s.res.name}`).join(", ");
  return `Cannot place ${what}: needs ${plural(req.gpus, "GPU")} and ${cpus(req.cpus)} on one node; free: ${free}`;
}

/**
 * The item with the least load (the first such, so the choice is stable while loads are equal):
 * how a call picks a replica, a remote op picks a node, and fail-over picks a sibling.
 *
 * @param items The candidates (at least one).
 * @param load Each candidate's load (e.g. outstanding calls).
 * @returns The least-loaded candidate, or `undefined` for none.
 *
 * @example
 * ```ts
 * import { leastLoaded } from "./placement.ts";
 * const picked = leastLoaded(["a", "bb", "c"], (s) => s.length);
 * if (picked !== "a") throw new Error("expected the first least-loaded");
 * ```
 */
export function leastLoaded<T>(items: readonly T[], load: (item: T) => number): T | undefined {
  let best: T | undefined;
  let bestLoad = Infinity;
  for (let i = 0; i < items.length; i++) {
    const l = load(items[i]);
    if (best === undefined || l < bestLoad) {
      best = items[i];
      bestLoad = l;
    }
  }
  return best;
}

/** Options of {@linkcode assignNodeGpus}. */
export interface AssignNodeGpusOptions {
  /** The GPU ids the driver's placement chose: a preference, never trusted. */
  readonly asked?: readonly number[];
  /** How many GPUs the node has (ids `0..gpuCount-1`), to say so when an asked one does not exist. */
  readonly gpuCount?: number;
}

/**
 * Which of a node's GPUs an instance gets when a driver asks the node to create it. The node
 * decides from its own count of what is free (several drivers may share it, and a frame may ask for
 * anything): the GPUs the driver's placement chose when they exist, are distinct and still fit, else
 * what {@linkcode placeReplicas} picks on this node. A whole GPU is never given twice, and the
 * shares of a split GPU never add up to more than one. Pure: apply the result with
 * {@linkcode takeResources}, give it back with {@linkcode releaseResources}.
 *
 * @param node The node's resources (its GPUs, whole and split, as the node keeps them).
 * @param request What the instance needs (`replicas` is ignored: one instance).
 * @param options The ids the driver asked for, and the node's GPU count (for the message).
 * @returns The node's GPUs the instance gets (none for a CPU-only service).
 * @throws {PlacementError} When the GPUs do not fit on this node; the message says what is free.
 *
 * @example Ids asked twice, or of GPUs that do not exist, are not given
 * ```ts
 * import { GpuDevice } from "./devices.ts";
 * import { assignNodeGpus } from "./placement.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const node = {
 *   name: "n1", unboundedGpus: false, freeGpus: [new GpuDevice(0), new GpuDevice(1)], shared: new Map(),
 *   freeCpus: Infinity, instances: 0,
 * };
 * const pair = assignNodeGpus(node, { service: "S", gpus: 2, cpus: 0, replicas: 1 }, { asked: [0, 0] });
 * deepStrictEqual(pair.map((g) => g.id), [0, 1]);
 * const half = assignNodeGpus(node, { service: "S", gpus: 0.5, cpus: 0, replicas: 1 }, { asked: [7] });
 * deepStrictEqual(half.map((g) => g.id), [0]);
 * ```
 */
export function assignNodeGpus(
  node: NodeResources,
  request: PlacementRequest,
  options: AssignNodeGpusOptions = {},
): GpuDevice[] {
  if (node.unboundedGpus || request.gpus === 0) return [];
  const asked = options.asked ?? [];
  if (request.gpus >= 1) {
    if (asked.length === request.gpus && new Set(asked).size === asked.length) {
      const wanted = asked.map((id) => node.freeGpus.find((g) => g.id === id));
      if (wanted.every((g) => g !== undefined)) return wanted as GpuDevice[];
    }
  } else if (asked.length === 1) {
    const need = milliGpus(request.gpus);
    for (const [g, left] of node.shared) if (g.id === asked[0] && left >= need) return [g];
    const whole = node.freeGpus.find((g) => g.id === asked[0]);
    if (whole !== undefined) return [whole];
  }
  try {
    return [...placeReplicas([node], { ...request, replicas: 1 })[0].gpus];
  } catch (e) {
    const count = options.gpuCount;
    const missing = count === undefined ? [] : asked.filter((id) => !(Number.isInteger(id) && id >= 0 && id < count));
    if (!(e instanceof PlacementError) || missing.length === 0) throw e;
    throw new PlacementError(
      request.service,
      `${e.message} (GPU ${missing.join(", ")} does not exist: the node has ${count}; the mesh declared more)`,
    );
  }
}
