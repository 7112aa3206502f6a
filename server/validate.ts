/**
 * Validation of POST /v1/animations bodies: decoding (UTF-8 JSON only), types, ranges, unknown
 * fields, and model names that must exist in the models directory. Produces a complete
 * {@link AnimationRequest} (defaults filled in, seed chosen) or throws a {@link RequestError}
 * naming the offending field.
 * @module
 */

import type { SchedulerName } from "../engine/pipeline_types.ts";
import {
  DEMO_DEFAULTS,
  MAX_MOTION_CONTROL,
  REQUEST_DEFAULTS as ENGINE_DEFAULTS,
  SCHEDULERS,
} from "../engine/request.ts";
import { DEMO_MOTION_MODULE_NAME, isDemoModelName } from "../weights/demo_model.ts";
import { checkPromptMap } from "../engine/prompt_travel.ts";
import { type FreeInitOptions, resolveFreeInit } from "../engine/free_init.ts";
import { decodeMedia } from "../engine/input/media.ts";
import type { Frame } from "../engine/output/frame.ts";

/** The model of a request that names none: the built-in demo. */
export const DEFAULT_MODEL = "demo";
import { ANIMATION_FORMATS, type AnimationFormat } from "../engine/output/mod.ts";
import { findModel, MODEL_SUBDIRS, type ModelKind, type ModelsListing } from "./models_dir.ts";

/** Scheduler names a request may use (the engine's list, DESIGN.md CLI spelling). */
export const SCHEDULER_NAMES: readonly SchedulerName[] = SCHEDULERS;

/** A LoRA of a request, by name from `loras/`. */
export interface LoraRequest {
  /** The LoRA's name in `loras/`. */
  name: string;
  /** Strength (default 1). */
  scale: number;
}

/** A validated request with every default filled in. */
export interface AnimationRequest {
  /** What to draw. */
  prompt: string;
  /** What to steer away from. */
  negativePrompt: string;
  /** The base model's name (`checkpoints/`, or `demo` / `demo:paper`). */
  model: string;
  /** The motion module's name (`motion_modules/`, or `demo`). */
  motionModule: string;
  /** LoRAs to merge, with their strengths. */
  loras: LoraRequest[];
  /** Frame count. */
  frames: number;
  /** Width in pixels (a multiple of 8). */
  width: number;
  /** Height in pixels (a multiple of 8). */
  height: number;
  /** Denoising steps. */
  steps: number;
  /** Classifier-free guidance scale. */
  guidance: number;
  /** The scheduler. */
  scheduler: SchedulerName;
  /** The seed (chosen when the request had none). */
  seed: number;
  /** CLIP layers skipped from the end, A1111 numbering (1 = none). */
  clipSkip: number;
  /** Playback rate. */
  fps: number;
  /** Output format. */
  format: AnimationFormat;
  /** Frames per motion-module window for animations longer than the module allows. */
  contextLength?: number;
  /** Frames shared by neighbouring windows (default contextLength / 4). */
  contextOverlap?: number;
  /** Closed loop: windows wrap from the last frame to the first. */
  contextLoop?: boolean;
  /** How overlapping windows combine: "flat" (default) or "pyramid". */
  contextWeighting?: "flat" | "pyramid";
  /** FreeNoise: later windows start from shuffled noise of earlier ones. */
  freeNoise?: boolean;
  /** Textual-inversion embeddings by name (from `embeddings/`; each binds its name). */
  embeddings?: string[];
  /** Video to video: a GIF or APNG file, base64 (a `data:` URL prefix is allowed). */
  video?: string;
  /** Image to video: a PNG or GIF file, base64. */
  image?: string;
  /** How much of the video / image is replaced, (0, 1] (default 0.8). */
  strength?: number;
  /** FreeInit settings (see the engine's GenerateRequest.freeInit). */
  freeInit?: FreeInitOptions;
  /** Prompt travel: keyframe prompts by frame (`prompt` may then be ""). */
  promptMap?: Record<number, string>;
  /** Multiplier of the motion modules' temporal-attention keys (default 1). */
  motionScale?: number;
  /** Blend of the motion modules' output with their input (default 1; 0 = no motion). */
  motionEffect?: number;
  /** Answer with the request's memory plan instead of queueing it. */
  dryRun?: boolean;
}

