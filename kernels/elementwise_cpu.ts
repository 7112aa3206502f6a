/**
 * CPU references of the elementwise kernels (float64 math, results rounded to f32).
 * @module
 */

import { broadcastShapes, broadcastStrides, type UnaryOp } from "./elementwise.ts";

/**
 * `a + b` or `a * b` with numpy broadcasting; returns the data and the output shape.
 *
 * @example
 * ```ts
 * const { data, shape } = binaryCpu("add", a, [2, 3], b, [3]);
 * ```
 */
export function binaryCpu(
  op: "add" | "mul",
  a: Float32Array,
  aShape: readonly number[],
  b: Float32Array,
  bShape: readonly number[],
): { data: Float32Array; shape: number[] } {
  const shape = broadcastShapes(op, aShape, bShape);
  const sa = broadcastStrides(aShape, shape), sb = broadcastStrides(bShape, shape);
  const n = shape.reduce((x, y) => x * y, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let r = i, ia = 0, ib = 0;
    for (let k = shape.length - 1; k >= 0; k--) {
      const c = r % shape[k];
      r = Math.floor(r / shape[k]);
      ia += c * sa[k];
      ib += c * sb[k];
    }
    data[i] = op === "add" ? a[ia] + b[ib] : a[ia] * b[ib];
  }
  return { data, shape };
}

/**
 * erf in float64 (power series below 3, continued fraction for erfc above; |error| < 1e-14).
 *
 * @example
 * ```ts
 * erfCpu(1); // 0.8427007929497149
 * ```
 */
export function erfCpu(x: number): number {
  const ax = Math.abs(x);
  if (ax < 3) {
    let term = ax, sum = ax;
    for (let n = 1; n < 200; n++) {
      term *= -ax * ax / n;
      const t = term / (2 * n + 1);
      sum += t;
      if (Math.abs(t) < 1e-17) break;
    }
    return Math.sign(x) * sum * 2 / Math.sqrt(Math.PI);
  }
  let cf = 0;
  for (let k = 80; k >= 1; k--) cf = (k / 2) / (ax + cf);
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + cf);
  return Math.sign(x) * (1 - erfc);
}

/** One activation value in float64. */
export function activationCpu(v: number, op: UnaryOp): number {
  switch (op) {
    case "silu":
      return v / (1 + Math.exp(-v));
    case "quick_gelu":
      return v / (1 + Math.exp(-1.702 * v));
    case "gelu":
      return 0.5 * v * (1 + erfCpu(v / Math.SQRT2));
  }
}

/**
 * An activation over every element.
 *
 * @example
 * ```ts
 * const y = unaryCpu(x, "gelu");
 * ```
 */
export function unaryCpu(x: Float32Array, op: UnaryOp): Float32Array {
  return Float32Array.from(x, (v) => activationCpu(v, op));
}

/**
 * GEGLU of rows of width `2 * half`: `x[:, :half] * gelu(x[:, half:])`.
 *
 * @example
 * ```ts
 * const y = gegluCpu(x, 1280);
 * ```
 */
export function gegluCpu(x: Float32Array, half: number): Float32Array {
  const rows = x.length / (2 * half);
  const y = new Float32Array(rows * half);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < half; j++) {
      y[r * half + j] = x[r * 2 * half + j] * activationCpu(x[r * 2 * half + half + j], "gelu");
    }
  }
  return y;
}

/**
 * `sum_i c_i * x_i`.
 *
 * @example
 * ```ts
 * const y = linearCombinationCpu([{ c: 0.5, x: a }, { c: 2, x: b }]);
 * ```
 */
export function linearCombinationCpu(
  terms: readonly { c: number; x: Float32Array }[],
): Float32Array {
  const y = new Float32Array(terms[0].x.length);
  for (let i = 0; i < y.length; i++) {
    let s = 0;
    for (const t of terms) s += t.c * t.x[i];
    y[i] = s;
  }
  return y;
}

/**
 * Classifier-free guidance on `pred = cat([uncond, cond])` (flat, first half uncond).
 *
 * @example
 * ```ts
 * const eps = cfgCombineCpu(pred, 7.5);
 * ```
 */
export function cfgCombineCpu(pred: Float32Array, guidance: number): Float32Array {
  const n = pred.length / 2;
  return Float32Array.from({ length: n }, (_, i) => pred[i] + guidance * (pred[n + i] - pred[i]));
}
