/**
 * AnimateDiff prompt-config files (configs/prompts/*.yaml): either a mapping of named entries
 * (v1 style) or a list of entries (v2/v3 style). Each entry names a model, one or more motion
 * modules, an optional LoRA and a list of prompts with negative prompts and seeds.
 * @module
 */

import type { FreeInitOptions } from "./free_init.ts";
import { parse } from "npm:yaml@^2.9.1";
import { InputError } from "../kernels/gpu/errors.ts";

/**
 * One job derived from a config: a prompt with its model, motion module and settings.
 *
 * @example
 * ```ts
 * import { parsePromptConfig, type PromptJob } from "@zoetrope/animatediff";
 *
 * const jobs: PromptJob[] = parsePromptConfig("- prompt: [a red car]\n  seed: [7]\n");
 * console.log(jobs[0].prompt, jobs[0].seed); // "a red car" 7n
 * ```
 */
export interface PromptJob {
  /** Entry name (mapping key, or `entry<N>` for list configs). */
  entry: string;
  /** 0-based index over all jobs of the config (used in output names). */
  index: number;
  /** Base model path (`path` / `dreambooth_path`), resolved. */
  model?: string;
  /** Motion module path, resolved. */
  motionModule?: string;
  /**
   * v1 configs only (`base` + `path`): the base checkpoint (resolved). AnimateDiff treats `path`
   * (here `model`) as a LoRA merged into `base` with `lora_alpha` (`loraScale`, default 0.8)
   * when the file holds LoRA weights, and as the checkpoint itself otherwise; only the file can
   * tell, so the caller decides.
   */
  base?: { path: string; loraScale: number };
  /** LoRA path (resolved) and scale (`lora_alpha`, default 0.8). */
  lora?: { path: string; scale: number };
  /**
   * Every LoRA of the entry in merge order: `lora` (lora_model_path), the v3 domain adapter
   * (`adapter_lora_path`, scale `adapter_lora_scale`, default 1) and the MotionLoRAs
   * (`motion_module_lora_configs`: `[{path, alpha}]`, alpha default 1).
   */
  loras: { path: string; scale: number }[];
  /** The prompt. */
  prompt: string;
  /** The negative prompt (`n_prompt`; "" when none). */
  negativePrompt: string;
  /** Seed; undefined = random (AnimateDiff's -1). */
  seed?: number | bigint;
  /** Denoising steps. */
  steps?: number;
  /** Guidance scale (`guidance_scale`). */
  guidance?: number;
  /** Width in pixels (`W`). */
  width?: number;
  /** Height in pixels (`H`). */
  height?: number;
  /** Frames (`L`). */
  frames?: number;
  /** Textual-inversion embeddings (`embeddings: [path | {path, token}]`, resolved). */
  embeddings?: { path: string; token?: string }[];
  /** Prompt travel (`prompt_map: {frame: prompt}`, as animatediff-cli-prompt-travel). */
  promptMap?: Record<number, string>;
  /**
   * FreeInit (`free_init: {iterations, method, order, spatial_stop, temporal_stop,
   * fast_sampling}`), see GenerateRequest.freeInit.
   */
  freeInit?: FreeInitOptions;
  /** Motion scale (`motion_scale`, see GenerateRequest.motionScale). */
  motionScale?: number;
  /** Motion effect (`motion_effect`, see GenerateRequest.motionEffect). */
  motionEffect?: number;
  /** Video to video: a GIF, APNG or PNG-frames folder (`video`, resolved path). */
  video?: string;
  /** Image to video: a PNG or GIF (`image`, resolved path). */
  image?: string;
  /** How far the input video or image is noised (`strength`, (0, 1]). */
  strength?: number;
  /** Frames per context window (`context_length`). */
  contextLength?: number;
  /** Frames shared by neighbouring windows (`context_overlap`). */
  contextOverlap?: number;
  /** How overlapping windows blend (`context_weighting`: flat | pyramid). */
  contextWeighting?: "flat" | "pyramid";
  /** FreeNoise (`free_noise: true`). */
  freeNoise?: boolean;
}