/**
 * Ranges the service accepts.
 *
 * @example
 * ```ts
 * import { createApp, DEFAULT_LIMITS, type RequestLimits } from "@zoetrope/animatediff";
 *
 * const limits: RequestLimits = { ...DEFAULT_LIMITS, maxFrames: 16, maxSteps: 30 };
 * const app = createApp({ modelsDir: "./models", limits });
 * ```
 */
export interface RequestLimits {
  /** Longest prompt (and negative prompt) in characters. */
  maxPromptChars: number;
  /** Fewest frames. */
  minFrames: number;
  /** Most frames (above the motion module's limit only with contextLength). */
  maxFrames: number;
  /** Smallest width/height in pixels (a multiple of 8). */
  minSide: number;
  /** Largest width/height in pixels. */
  maxSide: number;
  /** Most denoising steps. */
  maxSteps: number;
  /** Largest guidance scale. */
  maxGuidance: number;
  /** Most LoRAs per request. */
  maxLoras: number;
  /** Largest absolute LoRA scale. */
  maxLoraScale: number;
  /** Largest clipSkip (A1111 numbering). */
  maxClipSkip: number;
  /** Largest fps. */
  maxFps: number;
}

/**
 * The default ranges: up to 128 frames (more than a motion module's 24 or 32 with context
 * windows), SD 1.5 sizes up to 1024.
 *
 * @example
 * ```ts
 * import { DEFAULT_LIMITS } from "@zoetrope/animatediff";
 *
 * console.log(DEFAULT_LIMITS.maxFrames, DEFAULT_LIMITS.maxSide);
 * ```
 */
export const DEFAULT_LIMITS: Readonly<RequestLimits> = {
  maxPromptChars: 2000,
  minFrames: 1,
  maxFrames: 128,
  minSide: 64,
  maxSide: 1024,
  maxSteps: 150,
  maxGuidance: 30,
  maxLoras: 8,
  maxLoraScale: 4,
  maxClipSkip: 12,
  maxFps: 60,
};

/** Defaults of optional request fields: the engine's, and the output format. */
export const REQUEST_DEFAULTS = {
  ...ENGINE_DEFAULTS,
  format: "gif" as AnimationFormat,
} as const;

/** Every field a request body may have. */
export const REQUEST_FIELDS: readonly (keyof AnimationRequest)[] = [
  "prompt",
  "negativePrompt",
  "model",
  "motionModule",
  "loras",
  "frames",
  "width",
  "height",
  "steps",
  "guidance",
  "scheduler",
  "seed",
  "clipSkip",
  "fps",
  "format",
  "contextLength",
  "contextOverlap",
  "contextLoop",
  "contextWeighting",
  "freeNoise",
  "promptMap",
  "freeInit",
  "embeddings",
  "video",
  "image",
  "strength",
  "motionScale",
  "motionEffect",
  "dryRun",
];

/** A client error: the HTTP status and the request field at fault (when one is). */
export class RequestError extends Error {
  override name = "RequestError";
  /** Dotted field path, e.g. `loras[1].scale`; absent for whole-body errors. */
  readonly field?: string;
  readonly status: number;
  constructor(message: string, options: { field?: string; status?: number } = {}) {
    super(message);
    this.field = options.field;
    this.status = options.status ?? 400;
  }
}

/** What a body in another encoding than UTF-8 starts with (RFC 8259: JSON text is UTF-8). */
function otherEncoding(b: Uint8Array): string | null {
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xfe && b[2] === 0 && b[3] === 0) {
    return "UTF-32LE";
  }
  if (b.length >= 2 && b[0] === 0xff && b[1] === 0xfe) return "UTF-16LE (with a BOM)";
  if (b.length >= 2 && b[0] === 0xfe && b[1] === 0xff) return "UTF-16BE (with a BOM)";
  // Without a BOM, JSON's first character is ASCII: its zero bytes give the encoding away.
  if (b.length >= 4 && b[0] === 0 && b[1] === 0 && b[2] === 0 && b[3] !== 0) return "UTF-32BE";
  if (b.length >= 4 && b[0] !== 0 && b[1] === 0 && b[2] === 0 && b[3] === 0) return "UTF-32LE";
  if (b.length >= 2 && b[0] === 0 && b[1] !== 0) return "UTF-16BE";
  if (b.length >= 2 && b[0] !== 0 && b[1] === 0) return "UTF-16LE";
  return null;
}

