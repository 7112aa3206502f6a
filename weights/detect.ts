/**
 * What a weights file or folder is (SD1.5 checkpoint, diffusers folder, motion module, LoRA), and
 * model configs inferred from canonical tensor SHAPES. What shapes cannot tell (GroupNorm groups,
 * head counts, eps, activation) comes from overrides read from diffusers config.json files, else
 * the standard SD1.5 / AnimateDiff defaults.
 * @module
 */

import {
  type ClipConfig,
  DEFAULT_ATTENTION_HEADS,
  DEFAULT_NORM_GROUPS,
  type MotionConfig,
  SD15_VAE_SCALING_FACTOR,
  type UNetConfig,
  type VaeConfig,
} from "./model_config.ts";
import type { TensorMap } from "./types.ts";
import { parseLoraKey, stripWrapperPrefix } from "./names.ts";
import { checkpointFamily, diffusersFamily, type ShapeSource } from "./family.ts";
import { InputError } from "../kernels/gpu/errors.ts";

/**
 * What a weights file or folder holds.
 *
 * @example
 * ```ts
 * import { inspectWeights, type WeightsKind } from "@zoetrope/animatediff";
 *
 * const kind: WeightsKind = (await inspectWeights("models/loras/toy.safetensors")).kind;
 * if (kind !== "lora-kohya" && kind !== "lora-diffusers") throw new InputError("not a LoRA");
 * ```
 */
export type WeightsKind =
  | "sd15-checkpoint"
  | "sd15-inpainting-checkpoint"
  | "instruct-pix2pix-checkpoint"
  | "sd2-checkpoint"
  | "sdxl-checkpoint"
  | "diffusers-model"
  | "sd15-inpainting-diffusers-model"
  | "instruct-pix2pix-diffusers-model"
  | "sd2-diffusers-model"
  | "sdxl-diffusers-model"
  | "motion-module"
  | "motion-adapter"
  | "lora-kohya"
  | "lora-diffusers"
  | "motion-lora"
  | "unknown";

/** Human wording of each kind, for one-line errors. */
export const KIND_DESCRIPTIONS: Record<WeightsKind, string> = {
  "sd15-checkpoint": "an SD1.5 single-file checkpoint",
  "sd15-inpainting-checkpoint": "an SD1.5 inpainting checkpoint",
  "instruct-pix2pix-checkpoint": "an InstructPix2Pix checkpoint",
  "sd2-checkpoint": "an SD 2.x checkpoint",
  "sdxl-checkpoint": "an SDXL checkpoint",
  "diffusers-model": "a diffusers model (folder or component file)",
  "sd15-inpainting-diffusers-model": "an SD1.5 inpainting diffusers model",
  "instruct-pix2pix-diffusers-model": "an InstructPix2Pix diffusers model",
  "sd2-diffusers-model": "an SD 2.x diffusers model",
  "sdxl-diffusers-model": "an SDXL diffusers model",
  "motion-module": "an AnimateDiff motion module",
  "motion-adapter": "a diffusers MotionAdapter",
  "lora-kohya": "a kohya LoRA",
  "lora-diffusers": "a diffusers/peft LoRA",
  "motion-lora": "an AnimateDiff MotionLoRA",
  "unknown": "an unrecognised weights file",
};

const MOTION_NAME = /^(down_blocks\.\d+|up_blocks\.\d+|mid_block)\.motion_modules\.\d+\./;
const CLIP_LAYER_NORM_EPS = 1e-5;
const UNET_NORM_EPS = 1e-5;
const VAE_NORM_EPS = 1e-6;
const CLIP_HEAD_DIM = 64;
const CLIP_L_HIDDEN = 768;
const CLIP_L_HEADS = 12;
/** Transformers' legacy CLIP configs say eos_token_id 2; the real end token is the last id. */
const LEGACY_CLIP_EOS = 2;
const V1_MAX_SEQ = 24;
const V2_MAX_SEQ = 32;

