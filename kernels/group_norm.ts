/**
 * GroupNorm over `[N, C, ...spatial]` with exact (biased) statistics in f32, optional fused SiLU,
 * and a `frames` mode whose statistics span consecutive batch items: the AnimateDiff motion
 * module's GroupNorm over `(b, c, f, h, w)` applied to our `(b*f, c, h, w)` layout.
 *
 * Two paths: one workgroup per statistics group (two-pass mean / variance from L2, then the
 * normalised write), or, when a group is huge (VAE at 512x512, 16-frame motion modules), a
 * split reduction: per-chunk (mean, M2) partials combined with Chan's formula by every chunk of
 * the apply pass, so thousands of workgroups share one group.
 *
 * The backward ({@link groupNormBackward}, recorded on an autograd tape by {@link groupNorm})
 * recomputes mean / rstd the same way (nothing but x, weight and bias is saved) and has the same
 * two paths. Per channel it reduces dz and dz * xhat (dz: the gradient at the affine output),
 * which give both dbias / dweight partials and the two group means dx needs; dweight / dbias
 * then sum those partials over batch items (a second reduction, no atomics).
 * @module
 */

import type { Gpu } from "./gpu/device.ts";
import { bindingRuns } from "./gpu/chunks.ts";
import { defineKernel, grid1d, Params } from "./gpu/kernel.ts";
import { taped } from "./gpu/tape.ts";
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
  /** Threads per workgroup of the one-workgroup-per-group kernel (default {@link WG}). */
  wg?: number;
}

function groupNormKey(v: GroupNormVariant): string {
  return `${vecKey(v)}${v.silu ? "_silu" : ""}${v.wg && v.wg !== WG ? `_w${v.wg}` : ""}`;
}

/** Fewest threads of a one-workgroup-per-group launch. */
const MIN_FUSED_WG = 32;
/** Units each thread of a small group's workgroup reduces, at least. */
const UNITS_PER_THREAD = 8;

/**
 * Threads for one workgroup per group of `units` units: small groups (a UNet's 8 x 8 maps) take
 * fewer threads, which leaves no thread idle through the reductions' barriers (each costs a
 * sweep over all threads on a CPU rasterizer).
 */
function fusedThreads(units: number): number {
  let wg = MIN_FUSED_WG;
  while (wg < WG && wg * UNITS_PER_THREAD < units) wg *= 2;
  return wg;
}

/**
 * The prelude of the three shaders, with `VW` (elements per unit), `act` (SiLU or none) and
 * their Params (all sizes in units of V): groups, cg (channels per group), su (units per
 * channel = S/VW), lu (units per group per batch item = cg*su), row (units per batch item =
 * C*su), frames, nstat (statistics groups), nch (chunks per statistics group), cpf (chunks per
 * batch item), count (elements per group, f32), eps.
 */
