/**
 * Matrix multiplication and PyTorch-style Linear: a tiled GEMM with a fused epilogue
 * `out = act(alpha * a @ op(b) + bias) + residual`.
 *
 * Design: 256 threads per workgroup (16 x 16), a BM x BN output tile (BM = 16 * tm, BN = 16 * tn;
 * tm, tn = 4 or 8 per thread) and K steps of `bk` staged through workgroup memory
 * as f32 (A stored k-major so each thread reads its rows as vec4). The next K tile is prefetched
 * into registers while the current one is multiplied. The "v4" variant (K and N multiples of 4)
 * loads and stores vec4; the "s1" variant handles any size element by element. f16 tensors are
 * f16 in memory and f32 in registers and workgroup memory. The tile loop, A loader, epilogue
 * activation and grid come from the GEMM framework (kernels/gemm.ts), shared with
 * kernels/conv2d.ts (an implicit GEMM) and kernels/gemm_direct.ts (software adapters).
 * @module
 */

import type { Gpu } from "./gpu/device.ts";
import { bindingRuns } from "./gpu/chunks.ts";
import { ceilDiv, defineKernel, Params } from "./gpu/kernel.ts";
import { type DType, fmtShape, type Tensor } from "./gpu/tensor.ts";
import {
  type Activation,
  ACTIVATIONS,
  activationWgsl,
  channelSums,
  checkDTypes,
  epilogueKey,
  GEMM_THREADS,
  gemmBindingsWgsl,
  type GemmEpilogue,
  gemmGrid,
  type GemmTile,
  gemmTileKey,
  kMajorLoaderWgsl,
  pickGemmTile,
  sameShape,
  tiledGemmWgsl,
} from "./gemm.ts";
import { launchDirectGemm, usesDirectGemm } from "./gemm_direct.ts";
import { recording, taped } from "./gpu/tape.ts";
import { add, unary } from "./elementwise.ts";
import { prelude } from "./wgsl.ts";

export type { Activation } from "./gemm.ts";

/** Compile-time options of the matmul kernel. */
interface MatmulVariant extends GemmEpilogue {
  vec: boolean;
  transB: boolean;
  /** A is [K, M] and used transposed (weight gradients; then B is [K, N]). */
  transA?: boolean;
  activation: Activation;
  tile: GemmTile;
}

function matmulKey(v: MatmulVariant): string {
  return [
    v.vec ? "v4" : "s1",
    v.transB ? "bt" : "bn",
    v.activation,
    epilogueKey(v),
    gemmTileKey(v.tile),
    ...(v.transA ? ["at"] : []),
  ].join("-");
}

