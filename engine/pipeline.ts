/**
 * The animation pipeline: prompt -> CLIP embeddings -> denoising loop over the inflated UNet
 * with classifier-free guidance -> VAE decode -> RGBA frames. Follows diffusers'
 * AnimateDiffPipeline (the reference the fixtures were computed with).
 * @module
 */

import { Gpu } from "../kernels/gpu/device.ts";
import { DeviceLostError, EngineLimitError, GpuError } from "../kernels/gpu/errors.ts";
import type { DType, Tensor } from "../kernels/gpu/tensor.ts";
import { WeightStore } from "./weight_store.ts";
import { ClipTextEncoder } from "./models/clip.ts";
import { type Fidelity, UNet3D } from "./models/unet.ts";
import { VaeDecoder } from "./models/vae.ts";
import type { MotionNormMode } from "./models/motion.ts";
import { ClipTokenizer } from "./tokenizer.ts";
import { TorchGenerator } from "./rng.ts";
import { createScheduler, type Scheduler, type VectorOps } from "./schedulers/mod.ts";
import { ANIMATEDIFF_SCHEDULER_CONFIG, type SchedulerConfig } from "./schedulers/config.ts";
import { AbortError, InputError } from "../kernels/gpu/errors.ts";
import { encodeAnimation } from "./output/mod.ts";
import type { Frame } from "./output/frame.ts";
import type {
  GenerateOptions,
  GenerateRequest,
  PipelineInfo,
  PipelineOptions,
  Precision,
  ProgressEvent,
  SchedulerName,
} from "./pipeline_types.ts";
import { cfgCombine, cfgGuide, linearCombination, scale } from "../kernels/elementwise.ts";
import { concat, slice } from "../kernels/layout.ts";
import { contextWindowStarts, frameSpans, MAX_WINDOWED_FRAMES } from "./context_windows.ts";
import type { ModelWeights, MotionWeights } from "../weights/types.ts";
import { loadModel, loadMotionModule } from "../weights/load.ts";
import { applyLoras, applyMotionLoras, loadLora } from "../weights/lora.ts";
import { loadTinyDemoModel } from "../weights/tiny.ts";
import { resolveHubFile } from "../weights/hub.ts";
import {
  defaultMemoryBudget,
  largestFitting,
  type MemoryPlan,
  planFailure,
} from "./memory_plan.ts";
import { decodeTiled, pickDecodeTile } from "./vae_tiling.ts";
import { ARCHITECTURE } from "./models/architecture.ts";

export type * from "./pipeline_types.ts";

/**
 * Scheduler names the pipeline accepts.
 *
 * @example
 * ```ts
 * import { SCHEDULERS } from "@zoetrope/animatediff";
 *
 * const ok = SCHEDULERS.includes("euler-a"); // true
 * ```
 */
export const SCHEDULERS: readonly SchedulerName[] = [
  "ddim",
  "euler",
  "euler-a",
  "dpmpp-2m",
  "dpmpp-2m-karras",
];

/**
 * The batched classifier-free guidance passes split into two when the UNet's widest activation
 * (2 x frames x 320 channels x latent pixels) would be larger than this.
 */
const CFG_SPLIT_BYTES = 64 * 2 ** 20;
let cfgSplitOverride: boolean | null = null;

/**
 * Forces the classifier-free guidance passes to run batched (false) or one after the other
 * (true) for every pipeline; null restores the size rule. Tests prove both give equal results.
 * @ignore
 */
export function setCfgSplitOverride(split: boolean | null): void {
  cfgSplitOverride = split;
}

/**
 * Largest accepted width/height in pixels.
 *
 * @example
 * ```ts
 * import { MAX_SIDE } from "@zoetrope/animatediff";
 *
 * const width = Math.min(1024, MAX_SIDE);
 * ```
 */
export const MAX_SIDE = 2048;
/**
 * Largest accepted step count.
 *
 * @example
 * ```ts
 * import { MAX_STEPS } from "@zoetrope/animatediff";
 *
 * const steps = Math.min(50, MAX_STEPS);
 * ```
 */
export const MAX_STEPS = 1000;

/**
 * A generated animation.
 *
 * @example
 * ```ts
 * import { loadPipeline } from "@zoetrope/animatediff";
 *
 * const pipe = await loadPipeline();
 * const request = { prompt: "waves", frames: 4, width: 32, height: 32, steps: 2 };
 * const anim = await pipe.generate(request);
 * console.log(anim.frames.length, anim.width, anim.height, anim.fps, anim.seed);
 * await Deno.writeFile("waves.gif", anim.toGif());
 * pipe.dispose();
 * ```
 */
export class Animation {
  /** RGBA frames. */
  readonly frames: Frame[];
  /** Frame width in pixels. */
  readonly width: number;
  /** Frame height in pixels. */
  readonly height: number;
  /** Playback rate in frames per second. */
  readonly fps: number;
  /** The seed used (bigint for seeds above 2^53). */
  readonly seed: number | bigint;
  /** Milliseconds per stage ("encode", "denoise", "decode", "total"). */
  readonly timings: Record<string, number>;

  /** Wraps decoded frames; the pipeline builds these, users rarely need to. */
  constructor(
    init: { frames: Frame[]; fps: number; seed: number | bigint; timings: Record<string, number> },
  ) {
    this.frames = init.frames;
    this.width = init.frames[0]?.width ?? 0;
    this.height = init.frames[0]?.height ?? 0;
    this.fps = init.fps;
    this.seed = init.seed;
    this.timings = init.timings;
  }

  /** Animated GIF with one palette for all frames; `loop` 0 = forever. */
  toGif(options: { loop?: number } = {}): Uint8Array {
    return encodeAnimation(this.frames, "gif", { fps: this.fps, loop: options.loop ?? 0 }).bytes;
  }

