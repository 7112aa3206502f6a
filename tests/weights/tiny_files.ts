/**
 * Test fixtures: the tiny models of weights/tiny.ts written in every real file layout (diffusers
 * folder, LDM single file as safetensors or torch zip, original AnimateDiff motion module,
 * MotionAdapter folder, kohya and peft LoRAs).
 */

import { ARCHITECTURE } from "../../engine/models/architecture.ts";
import {
  memoryTensor,
  tinyLora,
  tinyModelTensors,
  tinyMotionConfig,
  tinyMotionTensors,
} from "../../weights/tiny.ts";
import type { HostTensor } from "../../weights/types.ts";
import { type TensorToWrite, writeSafetensors } from "../../weights/safetensors.ts";
import { writeTorchZip } from "../../weights/torch_save.ts";
import { ldmClipName, ldmUNetName, ldmVaeName, originalMotionNames } from "../../weights/names.ts";
import {
  clipConfigJson,
  motionAdapterConfigJson,
  unetConfigJson,
  vaeConfigJson,
} from "../../weights/detect.ts";

async function toWrite(
  entries: Iterable<[string, HostTensor]>,
  rename: (name: string) => string[],
  fp16 = false,
): Promise<TensorToWrite[]> {
  const out: TensorToWrite[] = [];
  for (const [name, t] of entries) {
    const data = await t.read();
    for (const n of rename(name)) {
      out.push({ name: n, shape: t.shape, dtype: fp16 ? "F16" : "F32", data });
    }
  }
  return out;
}

async function writeJson(path: string, json: unknown): Promise<void> {
  await Deno.writeTextFile(path, JSON.stringify(json, null, 2) + "\n");
}

async function writeTensors(
  path: string,
  format: "safetensors" | "ckpt",
  tensors: TensorToWrite[],
  metadata?: Record<string, string>,
) {
  if (format === "safetensors") await writeSafetensors(path, tensors, { metadata });
  else await writeTorchZip(path, tensors);
}

/** Writes the tiny model as a diffusers folder (unet/, vae/, text_encoder/, tokenizer/, scheduler/). */
export async function writeTinyDiffusersFolder(dir: string): Promise<void> {
  const t = tinyModelTensors(ARCHITECTURE);
  for (const sub of ["unet", "vae", "text_encoder", "tokenizer", "scheduler"]) {
    await Deno.mkdir(`${dir}/${sub}`, { recursive: true });
  }
  const same = (n: string) => [n];
  await writeJson(`${dir}/model_index.json`, {
    _class_name: "StableDiffusionPipeline",
    unet: ["diffusers", "UNet2DConditionModel"],
    vae: ["diffusers", "AutoencoderKL"],
    text_encoder: ["transformers", "CLIPTextModel"],
    tokenizer: ["transformers", "CLIPTokenizer"],
    scheduler: ["diffusers", "DDIMScheduler"],
  });
  await writeJson(`${dir}/unet/config.json`, unetConfigJson(t.unetConfig));
  await writeSafetensors(
    `${dir}/unet/diffusion_pytorch_model.safetensors`,
    await toWrite(t.unet, same),
    { metadata: { format: "pt" } },
  );
  await writeJson(`${dir}/vae/config.json`, vaeConfigJson(t.vaeConfig));
  await writeSafetensors(
    `${dir}/vae/diffusion_pytorch_model.safetensors`,
    await toWrite(t.vae, same),
    { metadata: { format: "pt" } },
  );
  await writeJson(`${dir}/text_encoder/config.json`, clipConfigJson(t.clipConfig));
  await writeSafetensors(
    `${dir}/text_encoder/model.safetensors`,
    await toWrite(t.textEncoder, same),
    { metadata: { format: "pt" } },
  );
  await Deno.writeTextFile(`${dir}/tokenizer/vocab.json`, t.tokenizer.vocabJson);
  await Deno.writeTextFile(`${dir}/tokenizer/merges.txt`, t.tokenizer.mergesTxt);
  await writeJson(`${dir}/scheduler/scheduler_config.json`, {
    _class_name: "DDIMScheduler",
    num_train_timesteps: 1000,
    beta_start: 0.00085,
    beta_end: 0.012,
    beta_schedule: "linear",
    clip_sample: false,
    set_alpha_to_one: false,
    steps_offset: 1,
    prediction_type: "epsilon",
  });
}

