/**
 * Nearest-neighbour 2x upsampling of `[N, C, H, W]` (the UNet / VAE Upsample2D before its conv).
 * Each thread reads one input element and writes a 2-wide pair into both output rows, so
 * neighbouring threads read and write neighbouring memory. Also zero padding and torch's
 * nearest resize of `[N, C, H, W]`.
 *
 * Training: each op records its backward on an autograd tape when one is recording
 * (kernels/gpu/tape.ts). The resizes' backwards are gathers (each input pixel sums the output
 * pixels that read it: deterministic, no atomics); pad2d's is a crop.
 * @module
 */

import type { Gpu } from "./gpu/device.ts";
import { bindingRuns } from "./gpu/chunks.ts";
import { defineKernel, Params } from "./gpu/kernel.ts";
import { taped } from "./gpu/tape.ts";
import { fmtShape, type Tensor } from "./gpu/tensor.ts";
import { bindingsWgsl, launch1d, MAIN_1D_WGSL, prelude } from "./wgsl.ts";

const upsampleKernel = defineKernel("upsample_nearest2x", ({ dtype }) => /* wgsl */ `
// upsample_nearest2x: 1 x [N*C, H, W], 2 y [N*C, 2H, 2W] viewed as pairs (vec2 of T).
// Thread i = (plane, h, w) writes y[plane, 2h + {0,1}, 2w + {0,1}] = x[i].
${prelude(dtype)}
struct Params { n: u32, w: u32 }
${bindingsWgsl(["x: array<T>", "y: array<vec2<T>>"])}

${MAIN_1D_WGSL}
  let row = i / p.w;            // plane * H + h
  let col = i - row * p.w;
  let v = vec2<T>(x[i], x[i]);
  let o = row * 2u * p.w + col; // pair index of (2h, 2w): row 2h has w pairs
  y[o] = v;
  y[o + p.w] = v;
}`);

/**
 * Nearest 2x upsampling: `[N, C, H, W]` -> `[N, C, 2H, 2W]`.
 *
 * @example
 * ```ts
 * const up = upsampleNearest2x(gpu, h); // [32, 1280, 8, 8] -> [32, 1280, 16, 16]
 * ```
 */
export function upsampleNearest2x(gpu: Gpu, x: Tensor): Tensor {
  if (x.rank !== 4) {
    throw new Error(`upsample_nearest2x: expected x [N, C, H, W], got ${fmtShape(x.shape)}`);
  }
  const [n, c, h, w] = x.shape;
  const y = gpu.empty([n, c, 2 * h, 2 * w], x.dtype, "upsample_nearest2x");
  if (x.size === 0) return y;
  for (const [s, count] of planeRuns(gpu, "upsample_nearest2x", x, y)) {
    const size = count * h * w;
    gpu.dispatch(upsampleKernel, {
      dtype: x.dtype,
      params: new Params().u32(size).u32(w),
      bindings: [x.window(n * c, s, count), y.window(n * c, s, count)],
      groups: launch1d(size),
    });
  }
  return taped(gpu, {
    name: "upsample_nearest2x",
    inputs: [x],
    output: y,
    saved: [],
    backward: (gy, needs) => [needs[0] ? upsampleBackward(gpu, gy, x.shape) : null],
  });
}

const upsampleBackwardKernel = defineKernel(
  "upsample_nearest2x_backward",
  ({ dtype }) => /* wgsl */ `
// upsample_nearest2x_backward: 1 gy [N*C, 2H, 2W] viewed as pairs (vec2 of T), 2 gx [N*C, H, W].
// Thread i = (plane, h, w): gx[i] = the sum of the 2x2 block gy[plane, 2h + {0,1}, 2w + {0,1}].
${prelude(dtype)}
struct Params { n: u32, w: u32 }
${bindingsWgsl(["gy: array<vec2<T>>", "gx: array<T>"])}

${MAIN_1D_WGSL}
  let row = i / p.w;
  let col = i - row * p.w;
  let o = row * 2u * p.w + col;
  let s = vec2<f32>(gy[o]) + vec2<f32>(gy[o + p.w]);
  gx[i] = T(s.x + s.y);
}`,
);

