/**
 * The demo models' training recipe (../shared/DESIGN.md "The built-in demo models"), the
 * AnimateDiff paper's in miniature, as four stages that each carry the weights of the last
 * forward in memory:
 *
 * 1. `vae`: a small AutoencoderKL (64 x 64 RGB <-> 8 x 8 x 4 latents) trained on stills of both
 *    backgrounds; its latent scaling factor is then measured (1 / std of the latents, as SD's
 *    0.18215 was).
 * 2. `unet`: a text-to-image UNet and its CLIP-style text encoder (the demo tokenizer) trained
 *    together from scratch on dark-background stills, with the VAE frozen.
 * 3. `motion`: a motion module from zero-init trained on dark clips, everything else frozen.
 * 4. `paper`: the personalised variant `demo:paper`: a UNet LoRA (or a full fine-tune) on
 *    paper-background stills only. The motion module never sees paper.
 *
 * Stills carry the clip's full prompt (`captionWithMotion`): the motion module reads text only
 * through the frozen UNet's cross-attention, so the UNet and text encoder must have seen the
 * motion words (trained embeddings, and a UNet that attends to sequences holding them); with
 * `a <colour> <shape>` captions the motion tokens would stay at their random initialisation and
 * every prompt the demo is asked would be out of the UNet's training distribution.
 *
 * Every draw is seeded: the world's samples from {@link WorldRng}, the weights' initialisation and
 * the trainers' noise and timesteps from the recipe seed. Training data seeds stay below 800,000
 * (the bench generates from 900,000 up). Outputs are f16 safetensors in a diffusers-style folder:
 * `unet/`, `vae/`, `text_encoder/`, `tokenizer/` (loadModel reads the folder), the motion module
 * in the original AnimateDiff layout with its MotionAdapter config beside it, the paper LoRA
 * (kohya layout) or UNet, and `recipe.json` (configs and each stage's time and losses). Within a
 * run the trained parts pass from stage to stage in memory (f32); a lone stage (`stage` option)
 * starts from the f16 files instead.
 * @module
 */

import { join } from "node:path";
import { Gpu } from "../../kernels/gpu/device.ts";
import {
  createTrainer,
  type TrainerOptions,
  type TrainTensor,
} from "../../engine/training/trainer.ts";
import { newModel } from "../../engine/training/init.ts";
import { newMotionConfig } from "../../engine/training/init.ts";
import { ARCHITECTURE } from "../../engine/models/architecture.ts";
import { WeightStore } from "../../engine/weight_store.ts";
import { VaeDecoder, VaeEncoder } from "../../engine/models/vae.ts";
import type {
  ClipConfig,
  MotionConfig,
  UNetConfig,
  VaeConfig,
} from "../../weights/model_config.ts";
import type { ModelWeights, TensorMap } from "../../weights/types.ts";
import { memoryTensor } from "../../weights/tiny.ts";
import { demoTokenizer, demoVocabSize } from "../../weights/demo.ts";
import { openSafetensors, writeSafetensors } from "../../weights/safetensors.ts";
import {
  clipConfigJson,
  motionAdapterConfigJson,
  unetConfigJson,
  vaeConfigJson,
} from "../../weights/detect.ts";
import {
  allPrompts,
  type Background,
  parsePrompt,
  renderClip,
  renderStill,
  WorldRng,
  type WorldStill,
} from "./world.ts";

/** The stages, in order. */
export const STAGES = ["vae", "unet", "motion", "paper", "decoder", "calibrate"] as const;
/** A stage of the recipe. */
export type Stage = typeof STAGES[number];
/** The stages that train (calibrate is closed-form). */
export type TrainedStage = Exclude<Stage, "calibrate">;
/** Each trained stage's index in its seed (fixed: the seeds do not move with the stage list). */
const TRAINED_STAGE_INDEX: Record<TrainedStage, number> = {
  vae: 0,
  unet: 1,
  motion: 2,
  paper: 3,
  decoder: 4,
};

/**
 * How one stage trains: steps, samples per step and AdamW's rate (warm-up, then cosine to 0).
 *
 * @example
 * ```ts
 * const s: StageSettings = { steps: 1000, batch: 8, lr: 1e-3, warmup: 50 };
 * ```
 */
export interface StageSettings {
  /** Optimiser steps. */
  steps: number;
  /** Stills (or clips, for `motion`) per step. */
  batch: number;
  /** Peak learning rate. */
  lr: number;
  /** Linear warm-up steps. */
  warmup: number;
  /**
   * Stills (or clips) rendered and encoded by the frozen VAE once, before the stage; each step
   * draws from them with a fresh posterior sample, caption dropout and noise. Omitted: every
   * step renders and encodes its own (the VAE stage always does).
   */
  pool?: number;
  /**
   * UNet, motion and paper stages: this share of the samples draws its timestep from
   * [from, 1000) instead of [0, 1000). Colours and where the object is in each frame are
   * decided at high noise, where the epsilon loss is smallest (about SNR(t) times the error in
   * x0), so uniform timesteps leave the gradient to the low-noise steps, which only refine
   * detail. Omitted: uniform, as the trainer draws them.
   */
  highNoise?: { from: number; share: number };
}

/**
 * The whole recipe: sizes, model configs and each stage's settings.
 *
 * @example
 * ```ts
 * const config: RecipeConfig = { ...DEMO_RECIPE, seed: 2 };
 * ```
 */
export interface RecipeConfig {
  /** Seeds every draw. */
  seed: number;
  /** Frame side in pixels (a multiple of 8). */
  size: number;
  /** Frames per training clip. */
  frames: number;
  unet: UNetConfig;
  vae: VaeConfig;
  clip: ClipConfig;
  /** The motion module's heads, groups and table length (its channels follow the UNet). */
  motion: Pick<MotionConfig, "heads" | "normGroups" | "maxSeqLength">;
  /** demo:paper: a UNet LoRA of this rank and alpha, or null for a full fine-tune. */
  paperLora: { rank: number; alpha: number } | null;
  /** Share of captions replaced by "" (classifier-free guidance needs the unconditional model). */
  nullTextRatio: number;
  /** Global gradient-norm clipping. */
  maxGradNorm: number;
  /**
   * The world's motion blur in the UNet, motion and paper stages: afterimages per frame (see
   * world.ts `afterimages`; default 0). The VAE stages draw plain stills: reconstruction does not
   * depend on it.
   */
  afterimages?: number;
  /** Spacing of the afterimages as a fraction of the object's size (world.ts default if omitted). */
  afterimageSpacing?: number;
  /**
   * Object sizes in the UNet, motion and paper stages, as world.ts `objectScale` (default 1).
   * The VAE stages draw the default sizes (see {@link worldOptions}).
   */
  objectScale?: number;
  stages: Record<TrainedStage, StageSettings>;
}