/** Offset of the first byte that is not valid UTF-8 (the longest prefix that decodes). */
function firstInvalidUtf8(b: Uint8Array): number {
  let lo = 0, hi = b.length; // the prefix b[0, lo) decodes; b[0, hi] does not
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    try {
      new TextDecoder("utf-8", { fatal: true }).decode(b.subarray(0, mid), { stream: true });
      lo = mid;
    } catch {
      hi = mid;
    }
  }
  return lo;
}

/**
 * Decodes and parses a JSON request body: UTF-8 only, checked with a fatal decoder (a UTF-8 BOM
 * is skipped); a charset other than UTF-8 in `contentType` is a 415, UTF-16/32 bodies, invalid
 * UTF-8 and invalid JSON are 400s naming the field "body".
 *
 * @example
 * ```ts
 * const body = parseJsonBody(new TextEncoder().encode('{"prompt":"a cat"}'), "application/json");
 * validateAnimationRequest(body, { listing });
 * ```
 */
export function parseJsonBody(bytes: Uint8Array, contentType = "application/json"): unknown {
  const field = "body";
  const charset = /;\s*charset\s*=\s*"?([^";\s]*)/i.exec(contentType)?.[1].toLowerCase();
  if (charset !== undefined && charset !== "utf-8" && charset !== "utf8") {
    throw new RequestError(
      `body: charset "${charset.slice(0, 40)}" is not supported; send JSON as UTF-8`,
      { field, status: 415 },
    );
  }
  const other = otherEncoding(bytes);
  if (other) {
    throw new RequestError(`body: looks like ${other} text; send JSON as UTF-8`, { field });
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new RequestError(
      `body: not valid UTF-8 (first bad byte at offset ${firstInvalidUtf8(bytes)})`,
      { field },
    );
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new RequestError(`body: invalid JSON (${(e as Error).message.split("\n")[0]})`, {
      field,
    });
  }
}

/** Options of {@link validateAnimationRequest}. */
export interface ValidateOptions {
  /** The models directory as scanned now. */
  listing: ModelsListing;
  limits?: Partial<RequestLimits>;
  /** Model used when a request names none (default: the built-in `demo`). */
  defaultModel?: string;
  /**
   * Motion module used when a request names none (default: the first by name; the demo models
   * always get the demo's).
   */
  defaultMotionModule?: string;
  /** Seed source when a request has none (default: a random 32-bit seed). */
  randomSeed?: () => number;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "string") return `a string`;
  if (typeof v === "number") return String(v);
  return `a ${typeof v}`;
}

function fail(field: string, expected: string, got: unknown): never {
  throw new RequestError(`${field}: expected ${expected}, got ${describe(got)}`, { field });
}

function str(body: Record<string, unknown>, field: string, min: number, max: number): string {
  const v = body[field];
  if (typeof v !== "string") fail(field, "a string", v);
  if (v.trim().length < min || v.length > max) {
    throw new RequestError(
      `${field}: expected ${
        min > 0 ? `${min} to ` : "at most "
      }${max} characters, got ${v.length}` +
        (min > 0 && v.trim().length === 0 ? " (blank)" : ""),
      { field },
    );
  }
  return v;
}

function int(v: unknown, field: string, min: number, max: number, multiple = 1): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max || v % multiple) {
    fail(
      field,
      `an integer in ${min}..${max}${multiple > 1 ? `, a multiple of ${multiple}` : ""}`,
      v,
    );
  }
  return v;
}

function num(v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isFinite(v) || v < min || v > max) {
    fail(field, `a number in ${min}..${max}`, v);
  }
  return v;
}

function oneOf<T extends string>(v: unknown, field: string, allowed: readonly T[]): T {
  if (typeof v !== "string" || !allowed.includes(v as T)) {
    fail(field, `one of ${allowed.join(", ")}`, typeof v === "string" ? `"${v}"` : v);
  }
  return v as T;
}

