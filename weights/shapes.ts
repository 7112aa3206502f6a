/**
 * Canonical (diffusers-named) tensor shapes implied by a model config: the inverse of the shape
 * inference in detect.ts. The strict loader checks files against these; the tiny-model generator
 * fills them with values.
 * @module
 */

import type { ClipConfig, MotionConfig, UNetConfig, VaeConfig } from "./model_config.ts";

/** Canonical tensor name -> shape. */
export type ShapeMap = Map<string, number[]>;

function linear(m: ShapeMap, name: string, out: number, inp: number, bias = true): void {
  m.set(`${name}.weight`, [out, inp]);
  if (bias) m.set(`${name}.bias`, [out]);
}
function conv(m: ShapeMap, name: string, out: number, inp: number, k: number): void {
  m.set(`${name}.weight`, [out, inp, k, k]);
  m.set(`${name}.bias`, [out]);
}
function norm(m: ShapeMap, name: string, c: number): void {
  m.set(`${name}.weight`, [c]);
  m.set(`${name}.bias`, [c]);
}
function resnet(m: ShapeMap, name: string, inp: number, out: number, temb: number): void {
  norm(m, `${name}.norm1`, inp);
  conv(m, `${name}.conv1`, out, inp, 3);
  if (temb > 0) linear(m, `${name}.time_emb_proj`, out, temb);
  norm(m, `${name}.norm2`, out);
  conv(m, `${name}.conv2`, out, out, 3);
  if (inp !== out) conv(m, `${name}.conv_shortcut`, out, inp, 1);
}
function attention(m: ShapeMap, name: string, c: number, kv: number): void {
  linear(m, `${name}.to_q`, c, c, false);
  linear(m, `${name}.to_k`, c, kv, false);
  linear(m, `${name}.to_v`, c, kv, false);
  linear(m, `${name}.to_out.0`, c, c);
}
function feedForward(m: ShapeMap, name: string, c: number): void {
  linear(m, `${name}.net.0.proj`, 8 * c, c); // GEGLU: inner 4C, doubled for the gate
  linear(m, `${name}.net.2`, c, 4 * c);
}
function spatialTransformer(m: ShapeMap, name: string, c: number, cfg: UNetConfig): void {
  norm(m, `${name}.norm`, c);
  const proj = (p: string) => cfg.useLinearProjection ? linear(m, p, c, c) : conv(m, p, c, c, 1);
  proj(`${name}.proj_in`);
  for (let t = 0; t < cfg.transformerLayersPerBlock; t++) {
    const b = `${name}.transformer_blocks.${t}`;
    norm(m, `${b}.norm1`, c);
    attention(m, `${b}.attn1`, c, c);
    norm(m, `${b}.norm2`, c);
    attention(m, `${b}.attn2`, c, cfg.crossAttentionDim);
    norm(m, `${b}.norm3`, c);
    feedForward(m, `${b}.ff`, c);
  }
  proj(`${name}.proj_out`);
}

/**
 * Every tensor of a diffusers UNet2DConditionModel with this config, with its shape.
 * @example
 * ```ts
 * unetShapes(config).get("conv_in.weight"); // [C0, 4, 3, 3]
 * ```
 */
export function unetShapes(cfg: UNetConfig): ShapeMap {
  const m: ShapeMap = new Map();
  const ch = cfg.blockOutChannels, levels = ch.length, t = cfg.timeEmbeddingDim;
  conv(m, "conv_in", ch[0], cfg.inChannels, 3);
  linear(m, "time_embedding.linear_1", t, ch[0]);
  linear(m, "time_embedding.linear_2", t, t);
  for (let i = 0; i < levels; i++) {
    const inp = i === 0 ? ch[0] : ch[i - 1], out = ch[i];
    for (let j = 0; j < cfg.layersPerBlock; j++) {
      resnet(m, `down_blocks.${i}.resnets.${j}`, j === 0 ? inp : out, out, t);
      if (cfg.downBlockAttention[i]) {
        spatialTransformer(m, `down_blocks.${i}.attentions.${j}`, out, cfg);
      }
    }
    if (i < levels - 1) conv(m, `down_blocks.${i}.downsamplers.0.conv`, out, out, 3);
  }
  const last = ch[levels - 1];
  resnet(m, "mid_block.resnets.0", last, last, t);
  if (cfg.midBlockAttention) spatialTransformer(m, "mid_block.attentions.0", last, cfg);
  resnet(m, "mid_block.resnets.1", last, last, t);
  const rev = [...ch].reverse();
  for (let i = 0; i < levels; i++) {
    const prev = i === 0 ? rev[0] : rev[i - 1],
      out = rev[i],
      inp = rev[Math.min(i + 1, levels - 1)];
    for (let j = 0; j <= cfg.layersPerBlock; j++) {
      const skip = j === cfg.layersPerBlock ? inp : out;
      resnet(m, `up_blocks.${i}.resnets.${j}`, (j === 0 ? prev : out) + skip, out, t);
      if (cfg.upBlockAttention[i]) {
        spatialTransformer(m, `up_blocks.${i}.attentions.${j}`, out, cfg);
      }
    }
    if (i < levels - 1) conv(m, `up_blocks.${i}.upsamplers.0.conv`, out, out, 3);
  }
  norm(m, "conv_norm_out", ch[0]);
  conv(m, "conv_out", cfg.outChannels, ch[0], 3);
  return m;
}

