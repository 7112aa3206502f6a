/**
 * conv2d cases shared by tests/kernels/conv2d_test.ts and the bench.
 * Shape: [N, C, H, W, Cout, kernel] (square kernel, stride 1, padding (k-1)/2) or
 * [N, C, H, W, Cout, kernel, stride] (padding 1 for stride 2, as SD downsamplers).
 */

import type { KernelCase } from "./case.ts";
import type { DType } from "../../kernels/gpu/tensor.ts";
import { conv2d, convOutSize } from "../../kernels/conv2d.ts";
import { conv2dWinograd, winogradFits, winogradWeights } from "../../kernels/winograd.ts";
import { randomArray } from "../assert.ts";

/** One conv2d configuration of the table. */
export interface Conv2dSpec {
  shape: number[];
  scale: KernelCase["scale"];
  note: string;
  bias?: boolean;
  residual?: boolean;
  /** Explicit padding (default (k-1)/2, or 1 for stride 2). */
  padding?: number;
}

/** The table: odd sizes, the comparison shapes, and SD1.5 shapes. */
export const conv2dSpecs: Conv2dSpec[] = [
  { shape: [2, 5, 7, 9, 13, 3], scale: "test", note: "odd sizes 3x3", bias: true },
  {
    shape: [1, 8, 8, 8, 16, 1],
    scale: "test",
    note: "1x1 pointwise (vec4 path)",
    bias: true,
    residual: true,
  },
  { shape: [1, 3, 5, 5, 6, 1], scale: "test", note: "1x1 with odd H*W (gather path)" },
  {
    shape: [2, 4, 9, 7, 8, 3, 2],
    scale: "test",
    note: "stride 2 downsample, odd sizes",
    bias: true,
  },
  { shape: [1, 6, 6, 5, 7, 3], scale: "test", note: "3x3 without padding", padding: 0 },
  { shape: [2, 4, 12, 12, 32, 3], scale: "test", note: "conv_in shrunk (C=4)", bias: true },
  { shape: [2, 64, 32, 32, 64, 3], scale: "reduced", note: "comparison", bias: true },
  {
    shape: [1, 320, 16, 16, 320, 3],
    scale: "reduced",
    note: "comparison (ResNet conv 16x16)",
    bias: true,
    residual: true,
  },
  { shape: [2, 640, 8, 8, 320, 1], scale: "reduced", note: "ResNet 1x1 shortcut 8x8", bias: true },
  {
    shape: [1, 320, 16, 16, 320, 3, 2],
    scale: "reduced",
    note: "downsample 16x16 -> 8x8",
    bias: true,
  },
  {
    shape: [8, 1280, 1, 1, 1280, 3],
    scale: "reduced",
    note: "deepest level 1x1 at 64px (centre taps)",
    bias: true,
  },
  {
    shape: [8, 1280, 2, 2, 1280, 3],
    scale: "reduced",
    note: "2x2 at 64px (few columns)",
    bias: true,
    residual: true,
  },
  { shape: [1, 128, 64, 64, 128, 3], scale: "reduced", note: "VAE decoder up 64x64", bias: true },
  { shape: [2, 320, 64, 64, 320, 3], scale: "full", note: "ResNet conv 64x64", bias: true },
  { shape: [2, 4, 64, 64, 320, 3], scale: "full", note: "conv_in 64x64", bias: true },
  {
    shape: [2, 640, 32, 32, 640, 3],
    scale: "full",
    note: "ResNet conv 32x32",
    bias: true,
    residual: true,
  },
  { shape: [2, 1280, 16, 16, 1280, 3], scale: "full", note: "ResNet conv 16x16", bias: true },
  { shape: [2, 1280, 8, 8, 1280, 3], scale: "full", note: "ResNet conv 8x8", bias: true },
  { shape: [2, 320, 64, 64, 320, 3, 2], scale: "full", note: "downsample 64x64", bias: true },
  {
    shape: [2, 960, 64, 64, 320, 1],
    scale: "full",
    note: "up-block 1x1 shortcut 64x64",
    bias: true,
  },
  { shape: [1, 512, 64, 64, 512, 3], scale: "full", note: "VAE decoder mid 64x64", bias: true },
];

