/**
 * `createTrainer`: one training step exactly as the original AnimateDiff `train.py` computes it
 * (and diffusers' text-to-image training for `train: "unet"`): latents from the VAE (or given),
 * DDPM noise at one timestep per sample, the epsilon-prediction MSE loss through the UNet with
 * the gradient tape on, the global gradient norm with torch's clipping, and AdamW on the f32
 * trainable parameters, in place on the GPU. Everything not trained stays frozen: its weights
 * are never watched, so gradients pass through them without a weight gradient.
 * @module
 */

import { Gpu } from "../../kernels/gpu/device.ts";
import type { Tensor } from "../../kernels/gpu/tensor.ts";
import { InputError } from "../../kernels/gpu/errors.ts";
import type { ModelWeights, MotionWeights } from "../../weights/types.ts";
import { loadModel, loadMotionModule, motionOverrides } from "../../weights/load.ts";
import { loadTinyDemoModel } from "../../weights/tiny.ts";
import { ARCHITECTURE } from "../models/architecture.ts";
import { WeightStore } from "../weight_store.ts";
import { ClipTextEncoder } from "../models/clip.ts";
import { UNet3D } from "../models/unet.ts";
import { VaeDecoder, VaeEncoder } from "../models/vae.ts";
import { ClipTokenizer } from "../tokenizer.ts";
import { alphasCumprod } from "../schedulers/schedule.ts";
import { ANIMATEDIFF_SCHEDULER_CONFIG, type BetaSchedule } from "../schedulers/config.ts";
import { newMotionConfig, newMotionModule } from "./init.ts";
import { DEFAULT_ADAMW, TrainableParameters } from "./parameters.ts";
import { attachLoras, DiffusionTrainer } from "./diffusion.ts";
import { VaeTrainer } from "./vae_trainer.ts";
import type { TrainTensor } from "./targets.ts";

export type { TrainTensor } from "./targets.ts";

/** What a trainer trains; everything else is frozen. */
export type TrainTarget = "motion" | "motion-lora" | "unet" | "vae";

/** The targets {@link createTrainer} can train today. */
const AVAILABLE: readonly TrainTarget[] = ["motion", "motion-lora", "unet", "vae"];

/** Options of {@link createTrainer} (names as ../shared/DESIGN.md, "Training"). */
export interface TrainerOptions {
  /** SD1.5 diffusers folder or single file; omitted: the built-in demo model. */
  model?: string;
  /**
   * Instead of `model`: weights in memory (e.g. `newModel(configs, seed)` to train from scratch,
   * with `tokenizer` files set for prompts).
   * @ignore
   */
  modelWeights?: ModelWeights;
  /** diffusers folder giving GroupNorm groups / heads for a single-file model. */
  modelConfig?: string;
  /** Folder with vocab.json + merges.txt (default: the model's). */
  tokenizer?: string;
  /**
   * unet: train the text encoder too (a text-to-image model from scratch, e.g. the demo); the
   * batch then needs prompts.
   */
  trainTextEncoder?: boolean;
  /** Continue from this motion module; omitted: a new one (proj_out zero-initialised). */
  motionModule?: string;
  /** MotionAdapter config.json (or folder) for a new or single-file module. */
  motionModuleConfig?: string;
  /** What is trained: motion modules, a MotionLoRA, the whole UNet, or the VAE. */
  train: TrainTarget;
  /**
   * motion-lora: rank and alpha of the MotionLoRA (default 32, 32); with train "unet": train a
   * LoRA on the UNet's spatial attentions instead of every UNet weight (DreamBooth-LoRA style).
   */
  lora?: { rank: number; alpha: number };
  /** AdamW (torch semantics). Defaults: lr 1e-4, betas [0.9, 0.999], eps 1e-8, decay 1e-2. */
  optimizer?: { lr?: number; betas?: [number, number]; eps?: number; weightDecay?: number };
  /** Global-norm gradient clipping as torch.nn.utils.clip_grad_norm_ (0 or absent: none). */
  maxGradNorm?: number;
  /** The DDPM training schedule (the paper's A/B/C); default AnimateDiff's linear 0.00085..0.012. */
  noiseSchedule?: { betaStart?: number; betaEnd?: number; betaSchedule?: BetaSchedule };
  /** vae: weight of the KL term. */
  klWeight?: number;
  /**
   * vae: train only the decoder (and post_quant_conv), the encoder frozen, so that the latent
   * space a UNet was trained on stays as it is. Default false.
   */
  vaeDecoderOnly?: boolean;
  /**
   * "f32" (default), or "f16": mixed precision (f16 weights and activations, f32 master weights
   * and optimiser state, dynamic loss scaling); needs an adapter with shader-f16.
   */
  precision?: "f32" | "f16";
  /** Mixed precision: the starting loss scale (default 2^16, as torch's GradScaler). */
  lossScale?: number;
  /** Learning-rate schedule after the warm-up: "constant" (default) or "cosine" to 0. */
  lrScheduler?: "constant" | "cosine";
  /** Steps of linear learning-rate warm-up from 0 (default 0). */
  lrWarmupSteps?: number;
  /** cosine: the step at which the rate reaches 0. */
  maxTrainSteps?: number;
  /** Seeds every draw the trainer makes (new-module init, noise, timesteps). */
  seed?: number;
  /**
   * Activation checkpointing (`gradient_checkpointing`): the UNet's blocks keep nothing for the
   * backward and run their forward again there; same results, less memory, more compute.
   */
  gradientCheckpointing?: boolean;
  /** Run on this Gpu (default: a new one, destroyed by dispose()). */
  gpu?: Gpu;
}