/** Fields of AnimateDiff's SparseCtrl / ControlNet entries: not supported, rejected by name. */
const CONTROLNET_KEYS = [
  "controlnet_path",
  "controlnet_config",
  "controlnet_images",
  "controlnet_image_indexs",
];

const KNOWN_KEYS = new Set([
  "path",
  "base",
  "dreambooth_path",
  "motion_module",
  "lora_model_path",
  "lora_alpha",
  "lora",
  "lora_scale",
  "adapter_lora_path",
  "adapter_lora_scale",
  "inference_config",
  "motion_module_lora_configs",
  "controlnet_path",
  "controlnet_config",
  "controlnet_images",
  "controlnet_image_indexs",
  "seed",
  "random_seed",
  "steps",
  "guidance_scale",
  "prompt",
  "n_prompt",
  "W",
  "H",
  "L",
  "motion_scale",
  "motion_effect",
  "prompt_map",
  "free_init",
  "embeddings",
  "video",
  "image",
  "strength",
  "context_length",
  "context_overlap",
  "context_weighting",
  "free_noise",
]);

function asList<T>(v: T | T[] | undefined): T[] {
  if (v === undefined || v === null) return [];
  return Array.isArray(v) ? v : [v];
}

function str(v: unknown, field: string, entry: string): string | undefined {
  if (v === undefined || v === null || v === "") return undefined;
  if (typeof v !== "string") {
    throw new InputError(`config entry ${entry}: ${field} must be a string`);
  }
  return v;
}

function num(v: unknown, field: string, entry: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  const n = typeof v === "bigint" ? Number(v) : v;
  if (typeof n !== "number" || !Number.isFinite(n)) {
    throw new InputError(`config entry ${entry}: ${field} must be a number`);
  }
  return n;
}

/**
 * Parses an AnimateDiff prompt config (YAML text) into jobs: every motion module x every
 * prompt. `resolvePath` maps paths in the file (relative to the AnimateDiff repo) to real ones.
 *
 * @example
 * ```ts
 * import { parsePromptConfig } from "@zoetrope/animatediff";
 *
 * const yaml = `
 * ToonYou:
 *   dreambooth_path: models/DreamBooth_LoRA/toonyou_beta3.safetensors
 *   motion_module: [models/Motion_Module/mm_sd_v15.ckpt]
 *   seed: [10788741199826055526]
 *   steps: 25
 *   guidance_scale: 7.5
 *   prompt: ["best quality, 1girl, cherry blossoms"]
 *   n_prompt: ["worst quality"]
 * `;
 * const jobs = parsePromptConfig(yaml, { resolvePath: (p) => `/opt/animatediff/${p}` });
 * console.log(jobs.length, jobs[0].seed); // 1 10788741199826055526n
 * ```
 */
