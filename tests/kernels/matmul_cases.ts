/**
 * matmul / linear cases shared by tests/kernels/matmul_test.ts and the bench.
 * Shape: [M, K, N] (batch folded into M unless `batch` is set).
 */

import type { KernelCase } from "./case.ts";
import type { DType } from "../../kernels/gpu/tensor.ts";
import { type Activation, matmul } from "../../kernels/matmul.ts";
import { assert, assertClose, randomArray } from "../assert.ts";
import { matmulCpu } from "../../kernels/matmul_cpu.ts";
import { roundToF16 } from "../../kernels/gpu/half.ts";
import type { Gpu } from "../../kernels/gpu/device.ts";

/** One matmul configuration of the table. */
export interface MatmulSpec {
  /** [M, K, N]. */
  shape: [number, number, number];
  scale: KernelCase["scale"];
  note: string;
  /** Leading batch count with one B matrix per batch (else B is shared). */
  batch?: number;
  transposeB?: boolean;
  bias?: boolean;
  activation?: Activation;
  residual?: boolean;
  alpha?: number;
}

/** The table: odd sizes, the comparison shapes, and SD1.5 / AnimateDiff shapes. */
export const matmulSpecs: MatmulSpec[] = [
  { shape: [37, 19, 45], scale: "test", note: "odd sizes (scalar path)", bias: true },
  {
    shape: [37, 20, 44],
    scale: "test",
    note: "odd M, vec4 path, Linear weight",
    transposeB: true,
    bias: true,
    activation: "gelu",
  },
  {
    shape: [70, 33, 9],
    scale: "test",
    note: "narrow N, silu + residual",
    bias: true,
    activation: "silu",
    residual: true,
  },
  {
    shape: [5, 16, 24],
    scale: "test",
    note: "per-batch B, alpha",
    batch: 3,
    alpha: 0.125,
    residual: true,
  },
  {
    shape: [9, 8, 7],
    scale: "test",
    note: "per-batch B^T (attention-like)",
    batch: 4,
    transposeB: true,
  },
  {
    shape: [2, 320, 1280],
    scale: "test",
    note: "time embedding linear_1 (M=2)",
    transposeB: true,
    bias: true,
    activation: "silu",
  },
  {
    shape: [154, 64, 96],
    scale: "test",
    note: "CLIP MLP shrunk, quick_gelu",
    transposeB: true,
    bias: true,
    activation: "quick_gelu",
  },
  { shape: [256, 256, 256], scale: "reduced", note: "comparison" },
  { shape: [1024, 320, 320], scale: "reduced", note: "comparison (proj 32x32 latent)" },
  { shape: [4096, 320, 320], scale: "reduced", note: "comparison (proj 64x64 latent)" },
  { shape: [4096, 320, 1280], scale: "reduced", note: "comparison (FF 64x64 latent)" },
  {
    shape: [154, 768, 320],
    scale: "reduced",
    note: "cross-attn to_k (2 x 77 tokens)",
    transposeB: true,
  },
  {
    shape: [65536, 320, 320],
    scale: "full",
    note: "proj_in 64x64 latent x 16 frames",
    transposeB: true,
    bias: true,
  },
  {
    shape: [16384, 320, 2560],
    scale: "full",
    note: "GEGLU proj 64x64 x 4 frames",
    transposeB: true,
    bias: true,
  },
  {
    shape: [16384, 1280, 320],
    scale: "full",
    note: "FF out 64x64 x 4 frames",
    transposeB: true,
    bias: true,
    residual: true,
  },
  {
    shape: [8192, 640, 640],
    scale: "full",
    note: "proj 32x32 latent x 8 frames",
    transposeB: true,
  },
  {
    shape: [2048, 1280, 1280],
    scale: "full",
    note: "proj 16x16 latent x 8 frames",
    transposeB: true,
  },
  {
    shape: [2, 1280, 1280],
    scale: "full",
    note: "time embedding linear_2",
    transposeB: true,
    bias: true,
  },
];

