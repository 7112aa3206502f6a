/**
 * A summary of any weights file or folder: what it is, how many tensors and parameters, which
 * storage dtypes, and the configs inferred from it.
 * @module
 */

import type { Architecture, TensorFile } from "./types.ts";
import { numelOf } from "./dtype.ts";
import { openTensorFile } from "./open.ts";
import { BASE_MODEL_KINDS, type WeightsKind } from "./detect.ts";
import {
  detectPathKind,
  loadModel,
  loadMotionModule,
  motionModuleVersion,
  weightsFilesOf,
} from "./load.ts";
import { loadLora, loraRank } from "./lora.ts";
import { InputError } from "../kernels/gpu/errors.ts";

/**
 * What {@link inspectWeights} reports.
 *
 * @example
 * ```ts
 * import { inspectWeights, type WeightsSummary } from "@zoetrope/animatediff";
 *
 * const s: WeightsSummary = await inspectWeights("models/motion_modules/mm_sd_v15_v2.ckpt");
 * console.log(s.kind, s.version, s.tensors, s.parameters, s.dtypes);
 * ```
 */
export interface WeightsSummary {
  /** The inspected path. */
  path: string;
  /** What it holds. */
  kind: WeightsKind;
  /** Motion-module version (null for other kinds). */
  version: "v1" | "v2" | "v3" | null;
  /** Number of tensors in the file(s). */
  tensors: number;
  /** Number of values in all tensors. */
  parameters: number;
  /** Storage dtype -> number of tensors. */
  dtypes: Record<string, number>;
  /** Inferred configs: {unet, vae, textEncoder} for models, the MotionConfig, or LoRA facts. */
  config: object | null;
  /** Why config is null although the kind is known (e.g. GroupNorm groups need --config). */
  problem?: string;
}

/** Options of {@link inspectWeights}. */
export interface InspectOptions {
  /** A diffusers folder / MotionAdapter config giving what shapes cannot tell. */
  config?: string;
  /**
   * The architectures' description (the engine's `ARCHITECTURE`): tensors are checked against
   * it and LoRA names resolved against standard SD1.5's.
   */
  architecture?: Architecture;
}

/**
 * Inspects a file or folder without reading tensor data (LoRA alphas excepted).
 * @example
 * ```ts
 * const s = await inspectWeights("tests/fixtures/tiny/single_file/motion_module.safetensors");
 * s.kind; // "motion-module"
 * s.version; // "v2"
 * ```
 */
export async function inspectWeights(
  path: string,
  options: InspectOptions = {},
): Promise<WeightsSummary> {
  const kind = await detectPathKind(path);
  const files: TensorFile[] = [];
  try {
    for (const f of await weightsFilesOf(path)) files.push(await openTensorFile(f));
  } catch (e) {
    files.forEach((f) => f.close());
    throw e;
  }
  let tensors = 0, parameters = 0;
  const dtypes: Record<string, number> = {};
  for (const f of files) {
    for (const t of f.tensors.values()) {
      tensors++;
      parameters += numelOf(t.shape);
      dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + 1;
    }
    f.close();
  }
  const summary: WeightsSummary = {
    path,
    kind,
    version: null,
    tensors,
    parameters,
    dtypes,
    config: null,
  };
  try {
    if (BASE_MODEL_KINDS.includes(kind)) {
      // Other families than SD1.5 are refused by loadModel: its reason becomes `problem`.
      const model = await loadModel(path, options);
      summary.config = {
        unet: model.unetConfig,
        vae: model.vaeConfig,
        textEncoder: model.clipConfig,
      };
      model.close();
    } else if (kind === "motion-module" || kind === "motion-adapter") {
      // The version comes from the tensors alone, so a module whose config cannot be inferred
      // (e.g. channels that 32 GroupNorm groups do not divide) still reports it.
      summary.version = await motionModuleVersion(path, options);
      const motion = await loadMotionModule(path, options);
      summary.config = motion.config;
      motion.close();
    } else if (kind === "lora-kohya" || kind === "lora-diffusers" || kind === "motion-lora") {
      const lora = await loadLora(await loraFile(path), { architecture: options.architecture });
      const parts: Record<string, number> = {};
      const ranks = new Set<number>(), alphas = new Set<number>(), kinds = new Set<string>();
      for (const m of lora.modules.values()) {
        parts[m.part] = (parts[m.part] ?? 0) + 1;
        const rank = loraRank(m.factors);
        if (rank !== undefined) ranks.add(rank);
        kinds.add(m.factors.kind);
        if (m.alpha !== undefined) alphas.add(m.alpha);
      }
      summary.config = {
        modules: lora.modules.size,
        parts,
        ranks: [...ranks],
        alphas: [...alphas],
        // "lora", or LyCORIS "loha" / "lokr".
        types: [...kinds],
      };
      lora.close();
    }
  } catch (e) {
    if (!(e instanceof InputError)) throw e; // a bug, not a property of the file
    summary.problem = e.message;
  }
  return summary;
}

async function loraFile(path: string): Promise<string> {
  const files = await weightsFilesOf(path);
  return files.length === 1 ? files[0] : path;
}

/** Human-readable multi-line rendering of a summary. */
export function formatSummary(s: WeightsSummary): string {
  const lines = [
    `${s.path}`,
    `  kind:       ${s.kind}${s.version ? ` (${s.version})` : ""}`,
    `  tensors:    ${s.tensors}`,
    `  parameters: ${s.parameters.toLocaleString("en-US")}`,
    `  dtypes:     ${Object.entries(s.dtypes).map(([d, n]) => `${d} x${n}`).join(", ")}`,
  ];
  if (s.config) {
    for (const [k, v] of Object.entries(s.config)) lines.push(`  ${k}: ${JSON.stringify(v)}`);
  }
  if (s.problem) lines.push(`  config:     not inferred: ${s.problem}`);
  return lines.join("\n");
}