function groupNormPrelude(dtype: DType, v: GroupNormVariant): string {
  return `${prelude(dtype, { ...v, wg: v.wg ?? WG, activations: v.silu, reductions: true })}
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
  const y = groupNormForward(gpu, x, weight, bias, options);
  // Recorded as one op (with SiLU fused): its backward recomputes the statistics from x.
  return taped(gpu, {
    name: "group_norm",
    inputs: [x, weight, bias],
    output: y,
    saved: options.silu ? [x, weight, bias] : [x, weight],
    backward: (gy, needs) => {
      const g = groupNormBackward(gpu, gy, { ...options, x, weight, bias, needs });
      return [g.dx, g.dweight, g.dbias];
    },
  });
}

/** Checks group norm operands; returns N and C. */
function checkGroupNorm(
  x: Tensor,
  weight: Tensor,
  bias: Tensor,
  options: GroupNormOptions,
  op = "group_norm",
): [number, number] {
  const { groups, frames = 1 } = options;
  const [n, c] = x.shape;
  if (x.rank < 2) throw new Error(`${op}: expected x [N, C, ...], got ${fmtShape(x.shape)}`);
  if (!Number.isInteger(groups) || groups < 1 || c % groups !== 0) {
    throw new Error(`${op}: groups ${groups} must divide C = ${c} (x ${fmtShape(x.shape)})`);
  }
  if (!Number.isInteger(frames) || frames < 1 || n % frames !== 0) {
    throw new Error(`${op}: frames ${frames} must divide N = ${n} (x ${fmtShape(x.shape)})`);
  }
  for (const [name, t] of [["weight", weight], ["bias", bias]] as const) {
    if (t.rank !== 1 || t.shape[0] !== c) {
      throw new Error(`${op}: expected ${name} [${c}], got ${fmtShape(t.shape)}`);
    }
    if (t.dtype !== x.dtype) {
      throw new Error(`${op}: ${name} is ${t.dtype}, x is ${x.dtype}`);
    }
  }
  return [n, c];
}

/** The inference path of {@link groupNorm}. */
function groupNormForward(
  gpu: Gpu,
  x: Tensor,
  weight: Tensor,
  bias: Tensor,
  options: GroupNormOptions,
): Tensor {
  const { frames = 1 } = options;
  const [n] = checkGroupNorm(x, weight, bias, options);
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
  // A few groups leave a GPU's cores idle, not a CPU rasterizer's (a handful of threads).
  const few = nstat < FEW_GROUPS && nch >= 4 && !gpu.info.isFallback;
  const split = options.split ?? (count > SPLIT_THRESHOLD || few);
  if (!split) {
    gpu.dispatch(fusedKernel, {
      dtype: x.dtype,
      variant: { ...variant, wg: fusedThreads(frames * lu) },
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

// ---------------------------------------------------------------- backward

/**
 * Prelude of the backward shaders: the forward's, plus `dz(z, gy)` (gy times d act / dz) and the
 * backward Params: the forward's, then per (partials per channel and statistics group), cpc
 * (backward chunks per channel of one batch item), c (channels), nspan (statistics spans).
 */
function backwardPrelude(dtype: DType, v: GroupNormVariant): string {
  return `${prelude(dtype, { ...v, wg: v.wg ?? WG, reductions: true })}
const VW = ${v.vec ? 4 : 1}.0;
fn dz(z: VF, gy: VF) -> VF {
  ${
    v.silu
      ? "let s = 1.0 / (VF(1.0) + exp(-z));\n  return gy * s * (VF(1.0) + z * (VF(1.0) - s));"
      : "return gy;"
  }
}
struct Params {
  groups: u32, cg: u32, su: u32, lu: u32, row: u32, frames: u32, nstat: u32, nch: u32, cpf: u32,
  count: f32, eps: f32, per: u32, cpc: u32, c: u32, nspan: u32,
}`;
}

/** Storage bindings from `first` on, all read_write (kernels with two outputs). */
function outputsWgsl(first: number, decls: readonly string[]): string {
  return decls.map((d, i) => `@group(0) @binding(${first + i}) var<storage, read_write> ${d};`)
    .join("\n");
}

/**
 * One workgroup per statistics group: mean / rstd, per-channel sums of dz and dz * xhat (to the
 * partials, and folded into the group means dx needs), then dx.
 */
const backwardKernel = defineKernel<GroupNormVariant>("group_norm_bwd", {
  key: groupNormKey,
  source: ({ dtype, variant }) => /* wgsl */ `
// group_norm_bwd: 1 x [N, C, S] (as V units), 2 weight [C], 3 bias [C], 4 gy [N, C, S],
// 5 part [nspan, C, 1, 2] f32 (sum dz, sum dz * xhat), 6 dx [N, C, S].
// Workgroup sg = b * groups + g covers frames x cg channels x S elements.
${backwardPrelude(dtype, variant)}
${bindingsWgsl(["x: array<V>", "weight: array<T>", "bias: array<T>", "gy: array<V>"])}
${outputsWgsl(5, ["part: array<f32>", "dx: array<V>"])}
var<workgroup> seg: array<vec2<f32>, WG>;
var<workgroup> segw: array<vec2<f32>, WG>;

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
  // Per-channel sums of dz and dz * xhat (the dweight / dbias partials), WG channels at a time:
  // each channel of a batch owned by a segment of tpc threads, whose sums meet in workgroup
  // memory (two barriers a batch, not a tree reduction per channel). a = sum dz * w and
  // b = sum dz * w * xhat over the group follow from the channel sums.
  var a = 0.0;
  var b = 0.0;
  for (var c0 = 0u; c0 < p.cg; c0 += WG) {
    let nb = min(WG, p.cg - c0);
    let tpc = WG / nb;
    var s1 = VF(0.0);
    var s2 = VF(0.0);
    if (lid < nb * tpc) {
      let cl = c0 + lid / tpc;
      let c = g * p.cg + cl;
      let w = f32(weight[c]);
      let bb = f32(bias[c]);
      for (var j = lid % tpc; j < p.frames * p.su; j += tpc) {
        let u = base + (j / p.su) * p.row + cl * p.su + j % p.su;
        let xh = (VF(x[u]) - mean) * rstd;
        let d = dz(xh * w + bb, VF(gy[u]));
        s1 += d;
        s2 += d * xh;
      }
    }
    seg[lid] = vec2<f32>(hsum(s1), hsum(s2));
    workgroupBarrier();
    if (lid < nb) {
      var t = vec2<f32>(0.0);
      for (var k = 0u; k < tpc; k++) { t += seg[lid * tpc + k]; }
      let e = (sg * p.cg + c0 + lid) * 2u;
      part[e] = t.x;
      part[e + 1u] = t.y;
      segw[lid] = t * f32(weight[g * p.cg + c0 + lid]);
    }
    workgroupBarrier();
    for (var k = 0u; k < nb; k++) {
      a += segw[k].x;
      b += segw[k].y;
    }
    workgroupBarrier();
  }
  a /= p.count;
  b /= p.count;
  for (var f = 0u; f < p.frames; f++) {
    let o = base + f * p.row;
    for (var i = lid; i < p.lu; i += WG) {
      let c = g * p.cg + i / p.su;
      let w = f32(weight[c]);
      let xh = (VF(x[o + i]) - mean) * rstd;
      let d = dz(xh * w + f32(bias[c]), VF(gy[o + i]));
      dx[o + i] = V(rstd * (d * w - a - xh * b));
    }
  }
}`,
});

/**
 * The split backward's chunks and entry head: workgroup (x, y) = chunk k < cg * per of
 * statistics group sg < nstat; chunk k covers units [i0, i0 + n) of channel cl of batch item f
 * of the group. `group_stats` combines the forward stats kernel's partials (Chan's formula).
 */
const SPLIT_BACKWARD_WGSL = `
struct Chunk { cl: u32, o: u32, n: u32 }
fn chunk_at(sg: u32, k: u32) -> Chunk {
  let cl = k / p.per;
  let j = k % p.per;
  let i0 = (j % p.cpc) * ${CHUNK_UNITS}u;
  let base = (sg / p.groups) * p.frames * p.row + (sg % p.groups) * p.lu;
  return Chunk(cl, base + (j / p.cpc) * p.row + cl * p.su + i0, min(${CHUNK_UNITS}u, p.su - i0));
}
fn stats_n(j: u32) -> f32 { return f32(min(${CHUNK_UNITS}u, p.lu - (j % p.cpf) * ${CHUNK_UNITS}u)) * VW; }
fn group_stats(sg: u32, lid: u32) -> vec2<f32> {
  var s = 0.0;
  for (var j = lid; j < p.nch; j += WG) { s += st[(sg * p.nch + j) * 2u] * stats_n(j); }
  let mean = wg_sum(s, lid) / p.count;
  var q = 0.0;
  for (var j = lid; j < p.nch; j += WG) {
    let d = st[(sg * p.nch + j) * 2u] - mean;
    q += st[(sg * p.nch + j) * 2u + 1u] + stats_n(j) * d * d;
  }
  return vec2<f32>(mean, 1.0 / sqrt(wg_sum(q, lid) / p.count + p.eps));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let k = wid.x;
  let sg = wid.y;
  if (k >= p.cg * p.per || sg >= p.nstat) { return; }
  let ms = group_stats(sg, lid);
  let ch = chunk_at(sg, k);
  let c = (sg % p.groups) * p.cg + ch.cl;`;

/** Split backward, pass 1: sums of dz and dz * xhat over each chunk (one channel each). */
const backwardPartialKernel = defineKernel<GroupNormVariant>("group_norm_bwd_partial", {
  key: groupNormKey,
  source: ({ dtype, variant }) => /* wgsl */ `
// group_norm_bwd_partial: 1 x [N, C, S] (as V units), 2 stats [nstat, nch, 2] f32 (mean, M2),
// 3 weight [C], 4 bias [C], 5 gy [N, C, S], 6 part [nspan, C, per, 2] f32.
${backwardPrelude(dtype, variant)}
${
    bindingsWgsl([
      "x: array<V>",
      "st: array<f32>",
      "weight: array<T>",
      "bias: array<T>",
      "gy: array<V>",
      "part: array<f32>",
    ])
  }
${SPLIT_BACKWARD_WGSL}
  let w = f32(weight[c]);
  let bb = f32(bias[c]);
  var s1 = VF(0.0);
  var s2 = VF(0.0);
  for (var i = lid; i < ch.n; i += WG) {
    let xh = (VF(x[ch.o + i]) - ms.x) * ms.y;
    let d = dz(xh * w + bb, VF(gy[ch.o + i]));
    s1 += d;
    s2 += d * xh;
  }
  let t1 = wg_sum(hsum(s1), lid);
  let t2 = wg_sum(hsum(s2), lid);
  if (lid == 0u) {
    part[(sg * p.cg * p.per + k) * 2u] = t1;
    part[(sg * p.cg * p.per + k) * 2u + 1u] = t2;
  }
}`,
});

/** Split backward, pass 2: the group means from all its chunks' partials, then dx of a chunk. */
const backwardDxKernel = defineKernel<GroupNormVariant>("group_norm_bwd_dx", {
  key: groupNormKey,
  source: ({ dtype, variant }) => /* wgsl */ `