/** Host data of a spec's inputs (deterministic), with their shapes. */
export function matmulInputs(spec: MatmulSpec): {
  a: Float32Array;
  aShape: number[];
  b: Float32Array;
  bShape: number[];
  bias?: Float32Array;
  residual?: Float32Array;
} {
  const [M, K, N] = spec.shape;
  const lead = spec.batch ? [spec.batch] : [];
  const bMat = spec.transposeB ? [N, K] : [K, N];
  const rows = (spec.batch ?? 1) * M;
  // Scale 1/sqrt(K) keeps outputs O(1) so the f16 tolerance is meaningful.
  return {
    a: randomArray(rows * K, 11),
    aShape: [...lead, M, K],
    b: randomArray((spec.batch ?? 1) * K * N, 12, 1 / Math.sqrt(K)),
    bShape: [...lead, ...bMat],
    bias: spec.bias ? randomArray(N, 13) : undefined,
    residual: spec.residual ? randomArray(rows * N, 14) : undefined,
  };
}

function toCase(spec: MatmulSpec, dtype: DType): KernelCase {
  const [M, K, N] = spec.shape;
  const batch = spec.batch ?? 1;
  return {
    op: "matmul",
    shape: [...spec.shape],
    dtype,
    scale: spec.scale,
    note: spec.note,
    flops: 2 * batch * M * N * K,
    setup(gpu) {
      const h = matmulInputs(spec);
      const a = gpu.upload(h.a, h.aShape, dtype, "a");
      const b = gpu.upload(h.b, h.bShape, dtype, "b");
      const bias = h.bias ? gpu.upload(h.bias, [N], dtype, "bias") : undefined;
      const residual = h.residual
        ? gpu.upload(h.residual, [...h.aShape.slice(0, -1), N], dtype, "res")
        : undefined;
      return {
        run() {
          matmul(gpu, a, b, {
            transposeB: spec.transposeB,
            bias,
            residual,
            activation: spec.activation,
            alpha: spec.alpha,
          }).release();
        },
        dispose() {
          for (const t of [a, b, bias, residual]) t?.release();
        },
      };
    },
  };
}

/** Every spec in f32 and f16. */
export const cases: KernelCase[] = matmulSpecs.flatMap((s) => [toCase(s, "f32"), toCase(s, "f16")]);

// Tolerances: f32 |err| <= 1e-4 + 1e-4 |ref| (K <= 1280, O(1) values, f32 accumulation);
// f16 vs the reference on f16-rounded inputs: |err| <= 1e-2 + 1e-2 |ref| (f16 output rounding
// is 2^-11 relative; residual adds are rounded once more).
const TOL = { f32: { atol: 1e-4, rtol: 1e-4 }, f16: { atol: 1e-2, rtol: 1e-2 } };

function r(x: Float32Array | undefined, dtype: DType): Float32Array | undefined {
  return x && dtype === "f16" ? roundToF16(x) : x;
}

/**
 * Runs one spec through matmul on the GPU and checks it against the CPU reference with the
 * tolerances of tests/kernels/matmul_test.ts.
 */
export async function checkMatmul(gpu: Gpu, spec: MatmulSpec, dtype: DType): Promise<void> {
  const h = matmulInputs(spec);
  const N = spec.shape[2];
  const outShape = [...h.aShape.slice(0, -1), N];
  const a = gpu.upload(h.a, h.aShape, dtype, "a");
  const b = gpu.upload(h.b, h.bShape, dtype, "b");
  const bias = h.bias && gpu.upload(h.bias, [N], dtype, "bias");
  const residual = h.residual && gpu.upload(h.residual, outShape, dtype, "residual");
  const out = matmul(gpu, a, b, {
    transposeB: spec.transposeB,
    bias,
    residual,
    activation: spec.activation,
    alpha: spec.alpha,
  });
  assert(out.shape.join() === outShape.join(), `output shape ${out.shape} != ${outShape}`);
  const got = await gpu.read(out);
  const want = matmulCpu(r(h.a, dtype)!, r(h.b, dtype)!, {
    aShape: h.aShape,
    bShape: h.bShape,
    transposeB: spec.transposeB,
    bias: r(h.bias, dtype),
    residual: r(h.residual, dtype),
    activation: spec.activation,
    alpha: spec.alpha,
  });
  assertClose(got, want, { ...TOL[dtype], msg: `matmul ${spec.shape} ${dtype}` });
  for (const t of [a, b, bias, residual, out]) t?.release();
}
