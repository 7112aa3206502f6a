/**
 * Backward of {@link attention} (FlashAttention-2): the probabilities are recomputed from the
 * scores and the forward's per-row log-sum-exp instead of storing the Lq x Lk matrix.
 *
 * With `S = scale * q k^T` (per (b, h) pair), `P = exp(S - lse)`, `gout = dL/d(out)`:
 * 1. `D_i = sum_c gout[i, c] * out[i, c]` (one thread per row, {@link attentionBackward} step 1);
 * 2. `dS = P * (gout v^T - D)`, `dq = scale * dS k`: a workgroup owns query rows and streams
 *    key tiles (K, V staged in workgroup memory);
 * 3. `dk = scale * dS^T q`, `dv = P^T gout`: a workgroup owns key rows of one (kv batch, head)
 *    and streams query tiles of every query batch that reads it (kvBroadcast), so the sums over
 *    frames sharing a context stay in registers and no atomics are needed.
 *
 * Scores live in the log2 domain as in the forward: q (or k) is pre-scaled by
 * `scale * log2(e)` and the forward's lse is `log2 sum exp2`, so `P = exp2(s - lse)`.
 *
 * Work split of steps 2 and 3 (compile-time per head-dim bucket, {@link backwardTile}): `TD`
 * threads split a row's head dim (each holds `DP / TD` channels of its row's operands and
 * accumulators as vec4 registers); with `TD > 1` the partial dot products of a tile are summed
 * through workgroup memory. Storage is f32 or f16, all arithmetic f32. The `lse` and `D`
 * buffers are f32 `[B, H, Lq]`.
 * @module
 */

import type { Gpu } from "./gpu/device.ts";
import { bindingRuns } from "./gpu/chunks.ts";
import { ceilDiv, defineKernel, grid1d, Params } from "./gpu/kernel.ts";
import { type DType, fmtShape, type Tensor } from "./gpu/tensor.ts";
import type { AttentionOptions } from "./attention.ts";
import { launch1d, prelude, vecKey, type VecVariant } from "./wgsl.ts";

/** Compile-time tiling of one head-dim bucket of the backward kernels. */
export interface BackwardTile {
  /** Padded head dim (multiple of 4, >= d). */
  dp: number;
  /** Threads per owned row (split the head dim). */
  td: number;
  /** Rows a workgroup owns (query rows for dq, key rows for dk/dv). */
  rows: number;
  /** Streamed rows per tile staged in workgroup memory (keys for dq, queries for dk/dv). */
  tile: number;
}

/**
 * Buckets: 64 threads per workgroup, at most 40 channels (10 vec4) per thread and operand, and
 * workgroup memory under 32 KiB (d = 160: 29 KiB).
 */
const TILES: readonly BackwardTile[] = [
  { dp: 8, td: 1, rows: 64, tile: 32 },
  { dp: 16, td: 1, rows: 64, tile: 32 },
  { dp: 32, td: 1, rows: 64, tile: 16 },
  { dp: 40, td: 1, rows: 64, tile: 16 },
  { dp: 64, td: 2, rows: 32, tile: 16 },
  { dp: 80, td: 2, rows: 32, tile: 16 },
  { dp: 96, td: 4, rows: 16, tile: 16 },
  { dp: 128, td: 4, rows: 16, tile: 16 },
  { dp: 160, td: 4, rows: 16, tile: 16 },
  { dp: 256, td: 8, rows: 8, tile: 8 },
  { dp: 512, td: 16, rows: 4, tile: 4 },
];

/**
 * The backward tiling for head dim `d` (the smallest bucket that holds it).
 *
 * @example
 * ```ts
 * backwardTile(40); // { dp: 40, td: 1, rows: 64, tile: 16 }
 * backwardTile(160); // { dp: 160, td: 4, rows: 16, tile: 16 }
 * ```
 */
export function backwardTile(d: number): BackwardTile {
  const t = TILES.find((t) => t.dp >= d);
  if (!t || d < 1) throw new Error(`attention backward: expected head dim in [1, 512], got ${d}`);
  return t;
}

