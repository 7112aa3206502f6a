/**
 * The GEMM path for software adapters (lavapipe/llvmpipe and other CPU rasterizers): no
 * workgroup memory and no barriers; every invocation computes a `tm x (4 * cv)` output block
 * straight from storage, loading whole vec4s.
 *
 * Why a second path: a CPU rasterizer runs each invocation as one SIMD lane and turns every
 * non-constant load into a per-lane branch plus scalar load (workgroup memory included), while
 * FMAs are whole-vector instructions and spilled accumulators are plain stack traffic. The cost
 * is the count of load instructions per FMA, so big register blocks fed by vec4 loads win by
 * 3-4x over the workgroup-tiled kernel (bench/NOTES.md). GPUs keep the tiled kernel of
 * kernels/matmul.ts; {@link gemmPath} picks per adapter.
 *
 * Forms: "bn" multiplies A [M, K] by B [K, N] (vec4 along N; each thread holds tm rows x cv
 * vec4 columns); "bt" multiplies by B [N, K] (Linear weights; vec4 along K, per-column vec4
 * partial sums reduced at the end); "tn" multiplies A^T by B for A [K, M] and B [K, N] (weight
 * gradients: vec4 along M and N, one K step per iteration). Epilogues: "mm" writes row-major [M, N] with
 * `act(alpha * acc + bias[n]) + residual`; "conv" maps column j to pixel `j % HoWo` of image
 * `j / HoWo` of an NCHW output with `acc + bias[m] + residual` (implicit GEMM of conv2d).
 * Needs K % 4 == 0 and N % 4 == 0, "tn" M % 4 == 0 and N % 4 == 0 (the launchers fall back to
 * the tiled kernel otherwise).
 * @module
 */

import type { Gpu } from "./gpu/device.ts";
import { ceilDiv, defineKernel, Params } from "./gpu/kernel.ts";
import type { DType, Tensor } from "./gpu/tensor.ts";
import {
  type Activation,
  activationWgsl,
  epilogueKey,
  forcedGemmTile,
  GEMM_MAIN_WGSL,
  gemmBindingsWgsl,
  type GemmEpilogue,
  gemmGrid,
} from "./gemm.ts";
import { prelude } from "./wgsl.ts";

/** Which GEMM implementation runs: workgroup-tiled (GPUs) or direct (software adapters). */
export type GemmPath = "tiled" | "direct";

let pathOverride: GemmPath | null = null;

/**
 * Forces one GEMM path for matmul / linear / conv2d (tests run both on one adapter; the bench
 * compares them); `null` restores the per-adapter choice of {@link gemmPath}.
 */
export function setGemmPathOverride(path: GemmPath | null): void {
  pathOverride = path;
}

/** The GEMM path for an adapter: "direct" on software (fallback) adapters, else "tiled". */
export function gemmPath(adapter: { isFallback: boolean }): GemmPath {
  return pathOverride ?? (adapter.isFallback ? "direct" : "tiled");
}

/**
 * True when GEMMs on this adapter take the direct path (software adapters; a tile forced with
 * `setGemmTileOverride` of kernels/gemm.ts always means the tiled path).
 */
export function usesDirectGemm(gpu: Gpu): boolean {
  return forcedGemmTile() === null && gemmPath(gpu.info) === "direct";
}

/**
 * Block of the direct GEMM: tm rows x cv vec4 columns per thread, wg threads per workgroup,
 * arranged as `wr` rows of `wg / wr` threads ("bn" and "bt" forms; "tn" always 1 row).
 */
export interface DirectLayout {
  tm: 4 | 8 | 16 | 32;
  /** 1 to 5. */
  cv: number;
  wg: 16;
  /**
   * Thread rows: 1 (all threads side by side along N) up to 16 (all stacked along M, for
   * products with few columns such as convolutions on 1 x 1 to 2 x 2 maps). Default 1.
   */
  wr?: 1 | 2 | 4 | 8 | 16;
}

