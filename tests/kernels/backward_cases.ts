/**
 * Bench cases of the training kernels: the backward of every compute-heavy op and the optimiser
 * (their correctness tests are the `*_backward_test.ts` files and optimizer_test.ts). Shapes as
 * each forward's table; `scale` as everywhere (test / reduced / full SD1.5 + v2 at 256 x 256).
 * @module
 */

import type { KernelCase } from "./case.ts";
import type { Gpu } from "../../kernels/gpu/device.ts";
import type { DType, Tensor } from "../../kernels/gpu/tensor.ts";
import { linearBackward } from "../../kernels/matmul.ts";
import { conv2dBackward } from "../../kernels/conv2d.ts";
import { groupNormBackward } from "../../kernels/group_norm.ts";
import { layerNormBackward } from "../../kernels/layer_norm.ts";
import { attentionForTraining } from "../../kernels/attention.ts";
import { attentionBackward } from "../../kernels/attention_backward.ts";
import { adamw, gradNorm } from "../../kernels/optimizer.ts";
import { randomArray } from "../assert.ts";

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
const bytesOf = (dtype: DType) => (dtype === "f16" ? 2 : 4);

/** Uploads seeded inputs and returns a case whose run releases every result. */
function backwardCase(
  c: Omit<KernelCase, "setup">,
  inputs: { shape: number[]; dtype?: DType }[],
  run: (gpu: Gpu, ts: Tensor[]) => (Tensor | null)[],
): KernelCase {
  return {
    ...c,
    setup(gpu) {
      const ts = inputs.map((i, k) =>
        gpu.upload(randomArray(numel(i.shape), 70 + k, 1), i.shape, i.dtype ?? c.dtype)
      );
      return {
        run: () => run(gpu, ts).forEach((t) => t?.release()),
        dispose: () => ts.forEach((t) => t.release()),
      };
    },
  };
}

/** linear backward (dx, dW, db): shape [M, K, N]; 4 M K N flops. */
function linearCase(shape: number[], dtype: DType, scale: KernelCase["scale"], note: string) {
  const [m, k, n] = shape;
  return backwardCase(
    { op: "linear_backward", shape, dtype, scale, note, flops: 4 * m * k * n },
    [{ shape: [m, k] }, { shape: [n, k] }, { shape: [m, n] }],
    (gpu, [x, w, gy]) => {
      const g = linearBackward(gpu, gy, {
        x,
        weight: w,
        needs: { x: true, weight: true, bias: true },
      });
      return [g.dx, g.dw, g.db];
    },
  );
}

/** conv2d backward (dx, dW, db), 3x3 padding 1: shape [N, C, H, W, Cout]. */
function convCase(shape: number[], dtype: DType, scale: KernelCase["scale"], note: string) {
  const [n, c, h, w, cout] = shape;
  return backwardCase(
    { op: "conv2d_backward", shape, dtype, scale, note, flops: 4 * n * cout * h * w * c * 9 },
    [{ shape: [n, c, h, w] }, { shape: [cout, c, 3, 3] }, { shape: [n, cout, h, w] }],
    (gpu, [x, weight, gy]) => {
      const g = conv2dBackward(gpu, gy, { x, weight, padding: 1, needs: { bias: true } });
      return [g.dx, g.dw, g.db];
    },
  );
}

/** group norm backward over clips (the motion module's): shape [N, C, H, W, groups, frames]. */
function groupNormCase(shape: number[], dtype: DType, scale: KernelCase["scale"], note: string) {
  const [n, c, h, w, groups, frames] = shape;
  const x = [n, c, h, w];
  return backwardCase(
    { op: "group_norm_backward", shape, dtype, scale, note, bytes: 4 * numel(x) * bytesOf(dtype) },
    [{ shape: x }, { shape: [c] }, { shape: [c] }, { shape: x }],
    (gpu, [xt, weight, bias, gy]) => {
      const g = groupNormBackward(gpu, gy, { x: xt, weight, bias, groups, eps: 1e-6, frames });
      return [g.dx, g.dweight, g.dbias];
    },
  );
}

