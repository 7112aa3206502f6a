/**
 * Requests: the one list of schedulers, the request defaults, the limits, and validation. Errors
 * name the request field (`width must be a multiple of 8, got 60`); the CLI and the HTTP service
 * word them for their users (flags, JSON fields).
 * @module
 */

import { CONTEXT_WEIGHTINGS, type ContextWeighting } from "./context_windows.ts";
import { LCM_ORIGINAL_STEPS } from "./schedulers/lcm.ts";
import { checkPromptMap, type Keyframes } from "./prompt_travel.ts";
import { type ResolvedFreeInit, resolveFreeInit } from "./free_init.ts";
import { checkFrame, type Frame, resizeFrame } from "./output/frame.ts";
import { InputError } from "../kernels/gpu/errors.ts";
import type { GenerateRequest, SchedulerName } from "./pipeline_types.ts";
import { MAX_WINDOWED_FRAMES } from "./context_windows.ts";

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
export const SCHEDULERS = [
  "ddim",
  "euler",
  "euler-a",
  "dpmpp-2m",
  "dpmpp-2m-karras",
  "lcm",
] as const;

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

/** Defaults of a request's optional fields (AnimateDiff's usual settings). */
export const REQUEST_DEFAULTS = {
  negativePrompt: "",
  frames: 16,
  width: 512,
  height: 512,
  steps: 25,
  guidance: 7.5,
  scheduler: "ddim" as SchedulerName,
  clipSkip: 1,
  fps: 8,
  motionScale: 1,
  motionEffect: 1,
} as const;

/** Largest motion scale and motion effect a request may ask for. */
export const MAX_MOTION_CONTROL = 10;

/** Defaults for the built-in demo models (their native size; seconds on a CPU). */
export const DEMO_DEFAULTS = {
  frames: 8,
  width: 64,
  height: 64,
  steps: 12,
  guidance: 2,
} as const;

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
  /** How overlapping windows combine. */
  contextWeighting: ContextWeighting;
  /** FreeNoise: later windows start from shuffled noise of earlier ones. */
  freeNoise: boolean;
  /** Multiplier of the motion modules' temporal-attention keys (1 = as trained). */
  motionScale: number;
  /** Blend of the motion modules' output with their input (1 = as trained, 0 = no motion). */
  motionEffect: number;
  /** Prompt travel's keyframes (from `promptMap`), or null for one prompt for every frame. */
  keyframes: Keyframes | null;
  /** FreeInit's settings, or null for one denoising pass. */
  freeInit: ResolvedFreeInit | null;
  /** Video / image to video: the input frames (resized to width x height) and the strength. */
  /**
   * Video / image input, resized to the request: `videos` holds one clip per video of the batch
   * (one for generate(), one per prompt for generateBatch's `videos`).
   */
  init: { videos: Frame[][]; strength: number } | null;
}

/** The default strength of video and image inputs (diffusers' video-to-video default). */
export const DEFAULT_STRENGTH = 0.8;
/** Schedulers that take a video or image input (their noise is added as DDIM's). */
export const INIT_SCHEDULERS: readonly SchedulerName[] = ["ddim", "lcm"];

/** What a request is validated against: the loaded model's limits. */
export interface RequestModel {
  /** The motion module's position-encoding length. */
  maxFrames: number;
  /** Its version (for the messages). */
  motionVersion: string;
  /** Text-encoder layers (clip skip goes up to this + 1). */
  clipLayers: number;
  /** A built-in demo model: {@link DEMO_DEFAULTS} replace the size, frames and steps defaults. */
  demo?: boolean;
}

