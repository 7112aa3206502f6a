/**
 * The one description of every architecture: what the model blocks declare when they are built
 * (`WeightStore.describe`), by canonical name, with stored shapes. weights/ receives it as data
 * (`Architecture`, weights/types.ts) to check files strictly, generate tiny and random models and
 * resolve LoRA names, so no other list of tensors exists.
 * @module
 */

import { WeightStore } from "../weight_store.ts";
import type { Architecture, ModelConfigs, ShapeMap } from "../../weights/types.ts";
import type { MotionConfig, UNetConfig } from "../../weights/model_config.ts";
import { ClipTextEncoder } from "./clip.ts";
import { UNet3D } from "./unet.ts";
import { VaeDecoder, VaeEncoder } from "./vae.ts";

/**
 * The base model's tensors for its configs: the UNet (diffusers UNet2DConditionModel), the VAE
 * (AutoencoderKL: encoder and decoder) and the text encoder (CLIPTextModel).
 *
 * @example
 * ```ts
 * const { unet } = describeModel({ unet: SD15_UNET_CONFIG, vae: SD15_VAE_CONFIG, clip: SD15_CLIP_CONFIG });
 * unet.get("conv_in.weight"); // [320, 4, 3, 3]
 * ```
 */
export function describeModel(c: ModelConfigs): {
  unet: ShapeMap;
  vae: ShapeMap;
  textEncoder: ShapeMap;
} {
  return {
    unet: WeightStore.describe((w) => new UNet3D(w, null, c.unet, null)),
    vae: WeightStore.describe((w) => {
      new VaeEncoder(w, c.vae);
      new VaeDecoder(w, c.vae);
    }),
    textEncoder: WeightStore.describe((w) => new ClipTextEncoder(w, c.clip)),
  };
}

/**
 * The motion modules' tensors (diffusers MotionAdapter naming) for a motion config: the modules a
 * UNet with the same channels builds.
 *
 * @example
 * ```ts
 * describeMotion(ANIMATEDIFF_V2_CONFIG).get("mid_block.motion_modules.0.proj_in.weight"); // [1280, 1280]
 * ```
 */
export function describeMotion(config: MotionConfig): ShapeMap {
  const levels = config.blockOutChannels.length;
  // Only the channels and layers shape the motion modules; the rest of the UNet is dropped.
  const unet: UNetConfig = {
    inChannels: 4,
    outChannels: 4,
    blockOutChannels: config.blockOutChannels,
    layersPerBlock: config.layersPerBlock,
    downBlockAttention: Array.from({ length: levels }, (_, i) => i < levels - 1),
    upBlockAttention: Array.from({ length: levels }, (_, i) => i > 0),
    midBlockAttention: true,
    crossAttentionDim: 8,
    attentionHeads: new Array(levels).fill(1),
    transformerLayersPerBlock: 1,
    normGroups: 1,
    normEps: 1e-5,
    useLinearProjection: false,
    flipSinToCos: true,
    freqShift: 0,
    timeEmbeddingDim: 4,
  };
  return WeightStore.describe((motion) => {
    new UNet3D(
      new WeightStore(null, new Map(), { dtype: "f32", part: "unet" }),
      motion,
      unet,
      config,
    );
  });
}

/** The architectures as weights/ takes them. */
export const ARCHITECTURE: Architecture = { model: describeModel, motion: describeMotion };
