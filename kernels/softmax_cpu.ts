/**
 * CPU reference of {@link softmax} and its backward: max-subtracted, float64 sums, per row of
 * `[..., D]`.
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
  return Float32Array.from(softmaxCpu64(x, d));
}

/**
 * {@link softmaxCpu} in float64 throughout, for finite-difference gradient checks.
 *
 * @example
 * ```ts
 * const p = softmaxCpu64(x64, 7);
 * ```
 */
export function softmaxCpu64(x: ArrayLike<number>, d: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let o = 0; o < x.length; o += d) {
    let m = -Infinity;
    for (let i = 0; i < d; i++) m = Math.max(m, x[o + i]);
    let s = 0;
    for (let i = 0; i < d; i++) s += Math.exp(x[o + i] - m);
    for (let i = 0; i < d; i++) y[o + i] = Math.exp(x[o + i] - m) / s;
  }
  return y;
}

/**
 * Backward of softmax over the last dim `d` from its output `y`, in float64:
 * dx = y * (gy - sum(gy * y)) per row.
 *
 * @example
 * ```ts
 * const dx = softmaxBackwardCpu(gy, { y: softmaxCpu(x, 7), d: 7 });
 * ```
 */
export function softmaxBackwardCpu(
  gy: ArrayLike<number>,
  options: { y: ArrayLike<number>; d: number },
): Float64Array {
  const { y, d } = options;
  const dx = new Float64Array(y.length);
  for (let o = 0; o < y.length; o += d) {
    let s = 0;
    for (let i = 0; i < d; i++) s += gy[o + i] * y[o + i];
    for (let i = 0; i < d; i++) dx[o + i] = y[o + i] * (gy[o + i] - s);
  }
  return dx;
}