/**
 * Workgroup memory of the dk/dv kernel (the larger of the two) in bytes: two staged tiles
 * (vec4<f32>), their lse and D, and two score arrays.
 *
 * @example
 * ```ts
 * backwardSharedBytes(backwardTile(160)); // 29312
 * ```
 */
export function backwardSharedBytes(t: BackwardTile): number {
  return 2 * t.tile * t.dp * 4 + 2 * t.tile * 4 + 2 * t.rows * t.td * (t.tile + 1) * 4;
}

interface BackwardVariant extends VecVariant {
  tile: BackwardTile;
  causal: boolean;
}

function backwardKey(v: BackwardVariant): string {
  const t = v.tile;
  return `d${t.dp}_td${t.td}_r${t.rows}_t${t.tile}${v.causal ? "_causal" : ""}_${vecKey(v)}`;
}

/** `load_<name>(base, c4)`: channels [4*c4, 4*c4 + 4) of a row at element `base`, as f32. */
function loader(name: string, vec: boolean): string {
  if (vec) {
    return `
fn load_${name}(base: u32, c4: u32) -> vec4<f32> { return vec4<f32>(${name}[(base >> 2u) + c4]); }`;
  }
  return `
fn load_${name}(base: u32, c4: u32) -> vec4<f32> {
  var r = vec4<f32>(0.0);
  for (var x = 0u; x < 4u; x++) {
    if (c4 * 4u + x < p.d) { r[x] = f32(${name}[base + c4 * 4u + x]); }
  }
  return r;
}`;
}

/** `store_<name>(base, c4, x)`: the counterpart of {@link loader}. */
function storer(name: string, vec: boolean): string {
  if (vec) {
    return `
fn store_${name}(base: u32, c4: u32, x: vec4<f32>) { ${name}[(base >> 2u) + c4] = T4(x); }`;
  }
  return `
fn store_${name}(base: u32, c4: u32, x: vec4<f32>) {
  for (var i = 0u; i < 4u; i++) {
    if (c4 * 4u + i < p.d) { ${name}[base + c4 * 4u + i] = T(x[i]); }
  }
}`;
}

/** Repeats a WGSL snippet for c = 0..n-1 (per-thread vectors stay in registers). */
function unroll(n: number, body: (c: number) => string): string {
  return Array.from({ length: n }, (_, c) => body(c)).join("");
}

// ---------------------------------------------------------------- D = rowsum(gout * out)

const rowDotKernel = defineKernel<VecVariant>("attention_bwd_dot", {
  key: vecKey,
  source: ({ dtype, variant }) =>
    /* wgsl */ `// attention backward step 1: D = rowsum(gout * out).
// Bindings: 0 params; 1 gout [B, Lq, H*d]; 2 out [B, Lq, H*d] (V elements); 3 dd [B, H, Lq] f32.
// One thread per (b, i, h) row, n = B * Lq * H.
${prelude(dtype, { vec: variant.vec })}
struct Params { n: u32, heads: u32, lq: u32, d: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> g: array<V>;
@group(0) @binding(2) var<storage, read> o: array<V>;
@group(0) @binding(3) var<storage, read_write> dd: array<f32>;
${loader("g", variant.vec)}${loader("o", variant.vec)}
@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = thread_id(gid, nwg);
  if (t >= p.n) { return; }
  let h = t % p.heads;
  let bi = t / p.heads;
  let b = bi / p.lq;
  let base = t * p.d;
  var acc = 0.0;
  for (var c4 = 0u; c4 * 4u < p.d; c4++) { acc += dot(load_g(base, c4), load_o(base, c4)); }
  dd[(b * p.heads + h) * p.lq + (bi - b * p.lq)] = acc;
}`,
});

// ---------------------------------------------------------------- shared WGSL of steps 2, 3

