/**
 * Latent Consistency Model sampling (Luo et al. 2023, arXiv:2310.04378), as diffusers'
 * LCMScheduler with AnimateLCM's settings: timesteps picked from an `originalSteps`-step
 * "skipping" schedule, each step a consistency-model estimate of x0 (boundary-condition scalings
 * c_skip, c_out), re-noised to the next timestep with fresh noise but for the last step.
 *
 * @module
 */

import type { SchedulerConfig } from "./config.ts";
import { alphasCumprod } from "./schedule.ts";
import { checkStepIndex, type Scheduler, type StepResult, type VectorOps } from "./scheduler.ts";

const f = Math.fround;

/** AnimateLCM's `original_inference_steps`. */
export const LCM_ORIGINAL_STEPS = 100;
/** LCMScheduler's `timestep_scaling`. */
const TIMESTEP_SCALING = 10;
/** LCMScheduler's `sigma_data`. */
const SIGMA_DATA = 0.5;

/**
 * The LCM boundary-condition scalings at timestep `t` (float32, as torch computes them):
 * c_skip = sigma_data^2 / ((10 t)^2 + sigma_data^2), c_out = 10 t / sqrt((10 t)^2 + sigma_data^2).
 *
 * @example
 * ```ts
 * lcmScalings(999).cSkip; // ~2.5e-7
 * ```
 */
export function lcmScalings(t: number): { cSkip: number; cOut: number } {
  const scaled = f(t * TIMESTEP_SCALING);
  const denom = f(f(scaled * scaled) + SIGMA_DATA * SIGMA_DATA);
  return { cSkip: f(SIGMA_DATA * SIGMA_DATA / denom), cOut: f(scaled / f(Math.sqrt(denom))) };
}

/**
 * LCM scheduler. Every step but the last draws one `randn(sample shape)` from `ops.randn()`,
 * in diffusers' order; `predOriginal` is the step's denoised estimate.
 *
 * @example
 * ```ts
 * const lcm = new LcmScheduler(ANIMATEDIFF_SCHEDULER_CONFIG, 4);
 * lcm.timesteps; // [999, 749, 499, 249]
 * ```
 */
export class LcmScheduler implements Scheduler {
  /** Scheduler name as used by the CLI/API. */
  readonly name = "lcm";
  readonly timesteps: readonly number[];
  readonly initNoiseSigma = 1;
  /** The configuration this scheduler was built from. */
  readonly config: SchedulerConfig;
  #alphasCumprod: Float64Array;

  /**
   * Builds the schedule for `numSteps` steps (at most `originalSteps`): with k = N / original,
   * the origin schedule is 999, 999 - k, ..., k - 1 and the steps take its entries at
   * floor(i * original / numSteps).
   */
  constructor(config: SchedulerConfig, numSteps: number, originalSteps = LCM_ORIGINAL_STEPS) {
    if (!Number.isInteger(numSteps) || numSteps < 1 || numSteps > originalSteps) {
      throw new RangeError(
        `lcm: steps must be an integer from 1 to ${originalSteps} (original_inference_steps), ` +
          `got ${numSteps}`,
      );
    }
    this.config = config;
    this.#alphasCumprod = alphasCumprod(config);
    const k = Math.floor(config.numTrainTimesteps / originalSteps);
    const origin = Array.from({ length: originalSteps }, (_, i) => (originalSteps - i) * k - 1);
    this.timesteps = Array.from(
      { length: numSteps },
      (_, i) => origin[Math.floor(i * originalSteps / numSteps)],
    );
  }

  /** LCM does not scale the model input. */
  modelInputScale(_stepIndex: number): number {
    return 1;
  }

  /**
   * denoised = c_out x0 + c_skip x with x0 = (x - sqrt(1 - a_t) eps) / sqrt(a_t); then
   * x_next = sqrt(a_next) denoised + sqrt(1 - a_next) z, or denoised at the last step.
   */
  step<T>(ops: VectorOps<T>, stepIndex: number, modelOutput: T, sample: T): StepResult<T> {
    checkStepIndex(this.name, stepIndex, this.timesteps.length);
    const t = this.timesteps[stepIndex];
    const a = f(this.#alphasCumprod[t]);
    const sqrtA = f(Math.sqrt(a)), sqrtB = f(Math.sqrt(f(1 - a)));
    // x0 = xs * sample + xo * output
    let xs: number, xo: number;
    switch (this.config.predictionType) {
      case "epsilon":
        [xs, xo] = [1 / sqrtA, -sqrtB / sqrtA];
        break;
      case "v_prediction":
        [xs, xo] = [sqrtA, -sqrtB];
        break;
      case "sample":
        [xs, xo] = [0, 1];
        break;
    }
    const { cSkip, cOut } = lcmScalings(t);
    const denoised = ops.lincomb([
      { c: cOut * xs + cSkip, x: sample },
      { c: cOut * xo, x: modelOutput },
    ]);
    if (stepIndex === this.timesteps.length - 1) {
      return { prevSample: ops.lincomb([{ c: 1, x: denoised }]), predOriginal: denoised };
    }
    const aNext = f(this.#alphasCumprod[this.timesteps[stepIndex + 1]]);
    const noise = ops.randn();
    const prevSample = ops.lincomb([
      { c: f(Math.sqrt(aNext)), x: denoised },
      { c: f(Math.sqrt(f(1 - aNext))), x: noise },
    ]);
    ops.release(noise);
    return { prevSample, predOriginal: denoised };
  }

  /** LCM keeps no history. */
  reset<T>(_ops: VectorOps<T>): void {}
}
