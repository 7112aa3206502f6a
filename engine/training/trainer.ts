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
import { GradientTape } from "../../kernels/autograd.ts";
import { adamw, type AdamWOptions, gradNorm } from "../../kernels/optimizer.ts";
import type { MotionWeights } from "../../weights/types.ts";
import { loadModel, loadMotionModule, motionOverrides } from "../../weights/load.ts";
import { loadTinyDemoModel } from "../../weights/tiny.ts";
import { writeSafetensors } from "../../weights/safetensors.ts";
import { originalMotionNames } from "../../weights/names.ts";
import { ARCHITECTURE } from "../models/architecture.ts";
import { WeightStore } from "../weight_store.ts";
import { ClipTextEncoder } from "../models/clip.ts";
import type { Linear } from "../models/layers.ts";
import { UNet3D } from "../models/unet.ts";
import { VaeEncoder } from "../models/vae.ts";
import { ClipTokenizer } from "../tokenizer.ts";
import { TorchGenerator } from "../rng.ts";
import { alphasCumprod } from "../schedulers/schedule.ts";
import { ANIMATEDIFF_SCHEDULER_CONFIG } from "../schedulers/config.ts";
import type { BetaSchedule } from "../schedulers/config.ts";
import { newMotionConfig, newMotionModule } from "./init.ts";
import { diffusionTargets, type TrainTensor } from "./targets.ts";

export type { TrainTensor } from "./targets.ts";

/** What a trainer trains; everything else is frozen. */
export type TrainTarget = "motion" | "motion-lora" | "unet" | "vae";

/** The targets {@link createTrainer} can train today. */
const AVAILABLE: readonly TrainTarget[] = ["motion", "motion-lora", "unet"];

/** Options of {@link createTrainer} (names as ../shared/DESIGN.md, "Training"). */
export interface TrainerOptions {
  /** SD1.5 diffusers folder or single file; omitted: the built-in demo model. */
  model?: string;
  /** diffusers folder giving GroupNorm groups / heads for a single-file model. */
  modelConfig?: string;
  /** Folder with vocab.json + merges.txt (default: the model's). */
  tokenizer?: string;
  /** Continue from this motion module; omitted: a new one (proj_out zero-initialised). */
  motionModule?: string;
  /** MotionAdapter config.json (or folder) for a new or single-file module. */
  motionModuleConfig?: string;
  train: TrainTarget;
  /** motion-lora: rank and alpha. */
  lora?: { rank: number; alpha: number };
  /** AdamW (torch semantics). Defaults: lr 1e-4, betas [0.9, 0.999], eps 1e-8, decay 1e-2. */
  optimizer?: { lr?: number; betas?: [number, number]; eps?: number; weightDecay?: number };
  /** Global-norm gradient clipping as torch.nn.utils.clip_grad_norm_ (0 or absent: none). */
  maxGradNorm?: number;
  /** The DDPM training schedule (the paper's A/B/C); default AnimateDiff's linear 0.00085..0.012. */
  noiseSchedule?: { betaStart?: number; betaEnd?: number; betaSchedule?: BetaSchedule };
  /** vae: weight of the KL term. */
  klWeight?: number;
  /** "f32" (default). */
  precision?: "f32" | "f16";
  /** Seeds every draw the trainer makes (new-module init, noise, timesteps). */
  seed?: number;
  /** Run on this Gpu (default: a new one, destroyed by dispose()). */
  gpu?: Gpu;
}

/** One training batch (see ../shared/DESIGN.md): pixels or latents, prompts or embeddings. */
export interface TrainBatch {
  /** motion: [b, frames, 3, H, W]; unet: [b, 3, H, W]; in [-1, 1]. */
  pixels?: TrainTensor;
  /** Instead of pixels: x0 times the VAE scaling factor; motion [b, 4, frames, h, w], unet [b, 4, h, w]. */
  latents?: TrainTensor;
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
}