function headerWgsl(dtype: DType, v: BackwardVariant, outputs: string[]): string {
  const { dp, td, rows, tile } = v.tile;
  const inputs = ["q", "k", "v", "g"];
  return `${prelude(dtype, { vec: v.vec, wg: rows * td })}
struct Params {
  bh: u32, heads: u32, lq: u32, lk: u32, d: u32, kvb: u32, blocks: u32, scale2: f32, scale: f32,
}
@group(0) @binding(0) var<uniform> p: Params;
${
    inputs.map((n, i) => `@group(0) @binding(${i + 1}) var<storage, read> ${n}: array<V>;`)
      .join("\n")
  }
@group(0) @binding(5) var<storage, read> lse: array<f32>;
@group(0) @binding(6) var<storage, read> dd: array<f32>;
${
    outputs.map((n, i) => `@group(0) @binding(${i + 7}) var<storage, read_write> ${n}: array<V>;`)
      .join("\n")
  }
${inputs.map((n) => loader(n, v.vec)).join("")}${outputs.map((n) => storer(n, v.vec)).join("")}
const DP4: u32 = ${dp / 4}u;
const TD: u32 = ${td}u;
const BR: u32 = ${rows}u;
const BS: u32 = ${tile}u;
const BSP: u32 = ${tile + 1}u;
const CAUSAL: bool = ${v.causal};
// Partial dot products of thread t at t*BSP; a row's results at (r*TD)*BSP.
var<workgroup> sa: array<f32, ${rows * td * (tile + 1)}>;
var<workgroup> da: array<f32, ${rows * td * (tile + 1)}>;`;
}

/**
 * The per-tile loop body over the `n` staged rows: each owned row's two dot products
 * (`a . xa[..]` and `b . ya[..]`), then `body` with `s` (log2-domain score) and `dp` in scope.
 * With TD > 1 the partial products go through `sa`/`da`; `body` then runs in a reduce pass that
 * stores `pr` and `ds` for the accumulate pass (`accum`).
 */
function tileLoop(
  cpt: number,
  td: number,
  [a, xa, b, ya]: [string, string, string, string],
  probs: string,
  accum: string,
): string {
  const dots = unroll(cpt, (c) => `
      s += dot(${a}${c}, ${xa}[kb + ${c * td}u]);
      dp += dot(${b}${c}, ${ya}[kb + ${c * td}u]);`);
  if (td === 1) {
    return `
    for (var kr = 0u; kr < n; kr++) {
      let kb = kr * DP4;
      var s = 0.0;
      var dp = 0.0;${dots}
${probs}${accum}
    }`;
  }
  return `
    for (var kr = 0u; kr < n; kr++) {
      let kb = kr * DP4 + tdi;
      var s = 0.0;
      var dp = 0.0;${dots}
      sa[s_own + kr] = s;
      da[s_own + kr] = dp;
    }
    workgroupBarrier();
    for (var kr = tdi; kr < n; kr += TD) {
      var s = 0.0;
      var dp = 0.0;
      for (var x = 0u; x < TD; x++) {
        s += sa[s0 + x * BSP + kr];
        dp += da[s0 + x * BSP + kr];
      }
${probs}
      sa[s0 + kr] = pr;
      da[s0 + kr] = ds;
    }
    workgroupBarrier();
    for (var kr = 0u; kr < n; kr++) {
      let kb = kr * DP4 + tdi;
      let pr = sa[s0 + kr];
      let ds = da[s0 + kr];${accum}
    }`;
}

// ---------------------------------------------------------------- step 2: dq

