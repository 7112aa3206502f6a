/**
 * 2-D convolution (NCHW) as an implicit GEMM with the tiled GEMM of kernels/matmul.ts:
 * per output `out[Cout, n*Ho*Wo + pixel] = weight[Cout, C*kh*kw] @ col(x)[C*kh*kw, pixels]`,
 * where the im2col matrix is never stored: each B tile is gathered from x straight into
 * workgroup memory, padding handled by bounds checks. GEMM rows are output channels, GEMM
 * columns are the output pixels of all images (so small feature maps still fill tiles), K is
 * C*kh*kw. Columns map to contiguous output, so stores are coalesced.
 *
 * Variants: "pw" (1x1, stride 1, no padding, Ho*Wo % 4 == 0) loads x as vec4 along pixels;
 * "gen" gathers element by element and steps (c, ky, kx) incrementally (no divisions in the K
 * loop). The weight is loaded as vec4 when K % 4 == 0; the output is written as vec4 when
 * Ho*Wo % 4 == 0. Bias and residual (ResNet skip) are fused into the epilogue.
 *
 * Software adapters (see kernels/gemm_direct.ts) take the direct path when C*kh*kw % 4 == 0:
 * 1x1 convolutions multiply the weight by each image as is; the rest build the im2col matrix
 * in chunks (kernels/im2col.ts) and multiply it by the weight, with the same fused epilogue.
 *
 * Backward (training, {@link conv2dBackward}): the input gradient is the transposed convolution,
 * an implicit GEMM `dx[C, n*H*W + pixel] = weight^T[C, Cout*kh*kw] @ gather(gy)` whose B tile
 * gathers the gy pixels each input pixel fed; the weight gradient an implicit GEMM
 * `dw[Cout, C*kh*kw] = gy[Cout, pixels] @ col(x)^T` over every output pixel, with the patch
 * matrix gathered from x as in the forward. Software adapters multiply on the direct path
 * instead: `dcol = weight^T @ gy` per image then col2im for dx, and gy (channels first) times
 * the im2col matrix for dw. The bias gradient sums gy over images and pixels.
 * @module
 */

import type { Gpu } from "./gpu/device.ts";
import { bindingRuns } from "./gpu/chunks.ts";
import { ceilDiv, defineKernel, Params } from "./gpu/kernel.ts";
import { type DType, fmtShape, type Tensor } from "./gpu/tensor.ts";
import {
  channelSums,
  checkDTypes,
  epilogueKey,
  GEMM_THREADS,
  gemmBindingsWgsl,
  type GemmEpilogue,
  gemmGrid,
  gemmSlots,
  type GemmTile,
  gemmTileKey,
  kMajorLoaderWgsl,
  pickGemmTile,
  sameShape,
  tiledGemmWgsl,
} from "./gemm.ts";
import { launchDirectGemm, usesDirectGemm } from "./gemm_direct.ts";
import { col2im, convOutSize, im2col } from "./im2col.ts";
import { recording, taped } from "./gpu/tape.ts";
import { add } from "./elementwise.ts";
import { permute } from "./layout.ts";
import { bindingsWgsl, launch1d, prelude } from "./wgsl.ts";

export { convOutSize } from "./im2col.ts";

/** Compile-time options of the conv2d kernel. */
interface ConvVariant extends GemmEpilogue {
  /** 1x1 / stride 1 / no padding with vec4 pixel loads ("pw"), or the general gather ("gen"). */
  pointwise: boolean;
  /** Weight loads as vec4 (K % 4 == 0). */
  vecA: boolean;
  /** Output (and residual) as vec4 (Ho*Wo % 4 == 0). */
  vecOut: boolean;
  tile: GemmTile;
}

function convKey(v: ConvVariant): string {
  return [
    v.pointwise ? "pw" : "gen",
    v.vecA ? "a4" : "a1",
    v.vecOut ? "o4" : "o1",
    epilogueKey(v),
    gemmTileKey(v.tile),
  ].join("-");
}