/** A model being trained (see {@link createTrainer}). */
export interface Trainer {
  /** Steps taken so far. */
  readonly steps: number;
  /** Names of the trainable parameters (diffusers names). */
  readonly trainable: readonly string[];
  /** One forward, backward and AdamW update on `batch`. */
  step(batch: TrainBatch): Promise<TrainStepResult>;
  /** The gradients of the last step, before clipping, by parameter name. */
  gradients(): Promise<Map<string, Float32Array>>;
  /** The current trainable parameters by name. */
  parameters(): Promise<Map<string, Float32Array>>;
  /** Sets some trainable parameters by name (resume, tests). */
  setParameters(values: Map<string, Float32Array>): void;
  /** Writes the trained weights (motion: original AnimateDiff keys with the pe tables). */
  save(path: string): Promise<void>;
  dispose(): void;
}

interface TrainableParam {
  name: string;
  tensor: Tensor;
  m: Tensor;
  v: Tensor;
}

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
      `train: "${options.train}" is not available yet (available: ${AVAILABLE.join(", ")})`,
    );
  }
  if ((options.precision ?? "f32") !== "f32") {
    throw new InputError(`precision: only "f32" training is available yet`);
  }
  const seed = options.seed ?? 0;
  const demo = options.model ? null : loadTinyDemoModel(ARCHITECTURE);
  const model = demo?.model ??
    await loadModel(options.model!, { config: options.modelConfig, architecture: ARCHITECTURE });
  let motion: MotionWeights | null = null;
  if (options.train === "motion-lora" && !options.motionModule) {
    throw new InputError("motionModule: a MotionLoRA trains on a given motion module; name one");
  }
  if (options.train === "motion" || options.train === "motion-lora") {
    if (options.motionModule) {
      motion = await loadMotionModule(options.motionModule, {
        config: options.motionModuleConfig,
        architecture: ARCHITECTURE,
      });
    } else {
      const overrides = options.motionModuleConfig
        ? await motionOverrides(options.motionModuleConfig)
        : {};
      motion = newMotionModule(newMotionConfig(model.unetConfig, overrides), seed);
    }
  }
  const tokenizer = options.tokenizer
    ? ClipTokenizer.fromFiles({
      vocabJson: await Deno.readTextFile(`${options.tokenizer}/vocab.json`),
      mergesTxt: await Deno.readTextFile(`${options.tokenizer}/merges.txt`),
    })
    : model.tokenizer
    ? ClipTokenizer.fromFiles(model.tokenizer)
    : demo
    ? ClipTokenizer.fromFiles(demo.tokenizer)
    : null;

  const gpu = options.gpu ?? await Gpu.create();
  const stores: WeightStore[] = [];
  const adapters: Tensor[] = [];
  try {
    const te = new WeightStore(gpu, model.textEncoder, { dtype: "f32", part: "text encoder" });
    const un = new WeightStore(gpu, model.unet, { dtype: "f32", part: "unet" });
    const mo = motion
      ? new WeightStore(gpu, motion.tensors, { dtype: "f32", part: "motion module" })
      : null;
    const va = new WeightStore(gpu, model.vae, {
      dtype: "f32",
      part: "vae",
      ignore: (n) => n.startsWith("decoder.") || n.startsWith("post_quant_conv."),
    });
    stores.push(te, un, va);
    if (mo) stores.push(mo);
    const textEncoder = new ClipTextEncoder(te, model.clipConfig);
    const unet = new UNet3D(un, mo, model.unetConfig, motion?.config ?? null);
    const vae = new VaeEncoder(va, model.vaeConfig);
    for (const s of stores) await s.loadAll();
    if (options.train === "motion-lora") {
      const lora = attachMotionLoras(gpu, unet, options.lora ?? DEFAULT_LORA, seed);
      adapters.push(...lora.tensors);
      return new DiffusionTrainer(gpu, {
        owned: !options.gpu,
        stores,
        adapters,
        textEncoder,
        unet,
        vae,
        tokenizer,
        motion: motion!.config,
        saved: [],
        loras: lora.modules,
        trainable: lora.tensors.map((t) => ({
          name: t.label,
          tensor: t,
          m: gpu.upload(new Float32Array(t.size), t.shape, "f32", "adam m"),
          v: gpu.upload(new Float32Array(t.size), t.shape, "f32", "adam v"),
        })),
        options,
        seed,
      });
    }
    const trainStore = options.train === "motion" ? mo! : un;
    return new DiffusionTrainer(gpu, {
      adapters,
      loras: [],
      owned: !options.gpu,
      stores,
      textEncoder,
      unet,
      vae,
      tokenizer,
      motion: motion?.config ?? null,
      // Position tables are buffers, not parameters (as in AnimateDiff and diffusers): saved,
      // never trained.
      saved: trainStore.params.map((p) => ({ name: p.name, tensor: p.t })),
      trainable: trainStore.params.filter((p) => !p.name.endsWith(".pos_embed.pe")).map((p) => ({
        name: p.name,
        tensor: p.t,
        m: gpu.upload(new Float32Array(p.t.size), p.t.shape, "f32", "adam m"),
        v: gpu.upload(new Float32Array(p.t.size), p.t.shape, "f32", "adam v"),
      })),
      options,
      seed,
    });
  } catch (e) {
    for (const s of stores) s.dispose();
    for (const t of adapters) t.release();
    if (!options.gpu) gpu.destroy();
    throw e;
  }
}