  /** Lossless animated PNG. */
  toApng(options: { loop?: number } = {}): Uint8Array {
    return encodeAnimation(this.frames, "apng", { fps: this.fps, loop: options.loop ?? 0 }).bytes;
  }

  /** A zip of `frame_0000.png`, ... */
  toPngZip(): Uint8Array {
    return encodeAnimation(this.frames, "png-zip", { fps: this.fps, loop: 0 }).bytes;
  }
}

/**
 * A fully resolved request (defaults applied, validated).
 *
 * @example
 * ```ts
 * import { loadPipeline } from "@zoetrope/animatediff";
 *
 * const pipe = await loadPipeline();
 * const r = pipe.resolve({ prompt: "rain" }); // throws InputError on a bad field
 * console.log(r.frames, r.width, r.steps, r.scheduler); // 16 512 25 "ddim"
 * pipe.dispose();
 * ```
 */
export interface ResolvedRequest {
  /** The prompt. */
  prompt: string;
  /** The negative prompt ("" when none). */
  negativePrompt: string;
  /** Number of frames. */
  frames: number;
  /** Width in pixels (multiple of 8). */
  width: number;
  /** Height in pixels (multiple of 8). */
  height: number;
  /** Denoising steps. */
  steps: number;
  /** Classifier-free guidance scale (CFG is off at 1 or below). */
  guidance: number;
  /** The scheduler. */
  scheduler: SchedulerName;
  /** The seed (drawn at random when the request had none). */
  seed: number | bigint;
  /** CLIP skip, A1111 numbering (1 = last layer). */
  clipSkip: number;
  /** Playback rate stored in the result. */
  fps: number;
  /** Frames per motion-module window (= frames when one window holds them all). */
  contextLength: number;
  /** Frames shared by neighbouring windows. */
  contextOverlap: number;
  /** Closed loop: windows wrap past the last frame to the first. */
  contextLoop: boolean;
}

/**
 * Advanced options of {@link AnimationPipeline.generateLatents}.
 *
 * @example
 * ```ts
 * import { loadPipeline } from "@zoetrope/animatediff";
 *
 * const pipe = await loadPipeline();
 * const latents = await pipe.generateLatents(
 *   { prompt: "fog", frames: 2, width: 32, height: 32, steps: 3, seed: 1 },
 *   { onStepLatents: (step, x) => console.log(step, x.length) },
 * );
 * // latents: Float32Array in diffusers' layout [1, 4, frames, height / 8, width / 8]
 * pipe.dispose();
 * ```
 */
export interface LatentOptions extends GenerateOptions {
  /** Initial noise in diffusers' layout [1, 4, frames, h, w] (before init_noise_sigma). */
  initialLatents?: Float32Array;
  /** Called with the latents after each step (diffusers layout [1, 4, f, h, w]); costs a readback. */
  onStepLatents?: (step: number, latents: Float32Array) => void;
  /** Scheduler config (default: AnimateDiff's linear 0.00085..0.012). */
  schedulerConfig?: SchedulerConfig;
}

async function readText(path: string, what: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    throw new InputError(`${what}: cannot read ${path} (${(e as Error).name})`);
  }
}

async function loadTokenizer(
  options: PipelineOptions,
  model: ModelWeights,
  demo: { vocabJson: string; mergesTxt: string } | null,
): Promise<ClipTokenizer> {
  if (options.tokenizer) {
    const dir = options.tokenizer.replace(/\/$/, "");
    return ClipTokenizer.fromFiles({
      vocabJson: await readText(`${dir}/vocab.json`, "--tokenizer"),
      mergesTxt: await readText(`${dir}/merges.txt`, "--tokenizer"),
    });
  }
  if (model.tokenizer) return ClipTokenizer.fromFiles(model.tokenizer);
  if (demo) return ClipTokenizer.fromFiles(demo);
  // Single-file checkpoints carry no tokenizer: SD1.5 uses CLIP ViT-L/14's.
  try {
    const vocab = await resolveHubFile("hf:openai/clip-vit-large-patch14/vocab.json");
    const merges = await resolveHubFile("hf:openai/clip-vit-large-patch14/merges.txt");
    return ClipTokenizer.fromFiles({
      vocabJson: await Deno.readTextFile(vocab),
      mergesTxt: await Deno.readTextFile(merges),
    });
  } catch (e) {
    throw new InputError(
      `${model.source} has no tokenizer and the CLIP tokenizer could not be fetched ` +
        `(${(e as Error).message}); pass --tokenizer DIR (a folder with vocab.json and merges.txt)`,
    );
  }
}

