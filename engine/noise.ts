/**
 * One noise prediction with classifier-free guidance: the UNet on the unconditional and the
 * conditional context, combined as `u + g * (c - u)`. The two passes run as one batch, or one
 * after the other when the batch would be large (same results, half the activation memory).
 * @module
 */

import type { Tensor } from "../kernels/gpu/tensor.ts";
import { cfgCombine, cfgGuide, scale } from "../kernels/elementwise.ts";
import { concat, slice } from "../kernels/layout.ts";
import type { PipelineParts } from "./load.ts";

/**
 * The batched guidance passes split into two when the UNet's widest activation (2 x frames x
 * 320 channels x latent pixels) would be larger than this.
 */
const CFG_SPLIT_BYTES = 64 * 2 ** 20;
let cfgSplitOverride: boolean | null = null;

/**
 * Forces the classifier-free guidance passes to run batched (false) or one after the other
 * (true) for every pipeline; null restores the size rule. Tests prove both give equal results.
 */
export function setCfgSplitOverride(split: boolean | null): void {
  cfgSplitOverride = split;
}

function splitCfg(p: PipelineParts, latents: Tensor): boolean {
  if (cfgSplitOverride !== null) return cfgSplitOverride;
  const widest = 2 * latents.size / latents.shape[1] * p.unet.config.blockOutChannels[0];
  return widest * (p.dtype === "f16" ? 2 : 4) > CFG_SPLIT_BYTES;
}

/**
 * The guided noise prediction [b*f, 4, h, w] for latents [b*f, 4, h, w] at timestep `t`;
 * `context` holds [uncond videos, cond videos] (or only cond without guidance).
 */
export function predictNoise(
  p: PipelineParts,
  latents: Tensor,
  t: number,
  inputScale: number,
  context: Tensor,
  r: {
    frames: number;
    guidance: number;
    motionScale?: number;
    motionEffect?: number;
    /** Prompt travel: the context holds one row per frame (else one per video). */
    keyframes?: unknown;
  },
): Tensor {
  const gpu = p.gpu;
  // Rows of one guidance half: one per video, or one per frame with prompt travel.
  const rows = r.keyframes ? latents.shape[0] : latents.shape[0] / r.frames;
  const cfg = context.shape[0] === 2 * rows;
  return gpu.scope(() => {
    const x = inputScale === 1 ? latents : scale(gpu, latents, inputScale);
    const motion = { scale: r.motionScale ?? 1, effect: r.motionEffect ?? 1 };
    if (!cfg) return p.unet.forward(gpu, x, t, context, r.frames, motion);
    if (splitCfg(p, latents)) {
      // The unconditional and conditional passes one after the other: half the activations.
      const b = rows;
      const [u, c] = [0, 1].map((half) =>
        p.unet.forward(
          gpu,
          x,
          t,
          slice(gpu, context, 0, half * b, (half + 1) * b),
          r.frames,
          motion,
        )
      );
      return cfgGuide(gpu, u, c, r.guidance);
    }
    // [b*f, 4, h, w] -> [2*b*f, 4, h, w] = (uncond videos, cond videos)
    const eps = p.unet.forward(gpu, concat(gpu, [x, x], 0), t, context, r.frames, motion);
    return cfgCombine(gpu, eps, r.guidance);
  });
}
