/**
 * The UNet of SD1.5 inflated for video (diffusers UNetMotionModel): spatial layers see frames
 * folded into the batch `(b*f, c, h, w)`; a motion module follows every resnet(+attention) of
 * every down and up block, and the mid block's attention when the motion weights have one.
 * @module
 */

import type { Gpu } from "../../kernels/gpu/device.ts";
import type { Tensor } from "../../kernels/gpu/tensor.ts";
import {
  DEFAULT_NORM_GROUPS,
  type MotionConfig,
  type UNetConfig,
} from "../../weights/model_config.ts";
import type { WeightStore } from "../weight_store.ts";
import { InputError } from "../../kernels/gpu/errors.ts";
import { Conv2d, Downsample2D, GroupNorm, Linear, ResnetBlock2D, Upsample2D } from "./layers.ts";
import { Transformer2D } from "./attention.ts";
import { type MotionControls, MotionModule, type MotionNormMode } from "./motion.ts";

/**
 * Which AnimateDiff implementation the UNet follows where they differ.
 *
 * @example
 * ```ts
 * import { type Fidelity, loadPipeline } from "@zoetrope/animatediff";
 *
 * const pipe = await loadPipeline();
 * const fidelity: Fidelity = "original"; // follow the original AnimateDiff repo
 * pipe.fidelity = fidelity;
 * ```
 */
export type Fidelity = "diffusers" | "original";
import { timestepEmbedding } from "../../kernels/embedding.ts";
import { unary } from "../../kernels/elementwise.ts";
import { concat } from "../../kernels/layout.ts";
import { GradientTape } from "../training/autograd.ts";

interface Level {
  resnets: ResnetBlock2D[];
  attentions: Transformer2D[] | null;
  motions: MotionModule[] | null;
  resample: Downsample2D | Upsample2D | null;
}

/** UNet3D = SD1.5 UNet + AnimateDiff motion modules. */
export class UNet3D {
  readonly config: UNetConfig;
  readonly motionConfig: MotionConfig | null;
  readonly timeLinear1: Linear;
  readonly timeLinear2: Linear;
  readonly convIn: Conv2d;
  readonly down: Level[] = [];
  readonly midResnets: [ResnetBlock2D, ResnetBlock2D];
  readonly midAttention: Transformer2D | null;
  readonly midMotion: MotionModule | null;
  readonly up: Level[] = [];
  readonly normOut: GroupNorm;
  readonly convOut: Conv2d;
  /**
   * Which reference to follow where they differ: "diffusers" (default; motion GroupNorm over
   * the whole clip, UNet GroupNorms per frame) or "original" AnimateDiff (motion GroupNorm per
   * frame; with v1 motion modules the ResNet and output GroupNorms span all frames).
   */
  fidelity: Fidelity = "diffusers";
  /**
   * Activation checkpointing while a gradient tape records (training): each down and up layer
   * (resnet -> attention -> motion module, with its skip concat) and each piece of the mid block
   * runs under `GradientTape.checkpoint`, so only the tensors between those blocks are kept for
   * the backward pass and each block runs its forward again there. No effect on inference.
   */
  checkpointing = false;

