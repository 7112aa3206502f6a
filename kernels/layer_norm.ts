/**
 * LayerNorm over the last dim of `x [..., D]` (biased variance, eps inside the square root, as
 * torch): one workgroup per row, two-pass mean / variance in f32, vec4 loads when D % 4 == 0.
 * @module
 */

import type { Gpu } from "./gpu/device.ts";
import { bindingRuns } from "./gpu/chunks.ts";
import { defineKernel, grid1d, Params, wgslDType } from "./gpu/kernel.ts";
import { fmtShape, type Tensor } from "./gpu/tensor.ts";

const WG = 64;

/** WGSL helpers of the row kernels: V / VF aliases, horizontal sum and a workgroup reduction. */
export function rowPrelude(v4: boolean, wg: number): string {
  return `alias V = ${v4 ? "T4" : "T"};
alias VF = ${v4 ? "vec4<f32>" : "f32"};
const WG = ${wg}u;
fn hsum(v: VF) -> f32 { return ${v4 ? "v.x + v.y + v.z + v.w" : "v"}; }
fn hmax(v: VF) -> f32 { return ${v4 ? "max(max(v.x, v.y), max(v.z, v.w))" : "v"}; }
var<workgroup> red: array<f32, WG>;
fn wg_reduce(v: f32, lid: u32, is_max: bool) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      red[lid] = select(red[lid] + red[lid + s], max(red[lid], red[lid + s]), is_max);
    }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}`;
}

const layerNormKernel = defineKernel("layer_norm", ({ dtype, variant }) => /* wgsl */ `
// layer_norm: 1 x [rows, D] (as V units), 2 weight [D], 3 bias [D], 4 y [rows, D].
// One workgroup per row; du = D / vec width.
${wgslDType(dtype)}
${rowPrelude(variant === "v4", WG)}
struct Params { rows: u32, du: u32, d: f32, eps: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<V>;
@group(0) @binding(2) var<storage, read> weight: array<V>;
@group(0) @binding(3) var<storage, read> bias: array<V>;
@group(0) @binding(4) var<storage, read_write> y: array<V>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) { return; }
  let o = row * p.du;
  var s = VF(0.0);
  for (var i = lid; i < p.du; i += WG) { s += VF(x[o + i]); }
  let mean = wg_reduce(hsum(s), lid, false) / p.d;
  var q = VF(0.0);
  for (var i = lid; i < p.du; i += WG) {
    let d = VF(x[o + i]) - mean;
    q += d * d;
  }
  let rstd = 1.0 / sqrt(wg_reduce(hsum(q), lid, false) / p.d + p.eps);
  for (var i = lid; i < p.du; i += WG) {
    y[o + i] = V((VF(x[o + i]) - mean) * rstd * VF(weight[i]) + VF(bias[i]));
  }
}`);

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
      variant: v4 ? "v4" : "s",
      params: new Params().u32(n).u32(v4 ? d / 4 : d).f32(d).f32(options.eps),
      bindings: [x.window(rows, s, n), weight, bias, y.window(rows, s, n)],
      groups: grid1d(n),
    });
  }
  return y;
}
