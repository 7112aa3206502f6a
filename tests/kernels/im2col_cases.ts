/**
 * im2col cases shared by tests/kernels/im2col_test.ts and the bench.
 * Bench shape: [N, C, H, W, kernel, stride, padding] (square kernel).
 */

import type { KernelCase } from "./case.ts";
import type { DType } from "../../kernels/gpu/tensor.ts";
import { convOutSize, im2col, type Im2colOptions } from "../../kernels/im2col.ts";
import { randomArray } from "../assert.ts";

/** One im2col configuration of the table. */
export interface Im2colSpec extends Im2colOptions {
  xShape: number[];
  scale: KernelCase["scale"];
  note: string;
}

/** The table: odd sizes and chunks (tests), the conv2d comparison shapes, SD1.5 shapes. */
export const im2colSpecs: Im2colSpec[] = [
  { xShape: [2, 3, 5, 7], kh: 3, kw: 3, padding: 1, scale: "test", note: "3x3 pad 1, odd sizes" },
  { xShape: [1, 2, 9, 7], kh: 3, kw: 3, stride: 2, padding: 1, scale: "test", note: "stride 2" },
  { xShape: [2, 5, 4, 4], kh: 1, kw: 1, scale: "test", note: "1x1" },
  { xShape: [1, 2, 6, 5], kh: 2, kw: 3, scale: "test", note: "2x3 kernel, no padding" },
  // A chunk starting mid-image and running past the last pixel (zero columns).
  {
    xShape: [3, 2, 3, 5],
    kh: 3,
    kw: 3,
    padding: 1,
    j0: 12,
    cols: 40,
    scale: "test",
    note: "chunk",
  },
  { xShape: [2, 64, 32, 32], kh: 3, kw: 3, padding: 1, scale: "reduced", note: "conv comparison" },
  { xShape: [1, 320, 16, 16], kh: 3, kw: 3, padding: 1, scale: "reduced", note: "ResNet 16x16" },
  { xShape: [2, 320, 64, 64], kh: 3, kw: 3, padding: 1, scale: "full", note: "ResNet 64x64" },
];

function toCase(spec: Im2colSpec, dtype: DType): KernelCase {
  const [N, C, H, W] = spec.xShape;
  const { kh, stride = 1, padding = 0 } = spec;
  const P = N * convOutSize(H, kh, stride, padding) * convOutSize(W, spec.kw, stride, padding);
  const elem = dtype === "f16" ? 2 : 4;
  return {
    op: "im2col",
    shape: [...spec.xShape, kh, stride, padding],
    dtype,
    scale: spec.scale,
    note: spec.note,
    // Every patch element is read once and written once.
    bytes: 2 * C * kh * spec.kw * P * elem,
    setup(gpu) {
      const x = gpu.upload(randomArray(N * C * H * W, 5), spec.xShape, dtype, "x");
      return {
        run() {
          im2col(gpu, x, spec).release();
        },
        dispose() {
          x.release();
        },
      };
    },
  };
}

/** Bench cases (f32 and f16) of every spec. */
export const cases: KernelCase[] = im2colSpecs.flatMap((s) => [toCase(s, "f32"), toCase(s, "f16")]);
