/**
 * The library contract of the animation pipeline (DESIGN.md "Library"): options, requests,
 * progress events and results. engine/pipeline.ts implements it.
 * @module
 */

import type { FreeInitOptions } from "./free_init.ts";
import type { Frame } from "./output/frame.ts";
import type { Gpu } from "../kernels/gpu/device.ts";
import type { SCHEDULERS } from "./request.ts";

/**
 * Scheduler names accepted by requests and the CLI.
 *
 * @example
 * ```ts
 * import { type GenerateRequest, type SchedulerName } from "@zoetrope/animatediff";
 *
 * const scheduler: SchedulerName = "dpmpp-2m-karras";
 * const request: GenerateRequest = { prompt: "a fox in snow", scheduler, steps: 20 };
 * ```
 */
export type SchedulerName = typeof SCHEDULERS[number];

/**
 * Storage precision: f32 (parity) or f16 storage with f32 accumulation (speed).
 *
 * @example
 * ```ts
 * import { loadPipeline, type Precision } from "@zoetrope/animatediff";
 *
 * const precision: Precision = "f16"; // needs an adapter with shader-f16
 * const pipe = await loadPipeline({ precision });
 * ```
 */
export type Precision = "f32" | "f16";

/**
 * A LoRA to merge into the base model.
 *
 * @example
 * ```ts
 * import { type LoraSpec, loadPipeline } from "@zoetrope/animatediff";
 *
 * const loras: LoraSpec[] = [{ path: "models/loras/pixel_art.safetensors", scale: 0.7 }];
 * const pipe = await loadPipeline({ model: "models/base", motionModule: "mm.ckpt", loras });
 * ```
 */
export interface LoraSpec {
  /** Path or `hf:` reference of a kohya or diffusers/peft LoRA file. */
  path: string;
  /** Strength (default 1). */
  scale?: number;
}

/**
 * Options of {@link loadPipeline}.
 *
 * @example
 * ```ts
 * import { loadPipeline, type PipelineOptions } from "@zoetrope/animatediff";
 *
 * const options: PipelineOptions = {
 *   model: "hf:emilianJR/epiCRealism",
 *   motionModule: "hf:guoyww/animatediff/mm_sd_v15_v2.ckpt",
 *   precision: "f32",
 * };
 * const pipe = await loadPipeline(options);
 * ```
 */
export interface PipelineOptions {
  /**
   * Diffusers folder, single-file .safetensors/.ckpt, `hf:` reference, or a built-in demo model:
   * `demo` (the default) or `demo:paper`.
   */
  model?: string;
  /** Original AnimateDiff motion module (.ckpt/.safetensors) or MotionAdapter folder. Default: the demo's. */
  motionModule?: string;
  /**
   * Textual-inversion embeddings (A1111 `.pt` / `.safetensors`, diffusers `learned_embeds`):
   * each bound to `token` (default: the file name), usable in prompts and negative prompts; a
   * multi-vector embedding's token stands for all its vectors.
   */
  embeddings?: readonly { path: string; token?: string }[];
  /** LoRAs merged into the base model and motion module, in order. */
  loras?: LoraSpec[];
  /** Folder with vocab.json + merges.txt (default: the model's tokenizer/). */
  tokenizer?: string;
  /** Diffusers folder whose configs give what weights cannot tell (groups, heads). */
  modelConfig?: string;
  /** MotionAdapter config.json (or its folder). */
  motionModuleConfig?: string;
  /** Storage precision (default "f32"; "f16" needs `shader-f16`). */
  precision?: Precision;
  /**
   * Where diffusers and the original AnimateDiff differ, which to follow: "diffusers" (default;
   * the motion module's GroupNorm spans all frames of a clip, UNet GroupNorms are per frame) or
   * "original" (motion GroupNorm per frame; with v1 motion modules the UNet's ResNet GroupNorms
   * span all frames).
   */
  fidelity?: "diffusers" | "original";
  /** An existing GPU context to use (default: a new one). */
  device?: Gpu;
  /**
   * GPU memory in bytes that a request may use (weights included). Requests whose memory plan
   * needs more fail before running, with what would fit. Default: unknown for GPUs (WebGPU does
   * not say; only the adapter's buffer limits are checked), host memory for software adapters.
   */
  maxMemory?: number;
  /** Progress while loading (stage "load"). */
  onProgress?: (e: ProgressEvent) => void;
}

