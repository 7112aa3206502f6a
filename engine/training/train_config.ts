/**
 * Training configs: the original AnimateDiff training YAML (configs/training/*.yaml keys, with
 * train.py's defaults) plus ours, parsed and checked: unknown keys are warned about one line
 * each (with the nearest known key), wrong types are one-line errors naming the key.
 * @module
 */

import { parse as parseYaml } from "yaml";
import { InputError } from "../../kernels/gpu/errors.ts";
import type { TrainTarget } from "./trainer.ts";

/**
 * A parsed training config (YAML keys in the comments; see ../shared/DESIGN.md, "Training").
 *
 * @example
 * ```ts
 * const { config } = parseTrainConfig("output_dir: out\ntrain_data: {video_folder: clips}\n");
 * config.maxTrainSteps; // 100, train.py's default
 * ```
 */
export interface TrainConfig {
  /** `pretrained_model_path`; omitted: the built-in demo model. */
  model?: string;
  /** `model_config` (ours): diffusers folder for a single-file model. */
  modelConfig?: string;
  /** `tokenizer` (ours): folder with vocab.json + merges.txt. */
  tokenizer?: string;
  /** `output_dir`. */
  outputDir: string;
  /** `train` (ours; `image_finetune: true` means unet). */
  train: TrainTarget;
  /** `motion_module` (ours): the module to continue from (motion) or to adapt (motion-lora). */
  motionModule?: string;
  /** `motion_module_config` (ours): MotionAdapter config.json for a new or single-file module. */
  motionModuleConfig?: string;
  /** `lora: {rank, alpha}` (ours). */
  lora?: { rank: number; alpha: number };
  /** `train_data`. */
  data: {
    videoFolder: string;
    csvPath?: string;
    sampleSize: number | [number, number];
    sampleStride: number;
    sampleNFrames: number;
    horizontalFlip: boolean;
  };
  /** `validation_data`; unset fields default at run time (small on a software adapter). */
  validation: {
    prompts: string[];
    negativePrompt: string;
    steps?: number;
    guidance: number;
    frames?: number;
    width?: number;
    height?: number;
  };
  /** `learning_rate`, `adam_beta1/2`, `adam_epsilon`, `adam_weight_decay`. */
  optimizer: { lr: number; betas: [number, number]; eps: number; weightDecay: number };
  /** `lr_scheduler` (constant ignores the warm-up, as diffusers' get_scheduler does). */
  lrScheduler: "constant" | "constant_with_warmup" | "cosine";
  /** `lr_warmup_steps`. */
  lrWarmupSteps: number;
  /** `train_batch_size`. */
  batchSize: number;
  /** `max_train_steps`. */
  maxTrainSteps: number;
  /** `checkpointing_steps` (0 or less: only on Ctrl-C). */
  checkpointingSteps: number;
  /** `validation_steps` (0 or less: none). */
  validationSteps: number;
  /** `validation_steps_tuple`: further steps that validate. */
  validationStepsTuple: number[];
  /** `seed` or `global_seed`. */
  seed: number;
  /** `noise_scheduler_kwargs`. */
  noiseSchedule: { betaStart: number; betaEnd: number; betaSchedule: "linear" | "scaled_linear" };
  /** `cfg_random_null_text_ratio` (0 when `cfg_random_null_text: false`). */
  nullTextRatio: number;
  /** `max_grad_norm`. */
  maxGradNorm: number;
  /** `gradient_checkpointing`. */
  gradientCheckpointing: boolean;
  /** `precision`, or f16 from `mixed_precision_training: true`. */
  precision: "f32" | "f16";
  /** f16 came from `mixed_precision_training` (falls back to f32 without shader-f16). */
  mixedFromOriginal: boolean;
  /** `resume_from_checkpoint`: a checkpoint folder, or "latest". */
  resumeFromCheckpoint?: string;
}

/** train.py's signature defaults (the original's), where the YAML omits a key. */
const ORIGINAL_DEFAULTS = {
  learning_rate: 3e-5,
  adam_beta1: 0.9,
  adam_beta2: 0.999,
  adam_weight_decay: 1e-2,
  adam_epsilon: 1e-8,
  lr_warmup_steps: 0,
  train_batch_size: 1,
  max_train_steps: 100,
  checkpointing_steps: -1,
  validation_steps: 100,
  seed: 42,
  cfg_random_null_text_ratio: 0.1,
  max_grad_norm: 1.0,
  guidance_scale: 8,
  sample_size: 256,
  sample_stride: 4,
  sample_n_frames: 16,
};

/** Keys of the original that change nothing here (multi-GPU, logging, xformers...). */
const NO_EFFECT = [
  "name",
  "use_wandb",
  "launcher",
  "num_workers",
  "is_debug",
  "enable_xformers_memory_efficient_attention",
  "ema_decay",
  "unet_additional_kwargs",
  "trainable_modules",
  "max_train_epoch",
  "checkpointing_epochs",
  "gradient_accumulation_steps",
  "scale_lr",
  "unet_checkpoint_path",
];