function conv2dSource(dtype: DType, v: ConvVariant): string {
  const { tm, tn, bk } = v.tile;
  const bm = 16 * tm, bn = 16 * tn, bn4 = bn / 4;
  const operands = [
    `x: array<${v.pointwise ? "T4" : "T"}>`,
    `wt: array<${v.vecA ? "T4" : "T"}>`,
  ] as const;
  const loadA = kMajorLoaderWgsl({
    name: "A",
    buf: "wt",
    tile: "As",
    rows: bm,
    bk,
    vec: v.vecA,
    r0: "m0",
    rowCount: "p.M",
    base: "0u",
  });

  let loadB: string, setup: string;
  let loadBExpr: (i: number, k0: string) => string;
  let afterLoadB: ((i: number) => string) | undefined;
  if (v.pointwise) {
    // x [N, C, HW] with HW % 4 == 0: this thread's 4 pixels stay in one image.
    const rowStep = GEMM_THREADS / bn4;
    loadB = `fn loadB(k: u32) -> vec4<f32> {
  if (pvalid && k < p.K) { return vec4<f32>(x[(xBase + k * p.HoWo + pix) / 4u]); }
  return vec4<f32>(0.0);
}
fn storeB(e: u32, v: vec4<f32>) { Bs[e] = v; }`;
    setup = `  let j = n0 + (lid % ${bn4}u) * 4u;
  pvalid = j < p.N;
  let img = j / p.HoWo;
  pix = j % p.HoWo;
  xBase = img * p.C * p.HoWo;
  let krow = lid / ${bn4}u;`;
    loadBExpr = (i, k0) => `loadB(${k0} + krow + ${i * rowStep}u)`;
  } else {
    // General gather: one output pixel per thread, K rows krow + i * rowStep with (c, ky, kx)
    // stepped by bk per tile as a mixed-radix add (digits p.dc, p.dky, p.dkx).
    const rowStep = GEMM_THREADS / bn;
    loadB = `fn loadB(s: vec3<i32>) -> f32 {
  let iy = iy0 + s.y; let ix = ix0 + s.z;
  if (pvalid && s.x < i32(p.C) && u32(iy) < p.H && u32(ix) < p.W) {
    return f32(x[xBase + (u32(s.x) * p.H + u32(iy)) * p.W + u32(ix)]);
  }
  return 0.0;
}
fn stepK(s: vec3<i32>) -> vec3<i32> {
  var c = s.x + p.dc; var ky = s.y + p.dky; var kx = s.z + p.dkx;
  if (kx >= p.kw) { kx -= p.kw; ky += 1; }
  if (ky >= p.kh) { ky -= p.kh; c += 1; }
  return vec3<i32>(c, ky, kx);
}
fn startK(k: u32) -> vec3<i32> {
  let khw = u32(p.kh * p.kw); let r = k % khw;
  return vec3<i32>(i32(k / khw), i32(r / u32(p.kw)), i32(r % u32(p.kw)));
}
fn storeB(e: u32, v: f32) { Bs[e / 4u][e % 4u] = v; }`;
    const starts = Array.from(
      { length: gemmSlots(bn, bk, false) },
      (_, i) => `  var ks${i} = startK(krow + ${i * rowStep}u);`,
    );
    setup = `  let j = n0 + lid % ${bn}u;
  pvalid = j < p.N;
  let img = j / p.HoWo;
  let q = j % p.HoWo;
  iy0 = i32(q / p.Wo) * p.stride - p.pad;
  ix0 = i32(q % p.Wo) * p.stride - p.pad;
  xBase = img * p.C * p.H * p.W;
  let krow = lid / ${bn}u;
${starts.join("\n")}`;
    loadBExpr = (i) => `loadB(ks${i})`;
    afterLoadB = (i) => `ks${i} = stepK(ks${i});`;
  }

  const bias = (m: string) => (v.bias ? `f32(biasv[${m}])` : "0.0");
  const epilogue = v.vecOut
    ? `fn emit(m: u32, j: u32, acc: vec4<f32>) {
  if (m < p.M && j < p.N) {
    let o = ((j / p.HoWo) * p.M + m) * p.HoWo + j % p.HoWo;
    var y = acc + ${bias("m")};${v.residual ? "\n    y += vec4<f32>(res[o / 4u]);" : ""}
    dst[o / 4u] = T4(y);
  }
}`
    : `fn emit(m: u32, j: u32, acc: vec4<f32>) {
  if (m >= p.M) { return; }
  let b = ${bias("m")};
  for (var c = 0u; c < 4u; c++) {
    let jc = j + c;
    if (jc < p.N) {
      let o = ((jc / p.HoWo) * p.M + m) * p.HoWo + jc % p.HoWo;
      var y = acc[c] + b;${v.residual ? "\n      y += f32(res[o]);" : ""}
      dst[o] = T(y);
    }
  }
}`;
  const tiled = tiledGemmWgsl({
    tile: v.tile,
    vecA: v.vecA,
    vecB: v.pointwise,
    loadB: loadBExpr,
    afterLoadB,
    setup: `  m0 = g * ${bm}u;
  n0 = wid.x * ${bn}u;
${setup}`,
  });
  const key = convKey(v);
  return `${prelude(dtype, { vec: v.vecOut, wg: GEMM_THREADS })}
// conv2d ${key}: out[n, co] = sum_{c, ky, kx} weight[co, c, ky, kx] * x[n, c, oy*s+ky-pad, ox*s+kx-pad]
//   + bias[co] + residual[n, co]; as a GEMM: M = Cout rows, N = images * Ho * Wo columns,
//   K = C * kh * kw. Binding 1: x [N, C, H, W]; 2: weight [Cout, C, kh, kw]; then bias [Cout]
//   and residual [N, Cout, Ho, Wo] when present; last: out [N, Cout, Ho, Wo].
// Tile ${bm} x ${bn} x ${bk}; workgroups (column tiles, row tiles).
struct Params {
  M: u32, N: u32, K: u32, groups: u32, C: u32, H: u32, W: u32, Wo: u32, HoWo: u32,
  kh: i32, kw: i32, stride: i32, pad: i32, dc: i32, dky: i32, dkx: i32,
}
${gemmBindingsWgsl(operands, { ...v, biasElem: "T" })}
${tiled.decls}
var<private> pvalid: bool;
var<private> xBase: u32;
var<private> pix: u32;
var<private> iy0: i32;
var<private> ix0: i32;
${loadA}
${loadB}
${epilogue}
${tiled.main}
`;
}

