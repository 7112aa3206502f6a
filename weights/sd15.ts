/**
 * The real SD1.5 / AnimateDiff v2 architectures with lazily generated random weights: for
 * benchmarking and memory checks at full size without downloading anything. Tensors are
 * produced on `read()` (deterministic, ~N(0, 1/fan_in)), so nothing is held in host memory.
 * @module
 */

import type { ClipConfig, MotionConfig, UNetConfig, VaeConfig } from "../engine/models/config.ts";
import { SD15_VAE_SCALING_FACTOR } from "../engine/models/config.ts";
import type { HostTensor, ModelWeights, MotionWeights, TensorMap } from "./types.ts";
import { clipShapes, motionShapes, unetShapes, vaeShapes } from "./shapes.ts";

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

function randomTensor(name: string, shape: readonly number[], seed: number): HostTensor {
  return {
    shape: [...shape],
    dtype: "F32",
    read() {
      const n = shape.reduce((a, b) => a * b, 1);
      const out = new Float32Array(n);
      const isNormWeight = shape.length === 1 &&
        /norm.*\.weight$|ln.*\.weight$|layer_norm\d?\.weight$/.test(name);
      if (isNormWeight) return Promise.resolve(out.fill(1));
      if (shape.length === 1) return Promise.resolve(out); // biases
      const fanIn = n / shape[0];
      const s = Math.sqrt(3 / fanIn); // uniform with variance 1/fan_in
      let x = (seed * 2654435761) >>> 0 || 1;
      for (let i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        out[i] = ((x >>> 0) / 4294967296 * 2 - 1) * s;
      }
      return Promise.resolve(out);
    },
  };
}

function randomMap(shapes: Map<string, number[]>): TensorMap {
  const m: TensorMap = new Map();
  let i = 1;
  for (const [name, shape] of shapes) m.set(name, randomTensor(name, shape, i++));
  return m;
}

/** Any architecture of the SD1.5 family with random weights (no files, no downloads). */
export function randomModel(configs: {
  unet: UNetConfig;
  vae: VaeConfig;
  clip: ClipConfig;
  motion: MotionConfig;
  source?: string;
}): { model: ModelWeights; motion: MotionWeights } {
  const source = configs.source ?? "random";
  return {
    model: {
      source,
      unet: randomMap(unetShapes(configs.unet)),
      vae: randomMap(vaeShapes(configs.vae)),
      textEncoder: randomMap(clipShapes(configs.clip)),
      unetConfig: configs.unet,
      vaeConfig: configs.vae,
      clipConfig: configs.clip,
      close() {},
    },
    motion: {
      source: `${source}-motion-${configs.motion.version}`,
      tensors: randomMap(motionShapes(configs.motion)),
      config: configs.motion,
      close() {},
    },
  };
}

/** SD1.5 + AnimateDiff v2 architectures with random weights (no files, no downloads). */
export function randomSd15(): { model: ModelWeights; motion: MotionWeights } {
  return randomModel({
    unet: SD15_UNET_CONFIG,
    vae: SD15_VAE_CONFIG,
    clip: SD15_CLIP_CONFIG,
    motion: ANIMATEDIFF_V2_CONFIG,
    source: "random-sd15",
  });
}
