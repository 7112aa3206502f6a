/**
 * The denoising loop: the prompt encoded once, the initial noise from the torch-compatible
 * generator, then for each scheduler timestep a (windowed, guided) noise prediction and the
 * scheduler's update on the GPU with CPU-computed coefficients.
 * @module
 */

import { latentRgbMap, previewFrames } from "./preview.ts";
import type { Tensor } from "../kernels/gpu/tensor.ts";
import type { VaeEncoder } from "./models/vae.ts";
import { AbortError, InputError } from "../kernels/gpu/errors.ts";
import { linearCombination } from "../kernels/elementwise.ts";
import { TorchGenerator } from "./rng.ts";
import { createScheduler, type Scheduler, type VectorOps } from "./schedulers/mod.ts";
import { ANIMATEDIFF_SCHEDULER_CONFIG, type SchedulerConfig } from "./schedulers/config.ts";
import type { GenerateOptions } from "./pipeline_types.ts";
import type { PipelineParts } from "./load.ts";
import type { ResolvedRequest } from "./request.ts";
import { encodePrompt, encodePromptTravel } from "./prompt.ts";
import { freeNoise, predictNoiseWindowed } from "./context_windows.ts";
import { toChannelMajor, toFrameMajor } from "./latents.ts";
import { freeInitFilter, freeInitMix } from "./free_init.ts";
import { alphasCumprod } from "./schedulers/schedule.ts";

/**
 * Advanced options of {@link AnimationPipeline.generateLatents}.
 *
 * @example
 * ```ts
 * import { loadPipeline } from "@zoetrope/animatediff";
 *
 * const pipe = await loadPipeline();
 * const latents = await pipe.generateLatents(
 *   { prompt: "fog", frames: 2, width: 32, height: 32, steps: 3, seed: 1 },
 *   { onStepLatents: (step, x) => console.log(step, x.length) },
 * );
 * // latents: Float32Array in diffusers' layout [1, 4, frames, height / 8, width / 8]
 * pipe.dispose();
 * ```
 */
export interface LatentOptions extends GenerateOptions {
  /** Initial noise in diffusers' layout [1, 4, frames, h, w] (before init_noise_sigma). */
  initialLatents?: Float32Array;
  /** Called with the latents after each step (diffusers layout [1, 4, f, h, w]); costs a readback. */
  onStepLatents?: (step: number, latents: Float32Array) => void;
  /** Scheduler config (default: AnimateDiff's linear 0.00085..0.012). */
  schedulerConfig?: SchedulerConfig;
}

