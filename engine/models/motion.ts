/**
 * AnimateDiff motion module (diffusers TransformerTemporalModel naming): GroupNorm over the
 * whole clip, proj_in, transformer blocks of two temporal self-attentions with sinusoidal
 * position encoding added to the normed input of each, GEGLU feed-forward, proj_out, residual.
 * @module
 */

import type { Gpu } from "../../kernels/gpu/device.ts";
import type { Tensor } from "../../kernels/gpu/tensor.ts";
import type { WeightStore } from "./weights.ts";
import { Attention, FeedForward } from "./attention.ts";
import { GroupNorm, LayerNorm, Linear } from "./layers.ts";
import { add } from "../../kernels/elementwise.ts";
import { addPositionEncoding } from "../../kernels/embedding.ts";
import { permute } from "../../kernels/layout.ts";
import type { Param } from "./weights.ts";

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

/** One temporal transformer block: attn1 and attn2 both self-attention over frames. */
class TemporalBlock {
  readonly norm1: LayerNorm;
  readonly attn1: Attention;
  readonly norm2: LayerNorm;
  readonly attn2: Attention;
  readonly norm3: LayerNorm;
  readonly ff: FeedForward;
  readonly pe: Param;
  constructor(w: WeightStore, prefix: string, o: { dim: number; heads: number; maxLen: number }) {
    this.norm1 = new LayerNorm(w, `${prefix}.norm1`, o.dim);
    this.attn1 = new Attention(w, `${prefix}.attn1`, { dim: o.dim, heads: o.heads });
    this.norm2 = new LayerNorm(w, `${prefix}.norm2`, o.dim);
    this.attn2 = new Attention(w, `${prefix}.attn2`, { dim: o.dim, heads: o.heads });
    this.norm3 = new LayerNorm(w, `${prefix}.norm3`, o.dim);
    this.ff = new FeedForward(w, `${prefix}.ff`, o.dim);
    this.pe = w.param(`${prefix}.pos_embed.pe`, [1, o.maxLen, o.dim]);
  }

  /** x [b*h*w, f, C] -> same. */
  forward(gpu: Gpu, x: Tensor): Tensor {
    const n1 = this.norm1.forward(gpu, x);
    const p1 = addPositionEncoding(gpu, n1, this.pe.t);
    n1.release();
    const h1 = this.attn1.forward(gpu, p1, { residual: x });
    p1.release();
    const n2 = this.norm2.forward(gpu, h1);
    const p2 = addPositionEncoding(gpu, n2, this.pe.t);
    n2.release();
    const h2 = this.attn2.forward(gpu, p2, { residual: h1 });
    p2.release();
    h1.release();
    const n3 = this.norm3.forward(gpu, h2);
    const out = this.ff.forward(gpu, n3, h2);
    n3.release();
    h2.release();
    return out;
  }
}

/** A motion module inserted after a resnet/attention pair. */
export class MotionModule {
  readonly norm: GroupNorm;
  readonly projIn: Linear;
  readonly blocks: TemporalBlock[] = [];
  readonly projOut: Linear;
  constructor(
    w: WeightStore,
    prefix: string,
    o: { channels: number; heads: number; groups: number; maxLen: number; layers: number },
  ) {
    this.norm = new GroupNorm(w, `${prefix}.norm`, o.channels, o.groups, 1e-6);
    this.projIn = new Linear(w, `${prefix}.proj_in`, o.channels, o.channels);
    for (let i = 0; i < o.layers; i++) {
      this.blocks.push(
        new TemporalBlock(w, `${prefix}.transformer_blocks.${i}`, {
          dim: o.channels,
          heads: o.heads,
          maxLen: o.maxLen,
        }),
      );
    }
    this.projOut = new Linear(w, `${prefix}.proj_out`, o.channels, o.channels);
  }

  /** x [b*f, C, H, W] -> same shape (x + temporal transformer(x)). */
  forward(gpu: Gpu, x: Tensor, frames: number, normMode: MotionNormMode = "clip"): Tensor {
    const [bf, c, h, w] = x.shape;
    const b = bf / frames;
    const normed = this.norm.forward(gpu, x, { frames: normMode === "clip" ? frames : 1 });
    // (b*f, C, H, W) = [b, f, C, HW] -> [b, HW, f, C] = (b*h*w, f, C)
    const seq = permute(gpu, normed.reshape([b, frames, c, h * w]), [0, 3, 1, 2]);
    normed.release();
    let hs = this.projIn.forward(gpu, seq.reshape([b * h * w, frames, c]));
    seq.release();
    for (const block of this.blocks) {
      const next = block.forward(gpu, hs);
      hs.release();
      hs = next;
    }
    const projected = this.projOut.forward(gpu, hs);
    hs.release();
    // [b, HW, f, C] -> [b, f, C, HW] = (b*f, C, H, W)
    const back = permute(gpu, projected.reshape([b, h * w, frames, c]), [0, 2, 3, 1]);
    projected.release();
    const out = add(gpu, back.reshape([bf, c, h, w]), x);
    back.release();
    return out;
  }
}