function vaeMid(m: ShapeMap, side: string, c: number): void {
  resnet(m, `${side}.mid_block.resnets.0`, c, c, 0);
  norm(m, `${side}.mid_block.attentions.0.group_norm`, c);
  for (const p of ["to_q", "to_k", "to_v", "to_out.0"]) {
    linear(m, `${side}.mid_block.attentions.0.${p}`, c, c);
  }
  resnet(m, `${side}.mid_block.resnets.1`, c, c, 0);
}

/** Every tensor of a diffusers AutoencoderKL with this config, with its shape. */
export function vaeShapes(cfg: VaeConfig): ShapeMap {
  const m: ShapeMap = new Map();
  const ch = cfg.blockOutChannels,
    levels = ch.length,
    last = ch[levels - 1],
    lat = cfg.latentChannels;
  conv(m, "encoder.conv_in", ch[0], cfg.inChannels, 3);
  for (let i = 0; i < levels; i++) {
    const inp = i === 0 ? ch[0] : ch[i - 1];
    for (let j = 0; j < cfg.layersPerBlock; j++) {
      resnet(m, `encoder.down_blocks.${i}.resnets.${j}`, j === 0 ? inp : ch[i], ch[i], 0);
    }
    if (i < levels - 1) conv(m, `encoder.down_blocks.${i}.downsamplers.0.conv`, ch[i], ch[i], 3);
  }
  vaeMid(m, "encoder", last);
  norm(m, "encoder.conv_norm_out", last);
  conv(m, "encoder.conv_out", 2 * lat, last, 3);
  if (cfg.hasQuantConv) {
    conv(m, "quant_conv", 2 * lat, 2 * lat, 1);
    conv(m, "post_quant_conv", lat, lat, 1);
  }
  conv(m, "decoder.conv_in", last, lat, 3);
  vaeMid(m, "decoder", last);
  const rev = [...ch].reverse();
  for (let i = 0; i < levels; i++) {
    const prev = i === 0 ? rev[0] : rev[i - 1];
    for (let j = 0; j <= cfg.layersPerBlock; j++) {
      resnet(m, `decoder.up_blocks.${i}.resnets.${j}`, j === 0 ? prev : rev[i], rev[i], 0);
    }
    if (i < levels - 1) conv(m, `decoder.up_blocks.${i}.upsamplers.0.conv`, rev[i], rev[i], 3);
  }
  norm(m, "decoder.conv_norm_out", ch[0]);
  conv(m, "decoder.conv_out", cfg.inChannels, ch[0], 3);
  return m;
}

/** Every tensor of a transformers CLIPTextModel with this config, with its shape. */
export function clipShapes(cfg: ClipConfig): ShapeMap {
  const m: ShapeMap = new Map();
  const h = cfg.hiddenSize;
  m.set("text_model.embeddings.token_embedding.weight", [cfg.vocabSize, h]);
  m.set("text_model.embeddings.position_embedding.weight", [cfg.maxPositions, h]);
  for (let l = 0; l < cfg.layers; l++) {
    const p = `text_model.encoder.layers.${l}`;
    norm(m, `${p}.layer_norm1`, h);
    for (const q of ["q_proj", "k_proj", "v_proj", "out_proj"]) {
      linear(m, `${p}.self_attn.${q}`, h, h);
    }
    norm(m, `${p}.layer_norm2`, h);
    linear(m, `${p}.mlp.fc1`, cfg.intermediateSize, h);
    linear(m, `${p}.mlp.fc2`, h, cfg.intermediateSize);
  }
  norm(m, "text_model.final_layer_norm", h);
  return m;
}

function motionModule(m: ShapeMap, name: string, c: number, cfg: MotionConfig): void {
  norm(m, `${name}.norm`, c);
  linear(m, `${name}.proj_in`, c, c);
  for (let t = 0; t < cfg.transformerLayers; t++) {
    const b = `${name}.transformer_blocks.${t}`;
    norm(m, `${b}.norm1`, c);
    attention(m, `${b}.attn1`, c, c);
    norm(m, `${b}.norm2`, c);
    attention(m, `${b}.attn2`, c, c);
    norm(m, `${b}.norm3`, c);
    feedForward(m, `${b}.ff`, c);
    m.set(`${b}.pos_embed.pe`, [1, cfg.maxSeqLength, c]);
  }
  linear(m, `${name}.proj_out`, c, c);
}

/** Every tensor of a diffusers MotionAdapter with this config, with its shape. */
export function motionShapes(cfg: MotionConfig): ShapeMap {
  const m: ShapeMap = new Map();
  const ch = cfg.blockOutChannels, rev = [...ch].reverse();
  ch.forEach((c, i) => {
    for (let j = 0; j < cfg.layersPerBlock; j++) {
      motionModule(m, `down_blocks.${i}.motion_modules.${j}`, c, cfg);
    }
  });
  if (cfg.hasMidBlock) motionModule(m, "mid_block.motion_modules.0", ch[ch.length - 1], cfg);
  rev.forEach((c, i) => {
    for (let j = 0; j <= cfg.layersPerBlock; j++) {
      motionModule(m, `up_blocks.${i}.motion_modules.${j}`, c, cfg);
    }
  });
  return m;
}
