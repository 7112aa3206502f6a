/**
 * LayerNorm over the last dim of `x [..., D]` (biased variance, eps inside the square root, as
 * torch): one workgroup per row, two-pass mean / variance in f32, vec4 loads when D % 4 == 0.
 *
 * The backward ({@link layerNormBackward}, recorded on an autograd tape by {@link layerNorm})
 * recomputes mean / rstd per row (only x and weight are saved): dx per row from two workgroup
 * sums, dweight / dbias by a two-level reduction over rows (per row-block partials, then one
 * workgroup per column).
 * @module
 */

import type { Gpu } from "./gpu/device.ts";
import { bindingRuns } from "./gpu/chunks.ts";
import { defineKernel, grid1d, Params } from "./gpu/kernel.ts";
import { taped } from "./gpu/tape.ts";
import { fmtShape, type Tensor } from "./gpu/tensor.ts";
import type { NormGradients } from "./group_norm.ts";
import { bindingsWgsl, mainPerGroupWgsl, prelude, vecKey, type VecVariant } from "./wgsl.ts";

const WG = 64;
/** Fewest threads of a row's workgroup. */
const MIN_WG = 16;

/** Compile-time options of the layer norm kernels. */
interface LayerNormVariant extends VecVariant {
  /** Threads per row (default {@link WG}). */
  wg?: number;
}

function layerNormKey(v: LayerNormVariant): string {
  return `${vecKey(v)}${v.wg && v.wg !== WG ? `_w${v.wg}` : ""}`;
}

/**
 * Threads for a row of `units` units: short rows (the demo's 32-64 channels) take fewer threads,
 * so that none idles through the reductions' barriers (each a sweep over every thread on a CPU
 * rasterizer).
 */
function rowThreads(units: number): number {
  let wg = MIN_WG;
  while (wg < WG && wg * 4 < units) wg *= 2;
  return wg;
}

