/**
 * The library contract of the animation pipeline (DESIGN.md "Library"): options, requests,
 * progress events and results. engine/pipeline.ts implements it.
 * @module
 */

import type { Frame } from "./output/frame.ts";
import type { Gpu } from "./gpu/device.ts";

/** Scheduler names accepted by requests and the CLI. */
export type SchedulerName = "ddim" | "euler" | "euler-a" | "dpmpp-2m" | "dpmpp-2m-karras";

/** Storage precision: f32 (parity) or f16 storage with f32 accumulation (speed). */
export type Precision = "f32" | "f16";

/** A LoRA to merge into the base model. */
export interface LoraSpec {
  /** Path or `hf:` reference of a kohya or diffusers/peft LoRA file. */
  path: string;
  /** Strength (default 1). */
  scale?: number;
}

/** Options of {@link loadPipeline}. */
export interface PipelineOptions {
  /** Diffusers folder, single-file .safetensors/.ckpt, or `hf:` reference. Default: the tiny random-weights demo model. */
  model?: string;
  /** Original AnimateDiff motion module (.ckpt/.safetensors) or MotionAdapter folder. Default: the demo's. */
  motionModule?: string;
  loras?: LoraSpec[];
  /** Folder with vocab.json + merges.txt (default: the model's tokenizer/). */
  tokenizer?: string;
  /** Diffusers folder whose configs give what weights cannot tell (groups, heads). */
  modelConfig?: string;
  /** MotionAdapter config.json (or its folder). */
  motionModuleConfig?: string;
  precision?: Precision;
  /** An existing GPU context to use (default: a new one). */
  device?: Gpu;
  /** Progress while loading (stage "load"). */
  onProgress?: (e: ProgressEvent) => void;
}

/** One generation request. */
export interface GenerateRequest {
  prompt: string;
  negativePrompt?: string;
  /** Frames (default 16; at most the motion module's position-encoding length). */
  frames?: number;
  /** Width and height in pixels, multiples of 8 (default 512). */
  width?: number;
  height?: number;
  /** Denoising steps (default 25). */
  steps?: number;
  /** Classifier-free guidance scale (default 7.5). */
  guidance?: number;
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
}

/** Pipeline stages reported by progress events. */
export type Stage = "load" | "encode" | "denoise" | "decode" | "output";

/** A progress report. */
export interface ProgressEvent {
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

/** Options of {@link AnimationPipeline.generate}. */
export interface GenerateOptions {
  onProgress?: (e: ProgressEvent) => void;
  /** Cancels between denoising steps; the promise rejects with an AbortError. */
  signal?: AbortSignal;
}

/** What a loaded pipeline is. */
export interface PipelineInfo {
  model: string;
  motionModule: string;
  motionVersion: "v1" | "v2" | "v3";
  /** Maximum frames (motion module position-encoding length). */
  maxFrames: number;
  precision: Precision;
  adapter: string;
  /** True for the built-in random-weights demo model. */
  demo: boolean;
}

export type { Frame };
