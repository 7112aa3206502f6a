/**
 * Matrix multiplication and PyTorch-style Linear: a tiled GEMM with a fused epilogue
 * `out = act(alpha * a @ op(b) + bias) + residual`.
 *
 * Design: 256 threads per workgroup (16 x 16), a BM x BN output tile (BM = 16 * tm, BN = 16 * tn;
 * tm, tn = 4 or 8 per thread) and K steps of `bk` staged through workgroup memory
 * as f32 (A stored k-major so each thread reads its rows as vec4). The next K tile is prefetched
 * into registers while the current one is multiplied. The "v4" variant (K and N multiples of 4)
 * loads and stores vec4; the "s1" variant handles any size element by element. f16 tensors are
 * f16 in memory and f32 in registers and workgroup memory. The tile-loop and activation WGSL
 * is shared with kernels/conv2d.ts (an implicit GEMM).
 * @module
 */

import type { Gpu } from "./gpu/device.ts";
import { bindingRuns } from "./gpu/chunks.ts";
import { ceilDiv, defineKernel, Params, wgslDType } from "./gpu/kernel.ts";
import { type DType, fmtShape, type Tensor } from "./gpu/tensor.ts";
import {
  type Activation,
  ACTIVATIONS,
  activationWgsl,
  checkDTypes,
  epilogueBindingsWgsl,
  gemmGrid,
  sameShape,
} from "./gemm_common.ts";
import { gemmPath, launchDirectGemm } from "./gemm_direct.ts";

export type { Activation } from "./gemm_common.ts";

/** Threads per GEMM workgroup (16 x 16). */
export const GEMM_THREADS = 256;
/** A GEMM tile: BM = 16 * tm output rows, BN = 16 * tn columns, K steps of bk. */
export interface GemmTile {
  /** Output rows per thread: 4 or 8. */
  tm: 4 | 8;
  /** Output columns per thread: 4 or 8 (as vec4s 64 columns apart). */
  tn: 4 | 8;
  /** K depth staged per step: 16 or 32. */
  bk: 16 | 32;
}

let tileOverride: GemmTile | null = null;

/**
 * Forces the tiled GEMM path with one tile for every matmul / linear / conv2d launch (tests cover
 * every tile and the bench compares them); `null` restores the per-adapter choice of
 * {@link usesDirectGemm} and {@link pickGemmTile}.
 */
export function setGemmTileOverride(tile: GemmTile | null): void {
  tileOverride = tile;
}

/**
 * True when GEMMs on this adapter take the direct path of kernels/gemm_direct.ts (software
 * adapters; a forced tile always means the tiled path).
 */
export function usesDirectGemm(gpu: Gpu): boolean {
  return tileOverride === null && gemmPath(gpu.info) === "direct";
}

/**
 * Picks the tile for a `rows x cols` GEMM output. Real GPUs take the 128 x 128 tile (8 x 8 per
 * thread) or 128 x 64 only when there are enough tiles to fill an H100-class GPU (~2 per SM),
 * else 64 x 64. Software adapters, which use the direct path where K and N are divisible by 4,
 * take 128 x 128 for the rest (fewest workgroup-memory reads per FMA there).
 */
export function pickGemmTile(gpu: Gpu, rows: number, cols: number): GemmTile {
  if (tileOverride) return tileOverride;
  // Software adapters: the biggest register block wins, except that rows <= 64 (e.g. a conv
  // with 64 output channels) would leave half of a 128-row tile as padding.
  if (gpu.info.isFallback) return rows <= 64 ? { tm: 4, tn: 8, bk: 16 } : { tm: 8, tn: 8, bk: 16 };
  if (ceilDiv(rows, 128) * ceilDiv(cols, 128) >= 264) return { tm: 8, tn: 8, bk: 16 };
  if (ceilDiv(rows, 128) * ceilDiv(cols, 64) >= 264) return { tm: 8, tn: 4, bk: 16 };
  return { tm: 4, tn: 4, bk: 16 };
}

/** How {@link gemmMainLoopWgsl} loads its operands. */
export interface GemmLoopSpec {
  tile: GemmTile;
  /** Register slots per thread for one A / B tile (elements or vec4s). */
  aSlots: number;
  bSlots: number;
  /** WGSL expression loading B slot `i` of the K tile at `k0` (default `loadB(k0, e)`). */
  loadB?: (i: number, k0: string) => string;
  /** WGSL statements run after each load of B slot `i` (e.g. stepping incremental indices). */
  afterLoadB?: (i: number) => string;
}

