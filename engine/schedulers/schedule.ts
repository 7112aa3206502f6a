/**
 * Noise-schedule tables and timestep spacing shared by the schedulers, computed the way
 * diffusers computes them (torch float32 tensors for betas/alphas_cumprod/sigmas, numpy float64
 * for spacing and interpolation) so that timesteps and sigmas match to the bit or nearly.
 *
 * @module
 */

import type { SchedulerConfig } from "./config.ts";

const f = Math.fround;

/** numpy's `round` (half to even). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * `torch.linspace(start, end, steps, dtype=float32)` on CPU as torch 1.13/2.x computes it
 * (float32 step; first half counted from `start`, second half from `end`; 8-wide AVX2 chunks
 * of `base + k * step`, scalar tail). Returns float32 values in a Float64Array.
 */
export function torchLinspaceF32(start: number, end: number, steps: number): Float64Array {
  const out = new Float64Array(steps);
  if (steps === 1) {
    out[0] = f(start);
    return out;
  }
  const s = f(start), e = f(end);
  const step = f(f(e - s) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  const scalar = (idx: number) =>
    idx < halfway ? f(s + f(step * idx)) : f(e - f(step * (steps - idx - 1)));
  const lanes = 8;
  let i = 0;
  for (; i <= steps - 2 * lanes; i += lanes) {
    const base = scalar(i);
    for (let k = 0; k < lanes; k++) out[i + k] = k === 0 ? base : f(base + f(k * step));
  }
  for (; i < steps; i++) out[i] = scalar(i);
  return out;
}

/** `np.linspace(start, stop, num)` in float64 (`i * step + start`, last = stop). */
export function numpyLinspace(start: number, stop: number, num: number): number[] {
  if (num === 1) return [start];
  const step = (stop - start) / (num - 1);
  const out = Array.from({ length: num }, (_, i) => i * step + start);
  out[num - 1] = stop;
  return out;
}

/** `np.arange(start, stop, step)` for float arguments (`start + i * delta`). */
export function numpyArange(start: number, stop: number, step: number): number[] {
  const length = Math.max(0, Math.ceil((stop - start) / step));
  const delta = (start + step) - start;
  return Array.from({ length }, (_, i) => i === 0 ? start : start + i * delta);
}

/**
 * Betas of the training schedule (float32 values), as diffusers builds them:
 * linear = `torch.linspace(betaStart, betaEnd)`, scaled_linear = `linspace(sqrt)**2`,
 * squaredcos_cap_v2 = `betas_for_alpha_bar` (cosine, max beta 0.999).
 */
export function trainBetas(config: SchedulerConfig): Float64Array {
  const n = config.numTrainTimesteps;
  if (config.trainedBetas) return Float64Array.from(config.trainedBetas, (b) => f(b));
  switch (config.betaSchedule) {
    case "linear":
      return torchLinspaceF32(config.betaStart, config.betaEnd, n);
    case "scaled_linear":
      return torchLinspaceF32(Math.sqrt(config.betaStart), Math.sqrt(config.betaEnd), n)
        .map((b) => f(b * b));
    case "squaredcos_cap_v2": {
      const alphaBar = (t: number) => Math.cos((t + 0.008) / 1.008 * Math.PI / 2) ** 2;
      return Float64Array.from(
        { length: n },
        (_, i) => f(Math.min(1 - alphaBar((i + 1) / n) / alphaBar(i / n), 0.999)),
      );
    }
  }
}

/**
 * `torch.cumprod(1 - betas)` in float32 (torch's CPU cumprod accumulates in double and stores
 * each prefix product as float32).
 */
export function alphasCumprod(config: SchedulerConfig): Float64Array {
  const betas = trainBetas(config);
  const out = new Float64Array(betas.length);
  let acc = 1;
  for (let i = 0; i < betas.length; i++) {
    acc *= f(1 - betas[i]);
    out[i] = f(acc);
  }
  return out;
}

/** Training sigmas `((1 - a) / a) ** 0.5` in float32, index = training timestep. */
export function trainSigmas(alphasCumprod: Float64Array): Float64Array {
  return alphasCumprod.map((a) => f(Math.sqrt(f(f(1 - a) / a))));
}

/**
 * Inference timesteps (descending, as real numbers before any dtype cast) for DDIM/Euler:
 * leading = `arange(n) * (N // n) + stepsOffset`, linspace = `linspace(0, N - 1, n)`,
 * trailing = `round(arange(N, 0, -N / n)) - 1`.
 */
export function spacedTimesteps(config: SchedulerConfig, numSteps: number): number[] {
  const total = config.numTrainTimesteps;
  if (!Number.isInteger(numSteps) || numSteps < 1 || numSteps > total) {
    throw new Error(`scheduler: numSteps must be an integer in [1, ${total}], got ${numSteps}`);
  }
  switch (config.timestepSpacing) {
    case "leading": {
      const ratio = Math.floor(total / numSteps);
      return Array.from(
        { length: numSteps },
        (_, i) => (numSteps - 1 - i) * ratio + config.stepsOffset,
      );
    }
    case "linspace":
      return numpyLinspace(0, total - 1, numSteps).reverse();
    case "trailing":
      return numpyArange(total, 0, -total / numSteps).map((t) => roundHalfEven(t) - 1);
  }
}

/** `np.interp(x, arange(len(fp)), fp)` (piecewise linear, clamped at the ends). */
export function interpIndex(x: number, fp: ArrayLike<number>): number {
  if (x <= 0) return fp[0];
  const last = fp.length - 1;
  if (x >= last) return fp[last];
  const lo = Math.floor(x);
  const w = x - lo;
  return w === 0 ? fp[lo] : fp[lo] + (fp[lo + 1] - fp[lo]) * w;
}

/** Karras et al. (2022) sigmas, rho = 7, from sigmaMax down to sigmaMin (float64). */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, numSteps: number): number[] {
  const rho = 7;
  const minInv = sigmaMin ** (1 / rho), maxInv = sigmaMax ** (1 / rho);
  return numpyLinspace(0, 1, numSteps).map((r) => (maxInv + r * (minInv - maxInv)) ** rho);
}

/**
 * diffusers' `_sigma_to_t`: the fractional training timestep whose log-sigma brackets
 * `log(sigma)`, by linear interpolation in log space (`logSigmas` ascending with t).
 */
export function sigmaToT(sigma: number, logSigmas: ArrayLike<number>): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  // low index = last i with logSigma - logSigmas[i] >= 0 (argmax of the cumsum), clipped.
  let count = 0, lowIdx = 0;
  for (let i = 0; i < logSigmas.length; i++) {
    if (logSigma - logSigmas[i] >= 0) {
      count++;
      lowIdx = i;
    }
  }
  if (count === 0) lowIdx = 0;
  lowIdx = Math.min(lowIdx, logSigmas.length - 2);
  const low = logSigmas[lowIdx], high = logSigmas[lowIdx + 1];
  const w = Math.min(Math.max((low - logSigma) / (low - high), 0), 1);
  return (1 - w) * lowIdx + w * (lowIdx + 1);
}
