/**
 * Scheduler configuration with diffusers' fields (camelCase), parsing of a diffusers
 * `scheduler_config.json`, and AnimateDiff's defaults.
 *
 * @module
 */

import { parsePythonJson } from "./python_json.ts";

/**
 * How betas are laid out over the training timesteps.
 *
 * @example
 * ```ts
 * import { ANIMATEDIFF_SCHEDULER_CONFIG, type BetaSchedule } from "@zoetrope/animatediff";
 *
 * const schedule: BetaSchedule = ANIMATEDIFF_SCHEDULER_CONFIG.betaSchedule; // "linear"
 * ```
 */
export type BetaSchedule = "linear" | "scaled_linear" | "squaredcos_cap_v2";
/**
 * How inference timesteps are picked (Table 2 of arXiv:2305.08891).
 *
 * @example
 * ```ts
 * import { ANIMATEDIFF_SCHEDULER_CONFIG, type SchedulerConfig } from "@zoetrope/animatediff";
 *
 * const trailing: SchedulerConfig = { ...ANIMATEDIFF_SCHEDULER_CONFIG, timestepSpacing: "trailing" };
 * ```
 */
export type TimestepSpacing = "leading" | "linspace" | "trailing";
/**
 * What the model predicts.
 *
 * @example
 * ```ts
 * import { ANIMATEDIFF_SCHEDULER_CONFIG, type SchedulerConfig } from "@zoetrope/animatediff";
 *
 * const vPred: SchedulerConfig = { ...ANIMATEDIFF_SCHEDULER_CONFIG, predictionType: "v_prediction" };
 * ```
 */
export type PredictionType = "epsilon" | "v_prediction" | "sample";

/**
 * Noise-schedule and solver settings shared by all schedulers (diffusers' config fields).
 *
 * @example
 * ```ts
 * import { ANIMATEDIFF_SCHEDULER_CONFIG, loadPipeline, type SchedulerConfig } from "@zoetrope/animatediff";
 *
 * const schedulerConfig: SchedulerConfig = { ...ANIMATEDIFF_SCHEDULER_CONFIG, useKarrasSigmas: true };
 * const pipe = await loadPipeline();
 * const latents = await pipe.generateLatents(
 *   { prompt: "dusk", frames: 2, width: 32, height: 32, steps: 4, scheduler: "euler" },
 *   { schedulerConfig },
 * );
 * ```
 */
export interface SchedulerConfig {
  /** Training timesteps N (1000). */
  numTrainTimesteps: number;
  /** First beta of the training schedule. */
  betaStart: number;
  /** Last beta of the training schedule. */
  betaEnd: number;
  /** How betas go from betaStart to betaEnd. */
  betaSchedule: BetaSchedule;
  /** Explicit betas (length numTrainTimesteps) overriding betaStart/betaEnd/betaSchedule. */
  trainedBetas: readonly number[] | null;
  /** Added to leading-spaced timesteps (1 for SD/AnimateDiff). */
  stepsOffset: number;
  /** How inference timesteps are spread over the training range. */
  timestepSpacing: TimestepSpacing;
  /** DDIM: alpha_cumprod of the step after the last is 1 (else alphas_cumprod[0]). */
  setAlphaToOne: boolean;
  /** DDIM: clamp the predicted x0 to [-clipSampleRange, clipSampleRange]. */
  clipSample: boolean;
  /** Clamp range for clipSample. */
  clipSampleRange: number;
  /** What the model output means. */
  predictionType: PredictionType;
  /** Euler / DPM-Solver: Karras et al. (2022) sigma spacing (rho = 7). */
  useKarrasSigmas: boolean;
  /** Euler (Karras): explicit lower end of the sigma range; null = from the schedule. */
  sigmaMin: number | null;
  /** Euler (Karras): explicit upper end of the sigma range; null = from the schedule. */
  sigmaMax: number | null;
  /** DPM-Solver: order of the multistep solver (1 or 2 here). */
  solverOrder: number;
  /** DPM-Solver: use lower-order steps at the end for fewer than 15 steps. */
  lowerOrderFinal: boolean;
  /** DPM-Solver: first-order (Euler) final step. */
  eulerAtFinal: boolean;
  /** DPM-Solver: the sigma after the last step. */
  finalSigmasType: "zero" | "sigma_min";
  /** DPM-Solver: lower clip of lambda(t) = log(alpha_t / sigma_t) when spacing timesteps. */
  lambdaMinClipped: number;
}

/**
 * AnimateDiff's scheduler settings (its inference configs and diffusers' AnimateDiff docs):
 * linear betas 0.00085..0.012 over 1000 steps, steps_offset 1, no clipping, set_alpha_to_one
 * false, leading spacing, epsilon prediction.
 *
 * @example
 * ```ts
 * import { ANIMATEDIFF_SCHEDULER_CONFIG } from "@zoetrope/animatediff";
 *
 * const { betaStart, betaEnd, betaSchedule, stepsOffset } = ANIMATEDIFF_SCHEDULER_CONFIG;
 * // 0.00085 0.012 "linear" 1
 * ```
 */
export const ANIMATEDIFF_SCHEDULER_CONFIG: Readonly<SchedulerConfig> = Object.freeze({
  numTrainTimesteps: 1000,
  betaStart: 0.00085,
  betaEnd: 0.012,
  betaSchedule: "linear",
  trainedBetas: null,
  stepsOffset: 1,
  timestepSpacing: "leading",
  setAlphaToOne: false,
  clipSample: false,
  clipSampleRange: 1,
  predictionType: "epsilon",
  useKarrasSigmas: false,
  sigmaMin: null,
  sigmaMax: null,
  solverOrder: 2,
  lowerOrderFinal: true,
  eulerAtFinal: false,
  finalSigmasType: "zero",
  lambdaMinClipped: -Infinity,
});

