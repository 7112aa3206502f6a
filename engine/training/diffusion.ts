/**
 * The epsilon-prediction trainer (AnimateDiff's train.py; diffusers' text-to-image training for
 * a plain UNet): noisy latents through the UNet with the gradient tape on, the MSE against the
 * noise, the backward, and one AdamW update of what is trained — the motion modules, a MotionLoRA
 * on their attentions, or the whole UNet.
 * @module
 */

import type { Gpu } from "../../kernels/gpu/device.ts";
import type { DType, Tensor } from "../../kernels/gpu/tensor.ts";
import { InputError } from "../../kernels/gpu/errors.ts";
import { GradientTape } from "./autograd.ts";
import {
  kohyaName,
  ldmClipName,
  ldmUNetName,
  ldmVaeName,
  originalMotionNames,
} from "../../weights/names.ts";
import type { ModelWeights } from "../../weights/types.ts";
import type { MotionConfig } from "../../weights/model_config.ts";
import type { ClipTextEncoder } from "../models/clip.ts";
import type { Linear } from "../models/layers.ts";
import type { UNet3D } from "../models/unet.ts";
import type { VaeEncoder } from "../models/vae.ts";
import type { ClipTokenizer } from "../tokenizer.ts";
import { TorchGenerator } from "../rng.ts";
import { diffusionTargets } from "./targets.ts";
import type { TrainableParameters } from "./parameters.ts";
import type { TrainBatch, TrainStepResult } from "./trainer.ts";
import { TrainerBase, type TrainerResources } from "./base.ts";

/** One LoRA-adapted projection: its diffusers module name and its Linear. */
export interface LoraModule {
  module: string;
  linear: Linear;
}

/** The projections of an attention that a LoRA adapts (to_q, to_k, to_v, to_out.0). */
const LORA_PROJECTIONS = ["toQ", "toK", "toV", "toOut"] as const;

/** Where LoRAs go: the motion modules' attentions (MotionLoRA) or the UNet's spatial ones. */
export type LoraPlace = "motion" | "spatial";

/**
 * Puts a new LoRA on every attention projection (to_q, to_k, to_v, to_out.0) of the motion
 * modules (a MotionLoRA) or of the UNet's spatial transformers (a DreamBooth-style LoRA):
 * A [rank, in] ~ N(0, 1/rank^2) and B [out, rank] = 0, as diffusers' LoRALinearLayer, so the
 * adapted model starts as the base one. The tensors are labelled with their parameter names
 * (`<module>.lora_A.weight`, `.lora_B.weight`).
 *
 * @example
 * ```ts
 * const { modules, tensors } = attachLoras(gpu, unet, "motion", { rank: 32, alpha: 32 }, { seed: 1, dtype: "f32" });
 * ```
 */
export function attachLoras(
  gpu: Gpu,
  unet: UNet3D,
  place: LoraPlace,
  lora: { rank: number; alpha: number },
  o: { seed: number; dtype: DType },
): { modules: LoraModule[]; tensors: { tensor: Tensor; initial: Float32Array }[] } {
  const { rank, alpha } = lora;
  if (!Number.isInteger(rank) || rank < 1 || !(alpha > 0)) {
    throw new InputError(
      `lora: expected an integer rank >= 1 and alpha > 0, got ${rank}, ${alpha}`,
    );
  }
  const g = new TorchGenerator(o.seed + 1);
  const modules: LoraModule[] = [], tensors: { tensor: Tensor; initial: Float32Array }[] = [];
  const make = (initial: Float32Array, shape: number[], name: string) => {
    const tensor = gpu.upload(initial, shape, o.dtype, name);
    tensors.push({ tensor, initial });
    return tensor;
  };
  const owners = place === "motion" ? unet.motionModules : unet.spatialTransformers;
  for (const owner of owners) {
    for (const block of owner.blocks) {
      for (const attn of [block.attn1, block.attn2]) {
        for (const key of LORA_PROJECTIONS) {
          const linear = attn[key];
          const module = linear.weight.name.replace(/\.weight$/, "");
          const [out, inp] = linear.weight.gpuShape;
          const down = make(
            g.randn([rank, inp]).map((v) => v / rank),
            [rank, inp],
            `${module}.lora_A.weight`,
          );
          const up = make(new Float32Array(out * rank), [out, rank], `${module}.lora_B.weight`);
          linear.lora = { down, up, scale: alpha / rank, alpha };
          modules.push({ module, linear });
        }
      }
    }
  }
  return { modules, tensors };
}

