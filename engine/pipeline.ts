/**
 * The animation pipeline: prompt -> CLIP embeddings -> denoising loop over the inflated UNet
 * with classifier-free guidance -> VAE decode -> RGBA frames, following diffusers'
 * AnimateDiffPipeline (the reference the fixtures were computed with). This file is the
 * library's face; the work is done by engine/load.ts (files to bound model parts),
 * engine/request.ts (defaults, validation), engine/denoise.ts and engine/generate.ts (the run)
 * and engine/memory_plan.ts (what a request needs before it runs).
 * @module
 */

import { Gpu } from "../kernels/gpu/device.ts";
import { InputError } from "../kernels/gpu/errors.ts";
import type { DType } from "../kernels/gpu/tensor.ts";
import type { ClipTextEncoder } from "./models/clip.ts";
import type { Fidelity, UNet3D } from "./models/unet.ts";
import type { VaeDecoder, VaeEncoder } from "./models/vae.ts";
import type { WeightStore } from "./weight_store.ts";
import type { MotionNormMode } from "./models/motion.ts";
import type { ClipTokenizer } from "./tokenizer.ts";
import type {
  GenerateOptions,
  GenerateRequest,
  PipelineInfo,
  PipelineOptions,
  Precision,
  ProgressEvent,
} from "./pipeline_types.ts";
import type { ModelWeights, MotionWeights } from "../weights/types.ts";
import {
  bindParts,
  bindVaeEncoder,
  type BoundParts,
  checkFidelity,
  loadWeights,
  openBaseModel,
} from "./load.ts";
import { resolveBatchVideo, type ResolvedRequest, resolveRequest } from "./request.ts";
import type { Frame } from "./output/frame.ts";
import { denoise, type LatentOptions, readLatents } from "./denoise.ts";
import { type Batch, generate } from "./generate.ts";
import type { Animation } from "./animation.ts";
import { defaultMemoryBudget, type MemoryPlan, MemoryPlanner } from "./memory_plan.ts";

export type * from "./pipeline_types.ts";
export { MAX_SIDE, MAX_STEPS, type ResolvedRequest, SCHEDULERS } from "./request.ts";
export { Animation } from "./animation.ts";
export type { LatentOptions } from "./denoise.ts";

/**
 * A loaded text-to-animation pipeline.
 *
 * @example
 * ```ts
 * import { AnimationPipeline } from "@zoetrope/animatediff";
 *
 * const pipe: AnimationPipeline = await AnimationPipeline.load(); // same as loadPipeline()
 * console.log(pipe.info.motionVersion, pipe.info.maxFrames, pipe.info.adapter);
 * const anim = await pipe.generate({ prompt: "a candle flame", frames: 8, width: 64, height: 64 });
 * pipe.dispose();
 * ```
 */
export class AnimationPipeline {
  /** What was loaded: model, motion module, version, frame limit, adapter. */
  readonly info: PipelineInfo;
  /** The GPU context the pipeline runs on. */
  readonly gpu: Gpu;
  /**
   * Storage dtype of weights and activations (internal).
   * @ignore
   */
  readonly dtype: DType;
  /**
   * The CLIP BPE tokenizer (internal).
   * @ignore
   */
  readonly tokenizer: ClipTokenizer;
  /**
   * The CLIP text encoder on the GPU (internal).
   * @ignore
   */
  readonly textEncoder: ClipTextEncoder;
  /**
   * The inflated UNet with motion modules (internal).
   * @ignore
   */
  readonly unet: UNet3D;
  /**
   * The VAE decoder (internal).
   * @ignore
   */
  readonly vae: VaeDecoder;
  readonly #parts: BoundParts;
  readonly #planner: MemoryPlanner;
  readonly #ownsGpu: boolean;
  readonly #openBase: (() => Promise<ModelWeights>) | null;
  #encoder: Promise<{ encoder: VaeEncoder; store: WeightStore }> | null = null;
  #disposed = false;