const TOP_KEYS = [
  ...NO_EFFECT,
  ...Object.keys(ORIGINAL_DEFAULTS).filter((k) =>
    !k.startsWith("sample_") && k !== "guidance_scale"
  ),
  "global_seed",
  "pretrained_model_path",
  "output_dir",
  "train_data",
  "validation_data",
  "lr_scheduler",
  "noise_scheduler_kwargs",
  "cfg_random_null_text",
  "gradient_checkpointing",
  "mixed_precision_training",
  "image_finetune",
  "validation_steps_tuple",
  "train",
  "motion_module",
  "motion_module_config",
  "model_config",
  "tokenizer",
  "lora",
  "precision",
  "resume_from_checkpoint",
];
const DATA_KEYS = [
  "csv_path",
  "video_folder",
  "sample_size",
  "sample_stride",
  "sample_n_frames",
  "is_image",
  "horizontal_flip",
];
const VALIDATION_KEYS = [
  "prompts",
  "negative_prompt",
  "num_inference_steps",
  "guidance_scale",
  "video_length",
  "width",
  "height",
];
const SCHEDULER_KEYS = [
  "num_train_timesteps",
  "beta_start",
  "beta_end",
  "beta_schedule",
  "steps_offset",
  "clip_sample",
  "prediction_type",
];
const TARGETS: readonly TrainTarget[] = ["motion", "motion-lora", "unet", "vae"];

type Dict = Record<string, unknown>;

/** How far `a` is from `b` in single-character edits (for "did you mean"). */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length];
}

/** The config's values, read by key path with type checks that name the key. */
class Reader {
  readonly warnings: string[] = [];
  constructor(readonly resolvePath: (p: string) => string) {}

  /** The mapping at `key` (or the root), warning about keys outside `known`. */
  dict(v: unknown, key: string, known: readonly string[]): Dict {
    if (v === undefined || v === null) return {};
    if (typeof v !== "object" || Array.isArray(v)) {
      throw new InputError(`${key || "the config"}: expected a mapping of keys`);
    }
    for (const k of Object.keys(v)) {
      if (known.includes(k)) continue;
      const near = known.find((n) => editDistance(k, n) <= Math.max(1, Math.floor(n.length / 5)));
      const path = key ? `${key}.${k}` : k;
      this.warnings.push(`unknown key "${path}" ignored${near ? `; did you mean "${near}"?` : ""}`);
    }
    return v as Dict;
  }

  num(d: Dict, key: string, path: string, o: { int?: boolean; min?: number; gt?: number } = {}) {
    const v = d[key];
    if (v === undefined || v === null) return undefined;
    const what = o.int ? "an integer" : "a number";
    const bound = o.gt !== undefined ? ` > ${o.gt}` : o.min !== undefined ? ` >= ${o.min}` : "";
    if (
      typeof v !== "number" || !Number.isFinite(v) || (o.int && !Number.isSafeInteger(v)) ||
      (o.min !== undefined && v < o.min) || (o.gt !== undefined && v <= o.gt)
    ) {
      throw new InputError(`${path}: expected ${what}${bound}, got ${JSON.stringify(v)}`);
    }
    return v;
  }

  str(d: Dict, key: string, path: string): string | undefined {
    const v = d[key];
    if (v === undefined || v === null || v === "") return undefined;
    if (typeof v !== "string") {
      throw new InputError(`${path}: expected a string, got ${JSON.stringify(v)}`);
    }
    return v;
  }

  path(d: Dict, key: string, path: string): string | undefined {
    const v = this.str(d, key, path);
    return v === undefined ? undefined : this.resolvePath(v);
  }

  bool(d: Dict, key: string, path: string): boolean | undefined {
    const v = d[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "boolean") {
      throw new InputError(`${path}: expected true or false, got ${JSON.stringify(v)}`);
    }
    return v;
  }

  oneOf<T extends string>(
    d: Dict,
    key: string,
    path: string,
    allowed: readonly T[],
  ): T | undefined {
    const v = this.str(d, key, path);
    if (v !== undefined && !allowed.includes(v as T)) {
      throw new InputError(`${path}: expected one of ${allowed.join(", ")}, got "${v}"`);
    }
    return v as T | undefined;
  }
}

/**
 * Parses a training YAML: the original AnimateDiff `configs/training/*.yaml` keys plus ours.
 * Wrong types throw an InputError naming the key; unknown keys come back as `warnings` (one
 * line each, with the nearest known key). Paths go through `resolvePath` (default: as given).
 *
 * @example
 * ```ts
 * const { config, warnings } = parseTrainConfig(await Deno.readTextFile("train.yaml"));
 * for (const w of warnings) console.warn(`warning: ${w}`);
 * ```
 */