/** One training batch (see ../shared/DESIGN.md): pixels or latents, prompts or embeddings. */
export interface TrainBatch {
  /** motion: [b, frames, 3, H, W]; unet: [b, 3, H, W]; in [-1, 1]. */
  pixels?: TrainTensor;
  /** Instead of pixels: x0 times the VAE scaling factor; motion [b, 4, frames, h, w], unet [b, 4, h, w]. */
  latents?: TrainTensor;
  /** One caption per sample, through the frozen text encoder (its last hidden state). */
  prompts?: string[];
  /** Instead of prompts: [b, 77, dim]. */
  encoderHiddenStates?: TrainTensor;
  /** The target noise, shaped as the latents; omitted: drawn from the seeded generator. */
  noise?: TrainTensor;
  /** One per sample, in [0, 1000); omitted: drawn from the seeded generator. */
  timesteps?: number[];
  /** eps of the VAE posterior sample, [(b*frames), 4, h, w]; omitted: drawn. */
  posteriorNoise?: TrainTensor;
}

/** What a step reports. */
export interface TrainStepResult {
  /** The loss before the update. */
  loss: number;
  /** The global L2 norm of the gradients before clipping. */
  gradNorm: number;
  /** Mixed precision: a gradient overflowed, so no update was made (the loss scale halved). */
  skipped: boolean;
  /** The loss scale the step used (1 in f32). */
  lossScale: number;
}

/** A model being trained (see {@link createTrainer}). */
export interface Trainer {
  /** Steps taken so far. */
  readonly steps: number;
  /** Names of the trainable parameters (diffusers names). */
  readonly trainable: readonly string[];
  /** One forward, backward and AdamW update on `batch`. */
  step(batch: TrainBatch): Promise<TrainStepResult>;
  /** The loss on `batch` without training (validation); draws what the batch omits. */
  loss(batch: TrainBatch): Promise<number>;
  /**
   * The gradients of the last step, before clipping, by parameter name (host copies kept for
   * trainable sets of up to 2^26 values; larger ones: {@link readGradients}).
   */
  gradients(): Map<string, Float32Array>;
  /** The current trainable parameters by name (host copies, as {@link gradients}). */
  parameters(): Map<string, Float32Array>;
  /** The gradients of the last step read from the GPU (any size). */
  readGradients(): Promise<Map<string, Float32Array>>;
  /** The current trainable parameters read from the GPU (any size). */
  readParameters(): Promise<Map<string, Float32Array>>;
  /** Sets some trainable parameters by name (resume, tests). */
  setParameters(values: Map<string, Float32Array>): void;
  /**
   * Writes what an exact resume needs (weights, AdamW moments, counters, the generator) to a
   * .safetensors file.
   */
  saveCheckpoint(path: string): Promise<void>;
  /** Continues from a {@link saveCheckpoint} file of the same target and model. */
  loadCheckpoint(path: string): Promise<void>;
  /** Writes the trained weights (motion: original AnimateDiff keys with the pe tables). */
  save(path: string): Promise<void>;
  /** Frees the GPU memory the trainer holds (and its Gpu, when it made it). */
  dispose(): void;
}

/** MotionLoRA defaults: rank 32 (MotionDirector uses 32-64), alpha = rank (scale 1). */
const DEFAULT_LORA = { rank: 32, alpha: 32 };

/** diffusers' AutoencoderKL training examples weigh the KL term by 1e-6; ours by default too. */
const DEFAULT_KL_WEIGHT = 1e-6;

/**
 * Builds a trainer (see ../shared/DESIGN.md, "Training").
 *
 * @example
 * ```ts
 * import { createTrainer } from "@zoetrope/animatediff";
 *
 * const trainer = await createTrainer({ train: "motion", optimizer: { lr: 1e-4 }, seed: 1 });
 * const { loss } = await trainer.step({ latents, prompts: ["a red circle moving left"] });
 * await trainer.save("motion.safetensors");
 * trainer.dispose();
 * ```
 */
