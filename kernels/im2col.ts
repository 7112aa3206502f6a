/**
 * im2col: the patch matrix of a 2-D convolution, `col[k, j]` for k = (c, ky, kx) over
 * `C * kh * kw` rows and j = output pixel over a chunk of columns. conv2d on software adapters
 * builds it in chunks and multiplies it with the direct GEMM (kernels/gemm_direct.ts); GPUs use
 * the implicit GEMM of kernels/conv2d.ts and never store it.
 *
 * Each invocation writes 4 consecutive columns (one vec4) for `kPer` consecutive rows, stepping
 * (c, ky, kx) incrementally; padding and columns past the last pixel read as 0.
 *
 * col2im is the adjoint for conv2d's input gradient on software adapters: it sums a per-image
 * patch-matrix gradient back onto the pixels each column was gathered from.
 * @module
 */

import type { Gpu } from "./gpu/device.ts";
import { ceilDiv, defineKernel, MAX_GROUPS_PER_DIM, Params } from "./gpu/kernel.ts";
import { type DType, fmtShape, type Tensor } from "./gpu/tensor.ts";
import { checkDTypes } from "./gemm.ts";
import { bindingsWgsl, launch1d, MAIN_1D_WGSL, prelude } from "./wgsl.ts";

/** Output size of a convolution along one axis. */
export function convOutSize(size: number, kernel: number, stride: number, padding: number): number {
  return Math.floor((size + 2 * padding - kernel) / stride) + 1;
}

/** Rows (k values) per invocation. */
const K_PER_THREAD = 8;
const THREADS = 64;

function im2colSource(dtype: DType): string {
  return `${prelude(dtype, { wg: THREADS })}
// im2col: col[k, jl] = x[img, c, oy * stride + ky - pad, ox * stride + kx - pad] with
// k = (c * kh + ky) * kw + kx and pixel j = p.j0 + jl = img * HoWo + oy * Wo + ox; 0 outside
// the image and for j >= p.P. Binding 1: x [N, C, H, W]; 2: col [K, p.cols] (p.cols % 4 == 0).
// Invocation (gx, gy): columns 4 gx .. 4 gx + 3, rows gy * kPer .. + kPer.
struct Params {
  K: u32, cols: u32, P: u32, j0: u32, C: u32, H: u32, W: u32, Wo: u32, HoWo: u32,
  kh: i32, kw: i32, stride: i32, pad: i32, kPer: u32,
}
${bindingsWgsl(["x: array<T>", "col: array<T4>"])}
@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let jl = gid.x * 4u;
  let k0 = gid.y * p.kPer;
  if (jl >= p.cols || k0 >= p.K) { return; }
  var iy0 = vec4<i32>(0); var ix0 = vec4<i32>(0); var base = vec4<u32>(0u);
  var valid = vec4<bool>(false);
  for (var c = 0u; c < 4u; c++) {
    let j = p.j0 + jl + c;
    valid[c] = j < p.P;
    let q = j % p.HoWo;
    iy0[c] = i32(q / p.Wo) * p.stride - p.pad;
    ix0[c] = i32(q % p.Wo) * p.stride - p.pad;
    base[c] = (j / p.HoWo) * p.C * p.H * p.W;
  }
  let khw = u32(p.kh * p.kw);
  var ch = k0 / khw; var ky = i32((k0 % khw) / u32(p.kw)); var kx = i32(k0 % u32(p.kw));
  let k1 = min(k0 + p.kPer, p.K);
  for (var k = k0; k < k1; k++) {
    let iy = iy0 + vec4<i32>(ky); let ix = ix0 + vec4<i32>(kx);
    var v = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c++) {
      if (valid[c] && u32(iy[c]) < p.H && u32(ix[c]) < p.W) {
        v[c] = f32(x[base[c] + (ch * p.H + u32(iy[c])) * p.W + u32(ix[c])]);
      }
    }
    col[(k * p.cols + jl) / 4u] = T4(v);
    kx += 1;
    if (kx == p.kw) { kx = 0; ky += 1; }
    if (ky == p.kh) { ky = 0; ch += 1u; }
  }
}
`;
}

const im2colKernel = defineKernel("im2col", ({ dtype }) => im2colSource(dtype));

/** Options of {@link im2col}. */
export interface Im2colOptions {
  /** Kernel height and width. */
  kh: number;
  kw: number;
  /** Default 1. */
  stride?: number;
  /** Zero padding on every side (default 0). */
  padding?: number;
  /** First output pixel (column) of the chunk; default 0. */
  j0?: number;
  /** Columns of the chunk, a multiple of 4; default: every pixel from j0 on, rounded up to 4. */
  cols?: number;
}

/**
 * The im2col chunk of x [N, C, H, W] for a `kh x kw` convolution: a new tensor
 * [C * kh * kw, cols] whose column `jl` holds the patch of output pixel `j0 + jl`
 * (pixels numbered image by image, row-major), zeros past the last pixel.
 *
 * @example
 * ```ts
 * const col = im2col(gpu, x, { kh: 3, kw: 3, padding: 1 }); // [C * 9, ceil(N * H * W / 4) * 4]
 * ```
 */
