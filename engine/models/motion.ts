/**
 * AnimateDiff motion module (diffusers TransformerTemporalModel naming): GroupNorm over the
 * whole clip, proj_in, transformer blocks of two temporal self-attentions with sinusoidal
 * position encoding added to the normed input of each, GEGLU feed-forward, proj_out, residual.
 * @module
 */

import type { Gpu } from "../../kernels/gpu/device.ts";
import type { Tensor } from "../../kernels/gpu/tensor.ts";
import type { WeightStore } from "../weight_store.ts";
import { TransformerBlock } from "./attention.ts";
import { GroupNorm, Linear } from "./layers.ts";
import { add, linearCombination } from "../../kernels/elementwise.ts";
import { permute } from "../../kernels/layout.ts";

/**
 * How the motion module's GroupNorm gathers statistics.
 *
 * @example
 * ```ts
 * import { loadPipeline, type MotionNormMode } from "@zoetrope/animatediff";
 *
 * const pipe = await loadPipeline();
 * const mode: MotionNormMode = "frame"; // the original AnimateDiff's per-frame statistics
 * pipe.fidelity = mode === "frame" ? "original" : "diffusers"; // motionNorm is deprecated
 * ```
 */
export type MotionNormMode = "clip" | "frame";

/**
 * Generation-time motion controls (AnimateDiff-Evolved's `scale_multival` and
 * `effect_multival`): `scale` multiplies the temporal attentions' keys (logits = s * q.k /
 * sqrt(d)); `effect` blends the module's output with its input, x + e * (module(x) - x).
 *
 * @example
 * ```ts
 * const calm: MotionControls = { scale: 1, effect: 0.6 };
 * ```
 */
export interface MotionControls {
  scale: number;
  effect: number;
}

/** A motion module inserted after a resnet/attention pair. */
export class MotionModule {
  readonly norm: GroupNorm;
  readonly projIn: Linear;
  readonly blocks: TransformerBlock[] = [];
  readonly projOut: Linear;
  constructor(
    w: WeightStore,
    prefix: string,
    o: { channels: number; heads: number; groups: number; maxLen: number; layers: number },
  ) {
    this.norm = new GroupNorm(w, `${prefix}.norm`, o.channels, o.groups, 1e-6);
    this.projIn = new Linear(w, `${prefix}.proj_in`, { in: o.channels, out: o.channels });
    for (let i = 0; i < o.layers; i++) {
      this.blocks.push(
        new TransformerBlock(w, `${prefix}.transformer_blocks.${i}`, {
          dim: o.channels,
          heads: o.heads,
          positions: o.maxLen,
        }),
      );
    }
    this.projOut = new Linear(w, `${prefix}.proj_out`, { in: o.channels, out: o.channels });
  }

  /**
   * x [b*f, C, H, W] -> same shape (x + temporal transformer(x); with `controls`, x + e *
   * transformer(x) and keys scaled by s).
   */
  forward(
    gpu: Gpu,
    x: Tensor,
    frames: number,
    normMode: MotionNormMode = "clip",
    controls?: MotionControls,
  ): Tensor {
    const keyScale = controls?.scale ?? 1, effect = controls?.effect ?? 1;
    const [bf, c, h, w] = x.shape;
    const b = bf / frames;
    const normed = this.norm.forward(gpu, x, { frames: normMode === "clip" ? frames : 1 });
    // (b*f, C, H, W) = [b, f, C, HW] -> [b, HW, f, C] = (b*h*w, f, C)
    const seq = permute(gpu, normed.reshape([b, frames, c, h * w]), [0, 3, 1, 2]);
    let hs = this.projIn.forward(gpu, seq.reshape([b * h * w, frames, c]));
    for (const block of this.blocks) hs = block.forward(gpu, hs, { keyScale });
    // [b, HW, f, C] -> [b, f, C, HW] = (b*f, C, H, W), + residual
    const back = permute(gpu, this.projOut.forward(gpu, hs).reshape([b, h * w, frames, c]), [
      0,
      2,
      3,
      1,
    ]);
    const branch = back.reshape([bf, c, h, w]);
    if (effect === 1) return add(gpu, branch, x);
    return linearCombination(gpu, [{ c: effect, x: branch }, { c: 1, x }]);
  }
}
