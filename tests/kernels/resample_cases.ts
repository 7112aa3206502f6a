/**
 * Resample cases. Shape: `[N, C, H, W]` (input of upsample_nearest2x / pad2d). Bytes = read + write.
 * @module
 */

import type { KernelCase } from "./case.ts";
import type { DType } from "../../kernels/gpu/tensor.ts";
import { pad2d, resizeNearest, upsampleNearest2x } from "../../kernels/resample.ts";
import { randomArray } from "../assert.ts";

function upCase(
  shape: number[],
  dtype: DType,
  scale: KernelCase["scale"],
  note: string,
): KernelCase {
  const size = shape.reduce((a, b) => a * b, 1);
  return {
    op: "upsample_nearest2x",
    shape,
    dtype,
    scale,
    note,
    bytes: 5 * size * (dtype === "f16" ? 2 : 4),
    setup(gpu) {
      const x = gpu.upload(randomArray(size, 111), shape, dtype);
      return { run: () => upsampleNearest2x(gpu, x).release(), dispose: () => x.release() };
    },
  };
}

/** pad2d with the VAE encoder's (0, 1, 0, 1) padding. */
function padCase(
  shape: number[],
  dtype: DType,
  scale: KernelCase["scale"],
  note: string,
): KernelCase {
  const [n, c, h, w] = shape;
  const size = n * c * h * w;
  return {
    op: "pad2d",
    shape,
    dtype,
    scale,
    note,
    bytes: (size + n * c * (h + 1) * (w + 1)) * (dtype === "f16" ? 2 : 4),
    setup(gpu) {
      const x = gpu.upload(randomArray(size, 112), shape, dtype);
      const pad = { top: 0, bottom: 1, left: 0, right: 1 };
      return { run: () => pad2d(gpu, x, pad).release(), dispose: () => x.release() };
    },
  };
}

/** resize_nearest to a non-2x size (UNet upsampler when a latent side is not a multiple of 8). */
function resizeCase(
  shape: number[],
  to: [number, number],
  dtype: DType,
  scale: KernelCase["scale"],
  note: string,
): KernelCase {
  const [n, c, h, w] = shape;
  const size = n * c * h * w;
  return {
    op: "resize_nearest",
    shape: [...shape, ...to],
    dtype,
    scale,
    note,
    bytes: (size + n * c * to[0] * to[1]) * (dtype === "f16" ? 2 : 4),
    setup(gpu) {
      const x = gpu.upload(randomArray(size, 115), shape, dtype);
      return {
        run: () => resizeNearest(gpu, x, to[0], to[1]).release(),
        dispose: () => x.release(),
      };
    },
  };
}

/** resize_nearest cases; shape = [N, C, H, W, outH, outW]. */
export const resizeCases: KernelCase[] = [
  resizeCase([2, 3, 3, 3], [5, 6], "f32", "test", "odd target"),
  resizeCase([32, 640, 12, 12], [23, 23], "f16", "full", "up block 1, 46x46 latent"),
];

/** pad2d cases. */
export const padCases: KernelCase[] = [
  padCase([2, 3, 5, 7], "f32", "test", "odd"),
  padCase([1, 4, 6, 6], "f16", "test", "f16"),
  padCase([1, 128, 32, 32], "f32", "reduced", "VAE encoder down 0 at 256px"),
  padCase([1, 128, 512, 512], "f16", "full", "VAE encoder down 0 at 512px"),
];

/** Upsample cases: odd sizes, reduced and full SD1.5 up-block inputs. */
export const cases: KernelCase[] = [
  upCase([2, 3, 5, 7], "f32", "test", "odd"),
  upCase([1, 2, 1, 1], "f16", "test", "1x1 f16"),
  upCase([3, 5, 4, 9], "f16", "test", "odd width f16"),
  upCase([16, 640, 8, 8], "f32", "reduced", "up block 1 at 128px"),
  upCase([32, 1280, 8, 8], "f16", "full", "up block 0"),
  upCase([32, 640, 32, 32], "f16", "full", "up block 2"),
  upCase([1, 512, 256, 256], "f32", "full", "VAE decoder up 2"),
  ...padCases,
  ...resizeCases,
];
