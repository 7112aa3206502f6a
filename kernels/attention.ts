/**
 * Fused multi-head attention (flash attention): `softmax(scale * q k^T) v` per head without ever
 * materialising the score matrix. One workgroup owns a block of query rows; K/V tiles of `BK`
 * keys are staged through workgroup memory and shared by all of its rows; each row keeps a
 * running max and sum (online softmax, f32) and f32 accumulators in registers.
 *
 * Layout is token-major, as Linear projections produce it: `q [B, Lq, H*d]`, `k, v [Bk, Lk, H*d]`
 * with head `h` in channels `[h*d, (h+1)*d)`.
 *
 * Work decomposition (compile-time per head-dim bucket `DP`, see {@link attentionTile}):
 * - `TD` threads split one query row's head dim; each holds `DP / TD` channels of q (pre-scaled
 *   by `scale * log2(e)`) and of the output accumulator. With `TD > 1` the partial dot products
 *   are summed through workgroup memory.
 * - `BQ` query rows per workgroup. When `Lq <= BQ / 2` (temporal attention over frames, tiny
 *   sequences, huge batch) one workgroup packs `floor(BQ / Lq)` (batch, head) pairs; the key
 *   slots of all its pairs are tiled together and each row only visits its own pair's keys.
 * - `causal` skips key tiles after the block's last query and masks keys j > i.
 *
 * Dense variant (d <= 64, not causal, `Lq > BQ / 2`: SD's spatial and cross attention): every
 * thread owns `rows` whole query rows, a key tile's scores are registers with compile-time
 * K/V tile offsets, the key tail is masked with `select`; no per-row bounds, no score array in
 * workgroup memory. Its layout (threads, rows, keys) is chosen per adapter, see
 * {@link denseLayout}.
 * @module
 */

import type { Gpu } from "./gpu/device.ts";
import { bindingRuns, fitsOneBinding } from "./gpu/chunks.ts";
import { ceilDiv, defineKernel, grid1d, Params } from "./gpu/kernel.ts";
import { type DType, fmtShape, type Tensor } from "./gpu/tensor.ts";
import { recording, taped } from "./gpu/tape.ts";
import { prelude, vecKey, type VecVariant } from "./wgsl.ts";
import { attentionBackward } from "./attention_backward.ts";

/** Options of {@link attention}. */
export interface AttentionOptions {
  /** Number of heads H; the last dim of q/k/v is `H * d`. */
  heads: number;
  /** Score scale; default `1 / sqrt(d)`. */
  scale?: number;
  /** Mask key j > query i (CLIP text encoder); requires Lq == Lk. */
  causal?: boolean;
  /** q batch b reads k/v batch `floor(b / kvBroadcast)`; default 1. */
  kvBroadcast?: number;
}

/** Compile-time tiling of one head-dim bucket. */
export interface AttentionTile {
  /** Padded head dim (multiple of 4, >= d). */
  dp: number;
  /** Threads per query row (split the head dim). */
  td: number;
  /** Query rows per workgroup. */
  bq: number;
  /** Keys per K/V tile in workgroup memory. */
  bk: number;
}

/** Head-dim buckets: SD1.5 uses 40/80/160 (UNet, motion modules), CLIP 64, the VAE 512. */
const TILES: readonly AttentionTile[] = [
  { dp: 8, td: 1, bq: 64, bk: 64 },
  { dp: 16, td: 1, bq: 64, bk: 64 },
  { dp: 32, td: 1, bq: 64, bk: 32 },
  { dp: 40, td: 1, bq: 64, bk: 32 },
  { dp: 64, td: 1, bq: 64, bk: 32 },
  { dp: 80, td: 2, bq: 64, bk: 16 },
  { dp: 96, td: 2, bq: 64, bk: 16 },
  { dp: 128, td: 4, bq: 32, bk: 16 },
  { dp: 160, td: 4, bq: 32, bk: 16 },
  { dp: 256, td: 8, bq: 16, bk: 8 },
  { dp: 512, td: 8, bq: 16, bk: 4 },
];

/** Largest supported head dim. */
export const MAX_HEAD_DIM = 512;

/**
 * The tiling used for head dim `d` (the smallest bucket that holds it).
 *
 * @example
 * ```ts
 * attentionTile(40); // { dp: 40, td: 1, bq: 64, bk: 32 }
 * ```
 */
