/**
 * New weights to train from: a motion module as the AnimateDiff training code makes one (every
 * Linear with PyTorch's default initialisation: weight and bias uniform in +-1/sqrt(fan_in);
 * norms at weight 1 and bias 0; the sinusoidal position tables; `proj_out` zero so that the
 * inserted module starts as the identity), and whole models from their configs (convolutions and
 * Linears as PyTorch initialises them, CLIP's embeddings as transformers does) for training a
 * small text-to-image model from scratch.
 * @module
 */

import type { MotionConfig, UNetConfig } from "../../weights/model_config.ts";
import { DEFAULT_ATTENTION_HEADS, DEFAULT_NORM_GROUPS } from "../../weights/model_config.ts";
import type { ModelConfigs, ModelWeights, MotionWeights, TensorMap } from "../../weights/types.ts";
import { memoryTensor, sinusoidalTable } from "../../weights/tiny.ts";
import { ARCHITECTURE } from "../models/architecture.ts";
import { TorchGenerator } from "../rng.ts";

/** Frames a new module's position tables cover (AnimateDiff v2/v3). */
const NEW_MODULE_MAX_FRAMES = 32;

/**
 * The config of a new motion module for `unet`: its channels and layers, with `overrides` (e.g.
 * from a MotionAdapter config.json) for heads, groups, frames and the mid block.
 *
 * @example
 * ```ts
 * const c = newMotionConfig(SD15_UNET_CONFIG); // v2-like: mid block, 32 frames, 8 heads
 * ```
 */
export function newMotionConfig(
  unet: UNetConfig,
  overrides: Partial<MotionConfig> = {},
): MotionConfig {
  const hasMidBlock = overrides.hasMidBlock ?? true;
  const maxSeqLength = overrides.maxSeqLength ?? NEW_MODULE_MAX_FRAMES;
  return {
    version: overrides.version ?? (hasMidBlock ? "v2" : maxSeqLength <= 24 ? "v1" : "v3"),
    blockOutChannels: [...unet.blockOutChannels],
    layersPerBlock: unet.layersPerBlock,
    hasMidBlock,
    heads: overrides.heads ?? DEFAULT_ATTENTION_HEADS,
    normGroups: overrides.normGroups ?? Math.min(DEFAULT_NORM_GROUPS, unet.normGroups),
    maxSeqLength,
    transformerLayers: overrides.transformerLayers ?? 1,
  };
}

/**
 * The tensors of a new motion module (see the module doc), drawn from a seeded generator.
 *
 * @example
 * ```ts
 * const motion = newMotionModule(newMotionConfig(unetConfig), 42);
 * motion.tensors.get("down_blocks.0.motion_modules.0.proj_out.weight"); // all zeros
 * ```
 */
export function newMotionModule(config: MotionConfig, seed: number): MotionWeights {
  const g = new TorchGenerator(seed);
  const tensors: TensorMap = new Map();
  const shapes = ARCHITECTURE.motion(config);
  for (const [name, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    let data: Float32Array;
    if (name.endsWith(".pos_embed.pe")) data = sinusoidalTable(shape[1], shape[2]);
    else if (/\.proj_out\.(weight|bias)$/.test(name)) data = new Float32Array(n);
    else if (/\.norm\d?\.weight$/.test(name)) data = new Float32Array(n).fill(1);
    else if (/\.norm\d?\.bias$/.test(name)) data = new Float32Array(n);
    else {
      // Linear weight [out, in] or its bias [out]: fan_in is the weight's second dimension.
      const weight = name.endsWith(".bias") ? shapes.get(name.replace(/bias$/, "weight"))! : shape;
      const bound = 1 / Math.sqrt(weight[1]);
      data = Float32Array.from({ length: n }, () => (2 * g.nextDoubleUniform() - 1) * bound);
    }
    tensors.set(name, memoryTensor(shape, data));
  }
  return { source: "new motion module", tensors, config, close() {} };
}

/** transformers' CLIP initialisation of the token and position embeddings (std). */
const TOKEN_EMBEDDING_STD = 0.02, POSITION_EMBEDDING_STD = 0.01;

/**
 * A new model (UNet, VAE, text encoder) of `configs`, drawn from a seeded generator: norms at
 * weight 1 and bias 0, CLIP's embeddings normal (std 0.02 tokens, 0.01 positions), every other
 * weight and bias uniform in +-1/sqrt(fan_in) (PyTorch's default for Conv2d and Linear).
 *
 * @example
 * ```ts
 * const model = newModel({ unet, vae, clip }, 1);
 * const trainer = await createTrainer({ modelWeights: model, train: "vae" });
 * ```
 */
export function newModel(configs: ModelConfigs, seed: number): ModelWeights {
  const shapes = ARCHITECTURE.model(configs);
  const g = new TorchGenerator(seed);
  const init = (map: Map<string, number[]>): TensorMap => {
    const out: TensorMap = new Map();
    for (const [name, shape] of map) {
      out.set(name, memoryTensor(shape, initial(name, shape, map, g)));
    }
    return out;
  };
  return {
    source: "new model",
    unet: init(shapes.unet),
    vae: init(shapes.vae),
    textEncoder: init(shapes.textEncoder),
    unetConfig: configs.unet,
    vaeConfig: configs.vae,
    clipConfig: configs.clip,
    close() {},
  };
}

function initial(
  name: string,
  shape: readonly number[],
  shapes: Map<string, number[]>,
  g: TorchGenerator,
): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const normal = (std: number) => g.randn([n]).map((v) => v * std);
  if (name.endsWith("token_embedding.weight")) return normal(TOKEN_EMBEDDING_STD);
  if (name.endsWith("position_embedding.weight")) return normal(POSITION_EMBEDDING_STD);
  const module = name.slice(0, name.lastIndexOf("."));
  if (shape.length === 1 && /norm/.test(module.slice(module.lastIndexOf(".") + 1))) {
    return new Float32Array(n).fill(name.endsWith(".weight") ? 1 : 0);
  }
  // Conv2d [out, in, kh, kw] / Linear [out, in] and their biases: fan_in from the weight.
  const weight = name.endsWith(".bias") ? shapes.get(`${module}.weight`) : shape;
  const fanIn = weight ? weight.slice(1).reduce((a, b) => a * b, 1) : n;
  const bound = 1 / Math.sqrt(fanIn);
  return Float32Array.from({ length: n }, () => (2 * g.nextDoubleUniform() - 1) * bound);
}
