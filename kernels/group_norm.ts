/**
 * GroupNorm over `[N, C, ...spatial]` with exact (biased) statistics in f32, optional fused SiLU,
 * and a `frames` mode whose statistics span consecutive batch items: the AnimateDiff motion
 * module's GroupNorm over `(b, c, f, h, w)` applied to our `(b*f, c, h, w)` layout.
 *
 * Two paths: one workgroup per statistics group (two-pass mean / variance from L2, then the
 * normalised write), or, when a group is huge (VAE at 512x512, 16-frame motion modules), a
 * split reduction: per-chunk (mean, M2) partials combined with Chan's formula by every chunk of
 * the apply pass, so thousands of workgroups share one group.
 * @module
 */

import type { Gpu } from "./gpu/device.ts";
import { bindingRuns } from "./gpu/chunks.ts";
import { defineKernel, grid1d, Params } from "./gpu/kernel.ts";
import { type DType, fmtShape, type Tensor } from "./gpu/tensor.ts";
import { bindingsWgsl, mainPerGroupWgsl, prelude, vecKey, type VecVariant } from "./wgsl.ts";

const WG = 256;
/** Units (elements, or vec4s) per chunk of the split reduction. */
const CHUNK_UNITS = 2048;
/** Statistics groups larger than this (elements) use the split reduction. */
const SPLIT_THRESHOLD = 1 << 17;
/** ... and so do groups of a few chunks when there are too few groups to fill a GPU. */
const FEW_GROUPS = 256;

/** Options of {@link groupNorm}. */
export interface GroupNormOptions {
  /** Number of groups; must divide C. */
  groups: number;
  /** Added to the variance. */
  eps: number;
  /** Apply SiLU after the affine transform. */
  silu?: boolean;
  /** Statistics span this many consecutive batch items (N % frames == 0). Default 1. */
  frames?: number;
  /** Force (true) or forbid (false) the split reduction; default by group size. */
  split?: boolean;
}

/** Compile-time options of the group norm kernels. */
interface GroupNormVariant extends VecVariant {
  silu: boolean;
}

function groupNormKey(v: GroupNormVariant): string {
  return `${vecKey(v)}${v.silu ? "_silu" : ""}`;
}

/**
 * The prelude of the three shaders, with `VW` (elements per unit), `act` (SiLU or none) and
 * their Params (all sizes in units of V): groups, cg (channels per group), su (units per
 * channel = S/VW), lu (units per group per batch item = cg*su), row (units per batch item =
 * C*su), frames, nstat (statistics groups), nch (chunks per statistics group), cpf (chunks per
 * batch item), count (elements per group, f32), eps.
 */
function groupNormPrelude(dtype: DType, v: GroupNormVariant): string {
  return `${prelude(dtype, { ...v, wg: WG, activations: v.silu, reductions: true })}
const VW = ${v.vec ? 4 : 1}.0;
fn act(v: VF) -> VF { return ${v.silu ? "silu(v)" : "v"}; }
struct Params {
  groups: u32, cg: u32, su: u32, lu: u32, row: u32, frames: u32, nstat: u32, nch: u32, cpf: u32,
  count: f32, eps: f32,
}`;
}

/** One workgroup per statistics group: two-pass mean / variance, then the normalised write. */
const fusedKernel = defineKernel<GroupNormVariant>("group_norm", {
  key: groupNormKey,
  source: ({ dtype, variant }) => /* wgsl */ `
// group_norm: 1 x [N, C, S] (as V units), 2 weight [C], 3 bias [C], 4 y [N, C, S].
// Workgroup sg = b * groups + g normalises frames x cg channels x S elements.
${groupNormPrelude(dtype, variant)}
${bindingsWgsl(["x: array<V>", "weight: array<T>", "bias: array<T>", "y: array<V>"])}

${mainPerGroupWgsl("sg", "p.nstat")}
  let g = sg % p.groups;
  let base = (sg / p.groups) * p.frames * p.row + g * p.lu;
  var s = VF(0.0);
  for (var f = 0u; f < p.frames; f++) {
    let o = base + f * p.row;
    for (var i = lid; i < p.lu; i += WG) { s += VF(x[o + i]); }
  }
  let mean = wg_sum(hsum(s), lid) / p.count;
  var q = VF(0.0);
  for (var f = 0u; f < p.frames; f++) {
    let o = base + f * p.row;
    for (var i = lid; i < p.lu; i += WG) {
      let d = VF(x[o + i]) - mean;
      q += d * d;
    }
  }
  let rstd = 1.0 / sqrt(wg_sum(hsum(q), lid) / p.count + p.eps);
  for (var f = 0u; f < p.frames; f++) {
    let o = base + f * p.row;
    for (var i = lid; i < p.lu; i += WG) {
      let c = g * p.cg + i / p.su;
      let v = (VF(x[o + i]) - mean) * (rstd * f32(weight[c])) + f32(bias[c]);
      y[o + i] = V(act(v));
    }
  }
}`,
});