const conv2dKernel = defineKernel<ConvVariant>("conv2d", {
  key: convKey,
  source: ({ dtype, variant }) => conv2dSource(dtype, variant),
});

/** Options of {@link conv2d}. */
export interface Conv2dOptions {
  /** [Cout]. */
  bias?: Tensor;
  /** 1 or 2 (default 1). */
  stride?: number;
  /** Zero padding on every side (default (k - 1) / 2, i.e. "same" for odd kernels at stride 1). */
  padding?: number;
  /** [N, Cout, Ho, Wo], added in the epilogue (ResNet skip). */
  residual?: Tensor;
}

/**
 * 2-D convolution, NCHW: x [N, C, H, W], weight [Cout, C, kh, kw] -> new tensor
 * [N, Cout, Ho, Wo] with `Ho = floor((H + 2 pad - kh) / stride) + 1`. Any small kernel size
 * works (SD uses 1x1 and 3x3; downsampling is 3x3, stride 2, padding 1).
 *
 * @example
 * ```ts
 * const h = conv2d(gpu, x, w.conv1, { bias: w.conv1Bias }); // 3x3, padding 1
 * const d = conv2d(gpu, h, w.down, { bias: w.downBias, stride: 2, padding: 1 });
 * ```
 */
export function conv2d(gpu: Gpu, x: Tensor, weight: Tensor, options: Conv2dOptions = {}): Tensor {
  if (x.rank !== 4 || weight.rank !== 4 || weight.shape[1] !== x.shape[1]) {
    throw new Error(
      `conv2d: expected x [N, C, H, W] and weight [Cout, C, kh, kw] with the same C, got x ${
        fmtShape(x.shape)
      }, weight ${fmtShape(weight.shape)}`,
    );
  }
  const [N, , H, W] = x.shape;
  const [Cout, , kh, kw] = weight.shape;
  const stride = options.stride ?? 1;
  const padding = options.padding ?? Math.floor((Math.max(kh, kw) - 1) / 2);
  if (!Number.isInteger(stride) || stride < 1 || !Number.isInteger(padding) || padding < 0) {
    throw new Error(
      `conv2d: expected stride >= 1 and padding >= 0 integers, got ${stride}, ${padding}`,
    );
  }
  const Ho = convOutSize(H, kh, stride, padding), Wo = convOutSize(W, kw, stride, padding);
  if (Ho < 1 || Wo < 1 || kh < 1 || kw < 1) {
    throw new Error(
      `conv2d: expected a kernel that fits the padded input, got x ${fmtShape(x.shape)}, weight ${
        fmtShape(weight.shape)
      }, padding ${padding}`,
    );
  }
  const outShape = [N, Cout, Ho, Wo];
  const dtype = checkDTypes(gpu, "conv2d", {
    x,
    weight,
    bias: options.bias,
    residual: options.residual,
  });
  if (options.bias && (options.bias.rank !== 1 || options.bias.shape[0] !== Cout)) {
    throw new Error(`conv2d: expected bias [${Cout}], got ${fmtShape(options.bias.shape)}`);
  }
  const res = options.residual;
  if (res && !sameShape(res.shape, outShape)) {
    throw new Error(
      `conv2d: expected residual ${fmtShape(outShape)} (the output shape), got ${
        fmtShape(res.shape)
      }`,
    );
  }
  const geometry = { kh, kw, stride, padding, Ho, Wo };
  gpu.flops += 2 * N * Cout * Ho * Wo * x.shape[1] * kh * kw;
  if (recording(gpu, [x, weight, options.bias])) {
    const z = launchConv(gpu, { x, weight, bias: options.bias, dtype }, geometry);
    taped(gpu, {
      name: "conv2d",
      inputs: options.bias ? [x, weight, options.bias] : [x, weight],
      output: z,
      saved: [x, weight],
      backward: (gy, needs) => {
        const g = conv2dBackward(gpu, gy, {
          x,
          weight,
          stride,
          padding,
          needs: { x: needs[0], weight: needs[1], bias: needs[2] ?? false },
        });
        return options.bias ? [g.dx, g.dw, g.db] : [g.dx, g.dw];
      },
    });
    return res ? add(gpu, z, res) : z;
  }
  return launchConv(gpu, { x, weight, bias: options.bias, residual: res, dtype }, geometry);
}

/** Convolution geometry after the checks of {@link conv2d}. */
interface ConvGeometry {
  kh: number;
  kw: number;
  stride: number;
  padding: number;
  Ho: number;
  Wo: number;
}

