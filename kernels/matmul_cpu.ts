/**
 * CPU references of matmul / linear (plain TypeScript over Float32Array, float64 accumulation),
 * used by the kernel tests. Same semantics as kernels/matmul.ts:
 * `out[b] = act(alpha * a[b] @ op(bmat[b]) + bias) + residual`.
 * @module
 */

import type { Activation } from "./matmul.ts";

/** erf(x) via the Numerical Recipes erfc Chebyshev fit (fractional error < 1.2e-7). */
export function erf(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const erfc = t * Math.exp(
    -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
                  t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
                                  t * (-0.82215223 + t * 0.17087277)))))))),
  );
  return x >= 0 ? 1 - erfc : erfc - 1;
}

/** Applies an epilogue activation to one value (gelu = erf GELU, quick_gelu = x*sigmoid(1.702x)). */
export function activate(x: number, activation: Activation): number {
  switch (activation) {
    case "none":
      return x;
    case "silu":
      return x / (1 + Math.exp(-x));
    case "gelu":
      return 0.5 * x * (1 + erf(x / Math.SQRT2));
    case "quick_gelu":
      return x / (1 + Math.exp(-1.702 * x));
  }
}

/** Options of {@link matmulCpu}. */
export interface MatmulCpuOptions {
  /** Shape of `a`: [..., M, K]. */
  aShape: readonly number[];
  /** Shape of `b`: [K, N] / [N, K] (transposeB), or with a's leading batch dims. */
  bShape: readonly number[];
  transposeB?: boolean;
  bias?: Float32Array;
  activation?: Activation;
  /** Same shape as the output [..., M, N]. */
  residual?: Float32Array;
  alpha?: number;
}

/**
 * Reference batched matmul. Returns the output [..., M, N] (a's leading dims) as float32.
 *
 * @example
 * ```ts
 * const out = matmulCpu(new Float32Array([1, 2]), new Float32Array([3, 4]), {
 *   aShape: [1, 2], bShape: [2, 1],
 * }); // [11]
 * ```
 */
export function matmulCpu(
  a: Float32Array,
  b: Float32Array,
  options: MatmulCpuOptions,
): Float32Array {
  const { aShape, bShape, transposeB = false, bias, residual } = options;
  const activation = options.activation ?? "none";
  const alpha = options.alpha ?? 1;
  if (aShape.length < 2 || bShape.length < 2) {
    throw new Error(
      `matmulCpu: expected a [..., M, K] and b of rank >= 2, got a [${aShape}], b [${bShape}]`,
    );
  }
  const M = aShape[aShape.length - 2], K = aShape[aShape.length - 1];
  const batch = aShape.slice(0, -2).reduce((x, y) => x * y, 1);
  const bRows = bShape[bShape.length - 2], bCols = bShape[bShape.length - 1];
  const N = transposeB ? bRows : bCols;
  const kb = transposeB ? bCols : bRows;
  if (kb !== K) throw new Error(`matmulCpu: K mismatch, a [${aShape}] vs b [${bShape}]`);
  const bBatched = bShape.length > 2;
  const out = new Float32Array(batch * M * N);
  const col = new Float64Array(K);
  for (let bi = 0; bi < batch; bi++) {
    const aOff = bi * M * K, bOff = bBatched ? bi * K * N : 0, oOff = bi * M * N;
    for (let n = 0; n < N; n++) {
      for (let k = 0; k < K; k++) col[k] = transposeB ? b[bOff + n * K + k] : b[bOff + k * N + n];
      for (let m = 0; m < M; m++) {
        let s = 0;
        const row = aOff + m * K;
        for (let k = 0; k < K; k++) s += a[row + k] * col[k];
        let v = alpha * s + (bias ? bias[n] : 0);
        v = activate(v, activation);
        const o = oOff + m * N + n;
        if (residual) v += residual[o];
        out[o] = v;
      }
    }
  }
  return out;
}

/** Options of {@link linearCpu}. */
export interface LinearCpuOptions {
  /** Shape of `x`: [..., K]. */
  xShape: readonly number[];
  /** Output features N (weight is [N, K]). */
  outFeatures: number;
  bias?: Float32Array;
  activation?: Activation;
  residual?: Float32Array;
}

/**
 * Reference PyTorch Linear: x [..., K] @ weight[N, K]^T + bias -> [..., N].
 *
 * @example
 * ```ts
 * const y = linearCpu(new Float32Array([1, 2]), new Float32Array([3, 4]), {
 *   xShape: [2], outFeatures: 1,
 * }); // [11]
 * ```
 */