function matmulSource(dtype: DType, v: MatmulVariant): string {
  const { tm, tn, bk } = v.tile;
  const bm = 16 * tm, bn = 16 * tn, bn4 = bn / 4;

  const loadA = v.transA ? transposedALoaderWgsl(v.vec, bm) : kMajorLoaderWgsl({
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

  const biasExpr = (n: string) => (v.bias ? `VF(biasv[${n}])` : "VF(0.0)");
  const resAdd = (o: string) => (v.residual ? `\n    y += VF(res[${o}]);` : "");
  const epilogue = v.vec
    ? `fn emit(m: u32, n: u32, acc: vec4<f32>) {
  if (m < p.M && n < p.N) {
    let o = (oBase + m * p.N + n) / 4u;
    var y = act(acc * p.alpha + ${biasExpr("n / 4u")});${resAdd("o")}
    dst[o] = V(y);
  }
}`
    : `fn emit(m: u32, n: u32, acc: vec4<f32>) {
  if (m >= p.M) { return; }
  for (var j = 0u; j < 4u; j++) {
    if (n + j < p.N) {
      let o = oBase + m * p.N + n + j;
      var y = act(acc[j] * p.alpha + ${biasExpr("n + j")});${resAdd("o")}
      dst[o] = V(y);
    }
  }
}`;
  const tiled = tiledGemmWgsl({
    tile: v.tile,
    vecA: v.vec,
    vecB: v.vec,
    setup: `  let batch = g / p.tilesM;
  m0 = (g % p.tilesM) * ${bm}u;
  n0 = wid.x * ${bn}u;
  aBase = batch * p.M * p.K;
  bBase = batch * p.strideB;
  oBase = batch * p.M * p.N;`,
  });
  const operands = ["a: array<V>", "bm: array<V>"] as const;
  return `${prelude(dtype, { vec: v.vec, wg: GEMM_THREADS, activations: v.activation !== "none" })}
// matmul ${matmulKey(v)}: out[b] = act(alpha * op(a[b]) @ op(bmat[b]) + bias) + residual
// binding 1: a [batch, M, K] (or [batch, K, M] when transposed); 2: bmat [K, N] (or [N, K] when transposed), batch stride p.strideB
// (0 = shared); then bias [N] and residual [batch, M, N] when present; last: out [batch, M, N].
// Tile ${bm} x ${bn} x ${bk}; workgroup (p.tilesN, rest) with rest = tile row + batch * p.tilesM.
struct Params { M: u32, N: u32, K: u32, tilesM: u32, groups: u32, strideB: u32, alpha: f32 }
${gemmBindingsWgsl(operands, v)}
${tiled.decls}
var<private> aBase: u32;
var<private> bBase: u32;
var<private> oBase: u32;
${activationWgsl(v.activation)}
${loadA}
${loadB}
${epilogue}
${tiled.main}
`;
}

/** Loader of A [K, M] (already k-major): vec4 along M when `vec`, stored as is. */
function transposedALoaderWgsl(vec: boolean, bm: number): string {
  const bm4 = bm / 4;
  return vec
    ? `fn loadA(k0: u32, e: u32) -> vec4<f32> {
  let k = k0 + e / ${bm4}u; let m = m0 + (e % ${bm4}u) * 4u;
  if (m < p.M && k < p.K) { return vec4<f32>(a[(aBase + k * p.M + m) / 4u]); }
  return vec4<f32>(0.0);
}
fn storeA(e: u32, v: vec4<f32>) { As[e] = v; }`
    : `fn loadA(k0: u32, e: u32) -> f32 {
  let k = k0 + e / ${bm}u; let m = m0 + e % ${bm}u;
  if (m < p.M && k < p.K) { return f32(a[aBase + k * p.M + m]); }
  return 0.0;
}
fn storeA(e: u32, v: f32) { As[e / 4u][e % 4u] = v; }`;
}

const matmulKernel = defineKernel<MatmulVariant>("matmul", {
  key: matmulKey,
  source: ({ dtype, variant }) => matmulSource(dtype, variant),
});

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
  gpu.flops += 2 * c.M * c.N * c.K * c.batch;
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
    variant,
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
  const call: GemmCall = {
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
  };
  if (recording(gpu, [a, bmat, options.bias])) {
    return recordGemm(gpu, call, (gy, needs) => {
      const g = matmulBackward(gpu, gy, {
        a,
        bmat,
        transposeB: transB,
        alpha: call.alpha,
        needs: { a: needs[0], bmat: needs[1], bias: needs[2] ?? false },
      });
      return [g.da, g.db, g.dbias];
    });
  }
  return launchGemm(gpu, call);
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
  /**
   * The weight is stored transposed, [K, N] (as inference stores keep it on software adapters,
   * where that product runs faster); no backward.
   */
  weightInOut?: boolean;
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
  const inOut = options.weightInOut ?? false;
  if (x.rank < 1 || weight.rank !== 2 || weight.shape[inOut ? 0 : 1] !== K) {
    throw new Error(
      `linear: expected x [..., K] and weight ${inOut ? "[K, N]" : "[N, K]"} with the same K, ` +
        `got x ${fmtShape(x.shape)}, weight ${fmtShape(weight.shape)}`,
    );
  }
  const N = weight.shape[inOut ? 1 : 0];
  const lead = x.shape.slice(0, -1);
  const call: GemmCall = {
    op: "linear",
    a: x,
    b: weight,
    M: lead.reduce((p, d) => p * d, 1),
    K,
    N,
    batch: 1,
    batchedB: false,
    transB: !inOut,
    outShape: [...lead, N],
    bias: options.bias,
    residual: options.residual,
    activation: options.activation ?? "none",
    alpha: 1,
    out: options.out,
  };
  if (recording(gpu, [x, weight, options.bias])) {
    if (inOut) throw new Error("linear: a [K, N] (inference) weight has no backward");
    return recordGemm(gpu, call, (gy, needs) => {
      const g = linearBackward(gpu, gy, {
        x,
        weight,
        needs: { x: needs[0], weight: needs[1], bias: needs[2] ?? false },
      });
      return [g.dx, g.dw, g.db];
    });
  }
  return launchGemm(gpu, call);
}

// ---------------------------------------------------------------- backward

/**
 * The recording path of matmul / linear: the plain GEMM (alpha and bias fused) recorded with
 * `backward`, then the activation and the residual as separate ops (which record themselves).
 */
function recordGemm(
  gpu: Gpu,
  c: GemmCall,
  backward: (gy: Tensor, needs: readonly boolean[]) => (Tensor | null)[],
): Tensor {
  if (c.out) {
    throw new Error(
      `${c.op}: out (writing into a window) is not supported while a gradient tape records`,
    );
  }
  const z = launchGemm(gpu, { ...c, activation: "none", residual: undefined });
  taped(gpu, {
    name: c.op,
    inputs: c.bias ? [c.a, c.b, c.bias] : [c.a, c.b],
    output: z,
    saved: [c.a, c.b],
    backward: (gy, needs) => backward(gy, needs).slice(0, c.bias ? 3 : 2),
  });
  let y = z;
  if (c.activation !== "none") y = unary(gpu, y, c.activation);
  if (c.residual) y = add(gpu, y, c.residual);
  return y;
}

/** Shape of one transposed-A GEMM: `alpha * a^T @ b` for a [batch, R, M], b [batch, R, N]. */
interface TransposedAGemm {
  op: string;
  a: Tensor;
  b: Tensor;
  R: number;
  M: number;
  N: number;
  batch: number;
  alpha: number;
}

/**
 * The weight-gradient GEMM: a new tensor [batch, M, N] = `alpha * a[b]^T @ b[b]`, reducing over
 * the R rows both operands share (for a shared weight, every row of every batch). Direct path
 * ("tn" form) on software adapters when M and N are multiples of 4, else the tiled kernel with
 * a k-major A loader.
 */
function gemmTransposedA(gpu: Gpu, c: TransposedAGemm): Tensor {
  const dtype = checkDTypes(gpu, c.op, { a: c.a, b: c.b });
  const { R, M, N, batch } = c;
  if (R === 0) return gpu.upload(new Float32Array(batch * M * N), [batch, M, N], dtype, c.op);
  const out = gpu.empty([batch, M, N], dtype, c.op);
  if (M === 0 || N === 0 || batch === 0) return out;
  const limit = gpu.limits.maxStorageBufferBindingSize;
  for (const t of [c.a, c.b, out]) {
    if (t.byteLength > limit) {
      throw new Error(
        `${c.op}: ${t.label} ${fmtShape(t.shape)} ${dtype} is larger than one storage binding ` +
          `(${limit} bytes); the gradient GEMM does not split operands yet`,
      );
    }
  }
  if (usesDirectGemm(gpu) && M % 4 === 0 && N % 4 === 0) {
    launchDirectGemm(gpu, {
      op: c.op,
      dtype,
      a: c.a,
      b: c.b,
      M,
      N,
      K: R,
      batch,
      strideA: R * M,
      strideB: R * N,
      transA: true,
      transB: false,
      out,
      alpha: c.alpha,
    });
    return out;
  }
  const tile = pickGemmTile(gpu, M * batch, N);
  const variant: MatmulVariant = {
    vec: M % 4 === 0 && N % 4 === 0,
    transB: false,
    transA: true,
    activation: "none",
    bias: false,
    residual: false,
    tile,
  };
  const tilesM = ceilDiv(M, 16 * tile.tm);
  const groups = tilesM * batch;
  const params = new Params().u32(M).u32(N).u32(R).u32(tilesM).u32(groups).u32(R * N)
    .f32(c.alpha);
  gpu.dispatch(matmulKernel, {
    dtype,
    variant,
    params,
    bindings: [c.a, c.b, out],
    groups: gemmGrid(c.op, ceilDiv(N, 16 * tile.tn), groups),
  });
  return out;
}

/** Options of {@link matmulBackward}: the forward's operands and options, and what to compute. */
export interface MatmulBackwardOptions {
  /** The forward's a [..., M, K]. */
  a: Tensor;
  /** The forward's bmat ([K, N], [N, K] with transposeB, or with a's leading dims). */
  bmat: Tensor;
  transposeB?: boolean;
  alpha?: number;
  /** Which gradients to compute (default: a and bmat, no bias). */
  needs?: { a?: boolean; bmat?: boolean; bias?: boolean };
}

/** Gradients of a matmul; null where not asked for. New tensors the caller releases. */
export interface MatmulGradients {
  /** a's shape. */
  da: Tensor | null;
  /** bmat's shape (summed over the batch when bmat is shared). */
  db: Tensor | null;
  /** [N]. */
  dbias: Tensor | null;
}

/**
 * Backward of `out = alpha * a @ op(bmat) + bias` for the gradient `gy` of out [..., M, N]:
 * `da = alpha gy op(bmat)^T` (a matmul), `dbmat = alpha a^T gy` (or `alpha gy^T a` with
 * transposeB; a transposed-A GEMM over every row when bmat is shared), `dbias` = the column sums
 * of gy. Activation and residual are not part of it (the tape records them as their own ops).
 *
 * @example
 * ```ts
 * const { da, db } = matmulBackward(gpu, gy, { a: q, bmat: k, transposeB: true, alpha: 0.125 });
 * ```
 */
export function matmulBackward(
  gpu: Gpu,
  gy: Tensor,
  options: MatmulBackwardOptions,
): MatmulGradients {
  const { a, bmat, transposeB = false, alpha = 1 } = options;
  const needs = { a: true, bmat: true, bias: false, ...options.needs };
  const M = a.shape[a.rank - 2], K = a.shape[a.rank - 1];
  const lead = a.shape.slice(0, -2);
  const N = transposeB ? bmat.shape[bmat.rank - 2] : bmat.shape[bmat.rank - 1];
  if (!sameShape(gy.shape, [...lead, M, N])) {
    throw new Error(
      `matmulBackward: expected gy ${fmtShape([...lead, M, N])} (the output shape), got ${
        fmtShape(gy.shape)
      }`,
    );
  }
  const batch = lead.reduce((x, y) => x * y, 1);
  const da = needs.a ? matmul(gpu, gy, bmat, { transposeB: !transposeB, alpha }) : null;
  let db: Tensor | null = null;
  if (needs.bmat) {
    // Shared bmat: one GEMM reducing over every row of every batch.
    const [nb, R] = bmat.rank > 2 ? [batch, M] : [1, batch * M];
    const g = transposeB
      ? gemmTransposedA(gpu, {
        op: "matmul backward",
        a: gy,
        b: a,
        R,
        M: N,
        N: K,
        batch: nb,
        alpha,
      })
      : gemmTransposedA(gpu, { op: "matmul backward", a, b: gy, R, M: K, N, batch: nb, alpha });
    db = g.reshape(bmat.shape);
  }
  const dbias = needs.bias ? channelSums(gpu, gy, { channels: N }) : null;
  return { da, db, dbias };
}

/** Options of {@link linearBackward}. */
export interface LinearBackwardOptions {
  /** The forward's x [..., K]. */
  x: Tensor;
  /** The forward's weight [N, K]. */
  weight: Tensor;
  /** Which gradients to compute (default: x and weight, no bias). */
  needs?: { x?: boolean; weight?: boolean; bias?: boolean };
}

/** Gradients of a Linear; null where not asked for. New tensors the caller releases. */
export interface LinearGradients {
  /** x's shape. */
  dx: Tensor | null;
  /** [N, K]. */
  dw: Tensor | null;
  /** [N]. */
  db: Tensor | null;
}

/**
 * Backward of PyTorch Linear `y = x @ weight^T + bias` for the gradient `gy` [..., N]:
 * `dx = gy @ weight`, `dweight = gy^T @ x` (over every row), `dbias` = the column sums of gy.
 *
 * @example
 * ```ts
 * const { dx, dw, db } = linearBackward(gpu, gy, { x, weight, needs: { bias: true } });
 * ```
 */
export function linearBackward(
  gpu: Gpu,
  gy: Tensor,
  options: LinearBackwardOptions,
): LinearGradients {
  const { x, weight } = options;
  const needs = { x: true, weight: true, bias: false, ...options.needs };
  const [N, K] = weight.shape;
  const R = x.size / K;
  if (weight.rank !== 2 || x.shape[x.rank - 1] !== K || gy.size !== R * N) {
    throw new Error(
      `linearBackward: expected x [..., K], weight [N, K] and gy [..., N], got x ${
        fmtShape(x.shape)
      }, weight ${fmtShape(weight.shape)}, gy ${fmtShape(gy.shape)}`,
    );
  }
  const g2 = gy.reshape([R, N]);
  const dx = needs.x ? matmul(gpu, g2, weight).reshape(x.shape) : null;
  const dw = needs.weight
    ? gemmTransposedA(gpu, {
      op: "linear backward",
      a: g2,
      b: x.reshape([R, K]),
      R,
      M: N,
      N: K,
      batch: 1,
      alpha: 1,
    }).reshape([N, K])
    : null;
  const db = needs.bias ? channelSums(gpu, g2, { channels: N }) : null;
  return { dx, dw, db };
}