/** The checked forward: a new output, split into runs of images that fit the bindings. */
function launchConv(gpu: Gpu, c: Omit<DirectConv, "out">, g: ConvGeometry): Tensor {
  const { x, weight, dtype } = c;
  const res = c.residual;
  const [N, C] = x.shape;
  const [Cout, , kh, kw] = weight.shape;
  const { stride, padding, Ho, Wo } = g;
  const out = gpu.empty([N, Cout, Ho, Wo], dtype, "conv2d");
  if (N * Ho * Wo === 0 || Cout === 0) return out;
  if (C * kh * kw === 0) throw new Error(`conv2d: expected C > 0, got x ${fmtShape(x.shape)}`);
  // Images are independent: operands larger than one binding split into runs of images.
  for (const [s, n] of bindingRuns(gpu, "conv2d", N, [x, res, out], "image")) {
    const w = (t: Tensor) => t.window(N, s, n);
    convInto(gpu, {
      x: w(x),
      weight,
      out: w(out),
      bias: c.bias,
      residual: res && w(res),
      dtype,
    }, {
      kh,
      kw,
      stride,
      padding,
      Ho,
      Wo,
    });
  }
  return out;
}

/** One conv2d into `c.out` (every operand fits one binding). */
function convInto(
  gpu: Gpu,
  c: DirectConv,
  g: { kh: number; kw: number; stride: number; padding: number; Ho: number; Wo: number },
): void {
  const { x, weight, out } = c;
  const [N, C, H, W] = x.shape;
  const Cout = weight.shape[0];
  const { kh, kw, stride, padding, Ho, Wo } = g;
  const HoWo = Ho * Wo, P = N * HoWo, K = C * kh * kw;
  if (usesDirectGemm(gpu) && K % 4 === 0) {
    if (centreTapDirect(gpu, c, { kh, kw, stride, padding, Ho, Wo })) return;
    if (conv1x1Direct(gpu, c, { stride, padding, HoWo })) return;
    convIm2colDirect(gpu, c, { kh, kw, stride, padding, HoWo });
    return;
  }
  const tile = pickGemmTile(gpu, Cout, P);
  const variant: ConvVariant = {
    pointwise: kh === 1 && kw === 1 && stride === 1 && padding === 0 && HoWo % 4 === 0,
    vecA: K % 4 === 0,
    vecOut: HoWo % 4 === 0,
    bias: c.bias !== undefined,
    residual: c.residual !== undefined,
    tile,
  };
  const groups = ceilDiv(Cout, 16 * tile.tm);
  const { bk } = tile;
  const params = new Params().u32(Cout).u32(P).u32(K).u32(groups).u32(C).u32(H).u32(W).u32(Wo)
    .u32(HoWo).i32(kh).i32(kw).i32(stride).i32(padding)
    .i32(Math.floor(bk / (kh * kw))).i32(Math.floor(bk / kw) % kh).i32(bk % kw);
  const bindings: Tensor[] = [x, weight];
  if (c.bias) bindings.push(c.bias);
  if (c.residual) bindings.push(c.residual);
  bindings.push(out);
  gpu.dispatch(conv2dKernel, {
    dtype: c.dtype,
    variant,
    params,
    bindings,
    groups: gemmGrid("conv2d", ceilDiv(P, 16 * tile.tn), groups),
  });
}

/** Most bytes of im2col patch matrix the software-adapter path builds at once. */
const IM2COL_CHUNK_BYTES = 64 * 2 ** 20;
let chunkBytesOverride: number | null = null;

/**
 * Sets the most bytes of patch matrix that the direct (software adapter) path of conv2d builds
 * at once (tests use a tiny value to cover the chunking); `null` restores 64 MiB.
 */
export function setIm2colChunkOverride(bytes: number | null): void {
  chunkBytesOverride = bytes;
}

/** Tensors of one conv2d on the direct path. */
interface DirectConv {
  x: Tensor;
  weight: Tensor;
  out: Tensor;
  bias?: Tensor;
  residual?: Tensor;
  dtype: DType;
}

/**
 * A square kernel centred on 1 x 1 images (SD1.5's deepest level at 64 x 64, a 3x3 conv with
 * padding 1) on the direct path: every other tap reads zero padding, so the output is
 * `x [N, C] @ centre [Cout, C]^T`, a ninth of the patch-matrix product, with no patch matrix.
 * The centre taps are gathered from the weight per call (weights may change between calls
 * while training). Not while the weight's gradient is recorded (the gather would record too).
 * False when not such a convolution.
 */
function centreTapDirect(
  gpu: Gpu,
  c: DirectConv,
  g: { kh: number; kw: number; stride: number; padding: number; Ho: number; Wo: number },
): boolean {
  const [, C, H, W] = c.x.shape;
  const Cout = c.weight.shape[0];
  const p = g.padding;
  if (
    H !== 1 || W !== 1 || g.stride !== 1 || g.kh !== 2 * p + 1 || g.kw !== 2 * p + 1 ||
    g.Ho !== 1 || g.Wo !== 1 || p === 0 || C % 4 !== 0 || Cout % 4 !== 0 ||
    recording(gpu, [c.weight])
  ) return false;
  const centre = gpu.empty([Cout, C], c.dtype, "conv2d.centre");
  const n = Cout * C;
  gpu.dispatch(centreTapsKernel, {
    dtype: c.dtype,
    params: new Params().u32(n).u32(g.kh * g.kw).u32(p * g.kw + p),
    bindings: [c.weight, centre],
    groups: launch1d(n),
  });
  centreTapGemm(gpu, { ...c, centre });
  centre.release();
  return true;
}

