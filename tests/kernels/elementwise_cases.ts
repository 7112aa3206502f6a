/**
 * Elementwise cases. Shapes:
 * - add / mul: the output shape; `bShape` (in `binaryCases`) is b's shape, a has the output shape
 *   unless `aShape` says otherwise.
 * - silu / gelu / quick_gelu / scale: the tensor shape.
 * - geglu: `[rows, 2N]` (input).
 * - linear_combination: `[n, terms]`.
 * - cfg_combine: `[2B, C, H, W]` (input).
 * Bytes = every input read + the output written.
 * @module
 */

import type { KernelCase } from "./case.ts";
import type { Gpu } from "../../kernels/gpu/device.ts";
import type { DType, Tensor } from "../../kernels/gpu/tensor.ts";
import {
  add,
  cfgCombine,
  geglu,
  linearCombination,
  mul,
  scale,
  unary,
  type UnaryOp,
} from "../../kernels/elementwise.ts";
import { randomArray } from "../assert.ts";

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
const bytesOf = (dtype: DType) => dtype === "f16" ? 2 : 4;

function simpleCase(
  op: string,
  shape: number[],
  dtype: DType,
  scale: KernelCase["scale"],
  note: string,
  inputs: number[][],
  outSize: number,
  run: (gpu: Gpu, xs: Tensor[]) => Tensor,
): KernelCase {
  return {
    op,
    shape,
    dtype,
    scale,
    note,
    bytes: (inputs.reduce((a, s) => a + numel(s), 0) + outSize) * bytesOf(dtype),
    setup(gpu) {
      const xs = inputs.map((s, i) => gpu.upload(randomArray(numel(s), 60 + i, 2), s, dtype));
      return {
        run: () => run(gpu, xs).release(),
        dispose: () => xs.forEach((t) => t.release()),
      };
    },
  };
}

/** A broadcasting add / mul case with its input shapes. */
export type BinaryCase = KernelCase & { aShape: number[]; bShape: number[] };

function binaryCase(
  op: "add" | "mul",
  aShape: number[],
  bShape: number[],
  dtype: DType,
  scale: KernelCase["scale"],
  note: string,
): BinaryCase {
  const out = aShape.length >= bShape.length ? aShape : bShape;
  const shape = out.map((_, i) =>
    Math.max(
      aShape[aShape.length - out.length + i] ?? 1,
      bShape[bShape.length - out.length + i] ?? 1,
    )
  );
  const fn = op === "add" ? add : mul;
  const c = simpleCase(
    op,
    shape,
    dtype,
    scale,
    `${note}; a [${aShape}], b [${bShape}]`,
    [aShape, bShape],
    numel(shape),
    (gpu, [a, b]) => fn(gpu, a, b),
  );
  return { ...c, aShape, bShape };
}

/** add / mul cases (the test reads their input shapes). */
export const binaryCases: BinaryCase[] = [
  binaryCase("add", [37, 45], [37, 45], "f32", "test", "same shape, scalar"),
  binaryCase("mul", [4, 8, 6], [4, 8, 6], "f32", "test", "same shape, vec4"),
  binaryCase("add", [2, 3, 5, 7], [3, 1, 1], "f32", "test", "channel bias, scalar"),
  binaryCase("mul", [2, 7, 64], [64], "f32", "test", "row broadcast, vec4"),
  binaryCase("add", [1, 4, 1, 8], [3, 1, 5, 1], "f32", "test", "both sides broadcast"),
  binaryCase("mul", [5, 1], [1, 6], "f16", "test", "outer product"),
  binaryCase("add", [2, 1, 3, 1, 2, 4], [1, 2, 1, 3, 1, 4], "f32", "test", "rank 6, vec4"),
  binaryCase("add", [1], [3, 5], "f16", "test", "scalar tensor"),
  binaryCase("add", [2, 3, 4, 8], [3, 1, 1], "f32", "test", "channel bias, vec4 + splat"),
  binaryCase("mul", [5, 1], [5, 8], "f16", "test", "splat a, vec4 b"),
  binaryCase("add", [16, 320, 16, 16], [16, 320, 16, 16], "f32", "reduced", "residual"),
  binaryCase("add", [16, 320, 16, 16], [16, 320, 1, 1], "f16", "reduced", "time embedding"),
  binaryCase("add", [32, 320, 64, 64], [32, 320, 64, 64], "f32", "full", "residual 64x64"),
  binaryCase("add", [32, 320, 64, 64], [32, 320, 64, 64], "f16", "full", "residual 64x64"),
  binaryCase("add", [32, 320, 64, 64], [32, 320, 1, 1], "f16", "full", "time embedding 64x64"),
  binaryCase("mul", [131072, 1280], [131072, 1280], "f16", "full", "gate 64x64"),
];

