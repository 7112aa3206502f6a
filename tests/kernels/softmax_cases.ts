/**
 * Softmax cases. Shape: `[rows, D]` (softmax over D). Bytes = read x + write y.
 * @module
 */

import type { KernelCase } from "./case.ts";
import type { DType } from "../../kernels/gpu/tensor.ts";
import { softmax } from "../../kernels/softmax.ts";
import { randomArray } from "../assert.ts";

function smCase(
  shape: number[],
  dtype: DType,
  scale: KernelCase["scale"],
  note: string,
): KernelCase {
  const [rows, d] = shape;
  return {
    op: "softmax",
    shape,
    dtype,
    scale,
    note,
    bytes: 2 * rows * d * (dtype === "f16" ? 2 : 4),
    setup(gpu) {
      const x = gpu.upload(randomArray(rows * d, 51, 6), [rows, d], dtype, "x");
      return { run: () => softmax(gpu, x).release(), dispose: () => x.release() };
    },
  };
}

/** Softmax cases: odd sizes, CLIP attention rows, SD cross-attention score rows. */
export const cases: KernelCase[] = [
  smCase([37, 19], "f32", "test", "odd D, scalar path"),
  smCase([6, 260], "f32", "test", "D > workgroup, vec4"),
  smCase([37, 19], "f16", "test", "odd D f16"),
  smCase([1232, 77], "f32", "reduced", "CLIP self-attn, 2 x 8 heads x 77"),
  smCase([2048, 256], "f16", "reduced", "self-attn scores 16x16"),
  smCase([262144, 77], "f16", "full", "cross-attn scores 64x64, 2 x 8 heads x 16 frames / 4"),
  smCase([32768, 4096], "f16", "full", "self-attn scores 64x64, one frame batch"),
];