/** Base-model kinds: a model of one of them loads (SD1.5) or is refused naming its family. */
export const BASE_MODEL_KINDS: readonly WeightsKind[] = [
  "sd15-checkpoint",
  "sd15-inpainting-checkpoint",
  "instruct-pix2pix-checkpoint",
  "sd2-checkpoint",
  "sdxl-checkpoint",
  "diffusers-model",
  "sd15-inpainting-diffusers-model",
  "instruct-pix2pix-diffusers-model",
  "sd2-diffusers-model",
  "sdxl-diffusers-model",
];

/**
 * Classifies a file by its tensor names; given the tensors (a map name -> tensor or shape), an
 * SD checkpoint's shapes also tell its family (inpainting, InstructPix2Pix, SD 2.x, SDXL).
 * @example
 * ```ts
 * detectKind(["lora_unet_mid_block_attentions_0_proj_in.alpha"]); // "lora-kohya"
 * detectKind(file.tensors); // e.g. "sd15-inpainting-checkpoint"
 * ```
 */
export function detectKind(tensors: Iterable<string> | ShapeSource): WeightsKind {
  const shapes = tensors instanceof Map ? tensors as ShapeSource : new Map<string, number[]>();
  const kind = detectLayout(tensors instanceof Map ? shapes.keys() : tensors as Iterable<string>);
  if (kind === "sd15-checkpoint") {
    const other = checkpointFamily(shapes);
    return other ? `${other.family}-checkpoint` : kind;
  }
  if (kind === "diffusers-model") {
    const other = diffusersFamily(shapes);
    return other ? `${other.family}-diffusers-model` : kind;
  }
  return kind;
}

function detectLayout(tensorNames: Iterable<string>): WeightsKind {
  const names = [...tensorNames].map(stripWrapperPrefix);
  if (names.length === 0) return "unknown";
  const lora = names.map(parseLoraKey).filter((k) => k !== null);
  // A LoRA whose every module is in a motion module: AnimateDiff's MotionLoRA.
  const motionOnly = lora.length > 0 && lora.every((k) => k.module.includes("motion_modules"));
  if (names.some((n) => /^lora_(unet|te\d?)_/.test(n))) {
    return motionOnly ? "motion-lora" : "lora-kohya";
  }
  if (lora.some((k) => k.role !== "alpha")) return motionOnly ? "motion-lora" : "lora-diffusers";
  if (
    names.some((n) =>
      /^(model\.diffusion_model|first_stage_model|cond_stage_model|conditioner)\./.test(n)
    )
  ) {
    return "sd15-checkpoint";
  }
  const motion = names.filter((n) => MOTION_NAME.test(n));
  if (motion.length > 0 && motion.length === names.length) {
    return motion.some((n) => n.includes(".temporal_transformer."))
      ? "motion-module"
      : "motion-adapter";
  }
  if (names.some((n) => /^(conv_in|down_blocks|encoder|decoder|text_model)\./.test(n))) {
    return "diffusers-model";
  }
  return "unknown";
}

// ---------------------------------------------------------------------------------------------
// Overrides read from diffusers / transformers config.json

/** What a UNet's config.json adds to shape inference. */
export type UNetOverrides = Partial<UNetConfig>;
/** What a VAE's config.json adds to shape inference. */
export type VaeOverrides = Partial<VaeConfig>;
/** What a text encoder's config.json adds to shape inference. */
export type ClipOverrides = Partial<ClipConfig>;
/** What a MotionAdapter config.json adds to shape inference. */
export type MotionOverrides = Partial<MotionConfig>;

type Json = Record<string, unknown>;

/** Largest head / group count a config may give (SD uses 8 to 32). */
const MAX_CONFIG_COUNT = 4096;
/** Longest motion-module position table a config may ask us to build (AnimateDiff: 24, 32). */
const MAX_MOTION_SEQ_LENGTH = 1024;

function badValue(key: string, expected: string, v: unknown): InputError {
  const shown = typeof v === "string"
    ? JSON.stringify(v.slice(0, 40))
    : Array.isArray(v)
    ? "a list"
    : typeof v === "object"
    ? "an object"
    : String(v);
  return new InputError(`${key} must be ${expected}, got ${shown}`);
}

