/**
 * CPU reference of {@link softmax}: max-subtracted, float64 sums, per row of `[..., D]`.
 * @module
 */

/**
 * Softmax over the last dim `d` of a flat array.
 *
 * @example
 * ```ts
 * const p = softmaxCpu(scores, 77);
 * ```
 */
export function softmaxCpu(x: Float32Array, d: number): Float32Array {
  const y = new Float32Array(x.length);
  for (let o = 0; o < x.length; o += d) {
    let m = -Infinity;
    for (let i = 0; i < d; i++) m = Math.max(m, x[o + i]);
    let s = 0;
    for (let i = 0; i < d; i++) s += Math.exp(x[o + i] - m);
    for (let i = 0; i < d; i++) y[o + i] = Math.exp(x[o + i] - m) / s;
  }
  return y;
}
