/**
 * End-to-end stage bench: load, text encoding, time per denoising step, VAE decode per frame,
 * and peak GPU memory.
 *
 *   deno run -A bench/e2e.ts                 # tiny demo model (any adapter)
 *   deno run -A bench/e2e.ts --full          # real SD1.5 + AnimateDiff v2 sizes, random weights,
 *                                            # 16 frames 512x512 (needs a real GPU)
 *   2 denoising steps by default: the first includes compiling the shaders, the second does not.
 *   flags: --frames N --size N --steps N --precision f32|f16 --decode-frames N --json FILE
 */

import { parseArgs } from "node:util";
import { Gpu } from "../engine/gpu/device.ts";
import { AnimationPipeline } from "../engine/pipeline.ts";
import { ClipTokenizer } from "../engine/tokenizer.ts";
import { randomSd15 } from "../weights/sd15.ts";
import { loadTinyDemoModel, tinyTokenizer } from "../weights/tiny.ts";
import { toFrameMajor } from "../engine/pipeline.ts";

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
  },
});
const full = a.full ?? false;
const frames = Number(a.frames ?? (full ? 16 : 8));
const size = Number(a.size ?? (full ? 512 : 64));
const steps = Number(a.steps ?? 2);
const precision = (a.precision ?? "f32") as "f32" | "f16";
const decodeFrames = Number(a["decode-frames"] ?? (full ? 2 : frames));

const gpu = await Gpu.create();
const mib = (b: number) => (b / 2 ** 20).toFixed(0) + " MiB";
console.log(`adapter: ${gpu.info.name}${gpu.info.isFallback ? " (software)" : ""}`);
console.log(
  `model: ${full ? "SD1.5 + AnimateDiff v2 architecture, random weights" : "tiny demo"}; ` +
    `${frames} frames ${size}x${size}, ${steps} step(s), ${precision}`,
);

const t0 = performance.now();
const weights = full ? randomSd15() : (() => {
  const d = loadTinyDemoModel();
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
gpu.pool.resetPeak();

const stepTimes: number[] = [];
let encodeMs = 0;
let last = performance.now();
const latents = await pipe.generateLatents(
  { prompt: "a bench prompt", frames, width: size, height: size, steps, seed: 1 },
  {
    onProgress: (e) => {
      const now = performance.now();
      if (e.stage === "encode" && e.step === 1) encodeMs = e.elapsedMs;
      if (e.stage === "denoise") stepTimes.push(now - last);
      last = now;
    },
  },
);
const peakDenoise = gpu.memoryStats().peakInUseBytes;

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
  const td = performance.now();
  await pipe.decode(z, { frames: decodeFrames, width: size, height: size });
  decodeRuns.push((performance.now() - td) / decodeFrames);
}
const [decodeFirstMs, decodeMs] = decodeRuns;
z.release();
const stats = gpu.memoryStats();

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
  peakActivationBytes: stats.peakInUseBytes,
  peakPoolAllocatedBytes: stats.peakAllocatedBytes,
};
console.log(`load            ${(loadMs / 1000).toFixed(2)} s   weights on GPU ${mib(weightBytes)}`);
console.log(`text encoding   ${encodeMs.toFixed(1)} ms`);
console.log(`denoise step    ${stepTimes.map((t) => (t / 1000).toFixed(3) + " s").join(", ")}`);
console.log(
  `vae decode      ${(decodeMs / 1000).toFixed(3)} s/frame ` +
    `(first pass, with shader compilation: ${(decodeFirstMs / 1000).toFixed(3)} s/frame)`,
);
console.log(
  `peak GPU memory ${mib(weightBytes + stats.peakAllocatedBytes)} ` +
    `(weights ${mib(weightBytes)} + activations pool ${mib(stats.peakAllocatedBytes)}; ` +
    `denoise peak in use ${mib(peakDenoise)})`,
);
if (a.json) await Deno.writeTextFile(a.json, JSON.stringify(result, null, 2));
pipe.dispose();
gpu.destroy();