let layoutOverride: DirectLayout | null = null;

/**
 * Forces one direct-GEMM block for every launch (tests cover several blocks on odd sizes; the
 * bench compares them); `null` restores {@link pickDirectLayout}'s choice.
 */
export function setDirectLayoutOverride(layout: DirectLayout | null): void {
  layoutOverride = layout;
}

/** Threads per direct-GEMM workgroup: two 8-lane SIMD batches on 256-bit CPUs. */
const DIRECT_THREADS = 16;
/**
 * Most vec4 accumulators per thread for large GEMMs (at least {@link LARGE_GEMM_MACS}
 * multiply-adds) and for the rest. Big blocks run up to 2x faster on lavapipe but take longer
 * to compile (LLVM: ~0.3 s at 16, ~0.8 s at 64, ~2 s at 160 accumulators), which only pays off
 * on large products.
 */
const MAX_ACCUMULATORS = { large: 160, small: 16 };
/** Multiply-adds from which a GEMM counts as large (~3 ms on lavapipe). */
const LARGE_GEMM_MACS = 2 ** 24;
/** Cost of a per-lane vec4 load in vec4 FMAs on a CPU rasterizer (fitted to lavapipe). */
const LOAD_COST = 8;
/**
 * Thread-row counts the cost model tries (wr; wg / wr threads side by side along N). Stacked
 * rows speed up few-column products (convolutions on 1 x 1 to 2 x 2 maps, narrow projections).
 */
const THREAD_ROWS = [1, 2, 4, 8, 16] as const;
/** Extra cost per doubling of thread rows (see {@link pickDirectLayout}). */
const STACKED_ROWS_COST = 0.05;
/**
 * Workgroups a software adapter runs at once (its worker threads, one per CPU core): fewer
 * workgroups than this leave cores idle, which the cost model charges.
 */
const PARALLEL_GROUPS = Math.max(2, Math.min(64, navigator.hardwareConcurrency ?? 2));

/**
 * The block for a GEMM of `batch` products `[M, K] x [K, N]` in form `form`, minimising a simple
 * cost model: padded work (rows and columns past the edge are computed and dropped) times
 * (1 + load cost per FMA), divided by the share of the CPU's cores the workgroups keep busy. A
 * thread issues `tm + 4 cv` vec4 loads per `4 tm cv` vec4 FMAs every 4 K steps, so big blocks
 * win until padding eats the gain; products with few columns stack the workgroup's threads
 * along M (`wr` rows) instead of leaving most of them on padding columns. Blocks are capped by
 * {@link MAX_ACCUMULATORS} ("bt" keeps 4 partial sums per output, so 4 accumulators each).
 *
 * @example
 * ```ts
 * pickDirectLayout({ M: 1024, N: 320, K: 320 }, "bn"); // { tm: 32, cv: 5, wg: 16, wr: 1 }
 * pickDirectLayout({ M: 1280, N: 8, K: 11520 }, "bn"); // 8 pixels: threads stacked along M
 * ```
 */