export function parsePromptConfig(
  text: string,
  options: { source?: string; resolvePath?: (p: string) => string } = {},
): PromptJob[] {
  const source = options.source ?? "config";
  const resolve = options.resolvePath ?? ((p: string) => p);
  let doc: unknown;
  try {
    // logLevel "error": the YAML library would print warnings (unknown tags) to the console.
    doc = parse(text, { intAsBigInt: true, logLevel: "error" });
  } catch (e) {
    const msg = String((e as Error)?.message).split("\n")[0];
    const why = /Maximum call stack/.test(msg) ? "nested too deeply" : msg;
    throw new InputError(`${source}: not valid YAML (${why})`);
  }
  let entries: [string, Record<string, unknown>][];
  if (Array.isArray(doc)) {
    entries = doc.map((e, i) => [`entry${i}`, e]);
  } else if (doc && typeof doc === "object") {
    entries = Object.entries(doc as Record<string, Record<string, unknown>>);
  } else {
    throw new InputError(`${source}: expected a list or mapping of prompt entries`);
  }
  if (entries.length === 0) throw new InputError(`${source}: no entries`);
  const jobs: PromptJob[] = [];
  for (const [name, e] of entries) {
    if (!e || typeof e !== "object" || Array.isArray(e)) {
      throw new InputError(`${source}: entry ${name} must be a mapping`);
    }
    const unknown = Object.keys(e).filter((k) => !KNOWN_KEYS.has(k));
    if (unknown.length) {
      throw new InputError(`${source}: entry ${name} has unknown fields: ${unknown.join(", ")}`);
    }
    const control = CONTROLNET_KEYS.filter((k) =>
      e[k] !== undefined && e[k] !== null && e[k] !== ""
    );
    if (control.length) {
      throw new InputError(
        `${source}: entry ${name} uses ${control.join(", ")}: SparseCtrl/ControlNet is not ` +
          `supported; remove these fields`,
      );
    }
    const promptMap = promptMapOf(e.prompt_map, source, name);
    const prompts = asList(e.prompt as string | string[]);
    if (!prompts.length && promptMap) prompts.push("");
    if (!prompts.length) throw new InputError(`${source}: entry ${name} has no prompt`);
    const negatives = asList(e.n_prompt as string | string[]);
    negatives.forEach((n, i) => {
      if (typeof n !== "string") {
        throw new InputError(`${source}: entry ${name}: n_prompt ${i} must be a string`);
      }
    });
    const seeds = asList(e.seed ?? e.random_seed) as unknown[];
    seeds.forEach((s, i) => {
      if (typeof s !== "bigint" && !(typeof s === "number" && Number.isInteger(s))) {
        throw new InputError(
          `${source}: entry ${name}: seed ${i} must be an integer (-1 = random), got ${String(s)}`,
        );
      }
    });
    const model = str(e.dreambooth_path ?? e.path, "path", name);
    const base = e.dreambooth_path === undefined ? str(e.base, "base", name) : undefined;
    const loraPath = str(e.lora_model_path ?? e.lora, "lora_model_path", name);
    const loraScale = num(e.lora_alpha ?? e.lora_scale, "lora_alpha", name) ?? 0.8;
    const lora = loraPath ? { path: resolve(loraPath), scale: loraScale } : undefined;
    const loras: { path: string; scale: number }[] = lora ? [lora] : [];
    const adapterPath = str(e.adapter_lora_path, "adapter_lora_path", name);
    if (adapterPath) {
      loras.push({
        path: resolve(adapterPath),
        scale: num(e.adapter_lora_scale, "adapter_lora_scale", name) ?? 1,
      });
    }
    asList(e.motion_module_lora_configs as unknown[]).forEach((m, i) => {
      const field = `motion_module_lora_configs[${i}]`;
      if (!m || typeof m !== "object" || Array.isArray(m)) {
        throw new InputError(`${source}: entry ${name}: ${field} must be a mapping {path, alpha}`);
      }
      const r = m as Record<string, unknown>;
      const path = str(r.path, `${field}.path`, name);
      if (!path) throw new InputError(`${source}: entry ${name}: ${field} has no path`);
      loras.push({ path: resolve(path), scale: num(r.alpha, `${field}.alpha`, name) ?? 1 });
    });
    const motions = asList(e.motion_module as unknown);
    motions.forEach((m, i) => {
      if (typeof m !== "string") {
        throw new InputError(`${source}: entry ${name}: motion_module ${i} must be a path`);
      }
    });
    const pathOf = (v: unknown, field: string) => {
      const path = str(v, field, name);
      return path ? resolve(path) : undefined;
    };
    const steps = num(e.steps, "steps", name);
    const guidance = num(e.guidance_scale, "guidance_scale", name);
    for (const mm of motions.length ? motions : [undefined]) {
      prompts.forEach((prompt, i) => {
        if (typeof prompt !== "string") {
          throw new InputError(`${source}: entry ${name}: prompt ${i} must be a string`);
        }
        const neg = negatives.length ? negatives[Math.min(i, negatives.length - 1)] : "";
        let seed = seeds.length
          ? seeds[Math.min(i, seeds.length - 1)] as number | bigint
          : undefined;
        if (seed !== undefined && seed < 0) seed = undefined; // -1 = random in AnimateDiff
        jobs.push({
          entry: name,
          index: jobs.length,
          model: model ? resolve(model) : undefined,
          motionModule: typeof mm === "string" && mm ? resolve(mm) : undefined,
          base: base && model ? { path: resolve(base), loraScale } : undefined,
          lora,
          loras,
          prompt,
          negativePrompt: typeof neg === "string" ? neg : "",
          seed,
          steps,
          guidance,
          width: num(e.W, "W", name),
          height: num(e.H, "H", name),
          frames: num(e.L, "L", name),
          promptMap,
          embeddings: embeddingsOf(e.embeddings, source, name, resolve),
          freeInit: freeInitOf(e.free_init, source, name),
          motionScale: num(e.motion_scale, "motion_scale", name),
          motionEffect: num(e.motion_effect, "motion_effect", name),
          video: pathOf(e.video, "video"),
          image: pathOf(e.image, "image"),
          strength: num(e.strength, "strength", name),
          contextLength: num(e.context_length, "context_length", name),
          contextOverlap: num(e.context_overlap, "context_overlap", name),
          contextWeighting: weightingOf(e.context_weighting, source, name),
          freeNoise: boolOf(e.free_noise, "free_noise", source, name),
        });
      });
    }
  }
  return jobs;
}

