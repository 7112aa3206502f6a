import type { Gpu } from "../../kernels/gpu/device.ts";
import { roundToF16 } from "../../kernels/gpu/half.ts";
import type { DType } from "../../kernels/gpu/tensor.ts";
import { conv2d, setIm2colChunkOverride } from "../../kernels/conv2d.ts";
import { setGemmPathOverride } from "../../kernels/gemm_direct.ts";
import { conv2dCpu } from "../../kernels/conv2d_cpu.ts";
import { type GemmTile, setGemmTileOverride } from "../../kernels/gemm.ts";
import { assert, assertClose, assertRejects, randomArray } from "../assert.ts";
import { countDispatches, gpuTest } from "../gpu.ts";
import { conv2dGeometry, conv2dInputs, type Conv2dSpec, conv2dSpecs } from "./conv2d_cases.ts";

// Tolerances: f32 |err| <= 1e-4 + 1e-4 |ref| (K = C*k*k <= 2880, weights ~1/sqrt(K));
// f16 vs the reference on f16-rounded inputs: |err| <= 1e-2 + 1e-2 |ref|.
const TOL = { f32: { atol: 1e-4, rtol: 1e-4 }, f16: { atol: 1e-2, rtol: 1e-2 } };
/** Cases checked against the CPU here (bigger ones only run in the bench). */
const MAX_TEST_FLOPS = 5e8;

function r(x: Float32Array | undefined, dtype: DType): Float32Array | undefined {
  return x && dtype === "f16" ? roundToF16(x) : x;
}

async function checkSpec(gpu: Gpu, spec: Conv2dSpec, dtype: DType): Promise<void> {
  const g = conv2dGeometry(spec);
  const h = conv2dInputs(spec);
  const x = gpu.upload(h.x, g.xShape, dtype, "x");
  const w = gpu.upload(h.w, g.wShape, dtype, "weight");
  const bias = h.bias && gpu.upload(h.bias, [g.wShape[0]], dtype, "bias");
  const residual = h.residual && gpu.upload(h.residual, g.outShape, dtype, "residual");
  const out = conv2d(gpu, x, w, { bias, residual, stride: g.stride, padding: g.padding });
  assert(out.shape.join() === g.outShape.join(), `output shape ${out.shape} != ${g.outShape}`);
  const want = conv2dCpu(r(h.x, dtype)!, r(h.w, dtype)!, {
    xShape: g.xShape,
    wShape: g.wShape,
    bias: r(h.bias, dtype),
    residual: r(h.residual, dtype),
    stride: g.stride,
    padding: g.padding,
  });
  assertClose(await gpu.read(out), want, { ...TOL[dtype], msg: `conv2d ${spec.shape} ${dtype}` });
  for (const t of [x, w, bias, residual, out]) t?.release();
}

for (const spec of conv2dSpecs) {
  const g = conv2dGeometry(spec);
  const flops = 2 * g.outShape.reduce((a, b) => a * b, 1) * g.wShape[1] * g.wShape[2] * g.wShape[3];
  if (spec.scale === "full" || flops > MAX_TEST_FLOPS) continue;
  for (const dtype of ["f32", "f16"] as const) {
    gpuTest(
      { name: `conv2d ${spec.note} [${spec.shape}] ${dtype} vs CPU`, f16: dtype === "f16" },
      async (gpu) => {
        await checkSpec(gpu, spec, dtype);
      },
    );
  }
}

gpuTest("conv2d: every tiled-path tile, 3x3 / 1x1 / stride 2 / odd sizes (f32)", async (gpu) => {
  // Software adapters run the direct path in the cases above; GPUs the tile of pickGemmTile.
  const tiles: GemmTile[] = [
    { tm: 4, tn: 4, bk: 16 },
    { tm: 8, tn: 4, bk: 32 },
    { tm: 4, tn: 8, bk: 16 },
    { tm: 8, tn: 8, bk: 16 },
  ];
  const specs: Conv2dSpec[] = [
    { shape: [2, 7, 9, 11, 70, 3], scale: "test", note: "", bias: true, residual: true },
    { shape: [3, 12, 6, 6, 20, 1], scale: "test", note: "", residual: true },
    { shape: [1, 5, 11, 10, 9, 3, 2], scale: "test", note: "", bias: true },
    { shape: [1, 2, 9, 9, 3, 5], scale: "test", note: "5x5 kernel" },
  ];
  try {
    // Each tile runs two of the specs; every spec meets two tiles.
    for (const [i, tile] of tiles.entries()) {
      setGemmTileOverride(tile);
      for (const spec of [specs[i], specs[(i + 3) % 4]]) await checkSpec(gpu, spec, "f32");
    }
  } finally {
    setGemmTileOverride(null);
  }
});

