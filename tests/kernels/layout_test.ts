import type { Gpu } from "../../kernels/gpu/device.ts";
import type { DType } from "../../kernels/gpu/tensor.ts";
import { concat, permute, planPermute, repeatInterleave, slice } from "../../kernels/layout.ts";
import { concatCpu, permuteCpu, repeatInterleaveCpu, sliceCpu } from "../../kernels/layout_cpu.ts";
import { assertClose, assertEquals, assertRejects, randomArray } from "../assert.ts";
import { gpuTest } from "../gpu.ts";
import { cases, permuteCases } from "./layout_cases.ts";

// Layout ops copy values: exact equality (atol = rtol = 0). f16 inputs are uploaded as values
// already representable in f16, so the comparison is exact there too.
const EXACT = { atol: 0, rtol: 0 };
const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** Distinct integers (exact in f16 up to 2048, then every other one): each element traceable. */
function ramp(n: number, dtype: DType): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => dtype === "f16" ? (i % 2048) - 1024 : i);
}

async function checkPermute(gpu: Gpu, shape: number[], perm: number[], dtype: DType) {
  const xs = ramp(numel(shape), dtype);
  const x = gpu.upload(xs, shape, dtype);
  const y = permute(gpu, x, perm);
  assertEquals(y.shape, perm.map((d) => shape[d]));
  assertClose(await gpu.read(y), permuteCpu(xs, shape, perm), { ...EXACT, msg: `[${shape}]` });
  x.release();
  y.release();
}

for (const k of permuteCases.filter((k) => k.scale !== "full")) {
  gpuTest({
    name: `permute ${k.dtype} [${k.shape}] ${k.scale} (${k.note})`,
    f16: k.dtype === "f16",
  }, async (gpu) => {
    await checkPermute(gpu, k.shape, k.perm, k.dtype);
  });
}

for (const k of cases.filter((k) => k.scale !== "full" && k.op !== "permute")) {
  gpuTest({
    name: `${k.op} ${k.dtype} [${k.shape}] ${k.scale} (${k.note})`,
    f16: k.dtype === "f16",
  }, async (gpu) => {
    const dtype = k.dtype;
    if (k.op === "concat") {
      const [n, c1, c2, h, w] = k.shape;
      const sa = [n, c1, h, w], sb = [n, c2, h, w];
      const as = ramp(numel(sa), dtype), bs = randomArray(numel(sb), 5).map(Math.round);
      const a = gpu.upload(as, sa, dtype), b = gpu.upload(bs, sb, dtype);
      const y = concat(gpu, [a, b], 1);
      assertEquals(y.shape, [n, c1 + c2, h, w]);
      const want = concatCpu([{ data: as, shape: sa }, { data: bs, shape: sb }], 1);
      assertClose(await gpu.read(y), want, EXACT);
      for (const t of [a, b, y]) t.release();
    } else if (k.op === "slice") {
      const [b, d, inner, start, end] = k.shape;
      const xs = ramp(b * d * inner, dtype);
      const x = gpu.upload(xs, [b, d, inner], dtype);
      const y = slice(gpu, x, 1, start, end);
      assertEquals(y.shape, [b, end - start, inner]);
      assertClose(await gpu.read(y), sliceCpu(xs, [b, d, inner], 1, start, end), EXACT);
      x.release();
      y.release();
    } else {
      const [b, l, d, r] = k.shape;
      const xs = ramp(b * l * d, dtype);
      const x = gpu.upload(xs, [b, l, d], dtype);
      const y = repeatInterleave(gpu, x, r);
      assertEquals(y.shape, [b * r, l, d]);
      assertClose(await gpu.read(y), repeatInterleaveCpu(xs, [b, l, d], r, 0), EXACT);
      x.release();
      y.release();
    }
  });
}

Deno.test("planPermute drops size-1 dims and merges dims that stay adjacent", () => {
  assertEquals(planPermute([2, 3, 4, 8], [1, 0, 2, 3]), {
    sizes: [3, 2, 32],
    inStrides: [32, 96, 1],
  });
  assertEquals(planPermute([4, 1, 6], [2, 1, 0]), { sizes: [6, 4], inStrides: [1, 6] });
  assertEquals(planPermute([2, 3, 4], [0, 1, 2]), { sizes: [24], inStrides: [1] });
});

gpuTest("layout: more tensors, other axes, negative axes, repeats on inner axes", async (gpu) => {
  await checkPermute(gpu, [5, 1, 1], [1, 2, 0], "f32");
  await checkPermute(gpu, [2, 3, 4], [0, 1, 2], "f32");
  const shapes = [[3, 2, 5], [3, 4, 5], [3, 1, 5]];
  const datas = shapes.map((s, i) => randomArray(numel(s), 10 + i));
  const ts = shapes.map((s, i) => gpu.upload(datas[i], s, "f32"));
  const y = concat(gpu, ts, -2);
  assertEquals(y.shape, [3, 7, 5]);
  const want = concatCpu(shapes.map((shape, i) => ({ data: datas[i], shape })), 1);
  assertClose(await gpu.read(y), want, EXACT);
  const y0 = concat(gpu, [ts[0], ts[0]], 0);
  assertClose(
    await gpu.read(y0),
    concatCpu([{ data: datas[0], shape: shapes[0] }, { data: datas[0], shape: shapes[0] }], 0),
    EXACT,
  );
  const r = repeatInterleave(gpu, ts[1], 3, 2);
  assertClose(await gpu.read(r), repeatInterleaveCpu(datas[1], shapes[1], 3, 2), EXACT);
  const s = slice(gpu, ts[1], -1, 1, 4);
  assertClose(await gpu.read(s), sliceCpu(datas[1], shapes[1], 2, 1, 4), EXACT);
  const e = slice(gpu, ts[1], 1, 2, 2);
  assertEquals(e.shape, [3, 0, 5]);
  for (const t of [...ts, y, y0, r, s, e]) t.release();
});

gpuTest("layout: errors name the op and shapes", async (gpu) => {
  const a = gpu.upload(randomArray(6), [2, 3], "f32");
  const b = gpu.upload(randomArray(8), [4, 2], "f32");
  await assertRejects(
    () => permute(gpu, a, [0, 0]),
    /permute: expected a permutation of 2 dims .* got \[0, 0\]/,
  );
  await assertRejects(
    () => concat(gpu, [a, b], 1),
    /concat: expected tensors like \[2, 3\] f32 except on axis 1/,
  );
  await assertRejects(() => concat(gpu, [a], 0), /concat: expected 2 or more tensors, got 1/);
  await assertRejects(
    () => slice(gpu, a, 1, 2, 5),
    /slice: expected 0 <= start <= end <= 3 on axis 1 of x \[2, 3\], got 2..5/,
  );
  await assertRejects(
    () => slice(gpu, a, 2, 0, 1),
    /slice: axis 2 out of range for shape \[2, 3\]/,
  );
  await assertRejects(
    () => repeatInterleave(gpu, a, 0),
    /repeat_interleave: expected repeats >= 1, got 0/,
  );
  a.release();
  b.release();
});