/** Geometry of a spec. */
export function conv2dGeometry(spec: Conv2dSpec): {
  xShape: number[];
  wShape: number[];
  outShape: number[];
  stride: number;
  padding: number;
} {
  const [N, C, H, W, Cout, k, stride = 1] = spec.shape;
  const padding = spec.padding ?? (stride === 2 ? 1 : (k - 1) / 2);
  const Ho = convOutSize(H, k, stride, padding), Wo = convOutSize(W, k, stride, padding);
  return {
    xShape: [N, C, H, W],
    wShape: [Cout, C, k, k],
    outShape: [N, Cout, Ho, Wo],
    stride,
    padding,
  };
}

/** Host data of a spec's inputs (deterministic). */
export function conv2dInputs(spec: Conv2dSpec): {
  x: Float32Array;
  w: Float32Array;
  bias?: Float32Array;
  residual?: Float32Array;
} {
  const g = conv2dGeometry(spec);
  const K = g.wShape[1] * g.wShape[2] * g.wShape[3];
  const n = (s: number[]) => s.reduce((a, b) => a * b, 1);
  return {
    x: randomArray(n(g.xShape), 21),
    w: randomArray(n(g.wShape), 22, 1 / Math.sqrt(K)),
    bias: spec.bias ? randomArray(g.wShape[0], 23) : undefined,
    residual: spec.residual ? randomArray(n(g.outShape), 24) : undefined,
  };
}

function toCase(spec: Conv2dSpec, dtype: DType): KernelCase {
  const g = conv2dGeometry(spec);
  const [N, Cout, Ho, Wo] = g.outShape;
  const [, C, kh, kw] = g.wShape;
  return {
    op: "conv2d",
    shape: [...spec.shape],
    dtype,
    scale: spec.scale,
    note: spec.note,
    flops: 2 * N * Ho * Wo * Cout * C * kh * kw,
    setup(gpu) {
      const h = conv2dInputs(spec);
      const x = gpu.upload(h.x, g.xShape, dtype, "x");
      const w = gpu.upload(h.w, g.wShape, dtype, "weight");
      const bias = h.bias ? gpu.upload(h.bias, [Cout], dtype, "bias") : undefined;
      const residual = h.residual ? gpu.upload(h.residual, g.outShape, dtype, "res") : undefined;
      return {
        run() {
          conv2d(gpu, x, w, { bias, residual, stride: g.stride, padding: g.padding }).release();
        },
        dispose() {
          for (const t of [x, w, bias, residual]) t?.release();
        },
      };
    },
  };
}

/**
 * The Winograd path (kernels/winograd.ts; software adapters, f32) of a 3x3 / stride 1 / padding
 * 1 spec, filters transformed outside the timed run as at load: compare with the conv2d case of
 * the same shape.
 */
function toWinogradCase(spec: Conv2dSpec): KernelCase {
  const g = conv2dGeometry(spec);
  const [N, Cout, Ho, Wo] = g.outShape;
  const C = g.wShape[1];
  return {
    op: "conv2d_winograd",
    shape: [...spec.shape],
    dtype: "f32",
    scale: spec.scale,
    note: spec.note,
    flops: 2 * N * Ho * Wo * Cout * C * 9,
    setup(gpu) {
      const h = conv2dInputs(spec);
      const x = gpu.upload(h.x, g.xShape, "f32", "x");
      const u = gpu.upload(winogradWeights(h.w, Cout, C), [16, Cout, C], "f32", "u");
      const bias = h.bias ? gpu.upload(h.bias, [Cout], "f32", "bias") : undefined;
      const residual = h.residual ? gpu.upload(h.residual, g.outShape, "f32", "res") : undefined;
      return {
        run() {
          conv2dWinograd(gpu, x, u, { bias, residual }).release();
        },
        dispose() {
          for (const t of [x, u, bias, residual]) t?.release();
        },
      };
    },
  };
}

/** Every spec in f32 and f16, and the 3x3 ones that fit on the Winograd path. */
export const cases: KernelCase[] = [
  ...conv2dSpecs.flatMap((s) => [toCase(s, "f32"), toCase(s, "f16")]),
  ...conv2dSpecs.filter((s) => {
    const g = conv2dGeometry(s);
    return winogradFits({ kh: g.wShape[2], kw: g.wShape[3], ...g, cin: g.wShape[1] });
  }).map(toWinogradCase),
];
