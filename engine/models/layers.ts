/**
 * Basic layers: Linear, Conv2d, GroupNorm, LayerNorm, ResnetBlock2D, down/upsampling. Each
 * registers its parameters under the canonical (diffusers) sub-keys and composes launchers.
 * Forwards run inside the model's scope (`Gpu.scope`), which frees intermediates after their
 * last use: they only compose ops.
 * @module
 */

import type { Gpu } from "../../kernels/gpu/device.ts";
import type { Tensor } from "../../kernels/gpu/tensor.ts";
import type { Param, WeightStore } from "../weight_store.ts";
import { type Activation, linear } from "../../kernels/matmul.ts";
import { conv2d } from "../../kernels/conv2d.ts";
import { conv2dWinograd } from "../../kernels/winograd.ts";
import { groupNorm } from "../../kernels/group_norm.ts";
import { layerNorm } from "../../kernels/layer_norm.ts";
import { add, linearCombination, unary } from "../../kernels/elementwise.ts";
import { resizeNearest } from "../../kernels/resample.ts";

/** A low-rank adapter on a Linear: `y += scale * up(down(x))` (MotionLoRA / LoRA training). */
export interface LinearLora {
  /** [rank, in] (LoRA's A). */
  down: Tensor;
  /** [out, rank] (LoRA's B). */
  up: Tensor;
  /** alpha / rank. */
  scale: number;
  /** The LoRA's alpha (what kohya files store). */
  alpha: number;
}

/**
 * PyTorch Linear: weight [out, in], optional bias [out]. `conv1x1`: the weight is stored as a
 * 1x1 convolution's [out, in, 1, 1] (SD1.5's spatial proj_in / proj_out), the same data.
 */
export class Linear {
  readonly weight: Param;
  readonly bias: Param | null;
  /** A trained low-rank adapter added to the output (unmerged, so that it can learn), or null. */
  lora: LinearLora | null = null;
  constructor(
    w: WeightStore,
    prefix: string,
    o: { in: number; out: number; bias?: boolean; conv1x1?: boolean },
  ) {
    const shape = o.conv1x1 ? [o.out, o.in, 1, 1] : [o.out, o.in];
    this.weight = w.param(`${prefix}.weight`, shape, [o.out, o.in], { kind: "linear" });
    this.bias = (o.bias ?? true) ? w.param(`${prefix}.bias`, [o.out]) : null;
  }
  forward(
    gpu: Gpu,
    x: Tensor,
    options: { activation?: Activation; residual?: Tensor; out?: Tensor } = {},
  ): Tensor {
    const weightInOut = this.weight.layout === "in-out";
    if (!this.lora) {
      return linear(gpu, x, this.weight.t, { bias: this.bias?.t, weightInOut, ...options });
    }
    if (options.out) throw new Error(`${this.weight.name}: a LoRA-adapted Linear has no out`);
    // W x + b + s * B (A x), then the activation and the residual.
    const { down, up, scale } = this.lora;
    const base = linear(gpu, x, this.weight.t, { bias: this.bias?.t, weightInOut });
    let y = linearCombination(gpu, [
      { c: 1, x: base },
      { c: scale, x: linear(gpu, linear(gpu, x, down), up) },
    ]);
    const act = options.activation ?? "none";
    if (act !== "none") y = unary(gpu, y, act);
    return options.residual ? add(gpu, y, options.residual) : y;
  }
}

/** Conv2d with bias, NCHW. */
export class Conv2d {
  readonly weight: Param;
  readonly bias: Param;
  readonly stride: number;
  readonly padding: number;
  constructor(
    w: WeightStore,
    prefix: string,
    shape: { cin: number; cout: number; k: number; stride?: number; padding?: number },
  ) {
    this.stride = shape.stride ?? 1;
    this.padding = shape.padding ?? (shape.k - 1) / 2;
    const kind = shape.k === 3 && this.stride === 1 && this.padding === 1 ? "conv3x3" : "other";
    this.weight = w.param(
      `${prefix}.weight`,
      [shape.cout, shape.cin, shape.k, shape.k],
      undefined,
      {
        kind,
      },
    );
    this.bias = w.param(`${prefix}.bias`, [shape.cout]);
  }
  forward(gpu: Gpu, x: Tensor, residual?: Tensor): Tensor {
    if (this.weight.layout === "winograd") {
      return conv2dWinograd(gpu, x, this.weight.t, { bias: this.bias.t, residual });
    }
    return conv2d(gpu, x, this.weight.t, {
      bias: this.bias.t,
      stride: this.stride,
      padding: this.padding,
      residual,
    });
  }
}

