/**
 * f32 matmul on WebGPU through the kernel helper (adapters/webgpu): the tiled kernel (128×128
 * workgroup tiles, 8×8 outputs per invocation, vec4 loads) and a naive kernel, for n×n×n with
 * n = 1024, 4096 and, on a hardware adapter, 8192. Prints GFLOP/s (2n³ / time) and the error
 * against a CPU reference (all entries for n ≤ 1024, a random sample of entries above).
 *
 * Run: `npx deno run -A bench/gpu_matmul.ts [--sizes 1024,4096] [--naive] [--reps N]`
 *
 * "end-to-end" times `matmul()`: upload of A and B, the dispatch, and readback of C. "resident"
 * keeps A and B on the GPU (`GpuArray`) and times dispatch + readback of C only.
 */
import { GpuArray } from "../adapters/webgpu/gpu_array.ts";
import { matmul, matmulResident } from "../adapters/webgpu/matmul.ts";
import { matmulNaive } from "../adapters/webgpu/_reference.ts";
import { requestGpuDevice, webgpuAdapters, webgpuUnavailableReason } from "../adapters/webgpu/detect.ts";

function arg(name: string): string | undefined {
  const args = (globalThis as { Deno?: { args: string[] } }).Deno?.args ??
    (globalThis as { process?: { argv: string[] } }).process?.argv.slice(2) ?? [];
  const i = args.indexOf(`--${name}`);
  return i < 0 ? undefined : (args[i + 1] ?? "");
}

function randomFloats(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2) - 1;
  }
  return out;
}

/** Max over checked entries of |gpu − ref| / Σₖ|aᵢₖ·bₖⱼ| (error relative to the sum's magnitude). */
function checkError(
  a: Float32Array,
  b: Float32Array,
  c: Float32Array,
  n: number,
  samples: number,
): { err: number; checked: number } {
  let worst = 0;
  const full = samples >= n * n;
  const count = full ? n * n : samples;
  let seed = 12345;
  for (let s = 0; s < count; s++) {
    let i: number, j: number;
    if (full) {
      i = Math.floor(s / n);
      j = s % n;
    } else {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      i = seed % n;
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      j = seed % n;
    }
    let ref = 0, mag = 0;
    for (let p = 0; p < n; p++) {
      const v = a[i * n + p] * b[p * n + j];
      ref += v;
      mag += Math.abs(v);
    }
    worst = Math.max(worst, Math.abs(c[i * n + j] - ref) / (mag || 1));
  }
  return { err: worst, checked: count };
}

async function time(fn: () => Promise<unknown>, reps: number): Promise<number> {
  await fn(); // warm-up: pipeline compile, buffer pool
  const t0 = performance.now();
  for (let r = 0; r < reps; r++) await fn();
  return (performance.now() - t0) / reps / 1000;
}

const adapters = await webgpuAdapters();
if (adapters.length === 0) {
  console.log(`gpu_matmul: no WebGPU on this runtime (${await webgpuUnavailableReason()}); nothing to measure.`);
} else {
  const info = adapters[0];
  const device = await requestGpuDevice(0);
  const sizes = (arg("sizes") ?? (info.software ? "1024,4096" : "1024,4096,8192")).split(",").map(Number);
  const naive = arg("naive") !== undefined || !info.software;
  console.log(
    `adapter: ${info.description} (${info.software ? "software" : "hardware"}; vendor ${
      info.vendor || "?"
    }; runtime ${navigator.userAgent})`,
  );
  console.log("| n | kernel | mode | reps | time (ms) | GFLOP/s | max rel. error | entries checked |");
  console.log("|---|---|---|---|---|---|---|---|");
  for (const n of sizes) {
    const bytes = n * n * 4;
    if (bytes > device.limits.maxStorageBufferBindingSize) {
      console.log(
        `| ${n} | — | skipped: ${bytes} B per matrix > maxStorageBufferBindingSize ${device.limits.maxStorageBufferBindingSize} | | | | | |`,
      );
      continue;
    }
    const a = randomFloats(n * n, n);
    const b = randomFloats(n * n, n + 1);
    const flop = 2 * n ** 3;
    const reps = Number(arg("reps") ?? (info.software ? (n >= 4096 ? 1 : 3) : n >= 4096 ? 10 : 30));
    const samples = n <= 1024 ? n * n : 2000;
    const row = (kernel: string, mode: string, t: number, c: Float32Array, runs: number = reps) => {
      const { err, checked } = checkError(a, b, c, n, samples);
      console.log(
        `| ${n} | ${kernel} | ${mode} | ${runs} | ${(t * 1000).toFixed(1)} | ${(flop / t / 1e9).toFixed(1)} | ${
          err.toExponential(2)
        } | ${checked} |`,
      );
    };
    let c: Float32Array = new Float32Array(0);
    const tE2e = await time(async () => c = await matmul(a, b, n, n, n, { device }), reps);
    row("tiled", "end-to-end", tE2e, c);
    const ga = GpuArray.from(device, a);
    const gb = GpuArray.from(device, b);
    const tRes = await time(async () => c = await matmulResident(ga, gb, { m: n, k: n, n }), reps);
    row("tiled", "resident", tRes, c);
    ga.destroy();
    gb.destroy();
    if (naive || n <= 1024) {
      const naiveReps = info.software ? 1 : reps;
      const tNaive = await time(async () => c = await matmulNaive(a, b, n, n, n, { device }), naiveReps);
      row("naive", "end-to-end", tNaive, c, naiveReps);
    }
  }
}