export async function denoise(
  p: PipelineParts,
  r: ResolvedRequest,
  options: LatentOptions & { prompts?: readonly string[]; negativePrompts?: readonly string[] },
  timings: Record<string, number>,
): Promise<Tensor> {
  const gpu = p.gpu;
  const { onProgress, signal } = options;
  const throwIfAborted = () => {
    if (signal?.aborted) throw new AbortError();
  };
  throwIfAborted();
  const h = r.height / 8, w = r.width / 8, f = r.frames;
  const b = options.prompts?.length ?? 1;
  const cfg = r.guidance > 1;
  const tEnc = performance.now();
  onProgress?.({ stage: "encode", step: 0, total: 1, elapsedMs: 0 });
  if (r.keyframes && options.prompts) {
    throw new InputError("promptMap: prompt travel is for generate(), not generateBatch()");
  }
  const context = r.keyframes
    ? encodePromptTravel(p, { ...r, keyframes: r.keyframes }, cfg, onProgress)
    : encodePrompt(
      p,
      { ...r, prompts: options.prompts, negativePrompts: options.negativePrompts },
      cfg,
      onProgress,
    );
  await gpu.sync();
  timings.encode = performance.now() - tEnc;
  onProgress?.({ stage: "encode", step: 1, total: 1, elapsedMs: timings.encode });

  const config = options.schedulerConfig ?? ANIMATEDIFF_SCHEDULER_CONFIG;
  const gen = new TorchGenerator(r.seed);
  const shape = [b, 4, f, h, w];
  let from: { latents: Float32Array; start: number } | null = null;
  let noise: Float32Array | null = null;
  try {
    if (r.init) {
      // Video / image input: the clip encoded and noised to the first kept step.
      if (options.initialLatents) {
        throw new InputError("initialLatents cannot be combined with a video or image input");
      }
      if (r.init.videos.length !== b) {
        throw new InputError(
          `${r.init.videos.length} input videos for ${b} prompts: generateBatch takes videos, one per prompt`,
        );
      }
      if (!p.vaeEncoder) throw new InputError("this pipeline has no VAE encoder for video input");
      from = await encodeInit(p, await p.vaeEncoder(), r, config, gen);
    } else {
      noise = options.initialLatents ?? gen.randn(shape);
      if (r.freeNoise && !options.initialLatents && r.contextLength < f) {
        noise = freeNoise(
          noise,
          { videos: b, channels: 4, frames: f, plane: h * w },
          r.contextLength,
          r.contextOverlap,
          r.seed,
        );
      }
      if (noise.length !== b * 4 * f * h * w) {
        throw new InputError(
          `initial latents have ${noise.length} values, expected ${b * 4 * f * h * w}`,
        );
      }
    }
  } catch (e) {
    context.release();
    throw e;
  }
  // FreeInit: several passes; pass k > 0 starts from the last result re-noised to t = N - 1
  // with the first pass's noise, low frequencies kept, high ones from fresh noise.
  const passes = r.freeInit?.iterations ?? 1;
  const stepsOf = (k: number) =>
    r.freeInit?.fastSampling ? Math.floor(r.steps / passes * (k + 1)) : r.steps;
  const schedulerOf = (k: number): Scheduler => createScheduler(r.scheduler, config, stepsOf(k));
  // [b, 4, f, h, w] -> [b*f, 4, h, w]: frames folded into the batch, video-major.
  const upload = (data: Float32Array, k: number) =>
    gpu.upload(toFrameMajor(data, f, h, w, k), [b * f, 4, h, w], p.dtype, "latents");
  let scheduler = schedulerOf(0);
  // Video input starts part-way, on latents already noised and in [F, 4, h, w].
  const start = from?.start ?? 0;
  let latents = from
    ? gpu.upload(from.latents, [b * f, 4, h, w], p.dtype, "latents")
    : upload(noise!, scheduler.initNoiseSigma);
  const ops: VectorOps<Tensor> = {
    lincomb: (terms) => linearCombination(gpu, terms),
    randn: () => upload(gen.randn(shape), 1),
    release: (x) => x.release(),
  };
  let total = 0;
  for (let k = 0; k < passes; k++) {
    total += k === 0 ? scheduler.timesteps.length - start : stepsOf(k);
  }
  const tLoop = performance.now();
  const report = stepReporter(p, r, options, total);
  try {
    for (let pass = 0; pass < passes; pass++) {
      if (pass > 0) {
        const prev = await readLatents(p, latents, r);
        latents.release();
        scheduler.reset(ops);
        scheduler = schedulerOf(pass);
        latents = upload(freeInitNoise(r, config, prev, noise!, gen, [b, f, h, w]), 1);
      }
      for (let i = pass === 0 ? start : 0; i < scheduler.timesteps.length; i++) {
        throwIfAborted();
        latents = await schedulerStep(p, r, scheduler, ops, i, latents, context, b);
        await report(latents);
      }
    }
  } catch (e) {
    latents.release();
    throw e;
  } finally {
    scheduler.reset(ops);
    context.release();
  }
  timings.denoise = performance.now() - tLoop;
  // The UNet's free buffers go back to the driver before the VAE allocates its own.
  gpu.pool.trim();
  return latents;
}

/** Latents [b*f, 4, h, w] read back in diffusers' layout [b, 4, f, h, w]. */
export async function readLatents(
  p: PipelineParts,
  latents: Tensor,
  r: Pick<ResolvedRequest, "frames" | "width" | "height">,
): Promise<Float32Array> {
  const data = await p.gpu.read(latents);
  return toChannelMajor(data, r.frames, r.height / 8, r.width / 8);
}

/**
 * FreeInit's start of the next pass (diffusers' `_apply_free_init`): the last pass's latents
 * re-noised to t = N - 1 with the first pass's noise (times init_noise_sigma), z_t; fresh noise
 * z drawn from the request's generator after that; their spectral mix, low frequencies from z_t.
 */
function freeInitNoise(
  r: ResolvedRequest,
  config: SchedulerConfig,
  prev: Float32Array,
  noise: Float32Array,
  gen: TorchGenerator,
  [b, f, h, w]: number[],
): Float32Array {
  const fi = r.freeInit!;
  const a = Math.fround(alphasCumprod(config)[config.numTrainTimesteps - 1]);
  const sa = Math.fround(Math.sqrt(a)), sb = Math.fround(Math.sqrt(Math.fround(1 - a)));
  const sigma = createScheduler(r.scheduler, config, r.steps).initNoiseSigma;
  const zt = new Float32Array(prev.length);
  for (let i = 0; i < zt.length; i++) {
    zt[i] = sa * prev[i] + sb * Math.fround(noise[i] * sigma);
  }
  const z = gen.randn([b, 4, f, h, w]);
  return freeInitMix(zt, z, freeInitFilter([f, h, w], fi), b * 4, [f, h, w]);
}

/**
 * Video / image to video, as diffusers' AnimateDiffVideoToVideoPipeline: each video's frames
 * through the VAE encoder and a posterior sample (eps drawn [F, 4, h, w] per video, in order,
 * from the request's generator) times the scaling factor, then noise drawn [b, F, 4, h, w]
 * (frames before channels, as diffusers draws it) added at the first kept timestep. Returns the
 * noisy latents [b*F, 4, h, w] (video-major) and the index of the first denoising step.
 */
