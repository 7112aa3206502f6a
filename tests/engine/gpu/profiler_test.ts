import { add } from "../../../kernels/elementwise.ts";
import { matmul } from "../../../kernels/matmul.ts";
import { conv2d } from "../../../kernels/conv2d.ts";
import { attention } from "../../../kernels/attention.ts";
import { conv2dWinograd, winogradWeights } from "../../../kernels/winograd.ts";
import { assert, assertEquals, randomArray } from "../../assert.ts";
import { gpuTest } from "../../gpu.ts";

// Gpu.profile: every dispatch of the profiled work timed, summed by kernel and grid, tagged by
// phase; nothing outside it counted; results unchanged.

gpuTest("Gpu.profile times each dispatch by kernel, grid and phase", async (gpu) => {
  const a = gpu.upload(randomArray(64 * 32, 1), [64, 32]);
  const b = gpu.upload(randomArray(32 * 48, 2), [32, 48]);
  // Recorded before profiling: not in the profile.
  add(gpu, a, a).release();
  const plain = await gpu.read(matmul(gpu, a, b));
  if (!gpu.hasTimestamps) {
    let msg = "";
    await gpu.profile(() => Promise.resolve()).catch((e) => (msg = (e as Error).message));
    assert(msg.startsWith("profiling needs timestamp-query"), msg);
    return;
  }
  const { result, kernels } = await gpu.profile(async () => {
    const profiler = gpu.recorder.profiler!;
    profiler.phase = "first";
    const y1 = matmul(gpu, a, b);
    const y2 = matmul(gpu, a, b);
    profiler.phase = "second";
    const s = add(gpu, y1, y2);
    const out = await gpu.read(s);
    for (const t of [y1, y2, s]) t.release();
    return out;
  });
  // The profiled work computed what it computes unprofiled.
  plain.forEach((v, i) => assert(Math.abs(result[i] - 2 * v) < 1e-4, `element ${i}`));
  // Tests poison every allocation (fill_u32, kernels/gpu/poison.ts): profiled too, left out here.
  const ops = kernels.filter((k) => !k.kernel.startsWith("fill_u32:"));
  const first = ops.filter((k) => k.phase === "first");
  const second = ops.filter((k) => k.phase === "second");
  assertEquals(first.length, 1, JSON.stringify(kernels));
  assertEquals(first[0].count, 2);
  assert(/^(gemm_direct|matmul):/.test(first[0].kernel), first[0].kernel);
  assert(/^\d+x\d+x\d+$/.test(first[0].groups), first[0].groups);
  assertEquals(second.length, 1, JSON.stringify(kernels));
  assert(second[0].kernel.startsWith("binary:add"), second[0].kernel);
  assertEquals(ops.length, 2, "nothing recorded outside the profile");
  assert(kernels.every((k) => k.ms >= 0 && Number.isFinite(k.ms)), JSON.stringify(kernels));
  assert(kernels.every((k, i) => i === 0 || kernels[i - 1].ms >= k.ms), "most expensive first");
  assert(gpu.recorder.profiler === null, "detached");
  a.release();
  b.release();
});

gpuTest(
  "Gpu.flops counts the nominal products: matmul, conv2d (either path), attention",
  async (gpu) => {
    const a = gpu.upload(randomArray(6 * 8, 3), [6, 8]);
    const b = gpu.upload(randomArray(8 * 12, 4), [8, 12]);
    const x = gpu.upload(randomArray(2 * 4 * 5 * 5, 5), [2, 4, 5, 5]);
    const w = gpu.upload(randomArray(8 * 4 * 9, 6), [8, 4, 3, 3]);
    const u = gpu.upload(winogradWeights(randomArray(8 * 4 * 9, 6), 8, 4), [16, 8, 4]);
    const q = gpu.upload(randomArray(2 * 7 * 16, 7), [2, 7, 16]);
    const count = (fn: () => { release(): void }) => {
      const f0 = gpu.flops;
      fn().release();
      return gpu.flops - f0;
    };
    assertEquals(count(() => matmul(gpu, a, b)), 2 * 6 * 12 * 8);
    const conv = 2 * 2 * 8 * 5 * 5 * 4 * 9;
    assertEquals(count(() => conv2d(gpu, x, w)), conv);
    assertEquals(count(() => conv2dWinograd(gpu, x, u)), conv, "Winograd counts as direct");
    assertEquals(count(() => attention(gpu, q, q, q, { heads: 2 })), 4 * 2 * 7 * 7 * 16);
    await gpu.sync();
    for (const t of [a, b, x, w, u, q]) t.release();
  },
);
