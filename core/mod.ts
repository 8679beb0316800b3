/**
 * The core of thinkagain: ops, refs, the scheduler, services, the mesh, devices, errors and the
 * profiler. `mod.ts` at the top re-exports the public part.
 *
 * @example
 * ```ts
 * import { op } from "./mod.ts";
 * const inc = op(async function inc(x: number) { return x + 1; });
 * if ((await inc.go(inc.go(1))) !== 3) throw new Error("unexpected");
 * ```
 *
 * @module
 */
export * from "./errors.ts";
export { all, detach, explain, ObjectRef, type ObjectRefConstructor, type RefStatus } from "./object_ref.ts";
export { type Explanation, formatExplanation, type NodeHealth, type SlotWait } from "./explain.ts";
export { type Op, op, type OpOptions } from "./op.ts";
export { DEFAULT_MAX_WAITING } from "./limiter.ts";
export { asCompleted, type CompletedRef, wait, type WaitOptions, type WaitResult } from "./wait.ts";
export { put } from "./put.ts";
export { Stream, type StreamEnd, type StreamOptions, type StreamTaker } from "./stream.ts";
export {
  type MethodNames,
  service,
  type ServiceClass,
  type ServiceConfig,
  type ServiceHandle,
  type ServiceMethod,
  type ServiceOptions,
} from "./service.ts";
export { type AnyClass, type AnyFn, DEFAULT_MAX_QUEUED } from "./service_def.ts";
export type { ReplicaState } from "./deployment.ts";
export {
  getCurrentMesh,
  Mesh,
  type MeshCloseOptions,
  type MeshConfig,
  type MeshDiscoverConfig,
  type MeshDnsConfig,
  MeshNode,
  type MeshNodeConfig,
  type MeshNodeOptions,
  type MeshOptions,
  type MeshRemoveNodeOptions,
  type MeshStats,
} from "./mesh.ts";
export { RemoteExecutor } from "./remote_executor.ts";
export {
  CpuDevice,
  type CpuDeviceOptions,
  type DeviceProvider,
  devices,
  GpuDevice,
  type GpuDeviceOptions,
  registerDeviceProvider,
} from "./devices.ts";
export { currentInstance, currentInstanceGpus, type InstanceInfo } from "./context.ts";
export {
  type CallEdge,
  type ChromeTrace,
  type ChromeTraceEvent,
  getProfiler,
  type OpStats,
  profile,
  Profiler,
  type ProfileSummary,
  type TaskRecord,
} from "./profile.ts";
export {
  disableTracing,
  enableTracing,
  isTracingEnabled,
  setTracingAutoDetect,
  type TracingOptions,
  type TracingStats,
  tracingStats,
  watchDroppedSpans,
} from "./tracing/mod.ts";
export {
  onTaskEvent,
  type TaskEvent,
  type TaskEventKind,
  type TaskEventListener,
  type TaskEventOptions,
  type TaskInfo,
} from "./events.ts";
export { CurrentMesh, goEffect, layerMesh, type Submittable } from "./effect.ts";
export type { CallResult, Leaf, Refable, RefArgs } from "./types.ts";