/** Writes the tiny model as an LDM/CompVis single file (with the int64 position_ids buffer). */
export async function writeTinySingleFile(
  path: string,
  options: { format?: "safetensors" | "ckpt"; fp16?: boolean } = {},
): Promise<void> {
  const t = tinyModelTensors(ARCHITECTURE);
  const c = t.unetConfig, fp16 = options.fp16 ?? false;
  const tensors = [
    ...await toWrite(t.unet, (n) => [ldmUNetName(n, c)], fp16),
    ...await toWrite(t.vae, (n) => [ldmVaeName(n, t.vaeConfig.blockOutChannels.length)], fp16),
    ...await toWrite(t.textEncoder, (n) => [ldmClipName(n)], fp16),
  ];
  for (const x of tensors) {
    if (/first_stage_model\..*attn_1\.(q|k|v|proj_out)\.weight$/.test(x.name)) {
      x.shape = [...x.shape, 1, 1];
    }
  }
  const positions = BigInt64Array.from({ length: t.clipConfig.maxPositions }, (_, i) => BigInt(i));
  tensors.push({
    name: ldmClipName("text_model.embeddings.position_ids"),
    shape: [1, positions.length],
    dtype: "I64",
    data: positions,
  });
  await writeTensors(path, options.format ?? "safetensors", tensors, { format: "pt" });
}

/**
 * Writes a tiny motion module in the original AnimateDiff layout (both pe copies included);
 * `channels` replaces the tiny block widths (zero weights), e.g. for a non-standard module.
 */
export async function writeTinyMotionModule(
  path: string,
  options: {
    version?: "v1" | "v2" | "v3";
    format?: "safetensors" | "ckpt";
    channels?: number[];
  } = {},
): Promise<void> {
  const version = options.version ?? "v2";
  let tensors = tinyMotionTensors(ARCHITECTURE, version).tensors;
  if (options.channels) {
    const config = { ...tinyMotionConfig(version), blockOutChannels: options.channels };
    tensors = new Map(
      [...ARCHITECTURE.motion(config)].map(([name, shape]) => [
        name,
        memoryTensor(shape, new Float32Array(shape.reduce((a, b) => a * b, 1))),
      ]),
    );
  }
  await writeTensors(path, options.format ?? "ckpt", await toWrite(tensors, originalMotionNames));
}

/** Writes a tiny diffusers MotionAdapter folder (config.json + diffusion_pytorch_model.safetensors). */
export async function writeTinyMotionAdapter(
  dir: string,
  options: { version?: "v1" | "v2" | "v3" } = {},
): Promise<void> {
  const m = tinyMotionTensors(ARCHITECTURE, options.version ?? "v2");
  await Deno.mkdir(dir, { recursive: true });
  await writeJson(`${dir}/config.json`, motionAdapterConfigJson(m.config));
  await writeSafetensors(
    `${dir}/diffusion_pytorch_model.safetensors`,
    await toWrite(m.tensors, (n) => [n]),
    { metadata: { format: "pt" } },
  );
}

/** Writes the tiny LoRA in kohya or diffusers/peft layout (.safetensors). */
export async function writeTinyLora(
  path: string,
  options: { layout: "kohya" | "peft" },
): Promise<void> {
  const l = tinyLora(ARCHITECTURE, options.layout);
  await writeSafetensors(path, await toWrite(l.tensors, (n) => [n]), { metadata: l.metadata });
}