/** What a {@link DiffusionTrainer} works with. */
export interface DiffusionParts extends TrainerResources {
  /** Storage dtype of the model and its activations (f16: mixed precision). */
  dtype: DType;
  textEncoder: ClipTextEncoder;
  unet: UNet3D;
  vae: VaeEncoder;
  tokenizer: ClipTokenizer | null;
  /** Set when training on clips (motion, motion-lora); null: images through a plain UNet. */
  motion: MotionConfig | null;
  params: TrainableParameters;
  /** motion-lora, unet with lora: the adapted projections (what save() writes). */
  loras: LoraModule[];
  /** unet: the frozen VAE and text encoder written beside the trained UNet in a single file. */
  baseModel: ModelWeights | null;
  /** unet with the text encoder trained too: its weights (written instead of the base's). */
  textSaved: { name: string; tensor: Tensor }[];
  /** motion / unet: what save() writes (the parameters and the part's buffers, e.g. pe tables). */
  saved: { name: string; tensor: Tensor }[];
  alphasCumprod: Float64Array;
  seed: number;
  /** Frees everything the trainer holds but the Gpu. */
  release(): void;
  /** Destroys the Gpu too (the trainer created it). */
  ownsGpu: boolean;
}

/** The epsilon-prediction trainer (see the module doc). */
export class DiffusionTrainer extends TrainerBase {
  readonly #p: DiffusionParts;

  constructor(gpu: Gpu, parts: DiffusionParts) {
    super(gpu, parts);
    this.#p = parts;
  }

