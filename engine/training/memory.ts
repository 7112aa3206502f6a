/**
 * The memory plan of training: how much GPU memory one training step needs, before any of it
 * runs. As for generation (engine/memory_plan.ts), the plan is a replay, not a formula: the
 * model is built from shapes alone on a virtual Gpu (`Gpu.virtual`: tensors have sizes but no
 * memory, dispatches only check their operands) and the trainer's own step
 * (engine/training/diffusion.ts) runs on it: the frozen VAE encoder, the noisy latents, the UNet
 * forward with the gradient tape on (with activation checkpointing when asked), the backward, the
 * gradient norm and AdamW with its m and v per trainable parameter. Two steps run, because from
 * the second on the previous step's gradients and the pool's free buffers are held too. The
 * buffer pool's high-water mark in each stage, plus the weights, is the plan. The text context is
 * given rather than encoded (the text encoder's weights count; its 77-token forward is
 * negligible beside the UNet's).
 * @module
 */

import { Gpu, type GpuInfo } from "../../kernels/gpu/device.ts";
import type { Tensor } from "../../kernels/gpu/tensor.ts";
import { InputError } from "../../kernels/gpu/errors.ts";
import type { MotionConfig } from "../../weights/model_config.ts";
import { SD15_CLIP_CONFIG, SD15_UNET_CONFIG, SD15_VAE_CONFIG } from "../../weights/model_config.ts";
import type { ModelConfigs, ShapeMap, TensorMap } from "../../weights/types.ts";
import { ARCHITECTURE } from "../models/architecture.ts";
import { ClipTextEncoder } from "../models/clip.ts";
import { UNet3D } from "../models/unet.ts";
import { VaeEncoder } from "../models/vae.ts";
import { WeightStore } from "../weight_store.ts";
import { alphasCumprod } from "../schedulers/schedule.ts";
import { ANIMATEDIFF_SCHEDULER_CONFIG } from "../schedulers/config.ts";
import { newMotionConfig } from "./init.ts";
import { DiffusionTrainer } from "./diffusion.ts";
import { DEFAULT_ADAMW, TrainableParameters, type UpdateResult } from "./parameters.ts";
import type { TrainBatch } from "./trainer.ts";

/**
 * The adapter limits a training plan assumes when none is given: a discrete GPU's as WebGPU
 * exposes them (2 GiB bindings, 4 GiB buffers). They only decide how large tensors split into
 * binding-sized windows, not how much memory there is.
 *
 * @example
 * ```ts
 * const plan = await planTraining({ train: "motion", adapter: { ...DISCRETE_GPU, maxBufferSize: 2 ** 30 } });
 * ```
 */
export const DISCRETE_GPU: GpuInfo = {
  name: "discrete GPU (planning)",
  vendor: "",
  architecture: "",
  isFallback: false,
  features: ["shader-f16"],
  maxStorageBufferBindingSize: 2 ** 31 - 4,
  maxBufferSize: 2 ** 32 - 4,
  minStorageBufferOffsetAlignment: 256,
  maxComputeWorkgroupStorageSize: 32768,
  maxComputeInvocationsPerWorkgroup: 1024,
  maxComputeWorkgroupSizeX: 1024,
};

/**
 * What to plan: the trainer's choices ({@link TrainerOptions}' names) and the batch's shape.
 * The model is described by its configs (default SD1.5 with a new AnimateDiff v2-like motion
 * module): nothing is read, only shapes are used.
 *
 * @example
 * ```ts
 * const options: TrainingPlanOptions = {
 *   train: "motion", gradientCheckpointing: true, batch: 1, frames: 16, width: 256, height: 256,
 * };
 * ```
 */
export interface TrainingPlanOptions {
  /** What is trained (as `createTrainer`'s `train`): "motion" or "unet". */
  train: "motion" | "unet";
  /** Activation checkpointing of the UNet's blocks (`gradient_checkpointing`). Default false. */
  gradientCheckpointing?: boolean;
  /** "f32" (default) or "f16": mixed precision (f16 weights and activations, f32 master weights). */
  precision?: "f32" | "f16";
  /**
   * The base model's configs. Default SD1.5's.
   * @ignore
   */
  model?: ModelConfigs;
  /**
   * The motion modules' config (train "motion"). Default: a new module's for the UNet (v2-like).
   * @ignore
   */
  motion?: MotionConfig;
  /** Clips (motion) or images (unet) per step. Default 1. */
  batch?: number;
  /** Frames per clip (motion). Default 16. */
  frames?: number;
  /** Width in pixels. Default 256. */
  width?: number;
  /** Height in pixels. Default 256. */
  height?: number;
  /** "pixels": the step encodes the batch with the frozen VAE (default); "latents": given. */
  input?: "pixels" | "latents";
  /** The adapter's limits. Default {@link DISCRETE_GPU}. */
  adapter?: GpuInfo;
  /** The GPU memory to check the plan against (bytes); omitted: `fits` is true. */
  budgetBytes?: number;
}