const layerNormKernel = defineKernel<LayerNormVariant>("layer_norm", {
  key: layerNormKey,
  source: ({ dtype, variant }) => /* wgsl */ `
// layer_norm: 1 x [rows, D] (as V units), 2 weight [D], 3 bias [D], 4 y [rows, D].
// One workgroup per row; du = D / vec width.
${prelude(dtype, { ...variant, wg: variant.wg ?? WG, reductions: true })}
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
  const d = checkLayerNorm(x, weight, bias);
  const y = layerNormForward(gpu, x, weight, bias, d, options);
  return taped(gpu, {
    name: "layer_norm",
    inputs: [x, weight, bias],
    output: y,
    saved: [x, weight],
    backward: (gy, needs) => {
      const g = layerNormBackward(gpu, gy, { ...options, x, weight, bias, needs });
      return [g.dx, g.dweight, g.dbias];
    },
  });
}

/** Checks layer norm operands; returns D. */
function checkLayerNorm(x: Tensor, weight: Tensor, bias: Tensor, op = "layer_norm"): number {
  if (x.rank < 1) throw new Error(`${op}: expected x [..., D], got ${fmtShape(x.shape)}`);
  const d = x.shape[x.rank - 1];
  for (const [name, t] of [["weight", weight], ["bias", bias]] as const) {
    if (t.rank !== 1 || t.shape[0] !== d) {
      throw new Error(
        `${op}: expected ${name} [${d}] for x ${fmtShape(x.shape)}, got ${fmtShape(t.shape)}`,
      );
    }
    if (t.dtype !== x.dtype) throw new Error(`${op}: ${name} is ${t.dtype}, x is ${x.dtype}`);
  }
  return d;
}

/** The inference path of {@link layerNorm}. */
function layerNormForward(
  gpu: Gpu,
  x: Tensor,
  weight: Tensor,
  bias: Tensor,
  d: number,
  options: LayerNormOptions,
): Tensor {
  const y = gpu.empty(x.shape, x.dtype, "layer_norm");
  const rows = d === 0 ? 0 : x.size / d;
  if (rows === 0) return y;
  const v4 = d % 4 === 0;
  for (const [s, n] of bindingRuns(gpu, "layer_norm", rows, [x, y], "row")) {
    gpu.dispatch(layerNormKernel, {
      dtype: x.dtype,
      variant: { vec: v4, wg: rowThreads(v4 ? d / 4 : d) },
      params: new Params().u32(n).u32(v4 ? d / 4 : d).f32(d).f32(options.eps),
      bindings: [x.window(rows, s, n), weight, bias, y.window(rows, s, n)],
      groups: grid1d(n),
    });
  }
  return y;
}

// ---------------------------------------------------------------- backward

/** Rows per block of the first level of the dweight / dbias reduction. */
const ROWS_PER_BLOCK = 64;

const backwardKernel = defineKernel<LayerNormVariant>("layer_norm_bwd", {
  key: layerNormKey,
  source: ({ dtype, variant }) => /* wgsl */ `
// layer_norm_bwd: 1 x [rows, D] (as V units), 2 weight [D], 3 gy [rows, D], 4 stats [rows, 2]
// f32 (mean, rstd), 5 dx [rows, D]. One workgroup per row; du = D / vec width.
${prelude(dtype, { ...variant, wg: variant.wg ?? WG, reductions: true })}
struct Params { rows: u32, du: u32, d: f32, eps: f32 }
${bindingsWgsl(["x: array<V>", "weight: array<V>", "gy: array<V>"])}
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<V>;

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
  var sa = VF(0.0);
  var sb = VF(0.0);
  for (var i = lid; i < p.du; i += WG) {
    let g = VF(gy[o + i]) * VF(weight[i]);
    sa += g;
    sb += g * (VF(x[o + i]) - mean) * rstd;
  }
  let a = wg_sum(hsum(sa), lid) / p.d;
  let b = wg_sum(hsum(sb), lid) / p.d;
  for (var i = lid; i < p.du; i += WG) {
    let xh = (VF(x[o + i]) - mean) * rstd;
    dx[o + i] = V(rstd * (VF(gy[o + i]) * VF(weight[i]) - a - xh * b));
  }
  if (lid == 0u) {
    stats[row * 2u] = mean;
    stats[row * 2u + 1u] = rstd;
  }
}`,
});

const partialKernel = defineKernel("layer_norm_bwd_partial", ({ dtype }) => /* wgsl */ `
// layer_norm_bwd_partial: 1 x [rows, D], 2 gy [rows, D], 3 stats [rows, 2] f32, 4 part
// [blocks, D, 2] f32 (sum gy, sum gy * xhat). Workgroup (x, y): columns x * WG.., rows of block
// y (block0 + y is its index in part).
${prelude(dtype, { wg: WG })}
struct Params { rows: u32, d: u32, rb: u32, block0: u32 }
${bindingsWgsl(["x: array<T>", "gy: array<T>", "stats: array<f32>", "part: array<f32>"])}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let col = wid.x * WG + lid;
  if (col >= p.d) { return; }
  let r0 = wid.y * p.rb;
  var s1 = 0.0;
  var s2 = 0.0;
  for (var r = r0; r < min(r0 + p.rb, p.rows); r++) {
    let g = f32(gy[r * p.d + col]);
    s1 += g;
    s2 += g * (f32(x[r * p.d + col]) - stats[r * 2u]) * stats[r * 2u + 1u];
  }
  let e = ((p.block0 + wid.y) * p.d + col) * 2u;
  part[e] = s1;
  part[e + 1u] = s2;
}`);

const paramsKernel = defineKernel("layer_norm_bwd_params", ({ dtype }) => /* wgsl */ `
// layer_norm_bwd_params: 1 part [blocks, D, 2] f32, 2 dweight [D], 3 dbias [D]. One workgroup
// per column.
${prelude(dtype, { wg: WG, reductions: true })}
struct Params { d: u32, blocks: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> dweight: array<T>;
@group(0) @binding(3) var<storage, read_write> dbias: array<T>;

${mainPerGroupWgsl("col", "p.d")}
  var s1 = 0.0;
  var s2 = 0.0;
  for (var b = lid; b < p.blocks; b += WG) {
    s1 += part[(b * p.d + col) * 2u];
    s2 += part[(b * p.d + col) * 2u + 1u];
  }
  let db = wg_sum(s1, lid);
  let dw = wg_sum(s2, lid);
  if (lid == 0u) {
    dweight[col] = T(dw);
    dbias[col] = T(db);
  }
}`);

/** Options of {@link layerNormBackward}: the forward's inputs and options. */
export interface LayerNormBackwardOptions extends LayerNormOptions {
  x: Tensor;
  weight: Tensor;
  bias: Tensor;
  /** Which of [dx, dweight, dbias] to return (the others are null). Default all. */
  needs?: readonly boolean[];
}

/**
 * Backward of {@link layerNorm} given dL/dy `gy`: dx [..., D], dweight and dbias [D], in x's dtype
 * (f32 accumulation).
 *
 * @example
 * ```ts
 * const { dx, dweight, dbias } = layerNormBackward(gpu, gy, { x, weight: w, bias: b, eps: 1e-5 });
 * ```
 */
export function layerNormBackward(
  gpu: Gpu,
  gy: Tensor,
  options: LayerNormBackwardOptions,
): NormGradients {
  const { x, weight, bias } = options;
  const [needX = true, needW = true, needB = true] = options.needs ?? [];
  const d = checkLayerNorm(x, weight, bias, "layer_norm backward");
  if (gy.size !== x.size || gy.dtype !== x.dtype) {
    throw new Error(
      `layer_norm backward: expected gy ${fmtShape(x.shape)} ${x.dtype}, got ${
        fmtShape(gy.shape)
      } ${gy.dtype}`,
    );
  }
  const rows = d === 0 ? 0 : x.size / d;
  const dx = gpu.empty(x.shape, x.dtype, "layer_norm.dx");
  const dweight = gpu.empty([d], x.dtype, "layer_norm.dweight");
  const dbias = gpu.empty([d], x.dtype, "layer_norm.dbias");
  const stats = gpu.empty([rows, 2], "f32", "layer_norm.stats");
  const runs = rows === 0
    ? []
    : bindingRuns(gpu, "layer_norm backward", rows, [x, gy, dx, stats], "row");
  const blocks = runs.reduce((t, [, n]) => t + Math.ceil(n / ROWS_PER_BLOCK), 0);
  const part = gpu.empty([blocks, d, 2], "f32", "layer_norm.grad_partials");
  const v4 = d % 4 === 0;
  let block0 = 0;
  for (const [s, n] of runs) {
    const [xw, gyw, dxw, sw] = [x, gy, dx, stats].map((t) => t.window(rows, s, n));
    gpu.dispatch(backwardKernel, {
      dtype: x.dtype,
      variant: { vec: v4, wg: rowThreads(v4 ? d / 4 : d) },
      params: new Params().u32(n).u32(v4 ? d / 4 : d).f32(d).f32(options.eps),
      bindings: [xw, weight, gyw, sw, dxw],
      groups: grid1d(n),
    });
    const nb = Math.ceil(n / ROWS_PER_BLOCK);
    if (needW || needB) {
      gpu.dispatch(partialKernel, {
        dtype: x.dtype,
        params: new Params().u32(n).u32(d).u32(ROWS_PER_BLOCK).u32(block0),
        bindings: [xw, gyw, sw, part],
        groups: [Math.ceil(d / WG), nb, 1],
      });
    }
    block0 += nb;
  }
  if (blocks > 0 && (needW || needB)) {
    gpu.dispatch(paramsKernel, {
      dtype: x.dtype,
      params: new Params().u32(d).u32(blocks),
      bindings: [part, dweight, dbias],
      groups: grid1d(d),
    });
  }
  stats.release();
  part.release();
  const keep = (t: Tensor, need: boolean) => {
    if (need) return t;
    t.release();
    return null;
  };
  return { dx: keep(dx, needX), dweight: keep(dweight, needW), dbias: keep(dbias, needB) };
}
