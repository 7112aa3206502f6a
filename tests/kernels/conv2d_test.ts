import type { Gpu } from "../../engine/gpu/device.ts";
import { roundToF16 } from "../../engine/gpu/half.ts";
import type { DType } from "../../engine/gpu/tensor.ts";
import { conv2d } from "../../kernels/conv2d.ts";
import { conv2dCpu } from "../../kernels/conv2d_cpu.ts";
import { type GemmTile, setGemmTileOverride } from "../../kernels/matmul.ts";
import { assert, assertClose, assertRejects, randomArray } from "../assert.ts";
import { gpuTest } from "../gpu.ts";
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
    gpuTest(`conv2d ${spec.note} [${spec.shape}] ${dtype} vs CPU`, async (gpu) => {
      if (dtype === "f16" && !gpu.hasF16) return;
      await checkSpec(gpu, spec, dtype);
    });
  }
}

gpuTest("conv2d: the other tile shapes, 3x3 / 1x1 / stride 2 / odd sizes (f32)", async (gpu) => {
  // The non-default tiles (the adapter's own tile runs in every case above).
  const tiles: GemmTile[] = [
    { tm: 4, tn: 4, bk: 16 },
    { tm: 8, tn: 4, bk: 32 },
    { tm: 4, tn: 8, bk: 16 },
  ];
  const specs: Conv2dSpec[] = [
    { shape: [2, 7, 9, 11, 70, 3], scale: "test", note: "", bias: true, residual: true },
    { shape: [3, 12, 6, 6, 20, 1], scale: "test", note: "", residual: true },
    { shape: [1, 5, 11, 10, 9, 3, 2], scale: "test", note: "", bias: true },
    { shape: [1, 2, 9, 9, 3, 5], scale: "test", note: "5x5 kernel" },
  ];
  try {
    // Each tile runs two of the specs; every spec meets at least one of them.
    for (const [i, tile] of tiles.entries()) {
      setGemmTileOverride(tile);
      for (const spec of [specs[i], specs[(i + 3) % 4]]) await checkSpec(gpu, spec, "f32");
    }
  } finally {
    setGemmTileOverride(null);
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
