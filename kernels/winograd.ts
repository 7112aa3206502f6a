/**
 * Winograd F(2x2, 3x3) convolution for software adapters: a 3x3, stride 1, padding 1 conv2d as
 * 16 GEMMs of 2.25x fewer multiply-adds than the patch-matrix product (Lavin & Gray 2016).
 *
 *   Y = A^T [ (G g G^T) . (B^T d B) ] A
 *
 * per 2x2 output tile, with g a 3x3 filter and d the 4x4 input patch around the tile (zero
 * padded). The filter transform U = G g G^T is done once, when an inference store loads the
 * weight ({@link winogradWeights}, [16, Cout, Cin]); per call the input transform writes
 * V [16, Cin, tiles], the direct GEMM multiplies U[xi] [Cout, Cin] by V[xi] [Cin, tiles] for the
 * 16 xi as one batched launch, and the output transform folds the 16 products of each tile back
 * into its 2x2 pixels with the bias and the residual. Tiles go in chunks (at most
 * {@link CHUNK_BYTES} of V and of the products at once), so images of any size fit.
 *
 * Images of 1 x 1 pixels (a UNet's deepest level at 64 x 64) read only the centre tap of each
 * filter, g11 = U5 - U6 - U9 + U10: one [Cout, Cin] GEMM instead of 16.
 *
 * f32 only (the transformed weights of an f16 store would round differently from the stored
 * ones); GPUs keep the implicit GEMM of kernels/conv2d.ts.
 * @module
 */

import type { Gpu } from "./gpu/device.ts";
import { bindingRuns } from "./gpu/chunks.ts";
import { defineKernel, Params } from "./gpu/kernel.ts";
import { fmtShape, type Tensor } from "./gpu/tensor.ts";
import { launchDirectGemm } from "./gemm_direct.ts";
import { centreTapGemm } from "./conv2d.ts";
import { bindingsWgsl, launch1d, MAIN_1D_WGSL, prelude } from "./wgsl.ts";

/** Transform points per tile (4 x 4). */
export const WINOGRAD_POINTS = 16;
/** Most bytes of transformed input (and of products) a chunk of tiles holds. */
const CHUNK_BYTES = 32 * 2 ** 20;
let chunkOverride: number | null = null;

/** Sets the most tiles per chunk (tests cover the chunking); `null` restores the byte budget. */
export function setWinogradChunkOverride(tiles: number | null): void {
  chunkOverride = tiles;
}

/**
 * True when a convolution of this geometry can take the Winograd path: 3x3, stride 1, padding
 * 1, channel counts the GEMM takes (Cin % 4 == 0).
 */
export function winogradFits(
  g: { kh: number; kw: number; stride: number; padding: number; cin: number },
): boolean {
  return g.kh === 3 && g.kw === 3 && g.stride === 1 && g.padding === 1 && g.cin % 4 === 0;
}

/**
 * The filter transform U = G g G^T of every 3x3 filter of a [Cout, Cin, 3, 3] weight, as
 * [16, Cout, Cin] (point xi = 4 row + column of the 4x4 transform), G = [[1, 0, 0],
 * [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]].
 *
 * @example
 * ```ts
 * const u = winogradWeights(w, 320, 320); // Float32Array of 16 * 320 * 320
 * ```
 */
export function winogradWeights(w: ArrayLike<number>, cout: number, cin: number): Float32Array {
  if (w.length !== cout * cin * 9) {
    throw new Error(`winogradWeights: ${w.length} values for [${cout}, ${cin}, 3, 3]`);
  }
  const plane = cout * cin;
  const u = new Float32Array(WINOGRAD_POINTS * plane);
  for (let f = 0, o = 0; f < plane; f++, o += 9) {
    const g0 = w[o], g1 = w[o + 1], g2 = w[o + 2], g3 = w[o + 3], g4 = w[o + 4];
    const g5 = w[o + 5], g6 = w[o + 6], g7 = w[o + 7], g8 = w[o + 8];
    // Each row (a, b, c) of G g (4 x 3) times G^T: a, (a + b + c) / 2, (a - b + c) / 2, c.
    const put = (r: number, a: number, b: number, c: number) => {
      const at = r * 4 * plane + f;
      u[at] = a;
      u[at + plane] = 0.5 * (a + b + c);
      u[at + 2 * plane] = 0.5 * (a - b + c);
      u[at + 3 * plane] = c;
    };
    put(0, g0, g1, g2);
    put(1, 0.5 * (g0 + g3 + g6), 0.5 * (g1 + g4 + g7), 0.5 * (g2 + g5 + g8));
    put(2, 0.5 * (g0 - g3 + g6), 0.5 * (g1 - g4 + g7), 0.5 * (g2 - g5 + g8));
    put(3, g6, g7, g8);
  }
  return u;
}

