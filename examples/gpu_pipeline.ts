/**
 * A three-stage GPU pipeline on a node: `scale`, `shift` and `square` are ops that each run one WGSL
 * kernel and return its output as a `GpuArray`, left on the GPU. The driver chains them with `.go()`;
 * the chain is sent to the node at once (pipelining), each stage takes the previous one's array
 * where it is, and the result is read back once, when the driver awaits it. The node here runs in
 * this process (over the in-memory transport), so the readbacks of both sides are counted together.
 *
 * Run: `npx deno run -A examples/gpu_pipeline.ts [--n 1048576]` (Deno has WebGPU; on a machine
 * without a GPU it finds a software adapter).
 *
 * @module
 */
import * as ta from "../mod.ts";
import {
  defineKernel,
  type GpuArray,
  readbackCount,
  requestGpuDevice,
  webgpuAdapters,
  webgpuUnavailableReason,
} from "../adapters/webgpu/mod.ts";
import { NodeServer } from "../transports/node_server.ts";
import { serveInMemory } from "../transports/in_memory.ts";

/** One element-wise stage `out[i] = f(a[i])`, as a kernel. */
function stage(name: string, expression: string) {
  return defineKernel({
    name,
    code: `
      @group(0) @binding(0) var<storage, read> a: array<f32>;
      @group(0) @binding(1) var<storage, read_write> out: array<f32>;
      @compute @workgroup_size(WORKGROUP_SIZE_X)
      fn main(@builtin(global_invocation_id) id: vec3u) {
        if (id.x < arrayLength(&a)) { let x = a[id.x]; out[id.x] = ${expression}; }
      }`,
    workgroupSize: [64],
    sizes: ["n"],
    bindings: {
      a: { kind: "input", type: "f32" },
      out: { kind: "output", type: "f32", length: ({ n }) => n },
    },
    workgroups: ({ n }) => Math.ceil(n / 64),
  });
}

const kernels = {
  scale: stage("scale", "x * 2.0"),
  shift: stage("shift", "x + 1.0"),
  square: stage("square", "x * x"),
};

let device: Promise<GPUDevice> | undefined;

async function runStage(kernel: ReturnType<typeof stage>, a: Float32Array | GpuArray<"f32">): Promise<GpuArray<"f32">> {
  const d = await (device ??= requestGpuDevice(0));
  const { out } = await kernel.runOnDevice(d, { a }, { sizes: { n: a.length } });
  return out;
}

/** Stage 1: `2x`, on the GPU (its output stays there). */
export const scale: ta.Op<[Float32Array | GpuArray<"f32">], GpuArray<"f32">> = ta.op(
  { name: "gpuPipelineScale", remote: true },
  (a: Float32Array | GpuArray<"f32">) => runStage(kernels.scale, a),
);
/** Stage 2: `x + 1`, on the GPU. */
export const shift: ta.Op<[Float32Array | GpuArray<"f32">], GpuArray<"f32">> = ta.op(
  { name: "gpuPipelineShift", remote: true },
  (a: Float32Array | GpuArray<"f32">) => runStage(kernels.shift, a),
);
/** Stage 3: `x²`, on the GPU. */
export const square: ta.Op<[Float32Array | GpuArray<"f32">], GpuArray<"f32">> = ta.op(
  { name: "gpuPipelineSquare", remote: true },
  (a: Float32Array | GpuArray<"f32">) => runStage(kernels.square, a),
);

/** What {@linkcode runGpuPipeline} found. */
export interface GpuPipelineResult {
  /** The output, `(2x + 1)²` of each input. */
  readonly out: Float32Array;
  /** GPU readbacks the whole pipeline did (node and driver together). */
  readonly readbacks: number;
}

/**
 * Runs the three stages on a node in this process and reads the result back once.
 *
 * @param input The input array.
 * @returns The output, and how many readbacks it took.
 */
export async function runGpuPipeline(input: Float32Array): Promise<GpuPipelineResult> {
  const node = new NodeServer({ name: "gpu-node", gpus: 1 });
  const server = serveInMemory("gpu-pipeline-example", node.handler);
  const mesh = new ta.Mesh([new ta.MeshNode("gpu-node", { endpoint: server.endpoint, gpus: 1 })]);
  try {
    const before = readbackCount();
    // sent together: each stage names the previous one's result, which stays on the GPU
    const result = mesh.run(() => square.go(shift.go(scale.go(input))));
    const out = (await result) as unknown as Float32Array; // the one readback: the result leaves the node
    return { out, readbacks: readbackCount() - before };
  } finally {
    await mesh.close();
    await node.drain();
    await server.close();
  }
}

function cliArg(name: string): string | undefined {
  const args = (globalThis as { Deno?: { args: string[] } }).Deno?.args ??
    (globalThis as { process?: { argv: string[] } }).process?.argv.slice(2) ?? [];
  const i = args.indexOf(`--${name}`);
  return i < 0 ? undefined : (args[i + 1] ?? "");
}

if ((import.meta as ImportMeta & { main?: boolean }).main) {
  if ((await webgpuAdapters()).length === 0) {
    console.log(`no WebGPU on this runtime: ${await webgpuUnavailableReason()}`);
  } else {
    const n = Number(cliArg("n") ?? 1 << 20);
    const input = Float32Array.from({ length: n }, (_, k) => k % 7);
    const r = await runGpuPipeline(input);
    console.log(
      `3 kernels on ${n} floats: out[0..4] = ${[...r.out.slice(0, 4)].join(", ")}; ${r.readbacks} readback(s)`,
    );
  }
}
