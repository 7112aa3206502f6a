/**
 * Writes the full-size random SD1.5 + AnimateDiff v2 model of `weights/sd15.ts` (`randomSd15(ARCHITECTURE)`)
 * to disk in the layouts real users have, so that our engine can be compared at full size with a
 * reference implementation run outside the project:
 *
 *   deno run -A tools/random_sd15.ts --out DIR --layout single [--fp16]
 *     DIR/sd15-random[.fp16].safetensors        SD1.5 single file, LDM keys (model.diffusion_model.*,
 *                                              first_stage_model.*, cond_stage_model.transformer.text_model.*)
 *     DIR/mm_sd_v15_v2-random.safetensors      motion module, original AnimateDiff keys (as mm_sd_v15_v2.ckpt)
 *   deno run -A tools/random_sd15.ts --out DIR --layout diffusers [--fp16]
 *     DIR/sd15-random/                         diffusers folder (model_index.json, unet/, vae/, text_encoder/,
 *                                              scheduler/, tokenizer/ copied from --tokenizer)
 *     DIR/motion-adapter-v2-random/            diffusers MotionAdapter (config.json + weights)
 *   --layout both writes both; --check loads what was written with our own loaders and compares a
 *   sample of tensors across the layouts; --tokenizer DIR (default ../shared/fixtures/clip-tokenizer)
 *   is third-party data and is only ever copied into DIR.
 *
 * The values are exactly `randomSd15(ARCHITECTURE)`'s, except the motion modules' `pos_embed.pe` tables: released
 * modules carry the sinusoidal table (diffusers' SinusoidalPositionalEmbedding), so those are written
 * instead of random numbers. Both layouts hold the same values; tensors are generated and written one
 * at a time (nothing is held twice).
 * @module
 */

import { parseArgs } from "node:util";
import { randomSd15 } from "../weights/sd15.ts";
import { sinusoidalTable } from "../weights/tiny.ts";
import { type TensorToWrite, writeSafetensors } from "../weights/safetensors.ts";
import { ldmClipName, ldmUNetName, ldmVaeName, originalMotionNames } from "../weights/names.ts";
import { motionAdapterConfigJson } from "../weights/detect.ts";
import { loadModel, loadMotionModule } from "../weights/load.ts";
import type { HostTensor, ModelWeights, MotionWeights, TensorMap } from "../weights/types.ts";
import { ARCHITECTURE } from "../engine/models/architecture.ts";

type Json = Record<string, unknown>;

/** The runwayml/stable-diffusion-v1-5 `unet/config.json` (what diffusers expects for SD1.5). */
const UNET_CONFIG: Json = {
  _class_name: "UNet2DConditionModel",
  _diffusers_version: "0.27.2",
  act_fn: "silu",
  attention_head_dim: 8,
  block_out_channels: [320, 640, 1280, 1280],
  center_input_sample: false,
  cross_attention_dim: 768,
  down_block_types: [
    "CrossAttnDownBlock2D",
    "CrossAttnDownBlock2D",
    "CrossAttnDownBlock2D",
    "DownBlock2D",
  ],
  downsample_padding: 1,
  flip_sin_to_cos: true,
  freq_shift: 0,
  in_channels: 4,
  layers_per_block: 2,
  mid_block_scale_factor: 1,
  norm_eps: 1e-5,
  norm_num_groups: 32,
  out_channels: 4,
  sample_size: 64,
  up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
};

/** The SD1.5 `vae/config.json`. */
const VAE_CONFIG: Json = {
  _class_name: "AutoencoderKL",
  _diffusers_version: "0.27.2",
  act_fn: "silu",
  block_out_channels: [128, 256, 512, 512],
  down_block_types: new Array(4).fill("DownEncoderBlock2D"),
  in_channels: 3,
  latent_channels: 4,
  layers_per_block: 2,
  norm_num_groups: 32,
  out_channels: 3,
  sample_size: 512,
  scaling_factor: 0.18215,
  up_block_types: new Array(4).fill("UpDecoderBlock2D"),
};