function dqSource(dtype: DType, v: BackwardVariant): string {
  const { dp, td } = v.tile;
  const cpt = dp / 4 / td;
  const probs = `      let pr = select(0.0, exp2(s - row_lse), t0 + kr < n_keys);
      let ds = pr * (dp - row_d);`;
  const accum = unroll(cpt, (c) => `
      acc${c} += ds * ka[kb + ${c * td}u];`);
  return /* wgsl */ `// attention backward step 2: dq = scale * dS k, variant ${backwardKey(v)}.
// Bindings: 0 params; 1 q [B, Lq, H*d]; 2 k, 3 v [B / kvb, Lk, H*d]; 4 g = dL/dout [B, Lq, H*d]
// (V elements); 5 lse, 6 dd = D [B, H, Lq] f32; 7 dq [B, Lq, H*d].
// Workgroup: BR query rows of pair (b, h) x TD threads (q, g and the dq accumulator of channels
// vec4 c4 = tdi + TD*c in q<c>/g<c>/acc<c>); keys staged BS at a time in ka/va.
${headerWgsl(dtype, v, ["dq"])}
var<workgroup> ka: array<vec4<f32>, ${v.tile.tile * dp / 4}>;
var<workgroup> va: array<vec4<f32>, ${v.tile.tile * dp / 4}>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let w = group_id(wid, nwg);
  if (w >= p.bh * p.blocks) { return; }
  let pair = w / p.blocks;
  let blk = w - pair * p.blocks;
  let r = tid / TD;
  let tdi = tid - r * TD;
  let i = blk * BR + r;
  let b = pair / p.heads;
  let h = pair - b * p.heads;
  let row = p.heads * p.d;
  let kv_base = (b / p.kvb) * p.lk * row + h * p.d;
  let q_base = ((b * p.lq + i) * p.heads + h) * p.d;
  var row_lse = 0.0;
  var row_d = 0.0;
  var n_keys = 0u;${
    unroll(cpt, (c) => `
  var q${c} = vec4<f32>(0.0);
  var g${c} = vec4<f32>(0.0);
  var acc${c} = vec4<f32>(0.0);`)
  }
  if (i < p.lq) {
    row_lse = lse[pair * p.lq + i];
    row_d = dd[pair * p.lq + i];
    n_keys = select(p.lk, min(p.lk, i + 1u), CAUSAL);${
    unroll(cpt, (c) => `
    if ((tdi + ${c}u * TD) * 4u < p.d) {
      q${c} = load_q(q_base, tdi + ${c}u * TD) * p.scale2;
      g${c} = load_g(q_base, tdi + ${c}u * TD);
    }`)
  }
  }
  let k_end = select(p.lk, min(p.lk, blk * BR + BR), CAUSAL);
  let s_own = tid * BSP;
  let s0 = r * TD * BSP;
  for (var t0 = 0u; t0 < k_end; t0 += BS) {
    // Stage keys [t0, t0 + BS) (keys >= k_end and channels >= d are zero).
    for (var e = tid; e < BS * DP4; e += WG) {
      let kr = e / DP4;
      let c4 = e - kr * DP4;
      var kx = vec4<f32>(0.0);
      var vx = vec4<f32>(0.0);
      if (t0 + kr < k_end && c4 * 4u < p.d) {
        let base = kv_base + (t0 + kr) * row;
        kx = load_k(base, c4);
        vx = load_v(base, c4);
      }
      ka[e] = kx;
      va[e] = vx;
    }
    workgroupBarrier();
    let n = min(BS, k_end - t0);${tileLoop(cpt, td, ["q", "ka", "g", "va"], probs, accum)}
    workgroupBarrier();
  }
  if (i < p.lq) {${
    unroll(cpt, (c) => `
    if ((tdi + ${c}u * TD) * 4u < p.d) { store_dq(q_base, tdi + ${c}u * TD, acc${c} * p.scale); }`)
  }
  }
}`;
}

// ---------------------------------------------------------------- step 3: dk, dv