/** CLIP's sequence length (the text encoder's positions). */
const MAX_POSITIONS = 77;
/** Training data seeds are drawn below this (the demo bench generates from 900,000 up). */
const DATA_SEED_LIMIT = 800_000;
/** One VAE step in this many trains on full frames; the others on crops around the object. */
const VAE_FULL_EVERY = 4;
/** VAE crop steps take this many crops (half the frame side) per full-frame still. */
const VAE_CROP_FACTOR = 4;
/** Images a pool encodes per VAE pass. */
const POOL_ENCODE_IMAGES = 32;
/** Stills measured for the VAE's scaling factor. */
const SCALING_SAMPLES = 64;

/**
 * The full-size recipe: 1 h 59 min on lavapipe (2 CPU cores); see tools/demo/train.ts.
 *
 * @example
 * ```ts
 * await runRecipe(DEMO_RECIPE, { out: "demo-weights" });
 * ```
 */
export const DEMO_RECIPE: RecipeConfig = {
  seed: 0,
  size: 64,
  frames: 8,
  vae: {
    inChannels: 3,
    latentChannels: 4,
    blockOutChannels: [16, 32, 64, 64],
    layersPerBlock: 1,
    normGroups: 8,
    normEps: 1e-6,
    scalingFactor: 1,
    hasQuantConv: true,
  },
  unet: {
    inChannels: 4,
    outChannels: 4,
    blockOutChannels: [32, 64],
    layersPerBlock: 1,
    downBlockAttention: [true, true],
    upBlockAttention: [true, true],
    midBlockAttention: true,
    crossAttentionDim: 64,
    attentionHeads: [2, 4],
    transformerLayersPerBlock: 1,
    normGroups: 8,
    normEps: 1e-5,
    useLinearProjection: false,
    flipSinToCos: true,
    freqShift: 0,
    timeEmbeddingDim: 128,
  },
  clip: demoClipConfig({ hiddenSize: 64, intermediateSize: 256, layers: 2, heads: 4 }),
  motion: { heads: 4, normGroups: 8, maxSeqLength: 32 },
  paperLora: { rank: 16, alpha: 16 },
  nullTextRatio: 0.1,
  maxGradNorm: 1,
  objectScale: 1.4,
  afterimages: 8,
  afterimageSpacing: 0.12,
  stages: {
    // Measured on lavapipe (2 cores, shared): vae 2.0, unet 1.2, motion 0.83, paper 0.71 and
    // decoder 2.1 s/step; 1 h 59 min in all with the latent pools' encoding
    // (weights/demo_model/recipe.json has every stage's figures). The VAE stages draw the default
    // world; objectScale and the afterimages are the diffusion stages' (see worldOptions).
    vae: { steps: 1400, batch: 4, lr: 2e-3, warmup: 50 },
    unet: {
      steps: 1300,
      batch: 16,
      // 2e-3, not 5e-4: in the same 1300 steps the UNet reads its prompt far better (held-out
      // stills: another colour word +36-73% loss, another shape +4-5%, against +27-40% and +1%).
      lr: 2e-3,
      warmup: 60,
      pool: 4096,
      highNoise: { from: 500, share: 0.3 },
    },
    motion: {
      steps: 1400,
      batch: 2,
      lr: 5e-4,
      warmup: 50,
      pool: 1536,
      highNoise: { from: 500, share: 0.5 },
    },
    paper: { steps: 180, batch: 16, lr: 1e-3, warmup: 12, pool: 2048 },
    decoder: { steps: 240, batch: 4, lr: 5e-4, warmup: 12 },
  },
};

/**
 * A text encoder config for the demo tokenizer's vocabulary.
 *
 * @example
 * ```ts
 * demoClipConfig({ hiddenSize: 32, intermediateSize: 64, layers: 1, heads: 2 }).vocabSize; // demoVocabSize()
 * ```
 */
export function demoClipConfig(
  o: Pick<ClipConfig, "hiddenSize" | "intermediateSize" | "layers" | "heads">,
): ClipConfig {
  const vocabSize = demoVocabSize();
  return {
    ...o,
    vocabSize,
    maxPositions: MAX_POSITIONS,
    layerNormEps: 1e-5,
    hiddenAct: "quick_gelu",
    eosTokenId: vocabSize - 1,
  };
}

/**
 * A micro recipe for tests and smoke runs: 32 x 32 frames, 4 frames a clip, the smallest
 * models the architecture allows and two steps a stage.
 *
 * @example
 * ```ts
 * await runRecipe(microRecipe(), { out: await Deno.makeTempDir() });
 * ```
 */
export function microRecipe(seed = 0): RecipeConfig {
  const stage = { steps: 2, batch: 2, lr: 1e-3, warmup: 0 };
  return {
    ...DEMO_RECIPE,
    seed,
    size: 32,
    frames: 4,
    vae: { ...DEMO_RECIPE.vae, blockOutChannels: [8, 8, 8, 8], normGroups: 4 },
    unet: {
      ...DEMO_RECIPE.unet,
      blockOutChannels: [16, 16],
      crossAttentionDim: 16,
      attentionHeads: [2, 2],
      normGroups: 4,
      timeEmbeddingDim: 32,
    },
    clip: demoClipConfig({ hiddenSize: 16, intermediateSize: 32, layers: 1, heads: 2 }),
    motion: { heads: 2, normGroups: 4, maxSeqLength: 32 },
    paperLora: { rank: 2, alpha: 2 },
    stages: {
      vae: stage,
      unet: { ...stage, pool: 3 },
      // highNoise here so that the micro run covers the stage-drawn timesteps too.
      motion: { ...stage, batch: 1, pool: 2, highNoise: { from: 500, share: 0.5 } },
      paper: stage,
      decoder: stage,
    },
  };
}

/** The motion module's config for a recipe. */
export function motionConfigOf(config: RecipeConfig): MotionConfig {
  return newMotionConfig(config.unet, config.motion);
}

/**
 * Parameter counts of each part of a recipe's models.
 *
 * @example
 * ```ts
 * parameterCounts(DEMO_RECIPE).unet; // trainable values of the UNet
 * ```
 */