/** Register slots per thread for loading a rows x bk tile (vec4 or scalar). */
export function gemmSlots(rows: number, bk: number, vec: boolean): number {
  return (rows * bk) / (GEMM_THREADS * (vec ? 4 : 1));
}

/**
 * WGSL statements of the GEMM main loop: declares accumulators `acc{r}_{j}` (vec4<f32>, tile row
 * `ty * tm + r`, tile columns `64 * j + tx * 4 .. + 3`) and runs the K loop over `p.K` with
 * register prefetch. Needs `loadA(k0, e)`, `storeA(e, v)`, `loadB(k0, e)` (or spec.loadB), `storeB(e, v)`,
 * workgroup arrays `As` (k-major, BM/4 vec4 per k) and `Bs` (64/4 vec4 per k), and `lid`, `tx`,
 * `ty` in scope.
 */
export function gemmMainLoopWgsl(spec: GemmLoopSpec): string {
  const { tile, aSlots, bSlots } = spec;
  const { tm, tn, bk } = tile;
  const e = (i: number) => `lid + ${i * GEMM_THREADS}u`;
  const loadB = spec.loadB ?? ((i: number, k0: string) => `loadB(${k0}, ${e(i)})`);
  const after = (i: number) => (spec.afterLoadB ? " " + spec.afterLoadB(i) : "");
  const bm4 = (16 * tm) / 4, bn4 = (16 * tn) / 4;
  const lines: string[] = [];
  for (let r = 0; r < tm; r++) {
    for (let j = 0; j < tn / 4; j++) lines.push(`var acc${r}_${j} = vec4<f32>(0.0);`);
  }
  for (let i = 0; i < aSlots; i++) {
    lines.push(`var ra${i} = loadA(0u, lid + ${i * GEMM_THREADS}u);`);
  }
  for (let i = 0; i < bSlots; i++) lines.push(`var rb${i} = ${loadB(i, "0u")};${after(i)}`);
  lines.push(`for (var k0 = 0u; k0 < p.K; k0 += ${bk}u) {`);
  for (let i = 0; i < aSlots; i++) lines.push(`  storeA(lid + ${i * GEMM_THREADS}u, ra${i});`);
  for (let i = 0; i < bSlots; i++) lines.push(`  storeB(lid + ${i * GEMM_THREADS}u, rb${i});`);
  lines.push(`  workgroupBarrier();`);
  lines.push(`  let kn = k0 + ${bk}u;`);
  lines.push(`  if (kn < p.K) {`);
  for (let i = 0; i < aSlots; i++) {
    lines.push(`    ra${i} = loadA(kn, lid + ${i * GEMM_THREADS}u);`);
  }
  for (let i = 0; i < bSlots; i++) lines.push(`    rb${i} = ${loadB(i, "kn")};${after(i)}`);
  lines.push(`  }`);
  lines.push(`  for (var k = 0u; k < ${bk}u; k++) {`);
  for (let j = 0; j < tn / 4; j++) lines.push(`    let b${j} = Bs[k * ${bn4}u + tx + ${16 * j}u];`);
  for (let q = 0; q < tm / 4; q++) {
    lines.push(`    let a${q} = As[k * ${bm4}u + ty * ${tm / 4}u + ${q}u];`);
  }
  for (let r = 0; r < tm; r++) {
    for (let j = 0; j < tn / 4; j++) {
      const av = `vec4<f32>(a${r >> 2}.${"xyzw"[r & 3]})`;
      lines.push(`    acc${r}_${j} = fma(${av}, b${j}, acc${r}_${j});`);
    }
  }
  lines.push(`  }`);
  lines.push(`  workgroupBarrier();`);
  lines.push(`}`);
  return lines.map((l) => "  " + l).join("\n");
}

/** What {@link kMajorLoaderWgsl} generates. */
export interface KMajorLoader {
  /** Operand letter: defines `load${name}(k0, e)` and `store${name}(e, v)`. */
  name: string;
  /** Storage buffer (array<T4> when vec, else array<T>). */
  buf: string;
  /** Workgroup array (vec4<f32>, k-major: rows/4 vec4 per k). */
  tile: string;
  /** Tile rows and K depth. */
  rows: number;
  bk: number;
  vec: boolean;
  /** WGSL expressions: first row of the tile, row count, element offset of the matrix. */
  r0: string;
  rowCount: string;
  base: string;
}