// group_norm_bwd_dx: 1 x [N, C, S] (as V units), 2 stats [nstat, nch, 2] f32, 3 weight [C],
// 4 bias [C], 5 gy [N, C, S], 6 part [nspan, C, per, 2] f32, 7 dx [N, C, S].
${backwardPrelude(dtype, variant)}
${
    bindingsWgsl([
      "x: array<V>",
      "st: array<f32>",
      "weight: array<T>",
      "bias: array<T>",
      "gy: array<V>",
      "part: array<f32>",
      "dx: array<V>",
    ])
  }
${SPLIT_BACKWARD_WGSL}
  var sa = 0.0;
  var sb = 0.0;
  for (var j = lid; j < p.cg * p.per; j += WG) {
    let wj = f32(weight[(sg % p.groups) * p.cg + j / p.per]);
    sa += wj * part[(sg * p.cg * p.per + j) * 2u];
    sb += wj * part[(sg * p.cg * p.per + j) * 2u + 1u];
  }
  let a = wg_sum(sa, lid) / p.count;
  let b = wg_sum(sb, lid) / p.count;
  let w = f32(weight[c]);
  let bb = f32(bias[c]);
  for (var i = lid; i < ch.n; i += WG) {
    let xh = (VF(x[ch.o + i]) - ms.x) * ms.y;
    let d = dz(xh * w + bb, VF(gy[ch.o + i]));
    dx[ch.o + i] = V(ms.y * (d * w - a - xh * b));
  }
}`,
});

/** dweight / dbias: one workgroup per channel sums its nspan x per partials. */
const paramsKernel = defineKernel("group_norm_bwd_params", ({ dtype }) => /* wgsl */ `
// group_norm_bwd_params: 1 part [nspan, C, per, 2] f32, 2 dweight [C], 3 dbias [C].
${prelude(dtype, { wg: WG, reductions: true })}
struct Params { c: u32, per: u32, nspan: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> part: array<f32>;
${outputsWgsl(2, ["dweight: array<T>", "dbias: array<T>"])}

${mainPerGroupWgsl("c", "p.c")}
  var s1 = 0.0;
  var s2 = 0.0;
  for (var t = lid; t < p.nspan * p.per; t += WG) {
    let e = ((t / p.per) * p.c + c) * p.per + t % p.per;
    s1 += part[e * 2u];
    s2 += part[e * 2u + 1u];
  }
  let db = wg_sum(s1, lid);
  let dw = wg_sum(s2, lid);
  if (lid == 0u) {
    dweight[c] = T(dw);
    dbias[c] = T(db);
  }
}`);

/** Options of {@link groupNormBackward}: the forward's inputs and options. */
export interface GroupNormBackwardOptions extends GroupNormOptions {
  x: Tensor;
  weight: Tensor;
  bias: Tensor;
  /** Which of [dx, dweight, dbias] to return (the others are null). Default all. */
  needs?: readonly boolean[];
}

/** Gradients of a norm's inputs; null where not asked for. */
export interface NormGradients {
  dx: Tensor | null;
  dweight: Tensor | null;
  dbias: Tensor | null;
}

/**
 * Backward of {@link groupNorm} (with its `frames` and `silu` options) given dL/dy `gy`:
 * dx [N, C, ...], dweight and dbias [C], in x's dtype (f32 accumulation).
 *
 * @example
 * ```ts
 * const { dx, dweight, dbias } = groupNormBackward(gpu, gy, {
 *   x, weight: w, bias: b, groups: 32, eps: 1e-6, frames: 16,
 * });
 * ```
 */
export function groupNormBackward(
  gpu: Gpu,
  gy: Tensor,
  options: GroupNormBackwardOptions,
): NormGradients {
  const { x, weight, bias, groups, eps, silu = false, frames = 1 } = options;
  const [needX = true, needW = true, needB = true] = options.needs ?? [];
  const [n, c] = checkGroupNorm(x, weight, bias, options, "group_norm backward");
  if (gy.size !== x.size || gy.dtype !== x.dtype) {
    throw new Error(
      `group_norm backward: expected gy ${fmtShape(x.shape)} ${x.dtype}, got ${
        fmtShape(gy.shape)
      } ${gy.dtype}`,
    );
  }
  const dx = gpu.empty(x.shape, x.dtype, "group_norm.dx");
  const dweight = gpu.empty([c], x.dtype, "group_norm.dweight");
  const dbias = gpu.empty([c], x.dtype, "group_norm.dbias");
  const s = x.size / (n * c);
  const vw = s % 4 === 0 ? 4 : 1;
  const variant = { vec: vw === 4, silu };
  const cg = c / groups, su = s / vw, lu = cg * su;
  const nspan = n / frames;
  const count = frames * lu * vw;
  const cpf = Math.ceil(lu / CHUNK_UNITS), nch = frames * cpf;
  const cpc = Math.ceil(su / CHUNK_UNITS);
  // As in the forward: few groups leave a GPU's cores idle, not a CPU rasterizer's.
  const few = nspan * groups < FEW_GROUPS && nch >= 4 && !gpu.info.isFallback;
  const split = options.split ?? (count > SPLIT_THRESHOLD || few);
  const per = split ? frames * cpc : 1;
  const part = gpu.empty([nspan, c, per, 2], "f32", "group_norm.grad_partials");
  if (x.size > 0) {
    const item = frames > 1 ? "video" : "image";
    const runs = bindingRuns(gpu, "group_norm backward", nspan, [x, gy, dx, part], item);
    for (const [s0, count] of runs) {
      const win = (t: Tensor) => t.window(nspan, s0, count);
      const nstat = count * groups;
      const params = new Params().u32(groups).u32(cg).u32(su).u32(lu).u32(c * su).u32(frames)
        .u32(nstat).u32(nch).u32(cpf).f32(frames * lu * vw).f32(eps);
      const bparams = new Params().u32(groups).u32(cg).u32(su).u32(lu).u32(c * su).u32(frames)
        .u32(nstat).u32(nch).u32(cpf).f32(frames * lu * vw).f32(eps).u32(per).u32(cpc).u32(c)
        .u32(count);
      const [xw, gyw, dxw, pw] = [x, gy, dx, part].map(win);
      if (!split) {
        gpu.dispatch(backwardKernel, {
          dtype: x.dtype,
          variant: { ...variant, wg: fusedThreads(frames * lu) },
          params: bparams,
          bindings: [xw, weight, bias, gyw, pw, dxw],
          groups: grid1d(nstat),
        });
        continue;
      }
      if (cg * per > 65535 || nstat > 65535 || nch > 65535) {
        throw new Error(
          `group_norm backward: ${nstat} groups x ${cg * per} chunks exceed the dispatch grid`,
        );
      }
      const st = gpu.empty([nstat, nch, 2], "f32", "group_norm.partials");
      gpu.dispatch(statsKernel, {
        dtype: x.dtype,
        variant,
        params,
        bindings: [xw, st],
        groups: [nch, nstat, 1],
      });
      const grid = [cg * per, nstat, 1] as const;
      const common = [xw, st, weight, bias, gyw, pw];
      gpu.dispatch(backwardPartialKernel, {
        dtype: x.dtype,
        variant,
        params: bparams,
        bindings: common,
        groups: grid,
      });
      if (needX) {
        gpu.dispatch(backwardDxKernel, {
          dtype: x.dtype,
          variant,
          params: bparams,
          bindings: [...common, dxw],
          groups: grid,
        });
      }
      st.release();
    }
    if (needW || needB) {
      gpu.dispatch(paramsKernel, {
        dtype: x.dtype,
        params: new Params().u32(c).u32(per).u32(nspan),
        bindings: [part, dweight, dbias],
        groups: grid1d(c),
      });
    }
  }
  part.release();
  const keep = (t: Tensor, need: boolean) => {
    if (need) return t;
    t.release();
    return null;
  };
  return { dx: keep(dx, needX), dweight: keep(dweight, needW), dbias: keep(dbias, needB) };
}
