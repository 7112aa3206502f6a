/**
 * DPM-Solver++(2M) (Lu et al. 2022, arXiv:2211.01095, Algorithm 2, midpoint form), as
 * diffusers' DPMSolverMultistepScheduler with algorithm_type "dpmsolver++", solver_order 2,
 * solver_type "midpoint", lower_order_final; optionally Karras sigmas ("DPM++ 2M Karras").
 *
 * The solver works on the data prediction x0 = (x - sigma_t eps) / alpha_t with
 * alpha_t = 1 / sqrt(sigma^2 + 1), sigma_t = sigma alpha_t, lambda = log(alpha_t / sigma_t).
 *
 * @module
 */

import type { SchedulerConfig } from "./config.ts";
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

/** Integer timesteps and float32 sigmas (length n + 1) of DPMSolverMultistepScheduler. */
export function dpmSolverSchedule(
  config: SchedulerConfig,
  numSteps: number,
): { timesteps: number[]; sigmas: number[] } {
  const total = config.numTrainTimesteps;
  if (!Number.isInteger(numSteps) || numSteps < 1 || numSteps > total) {
    throw new Error(`dpmpp-2m: numSteps must be an integer in [1, ${total}], got ${numSteps}`);
  }
  const cumprod = alphasCumprod(config);
  // lambda_min_clipped: drop the high-t end where lambda(t) < clip (cosine schedules).
  let clipped = 0;
  for (let t = total - 1; t >= 0; t--) {
    const a = cumprod[t];
    const lambda = f(f(Math.log(f(Math.sqrt(a)))) - f(Math.log(f(Math.sqrt(f(1 - a))))));
    if (lambda < config.lambdaMinClipped) clipped++;
    else break;
  }
  const last = total - clipped;
  let timesteps: number[];
  switch (config.timestepSpacing) {
    case "linspace":
      timesteps = numpyLinspace(0, last - 1, numSteps + 1).map(roundHalfEven).reverse().slice(
        0,
        -1,
      );
      break;
    case "leading": {
      const ratio = Math.floor(last / (numSteps + 1));
      timesteps = Array.from(
        { length: numSteps },
        (_, i) => (numSteps - i) * ratio + config.stepsOffset,
      );
      break;
    }
    case "trailing":
      timesteps = numpyArange(last, 0, -total / numSteps).map((t) => roundHalfEven(t) - 1);
      break;
  }
  const train = trainSigmas(cumprod);
  let sigmas: number[];
  if (config.useKarrasSigmas) {
    const logSigmas = train.map((s) => f(Math.log(s)));
    sigmas = karrasSigmas(train[0], train[total - 1], numSteps);
    timesteps = sigmas.map((s) => roundHalfEven(sigmaToT(s, logSigmas)));
  } else {
    sigmas = timesteps.map((t) => interpIndex(t, train));
  }
  const last32 = config.finalSigmasType === "zero" ? 0 : train[0];
  return { timesteps, sigmas: [...sigmas.map(f), last32] };
}

/** alpha_t, sigma_t and lambda_t of a sigma (lambda = +inf at sigma 0). */
function alphaSigmaLambda(sigma: number): { alpha: number; sigmaT: number; lambda: number } {
  const alpha = 1 / Math.sqrt(sigma * sigma + 1);
  const sigmaT = sigma * alpha;
  return { alpha, sigmaT, lambda: Math.log(alpha) - Math.log(sigmaT) };
}

/**
 * DPM-Solver++(2M) multistep scheduler. Keeps the last two x0 predictions as history
 * (released when shifted out, by `reset`, or when a new run starts at stepIndex 0).
 *
 * @example
 * ```ts
 * const dpm = new DpmSolverMultistepScheduler({ ...ANIMATEDIFF_SCHEDULER_CONFIG, useKarrasSigmas: true }, 25);
 * ```
 */