/** Applies defaults and validates a request; throws an InputError naming the field. */
export function resolveRequest(req: GenerateRequest, model: RequestModel): ResolvedRequest {
  const d = model.demo ? { ...REQUEST_DEFAULTS, ...DEMO_DEFAULTS } : REQUEST_DEFAULTS;
  const r: ResolvedRequest = {
    prompt: req.prompt,
    negativePrompt: req.negativePrompt ?? d.negativePrompt,
    frames: req.frames ?? d.frames,
    width: req.width ?? d.width,
    height: req.height ?? d.height,
    steps: req.steps ?? d.steps,
    guidance: req.guidance ?? d.guidance,
    scheduler: req.scheduler ?? d.scheduler,
    seed: req.seed ?? Math.floor(Math.random() * 2 ** 31),
    clipSkip: req.clipSkip ?? d.clipSkip,
    fps: req.fps ?? d.fps,
    contextLength: 0,
    contextOverlap: 0,
    contextLoop: req.contextLoop ?? false,
    contextWeighting: req.contextWeighting ?? "flat",
    freeNoise: req.freeNoise ?? false,
    motionScale: req.motionScale ?? d.motionScale,
    motionEffect: req.motionEffect ?? d.motionEffect,
    keyframes: null,
    freeInit: null,
    init: null,
  };
  // A video's length and size are the defaults of the clip's.
  const source = req.video ?? (req.image ? [req.image] : null);
  if (source) {
    if (req.video && req.image) throw new InputError("video and image are exclusive: give one");
    if (source.length === 0) throw new InputError("video has no frames");
    source.forEach((f, i) => {
      try {
        checkFrame(f, req.video ? `video frame ${i}` : "image");
      } catch (e) {
        throw new InputError((e as Error).message);
      }
    });
    if (req.video && req.frames === undefined) r.frames = req.video.length;
    if (req.width === undefined) r.width = Math.max(8, Math.round(source[0].width / 8) * 8);
    if (req.height === undefined) r.height = Math.max(8, Math.round(source[0].height / 8) * 8);
  } else if (req.strength !== undefined) {
    throw new InputError("strength needs a video or an image");
  }
  if (typeof r.prompt !== "string") throw new InputError("prompt must be a string");
  if (typeof r.negativePrompt !== "string") {
    throw new InputError("negativePrompt must be a string");
  }
  const int = (name: string, v: number, lo: number, hi: number, hint = "") => {
    if (!Number.isInteger(v) || v < lo || v > hi) {
      throw new InputError(`${name} must be an integer from ${lo} to ${hi}, got ${v}${hint}`);
    }
  };
  const { maxFrames, motionVersion } = model;
  if (req.contextLength === undefined) {
    int(
      "frames",
      r.frames,
      1,
      maxFrames,
      ` (the ${motionVersion} motion module's position encoding has ${maxFrames} ` +
        `positions; for longer animations set contextLength (CLI: --context-length) to at most ` +
        `${maxFrames})`,
    );
    for (const k of ["contextOverlap", "contextLoop", "contextWeighting", "freeNoise"] as const) {
      if (req[k] !== undefined) throw new InputError(`${k} needs contextLength`);
    }
    r.contextLength = r.frames;
  } else {
    int("frames", r.frames, 1, MAX_WINDOWED_FRAMES);
    int(
      "contextLength",
      req.contextLength,
      1,
      maxFrames,
      ` (the ${motionVersion} motion module's position encoding has ${maxFrames} positions)`,
    );
    r.contextLength = Math.min(req.contextLength, r.frames);
    r.contextOverlap = req.contextOverlap ?? Math.floor(req.contextLength / 4);
    int("contextOverlap", r.contextOverlap, 0, req.contextLength - 1);
    if (typeof r.contextLoop !== "boolean") {
      throw new InputError(`contextLoop must be true or false, got ${r.contextLoop}`);
    }
    if (!CONTEXT_WEIGHTINGS.includes(r.contextWeighting)) {
      throw new InputError(
        `contextWeighting must be ${CONTEXT_WEIGHTINGS.join(" or ")}, got ${r.contextWeighting}`,
      );
    }
    if (typeof r.freeNoise !== "boolean") {
      throw new InputError(`freeNoise must be true or false, got ${r.freeNoise}`);
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
  if (req.promptMap !== undefined) r.keyframes = checkPromptMap(req.promptMap, r.frames, r.prompt);
  if (req.freeInit !== undefined) {
    r.freeInit = resolveFreeInit(req.freeInit);
    if (r.freeInit.fastSampling && r.steps < r.freeInit.iterations) {
      throw new InputError(
        `freeInit.fastSampling needs at least one step per pass: steps ${r.steps} < ` +
          `iterations ${r.freeInit.iterations}`,
      );
    }
  }
  if (source) {
    const strength = req.strength ?? DEFAULT_STRENGTH;
    if (!(strength > 0 && strength <= 1)) {
      throw new InputError(`strength must be a number above 0 and at most 1, got ${strength}`);
    }
    if (req.video && req.video.length !== r.frames) {
      throw new InputError(`video has ${req.video.length} frames, but frames is ${r.frames}`);
    }
    if (!INIT_SCHEDULERS.includes(r.scheduler)) {
      throw new InputError(
        `video and image inputs take the ${
          INIT_SCHEDULERS.join(" or ")
        } scheduler, got ${r.scheduler}`,
      );
    }
    if (r.freeInit || r.freeNoise) {
      // Both reshape the starting noise, which a video input replaces with its own latents.
      throw new InputError(
        `video and image inputs start from the clip's latents: ${
          r.freeInit ? "freeInit" : "freeNoise"
        } does not apply to them`,
      );
    }
    if (Math.floor(r.steps * strength) < 1) {
      throw new InputError(
        `strength ${strength} x steps ${r.steps} leaves no denoising step (needs at least 1)`,
      );
    }
    const frames = req.video ? [...req.video] : new Array(r.frames).fill(req.image!);
    r.init = { videos: [frames.map((f) => resizeFrame(f, r.width, r.height))], strength };
  }
  if (r.scheduler === "lcm" && r.steps > LCM_ORIGINAL_STEPS) {
    throw new InputError(
      `steps: the lcm scheduler takes at most ${LCM_ORIGINAL_STEPS} steps (AnimateLCM's ` +
        `original_inference_steps), got ${r.steps}`,
    );
  }
  if (typeof r.seed === "bigint") {
    if (r.seed < 0n || r.seed >= 2n ** 64n) {
      throw new InputError(`seed must be from 0 to 2^64 - 1, got ${r.seed}`);
    }
  } else int("seed", r.seed, 0, Number.MAX_SAFE_INTEGER);
  int("clipSkip", r.clipSkip, 1, model.clipLayers + 1);
  if (!Number.isFinite(r.fps) || r.fps <= 0 || r.fps > 100) {
    throw new InputError(`fps must be a number above 0 and at most 100, got ${r.fps}`);
  }
  if (!(r.motionScale > 0 && r.motionScale <= MAX_MOTION_CONTROL)) {
    throw new InputError(
      `motionScale must be a number above 0 and at most ${MAX_MOTION_CONTROL}, got ${r.motionScale}`,
    );
  }
  if (!(r.motionEffect >= 0 && r.motionEffect <= MAX_MOTION_CONTROL)) {
    throw new InputError(
      `motionEffect must be a number from 0 to ${MAX_MOTION_CONTROL}, got ${r.motionEffect}`,
    );
  }
  return r;
}

/**
 * Video `i` of generateBatch's `videos`, checked against the resolved request (its length is the
 * request's frames; each frame readable) and resized to the request's size.
 */
export function resolveBatchVideo(
  video: unknown,
  i: number,
  r: Pick<ResolvedRequest, "frames" | "width" | "height">,
): Frame[] {
  if (!Array.isArray(video)) throw new InputError(`videos[${i}] must be an array of frames`);
  if (video.length !== r.frames) {
    throw new InputError(`videos[${i}] has ${video.length} frames, but frames is ${r.frames}`);
  }
  return video.map((f: Frame, j) => {
    try {
      checkFrame(f, `videos[${i}] frame ${j}`);
    } catch (e) {
      throw new InputError((e as Error).message);
    }
    return resizeFrame(f, r.width, r.height);
  });
}
