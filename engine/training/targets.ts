/**
 * What one diffusion training step starts from, on the host: x0 latents (given, or encoded by the
 * frozen VAE from pixels and sampled from its posterior), the target noise, one timestep per
 * sample, and the noisy latents `sqrt(a_t) x0 + sqrt(1 - a_t) noise` (DDPMScheduler.add_noise in
 * float32), in the UNet's layout [b*frames, 4, h, w] (frames folded into the batch, video-major).
 * @module
 */

import type { Gpu } from "../../kernels/gpu/device.ts";
import type { DType } from "../../kernels/gpu/tensor.ts";
import { InputError } from "../../kernels/gpu/errors.ts";
import type { VaeEncoder } from "../models/vae.ts";
import type { TorchGenerator } from "../rng.ts";

/** A host tensor of a training batch: shape and float32 values. */
export interface TrainTensor {
  /** Dimensions, outermost first. */
  shape: number[];
  /** Row-major float32 values. */
  data: Float32Array;
}

/** The host-side inputs of a step (see the module doc). */
export interface DiffusionTargets {
  /** Samples (videos, or images when frames is 1). */
  batch: number;
  frames: number;
  /** [b*frames, 4, h, w]. */
  shape: number[];
  noisy: Float32Array;
  /** The target noise in the same layout. */
  noise: Float32Array;
  timesteps: number[];
}

/** Training timesteps (DDPM's). */
const TRAIN_TIMESTEPS = 1000;
/** logvar clamp of diffusers' DiagonalGaussianDistribution. */
const LOGVAR_RANGE = [-30, 20] as const;

const f = Math.fround;

/**
 * The step's inputs from a batch (see the module doc). `video`: batches are clips
 * ([b, frames, 3, H, W] pixels, [b, 4, frames, h, w] latents and noise), else images.
 *
 * @example
 * ```ts
 * const t = await diffusionTargets(gpu, { latents, noise, timesteps: [10, 500] }, { video: true, vae, dtype: "f32", alphasCumprod, generator });
 * ```
 */
export async function diffusionTargets(
  gpu: Gpu,
  batch: {
    pixels?: TrainTensor;
    latents?: TrainTensor;
    noise?: TrainTensor;
    timesteps?: number[];
    posteriorNoise?: TrainTensor;
  },
  o: {
    video: boolean;
    vae: VaeEncoder;
    dtype: DType;
    alphasCumprod: Float64Array;
    generator: TorchGenerator;
  },
): Promise<DiffusionTargets> {
  let x0: Float32Array, b: number, frames: number, c: number, h: number, w: number;
  if (batch.latents) {
    const s = batch.latents.shape;
    if (s.length !== (o.video ? 5 : 4)) {
      throw new InputError(
        `latents: expected ${o.video ? "[b, 4, frames, h, w]" : "[b, 4, h, w]"}, got [${s}]`,
      );
    }
    [b, c] = s;
    frames = o.video ? s[2] : 1;
    [h, w] = s.slice(-2);
    x0 = o.video ? channelsToFrames(batch.latents.data, b, c, frames, h * w) : batch.latents.data;
  } else if (batch.pixels) {
    const s = batch.pixels.shape;
    if (s.length !== (o.video ? 5 : 4) || s[s.length - 3] !== 3) {
      throw new InputError(
        `pixels: expected ${o.video ? "[b, frames, 3, H, W]" : "[b, 3, H, W]"}, got [${s}]`,
      );
    }
    b = s[0];
    frames = o.video ? s[1] : 1;
    const [ph, pw] = s.slice(-2);
    if (ph % 8 || pw % 8) {
      throw new InputError(`pixels: H and W must be multiples of 8, got [${s}]`);
    }
    ({ x0, c, h, w } = await encode(gpu, batch.pixels.data, [b * frames, 3, ph, pw], batch, o));
  } else {
    throw new InputError("a training batch needs pixels or latents");
  }
  const n = b * frames * c * h * w;
  let noise: Float32Array;
  if (batch.noise) {
    if (batch.noise.data.length !== n) {
      throw new InputError(`noise: expected the latents' shape, got [${batch.noise.shape}]`);
    }
    noise = o.video ? channelsToFrames(batch.noise.data, b, c, frames, h * w) : batch.noise.data;
  } else {
    const drawn = o.generator.randn(o.video ? [b, c, frames, h, w] : [b, c, h, w]);
    noise = o.video ? channelsToFrames(drawn, b, c, frames, h * w) : drawn;
  }
  const timesteps = batch.timesteps ??
    Array.from({ length: b }, () => Math.floor(o.generator.nextDoubleUniform() * TRAIN_TIMESTEPS));
  if (
    timesteps.length !== b ||
    timesteps.some((t) => !Number.isInteger(t) || t < 0 || t >= TRAIN_TIMESTEPS)
  ) {
    throw new InputError(
      `timesteps: expected ${b} integers in [0, ${TRAIN_TIMESTEPS}), got [${timesteps}]`,
    );
  }
  const noisy = new Float32Array(n);
  const per = n / b;
  for (let i = 0; i < b; i++) {
    const a = o.alphasCumprod[timesteps[i]];
    const s1 = f(Math.sqrt(a)), s2 = f(Math.sqrt(f(1 - a)));
    for (let j = i * per; j < (i + 1) * per; j++) noisy[j] = f(f(s1 * x0[j]) + f(s2 * noise[j]));
  }
  return { batch: b, frames, shape: [b * frames, c, h, w], noisy, noise, timesteps };
}

/** x0 = (mean + std * eps) * scaling factor from the frozen VAE encoder, per frame. */
async function encode(
  gpu: Gpu,
  pixels: Float32Array,
  shape: number[],
  batch: { posteriorNoise?: TrainTensor },
  o: { vae: VaeEncoder; dtype: DType; generator: TorchGenerator },
): Promise<{ x0: Float32Array; c: number; h: number; w: number }> {
  const x = gpu.upload(pixels, shape, o.dtype, "pixels");
  const { mean, logvar } = o.vae.forward(gpu, x);
  x.release();
  const [, c, h, w] = mean.shape;
  const [m, lv] = [await gpu.read(mean), await gpu.read(logvar)];
  mean.release();
  logvar.release();
  const eps = batch.posteriorNoise?.data ?? o.generator.randn(mean.shape);
  if (eps.length !== m.length) {
    throw new InputError(
      `posteriorNoise: expected [${mean.shape}], got [${batch.posteriorNoise!.shape}]`,
    );
  }
  const sf = o.vae.config.scalingFactor;
  const x0 = new Float32Array(m.length);
  for (let i = 0; i < m.length; i++) {
    const logv = Math.min(LOGVAR_RANGE[1], Math.max(LOGVAR_RANGE[0], lv[i]));
    const std = f(Math.exp(f(0.5 * logv)));
    x0[i] = f(f(m[i] + f(std * eps[i])) * sf);
  }
  return { x0, c, h, w };
}

/** [b, c, f, hw] -> [b, f, c, hw] (diffusers' video latents to the UNet's folded frames). */
function channelsToFrames(
  x: Float32Array,
  b: number,
  c: number,
  frames: number,
  hw: number,
): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < b; i++) {
    for (let ch = 0; ch < c; ch++) {
      for (let fr = 0; fr < frames; fr++) {
        const src = ((i * c + ch) * frames + fr) * hw, dst = ((i * frames + fr) * c + ch) * hw;
        out.set(x.subarray(src, src + hw), dst);
      }
    }
  }
  return out;
}