/**
 * One generation request.
 *
 * @example
 * ```ts
 * import { type GenerateRequest, loadPipeline } from "@zoetrope/animatediff";
 *
 * const request: GenerateRequest = {
 *   prompt: "a paper boat on a river",
 *   negativePrompt: "blurry",
 *   frames: 16,
 *   width: 512,
 *   height: 512,
 *   steps: 25,
 *   guidance: 7.5,
 *   scheduler: "ddim",
 *   seed: 42,
 * };
 * const anim = await (await loadPipeline()).generate({ ...request, width: 64, height: 64 });
 * ```
 */
export interface GenerateRequest {
  /** What to animate ("" allowed with `promptMap`, else in front of every keyframe prompt). */
  prompt: string;
  /**
   * Prompt travel: keyframe prompts by frame, `{0: "a girl smiling", 8: "a girl crying"}`; each
   * frame's text embedding is the linear interpolation of its two neighbouring keyframes' (frames
   * after the last key hold it, frames before the first hold the first). The negative prompt
   * stays one. Keys are frames in [0, frames - 1]. Not with generateBatch.
   */
  promptMap?: Readonly<Record<number | string, string>>;
  /** What to steer away from (default ""). */
  negativePrompt?: string;
  /**
   * Frames (default 16; at most the motion module's position-encoding length, or up to 512 with
   * `contextLength`).
   */
  frames?: number;
  /**
   * Frames per motion-module window for longer animations: the UNet denoises overlapping
   * windows of this many frames and averages their noise predictions where they overlap (A1111's
   * "context batch size"). Default: all frames in one window.
   */
  contextLength?: number;
  /** Frames shared by neighbouring windows (default contextLength / 4, rounded down). */
  contextOverlap?: number;
  /**
   * Closed loop (with contextLength): windows wrap past the last frame to the first, so the
   * animation loops seamlessly (default false).
   */
  contextLoop?: boolean;
  /**
   * With contextLength: how overlapping windows combine per frame: "flat" (the mean, default)
   * or "pyramid" (weights 1..m..1 across a window, AnimateDiff-Evolved's default).
   */
  contextWeighting?: "flat" | "pyramid";
  /**
   * With contextLength: FreeNoise's noise re-use: every window after the first starts from a
   * shuffled copy of the noise `contextLength` frames earlier, so long clips stay coherent.
   */
  freeNoise?: boolean;
  /** Width and height in pixels, multiples of 8 (default 512). */
  width?: number;
  /** Height in pixels, a multiple of 8 (default 512). */
  height?: number;
  /** Denoising steps (default 25). */
  steps?: number;
  /** Classifier-free guidance scale (default 7.5). */
  guidance?: number;
  /** Sampler (default "ddim"). */
  scheduler?: SchedulerName;
  /**
   * Seed of the torch-compatible generator (default: random). Seeds above 2^53 (AnimateDiff
   * configs use 64-bit seeds) must be given as bigint.
   */
  seed?: number | bigint;
  /** A1111 numbering: 1 = last layer (default), 2 = penultimate. */
  clipSkip?: number;
  /** Playback rate stored in the result (default 8). */
  fps?: number;
  /**
   * Motion scale (default 1): multiplies the motion modules' temporal-attention keys, logits =
   * s * q.k / sqrt(d) (AnimateDiff-Evolved's `scale_multival`). Above 1 sharpens which frames
   * each frame follows; below 1 spreads it. In (0, 10].
   */
  motionScale?: number;
  /**
   * Motion effect (default 1): every motion module's output becomes x + e * (module(x) - x)
   * (AnimateDiff-Evolved's `effect_multival`): 0 = no motion module at all, below 1 less
   * motion, above 1 more. In [0, 10].
   */
  motionEffect?: number;
  /**
   * FreeInit (diffusers' `enable_free_init`): `iterations` denoising passes (default 3), each
   * after the first starting from the last result re-noised with the first noise, its low
   * frequencies kept (`method` butterworth | gaussian | ideal | box, `order`, `spatialStop`,
   * `temporalStop`, defaults 4, 0.25, 0.25) and its high ones from fresh noise; `fastSampling`
   * gives pass k of n floor(steps / n * (k + 1)) steps. Costs `iterations` times the denoising.
   */
  freeInit?: FreeInitOptions;
  /**
   * Video to video (diffusers' AnimateDiffVideoToVideoPipeline): the input frames (RGBA) are
   * encoded by the VAE and noised to `strength`; the clip is denoised from there. Its length is
   * the default frame count, its size the default width and height (other sizes are resized).
   * DDIM or LCM; combines with context windows and `promptMap`, not with `freeInit` or
   * `freeNoise`. generateBatch takes `videos` instead, one per prompt.
   */
  video?: readonly Frame[];
  /** Image to video: this image starts every frame (as a video of `frames` copies of it). */
  image?: Frame;
  /**
   * How much of the input `video` / `image` is replaced, in (0, 1] (default 0.8): the denoising
   * starts at step steps - floor(steps * strength).
   */
  strength?: number;
}