/**
 * The convolution of 1 x 1 images `x` [N, C, 1, 1] by their filters' centre taps `centre`
 * [Cout, C] on the direct GEMM: `x [N, C] @ centre^T` is row-major [N, Cout], the NCHW output
 * (+ bias [Cout], + residual). Shared with the Winograd path (kernels/winograd.ts).
 */
export function centreTapGemm(
  gpu: Gpu,
  c: { x: Tensor; centre: Tensor; out: Tensor; bias?: Tensor; residual?: Tensor },
): void {
  const [Cout, C] = c.centre.shape;
  launchDirectGemm(gpu, {
    op: "conv2d",
    dtype: c.centre.dtype,
    a: c.x,
    b: c.centre,
    M: c.x.shape[0],
    N: Cout,
    K: C,
    batch: 1,
    strideA: 0,
    strideB: 0,
    transB: true,
    out: c.out,
    bias: c.bias,
    residual: c.residual,
  });
}

/** The centre tap of each filter: `y[i] = w[i * kk + centre]` for the `n` filters of a weight. */
const centreTapsKernel = defineKernel("conv2d_centre_taps", ({ dtype }) => /* wgsl */ `
// conv2d_centre_taps: 1 weight [n, kk] (filters of kh x kw taps), 2 y [n]: tap p.centre of each.
${prelude(dtype)}
struct Params { n: u32, kk: u32, centre: u32 }
${bindingsWgsl(["w: array<T>", "y: array<T>"])}
@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = thread_id(gid, nwg);
  if (i >= p.n) { return; }
  y[i] = w[i * p.kk + p.centre];
}`);

/**
 * 1x1 / stride 1 / no padding with HoWo % 4 == 0 on the direct path: per image,
 * `out[img] = weight [Cout, C] @ x[img] [C, HoWo]` with no patch matrix. False when not such a
 * convolution.
 */
function conv1x1Direct(
  gpu: Gpu,
  c: DirectConv,
  g: { stride: number; padding: number; HoWo: number },
): boolean {
  const [N, C, ,] = c.x.shape;
  const [Cout, , kh, kw] = c.weight.shape;
  if (kh !== 1 || kw !== 1 || g.stride !== 1 || g.padding !== 0 || g.HoWo % 4 !== 0) return false;
  launchDirectGemm(gpu, {
    op: "conv2d",
    dtype: c.dtype,
    a: c.weight,
    b: c.x,
    M: Cout,
    N: g.HoWo,
    K: C,
    batch: N,
    strideA: 0,
    strideB: C * g.HoWo,
    transB: false,
    out: c.out,
    bias: c.bias,
    residual: c.residual,
    conv: { HoWo: g.HoWo, j0: 0, cols: g.HoWo },
  });
  return true;
}

/**
 * Any other convolution on the direct path: the patch matrix in chunks of columns (at most
 * {@link IM2COL_CHUNK_BYTES}), each multiplied by the weight [Cout, C * kh * kw] straight into
 * its output pixels.
 */
function convIm2colDirect(
  gpu: Gpu,
  c: DirectConv,
  g: { kh: number; kw: number; stride: number; padding: number; HoWo: number },
): void {
  const [N, C] = c.x.shape;
  const Cout = c.weight.shape[0];
  const K = C * g.kh * g.kw, P = N * g.HoWo;
  const bytesPerColumn = K * (c.dtype === "f16" ? 2 : 4);
  const budget = chunkBytesOverride ?? IM2COL_CHUNK_BYTES;
  const maxCols = Math.min(budget, gpu.limits.maxStorageBufferBindingSize) / bytesPerColumn;
  const chunk = Math.max(4, Math.min(Math.ceil(P / 4) * 4, Math.floor(maxCols / 4) * 4));
  for (let j0 = 0; j0 < P; j0 += chunk) {
    const col = im2col(gpu, c.x, {
      kh: g.kh,
      kw: g.kw,
      stride: g.stride,
      padding: g.padding,
      j0,
      cols: chunk,
    });
    launchDirectGemm(gpu, {
      op: "conv2d",
      dtype: c.dtype,
      a: c.weight,
      b: col,
      M: Cout,
      N: chunk,
      K,
      batch: 1,
      strideA: 0,
      strideB: 0,
      transB: false,
      out: c.out,
      bias: c.bias,
      residual: c.residual,
      conv: { HoWo: g.HoWo, j0, cols: Math.min(chunk, P - j0) },
    });
    col.release();
  }
}

// ---------------------------------------------------------------- backward

/** Compile-time options of the conv2d gradient kernel. */
interface ConvGradVariant {
  /** "dx": input gradient (transposed convolution); "dw": weight gradient. */
  grad: "dx" | "dw";
  tile: GemmTile;
}

