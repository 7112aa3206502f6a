/**
 * End-to-end stage bench: load, text encoding, time per denoising step, VAE decode per frame,
 * and peak GPU memory per stage, planned (the memory plan, before running) beside measured (the
 * buffer pool's counter during the run).
 *
 *   deno run -A bench/e2e.ts                 # tiny demo model (any adapter)
 *   deno run -A bench/e2e.ts --full          # real SD1.5 + AnimateDiff v2 sizes, random weights:
 *                                            # 16 frames 512x512 on a GPU, 4 frames 64x64 on a
 *                                            # software adapter (lavapipe)
 *   2 denoising steps by default: the first includes compiling the shaders, the second does not.
 *   flags: --frames N --size N --steps N --precision f32|f16 --decode-frames N --json FILE
 *          --profile: then the same request again with every dispatch timed on the GPU, each
 *          stage's GPU time and its ten most expensive kernels (name:variant @ workgroups)
 *
 * Each stage prints its nominal FLOPs (Gpu.flops: the model's products as written) and their
 * rate; `job` is one generation as a user waits for it: text encoding, every step and the first
 * decoding pass of every frame.
 */

import { parseArgs } from "node:util";
import { Gpu } from "../kernels/gpu/device.ts";
import type { KernelTime } from "../kernels/gpu/profiler.ts";
import { AnimationPipeline } from "../engine/pipeline.ts";
import { ClipTokenizer } from "../engine/tokenizer.ts";
import { randomSd15 } from "../weights/sd15.ts";
import { loadTinyDemoModel, tinyTokenizer } from "../weights/tiny.ts";
import { toFrameMajor } from "../engine/latents.ts";
import { decode } from "../engine/generate.ts";
import { ARCHITECTURE } from "../engine/models/architecture.ts";

const { values: a } = parseArgs({
  args: Deno.args,
  options: {
    full: { type: "boolean" },
    frames: { type: "string" },
    size: { type: "string" },
    steps: { type: "string" },
    precision: { type: "string" },
    "decode-frames": { type: "string" },
    json: { type: "string" },
    profile: { type: "boolean" },
  },
});
const gpu = await Gpu.create();
const full = a.full ?? false;
const software = gpu.info.isFallback;
const frames = Number(a.frames ?? (full ? (software ? 4 : 16) : 8));
const size = Number(a.size ?? (full ? (software ? 64 : 512) : 64));
const steps = Number(a.steps ?? 2);
const precision = (a.precision ?? "f32") as "f32" | "f16";
const decodeFrames = Number(a["decode-frames"] ?? (full && !software ? 2 : frames));

const mib = (b: number) => (b / 2 ** 20).toFixed(0) + " MiB";
console.log(`adapter: ${gpu.info.name}${gpu.info.isFallback ? " (software)" : ""}`);
console.log(
  `model: ${full ? "SD1.5 + AnimateDiff v2 architecture, random weights" : "tiny demo"}; ` +
    `${frames} frames ${size}x${size}, ${steps} step(s), ${precision}`,
);

const t0 = performance.now();
const weights = full ? randomSd15(ARCHITECTURE) : (() => {
  const d = loadTinyDemoModel(ARCHITECTURE);
  return { model: d.model, motion: d.motion };
})();
const pipe = await AnimationPipeline.fromWeights({
  ...weights,
  tokenizer: ClipTokenizer.fromFiles(tinyTokenizer()),
  precision,
  device: gpu,
});
const loadMs = performance.now() - t0;
const weightBytes = gpu.memoryStats().persistentBytes;
const request = { prompt: "a bench prompt", frames, width: size, height: size, steps, seed: 1 };
const tPlan = performance.now();
const plan = await pipe.plan(request);
const planMs = performance.now() - tPlan;
if (!plan.fits) throw new Error(plan.reason);
gpu.pool.trim();
gpu.pool.resetPeak();

// Measured peaks per stage: weights + the pool's buffers (free ones included), as planned.
const measured = { encode: 0, denoise: 0, decode: 0 };
let stage: keyof typeof measured | null = null;
const mark = (next: keyof typeof measured | null) => {
  if (stage) {
    measured[stage] = Math.max(
      measured[stage],
      weightBytes + gpu.memoryStats().peakAllocatedBytes,
    );
  }
  gpu.pool.resetPeak();
  stage = next;
};
const stepTimes: number[] = [];
let encodeMs = 0;
let last = performance.now();
// Nominal FLOPs (Gpu.flops) at the start of text encoding and of denoising.
const flopsAt = { encode: 0, denoise: 0 };
const latents = await pipe.generateLatents(request, {
  onProgress: (e) => {
    const now = performance.now();
    if (e.stage !== stage && e.stage in measured) mark(e.stage as keyof typeof measured);
    if (e.stage === "encode" && e.step === 0) flopsAt.encode = gpu.flops;
    if (e.stage === "denoise" && e.step === 0) flopsAt.denoise = gpu.flops;
    if (e.stage === "encode" && e.step === 1) encodeMs = e.elapsedMs;
    if (e.stage === "denoise" && e.step > 0) stepTimes.push(now - last);
    last = now;
  },
});
const peakDenoise = gpu.memoryStats().peakInUseBytes;
const flops = {
  encode: flopsAt.denoise - flopsAt.encode,
  denoiseStep: (gpu.flops - flopsAt.denoise) / steps,
  decodeFrame: 0,
};