/** An entry's `context_weighting`: flat or pyramid. */
function weightingOf(v: unknown, source: string, name: string): "flat" | "pyramid" | undefined {
  if (v === undefined || v === null) return undefined;
  if (v !== "flat" && v !== "pyramid") {
    throw new InputError(
      `${source}: entry ${name}: context_weighting must be flat or pyramid, got ${
        String(v).slice(0, 30)
      }`,
    );
  }
  return v;
}

/** A boolean field (YAML true/false). */
function boolOf(v: unknown, field: string, source: string, name: string): boolean | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") {
    throw new InputError(`${source}: entry ${name}: ${field} must be true or false`);
  }
  return v;
}

/** An entry's `embeddings`: paths, or {path, token} mappings. */
function embeddingsOf(
  v: unknown,
  source: string,
  name: string,
  resolve: (p: string) => string,
): { path: string; token?: string }[] | undefined {
  if (v === undefined || v === null) return undefined;
  return asList(v as unknown[]).map((e, i) => {
    if (typeof e === "string") return { path: resolve(e) };
    const r = e as Record<string, unknown>;
    if (
      !r || typeof r !== "object" || typeof r.path !== "string" ||
      (r.token !== undefined && typeof r.token !== "string")
    ) {
      throw new InputError(
        `${source}: entry ${name}: embeddings[${i}] must be a path or {path, token}`,
      );
    }
    return { path: resolve(r.path), token: r.token as string | undefined };
  });
}

/** An entry's `free_init` mapping as FreeInit options (values checked with the request). */
function freeInitOf(v: unknown, source: string, name: string): FreeInitOptions | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "object" || Array.isArray(v)) {
    throw new InputError(`${source}: entry ${name}: free_init must be a mapping`);
  }
  const keys: Record<string, keyof FreeInitOptions> = {
    iterations: "iterations",
    method: "method",
    order: "order",
    spatial_stop: "spatialStop",
    temporal_stop: "temporalStop",
    fast_sampling: "fastSampling",
  };
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    if (!(k in keys)) {
      throw new InputError(
        `${source}: entry ${name}: free_init.${k.slice(0, 30)} is not one of ${
          Object.keys(keys).join(", ")
        }`,
      );
    }
    out[keys[k]] = typeof x === "bigint" ? Number(x) : x;
  }
  return out as FreeInitOptions;
}

/** An entry's `prompt_map` (frame -> prompt); frame keys must be integers. */
function promptMapOf(
  v: unknown,
  source: string,
  name: string,
): Record<number, string> | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "object" || Array.isArray(v)) {
    throw new InputError(`${source}: entry ${name}: prompt_map must be a mapping {frame: prompt}`);
  }
  const map: Record<number, string> = {};
  for (const [k, p] of Object.entries(v as Record<string, unknown>)) {
    if (!/^\d+$/.test(k.trim()) || typeof p !== "string") {
      throw new InputError(
        `${source}: entry ${name}: prompt_map entries must be frame: "prompt", got ${
          k.slice(0, 20)
        }`,
      );
    }
    map[Number(k.trim())] = p;
  }
  return map;
}

/** A file-name-safe slug of a prompt (AnimateDiff names samples `<index>-<prompt words>`). */
export function promptSlug(prompt: string, max = 40): string {
  const s = prompt.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "");
  return s.slice(0, max).replace(/-+$/, "") || "prompt";
}
