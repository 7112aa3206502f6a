/**
 * Nearest-neighbour 2x upsampling of `[N, C, H, W]` (the UNet / VAE Upsample2D before its conv).
 * Each thread reads one input element and writes a 2-wide pair into both output rows, so
 * neighbouring threads read and write neighbouring memory.
 * @module
 */

import type { Gpu } from "./gpu/device.ts";
import { bindingRuns } from "./gpu/chunks.ts";
import { defineKernel, Params } from "./gpu/kernel.ts";
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
  return y;
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
  return y;
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
  return y;
}