/** A number the config may give (null or absent: undefined); `check` says what is allowed. */
function num(
  json: Json,
  key: string,
  check: "count" | "positive" | "finite" | "index" = "finite",
  max = MAX_CONFIG_COUNT,
): number | undefined {
  const v = json[key];
  if (v === undefined || v === null) return undefined;
  const ok = typeof v === "number" && Number.isFinite(v) && (
    check === "finite" ||
    (check === "positive" && v > 0) ||
    (check === "count" && Number.isInteger(v) && v >= 1 && v <= max) ||
    (check === "index" && Number.isInteger(v) && v >= 0)
  );
  if (!ok) {
    const expected = check === "count"
      ? `an integer from 1 to ${max}`
      : check === "positive"
      ? "a positive number"
      : check === "index"
      ? "an integer >= 0"
      : "a number";
    throw badValue(key, expected, v);
  }
  return v as number;
}

function perLevel(key: string, v: unknown, levels: number | undefined): number[] | undefined {
  if (v === undefined || v === null) return undefined;
  const list = Array.isArray(v) ? v : [v];
  const isCount = (x: unknown) =>
    typeof x === "number" && Number.isInteger(x) && x >= 1 && x <= MAX_CONFIG_COUNT;
  if (list.length === 0 || !list.every(isCount)) {
    throw badValue(key, `an integer from 1 to ${MAX_CONFIG_COUNT} or a list of them`, v);
  }
  return !Array.isArray(v) && levels ? new Array(levels).fill(v) : list as number[];
}

function defined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/**
 * Reads a diffusers UNet2DConditionModel config.json. NB diffusers' legacy naming: for SD1.5
 * `attention_head_dim` is the NUMBER of heads (used when `num_attention_heads` is null).
 * @example
 * ```ts
 * diffusersUNetOverrides({ attention_head_dim: 8, norm_num_groups: 32 }).attentionHeads; // [8]
 * ```
 */
export function diffusersUNetOverrides(json: Json): UNetOverrides {
  const levels = Array.isArray(json.block_out_channels)
    ? json.block_out_channels.length
    : undefined;
  const headsKey = json.num_attention_heads != null ? "num_attention_heads" : "attention_head_dim";
  const heads = perLevel(headsKey, json[headsKey], levels);
  return defined({
    attentionHeads: heads,
    normGroups: num(json, "norm_num_groups", "count"),
    normEps: num(json, "norm_eps", "positive"),
    flipSinToCos: typeof json.flip_sin_to_cos === "boolean" ? json.flip_sin_to_cos : undefined,
    freqShift: num(json, "freq_shift"),
  });
}

/** Reads a diffusers AutoencoderKL config.json. */
export function diffusersVaeOverrides(json: Json): VaeOverrides {
  return defined({
    normGroups: num(json, "norm_num_groups", "count"),
    scalingFactor: num(json, "scaling_factor", "positive"),
  });
}

/** Reads a transformers CLIPTextModel config.json. */
export function diffusersClipOverrides(json: Json): ClipOverrides {
  const act = json.hidden_act;
  const eos = num(json, "eos_token_id", "index");
  return defined({
    heads: num(json, "num_attention_heads", "count"),
    layerNormEps: num(json, "layer_norm_eps", "positive"),
    hiddenAct: act === "quick_gelu" || act === "gelu" ? act : undefined,
    eosTokenId: eos === LEGACY_CLIP_EOS ? undefined : eos,
  });
}

/** Reads a diffusers MotionAdapter config.json (or a UNetMotionModel config). */
export function diffusersMotionOverrides(json: Json): MotionOverrides {
  return defined({
    heads: num(json, "motion_num_attention_heads", "count"),
    normGroups: num(json, "motion_norm_num_groups", "count"),
    maxSeqLength: num(json, "motion_max_seq_length", "count", MAX_MOTION_SEQ_LENGTH),
  });
}

// ---------------------------------------------------------------------------------------------
// Inference from shapes

function shapeOf(t: TensorMap, name: string, what: string): readonly number[] {
  const x = t.get(name);
  if (!x) throw new InputError(`${what}: expected tensor ${name} (not found)`);
  return x.shape;
}