export async function createTrainer(options: TrainerOptions): Promise<Trainer> {
  if (!AVAILABLE.includes(options.train)) {
    throw new InputError(
      `train: expected one of ${AVAILABLE.join(", ")}, got "${options.train}"`,
    );
  }
  const dtype = options.precision ?? "f32";
  if (dtype !== "f32" && dtype !== "f16") {
    throw new InputError(`precision: expected "f32" or "f16", got "${dtype}"`);
  }
  if (options.trainTextEncoder && (options.train !== "unet" || options.lora)) {
    throw new InputError('trainTextEncoder: only with train "unet" (without lora)');
  }
  if (options.lrScheduler === "cosine" && !(options.maxTrainSteps! > 0)) {
    throw new InputError("maxTrainSteps: the cosine schedule needs the number of steps");
  }
  const seed = options.seed ?? 0;
  const demo = options.model || options.modelWeights ? null : loadTinyDemoModel(ARCHITECTURE);
  const model = options.modelWeights ?? demo?.model ??
    await loadModel(options.model!, { config: options.modelConfig, architecture: ARCHITECTURE });
  const gpu = options.gpu ?? await Gpu.create();
  if (dtype === "f16" && !gpu.hasF16) {
    if (!options.gpu) gpu.destroy();
    model.close();
    throw new InputError(`precision: f16 needs shader-f16, which ${gpu.info.name} lacks`);
  }
  const stores: WeightStore[] = [];
  const adapters: Tensor[] = [];
  const release = () => {
    for (const s of stores) s.dispose();
    for (const t of adapters) t.release();
    model.close();
  };
  try {
    const o = options.optimizer ?? {};
    const adam = {
      lr: o.lr ?? DEFAULT_ADAMW.lr,
      betas: o.betas ?? DEFAULT_ADAMW.betas,
      eps: o.eps ?? DEFAULT_ADAMW.eps,
      weightDecay: o.weightDecay ?? DEFAULT_ADAMW.weightDecay,
    };
    /** Trainable parameters from their tensors and, for f16 ones, their f32 host values. */
    const params = async (
      list: { name: string; tensor: Tensor; host?: { read(): Promise<Float32Array> } }[],
    ) => {
      const tp = new TrainableParameters(
        gpu,
        await Promise.all(list.map(async (e) => ({
          name: e.name,
          tensor: e.tensor,
          initial: e.tensor.dtype === "f32" ? undefined : await e.host!.read(),
        }))),
        adam,
        {
          maxGradNorm: options.maxGradNorm,
          lossScale: options.lossScale,
          schedule: {
            kind: options.lrScheduler ?? "constant",
            warmupSteps: options.lrWarmupSteps,
            totalSteps: options.maxTrainSteps,
          },
        },
      );
      await tp.init();
      return tp;
    };
    if (options.train === "vae") {
      const keep = (prefixes: string[]) => (n: string) => !prefixes.some((p) => n.startsWith(p));
      const en = new WeightStore(gpu, model.vae, {
        dtype,
        part: "vae encoder",
        ignore: keep(["encoder.", "quant_conv."]),
      });
      const de = new WeightStore(gpu, model.vae, {
        dtype,
        part: "vae decoder",
        ignore: keep(["decoder.", "post_quant_conv."]),
      });
      stores.push(en, de);
      const encoder = new VaeEncoder(en, model.vaeConfig);
      const decoder = new VaeDecoder(de, model.vaeConfig);
      for (const s of stores) await s.loadAll();
      const all = options.vaeDecoderOnly ? [...de.params] : [...en.params, ...de.params];
      return new VaeTrainer(gpu, {
        train: "vae",
        dtype,
        encoder,
        decoder,
        decoderOnly: options.vaeDecoderOnly ?? false,
        params: await params(
          all.map((p) => ({ name: p.name, tensor: p.t, host: model.vae.get(p.name) })),
        ),
        klWeight: options.klWeight ?? DEFAULT_KL_WEIGHT,
        shapes: new Map(all.map((p) => [p.name, p.shape])),
        seed,
        release,
        ownsGpu: !options.gpu,
      });
    }
    const motion = await motionWeights(options, model, seed);
    const tokenizer = await tokenizerOf(options, model, demo?.tokenizer ?? null);
    const te = new WeightStore(gpu, model.textEncoder, { dtype, part: "text encoder" });
    const un = new WeightStore(gpu, model.unet, { dtype, part: "unet" });
    const mo = motion
      ? new WeightStore(gpu, motion.tensors, { dtype, part: "motion module" })
      : null;
    const va = new WeightStore(gpu, model.vae, {
      dtype,
      part: "vae",
      ignore: (n) => n.startsWith("decoder.") || n.startsWith("post_quant_conv."),
    });
    stores.push(te, un, va);
    if (mo) stores.push(mo);
    const textEncoder = new ClipTextEncoder(te, model.clipConfig);
    const unet = new UNet3D(un, mo, model.unetConfig, motion?.config ?? null);
    unet.checkpointing = options.gradientCheckpointing ?? false;
    const vae = new VaeEncoder(va, model.vaeConfig);
    for (const s of stores) await s.loadAll();
    const s = options.noiseSchedule ?? {};
    const parts = {
      train: options.train,
      dtype,
      textEncoder,
      unet,
      vae,
      tokenizer,
      motion: motion?.config ?? null,
      alphasCumprod: alphasCumprod({
        ...ANIMATEDIFF_SCHEDULER_CONFIG,
        betaStart: s.betaStart ?? ANIMATEDIFF_SCHEDULER_CONFIG.betaStart,
        betaEnd: s.betaEnd ?? ANIMATEDIFF_SCHEDULER_CONFIG.betaEnd,
        betaSchedule: s.betaSchedule ?? ANIMATEDIFF_SCHEDULER_CONFIG.betaSchedule,
      }),
      seed,
      release: () => {
        release();
        motion?.close();
      },
      ownsGpu: !options.gpu,
    };
    if (options.train === "motion-lora" || (options.train === "unet" && options.lora)) {
      const place = options.train === "unet" ? "spatial" : "motion";
      const lora = attachLoras(gpu, unet, place, options.lora ?? DEFAULT_LORA, { seed, dtype });
      adapters.push(...lora.tensors.map((t) => t.tensor));
      return new DiffusionTrainer(gpu, {
        ...parts,
        params: await params(lora.tensors.map((t) => ({
          name: t.tensor.label,
          tensor: t.tensor,
          host: { read: () => Promise.resolve(t.initial) },
        }))),
        loras: lora.modules,
        saved: [],
        baseModel: null,
        textSaved: [],
      });
    }
    const store = options.train === "motion" ? mo! : un;
    const hostMap = options.train === "motion" ? motion!.tensors : model.unet;
    const saved = store.params.map((p) => ({ name: p.name, tensor: p.t }));
    const textSaved = options.trainTextEncoder
      ? te.params.map((p) => ({ name: p.name, tensor: p.t, host: model.textEncoder.get(p.name) }))
      : [];
    return new DiffusionTrainer(gpu, {
      ...parts,
      // Position tables are buffers, not parameters (as in AnimateDiff and diffusers): saved,
      // never trained.
      params: await params([
        ...saved.filter((p) => !p.name.endsWith(".pos_embed.pe"))
          .map((p) => ({ ...p, host: hostMap.get(p.name) })),
        ...textSaved,
      ]),
      textSaved,
      loras: [],
      saved,
      baseModel: options.train === "unet" ? model : null,
    });
  } catch (e) {
    release();
    if (!options.gpu) gpu.destroy();
    throw e;
  }
}

