/**
 * LayerNorm cases. Shape: `[rows, D]` (normalised over D). Bytes = read x + write y.
 * @module
 */

import type { KernelCase } from "./case.ts";
import type { DType } from "../../kernels/gpu/tensor.ts";
import { layerNorm } from "../../kernels/layer_norm.ts";
import { randomArray } from "../assert.ts";

function lnCase(
  shape: number[],
  dtype: DType,
  scale: KernelCase["scale"],
  note: string,
): KernelCase {
  const [rows, d] = shape;
  return {
    op: "layer_norm",
    shape,
    dtype,
    scale,
    note,
    bytes: 2 * rows * d * (dtype === "f16" ? 2 : 4),
    setup(gpu) {
      const x = gpu.upload(randomArray(rows * d, 31, 2), [rows, d], dtype, "x");
      const w = gpu.upload(randomArray(d, 32), [d], dtype, "weight");
      const b = gpu.upload(randomArray(d, 33), [d], dtype, "bias");
      return {
        run: () => layerNorm(gpu, x, w, b, { eps: 1e-5 }).release(),
        dispose() {
          x.release();
          w.release();
          b.release();
        },
      };
    },
  };
}

/** LayerNorm cases: odd sizes, CLIP and transformer rows, full SD1.5 token counts. */
export const cases: KernelCase[] = [
  lnCase([37, 19], "f32", "test", "odd D, scalar path"),
  lnCase([5, 300], "f32", "test", "D > workgroup, vec4"),
  lnCase([37, 19], "f16", "test", "odd D f16"),
  lnCase([3, 1], "f32", "test", "D = 1"),
  lnCase([154, 768], "f32", "reduced", "CLIP, 2 x 77 tokens"),
  lnCase([154, 768], "f16", "reduced", "CLIP, 2 x 77 tokens"),
  lnCase([2048, 320], "f32", "reduced", "transformer, 8 frames x 16x16"),
  lnCase([131072, 320], "f32", "full", "transformer 64x64, 32 frames"),
  lnCase([131072, 320], "f16", "full", "transformer 64x64, 32 frames"),
  lnCase([2048, 1280], "f16", "full", "transformer 8x8, 32 frames"),
  lnCase([154, 768], "f32", "full", "CLIP, 2 x 77 tokens"),
];