/**
 * Pipeline stages reported by progress events.
 *
 * @example
 * ```ts
 * import { type ProgressEvent, type Stage } from "@zoetrope/animatediff";
 *
 * const label: Record<Stage, string> = {
 *   load: "loading",
 *   encode: "encoding prompt",
 *   denoise: "denoising",
 *   decode: "decoding",
 *   output: "encoding",
 * };
 * const show = (e: ProgressEvent) => console.log(`${label[e.stage]} ${e.step}/${e.total}`);
 * ```
 */
export type Stage = "load" | "encode" | "denoise" | "decode" | "output";

/**
 * A progress report.
 *
 * @example
 * ```ts
 * import { loadPipeline, type ProgressEvent } from "@zoetrope/animatediff";
 *
 * const onProgress = (e: ProgressEvent) => {
 *   const eta = e.etaMs === undefined ? "" : ` (${Math.round(e.etaMs / 1000)} s left)`;
 *   console.log(`${e.stage} ${e.step}/${e.total}${eta}`, e.message ?? "");
 * };
 * const pipe = await loadPipeline({ onProgress });
 * await pipe.generate({ prompt: "sparks", frames: 4, width: 32, height: 32, steps: 2 }, { onProgress });
 * ```
 */
export interface ProgressEvent {
  /** Which stage is reporting. */
  stage: Stage;
  /** Steps done in this stage. */
  step: number;
  /** Steps in this stage. */
  total: number;
  /** Milliseconds since the stage (or the generation) started. */
  elapsedMs: number;
  /** Estimated milliseconds left in this stage, when known. */
  etaMs?: number;
  /** A note (e.g. a warning that the prompt was truncated). */
  message?: string;
}

/**
 * Options of {@link AnimationPipeline.generate}.
 *
 * @example
 * ```ts
 * import { AbortError, loadPipeline } from "@zoetrope/animatediff";
 *
 * const pipe = await loadPipeline();
 * const controller = new AbortController();
 * setTimeout(() => controller.abort(), 100);
 * try {
 *   await pipe.generate({ prompt: "storm", frames: 8, width: 64, height: 64 }, {
 *     signal: controller.signal,
 *     onProgress: (e) => console.log(e.stage, e.step),
 *   });
 * } catch (e) {
 *   if (!(e instanceof AbortError)) throw e;
 * }
 * ```
 */
export interface GenerateOptions {
  /** Called at the start and after each step of every stage. */
  onProgress?: (e: ProgressEvent) => void;
  /** Cancels between denoising steps; the promise rejects with an AbortError. */
  signal?: AbortSignal;
  /**
   * Live preview: after each denoising step, the first video's latents projected to RGB (a
   * linear map measured from the model's VAE decoder; frames at 1/8 size, scaled up to at least
   * 64 pixels). Costs one latent readback per step.
   */
  onPreview?: (preview: { step: number; total: number; frames: Frame[] }) => void;
}

/**
 * What a loaded pipeline is.
 *
 * @example
 * ```ts
 * import { loadPipeline, type PipelineInfo } from "@zoetrope/animatediff";
 *
 * const info: PipelineInfo = (await loadPipeline()).info;
 * console.log(info.demo, info.motionVersion, info.maxFrames, info.precision, info.adapter);
 * ```
 */
export interface PipelineInfo {
  /** Where the base model came from (path or `hf:` reference; the demo's folder for the demo). */
  model: string;
  /** Where the motion module came from. */
  motionModule: string;
  /** Motion module version, detected from the weights. */
  motionVersion: "v1" | "v2" | "v3";
  /** Maximum frames (motion module position-encoding length). */
  maxFrames: number;
  /** Storage precision in use. */
  precision: Precision;
  /** Name of the GPU adapter. */
  adapter: string;
  /** True for the built-in demo models (`demo`, `demo:paper`). */
  demo: boolean;
}

export type { Frame };