/**
 * The chunks of the split reduction and the head of both passes' entry point: workgroup
 * (x, y) = chunk k < nch of statistics group sg < nstat.
 */
const SPLIT_WGSL = `
// Chunk k of statistics group sg covers units [r0, r0 + n) of batch item f of the group.
struct Chunk { o: u32, r0: u32, n: u32 }
fn chunk_at(sg: u32, k: u32) -> Chunk {
  let f = k / p.cpf;
  let r0 = (k % p.cpf) * ${CHUNK_UNITS}u;
  let base = (sg / p.groups) * p.frames * p.row + (sg % p.groups) * p.lu;
  return Chunk(base + f * p.row + r0, r0, min(${CHUNK_UNITS}u, p.lu - r0));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let k = wid.x;
  let sg = wid.y;
  if (k >= p.nch || sg >= p.nstat) { return; }`;

/** Split reduction, pass 1: (mean, M2) of each chunk. */
const statsKernel = defineKernel<GroupNormVariant>("group_norm_stats", {
  key: groupNormKey,
  source: ({ dtype, variant }) => /* wgsl */ `
// group_norm_stats: 1 x [N, C, S] (as V units), 2 partials [nstat, nch, 2] f32 (mean, M2).
// Grid: x = chunk k < nch, y = statistics group sg < nstat.
${groupNormPrelude(dtype, variant)}
${bindingsWgsl(["x: array<V>", "part: array<f32>"])}
${SPLIT_WGSL}
  let ch = chunk_at(sg, k);
  var s = VF(0.0);
  for (var i = lid; i < ch.n; i += WG) { s += VF(x[ch.o + i]); }
  let mean = wg_sum(hsum(s), lid) / (f32(ch.n) * VW);
  var q = VF(0.0);
  for (var i = lid; i < ch.n; i += WG) {
    let d = VF(x[ch.o + i]) - mean;
    q += d * d;
  }
  let m2 = wg_sum(hsum(q), lid);
  if (lid == 0u) {
    part[(sg * p.nch + k) * 2u] = mean;
    part[(sg * p.nch + k) * 2u + 1u] = m2;
  }
}`,
});

/** Split reduction, pass 2: combine the group's partials (Chan), normalise one chunk. */
const applyKernel = defineKernel<GroupNormVariant>("group_norm_apply", {
  key: groupNormKey,
  source: ({ dtype, variant }) => /* wgsl */ `
// group_norm_apply: 1 x [N, C, S] (as V units), 2 partials [nstat, nch, 2] f32, 3 weight [C],
// 4 bias [C], 5 y [N, C, S]. Grid: x = chunk k < nch, y = statistics group sg < nstat.
${groupNormPrelude(dtype, variant)}
${
    bindingsWgsl([
      "x: array<V>",
      "part: array<f32>",
      "weight: array<T>",
      "bias: array<T>",
      "y: array<V>",
    ])
  }
${SPLIT_WGSL}
  var s = 0.0;
  for (var j = lid; j < p.nch; j += WG) {
    s += part[(sg * p.nch + j) * 2u] * f32(chunk_at(sg, j).n) * VW;
  }
  let mean = wg_sum(s, lid) / p.count;
  var q = 0.0;
  for (var j = lid; j < p.nch; j += WG) {
    let d = part[(sg * p.nch + j) * 2u] - mean;
    q += part[(sg * p.nch + j) * 2u + 1u] + f32(chunk_at(sg, j).n) * VW * d * d;
  }
  let rstd = 1.0 / sqrt(wg_sum(q, lid) / p.count + p.eps);
  let ch = chunk_at(sg, k);
  let g = sg % p.groups;
  for (var i = lid; i < ch.n; i += WG) {
    let c = g * p.cg + (ch.r0 + i) / p.su;
    let v = (VF(x[ch.o + i]) - mean) * (rstd * f32(weight[c])) + f32(bias[c]);
    y[ch.o + i] = V(act(v));
  }
}`,
});