/** layer norm backward: shape [rows, D]. */
function layerNormCase(shape: number[], dtype: DType, scale: KernelCase["scale"], note: string) {
  const [rows, d] = shape;
  return backwardCase(
    { op: "layer_norm_backward", shape, dtype, scale, note, bytes: 4 * rows * d * bytesOf(dtype) },
    [{ shape: [rows, d] }, { shape: [d] }, { shape: [d] }, { shape: [rows, d] }],
    (gpu, [x, weight, bias, gy]) => {
      const g = layerNormBackward(gpu, gy, { x, weight, bias, eps: 1e-5 });
      return [g.dx, g.dweight, g.dbias];
    },
  );
}

/**
 * attention backward (dq, dk, dv) after the training forward (which saves the logsumexp):
 * shape [B, L, heads, d]; ~2.5x the forward's 4 B H L^2 d flops.
 */
function attentionCase(shape: number[], dtype: DType, scale: KernelCase["scale"], note: string) {
  const [b, l, heads, d] = shape;
  const qkv = [b, l, heads * d];
  return {
    op: "attention_backward",
    shape,
    dtype,
    scale,
    note,
    flops: 10 * b * heads * l * l * d,
    setup(gpu: Gpu) {
      const [q, k, v, gout] = [0, 1, 2, 3].map((i) =>
        gpu.upload(randomArray(numel(qkv), 80 + i, 1), qkv, dtype)
      );
      const { out, lse } = attentionForTraining(gpu, q, k, v, { heads });
      return {
        run: () => {
          const g = attentionBackward(gpu, gout, { q, k, v, out, lse, heads });
          for (const t of [g.dq, g.dk, g.dv]) t?.release();
        },
        dispose: () => [q, k, v, gout, out, lse].forEach((t) => t.release()),
      };
    },
  } satisfies KernelCase;
}

/** gradient norm + AdamW over `n` parameters (one tensor), f32 master weights. */
function adamwCase(n: number, dtype: DType, scale: KernelCase["scale"], note: string): KernelCase {
  return {
    op: "adamw",
    shape: [n],
    dtype,
    scale,
    note,
    bytes: n * (bytesOf(dtype) * 2 + 4 * 6),
    setup(gpu) {
      const grad = gpu.upload(randomArray(n, 90, 1), [n], dtype);
      const [param, m, v] = [91, 92, 93].map((s) => gpu.upload(randomArray(n, s, 1), [n]));
      let step = 0;
      return {
        run: () => {
          const stats = gradNorm(gpu, [grad], { maxNorm: 1 });
          adamw(gpu, { param, grad, m, v, stats }, {
            lr: 1e-4,
            betas: [0.9, 0.999],
            eps: 1e-8,
            weightDecay: 1e-2,
            step: ++step,
          });
          stats.release();
        },
        dispose: () => [grad, param, m, v].forEach((t) => t.release()),
      };
    },
  };
}

/** The training kernels' cases. */
export const cases: KernelCase[] = [
  linearCase([37, 19, 23], "f32", "test", "odd sizes"),
  linearCase([8192, 320, 320], "f32", "reduced", "motion attn proj, 16 x 32 x 16 tokens"),
  linearCase([65536, 1280, 320], "f16", "full", "motion FF out, 16 frames 256x256"),
  convCase([2, 5, 9, 7, 6], "f32", "test", "odd sizes"),
  convCase([4, 64, 32, 32, 64], "f32", "reduced", "ResNet conv, 4 frames 32x32"),
  convCase([16, 320, 32, 32, 320], "f16", "full", "ResNet conv 32x32, 16 frames (256x256)"),
  groupNormCase([4, 8, 5, 7, 4, 2], "f32", "test", "odd spatial, 2-frame clips"),
  groupNormCase([16, 320, 32, 32, 32, 16], "f32", "reduced", "motion GroupNorm over 16 frames"),
  layerNormCase([37, 19], "f32", "test", "odd D"),
  layerNormCase([16384, 320], "f32", "reduced", "temporal block norms"),
  attentionCase([3, 11, 2, 8], "f32", "test", "odd L"),
  attentionCase([1024, 16, 8, 40], "f32", "reduced", "temporal attention, 16 frames, 32x32"),
  attentionCase([16, 1024, 8, 40], "f16", "full", "spatial self-attention 32x32, 16 frames"),
  adamwCase(4099, "f32", "test", "odd size"),
  adamwCase(1_638_400, "f32", "reduced", "a 1280x1280 projection"),
];
