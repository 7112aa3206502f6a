/**
 * Which family a Stable Diffusion base model belongs to, told from its tensor names and shapes
 * (or a diffusers folder's config.json): AnimateDiff animates text-to-image SD1.5 models, and the
 * other families share enough of the SD1.5 layout to load and then fail deep inside a kernel.
 *
 * - SD1.5 inpainting: the UNet's first convolution takes 9 channels (latents, mask, masked image).
 * - InstructPix2Pix: it takes 8 (latents and the image to edit).
 * - SD 2.x: an OpenCLIP ViT-H text encoder (`cond_stage_model.model.*`), cross-attention dim
 *   1024; v-prediction cannot be told from the weights, the architecture can.
 * - SDXL: two text encoders (`conditioner.embedders.*`, diffusers `text_encoder_2/`), size
 *   conditioning (`label_emb`, diffusers `add_embedding`), cross-attention dim 2048.
 * @module
 */

import { stripWrapperPrefix } from "./names.ts";

/** A base-model family other than text-to-image SD1.5. */
export type OtherFamily = "sd15-inpainting" | "instruct-pix2pix" | "sd2" | "sdxl";

/**
 * A family verdict: which one, and the evidence in words (for errors).
 *
 * @example
 * ```ts
 * const f: FamilyVerdict = { family: "sd15-inpainting", evidence: "conv_in takes 9 channels" };
 * ```
 */
export interface FamilyVerdict {
  /** The family. */
  family: OtherFamily;
  /** What gave it away, e.g. "conv_in takes 9 channels". */
  evidence: string;
}

/** Human names of the families, for one-line errors. */
export const FAMILY_NAMES: Readonly<Record<OtherFamily, string>> = {
  "sd15-inpainting": "an SD1.5 inpainting",
  "instruct-pix2pix": "an InstructPix2Pix",
  "sd2": "an SD 2.x",
  "sdxl": "an SDXL",
};

/** Input channels of SD1.5's UNet conv_in: 4 latent channels. */
const TEXT_TO_IMAGE_IN_CHANNELS = 4;
const INPAINTING_IN_CHANNELS = 9;
const PIX2PIX_IN_CHANNELS = 8;
/** Cross-attention widths: OpenCLIP ViT-H (SD 2.x), CLIP-L + OpenCLIP-bigG (SDXL). */
const SD2_CROSS_ATTENTION_DIM = 1024;
const SDXL_CROSS_ATTENTION_DIM = 2048;

/** Facts about a base model that tell its family (any may be unknown). */
export interface FamilyFacts {
  /** Input channels of the UNet's first convolution. */
  unetInChannels?: number;
  /** Width of the UNet's cross-attention context (the text encoder's hidden size). */
  crossAttentionDim?: number;
  /** A name or config entry only SDXL has, in words. */
  sdxlMarker?: string;
  /** A name or config entry only SD 2.x has, in words. */
  sd2Marker?: string;
}

/**
 * The family the facts point to, or null for (what looks like) text-to-image SD1.5.
 *
 * @example
 * ```ts
 * familyOf({ unetInChannels: 9 }); // { family: "sd15-inpainting", evidence: "conv_in takes 9 channels" }
 * familyOf({ unetInChannels: 4, crossAttentionDim: 768 }); // null
 * ```
 */
export function familyOf(f: FamilyFacts): FamilyVerdict | null {
  if (f.sdxlMarker) return { family: "sdxl", evidence: f.sdxlMarker };
  if (f.crossAttentionDim === SDXL_CROSS_ATTENTION_DIM) {
    return { family: "sdxl", evidence: `cross-attention dim ${SDXL_CROSS_ATTENTION_DIM}` };
  }
  if (f.sd2Marker) return { family: "sd2", evidence: f.sd2Marker };
  if (f.crossAttentionDim === SD2_CROSS_ATTENTION_DIM) {
    return {
      family: "sd2",
      evidence: `cross-attention dim ${SD2_CROSS_ATTENTION_DIM}: an OpenCLIP text encoder`,
    };
  }
  if (f.unetInChannels === INPAINTING_IN_CHANNELS || f.unetInChannels === PIX2PIX_IN_CHANNELS) {
    return {
      family: f.unetInChannels === INPAINTING_IN_CHANNELS ? "sd15-inpainting" : "instruct-pix2pix",
      evidence: `conv_in takes ${f.unetInChannels} channels, not ${TEXT_TO_IMAGE_IN_CHANNELS}`,
    };
  }
  return null;
}

