/**
 * LayerNorm over the last dim of `x [..., D]` (biased variance, eps inside the square root, as
 * torch): one workgroup per row, two-pass mean / variance in f32, vec4 loads when D % 4 == 0.
 * @module
 */

import type { Gpu } from "./gpu/device.ts";
import { bindingRuns } from "./gpu/chunks.ts";
import { defineKernel, grid1d, Params } from "./gpu/kernel.ts";
import { fmtShape, type Tensor } from "./gpu/tensor.ts";
import { bindingsWgsl, mainPerGroupWgsl, prelude, vecKey, type VecVariant } from "./wgsl.ts";

const WG = 64;

const layerNormKernel = defineKernel<VecVariant>("layer_norm", {
  key: vecKey,
  source: ({ dtype, variant }) => /* wgsl */ `
// layer_norm: 1 x [rows, D] (as V units), 2 weight [D], 3 bias [D], 4 y [rows, D].
// One workgroup per row; du = D / vec width.
${prelude(dtype, { ...variant, wg: WG, reductions: true })}
struct Params { rows: u32, du: u32, d: f32, eps: f32 }
${bindingsWgsl(["x: array<V>", "weight: array<V>", "bias: array<V>", "y: array<V>"])}

${mainPerGroupWgsl("row", "p.rows")}
  let o = row * p.du;
  var s = VF(0.0);
  for (var i = lid; i < p.du; i += WG) { s += VF(x[o + i]); }
  let mean = wg_sum(hsum(s), lid) / p.d;
  var q = VF(0.0);
  for (var i = lid; i < p.du; i += WG) {
    let d = VF(x[o + i]) - mean;
    q += d * d;
  }
  let rstd = 1.0 / sqrt(wg_sum(hsum(q), lid) / p.d + p.eps);
  for (var i = lid; i < p.du; i += WG) {
    y[o + i] = V((VF(x[o + i]) - mean) * rstd * VF(weight[i]) + VF(bias[i]));
  }
}`,
});

/** Options of {@link layerNorm}. */
export interface LayerNormOptions {
  /** Added to the variance. */
  eps: number;
}

/**
 * LayerNorm of `x [..., D]` with `weight`, `bias [D]`.
 *
 * @example
 * ```ts
 * const h = layerNorm(gpu, x, w, b, { eps: 1e-5 }); // x [B, L, 768]
 * ```
 */
export function layerNorm(
  gpu: Gpu,
  x: Tensor,
  weight: Tensor,
  bias: Tensor,
  options: LayerNormOptions,
): Tensor {
  if (x.rank < 1) throw new Error(`layer_norm: expected x [..., D], got ${fmtShape(x.shape)}`);
  const d = x.shape[x.rank - 1];
  for (const [name, t] of [["weight", weight], ["bias", bias]] as const) {
    if (t.rank !== 1 || t.shape[0] !== d) {
      throw new Error(
        `layer_norm: expected ${name} [${d}] for x ${fmtShape(x.shape)}, got ${fmtShape(t.shape)}`,
      );
    }
    if (t.dtype !== x.dtype) throw new Error(`layer_norm: ${name} is ${t.dtype}, x is ${x.dtype}`);
  }
  const y = gpu.empty(x.shape, x.dtype, "layer_norm");
  const rows = d === 0 ? 0 : x.size / d;
  if (rows === 0) return y;
  const v4 = d % 4 === 0;
  for (const [s, n] of bindingRuns(gpu, "layer_norm", rows, [x, y], "row")) {
    gpu.dispatch(layerNormKernel, {
      dtype: x.dtype,
      variant: { vec: v4 },
      params: new Params().u32(n).u32(v4 ? d / 4 : d).f32(d).f32(options.eps),
      bindings: [x.window(rows, s, n), weight, bias, y.window(rows, s, n)],
      groups: grid1d(n),
    });
  }
  return y;
}