export class DpmSolverMultistepScheduler implements Scheduler {
  /** Scheduler name as used by the CLI/API. */
  readonly name: string;
  readonly timesteps: readonly number[];
  readonly sigmas: readonly number[];
  readonly initNoiseSigma = 1;
  /** The configuration this scheduler was built from. */
  readonly config: SchedulerConfig;
  #history: unknown[] = [];
  #lowerOrderNums = 0;
  #nextIndex = 0;

  /** Builds the schedule for `numSteps` inference steps from `config`. */
  constructor(config: SchedulerConfig, numSteps: number) {
    this.config = config;
    this.name = config.useKarrasSigmas ? "dpmpp-2m-karras" : "dpmpp-2m";
    const schedule = dpmSolverSchedule(config, numSteps);
    this.timesteps = schedule.timesteps;
    this.sigmas = schedule.sigmas;
  }

  /** DPM-Solver does not scale the model input. */
  modelInputScale(_stepIndex: number): number {
    return 1;
  }

  /** One multistep update from sigmas[i] to sigmas[i + 1]; steps must come in order. */
  step<T>(ops: VectorOps<T>, stepIndex: number, modelOutput: T, sample: T): StepResult<T> {
    const n = this.timesteps.length;
    checkStepIndex(this.name, stepIndex, n);
    if (stepIndex === 0) this.reset(ops);
    if (stepIndex !== this.#nextIndex) {
      throw new Error(`${this.name}: expected stepIndex ${this.#nextIndex}, got ${stepIndex}`);
    }
    const cfg = this.config;
    const s0 = alphaSigmaLambda(this.sigmas[stepIndex]);
    const t = alphaSigmaLambda(this.sigmas[stepIndex + 1]);

    // convert_model_output: data prediction x0 from the model output.
    let xs: number, xo: number;
    switch (cfg.predictionType) {
      case "epsilon":
        [xs, xo] = [1 / s0.alpha, -s0.sigmaT / s0.alpha];
        break;
      case "v_prediction":
        [xs, xo] = [s0.alpha, -s0.sigmaT];
        break;
      case "sample":
        [xs, xo] = [0, 1];
        break;
    }
    const m0 = ops.lincomb([{ c: xs, x: sample }, { c: xo, x: modelOutput }]) as unknown;
    this.#history.push(m0);
    while (this.#history.length > 2) ops.release(this.#history.shift() as T);

    const lowerOrderFinal = stepIndex === n - 1 &&
      (cfg.eulerAtFinal || (cfg.lowerOrderFinal && n < 15) || cfg.finalSigmasType === "zero");
    const h = t.lambda - s0.lambda;
    const expm = Math.exp(-h) - 1; // e^{-h} - 1
    let prevSample: T;
    if (cfg.solverOrder === 1 || this.#lowerOrderNums < 1 || lowerOrderFinal) {
      // first order (= DDIM): x_t = (sigma_t / sigma_s) x - alpha_t (e^{-h} - 1) x0
      prevSample = ops.lincomb([
        { c: t.sigmaT / s0.sigmaT, x: sample },
        { c: -t.alpha * expm, x: m0 as T },
      ]);
    } else {
      // second order, midpoint: D0 = m0, D1 = (m0 - m1) / r0, r0 = h_0 / h
      const s1 = alphaSigmaLambda(this.sigmas[stepIndex - 1]);
      const r0 = (s0.lambda - s1.lambda) / h;
      const m1 = this.#history[0] as T;
      const c0 = -t.alpha * expm;
      const c1 = -0.5 * t.alpha * expm / r0;
      prevSample = ops.lincomb([
        { c: t.sigmaT / s0.sigmaT, x: sample },
        { c: c0 + c1, x: m0 as T },
        { c: -c1, x: m1 },
      ]);
    }
    if (this.#lowerOrderNums < cfg.solverOrder) this.#lowerOrderNums++;
    this.#nextIndex = stepIndex + 1;
    return { prevSample };
  }

  /** Releases the x0 history and restarts the multistep counter. */
  reset<T>(ops: VectorOps<T>): void {
    for (const m of this.#history) ops.release(m as T);
    this.#history = [];
    this.#lowerOrderNums = 0;
    this.#nextIndex = 0;
  }
}
