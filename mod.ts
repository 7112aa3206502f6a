/**
 * Zoetrope — AnimateDiff (Stable Diffusion 1.5 + motion modules) on WebGPU, in TypeScript.
 *
 * Load a base model (diffusers folder, single-file `.safetensors`/`.ckpt`, or `hf:` reference),
 * an AnimateDiff motion module (v1/v2/v3 `.ckpt`/`.safetensors` or a MotionAdapter folder) and
 * optional LoRAs with {@link loadPipeline}, then {@link AnimationPipeline.generate} animations as
 * RGBA frames, GIF, APNG, MP4 or WebM. Every op runs as a WGSL compute shader through the runtime's WebGPU
 * (`navigator.gpu`); the shaders are TypeScript strings, so the module needs no file of its own
 * at run time and works when imported from JSR or a URL.
 *
 * Also here: the output encoders ({@link encodeGif}, {@link encodeApng}, {@link encodePng},
 * {@link encodeFramesZip}, {@link encodeVideo}), weights tools ({@link inspectWeights},
 * {@link convertToSafetensors}), AnimateDiff prompt configs ({@link parsePromptConfig}) and the
 * HTTP service as an embeddable Hono app ({@link createApp}).
 *
 * Permissions: `--allow-read` for weights (and `--allow-write` to save results),
 * `--allow-net` for `hf:` references, `--allow-env` for the Hugging Face cache location; or `-A`.
 * Linux without a GPU needs a Vulkan driver such as Mesa's lavapipe (`mesa-vulkan-drivers`).
 *
 * @example Generate a GIF with the built-in demo model
 * ```ts
 * import { loadPipeline } from "@zoetrope/animatediff";
 *
 * // No model given: the built-in demo model, trained by Zoetrope on a synthetic world (offline).
 * const pipe = await loadPipeline();
 * try {
 *   // The demo's own defaults apply: 8 frames of 64 x 64, 12 steps, guidance 2.
 *   const anim = await pipe.generate({ prompt: "a red circle moving right", seed: 42 });
 *   await Deno.writeFile("red-circle.gif", anim.toGif());
 * } finally {
 *   pipe.dispose();
 * }
 * ```
 *
 * @example A real checkpoint, a motion module and a LoRA
 * ```ts
 * import { loadPipeline } from "@zoetrope/animatediff";
 *
 * const pipe = await loadPipeline({
 *   model: "models/checkpoints/realisticVision.safetensors",
 *   motionModule: "models/motion_modules/mm_sd_v15_v2.ckpt",
 *   loras: [{ path: "models/loras/toy.safetensors", scale: 0.8 }],
 *   tokenizer: "models/clip-tokenizer",
 * });
 * const anim = await pipe.generate(
 *   { prompt: "a toy robot walking on a beach", frames: 16, steps: 25, seed: 7 },
 *   { onProgress: (e) => console.log(e.stage, `${e.step}/${e.total}`) },
 * );
 * await Deno.writeFile("robot.png", anim.toApng());
 * pipe.dispose();
 * ```
 *
 * @example Training a motion module (the AnimateDiff paper's step, on WebGPU)
 * ```ts
 * import { createTrainer } from "@zoetrope/animatediff";
 *
 * const trainer = await createTrainer({
 *   model: "models/sd15",            // frozen text-to-image model
 *   train: "motion",                 // a new module, proj_out zero-initialised
 *   optimizer: { lr: 1e-4 },
 *   maxGradNorm: 1,
 *   seed: 42,
 * });
 * // pixels: [b, frames, 3, H, W] in [-1, 1]
 * const { loss, gradNorm } = await trainer.step({ pixels, prompts: ["a dog running"] });
 * await trainer.save("my_motion_module.safetensors");
 * trainer.dispose();
 * ```
 *
 * @module
 */

export {
  Animation,
  AnimationPipeline,
  type LatentOptions,
  loadPipeline,
  MAX_SIDE,
  MAX_STEPS,
  planGeneration,
  type ResolvedRequest,
  SCHEDULERS,
} from "./engine/pipeline.ts";
export { defaultMemoryBudget, type MemoryPlan } from "./engine/memory_plan.ts";
export type {
  Frame,
  GenerateOptions,
  GenerateRequest,
  LoraSpec,
  PipelineInfo,
  PipelineOptions,
  Precision,
  ProgressEvent,
  SchedulerName,
  Stage,
} from "./engine/pipeline_types.ts";
export type { MotionNormMode } from "./engine/models/motion.ts";
export type { FreeInitMethod, FreeInitOptions, ResolvedFreeInit } from "./engine/free_init.ts";
export type { Keyframes } from "./engine/prompt_travel.ts";
export type { ContextWeighting } from "./engine/context_windows.ts";
export type { Fidelity } from "./engine/models/unet.ts";
export {
  createTrainer,
  type TrainBatch,
  type Trainer,
  type TrainerOptions,
  type TrainStepResult,
  type TrainTarget,
  type TrainTensor,
} from "./engine/training/trainer.ts";
export {
  DISCRETE_GPU,
  planTraining,
  type TrainingPlan,
  type TrainingPlanOptions,
} from "./engine/training/memory.ts";
export { AbortError, InputError } from "./kernels/gpu/errors.ts";
export { Gpu, type GpuInfo, type GpuOptions } from "./kernels/gpu/device.ts";
export { EngineLimitError, NoAdapterError } from "./kernels/gpu/errors.ts";
export {
  ANIMATION_FORMATS,
  type AnimationFormat,
  type AnimationOptions,
  type ApngOptions,
  encodeAnimation,
  encodeApng,
  type EncodedAnimation,
  encodeFramesZip,
  encodeGif,
  encodePng,
  encodeVideo,
  type FramesZipOptions,
  type GifOptions,
  type ImageAnimationFormat,
  MAX_VIDEO_SIDE,
  type VideoFormat,
  type VideoOptions,
} from "./engine/output/mod.ts";
export { parsePromptConfig, type PromptJob } from "./engine/prompt_config.ts";
export { inspectWeights } from "./engine/inspect.ts";
export type { WeightsSummary } from "./weights/inspect.ts";
export type { WeightsKind } from "./weights/detect.ts";
export {
  type ConvertOptions,
  type ConvertResult,
  convertToSafetensors,
} from "./weights/convert.ts";
export {
  ANIMATEDIFF_SCHEDULER_CONFIG,
  type BetaSchedule,
  type PredictionType,
  type SchedulerConfig,
  schedulerConfigFromDiffusers,
  type TimestepSpacing,
} from "./engine/schedulers/config.ts";
export { type AppOptions, createApp, type ZoetropeApp } from "./server/app.ts";
export type {
  CancelOutcome,
  JobEvent,
  JobProgress,
  JobResultInfo,
  JobStatus,
  JobView,
  LoadedPipelineInfo,
  PipelineLoader,
  ServedAnimation,
  ServedPipeline,
} from "./server/queue.ts";
export type { JobBytes, JobsHealth, JobStore, WorkerHealth } from "./server/jobs.ts";
export type { ModelEntry, ModelsListing } from "./server/models_dir.ts";
export {
  type AnimationRequest,
  DEFAULT_LIMITS,
  type LoraRequest,
  type RequestLimits,
} from "./server/validate.ts";