function convGradKey(v: ConvGradVariant): string {
  return `${v.grad}-${gemmTileKey(v.tile)}`;
}

/**
 * The two implicit GEMMs of conv2d's backward, element by element (scalar loads; every index
 * decoded per load). The thread's B column is fixed over the K loop (256 % BN == 0), so its
 * decoding happens once in the setup (`pa`, `pb`, `pc`).
 */
function convGradSource(dtype: DType, v: ConvGradVariant): string {
  const { tm, tn, bk } = v.tile;
  const bm = 16 * tm, bn = 16 * tn, r4 = bm / 4;
  const storeA = `fn storeA(e: u32, v: f32) {
  let row = e / ${bk}u;
  As[(e % ${bk}u) * ${r4}u + row / 4u][row % 4u] = v;
}
fn storeB(e: u32, v: f32) { Bs[e / 4u][e % 4u] = v; }`;
  let loaders: string, setup: string, emit: string, doc: string, operands: string[];
  if (v.grad === "dx") {
    doc =
      `// conv2d_grad dx: dx[n, c, iy, ix] = sum_{co, ky, kx} weight[co, c, ky, kx] * gy[n, co, oy, ox]
//   with oy = (iy + pad - ky) / stride and ox = (ix + pad - kx) / stride whole and inside gy.
//   As a GEMM: M = C rows, N = images * H * W columns, K = Cout * kh * kw.
//   Binding 1: gy [N, Cout, Ho, Wo]; 2: weight [Cout, C, kh, kw]; 3: dx [N, C, H, W].`;
    operands = ["gy: array<T>", "wt: array<T>", "dst: array<T>"];
    loaders = `fn loadA(k0: u32, e: u32) -> f32 {
  let c = m0 + e / ${bk}u; let kk = k0 + e % ${bk}u;
  if (c < p.M && kk < p.K) {
    let khw = p.kh * p.kw;
    return f32(wt[((kk / khw) * p.C + c) * khw + kk % khw]);
  }
  return 0.0;
}
fn loadB(k0: u32, e: u32) -> f32 {
  let kk = k0 + e / ${bn}u;
  if (!pvalid || kk >= p.K) { return 0.0; }
  let khw = p.kh * p.kw; let co = kk / khw; let r = kk % khw;
  let ty = i32(pb + p.pad) - i32(r / p.kw); let tx = i32(pc + p.pad) - i32(r % p.kw);
  if (ty < 0 || tx < 0) { return 0.0; }
  let uy = u32(ty); let ux = u32(tx);
  if (uy % p.stride != 0u || ux % p.stride != 0u) { return 0.0; }
  let oy = uy / p.stride; let ox = ux / p.stride;
  if (oy >= p.Ho || ox >= p.Wo) { return 0.0; }
  return f32(gy[((pa * p.Cout + co) * p.Ho + oy) * p.Wo + ox]);
}`;
    setup = `  let j = n0 + lid % ${bn}u;
  pvalid = j < p.N;
  let HW = p.H * p.W;
  pa = j / HW;
  pb = (j % HW) / p.W;
  pc = j % p.W;`;
    emit = `fn emit(m: u32, n: u32, acc: vec4<f32>) {
  if (m >= p.M) { return; }
  let HW = p.H * p.W;
  for (var c = 0u; c < 4u; c++) {
    let j = n + c;
    if (j < p.N) { dst[((j / HW) * p.M + m) * HW + j % HW] = T(acc[c]); }
  }
}`;
  } else {
    doc = `// conv2d_grad dw: dw[co, c, ky, kx] = sum_{n, oy, ox} gy[n, co, oy, ox]
//   * x[n, c, oy * stride + ky - pad, ox * stride + kx - pad]. As a GEMM: M = Cout rows,
//   N = C * kh * kw columns, K = images * Ho * Wo.
//   Binding 1: gy [N, Cout, Ho, Wo]; 2: x [N, C, H, W]; 3: dw [Cout, C, kh, kw].`;
    operands = ["gy: array<T>", "x: array<T>", "dst: array<T>"];
    loaders = `fn loadA(k0: u32, e: u32) -> f32 {
  let co = m0 + e / ${bk}u; let j = k0 + e % ${bk}u;
  if (co < p.M && j < p.K) {
    let HoWo = p.Ho * p.Wo;
    return f32(gy[((j / HoWo) * p.Cout + co) * HoWo + j % HoWo]);
  }
  return 0.0;
}
fn loadB(k0: u32, e: u32) -> f32 {
  let j = k0 + e / ${bn}u;
  if (!pvalid || j >= p.K) { return 0.0; }
  let HoWo = p.Ho * p.Wo; let img = j / HoWo; let q = j % HoWo;
  let iy = i32((q / p.Wo) * p.stride + pb) - i32(p.pad);
  let ix = i32((q % p.Wo) * p.stride + pc) - i32(p.pad);
  if (iy < 0 || ix < 0 || u32(iy) >= p.H || u32(ix) >= p.W) { return 0.0; }
  return f32(x[((img * p.C + pa) * p.H + u32(iy)) * p.W + u32(ix)]);
}`;
    setup = `  let n = n0 + lid % ${bn}u;
  pvalid = n < p.N;
  let khw = p.kh * p.kw;
  pa = n / khw;
  pb = (n % khw) / p.kw;
  pc = n % p.kw;`;
    emit = `fn emit(m: u32, n: u32, acc: vec4<f32>) {
  if (m >= p.M) { return; }
  for (var c = 0u; c < 4u; c++) {
    if (n + c < p.N) { dst[m * p.N + n + c] = T(acc[c]); }
  }
}`;
  }
  const tiled = tiledGemmWgsl({
    tile: v.tile,
    vecA: false,
    vecB: false,
    setup: `  m0 = g * ${bm}u;
  n0 = wid.x * ${bn}u;
${setup}`,
  });
  return `${prelude(dtype, { wg: GEMM_THREADS })}
${doc}
// Tile ${bm} x ${bn} x ${bk}; workgroups (column tiles, row tiles).
struct Params {
  M: u32, N: u32, K: u32, groups: u32, C: u32, H: u32, W: u32, Cout: u32, Ho: u32, Wo: u32,
  kh: u32, kw: u32, stride: u32, pad: u32,
}
${bindingsWgsl(operands)}
${tiled.decls}
var<private> pvalid: bool;
var<private> pa: u32;
var<private> pb: u32;
var<private> pc: u32;
${loaders}
${storeA}
${emit}
${tiled.main}
`;
}

