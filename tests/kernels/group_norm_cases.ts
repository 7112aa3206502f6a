/**
 * GroupNorm cases. Shape: `[N, C, H, W, groups]` or `[N, C, H, W, groups, frames]` (frames:
 * statistics span `frames` consecutive batch items, the AnimateDiff motion-module GroupNorm).
 * Bytes = read x + write y.
 * @module
 */

import type { KernelCase } from "./case.ts";
import type { DType } from "../../kernels/gpu/tensor.ts";
import { groupNorm } from "../../kernels/group_norm.ts";
import { randomArray } from "../assert.ts";

/** Eps used by the cases (SD1.5 ResNets use 1e-5, the motion module 1e-6). */
export const GROUP_NORM_EPS = 1e-5;

function gnCase(
  shape: number[],
  dtype: DType,
  scale: KernelCase["scale"],
  note: string,
  silu = false,
): KernelCase {
  const [n, c, h, w, groups, frames = 1] = shape;
  const size = n * c * h * w;
  return {
    op: "group_norm",
    shape,
    dtype,
    scale,
    note: silu ? `${note}, +silu` : note,
    bytes: 2 * size * (dtype === "f16" ? 2 : 4),
    setup(gpu) {
      const x = gpu.upload(randomArray(size, 11, 2), [n, c, h, w], dtype, "x");
      const wt = gpu.upload(randomArray(c, 12, 1), [c], dtype, "weight");
      const b = gpu.upload(randomArray(c, 13, 1), [c], dtype, "bias");
      return {
        run: () =>
          groupNorm(gpu, x, wt, b, { groups, eps: GROUP_NORM_EPS, silu, frames }).release(),
        dispose() {
          x.release();
          wt.release();
          b.release();
        },
      };
    },
  };
}

/** GroupNorm cases: odd test sizes, reduced SD shapes, full SD1.5 / AnimateDiff shapes. */
export const cases: KernelCase[] = [
  gnCase([3, 30, 5, 7, 6], "f32", "test", "odd spatial, scalar path"),
  gnCase([2, 12, 9, 1, 4], "f32", "test", "[N, C, S] input", true),
  gnCase([2, 16, 4, 6, 8], "f32", "test", "vec4 path", true),
  gnCase([4, 8, 3, 3, 4, 2], "f32", "test", "frames 2, scalar"),
  gnCase([6, 8, 4, 4, 2, 3], "f16", "test", "frames 3, vec4", true),
  gnCase([3, 30, 5, 7, 6], "f16", "test", "odd spatial f16"),
  // 2048 vec4 units per group: the widest one-workgroup-per-group launch (256 threads).
  gnCase([4, 64, 32, 32, 8], "f32", "test", "large groups, 256 threads", true),
  gnCase([2, 64, 32, 32, 32], "f32", "reduced", "comparison shape"),
  gnCase([2, 64, 32, 32, 32], "f16", "reduced", "comparison shape"),
  gnCase([2, 320, 16, 16, 32], "f32", "reduced", "SD down 0 at 128px", true),
  gnCase([8, 64, 16, 16, 32, 4], "f16", "reduced", "motion module, 4 frames"),
  gnCase([1, 128, 128, 128, 32], "f32", "reduced", "VAE decoder 128px (split)", true),
  gnCase([32, 320, 64, 64, 32], "f32", "full", "SD1.5 down 0, 16 frames x CFG", true),
  gnCase([32, 320, 64, 64, 32], "f16", "full", "SD1.5 down 0, 16 frames x CFG", true),
  gnCase([32, 1280, 8, 8, 32], "f16", "full", "SD1.5 mid block", true),
  gnCase([32, 320, 64, 64, 32, 16], "f32", "full", "motion module 64x64, 16 frames (split)"),
  gnCase([32, 320, 64, 64, 32, 16], "f16", "full", "motion module 64x64, 16 frames (split)"),
  gnCase([1, 128, 512, 512, 32], "f16", "full", "VAE decoder 512px (split)", true),
];
