/**
 * AutoencoderKL (diffusers naming). Decoder: post_quant_conv, conv_in, mid block (resnet,
 * single-head attention, resnet), up blocks with nearest upsampling, GroupNorm+SiLU, conv_out.
 * Encoder: conv_in, down blocks with (0, 1, 0, 1)-padded stride-2 convs, mid block,
 * GroupNorm+SiLU, conv_out to mean and log-variance, quant_conv. Frames are a batch of images.
 * @module
 */

import type { Gpu } from "../../kernels/gpu/device.ts";
import type { Tensor } from "../../kernels/gpu/tensor.ts";
import type { VaeConfig } from "../../weights/model_config.ts";
import type { WeightStore } from "../weight_store.ts";
import { Conv2d, GroupNorm, ResnetBlock2D, Upsample2D } from "./layers.ts";
import { Attention } from "./attention.ts";
import { add } from "../../kernels/elementwise.ts";
import { permute, slice } from "../../kernels/layout.ts";
import { pad2d } from "../../kernels/resample.ts";

/** VAE mid-block attention: GroupNorm, one head over the H*W tokens, residual. */
class VaeAttention {
  readonly norm: GroupNorm;
  readonly attention: Attention;
  constructor(w: WeightStore, p: string, channels: number, groups: number, eps: number) {
    this.norm = new GroupNorm(w, `${p}.group_norm`, channels, groups, eps);
    this.attention = new Attention(w, p, { dim: channels, heads: 1, qkvBias: true });
  }

  /** x [n, C, H, W] -> same. */
  forward(gpu: Gpu, x: Tensor): Tensor {
    const [n, c, h, w] = x.shape;
    // [n, C, HW] -> [n, HW, C]
    const tokens = permute(gpu, this.norm.forward(gpu, x).reshape([n, c, h * w]), [0, 2, 1]);
    // [n, HW, C] -> [n, C, HW] + residual
    const back = permute(gpu, this.attention.forward(gpu, tokens), [0, 2, 1]);
    return add(gpu, back.reshape([n, c, h, w]), x);
  }
}

/** The VAE decoder. */
export class VaeDecoder {
  readonly config: VaeConfig;
  readonly postQuantConv: Conv2d | null;
  readonly convIn: Conv2d;
  readonly midResnets: [ResnetBlock2D, ResnetBlock2D];
  readonly midAttention: VaeAttention;
  readonly up: { resnets: ResnetBlock2D[]; upsampler: Upsample2D | null }[] = [];
  readonly normOut: GroupNorm;
  readonly convOut: Conv2d;

  constructor(w: WeightStore, config: VaeConfig) {
    this.config = config;
    const ch = config.blockOutChannels;
    const n = ch.length;
    const g = config.normGroups, eps = config.normEps;
    const lat = config.latentChannels;
    this.postQuantConv = config.hasQuantConv
      ? new Conv2d(w, "post_quant_conv", { cin: lat, cout: lat, k: 1 })
      : null;
    const top = ch[n - 1];
    this.convIn = new Conv2d(w, "decoder.conv_in", { cin: lat, cout: top, k: 3 });
    const res = (p: string, cin: number, cout: number) =>
      new ResnetBlock2D(w, p, { cin, cout, tembChannels: null, groups: g, eps });
    // Declared in the order of the file layout: resnet, attention, resnet.
    const mid0 = res("decoder.mid_block.resnets.0", top, top);
    this.midAttention = new VaeAttention(w, "decoder.mid_block.attentions.0", top, g, eps);
    this.midResnets = [mid0, res("decoder.mid_block.resnets.1", top, top)];
    const rev = [...ch].reverse();
    let out = rev[0];
    for (let i = 0; i < n; i++) {
      const prev = out;
      out = rev[i];
      const resnets: ResnetBlock2D[] = [];
      for (let j = 0; j <= config.layersPerBlock; j++) {
        resnets.push(res(`decoder.up_blocks.${i}.resnets.${j}`, j === 0 ? prev : out, out));
      }
      const upsampler = i < n - 1
        ? new Upsample2D(w, `decoder.up_blocks.${i}.upsamplers.0`, out)
        : null;
      this.up.push({ resnets, upsampler });
    }
    this.normOut = new GroupNorm(w, "decoder.conv_norm_out", ch[0], g, eps);
    this.convOut = new Conv2d(w, "decoder.conv_out", { cin: ch[0], cout: 3, k: 3 });
  }

  /** z [n, latent, h, w] (already divided by the scaling factor) -> images [n, 3, 8h, 8w] in [-1, 1]-ish. */
  forward(gpu: Gpu, z: Tensor): Tensor {
    return gpu.scope(() => {
      let h = this.postQuantConv ? this.postQuantConv.forward(gpu, z) : z;
      h = this.convIn.forward(gpu, h);
      h = this.midResnets[0].forward(gpu, h, null);
      h = this.midAttention.forward(gpu, h);
      h = this.midResnets[1].forward(gpu, h, null);
      for (const level of this.up) {
        for (const r of level.resnets) h = r.forward(gpu, h, null);
        if (level.upsampler) h = level.upsampler.forward(gpu, h);
      }
      return this.convOut.forward(gpu, this.normOut.forward(gpu, h, { silu: true }));
    });
  }
}