  private constructor(
    parts: BoundParts,
    init: {
      info: PipelineInfo;
      ownsGpu: boolean;
      budget: number | null;
      openBase?: () => Promise<ModelWeights>;
    },
  ) {
    this.#parts = parts;
    this.#openBase = init.openBase ?? null;
    this.info = init.info;
    this.gpu = parts.gpu;
    this.dtype = parts.dtype;
    this.tokenizer = parts.tokenizer;
    this.textEncoder = parts.textEncoder;
    this.unet = parts.unet;
    this.vae = parts.vae;
    this.#ownsGpu = init.ownsGpu;
    this.#planner = new MemoryPlanner(parts, {
      precision: init.info.precision,
      budget: init.budget,
    });
  }

  /** Loads weights, maps them, merges LoRAs and uploads everything to the GPU. */
  static async load(options: PipelineOptions = {}): Promise<AnimationPipeline> {
    const startedAt = performance.now();
    const precision = options.precision ?? "f32";
    if (precision !== "f32" && precision !== "f16") {
      throw new InputError(`precision must be f32 or f16, got ${precision}`);
    }
    const weights = await loadWeights(options);
    options.onProgress?.({
      stage: "load",
      step: 1,
      total: 5,
      elapsedMs: performance.now() - startedAt,
      message: "weights mapped",
    });
    return await AnimationPipeline.fromWeights({
      ...weights,
      openBase: () => openBaseModel(options),
      precision,
      fidelity: options.fidelity,
      device: options.device,
      onProgress: options.onProgress,
      startedAt,
      maxMemory: options.maxMemory,
    });
  }

  /**
   * Builds a pipeline from weights already mapped to canonical names (in memory or lazily read),
   * e.g. the random full-size SD1.5 of weights/sd15.ts used by the bench. Closes the weights.
   * @ignore
   */
  static async fromWeights(init: {
    model: ModelWeights;
    motion: MotionWeights;
    tokenizer: ClipTokenizer;
    precision?: Precision;
    fidelity?: Fidelity;
    device?: Gpu;
    demo?: boolean;
    onProgress?: (e: ProgressEvent) => void;
    startedAt?: number;
    maxMemory?: number;
    /** Reopens the base model's files (for the VAE encoder on first use). */
    openBase?: () => Promise<ModelWeights>;
  }): Promise<AnimationPipeline> {
    const { model, motion } = init;
    const t0 = init.startedAt ?? performance.now();
    let step = 1;
    const onStore = () =>
      init.onProgress?.({
        stage: "load",
        step: ++step,
        total: 5,
        elapsedMs: performance.now() - t0,
      });
    const precision = init.precision ?? "f32";
    const ownsGpu = !init.device;
    try {
      const gpu = init.device ?? await Gpu.create();
      try {
        if (precision === "f16" && !gpu.hasF16) {
          throw new InputError(`precision f16 needs shader-f16, which ${gpu.info.name} lacks`);
        }
        const parts = await bindParts(gpu, init, { precision, fidelity: init.fidelity, onStore });
        await gpu.sync();
        return new AnimationPipeline(parts, {
          info: {
            model: model.source,
            motionModule: motion.source,
            motionVersion: motion.config.version,
            maxFrames: motion.config.maxSeqLength,
            precision,
            adapter: gpu.info.name,
            demo: init.demo ?? false,
          },
          ownsGpu,
          budget: init.maxMemory ?? defaultMemoryBudget(gpu.info),
          openBase: init.openBase,
        });
      } catch (e) {
        if (ownsGpu) gpu.destroy();
        throw e;
      }
    } finally {
      model.close();
      motion.close();
    }
  }

  /**
   * Which reference to follow where diffusers and the original AnimateDiff differ
   * ("diffusers", the default, or "original"). See {@link Fidelity}.
   */
  set fidelity(mode: Fidelity) {
    this.unet.fidelity = checkFidelity(mode);
  }

  /** The current fidelity mode. */
  get fidelity(): Fidelity {
    return this.unet.fidelity;
  }

  /** @deprecated use {@link AnimationPipeline.fidelity}: "frame" = original, "clip" = diffusers. */
  set motionNorm(mode: MotionNormMode) {
    this.fidelity = mode === "frame" ? "original" : "diffusers";
  }

  /** Applies defaults and validates a request; throws InputError naming the field. */
  resolve(req: GenerateRequest): ResolvedRequest {
    return resolveRequest(req, {
      maxFrames: this.info.maxFrames,
      motionVersion: this.info.motionVersion,
      clipLayers: this.textEncoder.config.layers,
      demo: this.info.demo,
    });
  }

  /** Runs text encoding and the denoising loop; returns final latents [1, 4, f, h, w]. */
  async generateLatents(req: GenerateRequest, options: LatentOptions = {}): Promise<Float32Array> {
    this.#checkAlive();
    const r = this.resolve(req);
    await this.#planner.ensureFits(r, { videos: 1, decode: false });
    const latents = await denoise(this, r, options, {});
    try {
      return await readLatents(this, latents, r);
    } finally {
      latents.release();
    }
  }

  /** Generates an animation. */
  async generate(req: GenerateRequest, options: GenerateOptions = {}): Promise<Animation> {
    const [anim] = await this.#generate(this.resolve(req), {}, options);
    return anim;
  }

  /**
   * Generates one animation per prompt in one batch (the UNet sees all videos at once, as
   * diffusers does for a list of prompts): same settings and seed stream for all, the initial
   * noise drawn as one [prompts, 4, frames, h, w] tensor.
   *
   * @example
   * ```ts
   * const [a, b] = await pipe.generateBatch(["a cat", "a dog"], { frames: 8, width: 64, height: 64, steps: 4 });
   * ```
   */
  async generateBatch(
    prompts: readonly string[],
    req: Omit<GenerateRequest, "prompt"> & {
      negativePrompts?: readonly string[];
      videos?: readonly (readonly Frame[])[];
    },
    options: GenerateOptions = {},
  ): Promise<Animation[]> {
    if (!prompts.length) throw new InputError("generateBatch needs at least one prompt");
    for (const p of prompts) {
      if (typeof p !== "string") throw new InputError("prompts must be strings");
    }
    const negativePrompts = req.negativePrompts ??
      new Array(prompts.length).fill(req.negativePrompt ?? "");
    if (negativePrompts.length !== prompts.length) {
      throw new InputError(
        `${negativePrompts.length} negative prompts for ${prompts.length} prompts; give one per prompt`,
      );
    }
    const { videos, ...rest } = req;
    if (videos !== undefined && (rest.video || rest.image)) {
      throw new InputError("generateBatch takes videos (one per prompt), not video or image");
    }
    if (videos !== undefined && (!Array.isArray(videos) || videos.length !== prompts.length)) {
      throw new InputError(
        `videos: give one video per prompt (${prompts.length}), got ${
          Array.isArray(videos) ? videos.length : typeof videos
        }`,
      );
    }
    const r = this.resolve({ ...rest, prompt: prompts[0], video: videos?.[0] });
    if (videos && r.init) r.init.videos = videos.map((v, i) => resolveBatchVideo(v, i, r));
    return await this.#generate(r, { prompts, negativePrompts }, options);
  }

  async #generate(
    r: ResolvedRequest,
    batch: Batch,
    options: GenerateOptions,
  ): Promise<Animation[]> {
    this.#checkAlive();
    await this.#planner.ensureFits(r, { videos: batch.prompts?.length ?? 1, decode: true });
    return await generate(this, r, batch, options);
  }

  /**
   * The memory plan of a request (see engine/memory_plan.ts): its peak GPU memory on this
   * adapter, per stage, and whether it fits, found by replaying it on a virtual Gpu (a few
   * steps suffice: every step allocates alike). Nothing runs on the GPU.
   *
   * @example
   * ```ts
   * const plan = await pipe.plan({ prompt: "waves", frames: 16, width: 512, height: 512 });
   * if (!plan.fits) console.error(plan.reason);
   * ```
   */
  async plan(
    req: GenerateRequest,
    options: { precision?: Precision; prompts?: number } = {},
  ): Promise<MemoryPlan> {
    this.#checkAlive();
    return await this.#planner.plan(this.resolve(req), options.precision ?? this.info.precision, {
      videos: options.prompts ?? 1,
      suggest: true,
      decode: true,
    });
  }

  #checkAlive(): void {
    if (this.#disposed) throw new Error("pipeline was disposed");
  }

  /**
   * The VAE encoder, bound on first use from the model's files (video and image inputs).
   * @ignore
   */
  readonly vaeEncoder = async (): Promise<VaeEncoder> => {
    if (!this.#openBase) {
      throw new InputError(
        "video and image inputs need a pipeline loaded from files (loadPipeline), not fromWeights",
      );
    }
    const open = this.#openBase;
    this.#encoder ??= open().then((model) => bindVaeEncoder(this.gpu, model, this.dtype));
    this.#encoder.catch(() => (this.#encoder = null));
    return (await this.#encoder).encoder;
  };

  /** Releases all GPU memory (and the device when the pipeline created it). */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#encoder?.then((e) => e.store.dispose(), () => {});
    this.#planner.dispose();
    for (const s of this.#parts.stores) s.dispose();
    this.gpu.pool.trim();
    if (this.#ownsGpu) this.gpu.destroy();
  }
}

/**
 * Loads a pipeline (see {@link PipelineOptions}).
 *
 * @example
 * ```ts
 * import { loadPipeline } from "@zoetrope/animatediff";
 *
 * const pipe = await loadPipeline({
 *   model: "models/checkpoints/toonyou_beta6.safetensors",
 *   motionModule: "models/motion_modules/mm_sd_v15_v2.ckpt",
 *   tokenizer: "models/clip-tokenizer",
 *   onProgress: (e) => console.log(e.stage, e.step, e.total),
 * });
 * ```
 */
export function loadPipeline(options: PipelineOptions = {}): Promise<AnimationPipeline> {
  return AnimationPipeline.load(options);
}

/**
 * The memory plan of a request without loading any weights onto the GPU: the model's
 * architecture comes from its files' headers and is replayed on a virtual Gpu with the limits
 * of `options.device` (default: this machine's adapter). What `--dry-run` prints.
 *
 * @example
 * ```ts
 * import { planGeneration } from "@zoetrope/animatediff";
 *
 * const plan = await planGeneration({ precision: "f32" }, { prompt: "x", frames: 8, width: 64, height: 64 });
 * console.log(`${(plan.peakBytes / 1e6).toFixed(0)} MB`, plan.fits ? "fits" : plan.reason);
 * ```
 */
export async function planGeneration(
  options: PipelineOptions,
  request: GenerateRequest,
): Promise<MemoryPlan> {
  const real = options.device ?? await Gpu.create();
  try {
    const device = Gpu.virtual(real.info);
    device.setLimits(real.limits);
    const pipe = await AnimationPipeline.load({
      ...options,
      device,
      maxMemory: options.maxMemory ?? defaultMemoryBudget(real.info) ?? undefined,
    });
    try {
      return await pipe.plan(request);
    } finally {
      pipe.dispose();
    }
  } finally {
    if (!options.device) real.destroy();
  }
}