function countIndices(t: TensorMap, prefix: string): number {
  const re = new RegExp("^" + prefix.replaceAll(".", "\\.") + "(\\d+)\\.");
  let n = 0;
  for (const k of t.keys()) {
    const m = re.exec(k);
    if (m) n = Math.max(n, Number(m[1]) + 1);
  }
  return n;
}

function hasPrefix(t: TensorMap, prefix: string): boolean {
  for (const k of t.keys()) if (k.startsWith(prefix)) return true;
  return false;
}

function checkGroups(what: string, groups: number, channels: number[]): void {
  for (const c of channels) {
    if (c % groups !== 0) {
      throw new InputError(
        `${what}: GroupNorm with ${groups} groups does not divide ${c} channels; give the diffusers ` +
          `config folder with norm_num_groups (--model-config; --config for deno task weights)`,
      );
    }
  }
}

/**
 * Infers a UNetConfig from canonical UNet tensors.
 * @example
 * ```ts
 * const config = inferUNetConfig(model.unet, { normGroups: 8 });
 * ```
 */
export function inferUNetConfig(unet: TensorMap, overrides: UNetOverrides = {}): UNetConfig {
  const what = "UNet config";
  const levels = countIndices(unet, "down_blocks.");
  if (levels === 0) throw new InputError(`${what}: expected down_blocks.N.* tensors (none found)`);
  const blockOutChannels: number[] = [];
  for (let i = 0; i < levels; i++) {
    blockOutChannels.push(shapeOf(unet, `down_blocks.${i}.resnets.0.conv1.weight`, what)[0]);
  }
  const downBlockAttention = blockOutChannels.map((_, i) =>
    hasPrefix(unet, `down_blocks.${i}.attentions.`)
  );
  const upBlockAttention = blockOutChannels.map((_, i) =>
    hasPrefix(unet, `up_blocks.${i}.attentions.`)
  );
  const firstAttention = [...unet.keys()].find((k) => /attentions\.\d+\.proj_in\.weight$/.test(k));
  const firstAttn2 = [...unet.keys()].find((k) => k.endsWith("attn2.to_k.weight"));
  const crossAttentionDim = firstAttn2 ? shapeOf(unet, firstAttn2, what)[1] : 0;
  const transformerLayersPerBlock = firstAttention
    ? countIndices(unet, firstAttention.replace(/proj_in\.weight$/, "transformer_blocks."))
    : 1;
  const heads = overrides.attentionHeads ?? [DEFAULT_ATTENTION_HEADS];
  const attentionHeads = blockOutChannels.map((_, i) => heads[Math.min(i, heads.length - 1)]);
  const config: UNetConfig = {
    inChannels: shapeOf(unet, "conv_in.weight", what)[1],
    outChannels: shapeOf(unet, "conv_out.weight", what)[0],
    blockOutChannels,
    layersPerBlock: countIndices(unet, "down_blocks.0.resnets."),
    downBlockAttention,
    upBlockAttention,
    midBlockAttention: hasPrefix(unet, "mid_block.attentions."),
    crossAttentionDim,
    attentionHeads,
    transformerLayersPerBlock,
    normGroups: overrides.normGroups ?? DEFAULT_NORM_GROUPS,
    normEps: overrides.normEps ?? UNET_NORM_EPS,
    useLinearProjection: firstAttention ? shapeOf(unet, firstAttention, what).length === 2 : false,
    flipSinToCos: overrides.flipSinToCos ?? true,
    freqShift: overrides.freqShift ?? 0,
    timeEmbeddingDim: shapeOf(unet, "time_embedding.linear_1.weight", what)[0],
  };
  checkGroups(what, config.normGroups, blockOutChannels);
  blockOutChannels.forEach((c, i) => {
    if ((downBlockAttention[i] || upBlockAttention[i]) && c % attentionHeads[i] !== 0) {
      throw new InputError(
        `${what}: ${attentionHeads[i]} attention heads do not divide ${c} channels (level ${i})`,
      );
    }
  });
  return config;
}