/** The SD1.5 `text_encoder/config.json` (CLIP ViT-L/14 text tower, legacy eos id 2 included). */
const TEXT_ENCODER_CONFIG: Json = {
  architectures: ["CLIPTextModel"],
  attention_dropout: 0.0,
  bos_token_id: 0,
  dropout: 0.0,
  eos_token_id: 2,
  hidden_act: "quick_gelu",
  hidden_size: 768,
  initializer_factor: 1.0,
  initializer_range: 0.02,
  intermediate_size: 3072,
  layer_norm_eps: 1e-5,
  max_position_embeddings: 77,
  model_type: "clip_text_model",
  num_attention_heads: 12,
  num_hidden_layers: 12,
  pad_token_id: 1,
  projection_dim: 768,
  torch_dtype: "float32",
  vocab_size: 49408,
};

/** DDIM with AnimateDiff's settings, as the project's reference fixtures were computed. */
const SCHEDULER_CONFIG: Json = {
  _class_name: "DDIMScheduler",
  _diffusers_version: "0.27.2",
  beta_end: 0.012,
  beta_schedule: "linear",
  beta_start: 0.00085,
  clip_sample: false,
  clip_sample_range: 1.0,
  dynamic_thresholding_ratio: 0.995,
  num_train_timesteps: 1000,
  prediction_type: "epsilon",
  rescale_betas_zero_snr: false,
  sample_max_value: 1.0,
  set_alpha_to_one: false,
  steps_offset: 1,
  thresholding: false,
  timestep_spacing: "leading",
  trained_betas: null,
};

const MODEL_INDEX: Json = {
  _class_name: "StableDiffusionPipeline",
  _diffusers_version: "0.27.2",
  feature_extractor: [null, null],
  image_encoder: [null, null],
  requires_safety_checker: false,
  safety_checker: [null, null],
  scheduler: ["diffusers", "DDIMScheduler"],
  text_encoder: ["transformers", "CLIPTextModel"],
  tokenizer: ["transformers", "CLIPTokenizer"],
  unet: ["diffusers", "UNet2DConditionModel"],
  vae: ["diffusers", "AutoencoderKL"],
};

const TOKENIZER_FILES = [
  "vocab.json",
  "merges.txt",
  "special_tokens_map.json",
  "tokenizer_config.json",
];

/** The random model with released-style sinusoidal position tables in the motion modules. */
function randomModel(): { model: ModelWeights; motion: MotionWeights } {
  const { model, motion } = randomSd15(ARCHITECTURE);
  const tensors: TensorMap = new Map();
  for (const [name, t] of motion.tensors) {
    if (name.endsWith(".pos_embed.pe")) {
      const [, length, c] = t.shape;
      const pe: HostTensor = {
        shape: [...t.shape],
        dtype: "F32",
        read: () => Promise.resolve(sinusoidalTable(length, c)),
      };
      tensors.set(name, pe);
    } else tensors.set(name, t);
  }
  return { model, motion: { ...motion, tensors } };
}

/** Lazy entries: each tensor is generated when the writer reaches it. */
function entries(
  map: TensorMap,
  rename: (name: string) => string[],
  fp16: boolean,
  reshape: (name: string, shape: number[]) => number[] = (_, s) => s,
): TensorToWrite[] {
  const out: TensorToWrite[] = [];
  for (const [name, t] of map) {
    for (const n of rename(name)) {
      out.push({
        name: n,
        shape: reshape(n, [...t.shape]),
        dtype: fp16 ? "F16" : "F32",
        data: () => t.read(),
      });
    }
  }
  return out;
}

function progress(label: string) {
  let last = -1;
  const t0 = performance.now();
  return (done: number, total: number) => {
    const pct = Math.floor((100 * done) / total);
    if (pct >= last + 10 || done === total) {
      last = pct;
      const s = ((performance.now() - t0) / 1000).toFixed(1);
      console.error(`  ${label}: ${pct}% of ${(total / 2 ** 20).toFixed(0)} MiB (${s} s)`);
    }
  };
}

async function writeJson(path: string, json: unknown): Promise<void> {
  await Deno.writeTextFile(path, JSON.stringify(json, null, 2) + "\n");
}