const convGradKernel = defineKernel<ConvGradVariant>("conv2d_grad", {
  key: convGradKey,
  source: ({ dtype, variant }) => convGradSource(dtype, variant),
});

/** Everything one conv2d gradient needs, after the checks of {@link conv2dBackward}. */
interface ConvGrad {
  gy: Tensor;
  x: Tensor;
  weight: Tensor;
  dtype: DType;
  stride: number;
  padding: number;
  Ho: number;
  Wo: number;
}

/** Throws when a tensor of a gradient GEMM does not fit one storage binding (no split yet). */
function checkOneBinding(gpu: Gpu, tensors: readonly Tensor[]): void {
  const limit = gpu.limits.maxStorageBufferBindingSize;
  for (const t of tensors) {
    if (t.byteLength > limit) {
      throw new Error(
        `conv2d backward: ${t.label} ${fmtShape(t.shape)} ${t.dtype} is larger than one storage ` +
          `binding (${limit} bytes); the gradient kernels do not split operands yet`,
      );
    }
  }
}

/** One launch of the tiled gradient kernel: output rows M, columns N, reduction K. */
function launchConvGrad(
  gpu: Gpu,
  c: ConvGrad,
  grad: "dx" | "dw",
  out: Tensor,
  gemm: { M: number; N: number; K: number },
): void {
  const [, C, H, W] = c.x.shape;
  const [Cout, , kh, kw] = c.weight.shape;
  checkOneBinding(gpu, [c.gy, c.x, c.weight, out]);
  const tile = pickGemmTile(gpu, gemm.M, gemm.N);
  const groups = ceilDiv(gemm.M, 16 * tile.tm);
  const params = new Params().u32(gemm.M).u32(gemm.N).u32(gemm.K).u32(groups).u32(C).u32(H)
    .u32(W).u32(Cout).u32(c.Ho).u32(c.Wo).u32(kh).u32(kw).u32(c.stride).u32(c.padding);
  gpu.dispatch(convGradKernel, {
    dtype: c.dtype,
    variant: { grad, tile },
    params,
    bindings: [c.gy, grad === "dx" ? c.weight : c.x, out],
    groups: gemmGrid("conv2d backward", ceilDiv(gemm.N, 16 * tile.tn), groups),
  });
}

/** Bytes the direct path may spend on a patch-matrix (gradient) at once. */
function directBudget(gpu: Gpu): number {
  return Math.min(chunkBytesOverride ?? IM2COL_CHUNK_BYTES, gpu.limits.maxStorageBufferBindingSize);
}

/** dx: on the direct path `dcol[n] = weight^T @ gy[n]` then col2im, else the tiled kernel. */
function convInputGrad(gpu: Gpu, c: ConvGrad): Tensor {
  const [N, C, H, W] = c.x.shape;
  const [Cout, , kh, kw] = c.weight.shape;
  const HoWo = c.Ho * c.Wo, K = C * kh * kw;
  const bytes = N * K * HoWo * (c.dtype === "f16" ? 2 : 4);
  if (usesDirectGemm(gpu) && K % 4 === 0 && HoWo % 4 === 0 && bytes <= directBudget(gpu)) {
    checkOneBinding(gpu, [c.gy, c.weight]);
    const dcol = gpu.empty([N, K, HoWo], c.dtype, "conv2d dcol");
    launchDirectGemm(gpu, {
      op: "conv2d backward",
      dtype: c.dtype,
      a: c.weight,
      b: c.gy,
      M: K,
      N: HoWo,
      K: Cout,
      batch: N,
      strideA: 0,
      strideB: Cout * HoWo,
      transA: true,
      transB: false,
      out: dcol,
    });
    const dx = col2im(gpu, dcol, {
      xShape: c.x.shape,
      kh,
      kw,
      stride: c.stride,
      padding: c.padding,
    });
    dcol.release();
    return dx;
  }
  const dx = gpu.empty([N, C, H, W], c.dtype, "conv2d dx");
  launchConvGrad(gpu, c, "dx", dx, { M: C, N: N * H * W, K: Cout * kh * kw });
  return dx;
}

