/**
 * CPU references of the embedding kernels.
 * @module
 */

/**
 * diffusers `get_timestep_embedding` in float32 steps (each tensor op rounded to float32, sine
 * and cosine of the float32 argument in float64) -> flat `[B, dim]`.
 *
 * @example
 * ```ts
 * const e = timestepEmbeddingCpu([981], 320, { flipSinToCos: true, freqShift: 0 });
 * ```
 */
export function timestepEmbeddingCpu(
  timesteps: readonly number[],
  dim: number,
  options: { flipSinToCos: boolean; freqShift: number; maxPeriod?: number },
): Float32Array {
  const f = Math.fround;
  const half = Math.floor(dim / 2);
  const logPeriod = f(-Math.log(options.maxPeriod ?? 10000));
  const y = new Float32Array(timesteps.length * dim);
  timesteps.forEach((t, b) => {
    for (let j = 0; j < half; j++) {
      const freq = f(Math.exp(f(f(logPeriod * j) / f(half - options.freqShift))));
      const arg = f(f(t) * freq);
      const [first, second] = options.flipSinToCos
        ? [Math.cos(arg), Math.sin(arg)]
        : [Math.sin(arg), Math.cos(arg)];
      y[b * dim + j] = first;
      y[b * dim + half + j] = second;
    }
  });
  return y;
}

/**
 * `token[ids] + position[0..L)` for ids `[B, L]` over tables of width `d`.
 *
 * @example
 * ```ts
 * const h = tokenEmbeddingCpu(ids, 2, tokenTable, positionTable, 768);
 * ```
 */
export function tokenEmbeddingCpu(
  ids: Int32Array,
  batch: number,
  token: Float32Array,
  position: Float32Array,
  d: number,
): Float32Array {
  const len = ids.length / batch;
  const y = new Float32Array(ids.length * d);
  for (let t = 0; t < ids.length; t++) {
    for (let k = 0; k < d; k++) y[t * d + k] = token[ids[t] * d + k] + position[(t % len) * d + k];
  }
  return y;
}

/**
 * `x [B, F, C] + pe[0..F)`.
 *
 * @example
 * ```ts
 * const y = addPositionEncodingCpu(x, [4, 16, 320], pe);
 * ```
 */
export function addPositionEncodingCpu(
  x: Float32Array,
  shape: readonly number[],
  pe: Float32Array,
): Float32Array {
  const fc = shape[1] * shape[2];
  return Float32Array.from(x, (v, i) => v + pe[i % fc]);
}

/**
 * AnimateDiff's sinusoidal position encoding `[maxLen, C]`: pe[p, 2i] = sin(p * w_i),
 * pe[p, 2i + 1] = cos(p * w_i), w_i = exp(2i * -ln(10000) / C).
 *
 * @example
 * ```ts
 * const pe = sinusoidalPositionEncodingCpu(32, 320);
 * ```
 */
export function sinusoidalPositionEncodingCpu(maxLen: number, c: number): Float32Array {
  const pe = new Float32Array(maxLen * c);
  for (let p = 0; p < maxLen; p++) {
    for (let i = 0; 2 * i < c; i++) {
      const w = Math.exp((2 * i * -Math.log(10000)) / c);
      pe[p * c + 2 * i] = Math.sin(p * w);
      if (2 * i + 1 < c) pe[p * c + 2 * i + 1] = Math.cos(p * w);
    }
  }
  return pe;
}

// ---------------------------------------------------------------- backward references

/**
 * Gradients of {@link tokenEmbeddingCpu} given `gy [B, L, d]`: the token table `[vocab, d]` and
 * the position table `[positions, d]`, each row the float64 sum of the tokens that read it.
 *
 * @example
 * ```ts
 * const { token, position } = tokenEmbeddingBackwardCpu(ids, 2, gy, { vocab: 49408, positions: 77, d: 768 });
 * ```
 */
export function tokenEmbeddingBackwardCpu(
  ids: Int32Array,
  batch: number,
  gy: Float32Array,
  tables: { vocab: number; positions: number; d: number },
): { token: Float32Array; position: Float32Array } {
  const { vocab, positions, d } = tables;
  const len = ids.length / batch;
  const token = new Float64Array(vocab * d), position = new Float64Array(positions * d);
  for (let t = 0; t < ids.length; t++) {
    for (let k = 0; k < d; k++) {
      token[ids[t] * d + k] += gy[t * d + k];
      position[(t % len) * d + k] += gy[t * d + k];
    }
  }
  return { token: Float32Array.from(token), position: Float32Array.from(position) };
}

/**
 * Gradients of {@link addPositionEncodingCpu} given `gy` (x's `shape` `[B, F, C]`): x's is gy,
 * pe's (`[maxLen, C]`) the float64 sum of gy over B in rows [0, F), zero below.
 *
 * @example
 * ```ts
 * const { x, pe } = addPositionEncodingBackwardCpu(gy, [4, 16, 320], 32);
 * ```
 */
export function addPositionEncodingBackwardCpu(
  gy: Float32Array,
  shape: readonly number[],
  maxLen: number,
): { x: Float32Array; pe: Float32Array } {
  const [, f, c] = shape;
  const pe = new Float64Array(maxLen * c);
  gy.forEach((g, i) => pe[i % (f * c)] += g);
  return { x: gy.slice(), pe: Float32Array.from(pe) };
}