// Decode a subset of frames (each frame is an independent image).
const h = size / 8;
const z = gpu.upload(
  toFrameMajor(latents.subarray(0, 4 * frames * h * h), frames, h, h),
  [frames, 4, h, h],
  pipe.dtype,
);
// Twice: the first pass includes compiling the VAE's shaders (once per process, and cached on
// disk by most drivers), the second is the steady state.
const decodeRuns: number[] = [];
for (let run = 0; run < 2; run++) {
  const td = performance.now(), f0 = gpu.flops;
  await decode(pipe, z, { frames: decodeFrames, width: size, height: size }, {
    onProgress: (e) => {
      if (e.stage !== stage) mark("decode");
    },
  });
  decodeRuns.push((performance.now() - td) / decodeFrames);
  flops.decodeFrame = (gpu.flops - f0) / decodeFrames;
}
mark(null);
const [decodeFirstMs, decodeMs] = decodeRuns;
z.release();
const stats = gpu.memoryStats();
const measuredPeak = Math.max(measured.encode, measured.denoise, measured.decode);

const result = {
  adapter: gpu.info.name,
  model: full ? "sd15-random" : "tiny",
  frames,
  size,
  precision,
  loadMs,
  encodeMs,
  stepMs: stepTimes,
  decodeMsPerFrame: decodeMs,
  decodeFirstMsPerFrame: decodeFirstMs,
  weightBytes,
  peakActivationBytesDenoise: peakDenoise,
  planMs,
  planned: { peak: plan.peakBytes, ...plan.stages },
  measured: { peak: measuredPeak, ...measured },
  evictions: stats.evictions,
  flops,
  /** What one generation takes: text encoding, every step, the first decode pass of each frame. */
  jobMs: encodeMs + stepTimes.reduce((a, b) => a + b, 0) + decodeFirstMs * frames,
};
const gflops = (f: number, ms: number) => `${(f / ms / 1e6).toFixed(1)} GFLOP/s`;
const gf = (f: number) => `${(f / 1e9).toFixed(1)} GFLOP`;
console.log(`load            ${(loadMs / 1000).toFixed(2)} s   weights on GPU ${mib(weightBytes)}`);
console.log(
  `text encoding   ${encodeMs.toFixed(1)} ms   ${gf(flops.encode)}, ${
    gflops(flops.encode, encodeMs)
  }`,
);
const lastStep = stepTimes[stepTimes.length - 1];
console.log(
  `denoise step    ${stepTimes.map((t) => (t / 1000).toFixed(3) + " s").join(", ")}   ${
    gf(flops.denoiseStep)
  } each, ${gflops(flops.denoiseStep, lastStep)} (last step)`,
);
console.log(
  `vae decode      ${(decodeMs / 1000).toFixed(3)} s/frame ` +
    `(first pass, with shader compilation: ${(decodeFirstMs / 1000).toFixed(3)} s/frame)   ${
      gf(flops.decodeFrame)
    } each, ${gflops(flops.decodeFrame, decodeMs)}`,
);
const jobFlops = flops.encode + flops.denoiseStep * steps + flops.decodeFrame * frames;
console.log(
  `job             ${(result.jobMs / 1000).toFixed(2)} s: encoding + ${steps} steps + decoding ` +
    `${frames} frames (first pass), ${gf(jobFlops)}, ${gflops(jobFlops, result.jobMs)}`,
);
console.log(
  `GPU memory      planned     measured   (weights ${mib(weightBytes)}; plan took ${
    planMs.toFixed(0)
  } ms)`,
);
for (const k of ["encode", "denoise", "decode"] as const) {
  console.log(
    `  ${k.padEnd(13)} ${mib(plan.stages[k]).padStart(9)}  ${mib(measured[k]).padStart(9)}`,
  );
}
console.log(
  `  ${"peak".padEnd(13)} ${mib(plan.peakBytes).padStart(9)}  ${mib(measuredPeak).padStart(9)}`,
);
const profile = a.profile ? await profileRun() : undefined;
if (a.json) await Deno.writeTextFile(a.json, JSON.stringify({ ...result, profile }, null, 2));
pipe.dispose();
gpu.destroy();

/**
 * The same request again with every dispatch timed (the shaders are compiled by now): each
 * stage's GPU time and the ten most expensive kernels (name:variant @ workgroup grid) of each.
 */
async function profileRun(): Promise<KernelTime[]> {
  const phases = new Map<string, number>();
  const { kernels } = await gpu.profile(async () => {
    const profiler = gpu.recorder.profiler!;
    const lat = await pipe.generateLatents(request, {
      onProgress: (e) => {
        profiler.phase = e.stage;
        if (e.stage === "denoise") phases.set("denoise", e.total);
      },
    });
    profiler.phase = "decode";
    const zz = gpu.upload(
      toFrameMajor(lat.subarray(0, 4 * frames * h * h), frames, h, h),
      [frames, 4, h, h],
      pipe.dtype,
    );
    await decode(pipe, zz, { frames: decodeFrames, width: size, height: size });
    zz.release();
  });
  console.log(`\nprofile (GPU time per dispatch, each in its own timed pass):`);
  for (const phase of ["encode", "denoise", "decode"]) {
    const ks = kernels.filter((k) => k.phase === phase);
    const total = ks.reduce((s, k) => s + k.ms, 0);
    const per = phase === "denoise" ? ` (${(total / steps / 1000).toFixed(3)} s per step)` : "";
    console.log(
      `${phase}: ${(total / 1000).toFixed(3)} s GPU, ${
        ks.reduce((s, k) => s + k.count, 0)
      } dispatches${per}`,
    );
    for (const k of ks.slice(0, 10)) {
      console.log(
        `  ${(100 * k.ms / total).toFixed(1).padStart(5)}%  ${k.ms.toFixed(1).padStart(8)} ms  ${
          String(k.count).padStart(4)
        }x  ${k.kernel} @ ${k.groups}`,
      );
    }
  }
  return kernels;
}