export function pickDirectLayout(
  shape: { M: number; N: number; K: number; batch?: number },
  form: "bn" | "bt",
  maxThreadRows = 16,
): DirectLayout {
  if (layoutOverride) return layoutOverride;
  const { M, N, K, batch = 1 } = shape;
  const large = batch * M * N * K >= LARGE_GEMM_MACS;
  const maxAcc = large ? MAX_ACCUMULATORS.large : MAX_ACCUMULATORS.small;
  const tms = form === "bn" ? [32, 16, 8, 4] as const : [16, 8, 4] as const;
  const maxCv = form === "bn" ? 5 : 3;
  const N4 = Math.ceil(N / 4);
  let best: DirectLayout = { tm: 4, cv: 1, wg: DIRECT_THREADS, wr: 1 }, bestCost = Infinity;
  for (const wr of THREAD_ROWS) {
    if (wr > maxThreadRows) break;
    const wc = DIRECT_THREADS / wr;
    for (const tm of tms) {
      for (let cv = 1; cv <= maxCv; cv++) {
        if (tm * cv * (form === "bn" ? 1 : 4) > maxAcc) continue;
        const colBlocks = ceilDiv(N4, wc * cv), rowBlocks = ceilDiv(M, tm * wr);
        const work = rowBlocks * tm * wr * colBlocks * wc * cv *
          (1 + (LOAD_COST * (tm + 4 * cv)) / (4 * tm * cv));
        // Rounds of PARALLEL_GROUPS workgroups: a last partial round leaves cores idle.
        const groups = colBlocks * rowBlocks * batch;
        // Stacked threads load different rows of A (per-lane loads instead of one shared by
        // the workgroup): a small charge per doubling, so they win only where they save work.
        const cost = work * (Math.ceil(groups / PARALLEL_GROUPS) * PARALLEL_GROUPS) / groups *
          (1 + STACKED_ROWS_COST * Math.log2(wr));
        if (cost < bestCost) {
          best = { tm, cv, wg: DIRECT_THREADS, wr };
          bestCost = cost;
        }
      }
    }
  }
  return best;
}

/** Compile-time options of the direct kernel. */
interface DirectVariant extends GemmEpilogue {
  form: "bn" | "bt" | "tn";
  epilogue: "mm" | "conv";
  /** Conv epilogue only: HoWo % 4 == 0, so vec4 stores stay inside one image. */
  vecOut: boolean;
  activation: Activation;
  layout: DirectLayout;
}

function directKey(v: DirectVariant): string {
  const { tm, cv, wg } = v.layout, wr = threadRows(v);
  return [
    v.form,
    v.epilogue + (v.epilogue === "conv" ? (v.vecOut ? "4" : "1") : ""),
    v.activation,
    epilogueKey(v),
    `m${tm}c${cv}w${wg}${wr > 1 ? `r${wr}` : ""}`,
  ].join("-");
}

/** The variant's thread rows ("tn" always 1). */
function threadRows(v: DirectVariant): number {
  return v.form === "tn" ? 1 : v.layout.wr ?? 1;
}

function epilogueWgsl(v: DirectVariant): string {
  if (v.epilogue === "mm") {
    const bias = v.bias ? " + vec4<f32>(biasv[c4])" : "";
    const res = v.residual ? "\n    y += vec4<f32>(res[o]);" : "";
    return `fn colBase(c4: u32) -> u32 { return c4; }
// Row m, vec4 column c4 (columns 4 c4 .. 4 c4 + 3).
fn emit(m: u32, c4: u32, cb: u32, acc: vec4<f32>) {
  if (m < p.M && c4 < p.N / 4u) {
    let o = oBase / 4u + m * (p.N / 4u) + c4;
    var y = act(acc * p.alpha${bias});${res}
    dst[o] = T4(y);
  }
}`;
  }
  const bias = v.bias ? " + f32(biasv[m])" : "";
  if (v.vecOut) {
    const res = v.residual ? "\n    y += vec4<f32>(res[o / 4u]);" : "";
    return `// Output offset of channel 0 at vec4 column c4 of this chunk (pixels j0 + 4 c4 ..).
fn colBase(c4: u32) -> u32 {
  let j = p.j0 + c4 * 4u;
  return oBase + (j / p.HoWo) * p.M * p.HoWo + j % p.HoWo;
}
fn emit(m: u32, c4: u32, cb: u32, acc: vec4<f32>) {
  if (m < p.M && c4 * 4u < p.cols) {
    let o = cb + m * p.HoWo;
    var y = acc${bias};${res}
    dst[o / 4u] = T4(y);
  }
}`;
  }
  const res = v.residual ? "\n      y += f32(res[o]);" : "";
  return `fn colBase(c4: u32) -> u32 { return c4; }
fn emit(m: u32, c4: u32, cb: u32, acc: vec4<f32>) {
  if (m >= p.M) { return; }
  for (var c = 0u; c < 4u; c++) {
    if (c4 * 4u + c < p.cols) {
      let j = p.j0 + c4 * 4u + c;
      let o = oBase + ((j / p.HoWo) * p.M + m) * p.HoWo + j % p.HoWo;
      var y = acc[c]${bias};${res}
      dst[o] = T(y);
    }
  }
}`;
}

