/**
 * Model configurations. Each is inferred from weight shapes by weights/detect.ts; what weights
 * cannot tell (GroupNorm groups, attention head counts) comes from a diffusers config file or
 * the standard SD1.5 / AnimateDiff defaults below.
 * @module
 */

/** Standard SD1.5 / AnimateDiff GroupNorm group count. */
export const DEFAULT_NORM_GROUPS = 32;
/** Standard SD1.5 UNet / AnimateDiff motion-module attention head count. */
export const DEFAULT_ATTENTION_HEADS = 8;
/** SD1.5 VAE latent scaling factor. */
export const SD15_VAE_SCALING_FACTOR = 0.18215;

/** Inflated SD1.5-family UNet (diffusers UNet2DConditionModel naming). */
export interface UNetConfig {
  inChannels: number; // 4
  outChannels: number; // 4
  blockOutChannels: number[]; // [320, 640, 1280, 1280]
  layersPerBlock: number; // 2 (up blocks have layersPerBlock + 1)
  /** Per down block: true = CrossAttnDownBlock2D, false = DownBlock2D. */
  downBlockAttention: boolean[];
  /** Per up block (in up-block order): true = CrossAttnUpBlock2D, false = UpBlock2D. */
  upBlockAttention: boolean[];
  /** UNetMidBlock2DCrossAttn has an attention (always true for SD1.5). */
  midBlockAttention: boolean;
  crossAttentionDim: number; // 768
  /** Heads per block level (diffusers' legacy `attention_head_dim` = head count for SD1.5). */
  attentionHeads: number[];
  transformerLayersPerBlock: number; // 1
  normGroups: number; // 32
  normEps: number; // 1e-5
  /** proj_in/proj_out are Linear (true) or 1x1 Conv (false, SD1.5). */
  useLinearProjection: boolean;
  flipSinToCos: boolean; // true
  freqShift: number; // 0
  timeEmbeddingDim: number; // 4 * blockOutChannels[0]
}

/** AnimateDiff motion module set (diffusers MotionAdapter naming). */
export interface MotionConfig {
  version: "v1" | "v2" | "v3";
  blockOutChannels: number[];
  /** Motion modules per down block (= UNet layersPerBlock); up blocks have one more. */
  layersPerBlock: number;
  hasMidBlock: boolean;
  heads: number; // 8
  normGroups: number; // 32
  /** Length of the sinusoidal position encoding = maximum frames. 24 (v1) or 32 (v2/v3). */
  maxSeqLength: number;
  transformerLayers: number; // 1
}

/** AutoencoderKL (diffusers naming). */
export interface VaeConfig {
  inChannels: number; // 3
  latentChannels: number; // 4
  blockOutChannels: number[]; // [128, 256, 512, 512]
  layersPerBlock: number; // 2 (decoder up blocks have layersPerBlock + 1)
  normGroups: number; // 32
  normEps: number; // 1e-6
  scalingFactor: number; // 0.18215
  /** quant_conv / post_quant_conv present. */
  hasQuantConv: boolean;
}

/** CLIP text transformer (transformers CLIPTextModel naming). */
export interface ClipConfig {
  vocabSize: number; // 49408
  hiddenSize: number; // 768
  intermediateSize: number; // 3072
  layers: number; // 12
  heads: number; // 12
  maxPositions: number; // 77
  layerNormEps: number; // 1e-5
  hiddenAct: "quick_gelu" | "gelu";
  eosTokenId: number; // 49407
}

/** SD1.5 UNet. */
export const SD15_UNET_CONFIG: UNetConfig = {
  inChannels: 4,
  outChannels: 4,
  blockOutChannels: [320, 640, 1280, 1280],
  layersPerBlock: 2,
  downBlockAttention: [true, true, true, false],
  upBlockAttention: [false, true, true, true],
  midBlockAttention: true,
  crossAttentionDim: 768,
  attentionHeads: [8, 8, 8, 8],
  transformerLayersPerBlock: 1,
  normGroups: 32,
  normEps: 1e-5,
  useLinearProjection: false,
  flipSinToCos: true,
  freqShift: 0,
  timeEmbeddingDim: 1280,
};

/** SD1.5 VAE. */
export const SD15_VAE_CONFIG: VaeConfig = {
  inChannels: 3,
  latentChannels: 4,
  blockOutChannels: [128, 256, 512, 512],
  layersPerBlock: 2,
  normGroups: 32,
  normEps: 1e-6,
  scalingFactor: SD15_VAE_SCALING_FACTOR,
  hasQuantConv: true,
};

/** CLIP ViT-L/14 text encoder. */
export const SD15_CLIP_CONFIG: ClipConfig = {
  vocabSize: 49408,
  hiddenSize: 768,
  intermediateSize: 3072,
  layers: 12,
  heads: 12,
  maxPositions: 77,
  layerNormEps: 1e-5,
  hiddenAct: "quick_gelu",
  eosTokenId: 49407,
};

/** AnimateDiff v2 motion modules (mm_sd_v15_v2). */
export const ANIMATEDIFF_V2_CONFIG: MotionConfig = {
  version: "v2",
  blockOutChannels: [320, 640, 1280, 1280],
  layersPerBlock: 2,
  hasMidBlock: true,
  heads: 8,
  normGroups: 32,
  maxSeqLength: 32,
  transformerLayers: 1,
};