function modelName(
  v: unknown,
  field: string,
  kind: ModelKind,
  listing: ModelsListing,
): string {
  if (typeof v !== "string" || v.length === 0 || v.length > 255) {
    fail(field, "a model name (1 to 255 characters)", v);
  }
  if (!findModel(listing, kind, v)) {
    const folder = `${MODEL_SUBDIRS[kind]}/`;
    throw new RequestError(
      `${field}: no model named "${v.slice(0, 80)}" in ${folder} (GET /v1/models lists them)`,
      { field },
    );
  }
  return v;
}

/**
 * The model a request without one gets: the configured default, else the built-in `demo` (every
 * scanned listing has it), else the listing's first checkpoint.
 *
 * @example
 * ```ts
 * defaultModelName(await scanModelsDir("models"), undefined); // "demo"
 * ```
 */
export function defaultModelName(
  listing: ModelsListing,
  configured: string | undefined,
): string | null {
  if (configured !== undefined) return configured;
  if (findModel(listing, "checkpoint", DEFAULT_MODEL)) return DEFAULT_MODEL;
  return listing.checkpoints[0]?.name ?? null;
}

/**
 * The motion module a request without one gets: the demo's for the built-in demo models, else
 * the configured default or the listing's first other one.
 *
 * @example
 * ```ts
 * defaultMotionModule(listing, "demo:paper", undefined); // "demo"
 * ```
 */
export function defaultMotionModule(
  listing: ModelsListing,
  model: string,
  configured: string | undefined,
): string | null {
  const demo = findModel(listing, "motionModule", DEMO_MOTION_MODULE_NAME);
  if (isDemoModelName(model) && demo) return DEMO_MOTION_MODULE_NAME;
  if (configured !== undefined) return configured;
  const other = listing.motionModules.find((m) => m.name !== DEMO_MOTION_MODULE_NAME);
  return (other ?? demo)?.name ?? null;
}

/**
 * Checks a parsed JSON body and returns the complete request. Throws {@link RequestError}
 * (status 400) naming the first field at fault: wrong type, out of range, unknown field,
 * or a model/motion module/LoRA name the models directory does not have.
 *
 * @example
 * ```ts
 * const req = validateAnimationRequest(
 *   { prompt: "a cat", frames: 8, width: 64, height: 64, steps: 4 },
 *   { listing: await scanModelsDir("models") },
 * );
 * req.scheduler; // "ddim"
 * ```
 */
