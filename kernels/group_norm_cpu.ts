/**
 * CPU reference of {@link groupNorm}: float64 statistics (biased variance) over
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
  const { groups, eps, silu = false, frames = 1 } = options;
  const [n, c] = shape;
  const s = x.length / (n * c);
  const cg = c / groups;
  const y = new Float32Array(x.length);
  for (let b = 0; b < n / frames; b++) {
    for (let g = 0; g < groups; g++) {
      const offsets: number[] = [];
      for (let f = 0; f < frames; f++) offsets.push(((b * frames + f) * c + g * cg) * s);
      const len = cg * s;
      let sum = 0;
      for (const o of offsets) for (let i = 0; i < len; i++) sum += x[o + i];
      const count = frames * len;
      const mean = sum / count;
      let sq = 0;
      for (const o of offsets) {
        for (let i = 0; i < len; i++) {
          const d = x[o + i] - mean;
          sq += d * d;
        }
      }
      const rstd = 1 / Math.sqrt(sq / count + eps);
      for (const o of offsets) {
        for (let i = 0; i < len; i++) {
          const ch = g * cg + Math.floor(i / s);
          let v = (x[o + i] - mean) * rstd * weight[ch] + bias[ch];
          if (silu) v = v / (1 + Math.exp(-v));
          y[o + i] = v;
        }
      }
    }
  }
  return y;
}
