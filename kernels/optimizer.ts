/**
 * The optimiser's kernels: the global L2 norm of many gradient tensors with
 * `torch.nn.utils.clip_grad_norm_`'s clip coefficient, computed on the GPU without a readback,
 * and the AdamW update (torch semantics: decoupled weight decay, bias-corrected moments) applied
 * in place to f32 master weights and moments, with the clip coefficient (and an optional loss
 * scale) read from the GPU.
 * @module
 */

import type { Gpu } from "./gpu/device.ts";
import { defineKernel, grid1d, Params } from "./gpu/kernel.ts";
import { fmtShape, type Tensor } from "./gpu/tensor.ts";
import { bindingsWgsl, launch1d, MAIN_1D_WGSL, mainPerGroupWgsl, prelude } from "./wgsl.ts";

/** Threads per workgroup of the reductions; also elements per partial sum pass. */
const WG = 256;
/** Elements each thread of the partial sum-of-squares pass reads. */
const PER_THREAD = 16;

const sumSquaresKernel = defineKernel("sum_squares", ({ dtype }) => /* wgsl */ `
// sum_squares: 1 x [n] (storage dtype), 2 partials [slots] f32: partials[p.slot + wg] =
// sum of x^2 over the WG * PER_THREAD elements of workgroup wg.
${prelude(dtype, { wg: WG, reductions: true })}
struct Params { n: u32, slot: u32 }
${bindingsWgsl(["x: array<T>", "partials: array<f32>"])}

${mainPerGroupWgsl("g", `((p.n + ${WG * PER_THREAD - 1}u) / ${WG * PER_THREAD}u)`)}
  let base = g * ${WG * PER_THREAD}u;
  var s = 0.0;
  for (var j = 0u; j < ${PER_THREAD}u; j++) {
    let i = base + j * WG + lid;
    if (i < p.n) { let v = f32(x[i]); s += v * v; }
  }
  let total = wg_sum(s, lid);
  if (lid == 0u) { partials[p.slot + g] = total; }
}`);

const normFinishKernel = defineKernel("grad_norm_finish", ({ dtype }) => /* wgsl */ `
// grad_norm_finish: 1 partials [n] f32, 2 out [2] f32 = (norm, clip coefficient). One workgroup.
// norm = sqrt(sum partials) / p.scale (the loss scale of mixed precision; 1 otherwise);
// coef = min(1, max_norm / (norm + 1e-6)) as clip_grad_norm_ (1 when max_norm <= 0), and
// divided by the loss scale so that the update reads unscaled gradients.
${prelude(dtype, { wg: WG, reductions: true })}
struct Params { n: u32, max_norm: f32, scale: f32 }
${bindingsWgsl(["partials: array<f32>", "out: array<f32>"])}

${mainPerGroupWgsl("g", "1u")}
  var s = 0.0;
  for (var i = lid; i < p.n; i += WG) { s += partials[i]; }
  let total = wg_sum(s, lid);
  if (lid == 0u) {
    let norm = sqrt(total) / p.scale;
    var coef = 1.0;
    if (p.max_norm > 0.0) { coef = min(1.0, p.max_norm / (norm + 1e-6)); }
    out[0] = norm;
    out[1] = coef / p.scale;
  }
}`);

/** AdamW's compile-time choice: also write the updated weight to a storage-dtype working copy. */
interface AdamWVariant {
  working: boolean;
}

const adamwKernel = defineKernel<AdamWVariant>("adamw", {
  key: (v) => (v.working ? "w" : "p"),
  source: ({ dtype, variant }) => /* wgsl */ `
// adamw: 1 grad [n] (storage dtype), 2 coef [2] f32 (norm, gradient factor), 3 param [n] f32,
// 4 m [n] f32, 5 v [n] f32 — param, m and v updated in place (torch.optim.AdamW, foreach off;
// the scalar factors are computed in float64 on the host and rounded once, as torch does)${
    variant.working
      ? ";\n// 6 working [n] (storage dtype) = the updated param, rounded (mixed precision)"
      : ""
  }:
// g *= coef; p *= 1 - lr * wd; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps).
${prelude(dtype)}
struct Params {
  n: u32, lr: f32, beta1: f32, beta2: f32, one_minus_beta1: f32, one_minus_beta2: f32, eps: f32,
  lr_decay: f32, step_size: f32, bc2_sqrt: f32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grad: array<T>;
@group(0) @binding(2) var<storage, read> coef: array<f32>;
@group(0) @binding(3) var<storage, read_write> param: array<f32>;
@group(0) @binding(4) var<storage, read_write> m: array<f32>;
@group(0) @binding(5) var<storage, read_write> v: array<f32>;
${variant.working ? "@group(0) @binding(6) var<storage, read_write> working: array<T>;" : ""}

${MAIN_1D_WGSL}
  let g = f32(grad[i]) * coef[1];
  let w = param[i] * p.lr_decay;
  let mi = p.beta1 * m[i] + p.one_minus_beta1 * g;
  let vi = p.beta2 * v[i] + p.one_minus_beta2 * g * g;
  m[i] = mi;
  v[i] = vi;
  let updated = w - p.step_size * mi / (sqrt(vi) / p.bc2_sqrt + p.eps);
  param[i] = updated;
  ${variant.working ? "working[i] = T(updated);" : ""}
}`,
});