/** Encoder downsampling: zero pad right and bottom by one, then a 3x3 stride-2 conv. */
class EncoderDownsample {
  readonly conv: Conv2d;
  constructor(w: WeightStore, prefix: string, channels: number) {
    this.conv = new Conv2d(w, `${prefix}.conv`, {
      cin: channels,
      cout: channels,
      k: 3,
      stride: 2,
      padding: 0,
    });
  }
  forward(gpu: Gpu, x: Tensor): Tensor {
    return this.conv.forward(gpu, pad2d(gpu, x, { top: 0, bottom: 1, left: 0, right: 1 }));
  }
}

/** The VAE encoder: images in [-1, 1] -> diagonal Gaussian posterior over latents. */
export class VaeEncoder {
  readonly config: VaeConfig;
  readonly convIn: Conv2d;
  readonly down: { resnets: ResnetBlock2D[]; downsampler: EncoderDownsample | null }[] = [];
  readonly midResnets: [ResnetBlock2D, ResnetBlock2D];
  readonly midAttention: VaeAttention;
  readonly normOut: GroupNorm;
  readonly convOut: Conv2d;
  readonly quantConv: Conv2d | null;

  constructor(w: WeightStore, config: VaeConfig) {
    this.config = config;
    const ch = config.blockOutChannels;
    const n = ch.length;
    const g = config.normGroups, eps = config.normEps;
    const lat = config.latentChannels;
    const res = (p: string, cin: number, cout: number) =>
      new ResnetBlock2D(w, p, { cin, cout, tembChannels: null, groups: g, eps });
    this.convIn = new Conv2d(w, "encoder.conv_in", { cin: config.inChannels, cout: ch[0], k: 3 });
    let out = ch[0];
    for (let i = 0; i < n; i++) {
      const inC = out;
      out = ch[i];
      const resnets: ResnetBlock2D[] = [];
      for (let j = 0; j < config.layersPerBlock; j++) {
        resnets.push(res(`encoder.down_blocks.${i}.resnets.${j}`, j === 0 ? inC : out, out));
      }
      const downsampler = i < n - 1
        ? new EncoderDownsample(w, `encoder.down_blocks.${i}.downsamplers.0`, out)
        : null;
      this.down.push({ resnets, downsampler });
    }
    const top = ch[n - 1];
    // Declared in the order of the file layout: resnet, attention, resnet.
    const mid0 = res("encoder.mid_block.resnets.0", top, top);
    this.midAttention = new VaeAttention(w, "encoder.mid_block.attentions.0", top, g, eps);
    this.midResnets = [mid0, res("encoder.mid_block.resnets.1", top, top)];
    this.normOut = new GroupNorm(w, "encoder.conv_norm_out", top, g, eps);
    this.convOut = new Conv2d(w, "encoder.conv_out", { cin: top, cout: 2 * lat, k: 3 });
    this.quantConv = config.hasQuantConv
      ? new Conv2d(w, "quant_conv", { cin: 2 * lat, cout: 2 * lat, k: 1 })
      : null;
  }

  /**
   * x [n, 3, H, W] -> { mean, logvar } each [n, latent, H/8, W/8] (logvar clamped to
   * [-30, 20] is the caller's job on the CPU side: std = exp(0.5 * clamp(logvar))).
   */
  forward(gpu: Gpu, x: Tensor): { mean: Tensor; logvar: Tensor } {
    return gpu.scope(() => {
      const h = this.#moments(gpu, x);
      const lat = this.config.latentChannels;
      // [n, 2*latent, h, w] -> mean = channels [0, latent), logvar = [latent, 2*latent)
      return { mean: slice(gpu, h, 1, 0, lat), logvar: slice(gpu, h, 1, lat, 2 * lat) };
    });
  }

  /** x [n, 3, H, W] -> the posterior's moments [n, 2 * latent, H/8, W/8] = (mean, logvar). */
  moments(gpu: Gpu, x: Tensor): Tensor {
    return gpu.scope(() => this.#moments(gpu, x));
  }

  #moments(gpu: Gpu, x: Tensor): Tensor {
    let h = this.convIn.forward(gpu, x);
    for (const level of this.down) {
      for (const r of level.resnets) h = r.forward(gpu, h, null);
      if (level.downsampler) h = level.downsampler.forward(gpu, h);
    }
    h = this.midResnets[0].forward(gpu, h, null);
    h = this.midAttention.forward(gpu, h);
    h = this.midResnets[1].forward(gpu, h, null);
    h = this.convOut.forward(gpu, this.normOut.forward(gpu, h, { silu: true }));
    return this.quantConv ? this.quantConv.forward(gpu, h) : h;
  }
}
