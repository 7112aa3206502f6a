/**
 * Schedulers: DDIM, Euler, Euler ancestral, DPM++ 2M (optionally Karras), LCM, all pure CPU
 * coefficient math over {@link VectorOps}.
 *
 * @example
 * ```ts
 * import { ANIMATEDIFF_SCHEDULER_CONFIG, createScheduler, cpuVectorOps } from "./mod.ts";
 * const sched = createScheduler("euler-a", ANIMATEDIFF_SCHEDULER_CONFIG, 25);
 * ```
 *
 * @module
 */

import { type SchedulerConfig, validateSchedulerConfig } from "./config.ts";
import { DdimScheduler } from "./ddim.ts";
import { DpmSolverMultistepScheduler } from "./dpmpp_2m.ts";
import { EulerScheduler } from "./euler.ts";
import { EulerAncestralScheduler } from "./euler_ancestral.ts";
import { LcmScheduler } from "./lcm.ts";
import type { Scheduler } from "./scheduler.ts";
import type { SchedulerName } from "../pipeline_types.ts";

export {
  ANIMATEDIFF_SCHEDULER_CONFIG,
  type BetaSchedule,
  type PredictionType,
  type SchedulerConfig,
  schedulerConfigFromDiffusers,
  type TimestepSpacing,
  validateSchedulerConfig,
} from "./config.ts";
export {
  checkStepIndex,
  cpuVectorOps,
  type LinearTerm,
  type Scheduler,
  type StepResult,
  type VectorOps,
} from "./scheduler.ts";
export { DdimScheduler } from "./ddim.ts";
export { EulerScheduler } from "./euler.ts";
export { EulerAncestralScheduler } from "./euler_ancestral.ts";
export { DpmSolverMultistepScheduler } from "./dpmpp_2m.ts";
export { LCM_ORIGINAL_STEPS, lcmScalings, LcmScheduler } from "./lcm.ts";

import { SCHEDULERS } from "../request.ts";
/** Scheduler names accepted by the CLI, the HTTP API and {@link createScheduler} (the one list lives in engine/request.ts). */
export const SCHEDULER_NAMES: typeof SCHEDULERS = SCHEDULERS;
export type { SchedulerName } from "../pipeline_types.ts";

/**
 * Builds a scheduler by name from a config (typically the model's scheduler_config.json or
 * {@link ANIMATEDIFF_SCHEDULER_CONFIG}), as diffusers' `XScheduler.from_config(config)`:
 * "dpmpp-2m" forces `useKarrasSigmas: false`, "dpmpp-2m-karras" forces it true, and the Euler
 * variants ignore DPM-only fields.
 *
 * @example
 * ```ts
 * const sched = createScheduler("dpmpp-2m-karras", ANIMATEDIFF_SCHEDULER_CONFIG, 25);
 * sched.timesteps; // [999, 968, 936, ...]
 * ```
 */
export function createScheduler(
  name: SchedulerName,
  config: SchedulerConfig,
  numSteps: number,
): Scheduler {
  validateSchedulerConfig(config);
  switch (name) {
    case "ddim":
      return new DdimScheduler(config, numSteps);
    case "euler":
      return new EulerScheduler(config, numSteps);
    case "euler-a":
      return new EulerAncestralScheduler({ ...config, useKarrasSigmas: false }, numSteps);
    case "dpmpp-2m":
      return new DpmSolverMultistepScheduler({ ...config, useKarrasSigmas: false }, numSteps);
    case "dpmpp-2m-karras":
      return new DpmSolverMultistepScheduler({ ...config, useKarrasSigmas: true }, numSteps);
    case "lcm":
      return new LcmScheduler(config, numSteps);
    default:
      throw new Error(
        `createScheduler: unknown scheduler "${name}"; expected one of ${
          SCHEDULER_NAMES.join(", ")
        }`,
      );
  }
}