export function attentionTile(d: number): AttentionTile {
  const t = TILES.find((t) => t.dp >= d);
  if (!t || d < 1) {
    throw new Error(`attention: expected head dim in [1, ${MAX_HEAD_DIM}], got ${d}`);
  }
  return t;
}

/**
 * Workgroup memory of a tiling in bytes: K and V tiles (vec4<f32>) plus the score rows.
 *
 * @example
 * ```ts
 * attentionSharedBytes(attentionTile(160)); // 29184, under the 32 KiB most GPUs allow
 * ```
 */
export function attentionSharedBytes(t: AttentionTile): number {
  return 2 * t.bk * t.dp * 4 + t.bq * t.td * (t.bk + 1) * 4;
}

function loaders(vec: boolean): string {
  if (vec) {
    return ["q", "k", "v"].map((b) => `
fn load_${b}(base: u32, c4: u32) -> vec4<f32> { return vec4<f32>(${b}[(base >> 2u) + c4]); }`)
      .join("") + `
fn store_out(base: u32, c4: u32, x: vec4<f32>) { out[(base >> 2u) + c4] = T4(x); }`;
  }
  return ["q", "k", "v"].map((b) => `
fn load_${b}(base: u32, c4: u32) -> vec4<f32> {
  var r = vec4<f32>(0.0);
  for (var x = 0u; x < 4u; x++) {
    if (c4 * 4u + x < p.d) { r[x] = f32(${b}[base + c4 * 4u + x]); }
  }
  return r;
}`).join("") + `
fn store_out(base: u32, c4: u32, x: vec4<f32>) {
  for (var i = 0u; i < 4u; i++) {
    if (c4 * 4u + i < p.d) { out[base + c4 * 4u + i] = T(x[i]); }
  }
}`;
}

/** Repeats a WGSL snippet for c = 0..n-1 (per-thread vectors stay in registers). */
function unroll(n: number, body: (c: number) => string): string {
  return Array.from({ length: n }, (_, c) => body(c)).join("");
}

/** Compile-time options of the attention kernels. */
interface AttentionVariant extends VecVariant {
  /** The head-dim bucket. */
  tile: AttentionTile;
  /** General kernel only: mask key j > query i. */
  causal: boolean;
  /** The dense kernel's work split; null for the general kernel. */
  dense: DenseLayout | null;
  /** General kernel only: also write each row's log2-sum-exp (binding 5, for the backward). */
  lse: boolean;
}

/**
 * Cache key: `d<dp>[_causal]_<v4|s>[_lse]` or `d<dp>_dense_t<threads>_r<rows>_k<keys>_<v4|s>`.
 */
function attentionKey(v: AttentionVariant): string {
  const l = v.dense;
  const kind = l ? `_dense_t${l.threads}_r${l.rows}_k${l.keys}` : v.causal ? "_causal" : "";
  return `d${v.tile.dp}${kind}_${vecKey(v)}${v.lse ? "_lse" : ""}`;
}

/** The prelude, params, bindings (q, k, v, out as V units) and loaders of both kernels. */
function headerWgsl(dtype: DType, v: AttentionVariant, wg: number): string {
  return `${prelude(dtype, { vec: v.vec, wg })}
struct Params {
  bh: u32, heads: u32, lq: u32, lk: u32, d: u32, kvb: u32,
  group_pairs: u32, q_blocks: u32, seg: u32, scale: f32, kv0: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<V>;
@group(0) @binding(2) var<storage, read> k: array<V>;
@group(0) @binding(3) var<storage, read> v: array<V>;
@group(0) @binding(4) var<storage, read_write> out: array<V>;${
    v.lse ? "\n@group(0) @binding(5) var<storage, read_write> lse: array<f32>;" : ""
  }
${loaders(v.vec)}`;
}

