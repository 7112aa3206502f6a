/**
 * Euler sampler of Karras et al. (2022, arXiv:2206.00364, Algorithm 2 without churn), as
 * diffusers' EulerDiscreteScheduler: sigma-parameterised, the model sees
 * `x / sqrt(sigma^2 + 1)`, one ODE step `x + (x - x0) / sigma * (sigma_next - sigma)`.
 *
 * @module
 */

import type { PredictionType, SchedulerConfig } from "./config.ts";
import {
  alphasCumprod,
  interpIndex,
  karrasSigmas,
  numpyArange,
  numpyLinspace,
  roundHalfEven,
  sigmaToT,
  trainSigmas,
} from "./schedule.ts";
import { checkStepIndex, type Scheduler, type StepResult, type VectorOps } from "./scheduler.ts";

const f = Math.fround;

/** Timesteps (float32) and sigmas (float32, length n + 1, last 0) of the Euler schedulers. */
export interface SigmaSchedule {
  timesteps: number[];
  sigmas: number[];
  initNoiseSigma: number;
}

/**
 * Euler-family schedule as diffusers' `set_timesteps`: spaced float timesteps, sigmas
 * interpolated from the training sigmas (optionally respaced by Karras), a final 0, and
 * `init_noise_sigma` = max sigma (linspace/trailing) or `sqrt(max^2 + 1)` (leading).
 *
 * @example
 * ```ts
 * const { timesteps, sigmas } = eulerSigmaSchedule(ANIMATEDIFF_SCHEDULER_CONFIG, 4);
 * ```
 */
export function eulerSigmaSchedule(
  config: SchedulerConfig,
  numSteps: number,
  options: { allowKarras?: boolean } = {},
): SigmaSchedule {
  const total = config.numTrainTimesteps;
  if (!Number.isInteger(numSteps) || numSteps < 1 || numSteps > total) {
    throw new Error(`euler: numSteps must be an integer in [1, ${total}], got ${numSteps}`);
  }
  let timesteps: number[];
  switch (config.timestepSpacing) {
    case "linspace":
      timesteps = numpyLinspace(0, total - 1, numSteps).map(f).reverse();
      break;
    case "leading": {
      const ratio = Math.floor(total / numSteps);
      timesteps = Array.from(
        { length: numSteps },
        (_, i) => (numSteps - 1 - i) * ratio + config.stepsOffset,
      );
      break;
    }
    case "trailing":
      timesteps = numpyArange(total, 0, -total / numSteps).map((t) => f(roundHalfEven(t)) - 1);
      break;
  }
  const train = trainSigmas(alphasCumprod(config));
  let sigmas = timesteps.map((t) => interpIndex(t, train));
  if (config.useKarrasSigmas) {
    if (options.allowKarras === false) {
      throw new Error("euler-a: useKarrasSigmas is not supported by this scheduler");
    }
    const logSigmas = train.map((s) => f(Math.log(s)));
    const sigmaMin = config.sigmaMin ?? f(sigmas[sigmas.length - 1]);
    const sigmaMax = config.sigmaMax ?? f(sigmas[0]);
    sigmas = karrasSigmas(sigmaMin, sigmaMax, numSteps);
    timesteps = sigmas.map((s) => f(sigmaToT(s, logSigmas)));
  }
  const sigmas32 = [...sigmas.map(f), 0];
  const maxSigma = Math.max(...sigmas32);
  const initNoiseSigma = config.timestepSpacing === "leading"
    ? f(Math.sqrt(f(f(maxSigma * maxSigma) + 1)))
    : maxSigma;
  return { timesteps, sigmas: sigmas32, initNoiseSigma };
}

/** Coefficients (on sample, on model output) of the predicted x0 at noise level `sigma`. */
export function sigmaPredOriginal(predictionType: PredictionType, sigma: number): [number, number] {
  switch (predictionType) {
    case "epsilon":
      return [1, -sigma];
    case "v_prediction": // c_skip * x + c_out * v
      return [1 / (sigma * sigma + 1), -sigma / Math.sqrt(sigma * sigma + 1)];
    case "sample":
      return [0, 1];
  }
}

/** `1 / sqrt(sigma^2 + 1)`, diffusers' scale_model_input for sigma-based schedulers. */
export function sigmaInputScale(sigma: number): number {
  return 1 / f(Math.sqrt(f(f(sigma * sigma) + 1)));
}

/**
 * Euler discrete scheduler (no churn).
 *
 * @example
 * ```ts
 * const euler = new EulerScheduler(ANIMATEDIFF_SCHEDULER_CONFIG, 25);
 * const x = ops.lincomb([{ c: euler.initNoiseSigma, x: noise }]);
 * ```
 */
export class EulerScheduler implements Scheduler {
  /** Scheduler name as used by the CLI/API. */
  readonly name: string = "euler";
  readonly timesteps: readonly number[];
  readonly sigmas: readonly number[];
  readonly initNoiseSigma: number;
  /** The configuration this scheduler was built from. */
  readonly config: SchedulerConfig;

  /** Builds the schedule for `numSteps` inference steps from `config`. */
  constructor(config: SchedulerConfig, numSteps: number) {
    this.config = config;
    const schedule = eulerSigmaSchedule(config, numSteps);
    this.timesteps = schedule.timesteps;
    this.sigmas = schedule.sigmas;
    this.initNoiseSigma = schedule.initNoiseSigma;
  }

  /** `1 / sqrt(sigma_i^2 + 1)`. */
  modelInputScale(stepIndex: number): number {
    checkStepIndex(this.name, stepIndex, this.timesteps.length);
    return sigmaInputScale(this.sigmas[stepIndex]);
  }

  /** x_{i+1} = x_i + d_i (sigma_{i+1} - sigma_i), d_i = (x_i - x0_i) / sigma_i. */
  step<T>(ops: VectorOps<T>, stepIndex: number, modelOutput: T, sample: T): StepResult<T> {
    checkStepIndex(this.name, stepIndex, this.timesteps.length);
    const sigma = this.sigmas[stepIndex];
    const dt = this.sigmas[stepIndex + 1] - sigma;
    const [xs, xo] = sigmaPredOriginal(this.config.predictionType, sigma);
    const predOriginal = ops.lincomb([{ c: xs, x: sample }, { c: xo, x: modelOutput }]);
    // x + dt * (x - (xs x + xo out)) / sigma
    const prevSample = ops.lincomb([
      { c: 1 + dt * (1 - xs) / sigma, x: sample },
      { c: -dt * xo / sigma, x: modelOutput },
    ]);
    return { prevSample, predOriginal };
  }

  /** Euler keeps no history. */
  reset<T>(_ops: VectorOps<T>): void {}
}