export function linearCpu(
  x: Float32Array,
  weight: Float32Array,
  options: LinearCpuOptions,
): Float32Array {
  const K = options.xShape[options.xShape.length - 1];
  const rows = x.length / K;
  return matmulCpu(x, weight, {
    aShape: [rows, K],
    bShape: [options.outFeatures, K],
    transposeB: true,
    bias: options.bias,
    activation: options.activation,
    residual: options.residual,
  });
}

/** Options of {@link matmulBackwardCpu}. */
export interface MatmulBackwardCpuOptions {
  /** Shape of `a`: [..., M, K]. */
  aShape: readonly number[];
  /** Shape of `b`: [K, N] / [N, K] (transposeB), or with a's leading batch dims. */
  bShape: readonly number[];
  transposeB?: boolean;
  alpha?: number;
  /** Also return the bias gradient (column sums of gy). */
  bias?: boolean;
}

/** Gradients of `out = alpha * a @ op(b) + bias` (activation and residual are separate ops). */
export interface MatmulGrads {
  /** dL/da, a's shape. */
  da: Float32Array;
  /** dL/db, b's shape (summed over the batch when b is shared). */
  db: Float32Array;
  /** dL/dbias [N], when asked for. */
  dbias?: Float32Array;
}

/**
 * Reference backward of `out[b] = alpha * a[b] @ op(bmat[b]) + bias` for the gradient `gy` of
 * out ([..., M, N]), float64 accumulation: `da = alpha gy op(b)^T`, `db = alpha a^T gy` (or its
 * transpose with transposeB; summed over batches when b is shared), `dbias = sum of gy rows`.
 *
 * @example
 * ```ts
 * const { da, db } = matmulBackwardCpu(a, b, gy, { aShape: [2, 3], bShape: [3, 4] });
 * ```
 */
export function matmulBackwardCpu(
  a: Float32Array,
  b: Float32Array,
  gy: Float32Array,
  options: MatmulBackwardCpuOptions,
): MatmulGrads {
  const { aShape, bShape, transposeB = false, alpha = 1 } = options;
  const M = aShape[aShape.length - 2], K = aShape[aShape.length - 1];
  const batch = aShape.slice(0, -2).reduce((x, y) => x * y, 1);
  const N = transposeB ? bShape[bShape.length - 2] : bShape[bShape.length - 1];
  const bBatched = bShape.length > 2;
  const bIdx = (bi: number, k: number, n: number) =>
    (bBatched ? bi * K * N : 0) + (transposeB ? n * K + k : k * N + n);
  const da = new Float32Array(a.length);
  const db64 = new Float64Array(b.length);
  for (let bi = 0; bi < batch; bi++) {
    for (let m = 0; m < M; m++) {
      const g = bi * M * N + m * N, ar = bi * M * K + m * K;
      for (let k = 0; k < K; k++) {
        let s = 0;
        for (let n = 0; n < N; n++) {
          s += gy[g + n] * b[bIdx(bi, k, n)];
          db64[bIdx(bi, k, n)] += alpha * a[ar + k] * gy[g + n];
        }
        da[ar + k] = alpha * s;
      }
    }
  }
  const out: MatmulGrads = { da, db: Float32Array.from(db64) };
  if (options.bias) out.dbias = columnSums(gy, N);
  return out;
}

/** Sums of the rows of a row-major [rows, n] matrix (float64), as float32 [n]. */
function columnSums(g: Float32Array, n: number): Float32Array {
  const s = new Float64Array(n);
  for (let i = 0; i < g.length; i++) s[i % n] += g[i];
  return Float32Array.from(s);
}

/** Gradients of a Linear. */
export interface LinearGrads {
  /** dL/dx, x's shape. */
  dx: Float32Array;
  /** dL/dweight [N, K]. */
  dw: Float32Array;
  /** dL/dbias [N], when asked for. */
  db?: Float32Array;
}

/**
 * Reference backward of PyTorch Linear `y = x @ weight^T + bias` for the gradient `gy`
 * [..., N]: `dx = gy @ weight`, `dw = gy^T @ x`, `db = sum of gy rows`.
 *
 * @example
 * ```ts
 * const { dx, dw, db } = linearBackwardCpu(x, w, gy, { xShape: [5, 8], outFeatures: 3, bias: true });
 * ```
 */
export function linearBackwardCpu(
  x: Float32Array,
  weight: Float32Array,
  gy: Float32Array,
  options: { xShape: readonly number[]; outFeatures: number; bias?: boolean },
): LinearGrads {
  const K = options.xShape[options.xShape.length - 1];
  const g = matmulBackwardCpu(x, weight, gy, {
    aShape: [x.length / K, K],
    bShape: [options.outFeatures, K],
    transposeB: true,
    bias: options.bias,
  });
  return { dx: g.da, dw: g.db, db: g.dbias };
}