function directSource(dtype: DType, v: DirectVariant): string {
  const { tm, cv, wg } = v.layout;
  // Threads side by side along N; their columns are c0 + j * wc.
  const wr = threadRows(v), wc = wg / wr;
  const key = directKey(v);
  const vecOut = v.epilogue === "mm" || v.vecOut;
  const operands = ["a: array<T4>", "bm: array<T4>"] as const;
  const biasElem = v.epilogue === "mm" ? "T4" : "T";
  const pre: string[] = [], body: string[] = [], post: string[] = [];
  // Rows past M re-read row M - 1 (never stored), so the K loop has no bounds checks.
  for (let r = 0; r < tm; r++) pre.push(`let ar${r} = aBase + min(m0 + ${r}u, p.M - 1u) * K4;`);
  for (let r = 0; r < tm; r++) body.push(`let a${r} = vec4<f32>(a[ar${r} + k4]);`);
  if (v.form === "tn") {
    // A [K, M]: the thread's tm rows are tm / 4 vec4 of one row of A per K step.
    pre.length = 0;
    pre.push("let M4 = p.M / 4u;");
    for (let q = 0; q < tm / 4; q++) {
      pre.push(`let ac${q} = aBase + min(m0 / 4u + ${q}u, M4 - 1u);`);
    }
    for (let j = 0; j < cv; j++) pre.push(`let bc${j} = bBase + min(c0 + ${j * wc}u, N4 - 1u);`);
    for (let j = 0; j < cv; j++) {
      for (let r = 0; r < tm; r++) pre.push(`var acc${r}_${j} = vec4<f32>(0.0);`);
    }
    body.length = 0;
    for (let q = 0; q < tm / 4; q++) body.push(`let a${q} = vec4<f32>(a[ac${q} + k * M4]);`);
    for (let j = 0; j < cv; j++) body.push(`let b${j} = vec4<f32>(bm[bc${j} + k * N4]);`);
    for (let r = 0; r < tm; r++) {
      for (let j = 0; j < cv; j++) {
        const av = `vec4<f32>(a${r >> 2}.${"xyzw"[r & 3]})`;
        body.push(`acc${r}_${j} = fma(${av}, b${j}, acc${r}_${j});`);
      }
    }
    for (let r = 0; r < tm; r++) {
      for (let j = 0; j < cv; j++) {
        post.push(`emit(m0 + ${r}u, c0 + ${j * wc}u, cb${j}, acc${r}_${j});`);
      }
    }
  } else if (v.form === "bn") {
    // Thread columns: vec4 index c0 + j * wc (coalesced across the workgroup per j).
    for (let j = 0; j < cv; j++) pre.push(`let bc${j} = bBase + min(c0 + ${j * wc}u, N4 - 1u);`);
    for (let j = 0; j < cv; j++) {
      for (let r = 0; r < tm; r++) pre.push(`var acc${r}_${j} = vec4<f32>(0.0);`);
    }
    for (let q = 0; q < 4; q++) {
      for (let j = 0; j < cv; j++) {
        body.push(`let b${q}_${j} = vec4<f32>(bm[bc${j} + (k4 * 4u + ${q}u) * N4]);`);
      }
    }
    for (let r = 0; r < tm; r++) {
      for (let j = 0; j < cv; j++) {
        for (let q = 0; q < 4; q++) {
          body.push(
            `acc${r}_${j} = fma(vec4<f32>(a${r}.${"xyzw"[q]}), b${q}_${j}, acc${r}_${j});`,
          );
        }
      }
    }
    for (let r = 0; r < tm; r++) {
      for (let j = 0; j < cv; j++) {
        post.push(`emit(m0 + ${r}u, c0 + ${j * wc}u, cb${j}, acc${r}_${j});`);
      }
    }
  } else {
    // Thread columns: 4 (c0 + j * wc) + q; B row (column of the product) n is vec4-loaded
    // along K and accumulated as 4 partial sums per output, reduced after the loop.
    for (let j = 0; j < cv; j++) {
      for (let q = 0; q < 4; q++) {
        pre.push(`let bc${j}_${q} = bBase + min((c0 + ${j * wc}u) * 4u + ${q}u, p.N - 1u) * K4;`);
        for (let r = 0; r < tm; r++) pre.push(`var acc${r}_${j}_${q} = vec4<f32>(0.0);`);
        body.push(`let b${j}_${q} = vec4<f32>(bm[bc${j}_${q} + k4]);`);
      }
    }
    for (let r = 0; r < tm; r++) {
      for (let j = 0; j < cv; j++) {
        for (let q = 0; q < 4; q++) {
          body.push(`acc${r}_${j}_${q} = fma(a${r}, b${j}_${q}, acc${r}_${j}_${q});`);
        }
      }
    }
    const sum = (r: number, j: number, q: number) => `dot(acc${r}_${j}_${q}, vec4<f32>(1.0))`;
    for (let r = 0; r < tm; r++) {
      for (let j = 0; j < cv; j++) {
        const s = [0, 1, 2, 3].map((q) => sum(r, j, q)).join(", ");
        post.push(`emit(m0 + ${r}u, c0 + ${j * wc}u, cb${j}, vec4<f32>(${s}));`);
      }
    }
  }
  for (let j = cv - 1; j >= 0; j--) post.unshift(`let cb${j} = colBase(c0 + ${j * wc}u);`);
  const ind = (lines: string[], n: number) => lines.map((l) => " ".repeat(n) + l).join("\n");
  return `${prelude(dtype, { vec: vecOut, wg, activations: v.activation !== "none" })}
// gemm_direct ${key}: out = epilogue(op(a[b]) @ op(bmat[b])), ${tm} rows x ${cv} vec4 columns per
// thread. binding 1: a [batch, M, K] ([batch, K, M] for "tn"; batch stride p.strideA; 0 =
// shared); 2: bmat [K, N] ("bn", "tn") or
// [N, K] ("bt"), batch stride p.strideB; then bias ([N] for "mm", [M] for "conv") and residual
// (output shape) when present; last: out ("mm": [batch, M, N]; "conv": NCHW, column j of the
// chunk is pixel (p.j0 + j) % HoWo of image (p.j0 + j) / HoWo). K % 4 == 0, N % 4 == 0.
// Workgroups: (column blocks, rest) with rest = row block + batch * p.tilesM.
struct Params {
  M: u32, N: u32, K: u32, tilesM: u32, groups: u32, strideA: u32, strideB: u32, alpha: f32,
  cols: u32, j0: u32, HoWo: u32,
}
${gemmBindingsWgsl(operands, { ...v, biasElem })}
var<private> oBase: u32;
${activationWgsl(v.activation)}
${epilogueWgsl(v)}
${GEMM_MAIN_WGSL}
  let batch = g / p.tilesM;
  let m0 = (g % p.tilesM) * ${tm * wr}u${wr > 1 ? ` + (lid / ${wc}u) * ${tm}u` : ""};
  let c0 = wid.x * ${wc * cv}u + lid${wr > 1 ? ` % ${wc}u` : ""};
  let K4 = p.K / 4u;
  let N4 = p.N / 4u;
  let aBase = batch * p.strideA / 4u;
  let bBase = batch * p.strideB / 4u;
  oBase = batch * p.M * p.N;
${ind(pre, 2)}
  ${v.form === "tn" ? "for (var k = 0u; k < p.K; k++) {" : "for (var k4 = 0u; k4 < K4; k4++) {"}
${ind(body, 4)}
  }
${ind(post, 2)}
}
`;
}