/**
 * WGSL loader for a row-major [rows, K] operand (matmul A, Linear weight, conv weight): slot `e`
 * reads (vec4 of) consecutive K elements of one row (coalesced along K) and stores them
 * transposed (k-major) into the workgroup tile. Out-of-range elements read as 0.
 */
export function kMajorLoaderWgsl(o: KMajorLoader): string {
  const r4 = o.rows / 4, bk4 = o.bk / 4;
  const { name, buf, tile } = o;
  return o.vec
    ? `fn load${name}(k0: u32, e: u32) -> vec4<f32> {
  let r = ${o.r0} + e / ${bk4}u; let k = k0 + (e % ${bk4}u) * 4u;
  if (r < ${o.rowCount} && k < p.K) { return vec4<f32>(${buf}[(${o.base} + r * p.K + k) / 4u]); }
  return vec4<f32>(0.0);
}
fn store${name}(e: u32, v: vec4<f32>) {
  let row = e / ${bk4}u; let i = (e % ${bk4}u) * ${4 * r4}u + row / 4u; let c = row % 4u;
  ${tile}[i][c] = v.x; ${tile}[i + ${r4}u][c] = v.y;
  ${tile}[i + ${2 * r4}u][c] = v.z; ${tile}[i + ${3 * r4}u][c] = v.w;
}`
    : `fn load${name}(k0: u32, e: u32) -> f32 {
  let r = ${o.r0} + e / ${o.bk}u; let k = k0 + e % ${o.bk}u;
  if (r < ${o.rowCount} && k < p.K) { return f32(${buf}[${o.base} + r * p.K + k]); }
  return 0.0;
}
fn store${name}(e: u32, v: f32) {
  let row = e / ${o.bk}u;
  ${tile}[(e % ${o.bk}u) * ${r4}u + row / 4u][row % 4u] = v;
}`;
}

/** Compile-time options of the matmul kernel, encoded in its variant string. */
interface MatmulVariant {
  vec: boolean;
  transB: boolean;
  activation: Activation;
  bias: boolean;
  residual: boolean;
  tile: GemmTile;
}

function variantKey(v: MatmulVariant): string {
  return [
    v.vec ? "v4" : "s1",
    v.transB ? "bt" : "bn",
    v.activation,
    v.bias ? "bias" : "nobias",
    v.residual ? "res" : "nores",
    gemmTileKey(v.tile),
  ].join("-");
}

/** The tile part (`m8n8k16`) of a GEMM-family variant key. */
export function gemmTileKey(tile: GemmTile): string {
  return `m${tile.tm}n${tile.tn}k${tile.bk}`;
}

/** Parses {@link gemmTileKey}'s output; null when malformed. */
export function parseGemmTileKey(key: string | undefined): GemmTile | null {
  const m = /^m(4|8)n(4|8)k(16|32)$/.exec(key ?? "");
  if (!m) return null;
  return { tm: Number(m[1]) as 4 | 8, tn: Number(m[2]) as 4 | 8, bk: Number(m[3]) as 16 | 32 };
}

function parseVariant(key: string): MatmulVariant {
  const [vec, tb, activation, bias, res, tileKey] = key.split("-");
  const tile = parseGemmTileKey(tileKey);
  if (!tile || !ACTIVATIONS.includes(activation as Activation)) {
    throw new Error(`matmul: bad kernel variant "${key}"`);
  }
  return {
    vec: vec === "v4",
    transB: tb === "bt",
    activation: activation as Activation,
    bias: bias === "bias",
    residual: res === "res",
    tile,
  };
}