function attentionSource(dtype: DType, variant: AttentionVariant): string {
  const { tile, causal } = variant;
  const { dp, td, bq, bk } = tile;
  const cpt = dp / 4 / td;
  // With TD > 1 the partial dot products of a row's TD threads are summed in workgroup memory.
  const reduce = td === 1 ? "" : `
    workgroupBarrier();
    for (var s = lo + tdi; s < hi; s += TD) {
      let kr = s - t0;
      var tot = 0.0;
      for (var x = 0u; x < TD; x++) { tot += sc[s0 + x * BKP + kr]; }
      sc[s0 + kr] = tot;
    }
    workgroupBarrier();`;
  return /* wgsl */ `// attention (flash, online softmax), variant ${attentionKey(variant)}.
// Bindings: 0 params; 1 q [B, Lq, H*d]; 2 k [Bk, Lk, H*d]; 3 v [Bk, Lk, H*d]; 4 out [B, Lq, H*d]
// (V elements). A "pair" is (b, h), pair = b*H + h; k/v batch of b is b / kvb + kv0.
// Workgroup: BQ query rows x TD threads per row (each holds DP/TD channels of q and of the output
// accumulator in q<c>/acc<c>, vec4 c4 = tdi + TD*c); key slots (pair*Lk + j) tiled BK at a time through ks/vs.
${headerWgsl(dtype, variant, bq * td)}
const DP4: u32 = ${dp / 4}u;
const TD: u32 = ${td}u;
const BQ: u32 = ${bq}u;
const BK: u32 = ${bk}u;
const BKP: u32 = ${bk + 1}u;
const CAUSAL: bool = ${causal};

var<workgroup> ks: array<vec4<f32>, ${bk * dp / 4}>;
var<workgroup> vs: array<vec4<f32>, ${bk * dp / 4}>;
// Scores: thread tid's partial row at tid*BKP; a query row's summed scores at (r*TD)*BKP.
var<workgroup> sc: array<f32, ${bq * td * (bk + 1)}>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let w = group_id(wid, nwg);
  if (w >= ((p.bh + p.group_pairs - 1u) / p.group_pairs) * p.q_blocks) { return; }
  let pair_base = (w / p.q_blocks) * p.group_pairs;
  let qb = w % p.q_blocks;
  let r = tid / TD;
  let tdi = tid % TD;
  let g = r / p.seg;
  let pair = pair_base + g;
  let i = qb * BQ + r % p.seg;
  let valid = g < p.group_pairs && pair < p.bh && i < p.lq;

  // Key slots of this workgroup, and of this row.
  let k_begin = pair_base * p.lk;
  var k_end = min(pair_base + p.group_pairs, p.bh) * p.lk;
  if (CAUSAL && p.group_pairs == 1u) { k_end = k_begin + min(p.lk, qb * BQ + BQ); }
  var row_begin = 0u;
  var row_end = 0u;
  var q_base = 0u;
${
    unroll(cpt, (c) => `
  var q${c} = vec4<f32>(0.0);
  var acc${c} = vec4<f32>(0.0);`)
  }
  if (valid) {
    let b = pair / p.heads;
    q_base = ((b * p.lq + i) * p.heads + (pair - b * p.heads)) * p.d;
    row_begin = pair * p.lk;
    row_end = row_begin + select(p.lk, min(p.lk, i + 1u), CAUSAL);
${
    unroll(cpt, (c) => `
    if ((tdi + ${c}u * TD) * 4u < p.d) { q${c} = load_q(q_base, tdi + ${c}u * TD) * p.scale; }`)
  }
  }
  var mx = -3.0e38;
  var l = 0.0;
  let s_own = tid * BKP;
  let s0 = r * TD * BKP;

  for (var t0 = k_begin; t0 < k_end; t0 += BK) {
    // Stage K/V slots [t0, t0 + BK) (channels >= d are zero so padded dot products vanish).
    for (var e = tid; e < BK * DP4; e += WG) {
      let kr = e / DP4;
      let c4 = e - kr * DP4;
      let slot = t0 + kr;
      var kx = vec4<f32>(0.0);
      var vx = vec4<f32>(0.0);
      if (slot < k_end && c4 * 4u < p.d) {
        let pr = slot / p.lk;
        let j = slot - pr * p.lk;
        let b = pr / p.heads;
        let base = (((b / p.kvb + p.kv0) * p.lk + j) * p.heads + (pr - b * p.heads)) * p.d;
        kx = load_k(base, c4);
        vx = load_v(base, c4);
      }
      ks[e] = kx;
      vs[e] = vx;
    }
    workgroupBarrier();
    let lo = max(row_begin, t0);
    let hi = min(row_end, t0 + BK);
    // Scores (log2 domain) of this row's keys in the tile, over this thread's channels.
    for (var s = lo; s < hi; s++) {
      let kb = (s - t0) * DP4 + tdi;
      var dt = 0.0;
${
    unroll(cpt, (c) => `
      dt += dot(q${c}, ks[kb + ${c * td}u]);`)
  }
      sc[s_own + s - t0] = dt;
    }${reduce}
    // Online softmax: rescale by exp2(old max - new max), accumulate exp2(s - max) * v.
    if (lo < hi) {
      var nm = mx;
      for (var s = lo; s < hi; s++) { nm = max(nm, sc[s0 + s - t0]); }
      let alpha = exp2(mx - nm);
      mx = nm;
      l *= alpha;
${
    unroll(cpt, (c) => `
      acc${c} *= alpha;`)
  }
      for (var s = lo; s < hi; s++) {
        let kr = s - t0;
        let pw = exp2(sc[s0 + kr] - mx);
        l += pw;
        let vb = kr * DP4 + tdi;
${
    unroll(cpt, (c) => `
        acc${c} += pw * vs[vb + ${c * td}u];`)
  }
      }
    }
    workgroupBarrier();
  }
  if (valid) {
    let inv = 1.0 / l;
${
    unroll(cpt, (c) => `
    if ((tdi + ${c}u * TD) * 4u < p.d) { store_out(q_base, tdi + ${c}u * TD, acc${c} * inv); }`)
  }${
    variant.lse
      ? `
    // lse [B, H, Lq] in the log2 domain of the scaled scores: P = exp2(s - lse).
    if (tdi == 0u) { lse[pair * p.lq + i] = mx + log2(l); }`
      : ""
  }
  }
}`;
}