export function parameterCounts(config: RecipeConfig): Record<string, number> {
  const count = (m: Map<string, number[]>, skip = (_: string) => false) =>
    [...m].reduce((s, [n, shape]) => s + (skip(n) ? 0 : shape.reduce((a, b) => a * b, 1)), 0);
  const shapes = ARCHITECTURE.model({ unet: config.unet, vae: config.vae, clip: config.clip });
  const out: Record<string, number> = {
    vae: count(shapes.vae),
    unet: count(shapes.unet),
    textEncoder: count(shapes.textEncoder),
    motion: count(ARCHITECTURE.motion(motionConfigOf(config)), (n) => n.endsWith(".pe")),
  };
  if (config.paperLora) {
    // One A [rank, in] and B [out, rank] per spatial attention projection.
    const r = config.paperLora.rank;
    out.paperLora = [...shapes.unet].reduce(
      (s, [n, shape]) =>
        /attentions\.\d+\.transformer_blocks\.\d+\.attn[12]\.to_(q|k|v|out\.0)\.weight$/.test(n)
          ? s + r * (shape[0] + shape[1])
          : s,
      0,
    );
  } else out.paperUnet = out.unet;
  return out;
}

/**
 * A stage's progress after each step.
 *
 * @example
 * ```ts
 * const onProgress = (p: StageProgress) => console.error(p.stage, p.step, p.loss);
 * ```
 */
export interface StageProgress {
  stage: Stage;
  /** Steps done. */
  step: number;
  /** Steps this run of the stage takes. */
  steps: number;
  /** This step's loss. */
  loss: number;
  /** Mean wall seconds per step so far. */
  secondsPerStep: number;
  /** Seconds left at that rate. */
  etaSeconds: number;
}

/**
 * What a stage did.
 *
 * @example
 * ```ts
 * const r: StageReport = summary.stages.vae!;
 * r.secondsPerStep;
 * ```
 */
export interface StageReport {
  /** Steps taken (the config's times the steps scale, at least 1). */
  steps: number;
  /** Wall seconds of the whole stage (data, training, writing). */
  seconds: number;
  /** Mean wall seconds per training step. */
  secondsPerStep: number;
  /** The stage's full (unscaled) steps, as configured (0 for closed-form stages). */
  fullSteps?: number;
  /** Seconds the stage's full (unscaled) steps would take at that rate. */
  fullSeconds: number;
  /** Mean loss over the first and last tenth of the steps. */
  firstLoss: number;
  lastLoss: number;
  /** Trainable values. */
  parameters: number;
}

/**
 * `recipe.json`: the configs as trained and each stage's report.
 *
 * @example
 * ```ts
 * const s: RecipeSummary = JSON.parse(await Deno.readTextFile("out/recipe.json"));
 * ```
 */
export interface RecipeSummary {
  config: RecipeConfig;
  /** The motion module's config (MotionAdapter keys are in motion_module.config.json). */
  motionConfig: MotionConfig;
  stepsScale: number;
  stages: Partial<Record<Stage, StageReport>>;
  /** Bytes of every weights file written (f16). */
  weightBytes: Record<string, number>;
  totalWeightBytes: number;
  /** Sum of the stages' seconds (this run). */
  seconds: number;
}

/**
 * Options of {@link runRecipe}.
 *
 * @example
 * ```ts
 * const o: RunRecipeOptions = { out: "demo-weights", stepsScale: 0.01, stage: "motion" };
 * ```
 */
export interface RunRecipeOptions {
  /** Output folder (created). */
  out: string;
  /** Multiplies every stage's steps (at least one step is taken). Default 1. */
  stepsScale?: number;
  /** Run only this stage, from the previous stages' outputs in `out`. */
  stage?: Stage;
  /** Called after every step. */
  onProgress?: (p: StageProgress) => void;
  /** Called when a stage ends. */
  onStage?: (stage: Stage, report: StageReport) => void;
  /** Called when a stage's latent pool is encoded: its size and the seconds it took. */
  onPool?: (stage: Stage, size: number, seconds: number) => void;
  /** Run on this Gpu (default: a new one, destroyed at the end). */
  gpu?: Gpu;
}

/** The output files, relative to the output folder. */
export const OUTPUT_FILES = {
  unet: "unet/diffusion_pytorch_model.safetensors",
  vae: "vae/diffusion_pytorch_model.safetensors",
  textEncoder: "text_encoder/model.safetensors",
  motion: "motion_module.safetensors",
  motionConfig: "motion_module.config.json",
  paperLora: "paper_lora.safetensors",
  paperUnet: "paper/unet/diffusion_pytorch_model.safetensors",
  summary: "recipe.json",
} as const;

/**
 * Runs the recipe (or one stage of it) and writes its outputs; returns the summary it wrote.
 *
 * @example
 * ```ts
 * const summary = await runRecipe(DEMO_RECIPE, { out: "demo-weights", stepsScale: 0.01 });
 * summary.stages.unet!.secondsPerStep;
 * ```
 */
export async function runRecipe(
  config: RecipeConfig,
  options: RunRecipeOptions,
): Promise<RecipeSummary> {
  checkRecipe(config);
  const out = options.out, scale = options.stepsScale ?? 1;
  if (!(scale > 0)) throw new RangeError(`stepsScale: expected a number > 0, got ${scale}`);
  await Deno.mkdir(out, { recursive: true });
  const previous = options.stage ? await readSummary(out) : null;
  if (options.stage && options.stage !== "vae" && !previous) {
    throw new Error(`stage ${options.stage}: ${join(out, OUTPUT_FILES.summary)} is missing`);
  }
  // A single stage continues the configs the earlier stages were trained with (the VAE's
  // measured scaling factor among them); the caller's config is never changed.
  const used: RecipeConfig = structuredClone(previous?.config ?? config);
  const summary: RecipeSummary = {
    config: used,
    motionConfig: motionConfigOf(used),
    stepsScale: scale,
    stages: previous?.stages ?? {},
    weightBytes: {},
    totalWeightBytes: 0,
    seconds: 0,
  };
  const gpu = options.gpu ?? await Gpu.create();
  const ctx: StageContext = { config: used, carried: {}, gpu, out, scale, options };
  try {
    for (const stage of options.stage ? [options.stage] : STAGES) {
      const t0 = performance.now();
      const report = await STAGE_RUNNERS[stage](ctx);
      report.seconds = (performance.now() - t0) / 1000;
      summary.stages[stage] = report;
      summary.seconds += report.seconds;
      options.onStage?.(stage, report);
      await writeSummary(out, summary);
    }
  } finally {
    if (!options.gpu) gpu.destroy();
  }
  return summary;
}

/**
 * Throws a RangeError naming the first setting of a recipe that cannot be trained.
 *
 * @example
 * ```ts
 * checkRecipe(DEMO_RECIPE); // fine
 * ```
 */
