import { roundToF16 } from "../../kernels/gpu/half.ts";
import { pad2d, resizeNearest, upsampleNearest2x } from "../../kernels/resample.ts";
import { pad2dCpu, resizeNearestCpu, upsampleNearest2xCpu } from "../../kernels/resample_cpu.ts";
import { assertClose, assertEquals, assertRejects, randomArray } from "../assert.ts";
import { gpuTest } from "../gpu.ts";
import { cases, padCases } from "./resample_cases.ts";

// A copy: exact (atol = rtol = 0) on values representable in the dtype.
for (const k of cases.filter((k) => k.scale !== "full" && k.op === "upsample_nearest2x")) {
  gpuTest({
    name: `upsample_nearest2x ${k.dtype} [${k.shape}] ${k.scale} (${k.note})`,
    f16: k.dtype === "f16",
  }, async (gpu) => {
    const size = k.shape.reduce((a, b) => a * b, 1);
    const raw = randomArray(size, 112, 4);
    const xs = k.dtype === "f16" ? roundToF16(raw) : raw;
    const x = gpu.upload(xs, k.shape, k.dtype);
    const y = upsampleNearest2x(gpu, x);
    const [n, c, h, w] = k.shape;
    assertEquals(y.shape, [n, c, 2 * h, 2 * w]);
    assertClose(await gpu.read(y), upsampleNearest2xCpu(xs, k.shape), { atol: 0, rtol: 0 });
    x.release();
    y.release();
  });
}

gpuTest("upsample_nearest2x: explicit 2x2 -> 4x4 and shape errors", async (gpu) => {
  const x = gpu.upload([1, 2, 3, 4], [1, 1, 2, 2], "f32");
  const y = upsampleNearest2x(gpu, x);
  assertClose(await gpu.read(y), [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4], {
    atol: 0,
    rtol: 0,
  });
  const bad = gpu.upload([1, 2, 3, 4], [2, 2], "f32");
  await assertRejects(
    () => upsampleNearest2x(gpu, bad),
    /upsample_nearest2x: expected x \[N, C, H, W\], got \[2, 2\]/,
  );
  for (const t of [x, y, bad]) t.release();
});

// Padding is a copy: exact.
for (const k of padCases.filter((k) => k.scale !== "full")) {
  gpuTest(
    { name: `pad2d ${k.dtype} [${k.shape}] ${k.scale} (${k.note})`, f16: k.dtype === "f16" },
    async (gpu) => {
      const size = k.shape.reduce((a, b) => a * b, 1);
      const raw = randomArray(size, 113, 4);
      const xs = k.dtype === "f16" ? roundToF16(raw) : raw;
      const x = gpu.upload(xs, k.shape, k.dtype);
      for (
        const pad of [{ top: 0, bottom: 1, left: 0, right: 1 }, {
          top: 2,
          bottom: 0,
          left: 1,
          right: 3,
        }]
      ) {
        const y = pad2d(gpu, x, pad);
        const [n, c, h, w] = k.shape;
        assertEquals(y.shape, [n, c, h + pad.top + pad.bottom, w + pad.left + pad.right]);
        assertClose(await gpu.read(y), pad2dCpu(xs, k.shape, pad), { atol: 0, rtol: 0 });
        y.release();
      }
      x.release();
    },
  );
}

gpuTest("pad2d: explicit values and bad arguments", async (gpu) => {
  const x = gpu.upload([1, 2, 3, 4], [1, 1, 2, 2], "f32");
  const y = pad2d(gpu, x, { top: 0, bottom: 1, left: 0, right: 1 });
  assertClose(await gpu.read(y), [1, 2, 0, 3, 4, 0, 0, 0, 0], { atol: 0, rtol: 0 });
  await assertRejects(() => pad2d(gpu, x, { top: -1, bottom: 0, left: 0, right: 0 }), /pad2d: top/);
  x.release();
  y.release();
});

// Resize is a gather: exact. Sizes from UNets on latents that are not multiples of 8.
gpuTest("resize_nearest matches torch nearest indexing (odd targets, f32 and f16)", async (gpu) => {
  for (const dtype of ["f32", "f16"] as const) {
    if (dtype === "f16" && !gpu.hasF16) continue;
    for (
      const [shape, ho, wo] of [[[2, 3, 3, 3], 5, 6], [[1, 2, 5, 7], 10, 13], [
        [1, 1, 2, 2],
        3,
        7,
      ]] as const
    ) {
      const size = (shape as readonly number[]).reduce((a, b) => a * b, 1);
      const raw = randomArray(size, 114, 4);
      const xs = dtype === "f16" ? roundToF16(raw) : raw;
      const x = gpu.upload(xs, shape, dtype);
      const y = resizeNearest(gpu, x, ho, wo);
      assertEquals(y.shape, [shape[0], shape[1], ho, wo]);
      assertClose(await gpu.read(y), resizeNearestCpu(xs, shape, ho, wo), { atol: 0, rtol: 0 });
      x.release();
      y.release();
    }
  }
  // torch: interpolate(arange(3), size=5, mode="nearest") picks 0 0 1 1 2
  assertEquals(Array.from(resizeNearestCpu(Float32Array.from([0, 1, 2]), [1, 1, 1, 3], 1, 5)), [
    0,
    0,
    1,
    1,
    2,
  ]);
});
