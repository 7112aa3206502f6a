/**
 * Resample cases. Shape: `[N, C, H, W]` (input of upsample_nearest2x). Bytes = read + 4x write.
 * @module
 */

import type { KernelCase } from "../../bench/case.ts";
import type { DType } from "../../engine/gpu/tensor.ts";
import { upsampleNearest2x } from "../../kernels/resample.ts";
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

/** Upsample cases: odd sizes, reduced and full SD1.5 up-block inputs. */
export const cases: KernelCase[] = [
  upCase([2, 3, 5, 7], "f32", "test", "odd"),
  upCase([1, 2, 1, 1], "f16", "test", "1x1 f16"),
  upCase([3, 5, 4, 9], "f16", "test", "odd width f16"),
  upCase([16, 640, 8, 8], "f32", "reduced", "up block 1 at 128px"),
  upCase([32, 1280, 8, 8], "f16", "full", "up block 0"),
  upCase([32, 640, 32, 32], "f16", "full", "up block 2"),
  upCase([1, 512, 256, 256], "f32", "full", "VAE decoder up 2"),
];