/** Infers a VaeConfig from canonical AutoencoderKL tensors. */
export function inferVaeConfig(vae: TensorMap, overrides: VaeOverrides = {}): VaeConfig {
  const what = "VAE config";
  const levels = countIndices(vae, "encoder.down_blocks.");
  if (levels === 0) {
    throw new InputError(`${what}: expected encoder.down_blocks.N.* tensors (none found)`);
  }
  const blockOutChannels: number[] = [];
  for (let i = 0; i < levels; i++) {
    blockOutChannels.push(shapeOf(vae, `encoder.down_blocks.${i}.resnets.0.conv2.weight`, what)[0]);
  }
  const config: VaeConfig = {
    inChannels: shapeOf(vae, "encoder.conv_in.weight", what)[1],
    latentChannels: shapeOf(vae, "decoder.conv_in.weight", what)[1],
    blockOutChannels,
    layersPerBlock: countIndices(vae, "encoder.down_blocks.0.resnets."),
    normGroups: overrides.normGroups ?? DEFAULT_NORM_GROUPS,
    normEps: overrides.normEps ?? VAE_NORM_EPS,
    scalingFactor: overrides.scalingFactor ?? SD15_VAE_SCALING_FACTOR,
    hasQuantConv: vae.has("quant_conv.weight"),
  };
  checkGroups(what, config.normGroups, blockOutChannels);
  return config;
}

/** Infers a ClipConfig from canonical `text_model.*` tensors. */
export function inferClipConfig(textEncoder: TensorMap, overrides: ClipOverrides = {}): ClipConfig {
  const what = "text encoder config";
  const [vocabSize, hiddenSize] = shapeOf(
    textEncoder,
    "text_model.embeddings.token_embedding.weight",
    what,
  );
  const layers = countIndices(textEncoder, "text_model.encoder.layers.");
  const heads = overrides.heads ??
    (hiddenSize === CLIP_L_HIDDEN
      ? CLIP_L_HEADS
      : Math.max(1, Math.floor(hiddenSize / CLIP_HEAD_DIM)));
  if (hiddenSize % heads !== 0) {
    throw new InputError(`${what}: ${heads} heads do not divide hidden size ${hiddenSize}`);
  }
  return {
    vocabSize,
    hiddenSize,
    intermediateSize: shapeOf(textEncoder, "text_model.encoder.layers.0.mlp.fc1.weight", what)[0],
    layers,
    heads,
    maxPositions: shapeOf(textEncoder, "text_model.embeddings.position_embedding.weight", what)[0],
    layerNormEps: overrides.layerNormEps ?? CLIP_LAYER_NORM_EPS,
    hiddenAct: overrides.hiddenAct ?? "quick_gelu",
    eosTokenId: overrides.eosTokenId ?? vocabSize - 1,
  };
}

/**
 * The version of a motion module from MotionAdapter-named tensors alone: v1 = position table of
 * 24 and no mid block, v2 = a mid-block module, v3 = length 32 without one. It reads no GroupNorm
 * or head settings, so it answers even for a module whose config cannot be inferred.
 */
export function motionVersion(
  motion: TensorMap,
  overrides: MotionOverrides = {},
): { version: MotionConfig["version"]; hasMidBlock: boolean; maxSeqLength: number } {
  const hasMidBlock = hasPrefix(motion, "mid_block.motion_modules.");
  const pe = motion.get("down_blocks.0.motion_modules.0.transformer_blocks.0.pos_embed.pe");
  const maxSeqLength = pe?.shape[1] ?? overrides.maxSeqLength ??
    (hasMidBlock ? V2_MAX_SEQ : V1_MAX_SEQ);
  const version = maxSeqLength <= V1_MAX_SEQ && !hasMidBlock ? "v1" : hasMidBlock ? "v2" : "v3";
  return { version, hasMidBlock, maxSeqLength };
}

/**
 * Infers a MotionConfig from MotionAdapter-named tensors. Version: v1 = PE length 24 and no mid
 * block, v2 = PE 32 with a mid-block module, v3 = PE 32 without one.
 */