/** Input transform: V[xi, ci, j] = (B^T d B)[xi] of tile t0 + j (zeros past the last tile). */
const inputKernel = defineKernel("winograd_input", ({ dtype }) => /* wgsl */ `
// winograd_input: 1 x [N, C, H, W], 2 v [16, C, cols] f32. Thread i = (ci, j) -> tile t0 + j.
${prelude(dtype)}
struct Params { n: u32, C: u32, H: u32, W: u32, tw: u32, tpi: u32, t0: u32, cols: u32, tiles: u32 }
${bindingsWgsl(["x: array<T>", "v: array<f32>"])}
${MAIN_1D_WGSL}
  let ci = i / p.cols;
  let j = i % p.cols;
  let t = p.t0 + j;
  var d: array<f32, 16>;
  if (t < p.tiles) {
    let img = t / p.tpi;
    let r = t % p.tpi;
    let y0 = i32(r / p.tw) * 2 - 1;
    let x0 = i32(r % p.tw) * 2 - 1;
    let base = (img * p.C + ci) * p.H * p.W;
    for (var a = 0; a < 4; a++) {
      for (var b = 0; b < 4; b++) {
        let y = y0 + a;
        let xx = x0 + b;
        if (y >= 0 && y < i32(p.H) && xx >= 0 && xx < i32(p.W)) {
          d[a * 4 + b] = f32(x[base + u32(y) * p.W + u32(xx)]);
        }
      }
    }
  }
  // B^T d (rows), then (B^T d) B (columns); B^T = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]].
  var e: array<f32, 16>;
  for (var c = 0; c < 4; c++) {
    e[c] = d[c] - d[8 + c];
    e[4 + c] = d[4 + c] + d[8 + c];
    e[8 + c] = d[8 + c] - d[4 + c];
    e[12 + c] = d[4 + c] - d[12 + c];
  }
  let plane = p.C * p.cols;
  let o = ci * p.cols + j;
  for (var r = 0; r < 4; r++) {
    let k = r * 4;
    v[u32(k) * plane + o] = e[k] - e[k + 2];
    v[u32(k + 1) * plane + o] = e[k + 1] + e[k + 2];
    v[u32(k + 2) * plane + o] = e[k + 2] - e[k + 1];
    v[u32(k + 3) * plane + o] = e[k + 1] - e[k + 3];
  }
}`);

/** Compile-time options of the output transform. */
interface OutputVariant {
  bias: boolean;
  residual: boolean;
}