async function encodeInit(
  p: PipelineParts,
  encoder: VaeEncoder,
  r: ResolvedRequest,
  config: SchedulerConfig,
  gen: TorchGenerator,
): Promise<{ latents: Float32Array; start: number }> {
  const gpu = p.gpu, init = r.init!, b = init.videos.length;
  const f = r.frames, H = r.height, W = r.width, hw = (H / 8) * (W / 8);
  const sf = p.vae.config.scalingFactor;
  const x0 = new Float32Array(b * f * 4 * hw);
  for (let v = 0; v < b; v++) {
    const frames = init.videos[v];
    const mean = new Float32Array(f * 4 * hw), logvar = new Float32Array(f * 4 * hw);
    for (let f0 = 0; f0 < f; f0 += ENCODE_FRAMES) {
      const n = Math.min(ENCODE_FRAMES, f - f0);
      const px = new Float32Array(n * 3 * H * W);
      for (let i = 0; i < n; i++) {
        const d = frames[f0 + i].data;
        for (let q = 0; q < H * W; q++) {
          for (let c = 0; c < 3; c++) {
            px[(i * 3 + c) * H * W + q] = 2 * Math.fround(d[q * 4 + c] / 255) - 1;
          }
        }
      }
      const x = gpu.upload(px, [n, 3, H, W], p.dtype, "video frames");
      const out = encoder.forward(gpu, x);
      const [m, lv] = await gpu.readMany([out.mean, out.logvar]);
      for (const t of [x, out.mean, out.logvar]) t.release();
      mean.set(m, f0 * 4 * hw);
      logvar.set(lv, f0 * 4 * hw);
    }
    const eps = gen.randn([f, 4, H / 8, W / 8]);
    for (let i = 0; i < mean.length; i++) {
      const std = Math.fround(Math.exp(0.5 * Math.min(20, Math.max(-30, logvar[i]))));
      x0[v * mean.length + i] = Math.fround(sf * Math.fround(mean[i] + Math.fround(std * eps[i])));
    }
  }
  const noise = gen.randn([b, f, 4, H / 8, W / 8]);
  const steps = createScheduler(r.scheduler, config, r.steps).timesteps;
  const start = Math.max(r.steps - Math.min(Math.floor(r.steps * init.strength), r.steps), 0);
  const a = Math.fround(alphasCumprod(config)[steps[start]]);
  const sa = Math.fround(Math.sqrt(a)), sb = Math.fround(Math.sqrt(Math.fround(1 - a)));
  const latents = new Float32Array(x0.length);
  for (let i = 0; i < x0.length; i++) latents[i] = sa * x0[i] + sb * noise[i];
  return { latents, start };
}

/** Frames the VAE encoder takes at once for video input. */
const ENCODE_FRAMES = 4;

/**
 * One step of the loop: the (windowed, guided) noise prediction at step `i` and the scheduler's
 * update; frees `latents` and returns the next ones.
 */
async function schedulerStep(
  p: PipelineParts,
  r: ResolvedRequest,
  scheduler: Scheduler,
  ops: VectorOps<Tensor>,
  i: number,
  latents: Tensor,
  context: Tensor,
  videos: number,
): Promise<Tensor> {
  const eps = predictNoiseWindowed(
    p,
    latents,
    scheduler.timesteps[i],
    scheduler.modelInputScale(i),
    context,
    { ...r, videos },
  );
  const { prevSample, predOriginal } = scheduler.step(ops, i, eps, latents);
  eps.release();
  predOriginal?.release();
  latents.release();
  await p.gpu.sync();
  return prevSample;
}

/**
 * Reports the loop's progress (and the latents after each step, when asked for): the start
 * now, then one call per step.
 */
function stepReporter(
  p: PipelineParts,
  r: ResolvedRequest,
  options: LatentOptions,
  total: number,
): (latents: Tensor) => Promise<void> {
  const t0 = performance.now();
  let done = 0;
  options.onProgress?.({ stage: "denoise", step: 0, total, elapsedMs: 0 });
  return async (latents) => {
    const preview = options.onPreview;
    if (options.onStepLatents || preview) {
      const data = await readLatents(p, latents, r);
      options.onStepLatents?.(done, data);
      if (preview) {
        const map = await latentRgbMap(p);
        const shape = { frames: r.frames, h: r.height / 8, w: r.width / 8 };
        preview({ step: done + 1, total, frames: previewFrames(data, shape, map) });
      }
    }
    done++;
    const elapsed = performance.now() - t0;
    options.onProgress?.({
      stage: "denoise",
      step: done,
      total,
      elapsedMs: elapsed,
      etaMs: (elapsed / done) * (total - done),
    });
  };
}