/**
 * Work split of the dense variant: `threads` per workgroup, each owning `rows` query rows
 * (a workgroup covers `threads * rows` consecutive rows of one (b, h) pair).
 */
export interface DenseLayout {
  threads: number;
  rows: number;
  /** Keys per K/V tile (their scores are registers). */
  keys: number;
}

/**
 * The dense layout for an adapter and padded head dim `dp` (<= 64). Hardware GPUs: 64 threads,
 * one row each, 16-key tiles (q, the accumulator and 16 scores fit in registers; K/V reads are
 * workgroup-memory broadcasts). Software adapters (llvmpipe runs invocations 8 to a SIMD group
 * and every workgroup-memory read inside a loop as a per-lane loop, so reads, not FMAs, cost):
 * 16 threads owning `rows` (largest power of two <= min(8, 160 / dp)) rows each and 8-key
 * tiles; `rows * dp` is capped because compile time grows with the unrolled rows x keys x dp.
 *
 * @example
 * ```ts
 * denseLayout({ isFallback: false }, 40); // { threads: 64, rows: 1, keys: 16 }
 * denseLayout({ isFallback: true }, 40); // { threads: 16, rows: 4, keys: 8 }
 * denseLayout({ isFallback: true }, 16); // { threads: 16, rows: 8, keys: 8 }
 * ```
 */
export function denseLayout(adapter: { isFallback: boolean }, dp: number): DenseLayout {
  if (!adapter.isFallback) return { threads: 64, rows: 1, keys: 16 };
  let rows = 8;
  while (rows > 1 && rows * dp > 160) rows /= 2;
  return { threads: 16, rows, keys: 8 };
}

/**
 * Dense variant source (head dim <= 64, no mask, one (b, h) pair per workgroup): each thread
 * owns `rows` query rows (q, accumulators and a key tile's scores in registers), so every K/V
 * word read from workgroup memory feeds `rows` rows; K/V tile offsets are compile-time (all
 * threads read the same word: a broadcast), the key tail is masked with `select`, no per-row
 * loop bounds.
 */