/**
 * What one training step needs from the GPU (see the module doc). Stage figures are the peak
 * GPU memory while that stage runs: weights + what the buffer pool holds (the optimizer state and
 * the gradients included).
 *
 * @example
 * ```ts
 * const plan = await planTraining({ train: "motion", gradientCheckpointing: true });
 * console.log(plan.peakBytes, plan.stages.backward);
 * ```
 */
export interface TrainingPlan {
  /** The adapter planned for. */
  adapter: string;
  /** What is trained. */
  train: "motion" | "unet";
  /** Whether the UNet's blocks are recomputed in the backward. */
  gradientCheckpointing: boolean;
  /** f32 training or f16 mixed precision. */
  precision: "f32" | "f16";
  /** Clips (or images) per step. */
  batch: number;
  /** Frames per clip (1 for images). */
  frames: number;
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
  /** Bytes of all weights on the GPU (frozen and trained). */
  weightsBytes: number;
  /** Number of trainable parameters (elements). */
  trainableParameters: number;
  /** Bytes of AdamW's m and v (two f32 tensors per trainable parameter). */
  optimizerBytes: number;
  /** Bytes of the gradients (one f32 tensor per trainable parameter). */
  gradientBytes: number;
  /**
   * Peak GPU memory (weights + the pool's buffers, free ones included, as
   * engine/memory_plan.ts counts) while encoding (VAE encoder), in the UNet forward with the tape,
   * in the backward, and in the gradient norm + AdamW update.
   */
  stages: { encode: number; forward: number; backward: number; optimizer: number };
  /** Peak GPU memory of the whole step (what is checked against the budget). */
  peakBytes: number;
  /**
   * Peak of weights + tensors in use, without the free buffers the pool keeps for reuse: the
   * least the step could run in.
   */
  workingSetBytes: number;
  /** The budget checked against (null: none given). */
  budgetBytes: number | null;
  /** The step runs within the budget. */
  fits: boolean;
}

/**
 * Plans one training step on a virtual Gpu (see the module doc): nothing is dispatched and no
 * weights are read, so it runs on any machine (the full-size SD1.5 + motion module step plans in
 * seconds).
 *
 * @example
 * ```ts
 * const plan = await planTraining({
 *   train: "motion", gradientCheckpointing: true, frames: 16, width: 256, height: 256,
 *   budgetBytes: 24e9,
 * });
 * console.log(plan.peakBytes / 1e9, "GB", plan.fits ? "fits" : "does not fit");
 * ```
 */
