/**
 * The scheduler contract: pure CPU coefficient math over an abstract vector type, so the
 * denoising state can live on the GPU (one fused linear-combination kernel per update) while
 * tests run the same code on Float32Arrays.
 *
 * @module
 */

import type { TorchGenerator } from "../rng.ts";

/** One term `c * x` of a linear combination. */
export interface LinearTerm<T> {
  /** Coefficient. */
  c: number;
  /** Vector. */
  x: T;
}

/** Vector operations a scheduler needs; the pipeline implements them with GPU kernels. */
export interface VectorOps<T> {
  /** Returns sum_i coeffs[i] * terms[i] as a new vector (one fused GPU kernel in the pipeline). */
  lincomb(terms: readonly LinearTerm<T>[]): T;
  /** Standard normal noise with the sample's shape (euler-a), drawn from the request's TorchGenerator. */
  randn(): T;
  /** Frees a vector the scheduler no longer needs (history). */
  release(x: T): void;
  /** Elementwise clamp to [lo, hi] as a new vector; only needed for DDIM with clipSample. */
  clamp?(x: T, lo: number, hi: number): T;
}

/** Result of one scheduler step. Both vectors are new and owned by the caller. */
export interface StepResult<T> {
  /** The sample for the next step. */
  prevSample: T;
  /** Predicted x0 (DDIM, Euler, Euler ancestral). */
  predOriginal?: T;
}

/** A configured scheduler for a fixed number of inference steps. */
export interface Scheduler {
  /** Scheduler name as used by the CLI/API. */
  readonly name: string;
  /** Timesteps as the model sees them (float for euler, int for ddim/dpm). */
  readonly timesteps: readonly number[];
  /** Sigma per step plus the final one (length steps + 1), for sigma-based schedulers. */
  readonly sigmas?: readonly number[];
  /** Factor for the initial noise (the pipeline multiplies the initial latents by it). */
  readonly initNoiseSigma: number;
  /** Factor applied to the sample before the model (scale_model_input). */
  modelInputScale(stepIndex: number): number;
  /**
   * One step; returns the new sample (and pred_original where the algorithm has it). Never
   * releases `sample`/`modelOutput`. Multistep schedulers expect stepIndex 0, 1, 2, ... in order.
   */
  step<T>(ops: VectorOps<T>, stepIndex: number, modelOutput: T, sample: T): StepResult<T>;
  /** Releases any history vectors. */
  reset<T>(ops: VectorOps<T>): void;
}

/**
 * Float32Array implementation of {@link VectorOps} (float64 accumulation, float32 storage).
 * `randn` draws `rng.randn([size])` and so needs both.
 *
 * @example
 * ```ts
 * const ops = cpuVectorOps(new TorchGenerator(1004), 128);
 * const y = ops.lincomb([{ c: 2, x: a }, { c: -1, x: b }]);
 * ```
 */
export function cpuVectorOps(rng?: TorchGenerator, size?: number): VectorOps<Float32Array> {
  return {
    lincomb(terms) {
      if (terms.length === 0) throw new Error("cpuVectorOps.lincomb: needs at least one term");
      const n = terms[0].x.length;
      for (const t of terms) {
        if (t.x.length !== n) {
          throw new Error(`cpuVectorOps.lincomb: lengths differ (${t.x.length} vs ${n})`);
        }
      }
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        let acc = 0;
        for (const t of terms) acc += t.c * t.x[i];
        out[i] = acc;
      }
      return out;
    },
    randn() {
      if (!rng || size === undefined) {
        throw new Error("cpuVectorOps.randn: create the ops with a TorchGenerator and a size");
      }
      return rng.randn([size]);
    },
    release() {},
    clamp(x, lo, hi) {
      return x.map((v) => Math.min(Math.max(v, lo), hi));
    },
  };
}

/** Throws unless `stepIndex` is a valid index into `timesteps` (names the scheduler). */
export function checkStepIndex(name: string, stepIndex: number, numSteps: number): void {
  if (!Number.isInteger(stepIndex) || stepIndex < 0 || stepIndex >= numSteps) {
    throw new Error(
      `${name}: stepIndex must be an integer in [0, ${numSteps - 1}], got ${stepIndex}`,
    );
  }
}