function denseSource(dtype: DType, variant: AttentionVariant, layout: DenseLayout): string {
  const { dp } = variant.tile;
  const { threads: nt, rows, keys: bk } = layout;
  const dp4 = dp / 4;
  const R = Array.from({ length: rows }, (_, r) => r);
  const J = Array.from({ length: bk }, (_, j) => j);
  const C = Array.from({ length: dp4 }, (_, c) => c);
  const tree = (xs: string[], op: (a: string, b: string) => string): string =>
    xs.length === 1 ? xs[0] : op(
      tree(xs.slice(0, xs.length >> 1), op),
      tree(xs.slice(xs.length >> 1), op),
    );
  const each = <T>(xs: T[], f: (x: T) => string) => xs.map(f).join("");
  return /* wgsl */ `// attention (flash, online softmax), dense variant ${attentionKey(variant)}.
// Bindings: 0 params; 1 q [B, Lq, H*d]; 2 k [Bk, Lk, H*d]; 3 v [Bk, Lk, H*d]; 4 out [B, Lq, H*d]
// (V elements). One workgroup = WG*R query rows of one pair (b, h); thread tid owns rows
// tid + r*WG (r < R), holding q and the output accumulator in q<r>_<c>/a<r>_<c>; keys staged BK
// at a time through ks/vs; scores s<r>_<j> in registers.
${headerWgsl(dtype, variant, nt)}
const DP4: u32 = ${dp4}u;
const BK: u32 = ${bk}u;
const NEG: f32 = -3.0e38;

var<workgroup> ks: array<vec4<f32>, ${bk * dp4}>;
var<workgroup> vs: array<vec4<f32>, ${bk * dp4}>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let w = group_id(wid, nwg);
  if (w >= p.bh * p.q_blocks) { return; }
  let pair = w / p.q_blocks;
  let i0 = (w % p.q_blocks) * ${nt * rows}u + tid;
  let b = pair / p.heads;
  let h = pair - b * p.heads;
  let row = p.heads * p.d;
  let kv_base = (b / p.kvb + p.kv0) * p.lk * row + h * p.d;
${
    each(R, (r) =>
      `
  let qb${r} = ((b * p.lq + i0 + ${r * nt}u) * p.heads + h) * p.d;
  var m${r} = NEG;
  var l${r} = 0.0;` + each(C, (c) => `
  var q${r}_${c} = vec4<f32>(0.0);
  var a${r}_${c} = vec4<f32>(0.0);`) + `
  if (i0 + ${r * nt}u < p.lq) {` + each(C, (c) => `
    if (${c * 4}u < p.d) { q${r}_${c} = load_q(qb${r}, ${c}u) * p.scale; }`) + `
  }`)
  }
  for (var t0 = 0u; t0 < p.lk; t0 += BK) {
    // Stage keys [t0, t0 + BK) (keys >= Lk and channels >= d are zero).
    for (var e = tid; e < BK * DP4; e += WG) {
      let kr = e / DP4;
      let c4 = e - kr * DP4;
      var kx = vec4<f32>(0.0);
      var vx = vec4<f32>(0.0);
      if (t0 + kr < p.lk && c4 * 4u < p.d) {
        let base = kv_base + (t0 + kr) * row;
        kx = load_k(base, c4);
        vx = load_v(base, c4);
      }
      ks[e] = kx;
      vs[e] = vx;
    }
    workgroupBarrier();
    // Scores (log2 domain); keys past Lk get NEG so exp2 makes them 0.
    let n = p.lk - t0;${
    each(J, (j) =>
      each(C, (c) => `
    let k${j}_${c} = ks[${j * dp4 + c}u];`) + each(R, (r) => `
    let s${r}_${j} = select(NEG, ${
        C.map((c) => `dot(q${r}_${c}, k${j}_${c})`).join(" + ")
      }, ${j}u < n);`))
  }${
    each(R, (r) => `
    let nm${r} = max(m${r}, ${tree(J.map((j) => `s${r}_${j}`), (x, y) => `max(${x}, ${y})`)});
    let al${r} = exp2(m${r} - nm${r});
    m${r} = nm${r};${
      each(J, (j) => `
    let p${r}_${j} = exp2(s${r}_${j} - nm${r});`)
    }
    l${r} = l${r} * al${r} + ${tree(J.map((j) => `p${r}_${j}`), (x, y) => `(${x} + ${y})`)};${
      each(C, (c) => `
    a${r}_${c} *= al${r};`)
    }`)
  }${
    each(J, (j) =>
      each(C, (c) => `
    let v${j}_${c} = vs[${j * dp4 + c}u];${
        each(R, (r) => `
    a${r}_${c} += p${r}_${j} * v${j}_${c};`)
      }`))
  }
    workgroupBarrier();
  }${
    each(R, (r) =>
      `
  if (i0 + ${r * nt}u < p.lq) {
    let inv = 1.0 / l${r};` + each(C, (c) => `
    if (${c * 4}u < p.d) { store_out(qb${r}, ${c}u, a${r}_${c} * inv); }`) + `
  }`)
  }
}`;
}