/** dw: on the direct path gy (channels first) @ im2col(x)^T, else the tiled kernel. */
function convWeightGrad(gpu: Gpu, c: ConvGrad): Tensor {
  const [N, C] = c.x.shape;
  const [Cout, , kh, kw] = c.weight.shape;
  const HoWo = c.Ho * c.Wo, K = C * kh * kw, P = N * HoWo;
  const dw = gpu.empty(c.weight.shape, c.dtype, "conv2d dw");
  const bytes = K * P * (c.dtype === "f16" ? 2 : 4);
  if (usesDirectGemm(gpu) && K % 4 === 0 && HoWo % 4 === 0 && bytes <= directBudget(gpu)) {
    // gy [N, Cout, Ho, Wo] -> [Cout, N, Ho, Wo]: row co holds every pixel of every image.
    const gyT = N > 1 ? permute(gpu, c.gy, [1, 0, 2, 3]) : c.gy;
    checkOneBinding(gpu, [gyT]);
    const col = im2col(gpu, c.x, { kh, kw, stride: c.stride, padding: c.padding }); // [K, P]
    launchDirectGemm(gpu, {
      op: "conv2d backward",
      dtype: c.dtype,
      a: gyT,
      b: col,
      M: Cout,
      N: K,
      K: P,
      batch: 1,
      strideA: 0,
      strideB: 0,
      transB: true,
      out: dw,
    });
    col.release();
    if (gyT !== c.gy) gyT.release();
    return dw;
  }
  launchConvGrad(gpu, c, "dw", dw, { M: Cout, N: K, K: P });
  return dw;
}

/** Options of {@link conv2dBackward}: the forward's operands and geometry. */
export interface Conv2dBackwardOptions {
  /** The forward's x [N, C, H, W]. */
  x: Tensor;
  /** The forward's weight [Cout, C, kh, kw]. */
  weight: Tensor;
  /** Default 1. */
  stride?: number;
  /** Default (k - 1) / 2, as the forward. */
  padding?: number;
  /** Which gradients to compute (default: x and weight, no bias). */
  needs?: { x?: boolean; weight?: boolean; bias?: boolean };
}

/** Gradients of a conv2d; null where not asked for. New tensors the caller releases. */
export interface Conv2dGradients {
  /** [N, C, H, W]. */
  dx: Tensor | null;
  /** [Cout, C, kh, kw]. */
  dw: Tensor | null;
  /** [Cout]. */
  db: Tensor | null;
}

/**
 * Backward of conv2d (the residual is a separate op) for the gradient `gy` [N, Cout, Ho, Wo]:
 * dx (a transposed convolution), dw (gy times the patch matrix of x) and db (gy summed over
 * images and pixels); see the module doc for the GEMMs.
 *
 * @example
 * ```ts
 * const { dx, dw, db } = conv2dBackward(gpu, gy, { x, weight, padding: 1, needs: { bias: true } });
 * ```
 */
export function conv2dBackward(
  gpu: Gpu,
  gy: Tensor,
  options: Conv2dBackwardOptions,
): Conv2dGradients {
  const { x, weight } = options;
  const needs = { x: true, weight: true, bias: false, ...options.needs };
  if (x.rank !== 4 || weight.rank !== 4 || weight.shape[1] !== x.shape[1]) {
    throw new Error(
      `conv2dBackward: expected x [N, C, H, W] and weight [Cout, C, kh, kw] with the same C, ` +
        `got x ${fmtShape(x.shape)}, weight ${fmtShape(weight.shape)}`,
    );
  }
  const [N, , H, W] = x.shape;
  const [Cout, , kh, kw] = weight.shape;
  const stride = options.stride ?? 1;
  const padding = options.padding ?? Math.floor((Math.max(kh, kw) - 1) / 2);
  const Ho = convOutSize(H, kh, stride, padding), Wo = convOutSize(W, kw, stride, padding);
  if (!sameShape(gy.shape, [N, Cout, Ho, Wo])) {
    throw new Error(
      `conv2dBackward: expected gy ${fmtShape([N, Cout, Ho, Wo])} (the output shape), got ${
        fmtShape(gy.shape)
      }`,
    );
  }
  const dtype = checkDTypes(gpu, "conv2dBackward", { gy, x, weight });
  const c: ConvGrad = { gy, x, weight, dtype, stride, padding, Ho, Wo };
  return {
    dx: needs.x ? convInputGrad(gpu, c) : null,
    dw: needs.weight ? convWeightGrad(gpu, c) : null,
    db: needs.bias ? channelSums(gpu, gy, { channels: Cout, inner: Ho * Wo }) : null,
  };
}
