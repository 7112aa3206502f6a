/**
 * CPU references of kernels/optimizer.ts (float64 math): torch's `clip_grad_norm_` and one
 * `torch.optim.AdamW` step.
 * @module
 */

import type { AdamWOptions } from "./optimizer.ts";

/**
 * The global L2 norm of `grads` and clip_grad_norm_'s factor `min(1, maxNorm / (norm + 1e-6))`
 * (1 when maxNorm <= 0).
 *
 * @example
 * ```ts
 * gradNormCpu([Float32Array.of(3, 4)], 1); // { norm: 5, coef: ~0.2 }
 * ```
 */
export function gradNormCpu(
  grads: readonly Float32Array[],
  maxNorm = 0,
): { norm: number; coef: number } {
  let s = 0;
  for (const g of grads) for (const v of g) s += v * v;
  const norm = Math.sqrt(s);
  return { norm, coef: maxNorm > 0 ? Math.min(1, maxNorm / (norm + 1e-6)) : 1 };
}

/**
 * One AdamW step in place on `param`, `m`, `v` with `grad * coef`.
 *
 * @example
 * ```ts
 * adamwCpu({ param, grad, m, v }, 1, { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01, step: 1 });
 * ```
 */
export function adamwCpu(
  t: { param: Float32Array; grad: Float32Array; m: Float32Array; v: Float32Array },
  coef: number,
  o: AdamWOptions,
): void {
  const [b1, b2] = o.betas;
  const bc1 = 1 - b1 ** o.step, bc2Sqrt = Math.sqrt(1 - b2 ** o.step);
  for (let i = 0; i < t.param.length; i++) {
    const g = t.grad[i] * coef;
    const w = t.param[i] * (1 - o.lr * o.weightDecay);
    const m = b1 * t.m[i] + (1 - b1) * g;
    const v = b2 * t.v[i] + (1 - b2) * g * g;
    t.m[i] = m;
    t.v[i] = v;
    t.param[i] = w - (o.lr / bc1) * m / (Math.sqrt(v) / bc2Sqrt + o.eps);
  }
}
