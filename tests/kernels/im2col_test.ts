import { roundToF16 } from "../../kernels/gpu/half.ts";
import { im2col } from "../../kernels/im2col.ts";
import { im2colCpu } from "../../kernels/im2col_cpu.ts";
import { assert, assertClose, assertRejects, randomArray } from "../assert.ts";
import { gpuTest } from "../gpu.ts";
import { im2colSpecs } from "./im2col_cases.ts";

// im2col only copies values: f32 must match exactly, f16 exactly on f16-rounded inputs.
for (const c of im2colSpecs.filter((s) => s.scale === "test")) {
  for (const dtype of ["f32", "f16"] as const) {
    gpuTest(
      { name: `im2col ${c.note} ${c.xShape} ${dtype} vs CPU`, f16: dtype === "f16" },
      async (gpu) => {
        const n = c.xShape.reduce((a, b) => a * b, 1);
        const host = randomArray(n, 7);
        const x = gpu.upload(host, c.xShape, dtype);
        const col = im2col(gpu, x, c);
        const want = im2colCpu(dtype === "f16" ? roundToF16(host) : host, c);
        const K = c.xShape[1] * c.kh * c.kw;
        assert(col.shape[0] === K && col.shape[0] * col.shape[1] === want.length, `${col.shape}`);
        assertClose(await gpu.read(col), want, { atol: 0, rtol: 0, msg: c.note });
        x.release();
        col.release();
      },
    );
  }
}

Deno.test("im2col_cpu: a 2x2 image with a 3x3 kernel and padding 1", () => {
  // Pixel (0, 0): its 3x3 window holds x only at (ky, kx) = (1, 1), (1, 2), (2, 1), (2, 2).
  const col = im2colCpu(new Float32Array([1, 2, 3, 4]), {
    xShape: [1, 1, 2, 2],
    kh: 3,
    kw: 3,
    padding: 1,
  });
  const pixel0 = Array.from({ length: 9 }, (_, k) => col[k * 4]);
  assertClose(pixel0, [0, 0, 0, 0, 1, 2, 0, 3, 4], { atol: 0, rtol: 0 });
});

gpuTest("im2col: bad options name the op", async (gpu) => {
  const x = gpu.upload(randomArray(2 * 4 * 4), [1, 2, 4, 4]);
  await assertRejects(
    () => im2col(gpu, x, { kh: 3, kw: 3, cols: 6 }),
    /im2col: expected cols a positive multiple of 4, got 6/,
  );
  await assertRejects(
    () => im2col(gpu, x, { kh: 5, kw: 5 }),
    /im2col: a 5x5 kernel does not fit x \[1, 2, 4, 4\]/,
  );
  await assertRejects(
    () => im2col(gpu, x, { kh: 3, kw: 3, stride: 0 }),
    /im2col: expected kernel >= 1/,
  );
  const flat = gpu.upload(randomArray(8), [2, 4]);
  await assertRejects(
    () => im2col(gpu, flat, { kh: 1, kw: 1 }),
    /im2col: expected x \[N, C, H, W\], got \[2, 4\]/,
  );
  x.release();
  flat.release();
});
