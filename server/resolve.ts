/**
 * From a validated request's model names to the files the engine loads, against one models
 * directory's listing. API nodes resolve to validate; in scale-out mode each GPU worker resolves
 * again against its own models directory (the paths of another machine mean nothing there).
 * @module
 */

import { join } from "node:path";
import type { PipelineOptions, Precision } from "../engine/pipeline_types.ts";
import { pathExists } from "../weights/fs.ts";
import { findModel, type ModelsListing } from "./models_dir.ts";
import type { AnimationRequest } from "./validate.ts";

/** Settings that apply to every pipeline a process loads. */
export interface ResolveSettings {
  /** Tokenizer folder for checkpoints that carry none. */
  tokenizer?: string;
  /** Engine storage precision. */
  precision?: Precision;
  /** GPU memory a job may use (bytes). */
  maxMemory?: number;
}

/** Thrown when a request names a model this models directory does not hold. */
export class MissingModelError extends Error {
  override name = "MissingModelError";
}

function need<T>(found: T | undefined, kind: string, name: string): T {
  if (found === undefined) {
    throw new MissingModelError(`${kind} "${name}" is not in this worker's models directory`);
  }
  return found;
}

/**
 * Turns a validated request's names into the file paths the engine loads.
 *
 * @example
 * ```ts ignore
 * const options = await pipelineOptionsFor(request, await scanModelsDir("models"), {});
 * ```
 */
export async function pipelineOptionsFor(
  req: AnimationRequest,
  listing: ModelsListing,
  settings: ResolveSettings,
): Promise<PipelineOptions> {
  const model = need(findModel(listing, "checkpoint", req.model), "model", req.model);
  const motion = need(
    findModel(listing, "motionModule", req.motionModule),
    "motion module",
    req.motionModule,
  );
  const opts: PipelineOptions = { model: model.path, motionModule: motion.path };
  if (req.embeddings?.length) {
    opts.embeddings = req.embeddings.map((name) => ({
      path: need(findModel(listing, "embedding", name), "embedding", name).path,
      token: name,
    }));
  }
  if (req.loras.length) {
    opts.loras = req.loras.map((l) => ({
      path: need(findModel(listing, "lora", l.name), "LoRA", l.name).path,
      scale: l.scale,
    }));
  }
  if (model.configPath) {
    opts.modelConfig = model.configPath;
    const tok = join(model.configPath, "tokenizer");
    if (!settings.tokenizer && await pathExists(tok)) opts.tokenizer = tok;
  }
  if (settings.tokenizer) opts.tokenizer = settings.tokenizer;
  if (motion.configPath) opts.motionModuleConfig = motion.configPath;
  if (settings.precision) opts.precision = settings.precision;
  if (settings.maxMemory !== undefined) opts.maxMemory = settings.maxMemory;
  return opts;
}

/**
 * The model set a request needs, as a stable string: jobs with equal keys run on one loaded
 * pipeline (scale-out workers prefer jobs whose key matches the set they hold).
 */
export function modelSetKey(req: AnimationRequest): string {
  return JSON.stringify([
    req.model,
    req.motionModule,
    req.loras.map((l) => [l.name, l.scale]),
    req.embeddings ?? [],
  ]);
}