export async function planTraining(options: TrainingPlanOptions): Promise<TrainingPlan> {
  const o = options;
  const configs = o.model ??
    { unet: SD15_UNET_CONFIG, vae: SD15_VAE_CONFIG, clip: SD15_CLIP_CONFIG };
  const video = o.train === "motion";
  const batch = o.batch ?? 1, frames = video ? o.frames ?? 16 : 1;
  const width = o.width ?? 256, height = o.height ?? 256;
  const checkpointing = o.gradientCheckpointing ?? false;
  const dtype = o.precision ?? "f32";
  for (const [what, v] of [["batch", batch], ["frames", frames]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new InputError(`${what}: expected an integer >= 1`);
  }
  if (width % 8 || height % 8 || width < 8 || height < 8) {
    throw new InputError(`width, height: expected multiples of 8, got ${width}x${height}`);
  }
  const motion = video ? o.motion ?? newMotionConfig(configs.unet) : null;
  const shapes = ARCHITECTURE.model(configs);
  const adapter = o.adapter ?? DISCRETE_GPU;
  const gpu = Gpu.virtual(
    dtype === "f16" && !adapter.features.includes("shader-f16")
      ? { ...adapter, features: [...adapter.features, "shader-f16"] }
      : adapter,
  );
  const stores: WeightStore[] = [];
  let trainer: DiffusionTrainer | null = null;
  try {
    const store = (map: ShapeMap, part: string, ignore?: (n: string) => boolean) => {
      const s = new WeightStore(gpu, shapesOnly(map), { dtype, part, ignore });
      stores.push(s);
      return s;
    };
    const te = store(shapes.textEncoder, "text encoder");
    const un = store(shapes.unet, "unet");
    const va = store(
      shapes.vae,
      "vae",
      (n) => n.startsWith("decoder.") || n.startsWith("post_quant_conv."),
    );
    const mo = motion ? store(ARCHITECTURE.motion(motion), "motion module") : null;
    const textEncoder = new ClipTextEncoder(te, configs.clip);
    const unet = new UNet3D(un, mo, configs.unet, motion);
    unet.checkpointing = checkpointing;
    const vae = new VaeEncoder(va, configs.vae);
    for (const s of stores) await s.loadAll();
    const weightsBytes = gpu.persistentBytes;

    // Stage marks: the pool's high-water mark since the previous mark, plus the weights.
    const stages = { encode: 0, forward: 0, backward: 0, optimizer: 0 };
    let workingSet = weightsBytes;
    const mark = (stage: keyof typeof stages) => {
      const pool = gpu.pool.stats();
      stages[stage] = Math.max(stages[stage], weightsBytes + pool.peakAllocatedBytes);
      workingSet = Math.max(workingSet, weightsBytes + pool.peakInUseBytes);
      gpu.pool.resetPeak();
    };
    const forward = unet.forward.bind(unet);
    unet.forward = (...args: Parameters<UNet3D["forward"]>) => {
      mark("encode");
      const y = forward(...args);
      mark("forward");
      return y;
    };
    const trained = (video ? mo! : un).params
      .filter((p) => !p.name.endsWith(".pos_embed.pe"))
      // Mixed precision: the f32 master copies start from these (only their size matters here).
      .map((p) => ({
        name: p.name,
        tensor: p.t,
        initial: dtype === "f32" ? undefined : new Float32Array(p.t.size),
      }));
    const params = new StagedParameters(gpu, trained, mark);
    // The trainer's own step (engine/training/diffusion.ts), on shapes.
    trainer = new DiffusionTrainer(gpu, {
      train: o.train,
      dtype,
      textEncoder,
      unet,
      vae,
      tokenizer: null,
      motion,
      params,
      loras: [],
      saved: [],
      baseModel: null,
      textSaved: [],
      alphasCumprod: alphasCumprod(ANIMATEDIFF_SCHEDULER_CONFIG),
      seed: 0,
      release: () => {},
      ownsGpu: false,
    });
    const h = height / 8, w = width / 8, lat = configs.vae.latentChannels;
    const latents = video ? [batch, lat, frames, h, w] : [batch, lat, h, w];
    const batchData: TrainBatch = {
      ...(o.input === "latents" ? { latents: zeros(latents) } : {
        pixels: zeros(video ? [batch, frames, 3, height, width] : [batch, 3, height, width]),
        posteriorNoise: zeros([batch * frames, lat, h, w]),
      }),
      noise: zeros(latents),
      timesteps: new Array(batch).fill(0),
      // The text encoder's 77-token forward is negligible beside the UNet's: its output is given.
      encoderHiddenStates: zeros([batch, configs.clip.maxPositions, configs.clip.hiddenSize]),
    };
    // Two steps: from the second on, the previous step's gradients are held until the update.
    for (let i = 0; i < STEPS; i++) {
      gpu.pool.resetPeak();
      await trainer.step(batchData);
    }
    const peak = Math.max(weightsBytes, ...Object.values(stages));
    const count = trained.reduce((n, t) => n + t.tensor.size, 0);
    const budget = o.budgetBytes ?? null;
    return {
      adapter: gpu.info.name,
      train: o.train,
      gradientCheckpointing: checkpointing,
      precision: dtype,
      batch,
      frames,
      width,
      height,
      weightsBytes,
      trainableParameters: count,
      optimizerBytes: 8 * count,
      gradientBytes: (dtype === "f32" ? 4 : 2) * count,
      stages,
      peakBytes: peak,
      workingSetBytes: workingSet,
      budgetBytes: budget,
      fits: budget === null || peak <= budget,
    };
  } finally {
    trainer?.dispose();
    for (const s of stores) s.dispose();
    gpu.destroy();
  }
}

/** Steps replayed: the second holds what every later one does. */
const STEPS = 2;

/** The trainer's parameters, marking the backward's end and the update's on the way. */
class StagedParameters extends TrainableParameters {
  readonly #mark: (stage: "backward" | "optimizer") => void;

  constructor(
    gpu: Gpu,
    list: { name: string; tensor: Tensor; initial?: Float32Array }[],
    mark: (stage: "backward" | "optimizer") => void,
  ) {
    super(gpu, list, DEFAULT_ADAMW, { maxGradNorm: 1 });
    this.#mark = mark;
  }

  override async update(grads: Map<Tensor, Tensor>): Promise<UpdateResult> {
    this.#mark("backward");
    const result = await super.update(grads);
    this.#mark("optimizer");
    return result;
  }
}

/** A tensor map of shapes only (reading one is an error): the planning model's weights. */
function shapesOnly(map: ShapeMap): TensorMap {
  const out: TensorMap = new Map();
  for (const [name, shape] of map) {
    out.set(name, {
      shape,
      dtype: "F32",
      read: () => Promise.reject(new Error(`${name}: a training plan has no weights`)),
    });
  }
  return out;
}

/** A zero host tensor (the plan's batch: only its shape matters). */
function zeros(shape: number[]): { shape: number[]; data: Float32Array } {
  return { shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) };
}
