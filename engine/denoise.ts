/**
 * The denoising loop: the prompt encoded once, the initial noise from the torch-compatible
 * generator, then for each scheduler timestep a (windowed, guided) noise prediction and the
 * scheduler's update on the GPU with CPU-computed coefficients.
 * @module
 */

import type { Tensor } from "../kernels/gpu/tensor.ts";
import { AbortError, InputError } from "../kernels/gpu/errors.ts";
import { linearCombination } from "../kernels/elementwise.ts";
import { TorchGenerator } from "./rng.ts";
import { createScheduler, type Scheduler, type VectorOps } from "./schedulers/mod.ts";
import { ANIMATEDIFF_SCHEDULER_CONFIG, type SchedulerConfig } from "./schedulers/config.ts";
import type { GenerateOptions } from "./pipeline_types.ts";
import type { PipelineParts } from "./load.ts";
import type { ResolvedRequest } from "./request.ts";
import { encodePrompt } from "./prompt.ts";
import { predictNoiseWindowed } from "./context_windows.ts";
import { toChannelMajor, toFrameMajor } from "./latents.ts";

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
  const context = encodePrompt(
    p,
    { ...r, prompts: options.prompts, negativePrompts: options.negativePrompts },
    cfg,
    onProgress,
  );
  await gpu.sync();
  timings.encode = performance.now() - tEnc;
  onProgress?.({ stage: "encode", step: 1, total: 1, elapsedMs: timings.encode });

  const scheduler: Scheduler = createScheduler(
    r.scheduler,
    options.schedulerConfig ?? ANIMATEDIFF_SCHEDULER_CONFIG,
    r.steps,
  );
  const gen = new TorchGenerator(r.seed);
  const shape = [b, 4, f, h, w];
  const noise = options.initialLatents ?? gen.randn(shape);
  if (noise.length !== b * 4 * f * h * w) {
    context.release();
    throw new InputError(
      `initial latents have ${noise.length} values, expected ${b * 4 * f * h * w}`,
    );
  }
  // [b, 4, f, h, w] -> [b*f, 4, h, w]: frames folded into the batch, video-major.
  const upload = (data: Float32Array, k: number) =>
    gpu.upload(toFrameMajor(data, f, h, w, k), [b * f, 4, h, w], p.dtype, "latents");
  let latents = upload(noise, scheduler.initNoiseSigma);
  const ops: VectorOps<Tensor> = {
    lincomb: (terms) => linearCombination(gpu, terms),
    randn: () => upload(gen.randn(shape), 1),
    release: (x) => x.release(),
  };
  const total = scheduler.timesteps.length;
  const tLoop = performance.now();
  onProgress?.({ stage: "denoise", step: 0, total, elapsedMs: 0 });
  try {
    for (let i = 0; i < total; i++) {
      throwIfAborted();
      const eps = predictNoiseWindowed(
        p,
        latents,
        scheduler.timesteps[i],
        scheduler.modelInputScale(i),
        context,
        { ...r, videos: b },
      );
      const { prevSample, predOriginal } = scheduler.step(ops, i, eps, latents);
      eps.release();
      predOriginal?.release();
      latents.release();
      latents = prevSample;
      await gpu.sync();
      if (options.onStepLatents) {
        options.onStepLatents(i, await readLatents(p, latents, r));
      }
      const elapsed = performance.now() - tLoop;
      onProgress?.({
        stage: "denoise",
        step: i + 1,
        total,
        elapsedMs: elapsed,
        etaMs: (elapsed / (i + 1)) * (total - i - 1),
      });
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