const attentionKernel = defineKernel<AttentionVariant>("attention", {
  key: attentionKey,
  source: ({ dtype, variant }) =>
    variant.dense ? denseSource(dtype, variant, variant.dense) : attentionSource(dtype, variant),
});

/**
 * Multi-head attention, token-major layout as Linear projections produce it:
 * `q [B, Lq, H*d]`, `k [Bk, Lk, H*d]`, `v [Bk, Lk, H*d]` -> out `[B, Lq, H*d]`. Head `h` uses
 * channels `[h*d, (h+1)*d)`. `Bk = B / kvBroadcast`: q batch b reads kv batch
 * `floor(b / kvBroadcast)` (cross-attention with frames folded into the batch shares one text
 * embedding per video; default 1). `scale` defaults to `1/sqrt(d)`. `causal`: key j > query i is
 * masked (CLIP, Lq == Lk). Softmax and accumulation are f32 for f16 tensors too; d <= 512.
 *
 * @example
 * ```ts
 * // spatial self-attention of 2 images at 64x64, 320 channels in 8 heads (d = 40)
 * const o = attention(gpu, q, k, v, { heads: 8 }); // q, k, v: [2, 4096, 320]
 * // cross-attention, 16 frames per video sharing the text embedding [2, 77, 320]
 * const x = attention(gpu, q2, ctxK, ctxV, { heads: 8, kvBroadcast: 16 }); // q2: [32, 4096, 320]
 * ```
 */
export function attention(
  gpu: Gpu,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionOptions,
): Tensor {
  return attentionWithLayout(gpu, q, k, v, { ...options, layout: undefined });
}

/**
 * {@link attention} with the kernel variant forced (tests run both dense layouts on any
 * adapter): `layout` "general" uses the general kernel, a {@link DenseLayout} the dense one
 * (d <= 64, not causal), undefined picks as {@link attention} does. While an autograd tape
 * records and q, k or v is tracked, the op runs {@link attentionForTraining} (the general
 * kernel, whatever `layout` says) and is recorded with its backward
 * (kernels/attention_backward.ts).
 *
 * @example
 * ```ts
 * const o = attentionWithLayout(gpu, q, k, v, { heads: 8, layout: "general" });
 * ```
 */
export function attentionWithLayout(
  gpu: Gpu,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionOptions & { layout: DenseLayout | "general" | undefined },
): Tensor {
  // Scores and the weighted sum: 2 x 2 Lq Lk per channel of every head.
  gpu.flops += 4 * q.shape[0] * q.shape[1] * k.shape[1] * q.shape[2];
  if (!recording(gpu, [q, k, v])) return attentionForward(gpu, q, k, v, options, false).out;
  const { out, lse } = attentionForward(gpu, q, k, v, options, true);
  if (!lse) return out;
  const { heads, scale, causal, kvBroadcast } = options;
  return taped(gpu, {
    name: "attention",
    inputs: [q, k, v],
    output: out,
    saved: [q, k, v, out, lse],
    backward: (gy, needs) => {
      const g = attentionBackward(gpu, gy, {
        q,
        k,
        v,
        out,
        lse,
        heads,
        scale,
        causal,
        kvBroadcast,
        needs: [needs[0], needs[1], needs[2]],
      });
      return [g.dq, g.dk, g.dv];
    },
  });
}

/**
 * The forward pass for training: {@link attention}'s output (computed by the general kernel)
 * and `lse [B, H, Lq]` f32, each row's log-sum-exp of its scores in the log2 domain
 * (`log2 sum_j exp2(scale * log2(e) * q . k_j)`), which the backward recomputes probabilities
 * from. Nothing is recorded: {@link attention} does that when a tape is on.
 *
 * @example
 * ```ts
 * const { out, lse } = attentionForTraining(gpu, q, k, v, { heads: 8 }); // lse: [B, 8, Lq]
 * const grads = attentionBackward(gpu, gout, { q, k, v, out, lse, heads: 8 });
 * ```
 */