export function checkRecipe(c: RecipeConfig): void {
  if (!Number.isInteger(c.size) || c.size < 16 || c.size % 8) {
    throw new RangeError(`size: expected a multiple of 8 >= 16, got ${c.size}`);
  }
  const levels = c.vae.blockOutChannels.length;
  if (levels !== 4) {
    throw new RangeError(
      `vae.blockOutChannels: expected 4 levels (8x downsampling), got ${levels}`,
    );
  }
  if (c.unet.crossAttentionDim !== c.clip.hiddenSize) {
    throw new RangeError(
      `unet.crossAttentionDim ${c.unet.crossAttentionDim} must equal clip.hiddenSize ${c.clip.hiddenSize}`,
    );
  }
  if (c.clip.vocabSize !== demoVocabSize()) {
    throw new RangeError(`clip.vocabSize: expected demoVocabSize() ${demoVocabSize()}`);
  }
  for (const stage of Object.keys(c.stages) as TrainedStage[]) {
    const s = c.stages[stage];
    if (!(s.steps >= 1 && s.batch >= 1 && s.lr > 0 && s.warmup >= 0)) {
      throw new RangeError(`stages.${stage}: expected steps, batch >= 1, lr > 0, warmup >= 0`);
    }
    checkHighNoise(stage, s.highNoise);
  }
  // The world's options are checked by drawing one frame: its errors name the option.
  renderClip(0, { frames: 1, width: c.size, height: c.size, ...worldOptions(c, true) });
}

interface StageContext {
  config: RecipeConfig;
  /** Trained parts carried forward in memory (f32); a lone `--stage` reads the files instead. */
  carried: Partial<Record<PartName, TensorMap>>;
  gpu: Gpu;
  out: string;
  scale: number;
  options: RunRecipeOptions;
}

type StageRunner = (ctx: StageContext) => Promise<StageReport>;

const STAGE_RUNNERS: Record<Stage, StageRunner> = {
  vae: trainVaeStage,
  calibrate: calibrateStage,
  decoder: trainDecoderStage,
  unet: trainTextToImageStage,
  motion: trainMotionStage,
  paper: trainPaperStage,
};

/** Stage 1: the VAE on stills of both backgrounds, then its scaling factor. */
async function trainVaeStage(ctx: StageContext): Promise<StageReport> {
  const c = ctx.config;
  const model = newModel({ unet: c.unet, vae: c.vae, clip: c.clip }, c.seed * 4 + 1);
  const data = new StillSource(c, "vae", null, false);
  // The objects cover ~2% of a frame, so full frames alone teach the backgrounds long before
  // the objects: all but one step in VAE_FULL_EVERY train on crops around the object instead
  // (the VAE is convolutional), VAE_CROP_FACTOR times as many at a quarter of the pixels each.
  let step = 0;
  const { report, params } = await train(ctx, "vae", {
    modelWeights: model,
    train: "vae",
  }, () => {
    const b = c.stages.vae.batch;
    const crop = step++ % VAE_FULL_EVERY !== 0;
    return {
      pixels: crop ? data.next(b * VAE_CROP_FACTOR, c.size / 2).pixels : data.next(b).pixels,
    };
  });
  const vae = withValues(model.vae, params);
  c.vae.scalingFactor = await measureScalingFactor(ctx.gpu, c, vae);
  await writePart(ctx, "vae", vae);
  await writeJson(join(ctx.out, "vae/config.json"), vaeConfigJson(c.vae));
  return report;
}

/**
 * Stage 5: the VAE decoder trained on, its encoder frozen (the latent space the UNet learned
 * stays): the short VAE stage leaves the hues of small objects on the dark background off (a red
 * disc comes back orange), and the demo's prompts are about those hues. Nothing trained earlier
 * reads the decoder, so this stage can run last.
 */
async function trainDecoderStage(ctx: StageContext): Promise<StageReport> {
  const c = ctx.config;
  const base = await readPart(ctx, "vae");
  const model: ModelWeights = {
    ...newModel({ unet: c.unet, vae: c.vae, clip: c.clip }, c.seed * 4 + 1),
    vae: base,
  };
  const data = new StillSource(c, "decoder", null, false);
  let step = 0;
  const { report, params } = await train(ctx, "decoder", {
    modelWeights: model,
    train: "vae",
    vaeDecoderOnly: true,
  }, () => {
    const b = c.stages.decoder.batch;
    const crop = step++ % VAE_FULL_EVERY !== 0;
    return {
      pixels: crop ? data.next(b * VAE_CROP_FACTOR, c.size / 2).pixels : data.next(b).pixels,
    };
  });
  await writePart(ctx, "vae", withValues(base, params));
  return report;
}

/**
 * Stage 1b: the decoder's output colours calibrated in closed form (no training steps; nothing
 * later depends on the decoder, so a lone `--stage calibrate` after a run gives the same
 * model).
 */
async function calibrateStage(ctx: StageContext): Promise<StageReport> {
  const c = ctx.config;
  const vae = await calibrateDecoderColours(ctx.gpu, c, await readPart(ctx, "vae"));
  await writePart(ctx, "vae", vae);
  return {
    steps: 0,
    seconds: 0,
    secondsPerStep: 0,
    fullSeconds: 0,
    firstLoss: 0,
    lastLoss: 0,
    parameters: 12,
  };
}

/** Stage 2: UNet + text encoder from scratch on dark stills, the VAE frozen. */
async function trainTextToImageStage(ctx: StageContext): Promise<StageReport> {
  const c = ctx.config;
  const fresh = newModel({ unet: c.unet, vae: c.vae, clip: c.clip }, c.seed * 4 + 2);
  const model: ModelWeights = {
    ...fresh,
    vae: await readPart(ctx, "vae"),
    tokenizer: demoTokenizer(),
  };
  const data = await pooled(ctx, model.vae, "unet", new StillSource(c, "unet", "dark"));
  const { report, params } = await train(ctx, "unet", {
    modelWeights: model,
    train: "unet",
    trainTextEncoder: true,
  }, () => data.next(c.stages.unet.batch));
  await writePart(ctx, "unet", withValues(fresh.unet, params));
  await writePart(ctx, "textEncoder", withValues(fresh.textEncoder, params));
  await writeJson(join(ctx.out, "unet/config.json"), unetConfigJson(c.unet));
  await writeJson(join(ctx.out, "text_encoder/config.json"), clipConfigJson(c.clip));
  const tok = demoTokenizer();
  await Deno.mkdir(join(ctx.out, "tokenizer"), { recursive: true });
  await Deno.writeTextFile(join(ctx.out, "tokenizer/vocab.json"), tok.vocabJson);
  await Deno.writeTextFile(join(ctx.out, "tokenizer/merges.txt"), tok.mergesTxt);
  await writeJson(join(ctx.out, "model_index.json"), {
    _class_name: "StableDiffusionPipeline",
    unet: ["diffusers", "UNet2DConditionModel"],
    vae: ["diffusers", "AutoencoderKL"],
    text_encoder: ["transformers", "CLIPTextModel"],
    tokenizer: ["transformers", "CLIPTokenizer"],
  });
  return report;
}