async function writeSingle(out: string, fp16: boolean): Promise<string[]> {
  const { model, motion } = randomModel();
  const c = model.unetConfig;
  const levels = model.vaeConfig.blockOutChannels.length;
  const tensors = [
    ...entries(model.unet, (n) => [ldmUNetName(n, c)], fp16),
    ...entries(
      model.vae,
      (n) => [ldmVaeName(n, levels)],
      fp16,
      // LDM keeps the VAE mid-block attention projections as 1x1 convs.
      (n, s) => /first_stage_model\..*attn_1\.(q|k|v|proj_out)\.weight$/.test(n) ? [...s, 1, 1] : s,
    ),
    ...entries(model.textEncoder, (n) => [ldmClipName(n)], fp16),
  ];
  const positions = BigInt64Array.from(
    { length: model.clipConfig.maxPositions },
    (_, i) => BigInt(i),
  );
  tensors.push({
    name: ldmClipName("text_model.embeddings.position_ids"),
    shape: [1, positions.length],
    dtype: "I64",
    data: positions,
  });
  const modelPath = `${out}/sd15-random${fp16 ? ".fp16" : ""}.safetensors`;
  console.error(`writing ${modelPath}`);
  await writeSafetensors(modelPath, tensors, {
    metadata: { format: "pt" },
    onProgress: progress("model"),
  });
  const mmPath = `${out}/mm_sd_v15_v2-random${fp16 ? ".fp16" : ""}.safetensors`;
  console.error(`writing ${mmPath}`);
  await writeSafetensors(mmPath, entries(motion.tensors, originalMotionNames, fp16), {
    metadata: { format: "pt" },
    onProgress: progress("motion module"),
  });
  return [modelPath, mmPath];
}

async function writeDiffusers(out: string, fp16: boolean, tokenizer: string): Promise<string[]> {
  const { model, motion } = randomModel();
  const dir = `${out}/sd15-random${fp16 ? "-fp16" : ""}`;
  for (const sub of ["unet", "vae", "text_encoder", "tokenizer", "scheduler"]) {
    await Deno.mkdir(`${dir}/${sub}`, { recursive: true });
  }
  await writeJson(`${dir}/model_index.json`, MODEL_INDEX);
  await writeJson(`${dir}/scheduler/scheduler_config.json`, SCHEDULER_CONFIG);
  for (const f of TOKENIZER_FILES) {
    await Deno.copyFile(`${tokenizer}/${f}`, `${dir}/tokenizer/${f}`);
  }
  const same = (n: string) => [n];
  const parts: [string, TensorMap, Json, string][] = [
    ["unet", model.unet, UNET_CONFIG, "diffusion_pytorch_model.safetensors"],
    ["vae", model.vae, VAE_CONFIG, "diffusion_pytorch_model.safetensors"],
    ["text_encoder", model.textEncoder, TEXT_ENCODER_CONFIG, "model.safetensors"],
  ];
  for (const [sub, tensors, config, file] of parts) {
    await writeJson(`${dir}/${sub}/config.json`, config);
    console.error(`writing ${dir}/${sub}/${file}`);
    await writeSafetensors(`${dir}/${sub}/${file}`, entries(tensors, same, fp16), {
      metadata: { format: "pt" },
      onProgress: progress(sub),
    });
  }
  const mm = `${out}/motion-adapter-v2-random${fp16 ? "-fp16" : ""}`;
  await Deno.mkdir(mm, { recursive: true });
  await writeJson(`${mm}/config.json`, {
    ...motionAdapterConfigJson(motion.config),
    _diffusers_version: "0.27.2",
    conv_in_channels: null,
  });
  console.error(`writing ${mm}/diffusion_pytorch_model.safetensors`);
  await writeSafetensors(
    `${mm}/diffusion_pytorch_model.safetensors`,
    entries(motion.tensors, same, fp16),
    { metadata: { format: "pt" }, onProgress: progress("motion adapter") },
  );
  return [dir, mm];
}

