// Private test helpers: whether this runtime has a WebGPU adapter, and the skip reason to show.
import { webgpuAdapters, webgpuUnavailableReason } from "./detect.ts";

/** `false` where an adapter exists, else the reason to pass as `{ skip }` (a visible skip). */
export const noGpu: string | false = (await webgpuAdapters()).length > 0
  ? false
  : `no WebGPU adapter on this runtime: ${await webgpuUnavailableReason()}`;

/** Deterministic pseudo-random floats in [-1, 1) (mulberry32). */
export function randomFloats(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2) - 1;
  }
  return out;
}

// Bun prints "(skip) name" without the reason; say it once so the skip is never silent.
if (noGpu) console.warn(`[adapters/webgpu tests] GPU tests skipped: ${noGpu}`);