/** Stage 3: a motion module from zero-init on dark clips, everything else frozen. */
async function trainMotionStage(ctx: StageContext): Promise<StageReport> {
  const c = ctx.config;
  const model = await readModel(ctx, c);
  const data = await pooled(ctx, model.vae, "motion", new ClipSource(c));
  const config = motionConfigOf(c);
  await writeJson(join(ctx.out, OUTPUT_FILES.motionConfig), motionAdapterConfigJson(config));
  const { report } = await train(
    ctx,
    "motion",
    {
      modelWeights: model,
      train: "motion",
      motionModuleConfig: join(ctx.out, OUTPUT_FILES.motionConfig),
    },
    () => data.next(c.stages.motion.batch),
    async (trainer) => {
      // trainer.save writes the original AnimateDiff layout in f32; the shipped file is f16.
      await savedAsF16(ctx, trainer, "motion");
    },
  );
  return report;
}

/**
 * A diffusion stage's timesteps: uniform in [0, 1000), or with the stage's `highNoise` a share
 * of them uniform in [from, 1000) (seeded per stage).
 */
export class TimestepDraw {
  readonly #rng: WorldRng;
  readonly #high: { from: number; share: number } | null;

  constructor(c: RecipeConfig, stage: TrainedStage) {
    this.#rng = new WorldRng(`${stage} timesteps ${c.seed}`);
    const h = c.stages[stage].highNoise ?? null;
    checkHighNoise(stage, h);
    this.#high = h;
  }

  /** Whether the stage sets its own timesteps (else the trainer draws them). */
  get leaning(): boolean {
    return this.#high !== null;
  }

  next(): number {
    const from = this.#high && this.#rng.next() < this.#high.share ? this.#high.from : 0;
    return from + this.#rng.int(1000 - from);
  }
}

/** Throws a RangeError unless `h` is a valid `highNoise` setting for `stage` (or absent). */
function checkHighNoise(stage: TrainedStage, h: StageSettings["highNoise"] | null): void {
  if (!h) return;
  if (stage === "vae" || stage === "decoder") {
    throw new RangeError(`stages.${stage}.highNoise: only the diffusion stages draw timesteps`);
  }
  if (!(Number.isInteger(h.from) && h.from >= 0 && h.from < 1000 && h.share >= 0 && h.share <= 1)) {
    throw new RangeError(
      `stages.${stage}.highNoise: expected from an integer in [0, 1000) and share in [0, 1], got ${
        JSON.stringify(h)
      }`,
    );
  }
}

/** Stage 4: demo:paper, the base UNet personalised on paper stills (a LoRA or a fine-tune). */
async function trainPaperStage(ctx: StageContext): Promise<StageReport> {
  const c = ctx.config;
  const model = await readModel(ctx, c);
  const data = await pooled(ctx, model.vae, "paper", new StillSource(c, "paper", "paper"));
  const unet = model.unet;
  const { report, params } = await train(
    ctx,
    "paper",
    {
      modelWeights: model,
      train: "unet",
      lora: c.paperLora ?? undefined,
    },
    () => data.next(c.stages.paper.batch),
    async (trainer) => {
      if (c.paperLora) await savedAsF16(ctx, trainer, "paperLora");
    },
  );
  if (!c.paperLora) {
    await writePart(ctx, "paperUnet", withValues(unet, params));
    await writeJson(join(ctx.out, "paper/unet/config.json"), unetConfigJson(c.unet));
  }
  return report;
}

type Trainer = Awaited<ReturnType<typeof createTrainer>>;

/** The training loop of one stage: seeded, warm-up then cosine, progress after every step. */
async function train(
  ctx: StageContext,
  stage: TrainedStage,
  options: TrainerOptions,
  batch: () => Parameters<Trainer["step"]>[0],
  save?: (trainer: Trainer) => Promise<void>,
): Promise<{ report: StageReport; params: Map<string, Float32Array> }> {
  const s = ctx.config.stages[stage];
  const steps = Math.max(1, Math.round(s.steps * ctx.scale));
  const trainer = await createTrainer({
    ...options,
    optimizer: { lr: s.lr },
    maxGradNorm: ctx.config.maxGradNorm,
    lrScheduler: "cosine",
    lrWarmupSteps: Math.min(s.warmup, steps - 1),
    maxTrainSteps: steps,
    seed: ctx.config.seed * 4 + TRAINED_STAGE_INDEX[stage] + 11,
    gpu: ctx.gpu,
  });
  try {
    const losses: number[] = [];
    let trainSeconds = 0;
    const draw = new TimestepDraw(ctx.config, stage);
    for (let i = 0; i < steps; i++) {
      const b = batch();
      if (draw.leaning) b.timesteps = Array.from({ length: s.batch }, () => draw.next());
      const t0 = performance.now();
      const { loss } = await trainer.step(b);
      trainSeconds += (performance.now() - t0) / 1000;
      if (!Number.isFinite(loss)) throw new Error(`${stage}: step ${i + 1}: the loss is ${loss}`);
      losses.push(loss);
      const secondsPerStep = trainSeconds / (i + 1);
      ctx.options.onProgress?.({
        stage,
        step: i + 1,
        steps,
        loss,
        secondsPerStep,
        etaSeconds: secondsPerStep * (steps - i - 1),
      });
    }
    const tenth = Math.max(1, Math.floor(steps / 10));
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const params = await trainer.readParameters();
    await save?.(trainer);
    const secondsPerStep = trainSeconds / steps;
    const report: StageReport = {
      steps,
      seconds: 0,
      secondsPerStep,
      fullSteps: s.steps,
      fullSeconds: secondsPerStep * s.steps,
      firstLoss: mean(losses.slice(0, tenth)),
      lastLoss: mean(losses.slice(-tenth)),
      parameters: [...params.values()].reduce((n, v) => n + v.length, 0),
    };
    return { report, params };
  } finally {
    trainer.dispose();
  }
}

/** `map` with the trained values of its names from `params` (others unchanged). */
function withValues(map: TensorMap, params: Map<string, Float32Array>): TensorMap {
  const out: TensorMap = new Map();
  for (const [name, t] of map) {
    const v = params.get(name);
    out.set(name, v ? memoryTensor(t.shape, v) : t);
  }
  return out;
}

/** Pixels in [-1, 1], [3, H, W], of an RGBA frame, written at `offset`. */
function putPixels(out: Float32Array, offset: number, rgba: Uint8ClampedArray): void {
  const n = rgba.length / 4;
  for (let p = 0; p < n; p++) {
    for (let c = 0; c < 3; c++) out[offset + c * n + p] = rgba[p * 4 + c] / 127.5 - 1;
  }
}

/**
 * A `side`-pixel square of a still holding its object, at a random offset (inside the frame).
 */