function unaryCase(
  op: UnaryOp,
  shape: number[],
  dtype: DType,
  s: KernelCase["scale"],
  note: string,
) {
  return simpleCase(op, shape, dtype, s, note, [shape], numel(shape), (g, [x]) => unary(g, x, op));
}

function gegluCase(shape: number[], dtype: DType, s: KernelCase["scale"], note: string) {
  return simpleCase(
    "geglu",
    shape,
    dtype,
    s,
    note,
    [shape],
    numel(shape) / 2,
    (g, [x]) => geglu(g, x),
  );
}

/** Coefficients used by the linear_combination cases (test reads them). */
export const LINEAR_COEFFS = [0.75, -1.25, 2.5, 0.125];

function combineCase(shape: number[], dtype: DType, s: KernelCase["scale"], note: string) {
  const [n, k] = shape;
  return simpleCase(
    "linear_combination",
    shape,
    dtype,
    s,
    note,
    Array(k).fill([n]),
    n,
    (g, xs) => linearCombination(g, xs.map((x, i) => ({ c: LINEAR_COEFFS[i], x }))),
  );
}

/** Guidance scale of the cfg_combine cases. */
export const CFG_GUIDANCE = 7.5;

function cfgCase(shape: number[], dtype: DType, s: KernelCase["scale"], note: string) {
  return simpleCase(
    "cfg_combine",
    shape,
    dtype,
    s,
    note,
    [shape],
    numel(shape) / 2,
    (g, [x]) => cfgCombine(g, x, CFG_GUIDANCE),
  );
}

/** Factor of the scale cases. */
export const SCALE_FACTOR = 1 / 0.18215;

function scaleCase(shape: number[], dtype: DType, s: KernelCase["scale"], note: string) {
  return simpleCase(
    "scale",
    shape,
    dtype,
    s,
    note,
    [shape],
    numel(shape),
    (g, [x]) => scale(g, x, SCALE_FACTOR),
  );
}

/** Every elementwise case. */
export const cases: KernelCase[] = [
  ...binaryCases,
  unaryCase("silu", [1001], "f32", "test", "odd length"),
  unaryCase("gelu", [1001], "f32", "test", "odd length"),
  unaryCase("quick_gelu", [1001], "f32", "test", "odd length"),
  unaryCase("gelu", [8, 36], "f16", "test", "vec4 f16"),
  unaryCase("silu", [16, 320, 16, 16], "f16", "reduced", "ResNet activation"),
  unaryCase("gelu", [2048, 320], "f32", "reduced", "transformer"),
  unaryCase("silu", [32, 320, 64, 64], "f16", "full", "ResNet activation 64x64"),
  unaryCase("quick_gelu", [154, 3072], "f32", "full", "CLIP MLP"),
  gegluCase([37, 38], "f32", "test", "odd N = 19"),
  gegluCase([5, 128], "f16", "test", "vec4 f16"),
  gegluCase([2048, 2560], "f32", "reduced", "FF 16x16, 8 frames"),
  gegluCase([131072, 2560], "f16", "full", "FF 64x64, 32 frames"),
  combineCase([1001, 3], "f32", "test", "odd length, 3 terms"),
  combineCase([64, 4], "f16", "test", "4 terms"),
  combineCase([7, 1], "f32", "test", "1 term"),
  combineCase([32768, 2], "f32", "reduced", "DDIM step 16 frames 32x32"),
  combineCase([262144, 4], "f32", "full", "scheduler step 16 frames 64x64, 4 terms"),
  cfgCase([2, 3, 5, 7], "f32", "test", "odd"),
  cfgCase([4, 4, 8, 8], "f16", "test", "vec4 f16"),
  cfgCase([32, 4, 32, 32], "f32", "reduced", "16 frames 32x32"),
  cfgCase([32, 4, 64, 64], "f32", "full", "16 frames 64x64"),
  scaleCase([3, 5, 7], "f32", "test", "odd"),
  scaleCase([16, 4, 64, 64], "f32", "full", "latents 16 frames"),
];
