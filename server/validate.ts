/**
 * Validation of POST /v1/animations bodies: decoding (UTF-8 JSON only), types, ranges, unknown
 * fields, and model names that must exist in the models directory. Produces a complete
 * {@link AnimationRequest} (defaults filled in, seed chosen) or throws a {@link RequestError}
 * naming the offending field.
 * @module
 */

import type { SchedulerName } from "../engine/pipeline_types.ts";
import { REQUEST_DEFAULTS as ENGINE_DEFAULTS, SCHEDULERS } from "../engine/request.ts";
import { ANIMATION_FORMATS, type AnimationFormat } from "../engine/output/mod.ts";
import { findModel, type ModelKind, type ModelsListing } from "./models_dir.ts";

/** Scheduler names a request may use (the engine's list, DESIGN.md CLI spelling). */
export const SCHEDULER_NAMES: readonly SchedulerName[] = SCHEDULERS;

/** A LoRA of a request, by name from `loras/`. */
export interface LoraRequest {
  name: string;
  /** Strength (default 1). */
  scale: number;
}

/** A validated request with every default filled in. */
export interface AnimationRequest {
  prompt: string;
  negativePrompt: string;
  model: string;
  motionModule: string;
  loras: LoraRequest[];
  frames: number;
  width: number;
  height: number;
  steps: number;
  guidance: number;
  scheduler: SchedulerName;
  seed: number;
  clipSkip: number;
  fps: number;
  format: AnimationFormat;
  /** Frames per motion-module window for animations longer than the module allows. */
  contextLength?: number;
  /** Frames shared by neighbouring windows (default contextLength / 4). */
  contextOverlap?: number;
  /** Closed loop: windows wrap from the last frame to the first. */
  contextLoop?: boolean;
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
  /** Model used when a request names none (default: the first checkpoint by name). */
  defaultModel?: string;
  /** Motion module used when a request names none (default: the first by name). */
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
    const folder = kind === "checkpoint"
      ? "checkpoints/"
      : kind === "motionModule"
      ? "motion_modules/"
      : "loras/";
    throw new RequestError(
      `${field}: no model named "${v.slice(0, 80)}" in ${folder} (GET /v1/models lists them)`,
      { field },
    );
  }
  return v;
}

function defaultName(
  listing: ModelsListing,
  kind: "checkpoint" | "motionModule",
  configured: string | undefined,
  field: string,
): string {
  if (configured !== undefined) return configured;
  const first = (kind === "checkpoint" ? listing.checkpoints : listing.motionModules)[0];
  if (!first) {
    throw new RequestError(
      `${field}: not given and the models directory has no ${
        kind === "checkpoint" ? "checkpoints/" : "motion_modules/"
      } entries`,
      { field },
    );
  }
  return first.name;
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
  const d = REQUEST_DEFAULTS;
  const has = (k: string) => body[k] !== undefined;
  if (!has("prompt")) throw new RequestError("prompt: required", { field: "prompt" });
  const prompt = str(body, "prompt", 1, limits.maxPromptChars);
  const negativePrompt = has("negativePrompt")
    ? str(body, "negativePrompt", 0, limits.maxPromptChars)
    : d.negativePrompt;
  const model = has("model") ? modelName(body.model, "model", "checkpoint", listing) : modelName(
    defaultName(listing, "checkpoint", options.defaultModel, "model"),
    "model",
    "checkpoint",
    listing,
  );
  const motionModule = has("motionModule")
    ? modelName(body.motionModule, "motionModule", "motionModule", listing)
    : modelName(
      defaultName(listing, "motionModule", options.defaultMotionModule, "motionModule"),
      "motionModule",
      "motionModule",
      listing,
    );
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
  const frames = has("frames")
    ? int(body.frames, "frames", limits.minFrames, limits.maxFrames)
    : Math.min(d.frames, limits.maxFrames);
  const side = (k: "width" | "height") =>
    has(k) ? int(body[k], k, limits.minSide, limits.maxSide, 8) : d[k];
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
  const window: Pick<AnimationRequest, "contextLength" | "contextOverlap" | "contextLoop"> = {};
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
  } else {
    for (const k of ["contextOverlap", "contextLoop"]) {
      if (has(k)) throw new RequestError(`${k}: needs contextLength`, { field: k });
    }
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
    ...(body.dryRun === true ? { dryRun: true } : {}),
  };
}

/** A random seed in 0..2^32-1 (what A1111/ComfyUI users expect to see). */
export function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}