/** Anything with tensor shapes under names (a TensorMap, a ShapeMap). */
export type ShapeSource = ReadonlyMap<string, { readonly shape: readonly number[] } | number[]>;

function shapeIn(source: ShapeSource, name: string): readonly number[] | undefined {
  const v = source.get(name);
  return v === undefined ? undefined : Array.isArray(v) ? v : (v as { shape: number[] }).shape;
}

function dim(shape: readonly number[] | undefined, i: number): number | undefined {
  return shape && shape.length > i ? shape[i] : undefined;
}

/**
 * The family of an LDM/CompVis single-file checkpoint (`model.diffusion_model.*`,
 * `cond_stage_model.*`, `conditioner.*` names; `state_dict.` / `module.` wrappers allowed).
 *
 * @example
 * ```ts
 * const verdict = checkpointFamily(file.tensors); // null for text-to-image SD1.5
 * ```
 */
export function checkpointFamily(tensors: ShapeSource): FamilyVerdict | null {
  const facts: FamilyFacts = {};
  for (const source of tensors.keys()) {
    const name = stripWrapperPrefix(source);
    if (!facts.sdxlMarker && name.startsWith("conditioner.embedders.")) {
      facts.sdxlMarker = "two text encoders under conditioner.embedders.*";
    } else if (!facts.sdxlMarker && name.startsWith("model.diffusion_model.label_emb.")) {
      facts.sdxlMarker = "size conditioning in model.diffusion_model.label_emb.*";
    } else if (!facts.sd2Marker && name.startsWith("cond_stage_model.model.")) {
      facts.sd2Marker = "an OpenCLIP text encoder under cond_stage_model.model.*";
    } else if (name === "model.diffusion_model.input_blocks.0.0.weight") {
      facts.unetInChannels = dim(shapeIn(tensors, source), 1);
    } else if (
      facts.crossAttentionDim === undefined && name.startsWith("model.diffusion_model.") &&
      name.endsWith(".attn2.to_k.weight")
    ) {
      facts.crossAttentionDim = dim(shapeIn(tensors, source), 1);
    }
  }
  return familyOf(facts);
}

/**
 * The family of a diffusers model from its UNet tensors (canonical names) and, when known, its
 * unet/config.json and model_index.json.
 *
 * @example
 * ```ts
 * const verdict = diffusersFamily(unetTensors, { unetConfig: json }); // null for SD1.5
 * ```
 */
export function diffusersFamily(
  unet: ShapeSource | null,
  configs: {
    unetConfig?: Record<string, unknown> | null;
    modelIndex?: Record<string, unknown> | null;
  } = {},
): FamilyVerdict | null {
  const facts: FamilyFacts = {};
  const config = configs.unetConfig ?? {};
  if (typeof config.in_channels === "number") facts.unetInChannels = config.in_channels;
  const cross = config.cross_attention_dim;
  const crossDims = Array.isArray(cross) ? cross : [cross];
  if (typeof crossDims[0] === "number") facts.crossAttentionDim = crossDims[0];
  if (config.addition_embed_type === "text_time") {
    facts.sdxlMarker = 'size conditioning: unet config addition_embed_type "text_time"';
  }
  if (configs.modelIndex && "text_encoder_2" in configs.modelIndex) {
    facts.sdxlMarker ??= "a second text encoder (text_encoder_2 in model_index.json)";
  }
  if (unet) {
    facts.unetInChannels = dim(shapeIn(unet, "conv_in.weight"), 1) ?? facts.unetInChannels;
    let crossSeen = false;
    for (const name of unet.keys()) {
      if (name.startsWith("add_embedding.")) {
        facts.sdxlMarker ??= "size conditioning in add_embedding.*";
      } else if (!crossSeen && name.endsWith(".attn2.to_k.weight")) {
        crossSeen = true;
        facts.crossAttentionDim = dim(shapeIn(unet, name), 1) ?? facts.crossAttentionDim;
      }
    }
  }
  return familyOf(facts);
}