const directKernel = defineKernel<DirectVariant>("gemm_direct", {
  key: directKey,
  source: ({ dtype, variant }) => directSource(dtype, variant),
});

/** One direct GEMM launch (shapes already checked by the caller). */
export interface DirectGemm {
  op: string;
  dtype: DType;
  a: Tensor;
  b: Tensor;
  M: number;
  N: number;
  K: number;
  batch: number;
  /** Elements between batches of a / b (0 = shared). */
  strideA: number;
  strideB: number;
  /** B is [N, K] (Linear weight) rather than [K, N]. */
  transB: boolean;
  /** A is [K, M] and used transposed ("tn" form, with B [K, N]; needs M % 4 == 0). */
  transA?: boolean;
  out: Tensor;
  bias?: Tensor;
  residual?: Tensor;
  activation?: Activation;
  alpha?: number;
  /** NCHW conv epilogue: pixels per image, first pixel of this chunk, valid columns. */
  conv?: { HoWo: number; j0: number; cols: number };
}

/**
 * Records one direct GEMM (see the module doc). Requires `K % 4 == 0` and `N % 4 == 0`
 * (`M % 4 == 0` and `N % 4 == 0` with `transA`).
 *
 * @example
 * ```ts
 * if (gemmPath(gpu.info) === "direct") {
 *   launchDirectGemm(gpu, { op: "matmul", dtype: "f32", a, b, M, N, K, batch: 1, strideA: 0,
 *     strideB: 0, transB: false, out });
 * }
 * ```
 */