function matmulSource(dtype: DType, key: string): string {
  const v = parseVariant(key);
  const { tm, tn, bk } = v.tile;
  const bm = 16 * tm, bm4 = bm / 4, bn = 16 * tn, bn4 = bn / 4;
  const S = v.vec ? "T4" : "T";
  const V = v.vec ? "vec4<f32>" : "f32";
  const zero = v.vec ? "vec4<f32>(0.0)" : "0.0";
  const decls = epilogueBindingsWgsl(v, S);

  const loadA = kMajorLoaderWgsl({
    name: "A",
    buf: "a",
    tile: "As",
    rows: bm,
    bk,
    vec: v.vec,
    r0: "m0",
    rowCount: "p.M",
    base: "aBase",
  });
  let loadB: string;
  if (v.transB) {
    // B [N, K] (Linear weight): like A.
    loadB = kMajorLoaderWgsl({
      name: "B",
      buf: "bm",
      tile: "Bs",
      rows: bn,
      bk,
      vec: v.vec,
      r0: "n0",
      rowCount: "p.N",
      base: "bBase",
    });
  } else {
    // B [K, N] row-major: vec4 along N, stored as is.
    loadB = v.vec
      ? `fn loadB(k0: u32, e: u32) -> vec4<f32> {
  let k = k0 + e / ${bn4}u; let n = n0 + (e % ${bn4}u) * 4u;
  if (n < p.N && k < p.K) { return vec4<f32>(bm[(bBase + k * p.N + n) / 4u]); }
  return vec4<f32>(0.0);
}
fn storeB(e: u32, v: vec4<f32>) { Bs[e] = v; }`
      : `fn loadB(k0: u32, e: u32) -> f32 {
  let k = k0 + e / ${bn}u; let n = n0 + e % ${bn}u;
  if (n < p.N && k < p.K) { return f32(bm[bBase + k * p.N + n]); }
  return 0.0;
}
fn storeB(e: u32, v: f32) { Bs[e / 4u][e % 4u] = v; }`;
  }

  const biasExpr = (n: string) => (v.bias ? `${V}(biasv[${n}])` : zero);
  const resAdd = (o: string) => (v.residual ? `\n    y += ${V}(res[${o}]);` : "");
  const epilogue = v.vec
    ? `fn emit(m: u32, n: u32, acc: vec4<f32>) {
  if (m < p.M && n < p.N) {
    let o = (oBase + m * p.N + n) / 4u;
    var y = actV(acc * p.alpha + ${biasExpr("n / 4u")});${resAdd("o")}
    dst[o] = T4(y);
  }
}`
    : `fn emit(m: u32, n: u32, acc: vec4<f32>) {
  if (m >= p.M) { return; }
  for (var j = 0u; j < 4u; j++) {
    if (n + j < p.N) {
      let o = oBase + m * p.N + n + j;
      var y = act1(acc[j] * p.alpha + ${biasExpr("n + j")});${resAdd("o")}
      dst[o] = T(y);
    }
  }
}`;
  const aSlots = gemmSlots(bm, bk, v.vec), bSlots = gemmSlots(bn, bk, v.vec);
  const emits: string[] = [];
  for (let r = 0; r < tm; r++) {
    for (let j = 0; j < tn / 4; j++) {
      emits.push(`  emit(m0 + ty * ${tm}u + ${r}u, n0 + tx * 4u + ${64 * j}u, acc${r}_${j});`);
    }
  }
  return `${wgslDType(dtype)}
// matmul ${key}: out[b] = act(alpha * a[b] @ op(bmat[b]) + bias) + residual
// binding 1: a [batch, M, K]; 2: bmat [K, N] (or [N, K] when transposed), batch stride p.strideB
// (0 = shared); then bias [N] and residual [batch, M, N] when present; last: out [batch, M, N].
// Tile ${bm} x ${bn} x ${bk}; workgroup (p.tilesN, rest) with rest = tile row + batch * p.tilesM.
struct Params { M: u32, N: u32, K: u32, tilesM: u32, groups: u32, strideB: u32, alpha: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<${S}>;
@group(0) @binding(2) var<storage, read> bm: array<${S}>;
${decls}
var<workgroup> As: array<vec4<f32>, ${bk * bm4}>;
var<workgroup> Bs: array<vec4<f32>, ${bk * bn4}>;
var<private> m0: u32;
var<private> n0: u32;
var<private> aBase: u32;
var<private> bBase: u32;
var<private> oBase: u32;
${activationWgsl(v.activation)}
${loadA}
${loadB}
${epilogue}
@compute @workgroup_size(${GEMM_THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let g = wid.y + wid.z * nwg.y;
  if (g >= p.groups) { return; }
  let batch = g / p.tilesM;
  m0 = (g % p.tilesM) * ${bm}u;
  n0 = wid.x * ${bn}u;
  aBase = batch * p.M * p.K;
  bBase = batch * p.strideB;
  oBase = batch * p.M * p.N;
  let tx = lid % 16u;
  let ty = lid / 16u;
${gemmMainLoopWgsl({ tile: v.tile, aSlots, bSlots })}
${emits.join("\n")}
}
`;
}

const matmulKernel = defineKernel("matmul", ({ dtype, variant }) => matmulSource(dtype, variant));