  constructor(
    w: WeightStore,
    m: WeightStore | null,
    config: UNetConfig,
    motion: MotionConfig | null,
  ) {
    this.config = config;
    this.motionConfig = motion;
    const c = config;
    const ch = c.blockOutChannels;
    const n = ch.length;
    const temb = c.timeEmbeddingDim;
    const groups = c.normGroups, eps = c.normEps;
    if (motion) {
      if (
        motion.blockOutChannels.length !== n || motion.blockOutChannels.some((x, i) => x !== ch[i])
      ) {
        throw new InputError(
          `motion module channels [${motion.blockOutChannels}] do not match the UNet's [${ch}]: ` +
            `the motion module is for another base model`,
        );
      }
      if (motion.layersPerBlock !== c.layersPerBlock) {
        throw new InputError(
          `motion module has ${motion.layersPerBlock} layers per block, the UNet ${c.layersPerBlock}: ` +
            `the motion module is for another base model`,
        );
      }
    }
    const mm = (prefix: string, channels: number, groups = motion?.normGroups ?? 0) =>
      m && motion
        ? new MotionModule(m, prefix, {
          channels,
          heads: motion.heads,
          groups,
          maxLen: motion.maxSeqLength,
          layers: motion.transformerLayers,
        })
        : null;
    const tf = (prefix: string, channels: number, heads: number) =>
      new Transformer2D(w, prefix, {
        channels,
        heads,
        contextDim: c.crossAttentionDim,
        groups,
        layers: c.transformerLayersPerBlock,
        linearProjection: c.useLinearProjection,
      });

    this.convIn = new Conv2d(w, "conv_in", { cin: c.inChannels, cout: ch[0], k: 3 });
    this.timeLinear1 = new Linear(w, "time_embedding.linear_1", { in: ch[0], out: temb });
    this.timeLinear2 = new Linear(w, "time_embedding.linear_2", { in: temb, out: temb });

    let out = ch[0];
    for (let i = 0; i < n; i++) {
      const inC = out;
      out = ch[i];
      const level: Level = { resnets: [], attentions: null, motions: null, resample: null };
      if (c.downBlockAttention[i]) level.attentions = [];
      if (m) level.motions = [];
      for (let j = 0; j < c.layersPerBlock; j++) {
        const p = `down_blocks.${i}`;
        level.resnets.push(
          new ResnetBlock2D(w, `${p}.resnets.${j}`, {
            cin: j === 0 ? inC : out,
            cout: out,
            tembChannels: temb,
            groups,
            eps,
          }),
        );
        level.attentions?.push(tf(`${p}.attentions.${j}`, out, c.attentionHeads[i]));
        const mod = mm(`${p}.motion_modules.${j}`, out);
        if (mod) level.motions!.push(mod);
      }
      if (i < n - 1) level.resample = new Downsample2D(w, `down_blocks.${i}.downsamplers.0`, out);
      this.down.push(level);
    }

    const top = ch[n - 1];
    const midRes = (j: number) =>
      new ResnetBlock2D(w, `mid_block.resnets.${j}`, {
        cin: top,
        cout: top,
        tembChannels: temb,
        groups,
        eps,
      });
    // Declared in the order of the file layout: resnet, attention, (motion), resnet.
    const mid0 = midRes(0);
    this.midAttention = c.midBlockAttention
      ? tf("mid_block.attentions.0", top, c.attentionHeads[n - 1])
      : null;
    this.midMotion = motion?.hasMidBlock ? mm("mid_block.motion_modules.0", top) : null;
    this.midResnets = [mid0, midRes(1)];

    const rev = [...ch].reverse();
    const revHeads = [...c.attentionHeads].reverse();
    out = rev[0];
    for (let i = 0; i < n; i++) {
      const prevOut = out;
      out = rev[i];
      const inC = rev[Math.min(i + 1, n - 1)];
      const level: Level = { resnets: [], attentions: null, motions: null, resample: null };
      if (c.upBlockAttention[i]) level.attentions = [];
      if (m) level.motions = [];
      const p = `up_blocks.${i}`;
      for (let j = 0; j <= c.layersPerBlock; j++) {
        const skip = j === c.layersPerBlock ? inC : out;
        const resIn = j === 0 ? prevOut : out;
        level.resnets.push(
          new ResnetBlock2D(w, `${p}.resnets.${j}`, {
            cin: resIn + skip,
            cout: out,
            tembChannels: temb,
            groups,
            eps,
          }),
        );
        level.attentions?.push(tf(`${p}.attentions.${j}`, out, revHeads[i]));
        // diffusers' UpBlockMotion (an up block without attention) builds its motion modules
        // with the default 32 GroupNorm groups whatever the config says; the reference does
        // this, so we do too (identical for real SD1.5 / AnimateDiff, where groups are 32).
        const motionGroups = c.upBlockAttention[i] || out % DEFAULT_NORM_GROUPS !== 0
          ? motion?.normGroups
          : DEFAULT_NORM_GROUPS;
        const mod = mm(`${p}.motion_modules.${j}`, out, motionGroups);
        if (mod) level.motions!.push(mod);
      }
      if (i < n - 1) level.resample = new Upsample2D(w, `${p}.upsamplers.0`, out);
      this.up.push(level);
    }
    this.normOut = new GroupNorm(w, "conv_norm_out", ch[0], groups, eps);
    this.convOut = new Conv2d(w, "conv_out", { cin: ch[0], cout: c.outChannels, k: 3 });
  }

  /** Every spatial transformer (Transformer2D), down blocks first, then the mid block's, then up. */
  get spatialTransformers(): Transformer2D[] {
    return this.#inOrder((l) => l.attentions, this.midAttention);
  }

  /** Every motion module, down blocks first, then the mid block's, then the up blocks'. */
  get motionModules(): MotionModule[] {
    return this.#inOrder((l) => l.motions, this.midMotion);
  }