  /** The step's host inputs and the noisy latents on the GPU. */
  async #inputs(batch: TrainBatch) {
    const gpu = this.gpu, p = this.#p;
    const targets = await diffusionTargets(gpu, batch, {
      video: p.motion !== null,
      vae: p.vae,
      dtype: p.dtype,
      alphasCumprod: p.alphasCumprod,
      generator: this.generator,
    });
    const x = gpu.upload(targets.noisy, targets.shape, p.dtype, "noisy latents");
    return { targets, x };
  }

  async step(batch: TrainBatch): Promise<TrainStepResult> {
    const gpu = this.gpu, p = this.#p, params = this.params;
    params.dropGradients();
    const { targets, x } = await this.#inputs(batch);
    const tape = new GradientTape(gpu);
    params.watch(tape);
    let pred: Tensor | null = null, gy: Tensor | null = null, context: Tensor | null = null;
    try {
      // The text encoder runs on the tape too: it records nothing while frozen, and passes the
      // gradient on to its weights when they are trained.
      pred = tape.run(() => {
        context = this.#context(batch, targets.batch);
        return p.unet.forward(gpu, x, targets.timesteps, context, targets.frames);
      });
      // loss = mean((pred - noise)^2); dL/dpred = 2 (pred - noise) / N, as torch's mse_loss.
      const out = await gpu.read(pred);
      const lossScale = params.lossScale;
      const { loss, grad } = mseLoss(out, targets.noise, lossScale);
      gy = gpu.upload(grad, pred.shape, p.dtype, "loss gradient");
      const { norm, skipped } = await params.update(tape.gradients(pred, gy));
      return { loss, gradNorm: norm, skipped, lossScale };
    } finally {
      tape.dispose();
      for (const t of [x, pred, gy, context]) t?.release();
    }
  }

  async loss(batch: TrainBatch): Promise<number> {
    this.live();
    const { targets, x } = await this.#inputs(batch);
    const context = this.#context(batch, targets.batch);
    const pred = this.#p.unet.forward(this.gpu, x, targets.timesteps, context, targets.frames);
    try {
      return mseLoss(await this.gpu.read(pred), targets.noise).loss;
    } finally {
      for (const t of [x, pred, context]) t.release();
    }
  }

  /** The UNet's text context [b, 77, D]: given, or the frozen text encoder's last hidden state. */
  #context(batch: TrainBatch, b: number): Tensor {
    const gpu = this.gpu, p = this.#p;
    if (batch.encoderHiddenStates) {
      const e = batch.encoderHiddenStates;
      if (e.shape.length !== 3 || e.shape[0] !== b) {
        throw new InputError(
          `encoderHiddenStates: expected [${b}, 77, dim], got [${e.shape.join(", ")}]`,
        );
      }
      return gpu.upload(e.data, e.shape, p.dtype, "encoder hidden states");
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

  protected async write(path: string): Promise<void> {
    if (this.#p.loras.length) {
      return this.#p.motion ? await this.#saveMotionLora(path) : await this.#saveKohyaLora(path);
    }
    if (this.#p.baseModel) return await this.#saveSingleFile(path, this.#p.baseModel);
    const motion = this.#p.motion !== null;
    const tensors = [];
    for (const { name, tensor } of this.#p.saved) {
      const data = await this.gpu.read(tensor);
      // Motion modules: the original AnimateDiff keys, both pe copies, no `module.` prefix.
      for (const n of motion ? originalMotionNames(name) : [name]) {
        tensors.push({ name: n, shape: tensor.shape, dtype: "F32" as const, data });
      }
    }
    await this.writeWeights(path, tensors);
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
      const file = originalMotionNames(`${module}.weight`)[0]
        .replace(new RegExp(`\\.${proj}(\\.0)?\\.weight$`), "");
      const down = await this.gpu.read(lora.down);
      const up = (await this.gpu.read(lora.up)).map((v) => v * lora.scale);
      for (const [role, t, data] of [["down", lora.down, down], ["up", lora.up, up]] as const) {
        tensors.push({
          name: `${file}.processor.${proj}_lora.${role}.weight`,
          shape: t.shape,
          dtype: "F32" as const,
          data,
        });
      }
    }
    await this.writeWeights(path, tensors);
  }

  /**
   * A UNet LoRA in kohya's layout (what A1111, ComfyUI and our `--lora` load):
   * `lora_unet_<module with _>.lora_down.weight` = A, `.lora_up.weight` = B and `.alpha`.
   */
  async #saveKohyaLora(path: string): Promise<void> {
    const tensors = [];
    let rank = 0, alpha = 0;
    for (const { module, linear } of this.#p.loras) {
      const lora = linear.lora!;
      const [down, up] = await this.gpu.readMany([lora.down, lora.up]);
      const k = `lora_unet_${kohyaName(module)}`;
      rank = lora.down.shape[0];
      alpha = lora.alpha;
      tensors.push(
        {
          name: `${k}.lora_down.weight`,
          shape: lora.down.shape,
          dtype: "F32" as const,
          data: down,
        },
        { name: `${k}.lora_up.weight`, shape: lora.up.shape, dtype: "F32" as const, data: up },
        { name: `${k}.alpha`, shape: [], dtype: "F32" as const, data: Float32Array.of(alpha) },
      );
    }
    await this.writeWeights(path, tensors, {
      ss_network_dim: String(rank),
      ss_network_alpha: String(alpha),
    });
  }

  /**
   * A fine-tuned UNet as the single-file checkpoint every SD1.5 tool loads (LDM names): the
   * trained UNet with the frozen VAE and text encoder it was trained with.
   */
  async #saveSingleFile(path: string, model: ModelWeights): Promise<void> {
    const c = this.#p.unet.config;
    const tensors = [];
    for (const { name, tensor } of this.#p.saved) {
      tensors.push({
        name: ldmUNetName(name, c),
        shape: [...model.unet.get(name)!.shape],
        dtype: "F32" as const,
        data: await this.gpu.read(tensor),
      });
    }
    const levels = model.vaeConfig.blockOutChannels.length;
    for (const [name, t] of model.vae) {
      const ldm = ldmVaeName(name, levels);
      // LDM's VAE attention projections are 1x1 convolutions.
      const conv = /first_stage_model\..*attn_1\.(q|k|v|proj_out)\.weight$/.test(ldm);
      tensors.push({
        name: ldm,
        shape: conv && t.shape.length === 2 ? [...t.shape, 1, 1] : [...t.shape],
        dtype: "F32" as const,
        data: () => t.read(),
      });
    }
    const trainedText = new Map(this.#p.textSaved.map((e) => [e.name, e.tensor]));
    for (const [name, t] of model.textEncoder) {
      const trained = trainedText.get(name);
      tensors.push({
        name: ldmClipName(name),
        shape: [...t.shape],
        dtype: "F32" as const,
        data: () => trained ? this.gpu.read(trained) : t.read(),
      });
    }
    await this.writeWeights(path, tensors);
  }

  protected override disposeParts(): void {
    for (const { linear } of this.#p.loras) linear.lora = null;
  }
}

/**
 * torch's `mse_loss(pred, target)` (mean) in float64 and its gradient `2 (pred - target) / N`,
 * times `gradScale` (mixed precision's loss scale).
 *
 * @example
 * ```ts
 * mseLoss(Float32Array.of(1, 3), Float32Array.of(0, 1)).loss; // 2.5
 * ```
 */
export function mseLoss(
  pred: Float32Array,
  target: Float32Array,
  gradScale = 1,
): { loss: number; grad: Float32Array } {
  const n = pred.length;
  let sum = 0;
  const grad = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const d = pred[i] - target[i];
    sum += d * d;
    grad[i] = (2 * d * gradScale) / n;
  }
  return { loss: sum / n, grad };
}