/** Everything the GEMM launcher needs, after shape checks. */
interface GemmCall {
  op: string;
  a: Tensor;
  b: Tensor;
  M: number;
  K: number;
  N: number;
  batch: number;
  /** B has one matrix per batch (else shared). */
  batchedB: boolean;
  transB: boolean;
  outShape: number[];
  bias?: Tensor;
  residual?: Tensor;
  activation: Activation;
  alpha: number;
  /** Write here (a tensor or window of the output shape) instead of a new tensor. */
  out?: Tensor;
}

function launchGemm(gpu: Gpu, c: GemmCall): Tensor {
  const dtype = checkDTypes(gpu, c.op, { a: c.a, bmat: c.b, bias: c.bias, residual: c.residual });
  if (c.bias && !sameShape(c.bias.shape, [c.N])) {
    throw new Error(`${c.op}: expected bias [${c.N}], got ${fmtShape(c.bias.shape)}`);
  }
  if (c.residual && !sameShape(c.residual.shape, c.outShape)) {
    throw new Error(
      `${c.op}: expected residual ${fmtShape(c.outShape)} (the output shape), got ${
        fmtShape(c.residual.shape)
      }`,
    );
  }
  if (!ACTIVATIONS.includes(c.activation)) {
    throw new Error(
      `${c.op}: expected activation one of ${ACTIVATIONS.join(", ")}, got "${c.activation}"`,
    );
  }
  if (c.out && (c.out.size !== c.outShape.reduce((a, b) => a * b, 1) || c.out.dtype !== dtype)) {
    throw new Error(
      `${c.op}: expected out ${fmtShape(c.outShape)} ${dtype}, got ${
        fmtShape(c.out.shape)
      } ${c.out.dtype}`,
    );
  }
  const out = c.out ?? gpu.empty(c.outShape, dtype, c.op);
  if (c.M === 0 || c.N === 0 || c.batch === 0) return out;
  // A shared B lets the batch fold into M (fuller tiles for short sequences such as M = 77);
  // operands larger than one binding split into runs of rows (shared B) or of batches.
  const units = c.batchedB ? c.batch : c.M * c.batch;
  const split = [c.a, c.residual, out, c.batchedB ? c.b : undefined];
  for (const [s, n] of bindingRuns(gpu, c.op, units, split, c.batchedB ? "batch" : "row")) {
    const w = (t: Tensor) => t.window(units, s, n);
    gemmInto(
      gpu,
      {
        ...c,
        a: w(c.a),
        b: c.batchedB ? w(c.b) : c.b,
        residual: c.residual && w(c.residual),
        M: c.batchedB ? c.M : n,
        batch: c.batchedB ? n : 1,
      },
      w(out),
      dtype,
    );
  }
  return out;
}

/** One GEMM launch into `out` (every operand fits one binding). */
function gemmInto(gpu: Gpu, c: GemmCall, out: Tensor, dtype: DType): void {
  const M = c.batchedB ? c.M : c.M * c.batch;
  const batch = c.batchedB ? c.batch : 1;
  if (usesDirectGemm(gpu) && c.K % 4 === 0 && c.N % 4 === 0) {
    launchDirectGemm(gpu, {
      op: c.op,
      dtype,
      a: c.a,
      b: c.b,
      M,
      N: c.N,
      K: c.K,
      batch,
      strideA: M * c.K,
      strideB: c.batchedB ? c.K * c.N : 0,
      transB: c.transB,
      out,
      bias: c.bias,
      residual: c.residual,
      activation: c.activation,
      alpha: c.alpha,
    });
    return;
  }
  const tile = pickGemmTile(gpu, M * batch, c.N);
  const variant: MatmulVariant = {
    vec: c.K % 4 === 0 && c.N % 4 === 0,
    transB: c.transB,
    activation: c.activation,
    bias: c.bias !== undefined,
    residual: c.residual !== undefined,
    tile,
  };
  const tilesM = ceilDiv(M, 16 * tile.tm);
  const groups = tilesM * batch;
  const params = new Params().u32(M).u32(c.N).u32(c.K).u32(tilesM).u32(groups)
    .u32(c.batchedB ? c.K * c.N : 0).f32(c.alpha);
  const bindings: Tensor[] = [c.a, c.b];
  if (c.bias) bindings.push(c.bias);
  if (c.residual) bindings.push(c.residual);
  bindings.push(out);
  gpu.dispatch(matmulKernel, {
    dtype,
    variant: variantKey(variant),
    params,
    bindings,
    groups: gemmGrid(c.op, ceilDiv(c.N, 16 * tile.tn), groups),
  });
}