export function inferMotionConfig(
  motion: TensorMap,
  overrides: MotionOverrides = {},
): MotionConfig {
  const what = "motion module config";
  const levels = countIndices(motion, "down_blocks.");
  if (levels === 0) {
    throw new InputError(`${what}: expected down_blocks.N.motion_modules.* tensors (none found)`);
  }
  const blockOutChannels: number[] = [];
  for (let i = 0; i < levels; i++) {
    blockOutChannels.push(
      shapeOf(motion, `down_blocks.${i}.motion_modules.0.proj_in.weight`, what)[0],
    );
  }
  const { version, hasMidBlock, maxSeqLength } = motionVersion(motion, overrides);
  const config: MotionConfig = {
    version,
    blockOutChannels,
    layersPerBlock: countIndices(motion, "down_blocks.0.motion_modules."),
    hasMidBlock,
    heads: overrides.heads ?? DEFAULT_ATTENTION_HEADS,
    normGroups: overrides.normGroups ?? DEFAULT_NORM_GROUPS,
    maxSeqLength,
    transformerLayers: countIndices(motion, "down_blocks.0.motion_modules.0.transformer_blocks."),
  };
  checkGroups(what, config.normGroups, blockOutChannels);
  for (const c of blockOutChannels) {
    if (c % config.heads !== 0) {
      throw new InputError(`${what}: ${config.heads} heads do not divide ${c} channels`);
    }
  }
  return config;
}

// ---------------------------------------------------------------------------------------------
// Configs written back as diffusers / transformers config.json (inverse of the readers above)

/** diffusers UNet2DConditionModel config.json for a UNetConfig (legacy head-count naming). */
export function unetConfigJson(c: UNetConfig): Json {
  return {
    _class_name: "UNet2DConditionModel",
    in_channels: c.inChannels,
    out_channels: c.outChannels,
    block_out_channels: c.blockOutChannels,
    layers_per_block: c.layersPerBlock,
    down_block_types: c.downBlockAttention.map((a) => a ? "CrossAttnDownBlock2D" : "DownBlock2D"),
    up_block_types: c.upBlockAttention.map((a) => a ? "CrossAttnUpBlock2D" : "UpBlock2D"),
    mid_block_type: c.midBlockAttention ? "UNetMidBlock2DCrossAttn" : null,
    cross_attention_dim: c.crossAttentionDim,
    attention_head_dim: c.attentionHeads,
    norm_num_groups: c.normGroups,
    norm_eps: c.normEps,
    transformer_layers_per_block: c.transformerLayersPerBlock,
    use_linear_projection: c.useLinearProjection,
    flip_sin_to_cos: c.flipSinToCos,
    freq_shift: c.freqShift,
    act_fn: "silu",
  };
}

/** diffusers AutoencoderKL config.json for a VaeConfig. */
export function vaeConfigJson(c: VaeConfig): Json {
  return {
    _class_name: "AutoencoderKL",
    in_channels: c.inChannels,
    out_channels: c.inChannels,
    latent_channels: c.latentChannels,
    block_out_channels: c.blockOutChannels,
    layers_per_block: c.layersPerBlock,
    norm_num_groups: c.normGroups,
    scaling_factor: c.scalingFactor,
    act_fn: "silu",
  };
}

/** transformers CLIPTextModel config.json for a ClipConfig. */
export function clipConfigJson(c: ClipConfig): Json {
  return {
    architectures: ["CLIPTextModel"],
    model_type: "clip_text_model",
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.layers,
    num_attention_heads: c.heads,
    max_position_embeddings: c.maxPositions,
    hidden_act: c.hiddenAct,
    layer_norm_eps: c.layerNormEps,
    bos_token_id: c.eosTokenId - 1,
    eos_token_id: c.eosTokenId,
    pad_token_id: c.eosTokenId,
  };
}

/** diffusers MotionAdapter config.json for a MotionConfig. */
export function motionAdapterConfigJson(c: MotionConfig): Json {
  return {
    _class_name: "MotionAdapter",
    block_out_channels: c.blockOutChannels,
    motion_layers_per_block: c.layersPerBlock,
    motion_mid_block_layers_per_block: 1,
    motion_num_attention_heads: c.heads,
    motion_norm_num_groups: c.normGroups,
    motion_max_seq_length: c.maxSeqLength,
    use_motion_mid_block: c.hasMidBlock,
  };
}