/** Every n-th name plus the first and last (a deterministic sample). */
function sample(names: string[], n: number): string[] {
  return names.filter((_, i) => i % n === 0 || i === names.length - 1);
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/**
 * Loads both layouts with our own loaders and compares a sample of tensors (and, with `exact`, the
 * generator's values): returns the number of mismatches.
 */
async function check(out: string, fp16: boolean, every: number): Promise<number> {
  const sfx = fp16 ? ".fp16" : "", dsfx = fp16 ? "-fp16" : "";
  const { model: ref, motion: refMotion } = randomModel();
  const single = await loadModel(`${out}/sd15-random${sfx}.safetensors`);
  const folder = await loadModel(`${out}/sd15-random${dsfx}`);
  const mmSingle = await loadMotionModule(`${out}/mm_sd_v15_v2-random${sfx}.safetensors`);
  const mmFolder = await loadMotionModule(`${out}/motion-adapter-v2-random${dsfx}`);
  let bad = 0, compared = 0;
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  for (
    const [what, a, b] of [
      ["unet config", single.unetConfig, folder.unetConfig],
      ["vae config", single.vaeConfig, folder.vaeConfig],
      ["clip config", single.clipConfig, folder.clipConfig],
      ["motion config", mmSingle.config, mmFolder.config],
      ["unet config vs generator", single.unetConfig, ref.unetConfig],
      ["motion config vs generator", mmSingle.config, refMotion.config],
    ] as const
  ) {
    if (!same(a, b)) {
      console.error(`MISMATCH ${what}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
      bad++;
    }
  }
  const groups: [string, TensorMap, TensorMap, TensorMap][] = [
    ["unet", single.unet, folder.unet, ref.unet],
    ["vae", single.vae, folder.vae, ref.vae],
    ["textEncoder", single.textEncoder, folder.textEncoder, ref.textEncoder],
    ["motion", mmSingle.tensors, mmFolder.tensors, randomModel().motion.tensors],
  ];
  for (const [part, a, b, r] of groups) {
    const names = [...r.keys()];
    for (const k of [a, b]) {
      const missing = names.filter((n) => !k.has(n));
      const extra = [...k.keys()].filter((n) => !r.has(n));
      if (missing.length || extra.length) {
        console.error(
          `MISMATCH ${part}: missing [${missing.slice(0, 5)}] extra [${extra.slice(0, 5)}]`,
        );
        bad++;
      }
    }
    for (const name of sample(names, every)) {
      const [x, y, z] = await Promise.all([
        a.get(name)!.read(),
        b.get(name)!.read(),
        r.get(name)!.read(),
      ]);
      const d = maxAbsDiff(x, y);
      // fp16 files hold the generator's values rounded to half precision (relative 2^-11).
      const dz = maxAbsDiff(x, z);
      let scale = 1;
      for (const v of z) scale = Math.max(scale, Math.abs(v));
      const tol = fp16 ? 1e-3 * scale : 0;
      compared++;
      if (d !== 0 || dz > tol || !same(a.get(name)!.shape, b.get(name)!.shape)) {
        console.error(`MISMATCH ${part} ${name}: single vs folder ${d}, vs generator ${dz}`);
        bad++;
      }
    }
  }
  for (const m of [single, folder, mmSingle, mmFolder]) m.close();
  console.error(`check: ${compared} sampled tensors compared across layouts, ${bad} mismatches`);
  return bad;
}

if (import.meta.main) {
  const { values: args } = parseArgs({
    args: Deno.args,
    options: {
      out: { type: "string" },
      layout: { type: "string", default: "both" },
      tokenizer: {
        type: "string",
        default: new URL("../../shared/fixtures/clip-tokenizer", import.meta.url).pathname,
      },
      every: { type: "string", default: "7" },
      fp16: { type: "boolean", default: false },
      check: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
    strict: true,
  });
  if (args.help || !args.out || !["single", "diffusers", "both", "none"].includes(args.layout!)) {
    console.error(
      "usage: deno run -A tools/random_sd15.ts --out DIR [--layout single|diffusers|both|none] " +
        "[--fp16] [--check] [--every N] [--tokenizer DIR]",
    );
    Deno.exit(2);
  }
  const out = args.out;
  await Deno.mkdir(out, { recursive: true });
  const t0 = performance.now();
  if (args.layout === "single" || args.layout === "both") await writeSingle(out, args.fp16);
  if (args.layout === "diffusers" || args.layout === "both") {
    await writeDiffusers(out, args.fp16, args.tokenizer);
  }
  console.error(`written in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  if (args.check) {
    const bad = await check(out, args.fp16, Math.max(1, Number(args.every)));
    if (bad) Deno.exit(1);
  }
}