gpuTest("conv2d: direct path (software adapters), im2col in chunks, f32 and f16", async (gpu) => {
  const specs: Conv2dSpec[] = [
    // 3x3 with bias + residual; HoWo % 4 != 0 (scalar stores) and odd Cout.
    { shape: [2, 8, 9, 11, 13, 3], scale: "test", note: "", bias: true, residual: true },
    // 1x1 straight from x (no patch matrix), several images.
    { shape: [3, 12, 6, 6, 20, 1], scale: "test", note: "", bias: true, residual: true },
    // stride 2 downsample, vec4 stores.
    { shape: [1, 4, 16, 8, 9, 3, 2], scale: "test", note: "", bias: true },
    // 5x5 kernel; 1x1 with odd HoWo (patch matrix); C * k * k % 4 != 0 (tiled fallback).
    { shape: [1, 4, 9, 9, 3, 5], scale: "test", note: "" },
    { shape: [2, 8, 5, 5, 6, 1], scale: "test", note: "", bias: true },
    { shape: [1, 3, 6, 6, 5, 3], scale: "test", note: "", bias: true },
    // 3x3 on 1 x 1 images (the deepest UNet level): the centre taps only, no patch matrix.
    { shape: [6, 16, 1, 1, 12, 3], scale: "test", note: "", bias: true, residual: true },
    { shape: [4, 8, 1, 1, 8, 5], scale: "test", note: "" },
  ];
  try {
    setGemmPathOverride("direct");
    // 2 KiB of patch matrix at once: several chunks per convolution, some ending mid-image.
    setIm2colChunkOverride(2048);
    // Dispatches per kernel name, per spec (f32 + f16 runs together).
    const ran: Map<string, number>[] = [];
    for (const spec of specs) {
      const counts = await countDispatches(gpu, async () => {
        for (const dtype of ["f32", "f16"] as const) {
          if (dtype === "f16" && !gpu.hasF16) continue;
          await checkSpec(gpu, spec, dtype);
        }
      });
      const byKernel = new Map<string, number>();
      for (const [key, n] of counts) {
        const kernel = key.split(":")[0];
        byKernel.set(kernel, (byKernel.get(kernel) ?? 0) + n);
      }
      ran.push(byKernel);
    }
    const n = (i: number, kernel: string) => ran[i].get(kernel) ?? 0;
    const runs = gpu.hasF16 ? 2 : 1;
    const show = (i: number) => `spec ${i}: ${JSON.stringify([...ran[i]])}`;
    // Patch matrix in several chunks + direct GEMM, never the implicit-GEMM kernel.
    for (const i of [0, 2, 3]) {
      assert(n(i, "im2col") >= 2 * runs && n(i, "gemm_direct") === n(i, "im2col"), show(i));
      assert(n(i, "conv2d") === 0, show(i));
    }
    assert(n(4, "im2col") === runs && n(4, "gemm_direct") === runs, show(4));
    assert(n(1, "gemm_direct") === runs && n(1, "im2col") === 0 && n(1, "conv2d") === 0, show(1));
    assert(n(5, "conv2d") === runs && n(5, "gemm_direct") === 0, show(5));
    for (const i of [6, 7]) {
      assert(n(i, "gemm_direct") === runs && n(i, "im2col") === 0, show(i));
      assert(n(i, "conv2d") === 0, show(i));
    }
  } finally {
    setGemmPathOverride(null);
    setIm2colChunkOverride(null);
  }
});

gpuTest("conv2d: 1x1 with padding 1 uses the gather path and pads with zeros", async (gpu) => {
  await checkSpec(gpu, { shape: [1, 4, 4, 4, 8, 1], scale: "test", note: "", padding: 1 }, "f32");
});

gpuTest("conv2d: shape and dtype errors name the op and shapes", async (gpu) => {
  const x = gpu.upload(randomArray(2 * 3 * 4 * 4), [2, 3, 4, 4]);
  const w = gpu.upload(randomArray(5 * 4 * 9), [5, 4, 3, 3]);
  const w3 = gpu.upload(randomArray(5 * 3 * 9), [5, 3, 3, 3]);
  const bias = gpu.upload(randomArray(4), [4]);
  await assertRejects(
    () => conv2d(gpu, x, w),
    /conv2d: expected x \[N, C, H, W\] and weight \[Cout, C, kh, kw\] with the same C, got x \[2, 3, 4, 4\], weight \[5, 4, 3, 3\]/,
  );
  await assertRejects(() => conv2d(gpu, x, w3, { bias }), /conv2d: expected bias \[5\], got \[4\]/);
  await assertRejects(
    () => conv2d(gpu, x, w3, { stride: 2, padding: 1, residual: x }),
    /conv2d: expected residual \[2, 5, 2, 2\] \(the output shape\), got \[2, 3, 4, 4\]/,
  );
  await assertRejects(() => conv2d(gpu, x, w3, { stride: 0 }), /conv2d: expected stride >= 1/);
  const big = gpu.upload(randomArray(5 * 3 * 36), [5, 3, 6, 6]);
  await assertRejects(
    () => conv2d(gpu, x, big, { padding: 0 }),
    /conv2d: expected a kernel that fits/,
  );
  if (gpu.hasF16) {
    const h = gpu.upload(randomArray(5 * 3 * 9), [5, 3, 3, 3], "f16");
    await assertRejects(
      () => conv2d(gpu, x, h),
      /conv2d: expected weight to be f32 like x, got f16/,
    );
    h.release();
  }
  for (const t of [x, w, w3, bias, big]) t.release();
});

Deno.test("conv2d_cpu: a hand-computed 3x3 with padding", () => {
  // x = 1..4 on a 2x2 image, all-ones 3x3 kernel, padding 1: every output sums the whole image.
  const out = conv2dCpu(new Float32Array([1, 2, 3, 4]), new Float32Array(9).fill(1), {
    xShape: [1, 1, 2, 2],
    wShape: [1, 1, 3, 3],
    bias: new Float32Array([0.5]),
  });
  assertClose(out, [10.5, 10.5, 10.5, 10.5], { atol: 0, rtol: 0 });
  const s2 = conv2dCpu(new Float32Array([1, 2, 3, 4]), new Float32Array([1, 0, 0, 0]), {
    xShape: [1, 1, 2, 2],
    wShape: [1, 1, 2, 2],
    stride: 2,
    padding: 0,
  });
  assertClose(s2, [1], { atol: 0, rtol: 0 });
});