const SNAKE_FIELDS: Record<string, keyof SchedulerConfig> = {
  num_train_timesteps: "numTrainTimesteps",
  beta_start: "betaStart",
  beta_end: "betaEnd",
  beta_schedule: "betaSchedule",
  trained_betas: "trainedBetas",
  steps_offset: "stepsOffset",
  timestep_spacing: "timestepSpacing",
  set_alpha_to_one: "setAlphaToOne",
  clip_sample: "clipSample",
  clip_sample_range: "clipSampleRange",
  prediction_type: "predictionType",
  use_karras_sigmas: "useKarrasSigmas",
  sigma_min: "sigmaMin",
  sigma_max: "sigmaMax",
  solver_order: "solverOrder",
  lower_order_final: "lowerOrderFinal",
  euler_at_final: "eulerAtFinal",
  final_sigmas_type: "finalSigmasType",
  lambda_min_clipped: "lambdaMinClipped",
};

/** Settings diffusers has that these schedulers do not implement: value that is supported. */
const UNSUPPORTED: Record<string, unknown> = {
  thresholding: false,
  rescale_betas_zero_snr: false,
  use_lu_lambdas: false,
  timestep_type: "discrete",
  interpolation_type: "linear",
};

/**
 * Parses a diffusers `scheduler_config.json` (text, accepting Python's `-Infinity`, or an
 * already parsed object) into a {@link SchedulerConfig}; missing fields take diffusers'
 * DDIMScheduler defaults (betas 0.0001..0.02 linear, timestep_spacing "leading",
 * steps_offset 0, clip_sample and set_alpha_to_one true). Unknown fields
 * are ignored; settings these schedulers do not implement (thresholding, zero-SNR rescale,
 * Lu lambdas, ...) are an error.
 *
 * @example
 * ```ts
 * const cfg = schedulerConfigFromDiffusers(await Deno.readTextFile("scheduler/scheduler_config.json"));
 * ```
 */
export function schedulerConfigFromDiffusers(
  json: string | Record<string, unknown>,
): SchedulerConfig {
  const raw = typeof json === "string" ? parsePythonJson(json) : json;
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new Error("scheduler_config.json: expected a JSON object");
  }
  const obj = raw as Record<string, unknown>;
  for (const [key, ok] of Object.entries(UNSUPPORTED)) {
    if (obj[key] !== undefined && obj[key] !== null && obj[key] !== ok) {
      throw new Error(
        `scheduler_config.json: ${key}=${JSON.stringify(obj[key])} is not supported (expected ${
          JSON.stringify(ok)
        })`,
      );
    }
  }
  const config: SchedulerConfig = {
    ...ANIMATEDIFF_SCHEDULER_CONFIG,
    // diffusers' constructor defaults where the file is silent
    betaStart: 0.0001,
    betaEnd: 0.02,
    stepsOffset: 0,
    setAlphaToOne: true,
    clipSample: true,
  };
  const target = config as unknown as Record<string, unknown>;
  for (const [snake, camel] of Object.entries(SNAKE_FIELDS)) {
    const value = obj[snake];
    if (value === undefined) continue;
    if (value === null && snake === "lambda_min_clipped") continue;
    target[camel] = value;
  }
  validateSchedulerConfig(config);
  return config;
}

/**
 * Checks field types and ranges; throws an error naming the field.
 *
 * @example
 * ```ts
 * validateSchedulerConfig({ ...ANIMATEDIFF_SCHEDULER_CONFIG, stepsOffset: 1 });
 * ```
 */
export function validateSchedulerConfig(config: SchedulerConfig): void {
  const fail = (field: string, expected: string, got: unknown) => {
    throw new Error(`scheduler config: ${field} must be ${expected}, got ${JSON.stringify(got)}`);
  };
  const c = config;
  if (!Number.isInteger(c.numTrainTimesteps) || c.numTrainTimesteps < 2) {
    fail("numTrainTimesteps", "an integer >= 2", c.numTrainTimesteps);
  }
  if (!["linear", "scaled_linear", "squaredcos_cap_v2"].includes(c.betaSchedule)) {
    fail("betaSchedule", '"linear", "scaled_linear" or "squaredcos_cap_v2"', c.betaSchedule);
  }
  if (!["leading", "linspace", "trailing"].includes(c.timestepSpacing)) {
    fail("timestepSpacing", '"leading", "linspace" or "trailing"', c.timestepSpacing);
  }
  if (!["epsilon", "v_prediction", "sample"].includes(c.predictionType)) {
    fail("predictionType", '"epsilon", "v_prediction" or "sample"', c.predictionType);
  }
  if (!["zero", "sigma_min"].includes(c.finalSigmasType)) {
    fail("finalSigmasType", '"zero" or "sigma_min"', c.finalSigmasType);
  }
  if (!Number.isInteger(c.stepsOffset) || c.stepsOffset < 0) {
    fail("stepsOffset", "a non-negative integer", c.stepsOffset);
  }
  if (c.trainedBetas !== null) {
    if (!Array.isArray(c.trainedBetas) || c.trainedBetas.length !== c.numTrainTimesteps) {
      fail("trainedBetas", `an array of ${c.numTrainTimesteps} numbers or null`, c.trainedBetas);
    }
  }
  if (!(c.betaStart > 0 && c.betaEnd > 0 && c.betaEnd < 1)) {
    fail("betaStart/betaEnd", "in (0, 1)", [c.betaStart, c.betaEnd]);
  }
  if (c.solverOrder !== 1 && c.solverOrder !== 2) fail("solverOrder", "1 or 2", c.solverOrder);
}
