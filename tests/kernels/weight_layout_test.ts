import { transposeInto, winogradFiltersInto } from "../../kernels/weight_layout.ts";
import { permuteCpu } from "../../kernels/layout_cpu.ts";
import { winogradWeights } from "../../kernels/winograd.ts";
import { roundToF16 } from "../../kernels/gpu/half.ts";
import { assertClose, assertRejects, randomArray } from "../assert.ts";
import { gpuTest } from "../gpu.ts";

// The load-time weight layouts against their CPU references, f32 and f16 (the f16 reference
// rounds the input and the output, as the stored tensors are).

for (const dtype of ["f32", "f16"] as const) {
  gpuTest({
    name: `weight layouts: transpose and Winograd filters (${dtype})`,
    f16: dtype === "f16",
  }, async (gpu) => {
    const r = (x: Float32Array) => (dtype === "f16" ? roundToF16(x) : x);
    const tol = dtype === "f32" ? { atol: 1e-6, rtol: 1e-6 } : { atol: 2e-3, rtol: 2e-3 };
    for (const [rows, cols] of [[7, 13], [64, 20]]) {
      const ws = r(randomArray(rows * cols, rows));
      const w = gpu.upload(ws, [rows, cols], dtype);
      const y = gpu.reserve([cols, rows], dtype);
      transposeInto(gpu, w, y);
      assertClose(await gpu.read(y), permuteCpu(ws, [rows, cols], [1, 0]), {
        ...tol,
        msg: `transpose [${rows}, ${cols}]`,
      });
      w.release();
      y.release();
    }
    for (const [cout, cin] of [[5, 3], [12, 8]]) {
      const ws = r(randomArray(cout * cin * 9, cout));
      const w = gpu.upload(ws, [cout, cin, 3, 3], dtype);
      const u = gpu.reserve([16, cout, cin], dtype);
      winogradFiltersInto(gpu, w, u);
      assertClose(await gpu.read(u), r(winogradWeights(ws, cout, cin)), {
        ...tol,
        msg: `winograd [${cout}, ${cin}]`,
      });
      w.release();
      u.release();
    }
  });
}

gpuTest("weight layouts: shape errors name the transform", async (gpu) => {
  const w = gpu.upload(randomArray(24), [4, 6]);
  const bad = gpu.reserve([4, 6]);
  await assertRejects(
    () => transposeInto(gpu, w, bad),
    /^weight transpose: expected w \[rows, cols\] and y \[cols, rows\]/,
  );
  await assertRejects(
    () => winogradFiltersInto(gpu, w, bad),
    /^weight winograd: expected w \[out, in, 3, 3\]/,
  );
  w.release();
  bad.release();
});

gpuTest(
  "weight layouts: Winograd filters larger than one binding go in row windows",
  async (gpu) => {
    // u [16, 8, 8] f32 is 4 KiB: a 3 KiB binding limit writes each row's 4 points (1 KiB) through
    // its own window.
    gpu.setLimits({ maxStorageBufferBindingSize: 3072, minStorageBufferOffsetAlignment: 256 });
    try {
      const ws = randomArray(8 * 8 * 9, 31);
      const w = gpu.upload(ws, [8, 8, 3, 3]);
      const u = gpu.reserve([16, 8, 8]);
      winogradFiltersInto(gpu, w, u);
      gpu.setLimits();
      assertClose(await gpu.read(u), winogradWeights(ws, 8, 8), { atol: 1e-6, rtol: 1e-6 });
      w.release();
      u.release();
    } finally {
      gpu.setLimits();
    }
  },
);
