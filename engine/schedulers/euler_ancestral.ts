/**
 * Euler ancestral sampler (k-diffusion's `sample_euler_ancestral`, eta = 1), as diffusers'
 * EulerAncestralDiscreteScheduler: an Euler step down to sigma_down, then fresh noise of
 * scale sigma_up, with sigma_down^2 + sigma_up^2 = sigma_next^2.
 *
 * @module
 */

import type { SchedulerConfig } from "./config.ts";
import { eulerSigmaSchedule, sigmaInputScale, sigmaPredOriginal } from "./euler.ts";
import { checkStepIndex, type Scheduler, type StepResult, type VectorOps } from "./scheduler.ts";

/**
 * Euler ancestral scheduler. Every step draws one `randn(sample shape)` from `ops.randn()`
 * (also on the last step, where its weight is 0), exactly as diffusers consumes the generator.
 *
 * @example
 * ```ts
 * const sched = new EulerAncestralScheduler(ANIMATEDIFF_SCHEDULER_CONFIG, 25);
 * const { prevSample } = sched.step(ops, 0, eps, sample);
 * ```
 */
export class EulerAncestralScheduler implements Scheduler {
  /** Scheduler name as used by the CLI/API. */
  readonly name = "euler-a";
  readonly timesteps: readonly number[];
  readonly sigmas: readonly number[];
  readonly initNoiseSigma: number;
  /** The configuration this scheduler was built from. */
  readonly config: SchedulerConfig;

  /** Builds the schedule for `numSteps` inference steps from `config`. */
  constructor(config: SchedulerConfig, numSteps: number) {
    this.config = config;
    const schedule = eulerSigmaSchedule(config, numSteps, { allowKarras: false });
    this.timesteps = schedule.timesteps;
    this.sigmas = schedule.sigmas;
    this.initNoiseSigma = schedule.initNoiseSigma;
  }

  /** `1 / sqrt(sigma_i^2 + 1)`. */
  modelInputScale(stepIndex: number): number {
    checkStepIndex(this.name, stepIndex, this.timesteps.length);
    return sigmaInputScale(this.sigmas[stepIndex]);
  }

  /** x_{i+1} = x_i + d_i (sigma_down - sigma_i) + sigma_up * z, z ~ N(0, I). */
  step<T>(ops: VectorOps<T>, stepIndex: number, modelOutput: T, sample: T): StepResult<T> {
    checkStepIndex(this.name, stepIndex, this.timesteps.length);
    const sigmaFrom = this.sigmas[stepIndex];
    const sigmaTo = this.sigmas[stepIndex + 1];
    const from2 = sigmaFrom * sigmaFrom, to2 = sigmaTo * sigmaTo;
    const sigmaUp = Math.sqrt(to2 * (from2 - to2) / from2);
    const sigmaDown = Math.sqrt(Math.max(to2 - sigmaUp * sigmaUp, 0));
    const dt = sigmaDown - sigmaFrom;
    const [xs, xo] = sigmaPredOriginal(this.config.predictionType, sigmaFrom);
    const predOriginal = ops.lincomb([{ c: xs, x: sample }, { c: xo, x: modelOutput }]);
    const noise = ops.randn();
    const prevSample = ops.lincomb([
      { c: 1 + dt * (1 - xs) / sigmaFrom, x: sample },
      { c: -dt * xo / sigmaFrom, x: modelOutput },
      { c: sigmaUp, x: noise },
    ]);
    ops.release(noise);
    return { prevSample, predOriginal };
  }

  /** Euler ancestral keeps no history (the generator belongs to the caller's ops). */
  reset<T>(_ops: VectorOps<T>): void {}
}