/** Options of {@link gradNorm}. */
export interface GradNormOptions {
  /** Clip to this global norm (as `clip_grad_norm_`'s max_norm); 0 or absent: no clipping. */
  maxNorm?: number;
  /** The loss scale the gradients carry (mixed precision); default 1. */
  lossScale?: number;
}

/**
 * The global L2 norm of `grads` and the factor the update multiplies each gradient by, as a new
 * f32 tensor [2] = (norm, min(1, maxNorm / (norm + 1e-6)) / lossScale), computed on the GPU.
 *
 * @example
 * ```ts
 * const stats = gradNorm(gpu, [...grads.values()], { maxNorm: 1 });
 * const [norm] = await gpu.read(stats);
 * ```
 */
export function gradNorm(
  gpu: Gpu,
  grads: readonly Tensor[],
  options: GradNormOptions = {},
): Tensor {
  const chunk = WG * PER_THREAD;
  const slots = grads.reduce((s, g) => s + Math.ceil(g.size / chunk), 0);
  const partials = gpu.empty([Math.max(1, slots)], "f32", "grad_norm partials");
  let slot = 0;
  for (const g of grads) {
    const groups = Math.ceil(g.size / chunk);
    if (groups === 0) continue;
    gpu.dispatch(sumSquaresKernel, {
      dtype: g.dtype,
      params: new Params().u32(g.size).u32(slot),
      bindings: [g, partials],
      groups: grid1d(groups),
    });
    slot += groups;
  }
  const out = gpu.empty([2], "f32", "grad_norm");
  gpu.dispatch(normFinishKernel, {
    dtype: "f32",
    params: new Params().u32(slot).f32(options.maxNorm ?? 0).f32(options.lossScale ?? 1),
    bindings: [partials, out],
    groups: [1, 1, 1],
  });
  partials.release();
  return out;
}

/** AdamW hyper-parameters (torch.optim.AdamW names). */
export interface AdamWOptions {
  lr: number;
  betas: readonly [number, number];
  eps: number;
  weightDecay: number;
  /** The step being taken, from 1 (bias correction). */
  step: number;
}

/**
 * One AdamW update of an f32 `param` and its f32 moments `m`, `v` (all updated in place) with
 * `grad` times the factor in `stats[1]` (see {@link gradNorm}). Mixed precision: `working`, the
 * f16 copy the model computes with, receives the updated weight rounded.
 *
 * @example
 * ```ts
 * adamw(gpu, { param, grad, m, v, stats }, { lr: 1e-4, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 1e-2, step: 1 });
 * ```
 */
export function adamw(
  gpu: Gpu,
  t: { param: Tensor; grad: Tensor; m: Tensor; v: Tensor; stats: Tensor; working?: Tensor },
  o: AdamWOptions,
): void {
  if (t.working && (t.working.size !== t.param.size || t.working.dtype !== t.grad.dtype)) {
    throw new Error(
      `adamw: expected the working copy ${fmtShape(t.working.shape)} ${t.working.dtype} to match ` +
        `param ${fmtShape(t.param.shape)} and the gradient's dtype ${t.grad.dtype}`,
    );
  }
  const n = t.param.size;
  for (const [name, x] of [["grad", t.grad], ["m", t.m], ["v", t.v]] as const) {
    if (x.size !== n) {
      throw new Error(
        `adamw: expected ${name} of ${n} elements like param ${fmtShape(t.param.shape)}, got ${
          fmtShape(x.shape)
        }`,
      );
    }
  }
  for (const [name, x] of [["param", t.param], ["m", t.m], ["v", t.v]] as const) {
    if (x.dtype !== "f32") throw new Error(`adamw: expected ${name} in f32, got ${x.dtype}`);
  }
  if (n === 0) return;
  const [b1, b2] = o.betas;
  gpu.dispatch(adamwKernel, {
    dtype: t.grad.dtype,
    params: new Params().u32(n).f32(o.lr).f32(b1).f32(b2).f32(1 - b1).f32(1 - b2).f32(o.eps)
      .f32(1 - o.lr * o.weightDecay).f32(o.lr / (1 - b1 ** o.step)).f32(
        Math.sqrt(1 - b2 ** o.step),
      ),
    variant: { working: t.working !== undefined },
    bindings: t.working
      ? [t.grad, t.stats, t.param, t.m, t.v, t.working]
      : [t.grad, t.stats, t.param, t.m, t.v],
    groups: launch1d(n),
  });
}