/** MotionLoRA defaults: rank 32 (MotionDirector uses 32-64), alpha = rank (scale 1). */
const DEFAULT_LORA = { rank: 32, alpha: 32 };

/** The projections of a motion module's attentions that a MotionLoRA adapts. */
const LORA_PROJECTIONS = ["toQ", "toK", "toV", "toOut"] as const;

/** One adapted projection: its diffusers module name and its Linear. */
interface LoraModule {
  module: string;
  linear: Linear;
}

/**
 * Puts a new LoRA on every motion-module attention projection (to_q, to_k, to_v, to_out.0):
 * A [rank, in] ~ N(0, 1/rank^2) and B [out, rank] = 0, as diffusers' LoRALinearLayer, so the
 * adapted model starts as the base one. The tensors are labelled with their parameter names.
 */
function attachMotionLoras(
  gpu: Gpu,
  unet: UNet3D,
  lora: { rank: number; alpha: number },
  seed: number,
): { modules: LoraModule[]; tensors: Tensor[] } {
  const { rank, alpha } = lora;
  if (!Number.isInteger(rank) || rank < 1 || !(alpha > 0)) {
    throw new InputError(
      `lora: expected an integer rank >= 1 and alpha > 0, got ${rank}, ${alpha}`,
    );
  }
  const g = new TorchGenerator(seed + 1);
  const modules: LoraModule[] = [], tensors: Tensor[] = [];
  for (const mm of unet.motionModules) {
    for (const block of mm.blocks) {
      for (const attn of [block.attn1, block.attn2]) {
        for (const key of LORA_PROJECTIONS) {
          const linear = attn[key];
          const module = linear.weight.name.replace(/\.weight$/, "");
          const [out, inp] = linear.weight.gpuShape;
          const down = gpu.upload(
            g.randn([rank, inp]).map((v) => v / rank),
            [rank, inp],
            "f32",
            `${module}.lora_A.weight`,
          );
          const up = gpu.upload(
            new Float32Array(out * rank),
            [out, rank],
            "f32",
            `${module}.lora_B.weight`,
          );
          linear.lora = { down, up, scale: alpha / rank };
          modules.push({ module, linear });
          tensors.push(down, up);
        }
      }
    }
  }
  return { modules, tensors };
}

interface Parts {
  owned: boolean;
  stores: WeightStore[];
  /** Tensors the trainer made (LoRA adapters): released by dispose(). */
  adapters: Tensor[];
  /** motion-lora: the adapted projections (what save() writes). */
  loras: LoraModule[];
  textEncoder: ClipTextEncoder;
  unet: UNet3D;
  vae: VaeEncoder;
  tokenizer: ClipTokenizer | null;
  motion: MotionWeights["config"] | null;
  trainable: TrainableParam[];
  /** What save() writes: the trainable parameters and the trained part's buffers. */
  saved: { name: string; tensor: Tensor }[];
  options: TrainerOptions;
  seed: number;
}

/** The epsilon-prediction trainer of the UNet's motion modules (motion) or all its weights (unet). */
class DiffusionTrainer implements Trainer {
  readonly #gpu: Gpu;
  readonly #p: Parts;
  readonly #alphasCumprod: Float64Array;
  readonly #generator: TorchGenerator;
  readonly #adam: Omit<AdamWOptions, "step">;
  #grads = new Map<string, Tensor>();
  #steps = 0;
  #disposed = false;

