/**
 * CPU reference of {@link groupNorm} and its backward: float64 statistics (biased variance) over
 * `frames x (C / groups) x S` elements per group, affine, optional SiLU.
 * @module
 */

/** Options of {@link groupNormCpu} (same meaning as the GPU launcher's). */
export interface GroupNormCpuOptions {
  groups: number;
  eps: number;
  silu?: boolean;
  frames?: number;
}

/**
 * GroupNorm of `x [N, C, ...spatial]` given as a flat array and its shape.
 *
 * @example
 * ```ts
 * const y = groupNormCpu(x, [2, 64, 8, 8], w, b, { groups: 32, eps: 1e-5 });
 * ```
 */
export function groupNormCpu(
  x: Float32Array,
  shape: readonly number[],
  weight: Float32Array,
  bias: Float32Array,
  options: GroupNormCpuOptions,
): Float32Array {
  return Float32Array.from(groupNormCpu64(x, shape, weight, bias, options));
}

/**
 * {@link groupNormCpu} in float64 throughout (inputs of any precision, float64 output), for
 * finite-difference gradient checks.
 *
 * @example
 * ```ts
 * const y = groupNormCpu64(x64, [2, 8, 3, 3], w, b, { groups: 4, eps: 1e-5, frames: 2 });
 * ```
 */
export function groupNormCpu64(
  x: ArrayLike<number>,
  shape: readonly number[],
  weight: ArrayLike<number>,
  bias: ArrayLike<number>,
  options: GroupNormCpuOptions,
): Float64Array {
  const { silu = false } = options;
  const y = new Float64Array(x.length);
  forEachGroup(x, shape, options, (idx, ch, mean, rstd) => {
    for (let k = 0; k < idx.length; k++) {
      const v = (x[idx[k]] - mean) * rstd * weight[ch[k]] + bias[ch[k]];
      y[idx[k]] = silu ? v / (1 + Math.exp(-v)) : v;
    }
  });
  return y;
}

/**
 * Calls `fn` per statistics group with the group's element indices, their channels and the
 * group's float64 mean and rstd.
 */
function forEachGroup(
  x: ArrayLike<number>,
  shape: readonly number[],
  options: GroupNormCpuOptions,
  fn: (idx: number[], ch: number[], mean: number, rstd: number) => void,
): void {
  const { groups, eps, frames = 1 } = options;
  const [n, c] = shape;
  const s = x.length / (n * c);
  const cg = c / groups;
  for (let b = 0; b < n / frames; b++) {
    for (let g = 0; g < groups; g++) {
      const idx: number[] = [], ch: number[] = [];
      for (let f = 0; f < frames; f++) {
        const o = ((b * frames + f) * c + g * cg) * s;
        for (let i = 0; i < cg * s; i++) {
          idx.push(o + i);
          ch.push(g * cg + Math.floor(i / s));
        }
      }
      let sum = 0;
      for (const i of idx) sum += x[i];
      const mean = sum / idx.length;
      let sq = 0;
      for (const i of idx) sq += (x[i] - mean) ** 2;
      fn(idx, ch, mean, 1 / Math.sqrt(sq / idx.length + eps));
    }
  }
}

/** What {@link groupNormBackwardCpu} differentiates: the forward's inputs and options. */
export interface GroupNormBackwardCpuOptions extends GroupNormCpuOptions {
  x: ArrayLike<number>;
  shape: readonly number[];
  weight: ArrayLike<number>;
  bias: ArrayLike<number>;
}

/** Gradients of a norm's inputs (float64). */
export interface NormGradientsCpu {
  dx: Float64Array;
  dweight: Float64Array;
  dbias: Float64Array;
}

/**
 * Backward of {@link groupNormCpu} in float64: with xhat = (x - mean) * rstd, z = xhat * w + b,
 * y = silu(z) or z, and dz = gy * dy/dz: dbias_c = sum dz, dweight_c = sum dz * xhat (over batch,
 * frames and space), dx = rstd * (dz * w - mean(dz * w) - xhat * mean(dz * w * xhat)) with the
 * means over each statistics group.
 *
 * @example
 * ```ts
 * const { dx, dweight, dbias } = groupNormBackwardCpu(gy, {
 *   x, shape: [4, 8, 3, 3], weight: w, bias: b, groups: 4, eps: 1e-5, frames: 2, silu: true,
 * });
 * ```
 */
export function groupNormBackwardCpu(
  gy: ArrayLike<number>,
  options: GroupNormBackwardCpuOptions,
): NormGradientsCpu {
  const { x, shape, weight, bias, silu = false } = options;
  const c = shape[1];
  const dx = new Float64Array(x.length);
  const dweight = new Float64Array(c), dbias = new Float64Array(c);
  forEachGroup(x, shape, options, (idx, ch, mean, rstd) => {
    const xh = idx.map((i) => (x[i] - mean) * rstd);
    const dz = idx.map((i, k) => {
      const z = xh[k] * weight[ch[k]] + bias[ch[k]];
      return gy[i] * (silu ? siluGrad(z) : 1);
    });
    let a = 0, b = 0;
    for (let k = 0; k < idx.length; k++) {
      dbias[ch[k]] += dz[k];
      dweight[ch[k]] += dz[k] * xh[k];
      a += dz[k] * weight[ch[k]];
      b += dz[k] * weight[ch[k]] * xh[k];
    }
    a /= idx.length;
    b /= idx.length;
    for (let k = 0; k < idx.length; k++) {
      dx[idx[k]] = rstd * (dz[k] * weight[ch[k]] - a - xh[k] * b);
    }
  });
  return { dx, dweight, dbias };
}

/** d silu(z) / dz = s (1 + z (1 - s)) with s = sigmoid(z). */
function siluGrad(z: number): number {
  const s = 1 / (1 + Math.exp(-z));
  return s * (1 + z * (1 - s));
}