/** GroupNorm with optional fused SiLU and clip-spanning statistics. */
export class GroupNorm {
  readonly weight: Param;
  readonly bias: Param;
  constructor(
    w: WeightStore,
    prefix: string,
    readonly channels: number,
    readonly groups: number,
    readonly eps: number,
  ) {
    if (channels % groups !== 0) {
      throw new Error(`${prefix}: ${channels} channels are not divisible into ${groups} groups`);
    }
    this.weight = w.param(`${prefix}.weight`, [channels]);
    this.bias = w.param(`${prefix}.bias`, [channels]);
  }
  forward(gpu: Gpu, x: Tensor, options: { silu?: boolean; frames?: number } = {}): Tensor {
    return groupNorm(gpu, x, this.weight.t, this.bias.t, {
      groups: this.groups,
      eps: this.eps,
      ...options,
    });
  }
}

/** LayerNorm over the last dimension. */
export class LayerNorm {
  readonly weight: Param;
  readonly bias: Param;
  constructor(w: WeightStore, prefix: string, dim: number, readonly eps = 1e-5) {
    this.weight = w.param(`${prefix}.weight`, [dim]);
    this.bias = w.param(`${prefix}.bias`, [dim]);
  }
  forward(gpu: Gpu, x: Tensor): Tensor {
    return layerNorm(gpu, x, this.weight.t, this.bias.t, { eps: this.eps });
  }
}

/**
 * diffusers ResnetBlock2D: norm1+SiLU -> conv1 (+ time embedding per channel) -> norm2+SiLU ->
 * conv2 (+ shortcut). Spatial: frames are folded into the batch.
 */
export class ResnetBlock2D {
  readonly norm1: GroupNorm;
  readonly conv1: Conv2d;
  readonly timeEmbProj: Linear | null;
  readonly norm2: GroupNorm;
  readonly conv2: Conv2d;
  readonly convShortcut: Conv2d | null;
  constructor(
    w: WeightStore,
    prefix: string,
    o: { cin: number; cout: number; tembChannels: number | null; groups: number; eps: number },
  ) {
    this.norm1 = new GroupNorm(w, `${prefix}.norm1`, o.cin, o.groups, o.eps);
    this.conv1 = new Conv2d(w, `${prefix}.conv1`, { cin: o.cin, cout: o.cout, k: 3 });
    this.timeEmbProj = o.tembChannels
      ? new Linear(w, `${prefix}.time_emb_proj`, { in: o.tembChannels, out: o.cout })
      : null;
    this.norm2 = new GroupNorm(w, `${prefix}.norm2`, o.cout, o.groups, o.eps);
    this.conv2 = new Conv2d(w, `${prefix}.conv2`, { cin: o.cout, cout: o.cout, k: 3 });
    this.convShortcut = o.cin !== o.cout
      ? new Conv2d(w, `${prefix}.conv_shortcut`, { cin: o.cin, cout: o.cout, k: 1 })
      : null;
  }

  /**
   * x [b*f, C, H, W]; `tembAct` = SiLU(time embedding) [b, T] (one per video, shared by its
   * `frames` frames), or null for the VAE. `spanFrames`: GroupNorm statistics over all frames
   * of a video (the original AnimateDiff v1 UNet) instead of per frame (diffusers).
   */
  forward(gpu: Gpu, x: Tensor, tembAct: Tensor | null, frames = 1, spanFrames = false): Tensor {
    const normFrames = spanFrames ? frames : 1;
    let h = this.conv1.forward(gpu, this.norm1.forward(gpu, x, { silu: true, frames: normFrames }));
    if (this.timeEmbProj && tembAct) {
      const [bf, c, hh, ww] = h.shape;
      const b = bf / frames;
      // [b*f, C, H, W] viewed [b, f, C, H*W] + time embedding [b, 1, C, 1]
      const t = this.timeEmbProj.forward(gpu, tembAct).reshape([b, 1, c, 1]);
      h = add(gpu, h.reshape([b, frames, c, hh * ww]), t).reshape([bf, c, hh, ww]);
    }
    const h2 = this.norm2.forward(gpu, h, { silu: true, frames: normFrames });
    const shortcut = this.convShortcut ? this.convShortcut.forward(gpu, x) : x;
    return this.conv2.forward(gpu, h2, shortcut);
  }
}

/** Downsample2D: 3x3 conv, stride 2, padding 1. */
export class Downsample2D {
  readonly conv: Conv2d;
  constructor(w: WeightStore, prefix: string, channels: number) {
    this.conv = new Conv2d(w, `${prefix}.conv`, {
      cin: channels,
      cout: channels,
      k: 3,
      stride: 2,
      padding: 1,
    });
  }
  forward(gpu: Gpu, x: Tensor): Tensor {
    return this.conv.forward(gpu, x);
  }
}

/** Upsample2D: nearest 2x (or to an explicit size, as diffusers' `upsample_size`), then 3x3 conv. */
export class Upsample2D {
  readonly conv: Conv2d;
  constructor(w: WeightStore, prefix: string, channels: number) {
    this.conv = new Conv2d(w, `${prefix}.conv`, { cin: channels, cout: channels, k: 3 });
  }
  forward(gpu: Gpu, x: Tensor, size?: readonly [number, number]): Tensor {
    const [h, w] = size ?? [2 * x.shape[2], 2 * x.shape[3]];
    return this.conv.forward(gpu, resizeNearest(gpu, x, h, w));
  }
}