function cropAround(still: WorldStill, side: number, rng: WorldRng): Uint8ClampedArray {
  const { width, height, data } = still.frame;
  const [cx, cy] = still.truth.centres[0];
  const r = Math.min(still.truth.sizes[0] / 2, side / 2);
  const place = (c: number, full: number) => {
    const lo = Math.max(0, Math.ceil(c + r - side)), hi = Math.min(full - side, Math.floor(c - r));
    return hi >= lo
      ? lo + rng.int(hi - lo + 1)
      : Math.max(0, Math.min(full - side, Math.round(c - side / 2)));
  };
  const x0 = place(cx, width), y0 = place(cy, height);
  const out = new Uint8ClampedArray(side * side * 4);
  for (let y = 0; y < side; y++) {
    out.set(
      data.subarray(((y0 + y) * width + x0) * 4, ((y0 + y) * width + x0 + side) * 4),
      y * side * 4,
    );
  }
  return out;
}

/** Prompts dealt evenly (each pass shuffled), captions dropped at the null-text ratio. */
class PromptDealer {
  readonly rng: WorldRng;
  readonly #prompts = allPrompts();
  #order: string[] = [];

  /** Share of captions dropped (the recipe's null-text ratio unless a pool sets it). */
  dropRatio: number;

  constructor(readonly config: RecipeConfig, label: string) {
    this.rng = new WorldRng(`${label} ${config.seed}`);
    this.dropRatio = config.nullTextRatio;
  }

  /** The next prompt, a data seed, and the caption to train with. */
  next(): { prompt: string; seed: number; caption: (text: string) => string } {
    if (this.#order.length === 0) {
      this.#order = [...this.#prompts];
      for (let i = this.#order.length - 1; i > 0; i--) {
        const j = this.rng.int(i + 1);
        [this.#order[i], this.#order[j]] = [this.#order[j], this.#order[i]];
      }
    }
    const prompt = this.#order.pop()!;
    const seed = this.rng.int(DATA_SEED_LIMIT);
    const drop = this.rng.next() < this.dropRatio;
    return { prompt, seed, caption: (text) => (drop ? "" : text) };
  }
}

/** Stills of one background (or both, alternating) with their full prompts. */
class StillSource implements SampleSource {
  readonly dealer: PromptDealer;
  readonly frames = null;
  #count = 0;

  constructor(
    readonly config: RecipeConfig,
    label: string,
    readonly background: Background | null,
    /** Draw the diffusion stages' world (false: the default world's plain stills, VAE stages). */
    readonly diffusion = true,
  ) {
    this.dealer = new PromptDealer(config, `stills ${label}`);
  }

  /** `b` stills, or with `crop`, `crop`-pixel squares of them around the object. */
  next(
    b: number,
    crop?: number,
  ): { pixels: { shape: number[]; data: Float32Array }; prompts: string[] } {
    const s = this.config.size, side = crop ?? s, per = 3 * side * side;
    const data = new Float32Array(b * per);
    const prompts: string[] = [];
    for (let i = 0; i < b; i++) {
      const { prompt, seed, caption } = this.dealer.next();
      const background = this.background ?? (this.#count++ % 2 ? "paper" : "dark");
      const still = renderStill(seed, {
        ...parsePrompt(prompt),
        background,
        width: s,
        height: s,
        captionWithMotion: true,
        ...worldOptions(this.config, this.diffusion),
      });
      const rgba = crop ? cropAround(still, crop, this.dealer.rng) : still.frame.data;
      putPixels(data, i * per, rgba);
      prompts.push(caption(still.caption));
    }
    return { pixels: { shape: [b, 3, side, side], data }, prompts };
  }
}

/** Dark clips with their prompts, [b, frames, 3, H, W]. */
class ClipSource implements SampleSource {
  readonly dealer: PromptDealer;
  readonly frames: number;

  constructor(readonly config: RecipeConfig) {
    this.dealer = new PromptDealer(config, "clips");
    this.frames = config.frames;
  }

  next(b: number): { pixels: { shape: number[]; data: Float32Array }; prompts: string[] } {
    const { size: s, frames: f } = this.config, per = 3 * s * s;
    const data = new Float32Array(b * f * per);
    const prompts: string[] = [];
    for (let i = 0; i < b; i++) {
      const { prompt, seed, caption } = this.dealer.next();
      const clip = renderClip(seed, {
        ...parsePrompt(prompt),
        frames: f,
        width: s,
        height: s,
        ...worldOptions(this.config, true),
      });
      clip.frames.forEach((frame, t) => putPixels(data, (i * f + t) * per, frame.data));
      prompts.push(caption(clip.caption));
    }
    return { pixels: { shape: [b, f, 3, s, s], data }, prompts };
  }
}

/**
 * The world options of a recipe's diffusion stages (UNet, motion, paper): its object scale and
 * afterimages. With `diffusion` false (the VAE, decoder, calibration and scaling-factor stills)
 * none: the VAE stages draw the default world's plain stills. A convolutional VAE learns colours
 * and edges at any size, and this keeps those stages independent of the diffusion stages' world.
 * Programs that draw the world a model was trained on (the controls' input clip, the probe) take
 * these from its recipe.json `config`.
 *
 * @example
 * ```ts
 * renderClip(1, { frames: 8, ...worldOptions(DEMO_RECIPE, true) });
 * ```
 */
export function worldOptions(
  c: Pick<RecipeConfig, "afterimages" | "afterimageSpacing" | "objectScale">,
  diffusion: boolean,
): { afterimages?: number; afterimageSpacing?: number; objectScale?: number } {
  return diffusion
    ? {
      objectScale: c.objectScale,
      afterimages: c.afterimages,
      afterimageSpacing: c.afterimageSpacing,
    }
    : {};
}

/** What a stage trains on: pixels with prompts, or (pooled) latents with prompts. */
type Samples = { pixels?: TrainTensor; latents?: TrainTensor; prompts: string[] };

/** A sample source (stills or clips): `b` samples with their captions. */
interface SampleSource {
  readonly dealer: PromptDealer;
  readonly frames: number | null;
  next(b: number): { pixels: TrainTensor; prompts: string[] };
}

/**
 * The stage's samples: from a {@link LatentPool} of the stage's `pool` size when it has one,
 * else rendered every step.
 */
async function pooled(
  ctx: StageContext,
  vae: TensorMap,
  stage: TrainedStage,
  source: SampleSource,
): Promise<{ next(b: number): Samples }> {
  const size = ctx.config.stages[stage].pool;
  if (!size) return source;
  const t0 = performance.now();
  const pool = await LatentPool.build(ctx.gpu, ctx.config, vae, source, size, `${stage} pool`);
  ctx.options.onPool?.(stage, size, (performance.now() - t0) / 1000);
  return pool;
}

/**
 * Stills or clips encoded once by the frozen VAE (posterior means and log-variances kept on the
 * host); each draw takes random items, samples their posterior afresh (times the scaling
 * factor, as the trainer does with pixels) and drops captions at the null-text ratio.
 */
class LatentPool {
  readonly #rng: WorldRng;