  #inOrder<T>(pick: (l: Level) => T[] | null, mid: T | null): T[] {
    const of = (levels: Level[]) => levels.flatMap((l) => pick(l) ?? []);
    return [...of(this.down), ...(mid ? [mid] : []), ...of(this.up)];
  }

  /**
   * Noise prediction. sample [b*f, 4, h, w] (frames folded into the batch, video-major);
   * timestep: the scheduler's t, or one per video (training); context [b, 77, D] text
   * embeddings, or [b*f, 77, D] one per frame (prompt travel); `motion`: the motion scale and effect (default 1, 1). Returns [b*f, 4, h, w].
   */
  forward(
    gpu: Gpu,
    sample: Tensor,
    timestep: number | readonly number[],
    context: Tensor,
    frames: number,
    motion?: MotionControls,
  ): Tensor {
    const b = sample.shape[0] / frames;
    if (!Number.isInteger(b) || (context.shape[0] !== b && context.shape[0] !== b * frames)) {
      throw new Error(
        `unet: sample batch ${sample.shape[0]} and context batch ${context.shape[0]} do not ` +
          `make videos x ${frames} frames (one context per video or per frame)`,
      );
    }
    return gpu.scope(() => this.#forward(gpu, sample, timestep, context, frames, motion));
  }

  #forward(
    gpu: Gpu,
    sample: Tensor,
    timestep: number | readonly number[],
    context: Tensor,
    frames: number,
    motion?: MotionControls,
  ): Tensor {
    const b = sample.shape[0] / frames;
    const c = this.config;
    const original = this.fidelity === "original";
    const motionNorm: MotionNormMode = original ? "frame" : "clip";
    // The original AnimateDiff v1 UNet normalises its ResNets over all frames of a video.
    const span = original && this.motionConfig?.version === "v1";
    // Time embedding: [b, ch0] -> linear_1 + SiLU -> linear_2 -> SiLU (every resnet applies SiLU first).
    const timesteps = typeof timestep === "number" ? new Array(b).fill(timestep) : [...timestep];
    if (timesteps.length !== b) {
      throw new Error(`unet: ${timesteps.length} timesteps for ${b} videos`);
    }
    const tProj = timestepEmbedding(gpu, timesteps, c.blockOutChannels[0], {
      flipSinToCos: c.flipSinToCos,
      freqShift: c.freqShift,
      dtype: sample.dtype,
    });
    const emb = this.timeLinear2.forward(
      gpu,
      this.timeLinear1.forward(gpu, tProj, { activation: "silu" }),
    );
    const tembAct = unary(gpu, emb, "silu");
    // fn(...xs), as one recomputed op when training with checkpointing (see `checkpointing`)
    const tape = this.checkpointing && gpu.tape instanceof GradientTape ? gpu.tape : null;
    const block = (fn: (...xs: Tensor[]) => Tensor, xs: Tensor[]) =>
      tape ? tape.checkpoint(fn, xs) : fn(...xs);
    // resnet -> attention -> motion module of one layer of a level
    const layer = (level: Level, j: number, x: Tensor, temb: Tensor, ctx: Tensor) => {
      let h = level.resnets[j].forward(gpu, x, temb, frames, span);
      if (level.attentions) h = level.attentions[j].forward(gpu, h, ctx, frames);
      if (level.motions?.length) h = level.motions[j].forward(gpu, h, frames, motionNorm, motion);
      return h;
    };

    let h = this.convIn.forward(gpu, sample);
    const skips: Tensor[] = [h];
    for (const level of this.down) {
      for (let j = 0; j < level.resnets.length; j++) {
        skips.push(h = block((x, t, ctx) => layer(level, j, x, t, ctx), [h, tembAct, context]));
      }
      if (level.resample) skips.push(h = level.resample.forward(gpu, h));
    }

    const [mid0, mid1] = this.midResnets;
    h = block((x, t) => mid0.forward(gpu, x, t, frames, span), [h, tembAct]);
    const midAttention = this.midAttention, midMotion = this.midMotion;
    if (midAttention) {
      h = block((x, ctx) => midAttention.forward(gpu, x, ctx, frames), [h, context]);
    }
    if (midMotion) h = block((x) => midMotion.forward(gpu, x, frames, motionNorm, motion), [h]);
    h = block((x, t) => mid1.forward(gpu, x, t, frames, span), [h, tembAct]);

    for (const level of this.up) {
      for (let j = 0; j < level.resnets.length; j++) {
        // channel concat with the skip: [n, C, H, W] ++ [n, Cs, H, W] -> [n, C + Cs, H, W]
        const up = (x: Tensor, skip: Tensor, t: Tensor, ctx: Tensor) =>
          layer(level, j, concat(gpu, [x, skip], 1), t, ctx);
        h = block(up, [h, skips.pop()!, tembAct, context]);
      }
      if (level.resample) {
        // Upsample to the next skip's size (differs from 2x when a latent side is not a
        // multiple of 2^levels, as diffusers' upsample_size).
        const next = skips[skips.length - 1];
        h = (level.resample as Upsample2D).forward(gpu, h, [next.shape[2], next.shape[3]]);
      }
    }
    const normed = this.normOut.forward(gpu, h, { silu: true, frames: span ? frames : 1 });
    return this.convOut.forward(gpu, normed);
  }
}