/** Output transform: the 2x2 pixels of tile t0 + j from its 16 products, + bias + residual. */
const outputKernel = defineKernel<OutputVariant>("winograd_output", {
  key: (v) => `${v.bias ? "bias" : "nobias"}-${v.residual ? "res" : "nores"}`,
  source: ({ dtype, variant: v }) => /* wgsl */ `
// winograd_output: 1 m [16, Cout, cols] f32, then bias [Cout] and residual [N, Cout, H, W] when
// present, last y [N, Cout, H, W]. Thread i = (co, j) -> tile t0 + j.
${prelude(dtype)}
struct Params { n: u32, Cout: u32, H: u32, W: u32, tw: u32, tpi: u32, t0: u32, cols: u32, tiles: u32 }
${
    bindingsWgsl([
      "m: array<f32>",
      ...(v.bias ? ["bias: array<T>"] : []),
      ...(v.residual ? ["res: array<T>"] : []),
      "y: array<T>",
    ])
  }
${MAIN_1D_WGSL}
  let co = i / p.cols;
  let j = i % p.cols;
  let t = p.t0 + j;
  if (t >= p.tiles) { return; }
  let plane = p.Cout * p.cols;
  let o = co * p.cols + j;
  var q: array<f32, 16>;
  for (var k = 0u; k < 16u; k++) { q[k] = m[k * plane + o]; }
  // A^T q (rows), then (A^T q) A (columns); A^T = [[1, 1, 1, 0], [0, 1, -1, -1]].
  var s: array<f32, 8>;
  for (var c = 0; c < 4; c++) {
    s[c] = q[c] + q[4 + c] + q[8 + c];
    s[4 + c] = q[4 + c] - q[8 + c] - q[12 + c];
  }
  let b = ${v.bias ? "f32(bias[co])" : "0.0"};
  let img = t / p.tpi;
  let r = t % p.tpi;
  let oy = (r / p.tw) * 2u;
  let ox = (r % p.tw) * 2u;
  let base = (img * p.Cout + co) * p.H * p.W;
  for (var a = 0u; a < 2u; a++) {
    let k = a * 4u;
    let pair = vec2<f32>(s[k] + s[k + 1u] + s[k + 2u], s[k + 1u] - s[k + 2u] - s[k + 3u]);
    for (var c = 0u; c < 2u; c++) {
      if (oy + a < p.H && ox + c < p.W) {
        let at = base + (oy + a) * p.W + ox + c;
        y[at] = T(pair[c] + b${v.residual ? " + f32(res[at])" : ""});
      }
    }
  }
}`,
});

/** Centre taps from transformed filters: c[co, ci] = U5 - U6 - U9 + U10. */
const centreKernel = defineKernel("winograd_centre", ({ dtype }) => /* wgsl */ `
// winograd_centre: 1 u [6, n] (points 5..10 of the transformed filters), 2 c [n]: each
// filter's centre tap.
${prelude(dtype)}
struct Params { n: u32 }
${bindingsWgsl(["u: array<T>", "c: array<T>"])}
${MAIN_1D_WGSL}
  let n = p.n;
  c[i] = T(f32(u[i]) - f32(u[n + i]) - f32(u[4u * n + i]) + f32(u[5u * n + i]));
}`);

/** Options of {@link conv2dWinograd}. */
export interface WinogradOptions {
  /** [Cout]. */
  bias?: Tensor;
  /** [N, Cout, H, W], added last (ResNet skip). */
  residual?: Tensor;
}

/**
 * The 3x3 / stride 1 / padding 1 convolution of `x` [N, Cin, H, W] by transformed filters `u`
 * [16, Cout, Cin] ({@link winogradWeights}), f32, on the direct GEMM -> new tensor
 * [N, Cout, H, W] (see the module doc).
 *
 * @example
 * ```ts
 * const u = gpu.upload(winogradWeights(w, cout, cin), [16, cout, cin]);
 * const y = conv2dWinograd(gpu, x, u, { bias });
 * ```
 */
export function conv2dWinograd(
  gpu: Gpu,
  x: Tensor,
  u: Tensor,
  options: WinogradOptions = {},
): Tensor {
  const [N, C, H, W] = x.shape;
  const [points, Cout, Cin] = u.shape;
  if (
    x.rank !== 4 || u.rank !== 3 || points !== WINOGRAD_POINTS || Cin !== C || C % 4 !== 0 ||
    x.dtype !== "f32" || u.dtype !== "f32"
  ) {
    throw new Error(
      `conv2d (winograd): expected f32 x [N, C, H, W] and u [16, Cout, C] with C % 4 == 0, got ` +
        `x ${fmtShape(x.shape)} ${x.dtype}, u ${fmtShape(u.shape)} ${u.dtype}`,
    );
  }
  const outShape = [N, Cout, H, W];
  const { bias, residual } = options;
  if (bias && (bias.rank !== 1 || bias.shape[0] !== Cout || bias.dtype !== "f32")) {
    throw new Error(`conv2d (winograd): expected f32 bias [${Cout}], got ${fmtShape(bias.shape)}`);
  }
  if (residual && (fmtShape(residual.shape) !== fmtShape(outShape) || residual.dtype !== "f32")) {
    throw new Error(
      `conv2d (winograd): expected f32 residual ${fmtShape(outShape)}, got ${
        fmtShape(residual.shape)
      }`,
    );
  }
  const out = gpu.empty(outShape, "f32", "conv2d");
  // Counted as the direct convolution (the nominal cost; see Gpu.flops).
  gpu.flops += 2 * N * Cout * H * W * C * 9;
  if (out.size === 0) return out;
  for (const [s, n] of bindingRuns(gpu, "conv2d", N, [x, residual, out], "image")) {
    const w = (t: Tensor) => t.window(N, s, n);
    const o = { x: w(x), u, out: w(out), bias, residual: residual && w(residual) };
    if (H === 1 && W === 1 && Cout % 4 === 0) centreInto(gpu, o);
    else winogradInto(gpu, o);
  }
  return out;
}

