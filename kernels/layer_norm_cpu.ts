/**
 * CPU reference of {@link layerNorm}: float64 mean and biased variance per row of `[..., D]`.
 * @module
 */

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
  const y = new Float32Array(x.length);
  for (let o = 0; o < x.length; o += d) {
    let s = 0;
    for (let i = 0; i < d; i++) s += x[o + i];
    const mean = s / d;
    let q = 0;
    for (let i = 0; i < d; i++) q += (x[o + i] - mean) ** 2;
    const rstd = 1 / Math.sqrt(q / d + options.eps);
    for (let i = 0; i < d; i++) y[o + i] = (x[o + i] - mean) * rstd * weight[i] + bias[i];
  }
  return y;
}