export function attentionForTraining(
  gpu: Gpu,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionOptions,
): { out: Tensor; lse: Tensor } {
  const { out, lse } = attentionForward(gpu, q, k, v, { ...options, layout: "general" }, true);
  return { out, lse: lse ?? gpu.empty([q.shape[0], options.heads, q.shape[1]], "f32", "lse") };
}

/** Checks the operands and runs the forward; with `withLse` the lse too (null when empty). */
function attentionForward(
  gpu: Gpu,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionOptions & { layout: DenseLayout | "general" | undefined },
  withLse: boolean,
): { out: Tensor; lse: Tensor | null } {
  const { heads, causal = false, kvBroadcast = 1 } = options;
  const shapes = `q ${fmtShape(q.shape)}, k ${fmtShape(k.shape)}, v ${fmtShape(v.shape)}`;
  if (q.rank !== 3 || k.rank !== 3 || v.rank !== 3) {
    throw new Error(`attention: expected q [B, Lq, H*d], k and v [Bk, Lk, H*d], got ${shapes}`);
  }
  const [batch, lq, width] = q.shape;
  const [kvBatch, lk] = k.shape;
  if (!Number.isInteger(heads) || heads < 1 || width % heads !== 0) {
    throw new Error(`attention: expected heads (${heads}) to divide H*d = ${width} (${shapes})`);
  }
  if (!Number.isInteger(kvBroadcast) || kvBroadcast < 1 || batch % kvBroadcast !== 0) {
    throw new Error(`attention: expected kvBroadcast (${kvBroadcast}) to divide B (${shapes})`);
  }
  const kvShape = [batch / kvBroadcast, lk, width];
  if (k.shape.join() !== kvShape.join() || v.shape.join() !== kvShape.join()) {
    throw new Error(
      `attention: expected k and v ${
        fmtShape(kvShape)
      } (B / kvBroadcast = ${kvBatch}), got ${shapes}`,
    );
  }
  if (lk < 1) throw new Error(`attention: expected at least one key, got ${shapes}`);
  if (causal && lq !== lk) throw new Error(`attention: causal needs Lq == Lk, got ${shapes}`);
  if (q.dtype !== k.dtype || q.dtype !== v.dtype) {
    throw new Error(
      `attention: expected q, k, v of one dtype, got ${q.dtype}/${k.dtype}/${v.dtype}`,
    );
  }
  if (q.dtype === "f16" && !gpu.hasF16) {
    throw new Error("attention: f16 tensors need the shader-f16 feature, which this adapter lacks");
  }
  const d = width / heads;
  const tile = attentionTile(d);
  const shared = attentionSharedBytes(tile);
  if (shared > gpu.info.maxComputeWorkgroupStorageSize) {
    throw new Error(
      `attention: head dim ${d} needs ${shared} bytes of workgroup memory, the adapter allows ` +
        `${gpu.info.maxComputeWorkgroupStorageSize}`,
    );
  }
  const out = gpu.empty(q.shape, q.dtype, "attention");
  if (out.size === 0) return { out, lse: null };
  const lse = withLse ? gpu.empty([batch, heads, lq], "f32", "attention lse") : null;
  const layout = withLse ? "general" : options.layout;
  const run = { heads, causal, tile, d, layout, scale: options.scale, shapes };
  if (fitsOneBinding(gpu, [q, k, v, out, lse])) {
    attentionInto(gpu, q, k, v, out, lse, { ...run, kvBroadcast, kv0: 0 });
    return { out, lse };
  }
  // Batch items are independent. Runs of whole kv groups (kvBroadcast q items share one kv
  // item) when a group fits one binding, else runs of q items inside each group. k and v are
  // bound whole when they fit (the kernel's kv0 says which kv item a run starts at), else in
  // windows of whole kv items.
  const groups = kvBatch;
  const kvWhole = fitsOneBinding(gpu, [k, v]);
  const qg = (t: Tensor, s: number, n: number) => t.window(groups, s, n);
  const perGroup = q.byteLength / groups <= gpu.limits.maxStorageBufferBindingSize;
  if (perGroup) {
    const split = kvWhole ? [q, out, lse] : [q, k, v, out, lse];
    for (const [s, n] of bindingRuns(gpu, "attention", groups, split, "batch item")) {
      const [kw, vw] = kvWhole ? [k, v] : [qg(k, s, n), qg(v, s, n)];
      attentionInto(gpu, qg(q, s, n), kw, vw, qg(out, s, n), lse && qg(lse, s, n), {
        ...run,
        kvBroadcast,
        kv0: kvWhole ? s : 0,
      });
    }
    return { out, lse };
  }
  for (let g = 0; g < groups; g++) {
    const [qi, oi] = [q, out].map((t) => qg(t, g, 1));
    const li = lse && qg(lse, g, 1);
    const [ki, vi] = kvWhole ? [k, v] : [qg(k, g, 1), qg(v, g, 1)];
    for (const [s, n] of bindingRuns(gpu, "attention", kvBroadcast, [qi, oi, li], "batch item")) {
      const w = (t: Tensor) => t.window(kvBroadcast, s, n);
      // Every q item of the run reads kv item g.
      attentionInto(gpu, w(qi), ki, vi, w(oi), li && w(li), {
        ...run,
        kvBroadcast: n,
        kv0: kvWhole ? g : 0,
      });
    }
  }
  return { out, lse };
}

