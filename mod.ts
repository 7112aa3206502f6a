/**
 * Zoetrope — AnimateDiff (Stable Diffusion 1.5 + motion modules) on WebGPU, in TypeScript.
 *
 * Load a base model (diffusers folder, single-file `.safetensors`/`.ckpt`, or `hf:` reference),
 * an AnimateDiff motion module (v1/v2/v3 `.ckpt`/`.safetensors` or a MotionAdapter folder) and
 * optional LoRAs, then generate animations as RGBA frames, GIF or APNG. Every op runs as a WGSL
 * compute shader through the runtime's WebGPU (`navigator.gpu`).
 *
 * @example
 * ```ts
 * import { loadPipeline } from "@zoetrope/animatediff";
 *
 * // No model given: the tiny random-weights demo model (offline, for trying the API).
 * const pipe = await loadPipeline();
 * const anim = await pipe.generate({ prompt: "a lighthouse in a storm", frames: 8, width: 64, height: 64, steps: 4 });
 * await Deno.writeFile("storm.gif", anim.toGif());
 * pipe.dispose();
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
  type ResolvedRequest,
  SCHEDULERS,
} from "./engine/pipeline.ts";
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
export { AbortError, InputError } from "./engine/errors.ts";
export { Gpu, type GpuInfo, type GpuOptions, NoAdapterError } from "./engine/gpu/device.ts";
export {
  type AnimationFormat,
  encodeAnimation,
  encodeApng,
  encodeFramesZip,
  encodeGif,
  encodePng,
} from "./engine/output/mod.ts";
export { parsePromptConfig, type PromptJob } from "./engine/prompt_config.ts";
export { inspectWeights, type WeightsSummary } from "./weights/inspect.ts";
export { convertToSafetensors, type ConvertOptions } from "./weights/convert.ts";