/** dL/dx of `upsampleNearest2x(x)` (x of `shape`) given dL/dy. */
function upsampleBackward(gpu: Gpu, gy: Tensor, shape: readonly number[]): Tensor {
  const [n, c, h, w] = shape;
  const gx = gpu.empty(shape, gy.dtype, "upsample_nearest2x_backward");
  for (const [s, count] of planeRuns(gpu, "upsample_nearest2x_backward", gx, gy)) {
    const size = count * h * w;
    gpu.dispatch(upsampleBackwardKernel, {
      dtype: gy.dtype,
      params: new Params().u32(size).u32(w),
      bindings: [gy.window(n * c, s, count), gx.window(n * c, s, count)],
      groups: launch1d(size),
    });
  }
  return gx;
}

/** Runs of (image, channel) planes whose windows of x and y fit one binding each. */
function planeRuns(gpu: Gpu, op: string, x: Tensor, y: Tensor): [number, number][] {
  return bindingRuns(gpu, op, x.shape[0] * x.shape[1], [x, y], "plane");
}

const padKernel = defineKernel("pad2d", ({ dtype }) => /* wgsl */ `
// pad2d: 1 x [N*C, H, W], 2 y [N*C, H + top + bottom, W + left + right]; zeros outside x.
${prelude(dtype)}
struct Params { n: u32, h: u32, w: u32, ho: u32, wo: u32, top: u32, left: u32 }
${bindingsWgsl(["x: array<T>", "y: array<T>"])}

${MAIN_1D_WGSL}
  let plane = i / (p.ho * p.wo);
  let r = i - plane * p.ho * p.wo;
  let iy = i32(r / p.wo) - i32(p.top);
  let ix = i32(r % p.wo) - i32(p.left);
  var v = T(0.0);
  if (iy >= 0 && ix >= 0 && u32(iy) < p.h && u32(ix) < p.w) {
    v = x[(plane * p.h + u32(iy)) * p.w + u32(ix)];
  }
  y[i] = v;
}`);

/** Zero padding per side of the spatial dims. */
export interface Pad2dOptions {
  top: number;
  bottom: number;
  left: number;
  right: number;
}

/**
 * Zero-pads the spatial dims of `[N, C, H, W]` (the VAE encoder's asymmetric (0, 1, 0, 1) pad
 * before its stride-2 downsampling conv).
 *
 * @example
 * ```ts
 * const p = pad2d(gpu, x, { top: 0, bottom: 1, left: 0, right: 1 }); // [1, 128, 64, 64] -> [1, 128, 65, 65]
 * ```
 */
export function pad2d(gpu: Gpu, x: Tensor, pad: Pad2dOptions): Tensor {
  if (x.rank !== 4) throw new Error(`pad2d: expected x [N, C, H, W], got ${fmtShape(x.shape)}`);
  for (const [k, v] of Object.entries(pad)) {
    if (!Number.isInteger(v) || v < 0) {
      throw new Error(`pad2d: ${k} must be a non-negative integer, got ${v}`);
    }
  }
  const [n, c, h, w] = x.shape;
  const ho = h + pad.top + pad.bottom, wo = w + pad.left + pad.right;
  const y = gpu.empty([n, c, ho, wo], x.dtype, "pad2d");
  if (y.size === 0) return y;
  for (const [s, count] of planeRuns(gpu, "pad2d", x, y)) {
    const size = count * ho * wo;
    gpu.dispatch(padKernel, {
      dtype: x.dtype,
      params: new Params().u32(size).u32(h).u32(w).u32(ho).u32(wo).u32(pad.top).u32(pad.left),
      bindings: [x.window(n * c, s, count), y.window(n * c, s, count)],
      groups: launch1d(size),
    });
  }
  return taped(gpu, {
    name: "pad2d",
    inputs: [x],
    output: y,
    saved: [],
    backward: (gy, needs) => [needs[0] ? crop2d(gpu, gy, x.shape, pad) : null],
  });
}

