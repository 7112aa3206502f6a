/**
 * Tiny base models of the families AnimateDiff cannot animate (SD1.5 inpainting, InstructPix2Pix,
 * SD 2.x, SDXL), written with the project's own writers from the tiny SD1.5 model: the same
 * tensors with the names and shapes that tell each family apart. Used by tests only.
 */

import {
  openSafetensors,
  type TensorToWrite,
  writeSafetensors,
} from "../../weights/safetensors.ts";
import { tinyValues } from "../../weights/tiny.ts";
import { writeTinyDiffusersFolder, writeTinySingleFile } from "./tiny_files.ts";
import type { OtherFamily } from "../../weights/family.ts";
import type { HostTensor } from "../../weights/types.ts";

/** The families, each with the conv_in input channels it takes. */
export const FAMILIES: readonly OtherFamily[] = [
  "sd15-inpainting",
  "instruct-pix2pix",
  "sd2",
  "sdxl",
];

const IN_CHANNELS: Partial<Record<OtherFamily, number>> = {
  "sd15-inpainting": 9,
  "instruct-pix2pix": 8,
};

function random(name: string, shape: number[]): TensorToWrite {
  return { name, shape, dtype: "F32", data: tinyValues(name, shape) };
}

function fromFile(name: string, t: HostTensor): TensorToWrite {
  return { name, shape: t.shape, dtype: "F32", data: () => t.read() };
}

/** An LDM single-file checkpoint of `family` (from the tiny SD1.5 single file). */
export async function writeFamilyCheckpoint(path: string, family: OtherFamily): Promise<void> {
  const base = `${path}.sd15.safetensors`;
  await writeTinySingleFile(base);
  const f = await openSafetensors(base);
  try {
    const out: TensorToWrite[] = [];
    for (const [name, t] of f.tensors) {
      if (name === "model.diffusion_model.input_blocks.0.0.weight" && IN_CHANNELS[family]) {
        const [c, , kh, kw] = t.shape;
        out.push(random(name, [c, IN_CHANNELS[family]!, kh, kw])); // latents + mask/image
      } else if (family === "sd2" && name.startsWith("cond_stage_model.transformer.")) {
        // OpenCLIP's text tower lives under cond_stage_model.model.* (own names).
        const rest = name.slice("cond_stage_model.transformer.text_model.".length)
          .replace("embeddings.token_embedding", "token_embedding")
          .replace(/^encoder\.layers\./, "transformer.resblocks.");
        out.push(fromFile(`cond_stage_model.model.${rest}`, t));
      } else if (family === "sdxl" && name.startsWith("cond_stage_model.transformer.")) {
        out.push(fromFile(name.replace("cond_stage_model.", "conditioner.embedders.0."), t));
      } else out.push(fromFile(name, t));
    }
    if (family === "sdxl") {
      // Size conditioning (original size, crop, target size) into the time embedding.
      const time = f.tensors.get("model.diffusion_model.time_embed.0.weight")!.shape[0];
      out.push(random("model.diffusion_model.label_emb.0.0.weight", [time, 12]));
      out.push(random("conditioner.embedders.1.model.ln_final.weight", [32]));
    }
    await writeSafetensors(path, out, { metadata: { format: "pt" } });
  } finally {
    f.close();
    await Deno.remove(base);
  }
}

/** A diffusers folder of `family` (from the tiny SD1.5 folder). */
export async function writeFamilyDiffusersFolder(dir: string, family: OtherFamily): Promise<void> {
  await writeTinyDiffusersFolder(dir);
  const configPath = `${dir}/unet/config.json`;
  const config = JSON.parse(await Deno.readTextFile(configPath));
  const unetPath = `${dir}/unet/diffusion_pytorch_model.safetensors`;
  const f = await openSafetensors(unetPath);
  const out: TensorToWrite[] = [];
  try {
    for (const [name, t] of f.tensors) {
      if (name === "conv_in.weight" && IN_CHANNELS[family]) {
        const [c, , kh, kw] = t.shape;
        out.push(random(name, [c, IN_CHANNELS[family]!, kh, kw]));
      } else if (family === "sd2" && /attn2\.to_[kv]\.weight$/.test(name)) {
        out.push(random(name, [t.shape[0], 1024])); // OpenCLIP ViT-H context width
      } else {
        out.push({ name, shape: t.shape, dtype: "F32", data: await t.read() });
      }
    }
  } finally {
    f.close();
  }
  if (IN_CHANNELS[family]) config.in_channels = IN_CHANNELS[family];
  if (family === "sd2") config.cross_attention_dim = 1024;
  if (family === "sdxl") {
    config.addition_embed_type = "text_time";
    const index = JSON.parse(await Deno.readTextFile(`${dir}/model_index.json`));
    index.text_encoder_2 = ["transformers", "CLIPTextModelWithProjection"];
    await Deno.writeTextFile(`${dir}/model_index.json`, JSON.stringify(index, null, 2));
  }
  await writeSafetensors(unetPath, out, { metadata: { format: "pt" } });
  await Deno.writeTextFile(configPath, JSON.stringify(config, null, 2));
}
