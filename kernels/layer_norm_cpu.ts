/**
 * CPU reference of {@link layerNorm} and its backward: float64 mean and biased variance per row of
 * `[..., D]`.
 * @module
 */

import type { NormGradientsCpu } from "./group_norm_cpu.ts";

/**
 * LayerNorm over the last dim `d` of a flat array.
 *
 * @example
 * ```ts
 * const y = layerNormCpu(x, 768, w, b, { eps: 1e-5 });
 * ```
 */
export function layerNormCpu(
  x: Float32Array,
  d: number,
  weight: Float32Array,
  bias: Float32Array,
  options: { eps: number },
): Float32Array {
  return Float32Array.from(layerNormCpu64(x, d, weight, bias, options));
}

/**
 * {@link layerNormCpu} in float64 throughout, for finite-difference gradient checks.
 *
 * @example
 * ```ts
 * const y = layerNormCpu64(x64, 7, w, b, { eps: 1e-5 });
 * ```
 */
export function layerNormCpu64(
  x: ArrayLike<number>,
  d: number,
  weight: ArrayLike<number>,
  bias: ArrayLike<number>,
  options: { eps: number },
): Float64Array {
  const y = new Float64Array(x.length);
  forEachRow(x, d, options.eps, (o, mean, rstd) => {
    for (let i = 0; i < d; i++) y[o + i] = (x[o + i] - mean) * rstd * weight[i] + bias[i];
  });
  return y;
}

/** Calls `fn` per row with its offset and float64 mean and rstd. */
function forEachRow(
  x: ArrayLike<number>,
  d: number,
  eps: number,
  fn: (o: number, mean: number, rstd: number) => void,
): void {
  for (let o = 0; o < x.length; o += d) {
    let s = 0;
    for (let i = 0; i < d; i++) s += x[o + i];
    const mean = s / d;
    let q = 0;
    for (let i = 0; i < d; i++) q += (x[o + i] - mean) ** 2;
    fn(o, mean, 1 / Math.sqrt(q / d + eps));
  }
}

/** What {@link layerNormBackwardCpu} differentiates: the forward's inputs and eps. */
export interface LayerNormBackwardCpuOptions {
  x: ArrayLike<number>;
  /** The normalised (last) dim. */
  d: number;
  weight: ArrayLike<number>;
  bias: ArrayLike<number>;
  eps: number;
}

/**
 * Backward of {@link layerNormCpu} in float64: with xhat = (x - mean) * rstd per row,
 * dbias = sum over rows of gy, dweight = sum gy * xhat, and
 * dx = rstd * (gy * w - mean(gy * w) - xhat * mean(gy * w * xhat)) with the means over the row.
 *
 * @example
 * ```ts
 * const { dx, dweight, dbias } = layerNormBackwardCpu(gy, { x, d: 7, weight: w, bias: b, eps: 1e-5 });
 * ```
 */
export function layerNormBackwardCpu(
  gy: ArrayLike<number>,
  options: LayerNormBackwardCpuOptions,
): NormGradientsCpu {
  const { x, d, weight } = options;
  const dx = new Float64Array(x.length);
  const dweight = new Float64Array(d), dbias = new Float64Array(d);
  forEachRow(x, d, options.eps, (o, mean, rstd) => {
    let a = 0, b = 0;
    for (let i = 0; i < d; i++) {
      const xh = (x[o + i] - mean) * rstd;
      dbias[i] += gy[o + i];
      dweight[i] += gy[o + i] * xh;
      a += gy[o + i] * weight[i];
      b += gy[o + i] * weight[i] * xh;
    }
    for (let i = 0; i < d; i++) {
      const xh = (x[o + i] - mean) * rstd;
      dx[o + i] = rstd * (gy[o + i] * weight[i] - a / d - xh * (b / d));
    }
  });
  return { dx, dweight, dbias };
}