/** One attention launch into `out` (and `lse`, general kernel; every operand fits one binding). */
function attentionInto(
  gpu: Gpu,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  out: Tensor,
  lse: Tensor | null,
  o: {
    heads: number;
    causal: boolean;
    kvBroadcast: number;
    /** The kv item of q item 0 (a run's first item when k and v are bound whole). */
    kv0: number;
    tile: AttentionTile;
    d: number;
    layout: DenseLayout | "general" | undefined;
    scale: number | undefined;
    shapes: string;
  },
): void {
  const { heads, causal, kvBroadcast, tile, d, shapes } = o;
  const [batch, lq] = q.shape;
  const lk = k.shape[1];
  const bh = batch * heads;
  // Pack several (b, h) pairs into one workgroup when the sequence is short.
  const groupPairs = lq * 2 <= tile.bq ? Math.floor(tile.bq / lq) : 1;
  const layout = o.layout ??
    (tile.td === 1 && !causal && groupPairs === 1 ? denseLayout(gpu.info, tile.dp) : "general");
  if (layout !== "general" && (tile.td !== 1 || causal)) {
    throw new Error(`attention: the dense variant needs d <= 64 and no causal mask (${shapes})`);
  }
  const dense = layout !== "general";
  if (
    dense && !(Number.isInteger(layout.threads) && Number.isInteger(layout.rows) &&
      Number.isInteger(layout.keys) && layout.threads >= 1 && layout.rows >= 1 &&
      layout.keys >= 1 &&
      layout.threads <= gpu.info.maxComputeInvocationsPerWorkgroup)
  ) {
    throw new Error(
      `attention: expected a dense layout of 1..${gpu.info.maxComputeInvocationsPerWorkgroup} ` +
        `threads, >= 1 rows and >= 1 keys, got ${JSON.stringify(layout)}`,
    );
  }
  const qBlocks = dense
    ? ceilDiv(lq, layout.threads * layout.rows)
    : groupPairs > 1
    ? 1
    : ceilDiv(lq, tile.bq);
  const seg = groupPairs > 1 ? lq : tile.bq;
  const scale = (o.scale ?? 1 / Math.sqrt(d)) * Math.LOG2E;
  const params = new Params().u32(bh).u32(heads).u32(lq).u32(lk).u32(d).u32(kvBroadcast)
    .u32(dense ? 1 : groupPairs).u32(qBlocks).u32(seg).f32(scale).u32(o.kv0);
  gpu.dispatch(attentionKernel, {
    dtype: q.dtype,
    variant: { tile, causal, dense: dense ? layout : null, vec: d % 4 === 0, lse: lse !== null },
    params,
    bindings: lse ? [q, k, v, out, lse] : [q, k, v, out],
    groups: grid1d((dense ? bh : ceilDiv(bh, groupPairs)) * qBlocks),
  });
}