/** motion: the module to continue, or a new one; motion-lora: the given module; else none. */
async function motionWeights(
  options: TrainerOptions,
  model: ModelWeights,
  seed: number,
): Promise<MotionWeights | null> {
  if (options.train === "unet") return null;
  if (options.motionModule) {
    return await loadMotionModule(options.motionModule, {
      config: options.motionModuleConfig,
      architecture: ARCHITECTURE,
    });
  }
  if (options.train === "motion-lora") {
    throw new InputError("motionModule: a MotionLoRA trains on a given motion module; name one");
  }
  const overrides = options.motionModuleConfig
    ? await motionOverrides(options.motionModuleConfig)
    : {};
  return newMotionModule(newMotionConfig(model.unetConfig, overrides), seed);
}

/** The tokenizer: a given folder, the model's, or the demo's (null: prompts cannot be used). */
async function tokenizerOf(
  options: TrainerOptions,
  model: ModelWeights,
  demo: { vocabJson: string; mergesTxt: string } | null,
): Promise<ClipTokenizer | null> {
  if (options.tokenizer) {
    const dir = options.tokenizer.replace(/\/$/, "");
    const read = (f: string) =>
      Deno.readTextFile(`${dir}/${f}`).catch((e) => {
        throw new InputError(`tokenizer: cannot read ${dir}/${f} (${(e as Error).name})`);
      });
    return ClipTokenizer.fromFiles({
      vocabJson: await read("vocab.json"),
      mergesTxt: await read("merges.txt"),
    });
  }
  if (model.tokenizer) return ClipTokenizer.fromFiles(model.tokenizer);
  return demo ? ClipTokenizer.fromFiles(demo) : null;
}
