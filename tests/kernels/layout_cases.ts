/**
 * Layout cases. Shapes:
 * - permute: the input shape (`perm` in `permuteCases`).
 * - concat: `[N, C1, C2, H, W]`: `[N, C1, H, W]` and `[N, C2, H, W]` concatenated on axis 1.
 * - slice: `[B, D, inner, start, end]`: x `[B, D, inner]` sliced on axis 1.
 * - repeat_interleave: `[B, L, D, repeats]`: x `[B, L, D]` repeated on axis 0.
 * Bytes = read + write.
 * @module
 */

import type { KernelCase } from "./case.ts";
import type { DType } from "../../kernels/gpu/tensor.ts";
import { concat, permute, repeatInterleave, slice } from "../../kernels/layout.ts";
import { randomArray } from "../assert.ts";

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
const bytesOf = (dtype: DType) => dtype === "f16" ? 2 : 4;

/** A permute case with its permutation. */
export type PermuteCase = KernelCase & { perm: number[] };

function permuteCase(
  shape: number[],
  perm: number[],
  dtype: DType,
  scale: KernelCase["scale"],
  note: string,
): PermuteCase {
  return {
    op: "permute",
    shape,
    perm,
    dtype,
    scale,
    note: `${note}; perm [${perm}]`,
    bytes: 2 * numel(shape) * bytesOf(dtype),
    setup(gpu) {
      const x = gpu.upload(randomArray(numel(shape), 101), shape, dtype);
      return { run: () => permute(gpu, x, perm).release(), dispose: () => x.release() };
    },
  };
}

/** Permute cases (the test reads `perm`). */
export const permuteCases: PermuteCase[] = [
  permuteCase([3, 5, 7], [2, 0, 1], "f32", "test", "tiled, odd"),
  permuteCase([37, 45], [1, 0], "f32", "test", "tiled 2-D, partial tiles"),
  permuteCase([2, 3, 4, 5], [0, 2, 1, 3], "f32", "test", "gather, scalar"),
  permuteCase([2, 3, 4, 8], [1, 0, 2, 3], "f16", "test", "gather, merged, vec4"),
  permuteCase([2, 3, 1, 5, 2, 3], [5, 4, 3, 2, 1, 0], "f32", "test", "rank 6 reversed"),
  permuteCase([4, 1, 6], [2, 1, 0], "f16", "test", "size-1 dim"),
  permuteCase([2, 3, 70, 33], [0, 3, 1, 2], "f16", "test", "motion fold, odd"),
  permuteCase([2, 8, 64, 256], [0, 3, 1, 2], "f32", "reduced", "motion fold 16x16, 8 frames"),
  permuteCase([16, 256, 320], [0, 2, 1], "f16", "reduced", "NHWC -> NCHW 16x16"),
  permuteCase([2, 16, 320, 4096], [0, 3, 1, 2], "f16", "full", "motion fold 64x64, 16 frames"),
  permuteCase([2, 4096, 16, 320], [0, 2, 3, 1], "f16", "full", "motion unfold 64x64"),
  permuteCase([32, 320, 4096], [0, 2, 1], "f32", "full", "NCHW -> NHWC 64x64"),
];

function concatCase(shape: number[], dtype: DType, scale: KernelCase["scale"], note: string) {
  const [n, c1, c2, h, w] = shape;
  const c: KernelCase = {
    op: "concat",
    shape,
    dtype,
    scale,
    note,
    bytes: 2 * n * (c1 + c2) * h * w * bytesOf(dtype),
    setup(gpu) {
      const a = gpu.upload(randomArray(n * c1 * h * w, 102), [n, c1, h, w], dtype);
      const b = gpu.upload(randomArray(n * c2 * h * w, 103), [n, c2, h, w], dtype);
      return {
        run: () => concat(gpu, [a, b], 1).release(),
        dispose() {
          a.release();
          b.release();
        },
      };
    },
  };
  return c;
}

function sliceCase(shape: number[], dtype: DType, scale: KernelCase["scale"], note: string) {
  const [b, d, inner, start, end] = shape;
  const c: KernelCase = {
    op: "slice",
    shape,
    dtype,
    scale,
    note,
    bytes: 2 * b * (end - start) * inner * bytesOf(dtype),
    setup(gpu) {
      const x = gpu.upload(randomArray(b * d * inner, 104), [b, d, inner], dtype);
      return { run: () => slice(gpu, x, 1, start, end).release(), dispose: () => x.release() };
    },
  };
  return c;
}

function repeatCase(shape: number[], dtype: DType, scale: KernelCase["scale"], note: string) {
  const [b, l, d, r] = shape;
  const c: KernelCase = {
    op: "repeat_interleave",
    shape,
    dtype,
    scale,
    note,
    bytes: (1 + r) * b * l * d * bytesOf(dtype),
    setup(gpu) {
      const x = gpu.upload(randomArray(b * l * d, 105), [b, l, d], dtype);
      return { run: () => repeatInterleave(gpu, x, r).release(), dispose: () => x.release() };
    },
  };
  return c;
}

/** Every layout case. */
export const cases: KernelCase[] = [
  ...permuteCases,
  concatCase([2, 3, 5, 7, 3], "f32", "test", "odd, scalar"),
  concatCase([2, 4, 8, 4, 4], "f16", "test", "vec4"),
  concatCase([16, 320, 320, 16, 16], "f32", "reduced", "UNet skip 16x16"),
  concatCase([32, 640, 320, 64, 64], "f16", "full", "UNet up 3 skip 64x64"),
  sliceCase([3, 10, 7, 2, 9], "f32", "test", "odd"),
  sliceCase([2, 8, 12, 4, 8], "f16", "test", "vec4"),
  sliceCase([32, 2, 16384, 1, 2], "f32", "reduced", "second half of a batch"),
  sliceCase([32768, 2, 2560, 0, 1], "f16", "full", "GEGLU hidden half"),
  repeatCase([2, 5, 7, 3], "f32", "test", "odd"),
  repeatCase([2, 77, 32, 4], "f16", "test", "vec4"),
  repeatCase([2, 77, 768, 8], "f32", "reduced", "text embeddings x 8 frames"),
  repeatCase([2, 77, 768, 16], "f16", "full", "text embeddings x 16 frames"),
];