/** Options of {@link matmul}. */
export interface MatmulOptions {
  /** bmat is [N, K] (or [..., N, K]) and is used transposed. */
  transposeB?: boolean;
  /** [N], added after scaling by alpha. */
  bias?: Tensor;
  activation?: Activation;
  /** Same shape as the output; added after the activation. */
  residual?: Tensor;
  /** Scale of the product (default 1). */
  alpha?: number;
}

/**
 * Batched matmul with fused epilogue: `out[b] = act(alpha * a[b] @ op(bmat[b]) + bias) + residual`.
 * a: [..., M, K] (leading dims = batch, may be absent); bmat: [K, N], or [N, K] with
 * `transposeB`, or either with the same leading dims as a (one matrix per batch).
 * Returns a new tensor [..., M, N] that the caller releases.
 *
 * @example
 * ```ts
 * const scores = matmul(gpu, q, k, { transposeB: true, alpha: 1 / Math.sqrt(64) });
 * ```
 */
export function matmul(gpu: Gpu, a: Tensor, bmat: Tensor, options: MatmulOptions = {}): Tensor {
  const transB = options.transposeB ?? false;
  const bDesc = transB ? "[N, K]" : "[K, N]";
  if (a.rank < 2 || bmat.rank < 2) {
    throw new Error(
      `matmul: expected a [..., M, K] and bmat ${bDesc}, got a ${fmtShape(a.shape)}, bmat ${
        fmtShape(bmat.shape)
      }`,
    );
  }
  const M = a.shape[a.rank - 2], K = a.shape[a.rank - 1];
  const lead = a.shape.slice(0, -2);
  const r0 = bmat.shape[bmat.rank - 2], r1 = bmat.shape[bmat.rank - 1];
  const kb = transB ? r1 : r0, N = transB ? r0 : r1;
  const batchedB = bmat.rank > 2;
  if (kb !== K || (batchedB && !sameShape(bmat.shape.slice(0, -2), lead))) {
    const want = `${batchedB ? fmtShape(lead).slice(0, -1) + ", " : "["}${
      transB ? `N, ${K}` : `${K}, N`
    }]`;
    throw new Error(
      `matmul: expected bmat ${want} for a ${fmtShape(a.shape)}, got ${fmtShape(bmat.shape)}`,
    );
  }
  return launchGemm(gpu, {
    op: "matmul",
    a,
    b: bmat,
    M,
    K,
    N,
    batch: lead.reduce((x, y) => x * y, 1),
    batchedB,
    transB,
    outShape: [...lead, M, N],
    bias: options.bias,
    residual: options.residual,
    activation: options.activation ?? "none",
    alpha: options.alpha ?? 1,
  });
}

/** Options of {@link linear}. */
export interface LinearOptions {
  /** [N]. */
  bias?: Tensor;
  activation?: Activation;
  /** [..., N], added after the activation. */
  residual?: Tensor;
  /**
   * Write the result here (a tensor, or a window of a larger one, of the output's size; not
   * aliasing x or the residual) and return it, instead of a new tensor.
   */
  out?: Tensor;
}

/**
 * PyTorch Linear: `x [..., K] @ weight[N, K]^T + bias[N]` (then activation, then + residual
 * [..., N]) -> new tensor [..., N].
 *
 * @example
 * ```ts
 * const h = linear(gpu, x, w.fc1, { bias: w.fc1Bias, activation: "quick_gelu" });
 * ```
 */
export function linear(gpu: Gpu, x: Tensor, weight: Tensor, options: LinearOptions = {}): Tensor {
  const K = x.shape[x.rank - 1];
  if (x.rank < 1 || weight.rank !== 2 || weight.shape[1] !== K) {
    throw new Error(
      `linear: expected x [..., K] and weight [N, K] with the same K, got x ${
        fmtShape(x.shape)
      }, weight ${fmtShape(weight.shape)}`,
    );
  }
  const N = weight.shape[0];
  const lead = x.shape.slice(0, -1);
  return launchGemm(gpu, {
    op: "linear",
    a: x,
    b: weight,
    M: lead.reduce((p, d) => p * d, 1),
    K,
    N,
    batch: 1,
    batchedB: false,
    transB: true,
    outShape: [...lead, N],
    bias: options.bias,
    residual: options.residual,
    activation: options.activation ?? "none",
    alpha: 1,
    out: options.out,
  });
}