interface WinogradCall {
  x: Tensor;
  u: Tensor;
  out: Tensor;
  bias?: Tensor;
  residual?: Tensor;
}

/** 1 x 1 images: the centre taps of the filters, then `x [N, C] @ centre [Cout, C]^T`. */
function centreInto(gpu: Gpu, c: WinogradCall): void {
  const C = c.x.shape[1], Cout = c.u.shape[1];
  const centre = gpu.empty([Cout, C], "f32", "conv2d.centre");
  gpu.dispatch(centreKernel, {
    dtype: "f32",
    params: new Params().u32(Cout * C),
    // Points 5..10 only: the whole [16, Cout, Cin] may exceed one binding.
    bindings: [c.u.window(WINOGRAD_POINTS, 5, 6), centre],
    groups: launch1d(Cout * C),
  });
  centreTapGemm(gpu, { ...c, centre });
  centre.release();
}

/** Tiles in chunks: input transform, 16 GEMMs in one launch, output transform. */
function winogradInto(gpu: Gpu, c: WinogradCall): void {
  const [N, C, H, W] = c.x.shape, Cout = c.u.shape[1];
  const th = Math.ceil(H / 2), tw = Math.ceil(W / 2), tpi = th * tw, tiles = N * tpi;
  // Columns per chunk: a multiple of 4 (the GEMM's vec4 columns), within the byte budget and
  // one binding for V [16, C, cols] and the products [16, Cout, cols].
  const perCol = WINOGRAD_POINTS * Math.max(C, Cout) * 4;
  const budget = Math.min(CHUNK_BYTES, gpu.limits.maxStorageBufferBindingSize);
  const cols = Math.max(
    4,
    Math.min(Math.ceil(tiles / 4) * 4, chunkOverride ?? Math.floor(budget / perCol / 4) * 4),
  );
  const geometry = (channels: number, t0: number) =>
    new Params().u32(channels * cols).u32(channels).u32(H).u32(W).u32(tw).u32(tpi).u32(t0)
      .u32(cols).u32(tiles);
  const variant = { bias: c.bias !== undefined, residual: c.residual !== undefined };
  for (let t0 = 0; t0 < tiles; t0 += cols) {
    const v = gpu.empty([WINOGRAD_POINTS, C, cols], "f32", "winograd.v");
    gpu.dispatch(inputKernel, {
      dtype: "f32",
      params: geometry(C, t0),
      bindings: [c.x, v],
      groups: launch1d(C * cols),
    });
    const m = gpu.empty([WINOGRAD_POINTS, Cout, cols], "f32", "winograd.m");
    // One batched GEMM over the 16 points, or runs of points when the filters [16, Cout, C]
    // exceed one binding (SD1.5's 2560-channel convs on lavapipe).
    for (const [x0, k] of bindingRuns(gpu, "conv2d", WINOGRAD_POINTS, [c.u, v, m], "point")) {
      const w = (t: Tensor) => t.window(WINOGRAD_POINTS, x0, k);
      launchDirectGemm(gpu, {
        op: "conv2d",
        dtype: "f32",
        a: w(c.u),
        b: w(v),
        M: Cout,
        N: cols,
        K: C,
        batch: k,
        strideA: Cout * C,
        strideB: C * cols,
        transB: false,
        out: w(m),
      });
    }
    v.release();
    const bindings = [m];
    if (c.bias) bindings.push(c.bias);
    if (c.residual) bindings.push(c.residual);
    bindings.push(c.out);
    gpu.dispatch(outputKernel, {
      dtype: "f32",
      variant,
      params: geometry(Cout, t0),
      bindings,
      groups: launch1d(Cout * cols),
    });
    m.release();
  }
}