function dkvSource(dtype: DType, v: BackwardVariant): string {
  const { dp, td } = v.tile;
  const cpt = dp / 4 / td;
  const probs = `      let live = j < p.lk && t0 + kr < p.lq && (!CAUSAL || t0 + kr >= j);
      let pr = select(0.0, exp2(s - la[kr]), live);
      let ds = pr * (dp - dda[kr]);`;
  const accum = unroll(cpt, (c) => `
      dv${c} += pr * ga[kb + ${c * td}u];
      dk${c} += ds * qa[kb + ${c * td}u];`);
  return /* wgsl */ `// attention backward step 3: dk = scale * dS^T q, dv = P^T g, variant ${
    backwardKey(v)
  }.
// Bindings: 0 params; 1 q [B, Lq, H*d]; 2 k, 3 v [B / kvb, Lk, H*d]; 4 g = dL/dout [B, Lq, H*d]
// (V elements); 5 lse, 6 dd = D [B, H, Lq] f32; 7 dk, 8 dv [B / kvb, Lk, H*d].
// Workgroup: BR key rows of (kv batch kb, head h) x TD threads (k, v and the dk/dv accumulators
// of channels vec4 c4 = tdi + TD*c in k<c>/v<c>/dk<c>/dv<c>); queries of the kvb batches
// kb*kvb.. that read kb staged BS at a time in qa/ga (their lse and D in la/dda).
${headerWgsl(dtype, v, ["dk", "dv"])}
var<workgroup> qa: array<vec4<f32>, ${v.tile.tile * dp / 4}>;
var<workgroup> ga: array<vec4<f32>, ${v.tile.tile * dp / 4}>;
var<workgroup> la: array<f32, ${v.tile.tile}>;
var<workgroup> dda: array<f32, ${v.tile.tile}>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let w = group_id(wid, nwg);
  let kv_pairs = p.bh / p.kvb;
  if (w >= kv_pairs * p.blocks) { return; }
  let pair = w / p.blocks;
  let blk = w - pair * p.blocks;
  let r = tid / TD;
  let tdi = tid - r * TD;
  let j = blk * BR + r;
  let kb = pair / p.heads;
  let h = pair - kb * p.heads;
  let row = p.heads * p.d;
  let k_base = ((kb * p.lk + j) * p.heads + h) * p.d;${
    unroll(cpt, (c) => `
  var k${c} = vec4<f32>(0.0);
  var v${c} = vec4<f32>(0.0);
  var dk${c} = vec4<f32>(0.0);
  var dv${c} = vec4<f32>(0.0);`)
  }
  if (j < p.lk) {${
    unroll(cpt, (c) => `
    if ((tdi + ${c}u * TD) * 4u < p.d) {
      k${c} = load_k(k_base, tdi + ${c}u * TD) * p.scale2;
      v${c} = load_v(k_base, tdi + ${c}u * TD);
    }`)
  }
  }
  // Causal (Lq == Lk): queries before the block's first key see none of its keys.
  let q_begin = select(0u, blk * BR, CAUSAL);
  let s_own = tid * BSP;
  let s0 = r * TD * BSP;
  for (var bi = 0u; bi < p.kvb; bi++) {
    let b = kb * p.kvb + bi;
    let stat = (b * p.heads + h) * p.lq;
    for (var t0 = q_begin; t0 < p.lq; t0 += BS) {
      // Stage queries [t0, t0 + BS) of batch b (rows >= Lq and channels >= d are zero).
      for (var e = tid; e < BS * DP4; e += WG) {
        let qr = e / DP4;
        let c4 = e - qr * DP4;
        var qx = vec4<f32>(0.0);
        var gx = vec4<f32>(0.0);
        if (t0 + qr < p.lq && c4 * 4u < p.d) {
          let base = ((b * p.lq + t0 + qr) * p.heads + h) * p.d;
          qx = load_q(base, c4);
          gx = load_g(base, c4);
        }
        qa[e] = qx;
        ga[e] = gx;
      }
      for (var e = tid; e < BS; e += WG) {
        let inside = t0 + e < p.lq;
        la[e] = select(0.0, lse[stat + min(t0 + e, p.lq - 1u)], inside);
        dda[e] = select(0.0, dd[stat + min(t0 + e, p.lq - 1u)], inside);
      }
      workgroupBarrier();
      let n = min(BS, p.lq - t0);${
    tileLoop(cpt, td, ["k", "qa", "v", "ga"], probs, accum).replaceAll("\n", "\n  ")
  }
      workgroupBarrier();
    }
  }
  if (j < p.lk) {${
    unroll(cpt, (c) => `
    if ((tdi + ${c}u * TD) * 4u < p.d) {
      store_dk(k_base, tdi + ${c}u * TD, dk${c} * p.scale);
      store_dv(k_base, tdi + ${c}u * TD, dv${c});
    }`)
  }
  }
}`;
}

