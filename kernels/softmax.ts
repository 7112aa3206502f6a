/**
 * Numerically stable softmax over the last dim of `x [..., D]`: one workgroup per row, f32
 * max / sum reductions, vec4 loads when D % 4 == 0. Its backward ({@link softmaxBackward},
 * recorded on an autograd tape by {@link softmax}) reads the saved output y:
 * dx = y * (gy - sum(gy * y)) per row.
 * @module
 */

import type { Gpu } from "./gpu/device.ts";
import { bindingRuns } from "./gpu/chunks.ts";
import { defineKernel, grid1d, Params } from "./gpu/kernel.ts";
import { taped } from "./gpu/tape.ts";
import { fmtShape, type Tensor } from "./gpu/tensor.ts";
import { bindingsWgsl, mainPerGroupWgsl, prelude, vecKey, type VecVariant } from "./wgsl.ts";

const WG = 64;

const softmaxKernel = defineKernel<VecVariant>("softmax", {
  key: vecKey,
  source: ({ dtype, variant }) => /* wgsl */ `
// softmax: 1 x [rows, D] (as V units), 2 y [rows, D]. One workgroup per row; du = D / vec width.
${prelude(dtype, { ...variant, wg: WG, reductions: true })}
struct Params { rows: u32, du: u32 }
${bindingsWgsl(["x: array<V>", "y: array<V>"])}

${mainPerGroupWgsl("row", "p.rows")}
  let o = row * p.du;
  var m = VF(-3.0e38);
  for (var i = lid; i < p.du; i += WG) { m = max(m, VF(x[o + i])); }
  let mx = wg_max(hmax(m), lid);
  var s = VF(0.0);
  for (var i = lid; i < p.du; i += WG) { s += exp(VF(x[o + i]) - mx); }
  let inv = 1.0 / wg_sum(hsum(s), lid);
  for (var i = lid; i < p.du; i += WG) { y[o + i] = V(exp(VF(x[o + i]) - mx) * inv); }
}`,
});

/**
 * Softmax over the last dim of `x [..., D]`.
 *
 * @example
 * ```ts
 * const probs = softmax(gpu, scores); // [B, H, Lq, Lk]
 * ```
 */
export function softmax(gpu: Gpu, x: Tensor): Tensor {
  if (x.rank < 1) throw new Error(`softmax: expected x [..., D], got ${fmtShape(x.shape)}`);
  const d = x.shape[x.rank - 1];
  const y = gpu.empty(x.shape, x.dtype, "softmax");
  const rows = d === 0 ? 0 : x.size / d;
  if (rows === 0) return y;
  const v4 = d % 4 === 0;
  for (const [s, n] of bindingRuns(gpu, "softmax", rows, [x, y], "row")) {
    gpu.dispatch(softmaxKernel, {
      dtype: x.dtype,
      variant: { vec: v4 },
      params: new Params().u32(n).u32(v4 ? d / 4 : d),
      bindings: [x.window(rows, s, n), y.window(rows, s, n)],
      groups: grid1d(n),
    });
  }
  return taped(gpu, {
    name: "softmax",
    inputs: [x],
    output: y,
    saved: [y],
    backward: (gy, needs) => [needs[0] ? softmaxBackward(gpu, gy, { y }) : null],
  });
}

const backwardKernel = defineKernel<VecVariant>("softmax_bwd", {
  key: vecKey,
  source: ({ dtype, variant }) => /* wgsl */ `
// softmax_bwd: 1 y [rows, D] (as V units), 2 gy [rows, D], 3 dx [rows, D]. One workgroup per
// row; du = D / vec width.
${prelude(dtype, { ...variant, wg: WG, reductions: true })}
struct Params { rows: u32, du: u32 }
${bindingsWgsl(["y: array<V>", "gy: array<V>", "dx: array<V>"])}

${mainPerGroupWgsl("row", "p.rows")}
  let o = row * p.du;
  var s = VF(0.0);
  for (var i = lid; i < p.du; i += WG) { s += VF(gy[o + i]) * VF(y[o + i]); }
  let t = wg_sum(hsum(s), lid);
  for (var i = lid; i < p.du; i += WG) { dx[o + i] = V(VF(y[o + i]) * (VF(gy[o + i]) - t)); }
}`,
});

/**
 * Backward of {@link softmax} over the last dim from its output `y` and dL/dy `gy`.
 *
 * @example
 * ```ts
 * const dscores = softmaxBackward(gpu, dprobs, { y: probs });
 * ```
 */
export function softmaxBackward(gpu: Gpu, gy: Tensor, options: { y: Tensor }): Tensor {
  const { y } = options;
  if (gy.size !== y.size || gy.dtype !== y.dtype || y.rank < 1) {
    throw new Error(
      `softmax backward: expected gy ${fmtShape(y.shape)} ${y.dtype}, got ${
        fmtShape(gy.shape)
      } ${gy.dtype}`,
    );
  }
  const d = y.shape[y.rank - 1];
  const dx = gpu.empty(y.shape, y.dtype, "softmax.dx");
  const rows = d === 0 ? 0 : y.size / d;
  if (rows === 0) return dx;
  const v4 = d % 4 === 0;
  for (const [s, n] of bindingRuns(gpu, "softmax backward", rows, [y, gy, dx], "row")) {
    const w = (t: Tensor) => t.window(rows, s, n);
    gpu.dispatch(backwardKernel, {
      dtype: y.dtype,
      variant: { vec: v4 },
      params: new Params().u32(n).u32(v4 ? d / 4 : d),
      bindings: [w(y), w(gy), w(dx)],
      groups: grid1d(n),
    });
  }
  return dx;
}