/**
 * GroupNorm of `x [N, C, ...spatial]` with `weight`/`bias [C]`, biased variance as torch.
 *
 * @example
 * ```ts
 * const h = groupNorm(gpu, x, w, b, { groups: 32, eps: 1e-5, silu: true });
 * // motion module: x is (b*f, c, h, w); statistics over all f frames of each clip
 * const m = groupNorm(gpu, x, w, b, { groups: 32, eps: 1e-6, frames: 16 });
 * ```
 */
export function groupNorm(
  gpu: Gpu,
  x: Tensor,
  weight: Tensor,
  bias: Tensor,
  options: GroupNormOptions,
): Tensor {
  const { groups, frames = 1 } = options;
  const [n, c] = x.shape;
  if (x.rank < 2) throw new Error(`group_norm: expected x [N, C, ...], got ${fmtShape(x.shape)}`);
  if (!Number.isInteger(groups) || groups < 1 || c % groups !== 0) {
    throw new Error(`group_norm: groups ${groups} must divide C = ${c} (x ${fmtShape(x.shape)})`);
  }
  if (!Number.isInteger(frames) || frames < 1 || n % frames !== 0) {
    throw new Error(`group_norm: frames ${frames} must divide N = ${n} (x ${fmtShape(x.shape)})`);
  }
  for (const [name, t] of [["weight", weight], ["bias", bias]] as const) {
    if (t.rank !== 1 || t.shape[0] !== c) {
      throw new Error(`group_norm: expected ${name} [${c}], got ${fmtShape(t.shape)}`);
    }
    if (t.dtype !== x.dtype) {
      throw new Error(`group_norm: ${name} is ${t.dtype}, x is ${x.dtype}`);
    }
  }
  const y = gpu.empty(x.shape, x.dtype, "group_norm");
  if (x.size === 0) return y;
  // Statistics spans (a video's frames, or one image) are independent: operands larger than one
  // binding split into runs of spans.
  const spans = n / frames;
  const item = frames > 1 ? "video" : "image";
  for (const [s, count] of bindingRuns(gpu, "group_norm", spans, [x, y], item)) {
    const w = (t: Tensor) => t.window(spans, s, count);
    groupNormInto(gpu, w(x), weight, bias, w(y), options);
  }
  return y;
}

/** One group norm into `y` (every operand fits one binding). */
function groupNormInto(
  gpu: Gpu,
  x: Tensor,
  weight: Tensor,
  bias: Tensor,
  y: Tensor,
  options: GroupNormOptions,
): void {
  const { groups, eps, silu = false, frames = 1 } = options;
  const n = x.shape[0], c = weight.shape[0];
  const s = x.size / (n * c);
  const vw = s % 4 === 0 ? 4 : 1;
  const variant = { vec: vw === 4, silu };
  const cg = c / groups, su = s / vw, lu = cg * su;
  const nstat = (n / frames) * groups;
  const count = frames * lu * vw;
  const cpf = Math.ceil(lu / CHUNK_UNITS);
  const nch = frames * cpf;
  const params = new Params().u32(groups).u32(cg).u32(su).u32(lu).u32(c * su).u32(frames)
    .u32(nstat).u32(nch).u32(cpf).f32(count).f32(eps);
  const split = options.split ??
    (count > SPLIT_THRESHOLD || (nstat < FEW_GROUPS && nch >= 4));
  if (!split) {
    gpu.dispatch(fusedKernel, {
      dtype: x.dtype,
      variant,
      params,
      bindings: [x, weight, bias, y],
      groups: grid1d(nstat),
    });
    return;
  }
  if (nch > 65535 || nstat > 65535) {
    throw new Error(`group_norm: ${nstat} groups x ${nch} chunks exceed the dispatch grid`);
  }
  const part = gpu.empty([nstat, nch, 2], "f32", "group_norm.partials");
  const grid = [nch, nstat, 1] as const;
  gpu.dispatch(statsKernel, { dtype: x.dtype, variant, params, bindings: [x, part], groups: grid });
  gpu.dispatch(applyKernel, {
    dtype: x.dtype,
    variant,
    params,
    bindings: [x, part, weight, bias, y],
    groups: grid,
  });
  part.release();
}
