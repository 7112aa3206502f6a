/**
 * DDIM (Song et al. 2020, arXiv:2010.02502), deterministic (eta = 0), as diffusers'
 * DDIMScheduler: equation numbers below are the paper's.
 *
 * @module
 */

import type { SchedulerConfig } from "./config.ts";
import { alphasCumprod, roundHalfEven, spacedTimesteps } from "./schedule.ts";
import { checkStepIndex, type Scheduler, type StepResult, type VectorOps } from "./scheduler.ts";

const f = Math.fround;

/**
 * DDIM scheduler for `numSteps` inference steps.
 *
 * @example
 * ```ts
 * const ddim = new DdimScheduler(ANIMATEDIFF_SCHEDULER_CONFIG, 25);
 * ddim.timesteps; // [961, 921, ..., 1]
 * ```
 */
export class DdimScheduler implements Scheduler {
  /** Scheduler name as used by the CLI/API. */
  readonly name = "ddim";
  readonly timesteps: readonly number[];
  readonly initNoiseSigma = 1;
  /** The configuration this scheduler was built from. */
  readonly config: SchedulerConfig;
  #alphasCumprod: Float64Array;
  #finalAlphaCumprod: number;
  #stepRatio: number;

  /** Builds the schedule for `numSteps` inference steps from `config`. */
  constructor(config: SchedulerConfig, numSteps: number) {
    this.config = config;
    this.#alphasCumprod = alphasCumprod(config);
    this.#finalAlphaCumprod = config.setAlphaToOne ? 1 : this.#alphasCumprod[0];
    const spaced = spacedTimesteps(config, numSteps);
    // leading is already integral; linspace/trailing go through numpy's round then int64.
    this.timesteps = spaced.map((t) => roundHalfEven(t));
    // diffusers steps back by N // n whatever the spacing.
    this.#stepRatio = Math.floor(config.numTrainTimesteps / numSteps);
    for (const t of this.timesteps) {
      if (t < 0 || t >= config.numTrainTimesteps) {
        throw new Error(
          `ddim: timestep ${t} outside [0, ${config.numTrainTimesteps}) (check stepsOffset)`,
        );
      }
    }
  }

  /** DDIM does not scale the model input. */
  modelInputScale(_stepIndex: number): number {
    return 1;
  }

  /** x_{t-1} from x_t and the model output at `timesteps[stepIndex]` (eta = 0). */
  step<T>(ops: VectorOps<T>, stepIndex: number, modelOutput: T, sample: T): StepResult<T> {
    checkStepIndex(this.name, stepIndex, this.timesteps.length);
    const t = this.timesteps[stepIndex];
    const prevT = t - this.#stepRatio;
    const alphaProd = this.#alphasCumprod[t];
    const alphaProdPrev = prevT >= 0 ? this.#alphasCumprod[prevT] : this.#finalAlphaCumprod;
    const sqrtA = f(Math.sqrt(alphaProd));
    const sqrtB = f(Math.sqrt(f(1 - alphaProd)));

    // x0 = xs * sample + xo * output; eps = es * sample + eo * output (eq. 12 pieces)
    let xs: number, xo: number, es: number, eo: number;
    switch (this.config.predictionType) {
      case "epsilon":
        [xs, xo, es, eo] = [1 / sqrtA, -sqrtB / sqrtA, 0, 1];
        break;
      case "v_prediction":
        [xs, xo, es, eo] = [sqrtA, -sqrtB, sqrtB, sqrtA];
        break;
      case "sample":
        [xs, xo, es, eo] = [0, 1, 1 / sqrtB, -sqrtA / sqrtB];
        break;
    }
    const predOriginal = ops.lincomb([{ c: xs, x: sample }, { c: xo, x: modelOutput }]);
    // eq. 12 with sigma_t = 0: x_{t-1} = sqrt(a_prev) * x0 + sqrt(1 - a_prev) * eps
    const sqrtAPrev = f(Math.sqrt(alphaProdPrev));
    const dir = f(Math.sqrt(f(1 - alphaProdPrev)));
    if (this.config.clipSample) {
      if (!ops.clamp) throw new Error("ddim: clipSample needs VectorOps.clamp");
      const range = this.config.clipSampleRange;
      const clipped = ops.clamp(predOriginal, -range, range);
      ops.release(predOriginal);
      const prevSample = ops.lincomb([
        { c: sqrtAPrev, x: clipped },
        { c: dir * es, x: sample },
        { c: dir * eo, x: modelOutput },
      ]);
      return { prevSample, predOriginal: clipped };
    }
    const prevSample = ops.lincomb([
      { c: sqrtAPrev * xs + dir * es, x: sample },
      { c: sqrtAPrev * xo + dir * eo, x: modelOutput },
    ]);
    return { prevSample, predOriginal };
  }

  /** DDIM keeps no history. */
  reset<T>(_ops: VectorOps<T>): void {}
}