function inputErrors<T>(what: string, p: Promise<T>): Promise<T> {
  return p.catch((e) => {
    // Limits of the adapter and GPU failures are not the input's fault.
    const engine = [InputError, EngineLimitError, GpuError, DeviceLostError];
    if (engine.some((k) => e instanceof k)) throw e;
    const err = e as Error;
    if (err instanceof Deno.errors.NotFound) throw new InputError(`${what}: ${err.message}`);
    throw new InputError(err.message.startsWith(what) ? err.message : `${what}: ${err.message}`);
  });
}

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
  /**
   * Storage dtype of weights and activations (internal).
   * @ignore
   */
  readonly dtype: DType;
  readonly #stores: WeightStore[];
  readonly #ownsGpu: boolean;
  #disposed = false;
  /** GPU memory requests are planned against (null: unknown). */
  readonly #budget: number | null;
  /** Planning copies on a virtual Gpu, per precision. */
  readonly #planners = new Map<Precision, Promise<AnimationPipeline>>();
  /** Request shapes already planned to fit. */
  readonly #fits = new Set<string>();

  private constructor(init: {
    info: PipelineInfo;
    gpu: Gpu;
    ownsGpu: boolean;
    tokenizer: ClipTokenizer;
    textEncoder: ClipTextEncoder;
    unet: UNet3D;
    vae: VaeDecoder;
    stores: WeightStore[];
    dtype: DType;
    budget: number | null;
  }) {
    this.#budget = init.budget;
    this.info = init.info;
    this.gpu = init.gpu;
    this.#ownsGpu = init.ownsGpu;
    this.tokenizer = init.tokenizer;
    this.textEncoder = init.textEncoder;
    this.unet = init.unet;
    this.vae = init.vae;
    this.#stores = init.stores;
    this.dtype = init.dtype;
  }

  /** Loads weights, maps them, merges LoRAs and uploads everything to the GPU. */
  static async load(options: PipelineOptions = {}): Promise<AnimationPipeline> {
    const t0 = performance.now();
    const progress = (step: number, total: number, message?: string) =>
      options.onProgress?.({
        stage: "load",
        step,
        total,
        elapsedMs: performance.now() - t0,
        message,
      });
    const precision = options.precision ?? "f32";
    if (precision !== "f32" && precision !== "f16") {
      throw new InputError(`precision must be f32 or f16, got ${precision}`);
    }
    const demo = !options.model ? loadTinyDemoModel(ARCHITECTURE) : null;
    if (demo && options.motionModule === undefined && options.loras?.length) {
      // LoRAs on the demo model are allowed (tests); nothing special to do.
    }
    let model: ModelWeights = demo ? demo.model : await inputErrors(
      "--model",
      loadModel(options.model!, { config: options.modelConfig, architecture: ARCHITECTURE }),
    );
    let motion: MotionWeights = options.motionModule
      ? await inputErrors(
        "--motion-module",
        loadMotionModule(options.motionModule, {
          config: options.motionModuleConfig,
          architecture: ARCHITECTURE,
        }),
      )
      : demo
      ? demo.motion
      : (() => {
        throw new InputError(
          "--motion-module is required with --model (an AnimateDiff motion module .ckpt/.safetensors or MotionAdapter folder)",
        );
      })();
    if (options.loras?.length) {
      const scaled = [];
      for (const spec of options.loras) {
        const lora = await inputErrors("--lora", loadLora(spec.path, { model, motion }));
        scaled.push({ lora, scale: spec.scale ?? 1 });
      }
      model = applyLoras(model, scaled);
      motion = applyMotionLoras(motion, scaled, { model });
    }
    const tokenizer = await loadTokenizer(options, model, demo?.tokenizer ?? null);
    progress(1, 5, "weights mapped");
    return await AnimationPipeline.fromWeights({
      model,
      motion,
      tokenizer,
      precision,
      fidelity: options.fidelity,
      device: options.device,
      demo: demo !== null,
      onProgress: options.onProgress,
      startedAt: t0,
      maxMemory: options.maxMemory,
    });
  }

  /**
   * Builds a pipeline from weights already mapped to canonical names (in memory or lazily read),
   * e.g. the random full-size SD1.5 of weights/sd15.ts used by the bench.
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
  }): Promise<AnimationPipeline> {
    const { model, motion, tokenizer } = init;
    const t0 = init.startedAt ?? performance.now();
    const progress = (step: number, total: number) =>
      init.onProgress?.({ stage: "load", step, total, elapsedMs: performance.now() - t0 });
    const precision = init.precision ?? "f32";
    const ownsGpu = !init.device;
    const gpu = init.device ?? await Gpu.create();
    const dtype: DType = precision;
    if (dtype === "f16" && !gpu.hasF16) {
      if (ownsGpu) gpu.destroy();
      throw new InputError(`--precision f16 needs shader-f16, which ${gpu.info.name} lacks`);
    }
    const stores: WeightStore[] = [];
    try {
      const te = new WeightStore(gpu, model.textEncoder, { dtype, part: "text encoder" });
      const un = new WeightStore(gpu, model.unet, { dtype, part: "unet" });
      const mo = new WeightStore(gpu, motion.tensors, { dtype, part: "motion module" });
      const va = new WeightStore(gpu, model.vae, {
        dtype,
        part: "vae",
        // The encoder half is not used for text-to-animation.
        ignore: (n) => n.startsWith("encoder.") || n.startsWith("quant_conv."),
      });
      stores.push(te, un, mo, va);
      const textEncoder = new ClipTextEncoder(te, model.clipConfig);
      const unet = new UNet3D(un, mo, model.unetConfig, motion.config);
      if (init.fidelity) {
        if (init.fidelity !== "diffusers" && init.fidelity !== "original") {
          throw new InputError(`fidelity must be diffusers or original, got ${init.fidelity}`);
        }
        unet.fidelity = init.fidelity;
      }
      const vae = new VaeDecoder(va, model.vaeConfig);
      let done = 1;
      for (const s of stores) {
        await inputErrors(s === mo ? "--motion-module" : "--model", s.loadAll());
        progress(++done, 5);
      }
      await gpu.sync();
      model.close();
      motion.close();
      return new AnimationPipeline({
        info: {
          model: model.source,
          motionModule: motion.source,
          motionVersion: motion.config.version,
          maxFrames: motion.config.maxSeqLength,
          precision,
          adapter: gpu.info.name,
          demo: init.demo ?? false,
        },
        gpu,
        ownsGpu,
        tokenizer,
        textEncoder,
        unet,
        vae,
        stores,
        dtype,
        budget: init.maxMemory ?? defaultMemoryBudget(gpu.info),
      });
    } catch (e) {
      for (const s of stores) s.dispose();
      if (ownsGpu) gpu.destroy();
      model.close();
      motion.close();
      throw e;
    }
  }

  /**
   * Which reference to follow where diffusers and the original AnimateDiff differ
   * ("diffusers", the default, or "original"). See {@link Fidelity}.
   */
  set fidelity(mode: Fidelity) {
    if (mode !== "diffusers" && mode !== "original") {
      throw new InputError(`fidelity must be diffusers or original, got ${mode}`);
    }
    this.unet.fidelity = mode;
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
    const r: ResolvedRequest = {
      prompt: req.prompt,
      negativePrompt: req.negativePrompt ?? "",
      frames: req.frames ?? 16,
      width: req.width ?? 512,
      height: req.height ?? 512,
      steps: req.steps ?? 25,
      guidance: req.guidance ?? 7.5,
      scheduler: req.scheduler ?? "ddim",
      seed: req.seed ?? Math.floor(Math.random() * 2 ** 31),
      clipSkip: req.clipSkip ?? 1,
      fps: req.fps ?? 8,
      contextLength: 0,
      contextOverlap: 0,
      contextLoop: req.contextLoop ?? false,
    };
    if (typeof r.prompt !== "string") throw new InputError("prompt must be a string");
    if (typeof r.negativePrompt !== "string") {
      throw new InputError("negativePrompt must be a string");
    }
    const int = (name: string, v: number, lo: number, hi: number, hint = "") => {
      if (!Number.isInteger(v) || v < lo || v > hi) {
        throw new InputError(`${name} must be an integer from ${lo} to ${hi}, got ${v}${hint}`);
      }
    };
    const maxFrames = this.info.maxFrames;
    if (req.contextLength === undefined) {
      int(
        "frames",
        r.frames,
        1,
        maxFrames,
        ` (the ${this.info.motionVersion} motion module's position encoding has ${maxFrames} ` +
          `positions; for longer animations set contextLength (CLI: --context-length) to at most ` +
          `${maxFrames})`,
      );
      if (req.contextOverlap !== undefined || req.contextLoop !== undefined) {
        throw new InputError(
          `${
            req.contextOverlap !== undefined ? "contextOverlap" : "contextLoop"
          } needs contextLength`,
        );
      }
      r.contextLength = r.frames;
    } else {
      int("frames", r.frames, 1, MAX_WINDOWED_FRAMES);
      int(
        "contextLength",
        req.contextLength,
        1,
        maxFrames,
        ` (the ${this.info.motionVersion} motion module's position encoding has ${maxFrames} positions)`,
      );
      r.contextLength = Math.min(req.contextLength, r.frames);
      r.contextOverlap = req.contextOverlap ?? Math.floor(req.contextLength / 4);
      int("contextOverlap", r.contextOverlap, 0, req.contextLength - 1);
      if (typeof r.contextLoop !== "boolean") {
        throw new InputError(`contextLoop must be true or false, got ${r.contextLoop}`);
      }
    }
    for (const [name, v] of [["width", r.width], ["height", r.height]] as const) {
      int(name, v, 8, MAX_SIDE);
      if (v % 8 !== 0) throw new InputError(`${name} must be a multiple of 8, got ${v}`);
    }
    int("steps", r.steps, 1, MAX_STEPS);
    if (!Number.isFinite(r.guidance) || r.guidance < 0 || r.guidance > 100) {
      throw new InputError(`guidance must be a number from 0 to 100, got ${r.guidance}`);
    }
    if (!SCHEDULERS.includes(r.scheduler)) {
      throw new InputError(
        `unknown scheduler "${r.scheduler}"; use one of ${SCHEDULERS.join(", ")}`,
      );
    }
    if (typeof r.seed === "bigint") {
      if (r.seed < 0n || r.seed >= 2n ** 64n) {
        throw new InputError(`seed must be from 0 to 2^64 - 1, got ${r.seed}`);
      }
    } else int("seed", r.seed, 0, Number.MAX_SAFE_INTEGER);
    int("clipSkip", r.clipSkip, 1, this.textEncoder.config.layers + 1);
    if (!Number.isFinite(r.fps) || r.fps <= 0 || r.fps > 100) {
      throw new InputError(`fps must be a number above 0 and at most 100, got ${r.fps}`);
    }
    return r;
  }

  /**
   * Text embeddings [2, 77, D] = [negative, positive] (or [1, 77, D] = positive without CFG).
   * @ignore
   */
  encodePrompt(
    r: Pick<ResolvedRequest, "prompt" | "negativePrompt" | "clipSkip"> & {
      prompts?: readonly string[];
      negativePrompts?: readonly string[];
    },
    cfg: boolean,
    onProgress?: (e: ProgressEvent) => void,
  ): Tensor {
    const tok = (texts: readonly string[], what: string) => {
      const ids = new Int32Array(texts.length * this.tokenizer.maxLength);
      texts.forEach((text, i) => {
        const t = this.tokenizer.encode(text);
        if (t.truncated) {
          onProgress?.({
            stage: "encode",
            step: 0,
            total: 1,
            elapsedMs: 0,
            message: `${what} is ${t.untruncatedLength} tokens; truncated to ${t.ids.length}`,
          });
        }
        for (const id of t.ids) {
          if (id >= this.textEncoder.config.vocabSize) {
            throw new InputError(
              `tokenizer id ${id} is outside the text encoder's vocabulary (${this.textEncoder.config.vocabSize}): wrong --tokenizer for this model`,
            );
          }
        }
        ids.set(t.ids, i * this.tokenizer.maxLength);
      });
      return ids;
    };
    const gpu = this.gpu;
    const prompts = r.prompts ?? [r.prompt];
    const b = prompts.length;
    const pos = tok(prompts, "prompt");
    if (!cfg) return this.textEncoder.forward(gpu, pos, b, r.clipSkip);
    const negatives = r.negativePrompts ?? new Array(b).fill(r.negativePrompt);
    const neg = tok(negatives, "negative prompt");
    if (r.clipSkip === 1) {
      // [negative x b, positive x b]: the UNet batch is (uncond videos, cond videos).
      const ids = new Int32Array(pos.length * 2);
      ids.set(neg, 0);
      ids.set(pos, pos.length);
      return this.textEncoder.forward(gpu, ids, 2 * b, 1);
    }
    // diffusers applies clip_skip to the prompt only; the negative prompt uses the last layer.
    const n = this.textEncoder.forward(gpu, neg, b, 1);
    const p = this.textEncoder.forward(gpu, pos, b, r.clipSkip);
    const both = concat(gpu, [n, p], 0);
    n.release();
    p.release();
    return both;
  }

  /**
   * One UNet evaluation with guidance: returns the guided noise prediction [f, 4, h, w].
   * @ignore
   */
  predictNoise(
    latents: Tensor,
    t: number,
    inputScale: number,
    context: Tensor,
    r: { frames: number; guidance: number },
  ): Tensor {
    const gpu = this.gpu;
    const cfg = context.shape[0] * r.frames === 2 * latents.shape[0];
    const x = inputScale === 1 ? latents : scale(gpu, latents, inputScale);
    if (cfg && this.#splitCfg(latents)) {
      // The unconditional and conditional passes one after the other: half the activations.
      const b = context.shape[0] / 2;
      const eps = [0, 1].map((half) => {
        const ctx = slice(gpu, context, 0, half * b, (half + 1) * b);
        const e = this.unet.forward(gpu, x, t, ctx, r.frames);
        ctx.release();
        return e;
      });
      if (x !== latents) x.release();
      const guided = cfgGuide(gpu, eps[0], eps[1], r.guidance);
      for (const e of eps) e.release();
      return guided;
    }
    // [b*f, 4, h, w] -> [2*b*f, 4, h, w] = (uncond videos, cond videos)
    const input = cfg ? concat(gpu, [x, x], 0) : x;
    const eps = this.unet.forward(gpu, input, t, context, r.frames);
    if (input !== x) input.release();
    if (x !== latents) x.release();
    if (!cfg) return eps;
    const guided = cfgCombine(gpu, eps, r.guidance);
    eps.release();
    return guided;
  }

  /**
   * Runs the two classifier-free guidance passes one after the other (instead of as one batch)
   * when the batched UNet's widest activation would exceed {@link CFG_SPLIT_BYTES}: the same
   * results with half the activation memory, at a small cost in speed only for small inputs.
   */
  #splitCfg(latents: Tensor): boolean {
    if (cfgSplitOverride !== null) return cfgSplitOverride;
    const widest = 2 * latents.size / latents.shape[1] * this.unet.config.blockOutChannels[0];
    return widest * (this.dtype === "f16" ? 2 : 4) > CFG_SPLIT_BYTES;
  }

  /**
   * {@link predictNoise} over sliding context windows (engine/context_windows.ts) when the
   * frames do not fit one window: each window's frames of every video run through the UNet on
   * their own, and each frame's prediction is the mean over the windows containing it.
   * latents: [videos * frames, 4, h, w], video-major.
   * @ignore
   */
  predictNoiseWindowed(
    latents: Tensor,
    t: number,
    inputScale: number,
    context: Tensor,
    r: {
      frames: number;
      guidance: number;
      contextLength: number;
      contextOverlap: number;
      contextLoop?: boolean;
      videos: number;
    },
  ): Tensor {
    const gpu = this.gpu;
    const f = r.frames, L = r.contextLength;
    if (L >= f) return this.predictNoise(latents, t, inputScale, context, r);
    const starts = contextWindowStarts(f, L, r.contextOverlap, r.contextLoop);
    // Frames s..s+L (mod f: closed-loop windows wrap) of every video: [videos * L, 4, h, w].
    const framesOf = (x: Tensor, perVideo: number, v: number, start: number, count: number) =>
      slice(gpu, x, 0, v * perVideo + start, v * perVideo + start + count);
    const joined = (parts: Tensor[]) => {
      if (parts.length === 1) return parts[0];
      const y = concat(gpu, parts, 0);
      for (const p of parts) p.release();
      return y;
    };
    const eps: Tensor[] = [];
    try {
      for (const s of starts) {
        const runs: [number, number][] = s + L <= f ? [[s, L]] : [[s, f - s], [0, s + L - f]];
        const x = joined(
          Array.from(
            { length: r.videos },
            (_, v) => runs.map(([a, n]) => framesOf(latents, f, v, a, n)),
          )
            .flat(),
        );
        try {
          eps.push(this.predictNoise(x, t, inputScale, context, { ...r, frames: L }));
        } finally {
          x.release();
        }
      }
      const pieces: Tensor[] = [];
      const spans = frameSpans(f, starts, L);
      for (let v = 0; v < r.videos; v++) {
        for (const span of spans) {
          const n = span.end - span.start;
          const terms = span.windows.map((w) =>
            framesOf(eps[w], L, v, (span.start - starts[w] + f) % f, n)
          );
          if (terms.length === 1) {
            pieces.push(terms[0]);
            continue;
          }
          pieces.push(mean(gpu, terms));
          for (const x of terms) x.release();
        }
      }
      return joined(pieces);
    } finally {
      for (const e of eps) e.release();
    }
  }

  /** Runs text encoding and the denoising loop; returns final latents [1, 4, f, h, w]. */
  async generateLatents(req: GenerateRequest, options: LatentOptions = {}): Promise<Float32Array> {
    const r = this.resolve(req);
    await this.#ensureFits(r, { videos: 1, decode: false });
    const latents = await this.#denoise(r, options, {});
    const out = await this.#readLatents(latents, r);
    latents.release();
    return out;
  }

  /** Generates an animation. */
  async generate(req: GenerateRequest, options: GenerateOptions = {}): Promise<Animation> {
    const [anim] = await this.#generate(this.resolve(req), undefined, undefined, options);
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
    req: Omit<GenerateRequest, "prompt"> & { negativePrompts?: readonly string[] },
    options: GenerateOptions = {},
  ): Promise<Animation[]> {
    if (!prompts.length) throw new InputError("generateBatch needs at least one prompt");
    for (const p of prompts) {
      if (typeof p !== "string") throw new InputError("prompts must be strings");
    }
    const negatives = req.negativePrompts ??
      new Array(prompts.length).fill(req.negativePrompt ?? "");
    if (negatives.length !== prompts.length) {
      throw new InputError(
        `${negatives.length} negative prompts for ${prompts.length} prompts; give one per prompt`,
      );
    }
    const r = this.resolve({ ...req, prompt: prompts[0] });
    return await this.#generate(r, prompts, negatives, options);
  }

  async #generate(
    r: ResolvedRequest,
    prompts: readonly string[] | undefined,
    negativePrompts: readonly string[] | undefined,
    options: GenerateOptions,
  ): Promise<Animation[]> {
    this.#checkAlive();
    await this.#ensureFits(r, { videos: prompts?.length ?? 1, decode: true });
    const timings: Record<string, number> = {};
    const t0 = performance.now();
    const latents = await this.#denoise(r, { ...options, prompts, negativePrompts }, timings);
    const td = performance.now();
    let frames: Frame[];
    try {
      frames = await this.decode(latents, { ...r, frames: latents.shape[0] }, options);
    } finally {
      latents.release();
    }
    timings.decode = performance.now() - td;
    timings.total = performance.now() - t0;
    const out: Animation[] = [];
    for (let v = 0; v * r.frames < frames.length; v++) {
      out.push(
        new Animation({
          frames: frames.slice(v * r.frames, (v + 1) * r.frames),
          fps: r.fps,
          seed: r.seed,
          timings,
        }),
      );
    }
    return out;
  }

  async #denoise(
    r: ResolvedRequest,
    options: LatentOptions & { prompts?: readonly string[]; negativePrompts?: readonly string[] },
    timings: Record<string, number>,
  ): Promise<Tensor> {
    this.#checkAlive();
    const gpu = this.gpu;
    const { onProgress, signal } = options;
    const throwIfAborted = () => {
      if (signal?.aborted) throw new AbortError();
    };
    throwIfAborted();
    const h = r.height / 8, w = r.width / 8, f = r.frames;
    const b = options.prompts?.length ?? 1;
    const cfg = r.guidance > 1;
    const tEnc = performance.now();
    onProgress?.({ stage: "encode", step: 0, total: 1, elapsedMs: 0 });
    const context = this.encodePrompt(
      { ...r, prompts: options.prompts, negativePrompts: options.negativePrompts },
      cfg,
      onProgress,
    );
    await gpu.sync();
    timings.encode = performance.now() - tEnc;
    onProgress?.({ stage: "encode", step: 1, total: 1, elapsedMs: timings.encode });

    const scheduler: Scheduler = createScheduler(
      r.scheduler,
      options.schedulerConfig ?? ANIMATEDIFF_SCHEDULER_CONFIG,
      r.steps,
    );
    const gen = new TorchGenerator(r.seed);
    const shape = [b, 4, f, h, w];
    const noise = options.initialLatents ?? gen.randn(shape);
    if (noise.length !== b * 4 * f * h * w) {
      context.release();
      throw new InputError(
        `initial latents have ${noise.length} values, expected ${b * 4 * f * h * w}`,
      );
    }
    // [b, 4, f, h, w] -> [b*f, 4, h, w]: frames folded into the batch, video-major.
    const upload = (data: Float32Array, k: number) =>
      gpu.upload(toFrameMajor(data, f, h, w, k), [b * f, 4, h, w], this.dtype, "latents");
    let latents = upload(noise, scheduler.initNoiseSigma);
    const ops: VectorOps<Tensor> = {
      lincomb: (terms) => linearCombination(gpu, terms),
      randn: () => upload(gen.randn(shape), 1),
      release: (x) => x.release(),
    };
    const total = scheduler.timesteps.length;
    const tLoop = performance.now();
    onProgress?.({ stage: "denoise", step: 0, total, elapsedMs: 0 });
    try {
      for (let i = 0; i < total; i++) {
        throwIfAborted();
        const eps = this.predictNoiseWindowed(
          latents,
          scheduler.timesteps[i],
          scheduler.modelInputScale(i),
          context,
          { ...r, videos: b },
        );
        const { prevSample, predOriginal } = scheduler.step(ops, i, eps, latents);
        eps.release();
        predOriginal?.release();
        latents.release();
        latents = prevSample;
        await gpu.sync();
        if (options.onStepLatents) {
          options.onStepLatents(i, await this.#readLatents(latents, r));
        }
        const elapsed = performance.now() - tLoop;
        onProgress?.({
          stage: "denoise",
          step: i + 1,
          total,
          elapsedMs: elapsed,
          etaMs: (elapsed / (i + 1)) * (total - i - 1),
        });
      }
    } catch (e) {
      latents.release();
      throw e;
    } finally {
      scheduler.reset(ops);
      context.release();
    }
    timings.denoise = performance.now() - tLoop;
    // The UNet's free buffers go back to the driver before the VAE allocates its own.
    gpu.pool.trim();
    return latents;
  }

  async #readLatents(latents: Tensor, r: ResolvedRequest): Promise<Float32Array> {
    const data = await this.gpu.read(latents);
    return toChannelMajor(data, r.frames, r.height / 8, r.width / 8);
  }

  /**
   * Decodes latents [f, 4, h, w] frame by frame into RGBA frames.
   * @ignore
   */
  async decode(
    latents: Tensor,
    r: { frames: number; width: number; height: number },
    options: GenerateOptions = {},
  ): Promise<Frame[]> {
    const gpu = this.gpu;
    const frames: Frame[] = [];
    const t0 = performance.now();
    const inv = 1 / this.vae.config.scalingFactor;
    options.onProgress?.({ stage: "decode", step: 0, total: r.frames, elapsedMs: 0 });
    // Frames too large to decode at once (for this adapter's bindings) decode in tiles.
    const tile = pickDecodeTile(this, r.height / 8, r.width / 8);
    for (let i = 0; i < r.frames; i++) {
      if (options.signal?.aborted) throw new AbortError();
      const z = slice(gpu, latents, 0, i, i + 1);
      const zs = scale(gpu, z, inv);
      z.release();
      let data: Float32Array;
      if (tile === null) {
        const img = this.vae.forward(gpu, zs);
        data = await gpu.read(img);
        img.release();
      } else {
        data = await decodeTiled(gpu, this.vae, zs, tile);
      }
      zs.release();
      frames.push(toRgba(data, r.width, r.height));
      const elapsed = performance.now() - t0;
      options.onProgress?.({
        stage: "decode",
        step: i + 1,
        total: r.frames,
        elapsedMs: elapsed,
        etaMs: (elapsed / (i + 1)) * (r.frames - i - 1),
      });
    }
    return frames;
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
    return await this.#plan(this.resolve(req), options.precision ?? this.info.precision, {
      videos: options.prompts ?? 1,
      suggest: true,
      decode: true,
    });
  }

  async #plan(
    r: ResolvedRequest,
    precision: Precision,
    o: { videos: number; suggest: boolean; decode: boolean },
  ): Promise<MemoryPlan> {
    const planner = await this.#planner(precision);
    const gpu = planner.gpu;
    gpu.pool.trim();
    gpu.pool.resetPeak();
    const weights = gpu.persistentBytes;
    const stages = { encode: 0, denoise: 0, decode: 0 };
    let stage: keyof typeof stages | null = null;
    const mark = (next: keyof typeof stages | null) => {
      if (stage) {
        stages[stage] = Math.max(stages[stage], weights + gpu.pool.stats().peakAllocatedBytes);
      }
      gpu.pool.resetPeak();
      stage = next;
    };
    let limit: EngineLimitError | null = null;
    const prompts = o.videos > 1 ? new Array(o.videos).fill(r.prompt) : undefined;
    const onProgress = (e: ProgressEvent) => {
      if (e.stage !== stage && e.stage in stages) mark(e.stage as keyof typeof stages);
    };
    const few = { ...r, steps: Math.min(r.steps, 3) };
    try {
      if (o.decode) await planner.#generate(few, prompts, undefined, { onProgress });
      else (await planner.#denoise(few, { onProgress, prompts }, {})).release();
    } catch (e) {
      if (!(e instanceof EngineLimitError)) throw e;
      limit = e;
    }
    mark(null);
    const peak = Math.max(stages.encode, stages.denoise, stages.decode, weights);
    const plan: MemoryPlan = {
      adapter: this.gpu.info.name,
      precision,
      frames: r.frames,
      width: r.width,
      height: r.height,
      weightsBytes: weights,
      activationsBytes: peak - weights,
      peakBytes: peak,
      stages,
      maxStorageBufferBindingSize: gpu.limits.maxStorageBufferBindingSize,
      maxBufferSize: gpu.limits.maxBufferSize,
      decodeTiles: o.decode ? decodeTileCount(planner, r) : 0,
      budgetBytes: this.#budget,
      fits: limit === null && (this.#budget === null || peak <= this.#budget),
    };
    if (!plan.fits && o.suggest) {
      plan.reason = planFailure(plan, limit, await this.#fitting(r, precision, o));
    } else if (!plan.fits) {
      plan.reason = limit?.message ?? "over budget";
    }
    return plan;
  }

  /** What would fit instead of `r`: f16, fewer frames (or a shorter context), a smaller size. */
  async #fitting(
    r: ResolvedRequest,
    precision: Precision,
    o: { videos: number; decode: boolean },
  ): Promise<string[]> {
    const fits = async (q: ResolvedRequest, p = precision) =>
      (await this.#plan({ ...q, steps: 1 }, p, { ...o, suggest: false })).fits;
    const out: string[] = [];
    if (precision === "f32" && this.gpu.hasF16 && await fits(r, "f16")) out.push("f16 precision");
    const windowed = r.contextLength < r.frames;
    const most = windowed ? r.contextLength : r.frames;
    if (most > 1) {
      const n = await largestFitting(
        1,
        most - 1,
        (k) =>
          fits(
            windowed
              ? { ...r, contextLength: k, contextOverlap: 0 }
              : { ...r, frames: k, contextLength: k },
          ),
      );
      if (n !== null) out.push(windowed ? `a context length of ${n}` : `${n} frames`);
    }
    // Sizes keep the aspect ratio, in steps of 8 pixels on the longer side.
    const long = Math.max(r.width, r.height);
    const sized = (k: number) => {
      const w = Math.max(8, Math.floor((r.width * k) / long / 8) * 8);
      const h = Math.max(8, Math.floor((r.height * k) / long / 8) * 8);
      return { ...r, width: w, height: h };
    };
    if (long > 8) {
      const k = await largestFitting(8, long - 8, (v) => fits(sized(Math.floor(v / 8) * 8)));
      if (k !== null) {
        const q = sized(Math.floor(k / 8) * 8);
        out.push(`${q.width}x${q.height}`);
      }
    }
    return out;
  }

  /** Throws an EngineLimitError with what would fit when a request's plan does not fit. */
  async #ensureFits(r: ResolvedRequest, o: { videos: number; decode: boolean }): Promise<void> {
    if (this.gpu.virtual) return;
    // What a plan depends on (not the prompt, seed or step count beyond the first few).
    const key = JSON.stringify([
      r.frames,
      r.width,
      r.height,
      r.contextLength,
      r.contextOverlap,
      r.contextLoop,
      r.scheduler,
      r.guidance > 1,
      r.clipSkip === 1,
      Math.min(r.steps, 3),
      o,
      this.gpu.limits,
    ]);
    if (this.#fits.has(key)) return;
    const plan = await this.#plan(r, this.info.precision, { ...o, suggest: false });
    if (plan.fits) {
      this.#fits.add(key);
      return;
    }
    const full = await this.#plan(r, this.info.precision, { ...o, suggest: true });
    throw new EngineLimitError(full.reason ?? "request does not fit");
  }

  /**
   * This pipeline's architecture on a virtual Gpu with this adapter's limits, in `precision`
   * (weights reserved, never read): replays requests for planning.
   */
  #planner(precision: Precision): Promise<AnimationPipeline> {
    if (this.gpu.virtual && precision === this.info.precision) return Promise.resolve(this);
    let p = this.#planners.get(precision);
    if (!p) {
      p = (async () => {
        const info = { ...this.gpu.info };
        if (precision === "f16" && !info.features.includes("shader-f16")) {
          info.features = [...info.features, "shader-f16"];
        }
        const gpu = Gpu.virtual(info);
        gpu.setLimits(this.gpu.limits);
        const [te, un, mo, va] = this.#stores.map((s, i) =>
          new WeightStore(gpu, s.shapeMap(), {
            dtype: precision,
            part: ["text encoder", "unet", "motion module", "vae"][i],
          })
        );
        const textEncoder = new ClipTextEncoder(te, this.textEncoder.config);
        const unet = new UNet3D(un, mo, this.unet.config, this.unet.motionConfig);
        unet.fidelity = this.unet.fidelity;
        const vae = new VaeDecoder(va, this.vae.config);
        for (const s of [te, un, mo, va]) await s.loadAll();
        return new AnimationPipeline({
          info: { ...this.info, precision },
          gpu,
          ownsGpu: true,
          tokenizer: this.tokenizer,
          textEncoder,
          unet,
          vae,
          stores: [te, un, mo, va],
          dtype: precision,
          budget: this.#budget,
        });
      })();
      this.#planners.set(precision, p);
    }
    return p;
  }

  #checkAlive(): void {
    if (this.#disposed) throw new Error("pipeline was disposed");
  }

  /** Releases all GPU memory (and the device when the pipeline created it). */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const p of this.#planners.values()) p.then((v) => v.dispose(), () => {});
    for (const s of this.#stores) s.dispose();
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

/**
 * Swaps the channel (4) and frame axes of every video: [b, 4, f, h, w] <-> [b, f, 4, h, w],
 * scaling by `k`. The number of videos b is inferred from the length.
 */
function swapChannelsAndFrames(
  x: Float32Array,
  f: number,
  hw: number,
  toFrames: boolean,
  k: number,
): Float32Array {
  const videos = x.length / (4 * f * hw);
  const out = new Float32Array(x.length);
  for (let v = 0; v < videos; v++) {
    const base = v * 4 * f * hw;
    for (let c = 0; c < 4; c++) {
      for (let fi = 0; fi < f; fi++) {
        const cm = base + (c * f + fi) * hw, fm = base + (fi * 4 + c) * hw;
        const [src, dst] = toFrames ? [cm, fm] : [fm, cm];
        for (let i = 0; i < hw; i++) out[dst + i] = x[src + i] * k;
      }
    }
  }
  return out;
}

/**
 * [b, 4, f, h, w] (diffusers) * k -> [b*f, 4, h, w] (frames folded into the batch); b is
 * inferred from the length.
 */
export function toFrameMajor(
  x: Float32Array,
  f: number,
  h: number,
  w: number,
  k = 1,
): Float32Array {
  return swapChannelsAndFrames(x, f, h * w, true, k);
}

/** [b*f, 4, h, w] -> [b, 4, f, h, w]. */
export function toChannelMajor(x: Float32Array, f: number, h: number, w: number): Float32Array {
  return swapChannelsAndFrames(x, f, h * w, false, 1);
}

/** Decoded image [1, 3, H, W] in [-1, 1] -> RGBA bytes: round(clamp(x/2 + 0.5, 0, 1) * 255). */
export function toRgba(img: Float32Array, width: number, height: number): Frame {
  const n = width * height;
  const data = new Uint8ClampedArray(n * 4);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) {
      const v = Math.min(1, Math.max(0, img[c * n + i] / 2 + 0.5));
      data[i * 4 + c] = Math.round(v * 255);
    }
    data[i * 4 + 3] = 255;
  }
  return { data, width, height };
}

/** VAE tiles per frame of a request (1 when frames decode whole). */
function decodeTileCount(planner: AnimationPipeline, r: ResolvedRequest): number {
  const h = r.height / 8, w = r.width / 8;
  let t: number | null;
  try {
    t = pickDecodeTile(planner, h, w);
  } catch (e) {
    if (e instanceof EngineLimitError) return 0;
    throw e;
  }
  if (t === null) return 1;
  const stride = Math.floor(t * 0.75);
  return Math.ceil(h / stride) * Math.ceil(w / stride);
}

/** Mean of same-shape tensors, 4 terms per linear combination. */
function mean(gpu: Gpu, xs: readonly Tensor[]): Tensor {
  const c = 1 / xs.length;
  let acc = linearCombination(gpu, xs.slice(0, 4).map((x) => ({ c, x })));
  for (let i = 4; i < xs.length; i += 3) {
    const next = linearCombination(gpu, [
      { c: 1, x: acc },
      ...xs.slice(i, i + 3).map((x) => ({ c, x })),
    ]);
    acc.release();
    acc = next;
  }
  return acc;
}