export function validateAnimationRequest(
  body: unknown,
  options: ValidateOptions,
): AnimationRequest {
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const { listing } = options;
  if (!isObject(body)) {
    throw new RequestError(`body: expected a JSON object, got ${describe(body)}`, {
      field: "body",
    });
  }
  for (const key of Object.keys(body)) {
    if (!(REQUEST_FIELDS as readonly string[]).includes(key)) {
      throw new RequestError(
        `${key.slice(0, 80)}: unknown field (expected only ${REQUEST_FIELDS.join(", ")})`,
        { field: key.slice(0, 80) },
      );
    }
  }
  const has = (k: string) => body[k] !== undefined;
  if (!has("prompt")) throw new RequestError("prompt: required", { field: "prompt" });
  const prompt = str(body, "prompt", has("promptMap") ? 0 : 1, limits.maxPromptChars);
  const negativePrompt = has("negativePrompt")
    ? str(body, "negativePrompt", 0, limits.maxPromptChars)
    : REQUEST_DEFAULTS.negativePrompt;
  let model: string;
  if (has("model")) model = modelName(body.model, "model", "checkpoint", listing);
  else {
    const name = defaultModelName(listing, options.defaultModel);
    if (name === null) {
      throw new RequestError(
        "model: not given and the models directory has no checkpoints/ entries",
        {
          field: "model",
        },
      );
    }
    model = modelName(name, "model", "checkpoint", listing);
  }
  let motionModule: string;
  if (has("motionModule")) {
    motionModule = modelName(body.motionModule, "motionModule", "motionModule", listing);
  } else {
    const name = defaultMotionModule(listing, model, options.defaultMotionModule);
    if (name === null) {
      throw new RequestError(
        "motionModule: not given and the models directory has no motion_modules/ entries",
        { field: "motionModule" },
      );
    }
    motionModule = modelName(name, "motionModule", "motionModule", listing);
  }
  // The built-in demo models default to their native size, frames and steps.
  const d = isDemoModelName(model) ? { ...REQUEST_DEFAULTS, ...DEMO_DEFAULTS } : REQUEST_DEFAULTS;
  const loras: LoraRequest[] = [];
  if (has("loras")) {
    const list = body.loras;
    if (!Array.isArray(list)) fail("loras", "an array of {name, scale}", list);
    if (list.length > limits.maxLoras) {
      throw new RequestError(
        `loras: expected at most ${limits.maxLoras} entries, got ${list.length}`,
        { field: "loras" },
      );
    }
    list.forEach((item, i) => {
      const at = `loras[${i}]`;
      if (!isObject(item)) fail(at, "an object {name, scale}", item);
      for (const key of Object.keys(item)) {
        if (key !== "name" && key !== "scale") {
          throw new RequestError(
            `${at}.${key.slice(0, 80)}: unknown field (expected only name, scale)`,
            { field: `${at}.${key.slice(0, 80)}` },
          );
        }
      }
      const name = modelName(item.name, `${at}.name`, "lora", listing);
      if (loras.some((l) => l.name === name)) {
        throw new RequestError(`${at}.name: LoRA "${name}" is listed twice`, {
          field: `${at}.name`,
        });
      }
      const scale = item.scale === undefined
        ? 1
        : num(item.scale, `${at}.scale`, -limits.maxLoraScale, limits.maxLoraScale);
      loras.push({ name, scale });
    });
  }
  // Video / image inputs: their frame count and size are the defaults.
  const input: Pick<AnimationRequest, "video" | "image" | "strength"> = {};
  let media: Frame[] | null = null, videoFrames: number | null = null;
  for (const k of ["video", "image"] as const) {
    if (!has(k)) continue;
    if (typeof body[k] !== "string") fail(k, "a base64 GIF or PNG/APNG file", body[k]);
    try {
      media = decodeMedia(fromBase64(body[k] as string));
    } catch (e) {
      throw new RequestError(`${k}: ${(e as Error).message}`, { field: k });
    }
    if (k === "video") videoFrames = media.length;
    input[k] = body[k] as string;
  }
  if (has("strength")) {
    if (!input.video && !input.image) {
      throw new RequestError("strength: needs a video or an image", { field: "strength" });
    }
    input.strength = num(body.strength, "strength", 0, 1);
    if (input.strength === 0) fail("strength", "a number in (0, 1]", 0);
  }
  const frames = has("frames")
    ? int(body.frames, "frames", limits.minFrames, limits.maxFrames)
    : videoFrames !== null
    ? int(videoFrames, "video", limits.minFrames, limits.maxFrames)
    : Math.min(d.frames, limits.maxFrames);
  if (videoFrames !== null && videoFrames !== frames) {
    throw new RequestError(`video: has ${videoFrames} frames, but frames is ${frames}`, {
      field: "video",
    });
  }
  const side = (k: "width" | "height") =>
    has(k)
      ? int(body[k], k, limits.minSide, limits.maxSide, 8)
      : media
      ? Math.min(limits.maxSide, Math.max(limits.minSide, Math.round(media[0][k] / 8) * 8))
      : d[k];
  const width = side("width"), height = side("height");
  const steps = has("steps") ? int(body.steps, "steps", 1, limits.maxSteps) : d.steps;
  const guidance = has("guidance")
    ? num(body.guidance, "guidance", 0, limits.maxGuidance)
    : d.guidance;
  const scheduler = has("scheduler")
    ? oneOf(body.scheduler, "scheduler", SCHEDULER_NAMES)
    : d.scheduler;
  const seed = has("seed")
    ? int(body.seed, "seed", 0, Number.MAX_SAFE_INTEGER)
    : (options.randomSeed ?? randomSeed)();
  const clipSkip = has("clipSkip")
    ? int(body.clipSkip, "clipSkip", 1, limits.maxClipSkip)
    : d.clipSkip;
  const fps = has("fps") ? num(body.fps, "fps", 1, limits.maxFps) : d.fps;
  const format = has("format") ? oneOf(body.format, "format", ANIMATION_FORMATS) : d.format;
  const window: Pick<
    AnimationRequest,
    "contextLength" | "contextOverlap" | "contextLoop" | "contextWeighting" | "freeNoise"
  > = {};
  if (has("contextLength")) {
    window.contextLength = int(body.contextLength, "contextLength", 1, limits.maxFrames);
    if (has("contextOverlap")) {
      window.contextOverlap = int(
        body.contextOverlap,
        "contextOverlap",
        0,
        window.contextLength - 1,
      );
    }
    if (has("contextLoop")) {
      if (typeof body.contextLoop !== "boolean") {
        fail("contextLoop", "true or false", body.contextLoop);
      }
      window.contextLoop = body.contextLoop as boolean;
    }
    if (has("contextWeighting")) {
      window.contextWeighting = oneOf(
        body.contextWeighting,
        "contextWeighting",
        [
          "flat",
          "pyramid",
        ] as const,
      );
    }
    if (has("freeNoise")) {
      if (typeof body.freeNoise !== "boolean") fail("freeNoise", "true or false", body.freeNoise);
      window.freeNoise = body.freeNoise as boolean;
    }
  } else {
    for (const k of ["contextOverlap", "contextLoop", "contextWeighting", "freeNoise"]) {
      if (has(k)) throw new RequestError(`${k}: needs contextLength`, { field: k });
    }
  }
  const travel: Pick<AnimationRequest, "promptMap" | "freeInit" | "embeddings"> = {};
  if (has("embeddings")) {
    const list = body.embeddings;
    if (!Array.isArray(list) || list.length > limits.maxLoras * 4) {
      fail("embeddings", `an array of at most ${limits.maxLoras * 4} embedding names`, list);
    }
    travel.embeddings = (list as unknown[]).map((n, i) =>
      modelName(n, `embeddings[${i}]`, "embedding", listing)
    );
  }
  if (has("promptMap")) {
    try {
      checkPromptMap(body.promptMap, frames);
    } catch (e) {
      throw new RequestError((e as Error).message, { field: "promptMap" });
    }
    const map: Record<number, string> = {};
    for (const [k, v] of Object.entries(body.promptMap as Record<string, string>)) {
      if (v.length > limits.maxPromptChars) {
        fail(`promptMap.${k}`, `a prompt of at most ${limits.maxPromptChars} characters`, "longer");
      }
      map[Number(k)] = v;
    }
    travel.promptMap = map;
  }
  if (has("freeInit")) {
    try {
      const fi = resolveFreeInit(body.freeInit);
      if (fi.fastSampling && steps < fi.iterations) {
        throw new Error(`freeInit.fastSampling needs at least one step per pass (steps ${steps})`);
      }
      travel.freeInit = body.freeInit as FreeInitOptions;
    } catch (e) {
      const m = /^(freeInit(\.\w+)?)/.exec((e as Error).message);
      throw new RequestError((e as Error).message, { field: m?.[1] ?? "freeInit" });
    }
  }
  const motion: Pick<AnimationRequest, "motionScale" | "motionEffect"> = {};
  if (has("motionScale")) {
    motion.motionScale = num(body.motionScale, "motionScale", 0, MAX_MOTION_CONTROL);
    if (motion.motionScale === 0) fail("motionScale", `a number in (0, ${MAX_MOTION_CONTROL}]`, 0);
  }
  if (has("motionEffect")) {
    motion.motionEffect = num(body.motionEffect, "motionEffect", 0, MAX_MOTION_CONTROL);
  }
  if (has("dryRun") && typeof body.dryRun !== "boolean") {
    fail("dryRun", "true or false", body.dryRun);
  }
  return {
    prompt,
    negativePrompt,
    model,
    motionModule,
    loras,
    frames,
    width,
    height,
    steps,
    guidance,
    scheduler,
    seed,
    clipSkip,
    fps,
    format,
    ...window,
    ...travel,
    ...input,
    ...motion,
    ...(body.dryRun === true ? { dryRun: true } : {}),
  };
}

/** A random seed in 0..2^32-1 (what A1111/ComfyUI users expect to see). */
export function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

/**
 * Bytes of a base64 string (standard alphabet; a `data:...;base64,` prefix and whitespace are
 * allowed). Throws a one-line error for anything else.
 *
 * @example
 * ```ts
 * fromBase64("data:image/gif;base64,R0lGODlh"); // the GIF's first bytes
 * ```
 */
export function fromBase64(text: string): Uint8Array {
  const b64 = text.replace(/^data:[^,]*;base64,/, "").replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4 === 1) {
    throw new Error("is not base64");
  }
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