const cropKernel = defineKernel("crop2d", ({ dtype }) => /* wgsl */ `
// crop2d: 1 x [N*C, Hi, Wi], 2 y [N*C, H, W]: y[plane, i, j] = x[plane, i + top, j + left].
${prelude(dtype)}
struct Params { n: u32, h: u32, w: u32, hi: u32, wi: u32, top: u32, left: u32 }
${bindingsWgsl(["x: array<T>", "y: array<T>"])}

${MAIN_1D_WGSL}
  let plane = i / (p.h * p.w);
  let r = i - plane * p.h * p.w;
  let iy = r / p.w + p.top;
  let ix = r % p.w + p.left;
  y[i] = x[(plane * p.hi + iy) * p.wi + ix];
}`);

/** dL/dx of `pad2d(x, pad)` (x of `shape`) given dL/dy: the unpadded window of gy. */
function crop2d(gpu: Gpu, gy: Tensor, shape: readonly number[], pad: Pad2dOptions): Tensor {
  const [n, c, h, w] = shape;
  const [, , hi, wi] = gy.shape;
  const gx = gpu.empty(shape, gy.dtype, "pad2d_backward");
  if (gx.size === 0) return gx;
  for (const [s, count] of planeRuns(gpu, "pad2d_backward", gx, gy)) {
    const size = count * h * w;
    gpu.dispatch(cropKernel, {
      dtype: gy.dtype,
      params: new Params().u32(size).u32(h).u32(w).u32(hi).u32(wi).u32(pad.top).u32(pad.left),
      bindings: [gy.window(n * c, s, count), gx.window(n * c, s, count)],
      groups: launch1d(size),
    });
  }
  return gx;
}

const resizeKernel = defineKernel("resize_nearest", ({ dtype }) => /* wgsl */ `
// resize_nearest: 1 x [N*C, H, W], 2 y [N*C, Ho, Wo]; torch's legacy "nearest":
// src = min(floor(dst * (in / out)), in - 1) with the scale in f32.
${prelude(dtype)}
struct Params { n: u32, h: u32, w: u32, ho: u32, wo: u32, sh: f32, sw: f32 }
${bindingsWgsl(["x: array<T>", "y: array<T>"])}

${MAIN_1D_WGSL}
  let plane = i / (p.ho * p.wo);
  let r = i - plane * p.ho * p.wo;
  let iy = min(u32(floor(f32(r / p.wo) * p.sh)), p.h - 1u);
  let ix = min(u32(floor(f32(r % p.wo) * p.sw)), p.w - 1u);
  y[i] = x[(plane * p.h + iy) * p.w + ix];
}`);

/**
 * Nearest-neighbour resize of `[N, C, H, W]` to `[N, C, height, width]` as torch's
 * `F.interpolate(mode="nearest", size=...)` (the UNet upsampler when a latent side is not a
 * multiple of 8 and diffusers passes `upsample_size`). Exact 2x goes to the faster kernel.
 *
 * @example
 * ```ts
 * const up = resizeNearest(gpu, h, 5, 6); // [16, 64, 3, 3] -> [16, 64, 5, 6]
 * ```
 */