export function im2col(gpu: Gpu, x: Tensor, options: Im2colOptions): Tensor {
  const { kh, kw, stride = 1, padding = 0, j0 = 0 } = options;
  if (x.rank !== 4) throw new Error(`im2col: expected x [N, C, H, W], got ${fmtShape(x.shape)}`);
  const dtype = checkDTypes(gpu, "im2col", { x });
  const [N, C, H, W] = x.shape;
  const Ho = convOutSize(H, kh, stride, padding), Wo = convOutSize(W, kw, stride, padding);
  const ints = [kh, kw, stride, padding, j0];
  if (!ints.every(Number.isInteger) || kh < 1 || kw < 1 || stride < 1 || padding < 0 || j0 < 0) {
    throw new Error(
      `im2col: expected kernel >= 1, stride >= 1, padding >= 0, j0 >= 0 integers, got ` +
        `${kh}x${kw}, ${stride}, ${padding}, ${j0}`,
    );
  }
  if (Ho < 1 || Wo < 1) {
    throw new Error(`im2col: a ${kh}x${kw} kernel does not fit x ${fmtShape(x.shape)}`);
  }
  const P = N * Ho * Wo, K = C * kh * kw;
  const cols = options.cols ?? Math.max(4, Math.ceil((P - j0) / 4) * 4);
  if (!Number.isInteger(cols) || cols < 4 || cols % 4 !== 0) {
    throw new Error(`im2col: expected cols a positive multiple of 4, got ${cols}`);
  }
  const out = gpu.empty([K, cols], dtype, "im2col");
  if (K === 0) return out;
  const gy = ceilDiv(K, K_PER_THREAD);
  if (gy > MAX_GROUPS_PER_DIM) {
    throw new Error(
      `im2col: expected C * kh * kw <= ${MAX_GROUPS_PER_DIM * K_PER_THREAD}, got ${K}`,
    );
  }
  const params = new Params().u32(K).u32(cols).u32(P).u32(j0).u32(C).u32(H).u32(W).u32(Wo)
    .u32(Ho * Wo).i32(kh).i32(kw).i32(stride).i32(padding).u32(K_PER_THREAD);
  gpu.dispatch(im2colKernel, {
    dtype,
    params,
    bindings: [x, out],
    groups: [ceilDiv(cols / 4, THREADS), gy, 1],
  });
  return out;
}

function col2imSource(dtype: DType): string {
  return `${prelude(dtype)}
// col2im: dx[img, c, iy, ix] = sum over ky, kx with oy = (iy + pad - ky) / stride and
// ox = (ix + pad - kx) / stride whole and inside the output of
// dcol[img, (c * kh + ky) * kw + kx, oy * Wo + ox]. Binding 1: dcol [N, C * kh * kw, Ho * Wo];
// 2: dx [N, C, H, W]. One thread per element of dx.
struct Params { n: u32, C: u32, H: u32, W: u32, Ho: u32, Wo: u32, kh: u32, kw: u32, stride: u32, pad: u32 }
${bindingsWgsl(["dcol: array<T>", "dx: array<T>"])}
${MAIN_1D_WGSL}
  let ix = i % p.W;
  let iy = (i / p.W) % p.H;
  let c = (i / (p.W * p.H)) % p.C;
  let img = i / (p.W * p.H * p.C);
  let HoWo = p.Ho * p.Wo;
  let base = (img * p.C * p.kh * p.kw + c * p.kh * p.kw) * HoWo;
  var s = 0.0;
  for (var ky = 0u; ky < p.kh; ky++) {
    let ty = i32(iy + p.pad) - i32(ky);
    if (ty < 0 || u32(ty) % p.stride != 0u || u32(ty) / p.stride >= p.Ho) { continue; }
    for (var kx = 0u; kx < p.kw; kx++) {
      let tx = i32(ix + p.pad) - i32(kx);
      if (tx < 0 || u32(tx) % p.stride != 0u || u32(tx) / p.stride >= p.Wo) { continue; }
      let q = (u32(ty) / p.stride) * p.Wo + u32(tx) / p.stride;
      s += f32(dcol[base + (ky * p.kw + kx) * HoWo + q]);
    }
  }
  dx[i] = T(s);
}
`;
}

const col2imKernel = defineKernel("col2im", ({ dtype }) => col2imSource(dtype));

/** Options of {@link col2im}. */
export interface Col2imOptions {
  /** Shape of the convolution's input x: [N, C, H, W]. */
  xShape: readonly number[];
  /** Kernel height and width. */
  kh: number;
  kw: number;
  /** Default 1. */
  stride?: number;
  /** Default 0. */
  padding?: number;
}

/**
 * The adjoint of im2col for whole images: sums the per-image patch-matrix gradient
 * dcol [N, C * kh * kw, Ho * Wo] (row k = (c, ky, kx), column = output pixel of that image)
 * onto the input pixels, giving a new tensor dx [N, C, H, W].
 *
 * @example
 * ```ts
 * const dx = col2im(gpu, dcol, { xShape: [1, 4, 8, 8], kh: 3, kw: 3, padding: 1 });
 * ```
 */
export function col2im(gpu: Gpu, dcol: Tensor, options: Col2imOptions): Tensor {
  const { xShape, kh, kw, stride = 1, padding = 0 } = options;
  const [N, C, H, W] = xShape;
  const Ho = convOutSize(H, kh, stride, padding), Wo = convOutSize(W, kw, stride, padding);
  if (xShape.length !== 4 || dcol.size !== N * C * kh * kw * Ho * Wo || Ho < 1 || Wo < 1) {
    throw new Error(
      `col2im: expected dcol [${N}, ${C * kh * kw}, ${Ho * Wo}] for x ${fmtShape(xShape)} and a ` +
        `${kh}x${kw} kernel, got ${fmtShape(dcol.shape)}`,
    );
  }
  const dtype = checkDTypes(gpu, "col2im", { dcol });
  const n = N * C * H * W;
  const dx = gpu.empty([N, C, H, W], dtype, "col2im");
  if (n === 0) return dx;
  gpu.dispatch(col2imKernel, {
    dtype,
    params: new Params().u32(n).u32(C).u32(H).u32(W).u32(Ho).u32(Wo).u32(kh).u32(kw).u32(stride)
      .u32(padding),
    bindings: [dcol, dx],
    groups: launch1d(n),
  });
  return dx;
}