  private constructor(
    readonly config: RecipeConfig,
    readonly mean: Float32Array,
    readonly logvar: Float32Array,
    readonly captions: string[],
    /** Values of one item: 4 x frames x h x w, diffusers' video layout for clips. */
    readonly itemShape: number[],
    label: string,
  ) {
    this.#rng = new WorldRng(`${label} draws ${config.seed}`);
  }

  static async build(
    gpu: Gpu,
    c: RecipeConfig,
    vae: TensorMap,
    source: SampleSource,
    count: number,
    label: string,
  ): Promise<LatentPool> {
    const frames = source.frames ?? 1, lat = c.size / 8, hw = lat * lat;
    const per = 4 * frames * hw;
    const mean = new Float32Array(count * per), logvar = new Float32Array(count * per);
    const captions: string[] = [];
    // Captions are kept whole; the pool drops them per draw.
    const ratio = source.dealer.dropRatio;
    source.dealer.dropRatio = 0;
    const chunk = Math.max(1, Math.floor(POOL_ENCODE_IMAGES / frames));
    await withEncoder(gpu, c, vae, async (encode) => {
      for (let i0 = 0; i0 < count; i0 += chunk) {
        const n = Math.min(chunk, count - i0);
        const { pixels, prompts } = source.next(n);
        captions.push(...prompts);
        const [m, lv] = await encode(pixels.data, [n * frames, 3, c.size, c.size]);
        // [(n * frames), 4, hw] -> [n, 4, frames, hw]
        for (let i = 0; i < n; i++) {
          for (let f = 0; f < frames; f++) {
            for (let ch = 0; ch < 4; ch++) {
              const from = ((i * frames + f) * 4 + ch) * hw;
              const to = (i0 + i) * per + (ch * frames + f) * hw;
              mean.set(m.subarray(from, from + hw), to);
              logvar.set(lv.subarray(from, from + hw), to);
            }
          }
        }
      }
    });
    source.dealer.dropRatio = ratio;
    const itemShape = source.frames ? [4, frames, lat, lat] : [4, lat, lat];
    return new LatentPool(c, mean, logvar, captions, itemShape, label);
  }

