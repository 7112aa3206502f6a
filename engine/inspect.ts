/**
 * `inspectWeights` with the architectures' description: what the library exports and the
 * service uses, so tensors are checked against what the models declare.
 * @module
 */

import { inspectWeights as inspectFile, type WeightsSummary } from "../weights/inspect.ts";
import { ARCHITECTURE } from "./models/architecture.ts";

/**
 * Inspects a weights file or folder without reading tensor data: its kind (SD1.5 checkpoint,
 * diffusers model, motion module or adapter, LoRA, or another family), motion version, tensor
 * and parameter counts, dtypes and inferred config; every tensor is checked against the
 * architectures' description. `config`: a diffusers folder or MotionAdapter config giving what
 * shapes cannot tell (GroupNorm groups, heads).
 *
 * @example
 * ```ts
 * import { inspectWeights } from "@zoetrope/animatediff";
 *
 * const s = await inspectWeights("mm_sd_v15_v2.ckpt");
 * console.log(s.kind, s.version); // "motion-module" "v2"
 * ```
 */
export function inspectWeights(
  path: string,
  options: { config?: string } = {},
): Promise<WeightsSummary> {
  return inspectFile(path, { ...options, architecture: ARCHITECTURE });
}