export function launchDirectGemm(gpu: Gpu, c: DirectGemm): void {
  if (c.transA) {
    if (c.M % 4 !== 0 || c.N % 4 !== 0 || c.transB || c.conv) {
      throw new Error(
        `${c.op}: the transposed-A direct GEMM needs M and N divisible by 4 (and B [K, N], no ` +
          `conv epilogue), got ${c.M}, ${c.N}`,
      );
    }
  } else if (c.K % 4 !== 0 || c.N % 4 !== 0) {
    throw new Error(`${c.op}: the direct GEMM needs K and N divisible by 4, got ${c.K}, ${c.N}`);
  }
  const form = c.transA ? "tn" : c.transB ? "bt" : "bn";
  // "tn" (weight gradients) keeps one thread row.
  const layout = pickDirectLayout(c, form === "bt" ? "bt" : "bn", form === "tn" ? 1 : 16);
  const variant: DirectVariant = {
    form,
    epilogue: c.conv ? "conv" : "mm",
    vecOut: c.conv ? c.conv.HoWo % 4 === 0 : true,
    activation: c.activation ?? "none",
    bias: c.bias !== undefined,
    residual: c.residual !== undefined,
    layout,
  };
  const wr = variant.form === "tn" ? 1 : layout.wr ?? 1;
  const tilesM = ceilDiv(c.M, layout.tm * wr);
  const groups = tilesM * c.batch;
  const conv = c.conv ?? { HoWo: 1, j0: 0, cols: c.N };
  const params = new Params().u32(c.M).u32(c.N).u32(c.K).u32(tilesM).u32(groups)
    .u32(c.strideA).u32(c.strideB).f32(c.alpha ?? 1).u32(conv.cols).u32(conv.j0).u32(conv.HoWo);
  const bindings: Tensor[] = [c.a, c.b];
  if (c.bias) bindings.push(c.bias);
  if (c.residual) bindings.push(c.residual);
  bindings.push(c.out);
  gpu.dispatch(directKernel, {
    dtype: c.dtype,
    variant,
    params,
    bindings,
    groups: gemmGrid(c.op, ceilDiv(c.N / 4, (layout.wg / wr) * layout.cv), groups),
  });
}
