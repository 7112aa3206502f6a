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

// ---------------------------------------------------------------- backward references

/** Row-major multi-index walk: calls `fn(i, ia)` with x's flat index of y's element i. */
function broadcastIndex(
  shape: readonly number[],
  strides: readonly number[],
  fn: (i: number, ix: number) => void,
): void {
  const n = shape.reduce((x, y) => x * y, 1);
  for (let i = 0; i < n; i++) {
    let r = i, ix = 0;
    for (let k = shape.length - 1; k >= 0; k--) {
      ix += (r % shape[k]) * strides[k];
      r = Math.floor(r / shape[k]);
    }
    fn(i, ix);
  }
}

/**
 * Sums `x` (shape `xShape`) over the dims along which `shape` was broadcast to it (float64
 * accumulation): the gradient of a broadcast operand.
 *
 * @example
 * ```ts
 * const gb = sumToCpu(gy, [2, 3], [3]); // column sums -> [3]
 * ```
 */
export function sumToCpu(
  x: Float32Array,
  xShape: readonly number[],
  shape: readonly number[],
): Float32Array {
  const acc = new Float64Array(shape.reduce((a, b) => a * b, 1));
  broadcastIndex(xShape, broadcastStrides(shape, xShape), (i, o) => acc[o] += x[i]);
  return Float32Array.from(acc);
}

/**
 * Gradients of `a + b` or `a * b` (numpy broadcasting) given `gy`, the gradient of the output.
 *
 * @example
 * ```ts
 * const { ga, gb } = binaryBackwardCpu("mul", a, [2, 3], b, [3], gy);
 * ```
 */
export function binaryBackwardCpu(
  op: "add" | "mul",
  a: Float32Array,
  aShape: readonly number[],
  b: Float32Array,
  bShape: readonly number[],
  gy: Float32Array,
): { ga: Float32Array; gb: Float32Array } {
  const shape = broadcastShapes(op, aShape, bShape);
  const sa = broadcastStrides(aShape, shape), sb = broadcastStrides(bShape, shape);
  const ga = new Float64Array(a.length), gb = new Float64Array(b.length);
  // Each output's index into b, then one walk pairing it with a's.
  const ib = new Int32Array(gy.length);
  broadcastIndex(shape, sb, (i, j) => ib[i] = j);
  broadcastIndex(shape, sa, (i, ia) => {
    ga[ia] += op === "add" ? gy[i] : gy[i] * b[ib[i]];
    gb[ib[i]] += op === "add" ? gy[i] : gy[i] * a[ia];
  });
  return { ga: Float32Array.from(ga), gb: Float32Array.from(gb) };
}

/**
 * The derivative of an activation at `v` in float64.
 *
 * @example
 * ```ts
 * activationDerivativeCpu(0, "gelu"); // 0.5
 * ```
 */
export function activationDerivativeCpu(v: number, op: UnaryOp): number {
  const sigmoid = (u: number) => 1 / (1 + Math.exp(-u));
  switch (op) {
    case "silu": {
      const s = sigmoid(v);
      return s * (1 + v * (1 - s));
    }
    case "quick_gelu": {
      const s = sigmoid(1.702 * v);
      return s * (1 + 1.702 * v * (1 - s));
    }
    case "gelu":
      return 0.5 * (1 + erfCpu(v / Math.SQRT2)) + v * Math.exp(-0.5 * v * v) /
          Math.sqrt(2 * Math.PI);
  }
}

/**
 * Gradient of {@link unaryCpu}: `gy * op'(x)`.
 *
 * @example
 * ```ts
 * const gx = unaryBackwardCpu(x, gy, "silu");
 * ```
 */
export function unaryBackwardCpu(x: Float32Array, gy: Float32Array, op: UnaryOp): Float32Array {
  return Float32Array.from(x, (v, i) => gy[i] * activationDerivativeCpu(v, op));
}

/**
 * Gradient of {@link gegluCpu} for rows of width `2 * half`: with `a, b = x[:, :half],
 * x[:, half:]`, `[gy * gelu(b), gy * a * gelu'(b)]`.
 *
 * @example
 * ```ts
 * const gx = gegluBackwardCpu(x, gy, 1280);
 * ```
 */
export function gegluBackwardCpu(x: Float32Array, gy: Float32Array, half: number): Float32Array {
  const gx = new Float32Array(x.length);
  for (let r = 0; r < gy.length / half; r++) {
    for (let j = 0; j < half; j++) {
      const o = r * 2 * half + j, a = x[o], b = x[o + half], g = gy[r * half + j];
      gx[o] = g * activationCpu(b, "gelu");
      gx[o + half] = g * a * activationDerivativeCpu(b, "gelu");
    }
  }
  return gx;
}