export function resizeNearest(gpu: Gpu, x: Tensor, height: number, width: number): Tensor {
  if (x.rank !== 4) {
    throw new Error(`resize_nearest: expected x [N, C, H, W], got ${fmtShape(x.shape)}`);
  }
  if (!Number.isInteger(height) || !Number.isInteger(width) || height < 1 || width < 1) {
    throw new Error(`resize_nearest: expected a positive integer size, got ${height}x${width}`);
  }
  const [n, c, h, w] = x.shape;
  if (height === 2 * h && width === 2 * w) return upsampleNearest2x(gpu, x);
  const y = gpu.empty([n, c, height, width], x.dtype, "resize_nearest");
  if (y.size === 0) return y;
  for (const [s, count] of planeRuns(gpu, "resize_nearest", x, y)) {
    const size = count * height * width;
    gpu.dispatch(resizeKernel, {
      dtype: x.dtype,
      params: new Params().u32(size).u32(h).u32(w).u32(height).u32(width)
        .f32(Math.fround(h / height)).f32(Math.fround(w / width)),
      bindings: [x.window(n * c, s, count), y.window(n * c, s, count)],
      groups: launch1d(size),
    });
  }
  return taped(gpu, {
    name: "resize_nearest",
    inputs: [x],
    output: y,
    saved: [],
    backward: (gy, needs) => [needs[0] ? resizeBackward(gpu, gy, x.shape) : null],
  });
}

const resizeBackwardKernel = defineKernel("resize_nearest_backward", ({ dtype }) => /* wgsl */ `
// resize_nearest_backward: 1 gy [N*C, Ho, Wo], 2 gx [N*C, H, W]. Thread i = (plane, iy, ix)
// sums gy over the output rows [y0, y1) and columns [x0, x1) that read it, where src() is the
// forward's own f32 mapping (monotone, so each range is contiguous; empty when downsampling
// skips the pixel). The search starts 2 before the estimate dst = v / s and walks to the edge.
${prelude(dtype)}
struct Params { n: u32, h: u32, w: u32, ho: u32, wo: u32, sh: f32, sw: f32 }
${bindingsWgsl(["gy: array<T>", "gx: array<T>"])}

fn src(d: u32, s: f32, size: u32) -> u32 { return min(u32(floor(f32(d) * s)), size - 1u); }

// The first output index d < out with src(d) >= v (out when none).
fn first_dst(v: u32, s: f32, size: u32, out: u32) -> u32 {
  var d = min(u32(max(floor(f32(v) / s) - 2.0, 0.0)), out);
  while (d > 0u && src(d - 1u, s, size) >= v) { d -= 1u; }
  while (d < out && src(d, s, size) < v) { d += 1u; }
  return d;
}

${MAIN_1D_WGSL}
  let plane = i / (p.h * p.w);
  let r = i - plane * p.h * p.w;
  let iy = r / p.w;
  let ix = r - iy * p.w;
  let y0 = first_dst(iy, p.sh, p.h, p.ho);
  let y1 = first_dst(iy + 1u, p.sh, p.h, p.ho);
  let x0 = first_dst(ix, p.sw, p.w, p.wo);
  let x1 = first_dst(ix + 1u, p.sw, p.w, p.wo);
  var s = 0.0;
  for (var a = y0; a < y1; a++) {
    let row = (plane * p.ho + a) * p.wo;
    for (var b = x0; b < x1; b++) { s += f32(gy[row + b]); }
  }
  gx[i] = T(s);
}`);

/** dL/dx of `resizeNearest(x, ...)` (x of `shape`, not an exact 2x) given dL/dy. */
function resizeBackward(gpu: Gpu, gy: Tensor, shape: readonly number[]): Tensor {
  const [n, c, h, w] = shape;
  const [, , height, width] = gy.shape;
  const gx = gpu.empty(shape, gy.dtype, "resize_nearest_backward");
  if (gx.size === 0) return gx;
  for (const [s, count] of planeRuns(gpu, "resize_nearest_backward", gx, gy)) {
    const size = count * h * w;
    gpu.dispatch(resizeBackwardKernel, {
      dtype: gy.dtype,
      params: new Params().u32(size).u32(h).u32(w).u32(height).u32(width)
        .f32(Math.fround(h / height)).f32(Math.fround(w / width)),
      bindings: [gy.window(n * c, s, count), gx.window(n * c, s, count)],
      groups: launch1d(size),
    });
  }
  return gx;
}