  next(b: number): Samples {
    const per = this.itemShape.reduce((x, y) => x * y, 1);
    const data = new Float32Array(b * per), prompts: string[] = [];
    const scale = this.config.vae.scalingFactor;
    for (let i = 0; i < b; i++) {
      const k = this.#rng.int(this.captions.length);
      for (let j = 0; j < per; j++) {
        // diffusers clamps the posterior's log-variance to [-30, 20].
        const lv = Math.min(20, Math.max(-30, this.logvar[k * per + j]));
        data[i * per + j] = (this.mean[k * per + j] + Math.exp(0.5 * lv) * this.#gauss()) * scale;
      }
      prompts.push(this.#rng.next() < this.config.nullTextRatio ? "" : this.captions[k]);
    }
    return { latents: { shape: [b, ...this.itemShape], data }, prompts };
  }

  /** A standard normal draw (Box-Muller). */
  #gauss(): number {
    const u = 1 - this.#rng.next(), v = this.#rng.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
}

/** Runs `fn` with an encoder of the frozen VAE: pixels in, posterior (mean, logvar) out. */
async function withEncoder<R>(
  gpu: Gpu,
  c: RecipeConfig,
  vae: TensorMap,
  fn: (encode: (pixels: Float32Array, shape: number[]) => Promise<Float32Array[]>) => Promise<R>,
): Promise<R> {
  const store = new WeightStore(gpu, vae, {
    dtype: "f32",
    part: "vae",
    ignore: (n) => n.startsWith("decoder.") || n.startsWith("post_quant_conv."),
  });
  try {
    const encoder = new VaeEncoder(store, c.vae);
    await store.loadAll();
    return await fn(async (pixels, shape) => {
      const x = gpu.upload(pixels, shape, "f32", "pixels");
      const { mean, logvar } = encoder.forward(gpu, x);
      const [m, lv] = await gpu.readMany([mean, logvar]);
      for (const t of [x, mean, logvar]) t.release();
      return [m, lv];
    });
  } finally {
    store.dispose();
  }
}

/** Stills the decoder's colour calibration fits on. */
const CALIBRATION_SAMPLES = 128;
/** Weight of a background pixel in the calibration (object pixels weigh 1). */
const BACKGROUND_WEIGHT = 0.02;

/**
 * The decoder's output colours calibrated in closed form: a short VAE run reproduces shapes and
 * places before it settles the hues of small objects (a red disc comes back orange), and the
 * demo's prompts are about those hues. Stills of both backgrounds go through the VAE (posterior
 * means); an affine colour map y' = A y + c is fitted by weighted least squares from the
 * decoded to the true pixels (object pixels, told apart by their saturation, weigh 1,
 * background pixels BACKGROUND_WEIGHT) and folded into `decoder.conv_out` (W' = A W,
 * b' = A b + c), which is linear, so the decoder stays a plain AutoencoderKL decoder.
 */
export async function calibrateDecoderColours(
  gpu: Gpu,
  c: RecipeConfig,
  vae: TensorMap,
): Promise<TensorMap> {
  const store = new WeightStore(gpu, vae, { dtype: "f32", part: "vae" });
  const { pixels } = new StillSource(c, "calibration", null, false).next(CALIBRATION_SAMPLES);
  let decoded: Float32Array;
  try {
    const encoder = new VaeEncoder(store, c.vae), decoder = new VaeDecoder(store, c.vae);
    await store.loadAll();
    const x = gpu.upload(pixels.data, pixels.shape, "f32", "pixels");
    const { mean, logvar } = encoder.forward(gpu, x);
    const y = decoder.forward(gpu, mean);
    decoded = await gpu.read(y);
    for (const t of [x, mean, logvar, y]) t.release();
  } finally {
    store.dispose();
  }
  // Normal equations of each output channel k: (sum w u u^T) a_k = sum w u t_k, u = [r, g, b, 1].
  const plane = c.size * c.size;
  const ata = new Float64Array(16), atb = new Float64Array(12);
  for (let n = 0; n < CALIBRATION_SAMPLES; n++) {
    for (let q = 0; q < plane; q++) {
      const at = (img: Float32Array, ch: number) => img[(n * 3 + ch) * plane + q];
      const t = [at(pixels.data, 0), at(pixels.data, 1), at(pixels.data, 2)];
      const u = [at(decoded, 0), at(decoded, 1), at(decoded, 2), 1];
      const saturation = Math.max(...t) - Math.min(...t);
      const w = saturation > 0.5 ? 1 : BACKGROUND_WEIGHT;
      for (let i = 0; i < 4; i++) {
        for (let j = 0; j < 4; j++) ata[i * 4 + j] += w * u[i] * u[j];
        for (let k = 0; k < 3; k++) atb[k * 4 + i] += w * u[i] * t[k];
      }
    }
  }
  const A = [0, 1, 2].map((k) => solve4(ata, atb.subarray(k * 4, k * 4 + 4)));
  const out: TensorMap = new Map(vae);
  const wt = vae.get("decoder.conv_out.weight")!, bt = vae.get("decoder.conv_out.bias")!;
  const W = await wt.read(), b = await bt.read();
  const per = W.length / 3;
  const W2 = new Float32Array(W.length), b2 = new Float32Array(3);
  for (let k = 0; k < 3; k++) {
    for (let j = 0; j < 3; j++) {
      for (let e = 0; e < per; e++) W2[k * per + e] += A[k][j] * W[j * per + e];
      b2[k] += A[k][j] * b[j];
    }
    b2[k] += A[k][3];
  }
  out.set("decoder.conv_out.weight", memoryTensor(wt.shape, W2));
  out.set("decoder.conv_out.bias", memoryTensor(bt.shape, b2));
  return out;
}

/** Solves the 4 x 4 system m x = v (Gaussian elimination with partial pivoting). */
function solve4(m: Float64Array, v: Float64Array): number[] {
  const a = Array.from({ length: 4 }, (_, i) => [...m.subarray(i * 4, i * 4 + 4), v[i]]);
  for (let col = 0; col < 4; col++) {
    let p = col;
    for (let r = col + 1; r < 4; r++) if (Math.abs(a[r][col]) > Math.abs(a[p][col])) p = r;
    [a[col], a[p]] = [a[p], a[col]];
    if (Math.abs(a[col][col]) < 1e-12) throw new Error("vae colour calibration: singular system");
    for (let r = 0; r < 4; r++) {
      if (r === col) continue;
      const f = a[r][col] / a[col][col];
      for (let k = col; k < 5; k++) a[r][k] -= f * a[col][k];
    }
  }
  return a.map((row, i) => row[4] / row[i]);
}

/** 1 / std of the VAE's latent means over stills of both backgrounds (as SD's 0.18215). */
async function measureScalingFactor(gpu: Gpu, c: RecipeConfig, vae: TensorMap): Promise<number> {
  const { pixels } = new StillSource(c, "scaling", null, false).next(SCALING_SAMPLES);
  const [m] = await withEncoder(gpu, c, vae, (encode) => encode(pixels.data, pixels.shape));
  const mu = m.reduce((a, v) => a + v, 0) / m.length;
  const std = Math.sqrt(m.reduce((a, v) => a + (v - mu) ** 2, 0) / m.length);
  if (!(std > 0) || !Number.isFinite(std)) throw new Error(`vae: latent std is ${std}`);
  return 1 / std;
}

type PartName = "unet" | "vae" | "textEncoder" | "paperUnet";

/** Keeps a part in memory for the next stages and writes it as f16 under its diffusers names. */
async function writePart(
  ctx: StageContext,
  part: PartName,
  tensors: TensorMap,
): Promise<void> {
  ctx.carried[part] = tensors;
  const path = join(ctx.out, OUTPUT_FILES[part]);
  await Deno.mkdir(join(path, ".."), { recursive: true });
  await writeSafetensors(
    path,
    [...tensors].map(([name, t]) => ({
      name,
      shape: t.shape,
      dtype: "F16" as const,
      data: () => t.read(),
    })),
    { metadata: { format: "pt" } },
  );
}

/** Saves through trainer.save (its layout and metadata), then rewrites the file in f16. */
async function savedAsF16(
  ctx: StageContext,
  trainer: Trainer,
  part: "motion" | "paperLora",
): Promise<void> {
  const path = join(ctx.out, OUTPUT_FILES[part]), f32 = `${path}.f32.safetensors`;
  await trainer.save(f32);
  const file = await openSafetensors(f32);
  try {
    await writeSafetensors(
      path,
      [...file.tensors].map(([name, t]) => ({
        name,
        shape: t.shape,
        dtype: "F16" as const,
        data: () => t.read(),
      })),
      { metadata: file.metadata },
    );
  } finally {
    file.close();
    await Deno.remove(f32);
  }
}

/** A part an earlier stage trained: carried in memory, or read from its f16 file. */
async function readPart(ctx: StageContext, part: PartName): Promise<TensorMap> {
  const carried = ctx.carried[part];
  if (carried) return carried;
  const path = join(ctx.out, OUTPUT_FILES[part]);
  const file = await openSafetensors(path).catch((e) => {
    throw new Error(`${path}: ${(e as Error).message} (run the earlier stages first)`);
  });
  try {
    const map: TensorMap = new Map();
    for (const [name, t] of file.tensors) map.set(name, memoryTensor(t.shape, await t.read()));
    return map;
  } finally {
    file.close();
  }
}

/** The base model the earlier stages trained, with the demo tokenizer. */
async function readModel(ctx: StageContext, c: RecipeConfig): Promise<ModelWeights> {
  return {
    source: `${ctx.out} (demo recipe)`,
    unet: await readPart(ctx, "unet"),
    vae: await readPart(ctx, "vae"),
    textEncoder: await readPart(ctx, "textEncoder"),
    unetConfig: c.unet,
    vaeConfig: c.vae,
    clipConfig: c.clip,
    tokenizer: demoTokenizer(),
    close() {},
  };
}

async function writeJson(path: string, json: unknown): Promise<void> {
  await Deno.mkdir(join(path, ".."), { recursive: true });
  await Deno.writeTextFile(path, JSON.stringify(json, null, 2) + "\n");
}

async function readSummary(out: string): Promise<RecipeSummary | null> {
  try {
    return JSON.parse(await Deno.readTextFile(join(out, OUTPUT_FILES.summary)));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/** Writes recipe.json with the sizes of every weights file now in `out`. */
async function writeSummary(out: string, summary: RecipeSummary): Promise<void> {
  summary.weightBytes = {};
  for (const file of Object.values(OUTPUT_FILES)) {
    if (!file.endsWith(".safetensors")) continue;
    const info = await Deno.stat(join(out, file)).catch(() => null);
    if (info) summary.weightBytes[file] = info.size;
  }
  summary.totalWeightBytes = Object.values(summary.weightBytes).reduce((a, b) => a + b, 0);
  await writeJson(join(out, OUTPUT_FILES.summary), summary);
}
