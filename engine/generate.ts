/**
 * A generation end to end: the denoising loop (engine/denoise.ts), then every frame through the
 * VAE decoder (in tiles when a frame is too large for the adapter's bindings) to RGBA frames,
 * one {@link Animation} per video.
 * @module
 */

import type { Tensor } from "../kernels/gpu/tensor.ts";
import { AbortError } from "../kernels/gpu/errors.ts";
import { scale } from "../kernels/elementwise.ts";
import { slice } from "../kernels/layout.ts";
import type { Frame } from "./output/frame.ts";
import type { GenerateOptions } from "./pipeline_types.ts";
import type { PipelineParts } from "./load.ts";
import type { ResolvedRequest } from "./request.ts";
import { Animation } from "./animation.ts";
import { denoise } from "./denoise.ts";
import { toRgba } from "./latents.ts";
import { decodeTiled, pickDecodeTile } from "./vae_tiling.ts";

/** Prompts of a batch (one video each); none: the request's own prompt, one video. */
export interface Batch {
  prompts?: readonly string[];
  negativePrompts?: readonly string[];
}

/** Denoises and decodes `r` (one video per prompt of `batch`). */
export async function generate(
  p: PipelineParts,
  r: ResolvedRequest,
  batch: Batch,
  options: GenerateOptions,
): Promise<Animation[]> {
  const timings: Record<string, number> = {};
  const t0 = performance.now();
  const latents = await denoise(p, r, { ...options, ...batch }, timings);
  const td = performance.now();
  let frames: Frame[];
  try {
    frames = await decode(p, latents, { ...r, frames: latents.shape[0] }, options);
  } finally {
    latents.release();
  }
  timings.decode = performance.now() - td;
  timings.total = performance.now() - t0;
  const out: Animation[] = [];
  for (let v = 0; v * r.frames < frames.length; v++) {
    out.push(
      new Animation({
        frames: frames.slice(v * r.frames, (v + 1) * r.frames),
        fps: r.fps,
        seed: r.seed,
        timings,
      }),
    );
  }
  return out;
}

/** Decodes latents [f, 4, h, w] frame by frame into RGBA frames. */
export async function decode(
  p: PipelineParts,
  latents: Tensor,
  r: { frames: number; width: number; height: number },
  options: GenerateOptions = {},
): Promise<Frame[]> {
  const gpu = p.gpu;
  const frames: Frame[] = [];
  const t0 = performance.now();
  const inv = 1 / p.vae.config.scalingFactor;
  options.onProgress?.({ stage: "decode", step: 0, total: r.frames, elapsedMs: 0 });
  // Frames too large to decode at once (for this adapter's bindings) decode in tiles.
  const tile = pickDecodeTile(p, r.height / 8, r.width / 8);
  for (let i = 0; i < r.frames; i++) {
    if (options.signal?.aborted) throw new AbortError();
    const z = gpu.scope(() => scale(gpu, slice(gpu, latents, 0, i, i + 1), inv));
    let data: Float32Array;
    try {
      if (tile === null) {
        const img = p.vae.forward(gpu, z);
        data = await gpu.read(img);
        img.release();
      } else {
        data = await decodeTiled(gpu, p.vae, z, tile);
      }
    } finally {
      z.release();
    }
    frames.push(toRgba(data, r.width, r.height));
    const elapsed = performance.now() - t0;
    options.onProgress?.({
      stage: "decode",
      step: i + 1,
      total: r.frames,
      elapsedMs: elapsed,
      etaMs: (elapsed / (i + 1)) * (r.frames - i - 1),
    });
  }
  return frames;
}
