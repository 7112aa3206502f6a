/**
 * Requests: the one list of schedulers, the request defaults, the limits, and validation. Errors
 * name the request field (`width must be a multiple of 8, got 60`); the CLI and the HTTP service
 * word them for their users (flags, JSON fields).
 * @module
 */

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
export const SCHEDULERS = ["ddim", "euler", "euler-a", "dpmpp-2m", "dpmpp-2m-karras"] as const;

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
} as const;

/** Defaults for the built-in tiny demo model (its native size; seconds on a CPU). */
export const DEMO_DEFAULTS = { frames: 8, width: 64, height: 64, steps: 4 } as const;

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

/** What a request is validated against: the loaded model's limits. */
export interface RequestModel {
  /** The motion module's position-encoding length. */
  maxFrames: number;
  /** Its version (for the messages). */
  motionVersion: string;
  /** Text-encoder layers (clip skip goes up to this + 1). */
  clipLayers: number;
}

/** Applies defaults and validates a request; throws an InputError naming the field. */
export function resolveRequest(req: GenerateRequest, model: RequestModel): ResolvedRequest {
  const d = REQUEST_DEFAULTS;
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
      ` (the ${motionVersion} motion module's position encoding has ${maxFrames} positions)`,
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
  int("clipSkip", r.clipSkip, 1, model.clipLayers + 1);
  if (!Number.isFinite(r.fps) || r.fps <= 0 || r.fps > 100) {
    throw new InputError(`fps must be a number above 0 and at most 100, got ${r.fps}`);
  }
  return r;
}
