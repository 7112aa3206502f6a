import { roundToF16 } from "../../engine/gpu/half.ts";
import { upsampleNearest2x } from "../../kernels/resample.ts";
import { upsampleNearest2xCpu } from "../../kernels/resample_cpu.ts";
import { assertClose, assertEquals, assertRejects, randomArray } from "../assert.ts";
import { gpuTest } from "../gpu.ts";
import { cases } from "./resample_cases.ts";

// A copy: exact (atol = rtol = 0) on values representable in the dtype.
for (const k of cases.filter((k) => k.scale !== "full")) {
  gpuTest(`upsample_nearest2x ${k.dtype} [${k.shape}] ${k.scale} (${k.note})`, async (gpu) => {
    if (k.dtype === "f16" && !gpu.hasF16) return;
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