const dqKernel = defineKernel<BackwardVariant>("attention_bwd_dq", {
  key: backwardKey,
  source: ({ dtype, variant }) => dqSource(dtype, variant),
});

const dkvKernel = defineKernel<BackwardVariant>("attention_bwd_dkv", {
  key: backwardKey,
  source: ({ dtype, variant }) => dkvSource(dtype, variant),
});

// ---------------------------------------------------------------- launcher

/** Options of {@link attentionBackward}: the forward's operands and options. */
export interface AttentionBackwardOptions extends AttentionOptions {
  /** The forward's inputs: q `[B, Lq, H*d]`, k and v `[B / kvBroadcast, Lk, H*d]`. */
  q: Tensor;
  k: Tensor;
  v: Tensor;
  /** The forward's output `[B, Lq, H*d]`. */
  out: Tensor;
  /** The forward's log2-domain row log-sum-exp `[B, H, Lq]` f32 (`attentionForTraining`). */
  lse: Tensor;
  /** Which of dq, dk, dv to compute (default all); the others are null. */
  needs?: readonly [boolean, boolean, boolean];
}

/** Gradients of attention's inputs (null where not asked for). */
export interface AttentionGrads {
  dq: Tensor | null;
  dk: Tensor | null;
  dv: Tensor | null;
}

/**
 * Gradients of q, k and v given `gout = dL/d(out)` (out's shape and dtype), from the saved
 * forward operands and its lse. dk and dv of a kv batch sum over the kvBroadcast query batches
 * that read it. Runs D = rowsum(gout * out), then the dq kernel (when asked) and the dk/dv
 * kernel (when dk or dv is asked), each split over runs of whole kv batches when an operand
 * exceeds one storage binding.
 *
 * @example
 * ```ts
 * const { out, lse } = attentionForTraining(gpu, q, k, v, { heads: 8, kvBroadcast: 16 });
 * const { dq, dk, dv } = attentionBackward(gpu, gout, { q, k, v, out, lse, heads: 8, kvBroadcast: 16 });
 * ```
 */