  constructor(gpu: Gpu, p: Parts) {
    this.#gpu = gpu;
    this.#p = p;
    const s = p.options.noiseSchedule ?? {};
    this.#alphasCumprod = alphasCumprod({
      ...ANIMATEDIFF_SCHEDULER_CONFIG,
      betaStart: s.betaStart ?? ANIMATEDIFF_SCHEDULER_CONFIG.betaStart,
      betaEnd: s.betaEnd ?? ANIMATEDIFF_SCHEDULER_CONFIG.betaEnd,
      betaSchedule: s.betaSchedule ?? ANIMATEDIFF_SCHEDULER_CONFIG.betaSchedule,
    });
    this.#generator = new TorchGenerator(p.seed);
    const o = p.options.optimizer ?? {};
    this.#adam = {
      lr: o.lr ?? 1e-4,
      betas: o.betas ?? [0.9, 0.999],
      eps: o.eps ?? 1e-8,
      weightDecay: o.weightDecay ?? 1e-2,
    };
  }

  get steps(): number {
    return this.#steps;
  }

  get trainable(): readonly string[] {
    return this.#p.trainable.map((t) => t.name);
  }

  async step(batch: TrainBatch): Promise<TrainStepResult> {
    this.#live();
    const gpu = this.#gpu, p = this.#p;
    const video = p.motion !== null;
    const targets = await diffusionTargets(gpu, batch, {
      video,
      vae: p.vae,
      alphasCumprod: this.#alphasCumprod,
      generator: this.#generator,
    });
    const context = this.#context(batch, targets.batch);
    const tape = new GradientTape(gpu);
    for (const t of p.trainable) tape.watch(t.tensor);
    const x = gpu.upload(targets.noisy, targets.shape, "f32", "noisy latents");
    let pred: Tensor | null = null, gy: Tensor | null = null, stats: Tensor | null = null;
    try {
      pred = tape.run(() => p.unet.forward(gpu, x, targets.timesteps, context, targets.frames));
      // loss = mean((pred - noise)^2); dL/dpred = 2 (pred - noise) / N, as torch's mse_loss.
      const out = await gpu.read(pred);
      const n = out.length;
      let sum = 0;
      const g = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        const d = out[i] - targets.noise[i];
        sum += d * d;
        g[i] = (2 * d) / n;
      }
      gy = gpu.upload(g, pred.shape, "f32", "loss gradient");
      this.#releaseGrads();
      const grads = tape.gradients(pred, gy);
      for (const t of p.trainable) {
        const grad = grads.get(t.tensor.root);
        if (!grad) throw new Error(`training: ${t.name} got no gradient (unused parameter?)`);
        this.#grads.set(t.name, grad);
      }
      stats = gradNorm(gpu, p.trainable.map((t) => this.#grads.get(t.name)!), {
        maxNorm: p.options.maxGradNorm ?? 0,
      });
      const step = this.#steps + 1;
      for (const t of p.trainable) {
        adamw(gpu, { param: t.tensor, grad: this.#grads.get(t.name)!, m: t.m, v: t.v, stats }, {
          ...this.#adam,
          step,
        });
      }
      const [norm] = await gpu.read(stats);
      this.#steps = step;
      return { loss: sum / n, gradNorm: norm };
    } finally {
      tape.dispose();
      for (const t of [x, pred, gy, stats, context]) t?.release();
    }
  }

  /** The UNet's text context [b, 77, D]: given, or the frozen text encoder's last hidden state. */
  #context(batch: TrainBatch, b: number): Tensor {
    const gpu = this.#gpu, p = this.#p;
    if (batch.encoderHiddenStates) {
      const e = batch.encoderHiddenStates;
      if (e.shape.length !== 3 || e.shape[0] !== b) {
        throw new InputError(
          `encoderHiddenStates: expected [${b}, 77, dim], got [${e.shape.join(", ")}]`,
        );
      }
      return gpu.upload(e.data, e.shape, "f32", "encoder hidden states");
    }
    if (!batch.prompts || batch.prompts.length !== b) {
      throw new InputError(
        `prompts: expected ${b} prompts (one per sample) or encoderHiddenStates`,
      );
    }
    const tok = p.tokenizer;
    if (!tok) throw new InputError("tokenizer: the model has none; give a tokenizer folder");
    const ids = new Int32Array(b * tok.maxLength);
    batch.prompts.forEach((text, i) => ids.set(tok.encode(text).ids, i * tok.maxLength));
    return p.textEncoder.forward(gpu, ids, b);
  }

  async gradients(): Promise<Map<string, Float32Array>> {
    this.#live();
    const out = new Map<string, Float32Array>();
    for (const [name, g] of this.#grads) out.set(name, await this.#gpu.read(g));
    return out;
  }

  async parameters(): Promise<Map<string, Float32Array>> {
    this.#live();
    const out = new Map<string, Float32Array>();
    for (const t of this.#p.trainable) out.set(t.name, await this.#gpu.read(t.tensor));
    return out;
  }

  setParameters(values: Map<string, Float32Array>): void {
    this.#live();
    const byName = new Map(this.#p.trainable.map((t) => [t.name, t]));
    for (const [name, data] of values) {
      const t = byName.get(name);
      if (!t) throw new InputError(`setParameters: ${name} is not a trainable parameter`);
      if (data.length !== t.tensor.size) {
        throw new InputError(
          `setParameters: ${name} has ${t.tensor.size} values, got ${data.length}`,
        );
      }
      const tmp = this.#gpu.upload(data, t.tensor.shape, "f32", name);
      this.#gpu.copy(tmp, t.tensor);
      tmp.release();
    }
  }

  async save(path: string): Promise<void> {
    this.#live();
    if (!path.endsWith(".safetensors")) {
      throw new InputError(`save: ${path}: expected a .safetensors path`);
    }
    if (this.#p.loras.length) return await this.#saveMotionLora(path);
    const motion = this.#p.motion !== null;
    const tensors = [];
    for (const { name, tensor } of this.#p.saved) {
      const data = await this.#gpu.read(tensor);
      for (const n of motion ? originalMotionNames(name) : [name]) {
        tensors.push({ name: n, shape: tensor.shape, dtype: "F32" as const, data });
      }
    }
    await writeSafetensors(path, tensors, { metadata: { format: "pt" } });
  }

  /**
   * The original MotionLoRA layout (AnimateDiff's released `v2_lora_*.ckpt`):
   * `<original module>.processor.to_q_lora.down.weight` = A and `.up.weight` = B, with no alpha
   * (the loaders scale by 1), so alpha / rank is folded into B.
   */
  async #saveMotionLora(path: string): Promise<void> {
    const tensors = [];
    for (const { module, linear } of this.#p.loras) {
      const lora = linear.lora!;
      const proj = module.endsWith(".to_out.0")
        ? "to_out"
        : module.slice(module.lastIndexOf(".") + 1);
      const file = originalMotionNames(`${module}.weight`)[0].replace(
        new RegExp(`\\.${proj}(\\.0)?\\.weight$`),
        "",
      );
      const down = await this.#gpu.read(lora.down);
      const up = (await this.#gpu.read(lora.up)).map((v) => v * lora.scale);
      tensors.push(
        {
          name: `${file}.processor.${proj}_lora.down.weight`,
          shape: lora.down.shape,
          dtype: "F32" as const,
          data: down,
        },
        {
          name: `${file}.processor.${proj}_lora.up.weight`,
          shape: lora.up.shape,
          dtype: "F32" as const,
          data: up,
        },
      );
    }
    await writeSafetensors(path, tensors, { metadata: { format: "pt" } });
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#releaseGrads();
    for (const t of this.#p.trainable) {
      t.m.release();
      t.v.release();
    }
    for (const { linear } of this.#p.loras) linear.lora = null;
    for (const t of this.#p.adapters) t.release();
    for (const s of this.#p.stores) s.dispose();
    if (this.#p.owned) this.#gpu.destroy();
  }

  #releaseGrads(): void {
    for (const g of this.#grads.values()) g.release();
    this.#grads.clear();
  }

  #live(): void {
    if (this.#disposed) throw new Error("trainer: used after dispose()");
  }
}