export function parseTrainConfig(
  text: string,
  options: { resolvePath?: (path: string) => string } = {},
): { config: TrainConfig; warnings: string[] } {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new InputError(
      `not valid YAML (${(e as Error).message.split("\n")[0].replace(/:$/, "")})`,
    );
  }
  const r = new Reader(options.resolvePath ?? ((p) => p));
  const top = r.dict(doc, "", TOP_KEYS);
  const D = ORIGINAL_DEFAULTS;
  const d = r.dict(top.train_data, "train_data", DATA_KEYS);
  const v = r.dict(top.validation_data, "validation_data", VALIDATION_KEYS);
  const s = r.dict(top.noise_scheduler_kwargs, "noise_scheduler_kwargs", SCHEDULER_KEYS);
  const l = r.dict(top.lora, "lora", ["rank", "alpha"]);
  const pos = { int: true, min: 1 };
  const videoFolder = r.path(d, "video_folder", "train_data.video_folder");
  if (!videoFolder) throw new InputError("train_data.video_folder: required (a folder of clips)");
  const outputDir = r.str(top, "output_dir", "output_dir");
  if (!outputDir) throw new InputError("output_dir: required (where checkpoints and weights go)");
  let sampleSize: number | [number, number] = D.sample_size;
  if (Array.isArray(d.sample_size)) {
    const [h, w] = d.sample_size;
    if (d.sample_size.length !== 2 || ![h, w].every((x) => Number.isInteger(x) && x > 0)) {
      throw new InputError(
        `train_data.sample_size: expected n or [height, width], got ${
          JSON.stringify(d.sample_size)
        }`,
      );
    }
    sampleSize = [h, w];
  } else sampleSize = r.num(d, "sample_size", "train_data.sample_size", pos) ?? D.sample_size;
  const prompts = v.prompts ?? [];
  if (!Array.isArray(prompts) || prompts.some((p) => typeof p !== "string")) {
    throw new InputError("validation_data.prompts: expected a list of strings");
  }
  const tuple = top.validation_steps_tuple ?? [];
  if (!Array.isArray(tuple) || tuple.some((t) => !Number.isInteger(t))) {
    throw new InputError("validation_steps_tuple: expected a list of step numbers");
  }
  const seed = r.num(top, "seed", "seed", { int: true, min: 0 });
  const globalSeed = r.num(top, "global_seed", "global_seed", { int: true, min: 0 });
  if (seed !== undefined && globalSeed !== undefined && seed !== globalSeed) {
    throw new InputError(`seed: ${seed} contradicts global_seed: ${globalSeed}; give one`);
  }
  const timesteps = r.num(s, "num_train_timesteps", "noise_scheduler_kwargs.num_train_timesteps");
  if (timesteps !== undefined && timesteps !== 1000) {
    throw new InputError(
      `noise_scheduler_kwargs.num_train_timesteps: only 1000 is supported, got ${timesteps}`,
    );
  }
  const prediction = r.str(s, "prediction_type", "noise_scheduler_kwargs.prediction_type");
  if (prediction !== undefined && prediction !== "epsilon") {
    throw new InputError(
      `noise_scheduler_kwargs.prediction_type: only epsilon is supported, got "${prediction}"`,
    );
  }
  const accumulation = r.num(
    top,
    "gradient_accumulation_steps",
    "gradient_accumulation_steps",
    pos,
  );
  if (accumulation !== undefined && accumulation !== 1) {
    throw new InputError(`gradient_accumulation_steps: only 1 is supported, got ${accumulation}`);
  }
  const imageFinetune = r.bool(top, "image_finetune", "image_finetune");
  const train = r.oneOf(top, "train", "train", TARGETS) ?? (imageFinetune ? "unet" : "motion");
  const mixed = r.bool(top, "mixed_precision_training", "mixed_precision_training");
  const precision = r.oneOf(top, "precision", "precision", ["f32", "f16"] as const);
  const batchSize = r.num(top, "train_batch_size", "train_batch_size", pos) ?? D.train_batch_size;
  let lr = r.num(top, "learning_rate", "learning_rate", { gt: 0 }) ?? D.learning_rate;
  if (r.bool(top, "scale_lr", "scale_lr")) lr *= batchSize;
  const rank = r.num(l, "rank", "lora.rank", pos);
  const alpha = r.num(l, "alpha", "lora.alpha", { gt: 0 });
  const ratio = r.num(top, "cfg_random_null_text_ratio", "cfg_random_null_text_ratio", { min: 0 });
  if (ratio !== undefined && ratio > 1) {
    throw new InputError(`cfg_random_null_text_ratio: expected a number from 0 to 1, got ${ratio}`);
  }
  const config: TrainConfig = {
    model: r.path(top, "pretrained_model_path", "pretrained_model_path"),
    modelConfig: r.path(top, "model_config", "model_config"),
    tokenizer: r.path(top, "tokenizer", "tokenizer"),
    outputDir,
    train,
    motionModule: r.path(top, "motion_module", "motion_module"),
    motionModuleConfig: r.path(top, "motion_module_config", "motion_module_config"),
    lora: rank === undefined && alpha === undefined
      ? undefined
      : { rank: rank ?? 32, alpha: alpha ?? rank ?? 32 },
    data: {
      videoFolder,
      csvPath: r.path(d, "csv_path", "train_data.csv_path"),
      sampleSize,
      sampleStride: r.num(d, "sample_stride", "train_data.sample_stride", pos) ?? D.sample_stride,
      sampleNFrames: r.num(d, "sample_n_frames", "train_data.sample_n_frames", pos) ??
        D.sample_n_frames,
      horizontalFlip: r.bool(d, "horizontal_flip", "train_data.horizontal_flip") ?? true,
    },
    validation: {
      prompts: prompts as string[],
      negativePrompt: r.str(v, "negative_prompt", "validation_data.negative_prompt") ?? "",
      steps: r.num(v, "num_inference_steps", "validation_data.num_inference_steps", pos),
      guidance: r.num(v, "guidance_scale", "validation_data.guidance_scale", { min: 0 }) ??
        D.guidance_scale,
      frames: r.num(v, "video_length", "validation_data.video_length", pos),
      width: r.num(v, "width", "validation_data.width", pos),
      height: r.num(v, "height", "validation_data.height", pos),
    },
    optimizer: {
      lr,
      betas: [
        r.num(top, "adam_beta1", "adam_beta1", { min: 0 }) ?? D.adam_beta1,
        r.num(top, "adam_beta2", "adam_beta2", { min: 0 }) ?? D.adam_beta2,
      ],
      eps: r.num(top, "adam_epsilon", "adam_epsilon", { gt: 0 }) ?? D.adam_epsilon,
      weightDecay: r.num(top, "adam_weight_decay", "adam_weight_decay", { min: 0 }) ??
        D.adam_weight_decay,
    },
    lrScheduler: r.oneOf(
      top,
      "lr_scheduler",
      "lr_scheduler",
      [
        "constant",
        "constant_with_warmup",
        "cosine",
      ] as const,
    ) ?? "constant",
    lrWarmupSteps: r.num(top, "lr_warmup_steps", "lr_warmup_steps", { int: true, min: 0 }) ??
      D.lr_warmup_steps,
    batchSize,
    maxTrainSteps: r.num(top, "max_train_steps", "max_train_steps", pos) ?? D.max_train_steps,
    checkpointingSteps: r.num(top, "checkpointing_steps", "checkpointing_steps", { int: true }) ??
      D.checkpointing_steps,
    validationSteps: r.num(top, "validation_steps", "validation_steps", { int: true }) ??
      D.validation_steps,
    validationStepsTuple: tuple as number[],
    seed: seed ?? globalSeed ?? D.seed,
    noiseSchedule: {
      betaStart: r.num(s, "beta_start", "noise_scheduler_kwargs.beta_start", { gt: 0 }) ?? 0.00085,
      betaEnd: r.num(s, "beta_end", "noise_scheduler_kwargs.beta_end", { gt: 0 }) ?? 0.012,
      betaSchedule: r.oneOf(
        s,
        "beta_schedule",
        "noise_scheduler_kwargs.beta_schedule",
        [
          "linear",
          "scaled_linear",
        ] as const,
      ) ?? "linear",
    },
    nullTextRatio: r.bool(top, "cfg_random_null_text", "cfg_random_null_text") === false
      ? 0
      : ratio ?? D.cfg_random_null_text_ratio,
    maxGradNorm: r.num(top, "max_grad_norm", "max_grad_norm", { min: 0 }) ?? D.max_grad_norm,
    gradientCheckpointing: r.bool(top, "gradient_checkpointing", "gradient_checkpointing") ?? false,
    precision: precision ?? (mixed ? "f16" : "f32"),
    mixedFromOriginal: precision === undefined && mixed === true,
    resumeFromCheckpoint: r.str(top, "resume_from_checkpoint", "resume_from_checkpoint"),
  };
  if (config.resumeFromCheckpoint && config.resumeFromCheckpoint !== "latest") {
    config.resumeFromCheckpoint = r.resolvePath(config.resumeFromCheckpoint);
  }
  if (config.lora && train !== "motion-lora") {
    r.warnings.push(`lora: only used with train: motion-lora (this run trains ${train})`);
  }
  return { config, warnings: r.warnings };
}