export function attentionBackward(
  gpu: Gpu,
  gout: Tensor,
  options: AttentionBackwardOptions,
): AttentionGrads {
  const { q, k, v, out, lse, heads, causal = false, kvBroadcast = 1 } = options;
  const [wantQ, wantK, wantV] = options.needs ?? [true, true, true];
  const shapes = `q ${fmtShape(q.shape)}, k ${fmtShape(k.shape)}, v ${fmtShape(v.shape)}, ` +
    `out ${fmtShape(out.shape)}, gout ${fmtShape(gout.shape)}, lse ${fmtShape(lse.shape)}`;
  if (q.rank !== 3 || k.rank !== 3 || v.rank !== 3) {
    throw new Error(
      `attention backward: expected q [B, Lq, H*d], k and v [Bk, Lk, H*d], got ${shapes}`,
    );
  }
  const [batch, lq, width] = q.shape;
  const lk = k.shape[1];
  if (!Number.isInteger(heads) || heads < 1 || width % heads !== 0) {
    throw new Error(`attention backward: expected heads (${heads}) to divide H*d (${shapes})`);
  }
  if (!Number.isInteger(kvBroadcast) || kvBroadcast < 1 || batch % kvBroadcast !== 0) {
    throw new Error(
      `attention backward: expected kvBroadcast (${kvBroadcast}) to divide B (${shapes})`,
    );
  }
  const kvBatch = batch / kvBroadcast;
  const same = (t: Tensor, s: readonly number[]) => t.shape.join() === s.join();
  if (
    !same(k, [kvBatch, lk, width]) || !same(v, k.shape) || !same(out, q.shape) ||
    gout.size !== q.size || !same(lse, [batch, heads, lq]) || lk < 1 || q.size === 0
  ) {
    throw new Error(
      `attention backward: expected a non-empty q, k, v [${kvBatch}, Lk >= 1, ${width}], ` +
        `out and gout ${fmtShape(q.shape)}, lse [${batch}, ${heads}, ${lq}], got ${shapes}`,
    );
  }
  if (causal && lq !== lk) {
    throw new Error(`attention backward: causal needs Lq == Lk, got ${shapes}`);
  }
  const dtype = q.dtype;
  if ([k, v, out, gout].some((t) => t.dtype !== dtype) || lse.dtype !== "f32") {
    throw new Error(
      `attention backward: expected q, k, v, out, gout of one dtype and lse f32, got ` +
        [q, k, v, out, gout, lse].map((t) => t.dtype).join("/"),
    );
  }
  const d = width / heads;
  const tile = backwardTile(d);
  const shared = backwardSharedBytes(tile);
  if (shared > gpu.info.maxComputeWorkgroupStorageSize) {
    throw new Error(
      `attention backward: head dim ${d} needs ${shared} bytes of workgroup memory, the ` +
        `adapter allows ${gpu.info.maxComputeWorkgroupStorageSize}`,
    );
  }
  const g = gout.reshape(q.shape);
  const dq = wantQ ? gpu.empty(q.shape, dtype, "attention dq") : null;
  const wantKV = wantK || wantV;
  const dk = wantKV ? gpu.empty(k.shape, dtype, "attention dk") : null;
  const dv = wantKV ? gpu.empty(v.shape, dtype, "attention dv") : null;
  if (!(wantQ || wantKV)) return { dq: null, dk: null, dv: null };
  const dd = gpu.empty([batch, heads, lq], "f32", "attention D");
  const scale = options.scale ?? 1 / Math.sqrt(d);
  const variant = { tile, causal, vec: d % 4 === 0 };
  const all = [q, k, v, g, out, lse, dd, dq, dk, dv];
  for (const [s, n] of bindingRuns(gpu, "attention backward", kvBatch, all, "kv batch item")) {
    const [qw, kw, vw, gw, ow, lw, ddw, dqw, dkw, dvw] = all.map((t) =>
      t && t.window(kvBatch, s, n)
    );
    const bh = n * kvBroadcast * heads;
    const rowsQ = n * kvBroadcast * lq * heads;
    gpu.dispatch(rowDotKernel, {
      dtype,
      variant: { vec: variant.vec },
      params: new Params().u32(rowsQ).u32(heads).u32(lq).u32(d),
      bindings: [gw!, ow!, ddw!],
      groups: launch1d(rowsQ),
    });
    const params = (rows: number) =>
      new Params().u32(bh).u32(heads).u32(lq).u32(lk).u32(d).u32(kvBroadcast)
        .u32(ceilDiv(rows, tile.rows)).f32(scale * Math.LOG2E).f32(scale);
    if (dqw) {
      const blocks = ceilDiv(lq, tile.rows);
      gpu.dispatch(dqKernel, {
        dtype,
        variant,
        params: params(lq),
        bindings: [qw!, kw!, vw!, gw!, lw!, ddw!, dqw],
        groups: grid1d(bh * blocks),
      });
    }
    if (dkw && dvw) {
      const blocks = ceilDiv(lk, tile.rows);
      gpu.dispatch(dkvKernel, {
        dtype,
        variant,
        params: params(lk),
        bindings: [qw!, kw!, vw!, gw!, lw!, ddw!, dkw, dvw],
        groups: grid1d((bh / kvBroadcast) * blocks),
      });
    }
  }
  dd.release();
  if (dk && !wantK) dk.release();
  if (dv && !wantV) dv.release();
  return { dq, dk: wantK ? dk : null, dv: wantV ? dv : null };
}
